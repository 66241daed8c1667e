//! `cargo xtask bench`: the cost of a run of k8s-worker, each a real invocation of this runner
//! binary as a child process, its wall time, CPU time and peak memory taken from the kernel
//! (`wait4`).
//!
//! - Lab containers (`--hosts N`, repeatable): fresh containers, the first run (with its time
//!   broken down by kind of command, from the `-vv` log), then M no-op re-runs, each both as the
//!   binary and as a user types it (`cargo xtask run ...`), with the ssh connections the hosts'
//!   sshd logged.
//! - A simulated fleet (`--simulated N`, repeatable): N hosts that answer like hosts k8s-worker
//!   already converged, after a set round trip, with no container and no connection (the
//!   runner's hidden `--simulate-rtt-ms`). What the runner itself costs per host, and how that
//!   grows. Every run must report every host ok and nothing changed, or the bench fails.
//!
//! Figures are reported, never asserted: the README's Speed section documents the JSON fields.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::Shell;

use super::BenchArgs;
use super::lab::{LAB_SETTINGS, Lab, install_kube_standins};
use super::testbed::Testbed;
use crate::runner::EXIT_OK;

const PLAYBOOK: &str = "k8s-worker";

pub fn bench(args: &BenchArgs) -> Result<u8> {
    let mut lab_counts = args.hosts.clone();
    if lab_counts.is_empty() && args.simulated.is_empty() {
        lab_counts = vec![1, 8];
    }
    if lab_counts.iter().chain(&args.simulated).any(|n| *n == 0) {
        bail!("--hosts and --simulated take a number of hosts of at least 1");
    }
    if !args.simulated.is_empty() && args.runs == 0 {
        bail!("--runs must be at least 1 for simulated hosts");
    }
    let exe = std::env::current_exe()?;
    // The binary in the page cache before anything is timed.
    run_measured(&exe, &["--version".into()], None)?;
    let mut rows = Vec::new();
    for &n in &args.simulated {
        eprintln!(
            "bench: {n} simulated host(s), {} ms round trip, {} forks",
            args.rtt_ms, args.forks
        );
        rows.push(simulated(&exe, n, args)?);
    }
    if !lab_counts.is_empty() {
        let sh = Shell::new()?;
        super::prereq::ensure(&sh, super::prereq::Need::Lab)?;
        let image = super::image::ensure(&sh)?;
        for &n in &lab_counts {
            let names: Vec<String> = (1..=n).map(|i| format!("benchwok{i:02}")).collect();
            let hosts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), PLAYBOOK)).collect();
            eprintln!("bench: {n} lab host(s): starting containers");
            let lab = Lab::start(&sh, &image, "nodeprep-bench", &hosts)?;
            rows.push(measure_lab(&lab, &exe, args.runs)?);
            drop(lab);
        }
    }
    if args.json {
        for r in &rows {
            println!("{r}");
        }
    } else {
        print_tables(&rows);
    }
    Ok(EXIT_OK)
}

/// One invocation of a program, as the kernel accounted it.
struct Measured {
    /// From spawn to exit.
    wall: Duration,
    /// User plus system CPU time of the process and of the children it waited for.
    cpu: Duration,
    /// Peak resident memory (bytes) of the process, or of its largest waited-for child.
    peak: u64,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Measured {
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn recaps(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "recap")
            .collect()
    }
}

/// Runs `program` with `args` (in `dir`), capturing its output, and takes its rusage from
/// `wait4(2)`, which returns the child's own figures. (getrusage(RUSAGE_CHILDREN) would sum
/// every child this process ever waited for, and its peak memory is the largest of them; the
/// `wait4` crate wraps the call, since this workspace forbids unsafe code of its own.)
fn run_measured(program: &Path, args: &[OsString], dir: Option<&Path>) -> Result<Measured> {
    use std::process::{Command, Stdio};
    use wait4::Wait4;
    // The benchmark measures the runner as a child process on this machine, not a command on
    // a target: wait4 needs std's Child.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let used = child.wait4()?;
    let wall = start.elapsed();
    Ok(Measured {
        wall,
        cpu: used.rusage.utime + used.rusage.stime,
        peak: used.rusage.maxrss,
        success: used.status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Median, min, max.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let median = if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (
        median,
        s.first().copied().unwrap_or(0.0),
        s.last().copied().unwrap_or(0.0),
    )
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Every host ok and nothing changed: what a no-op run must report (`n` hosts).
fn check_noop(label: &str, m: &Measured, n: usize) -> Result<Vec<Value>> {
    let recaps = m.recaps();
    let bad: Vec<&Value> = recaps
        .iter()
        .filter(|r| {
            r["changed"] != 0 || r["failed"] != 0 || r["unreachable"] != false || r["ok"] == 0
        })
        .collect();
    if !m.success || recaps.len() != n || !bad.is_empty() {
        let changed: Vec<String> = m
            .events()
            .iter()
            .filter(|e| e["event"] == "step" && e["outcome"] != "ok" && e["outcome"] != "skipped")
            .take(10)
            .map(|e| e.to_string())
            .collect();
        let stderr: String = m.stderr.lines().take(20).collect::<Vec<_>>().join("\n");
        bail!(
            "{label}: expected {n} host(s) ok with nothing changed, got {} recap(s), {} not so{}\n{}\n{stderr}",
            recaps.len(),
            bad.len(),
            bad.first()
                .map(|r| format!(" (first: {r})"))
                .unwrap_or_default(),
            changed.join("\n")
        );
    }
    Ok(recaps)
}

fn commands_per_host(recaps: &[Value]) -> f64 {
    recaps
        .iter()
        .map(|r| r["commands"].as_f64().unwrap_or(0.0))
        .sum::<f64>()
        / recaps.len().max(1) as f64
}

// --- The simulated fleet ------------------------------------------------------------------

/// `n` hosts of k8s-worker with the lab's settings, at loopback addresses nothing connects to.
fn simulated_inventory(dir: &Path, n: usize) -> Result<PathBuf> {
    if n > 250 * 256 {
        bail!("at most {} simulated hosts", 250 * 256);
    }
    let mut text = String::from("[ssh]\nuser = \"root\"\n");
    for i in 0..n {
        writeln!(
            text,
            "\n[hosts.sim{:05}]\nrole = \"{PLAYBOOK}\"\naddress = \"127.0.{}.{}\"",
            i + 1,
            i / 250,
            i % 250 + 1
        )?;
    }
    text.push_str(LAB_SETTINGS);
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `runs` no-op runs of the runner over `n` simulated converged hosts.
fn simulated(exe: &Path, n: usize, args: &BenchArgs) -> Result<Value> {
    let dir = tempfile::Builder::new()
        .prefix("nodeprep-bench-")
        .tempdir()?;
    let inv = simulated_inventory(dir.path(), n)?;
    let forks = args.forks.to_string();
    let rtt = args.rtt_ms.to_string();
    let mut argv = os(&[
        "run",
        PLAYBOOK,
        "--all",
        "--json",
        "--forks",
        &forks,
        "--simulate-rtt-ms",
        &rtt,
        "--inventory",
    ]);
    argv.push(inv.clone().into_os_string());
    let (mut wall, mut cpu, mut user_peak) = (Vec::new(), Vec::new(), Vec::new());
    let mut commands = 0.0;
    for i in 0..args.runs {
        let m = run_measured(exe, &argv, None)?;
        let recaps = check_noop(&format!("simulated run {i} over {n} hosts"), &m, n)?;
        commands = commands_per_host(&recaps);
        wall.push(secs(m.wall));
        cpu.push(secs(m.cpu));
        user_peak.push(mb(m.peak));
    }
    let simulator = simulator_cpu(&inv)?.as_secs_f64();
    let (wall_median, wall_min, wall_max) = stats(&wall);
    let (cpu_median, cpu_min, cpu_max) = stats(&cpu);
    let (peak_median, _, peak_max) = stats(&user_peak);
    // The round trips alone: every host's commands one after the other, `forks` hosts at once.
    let waves = n.div_ceil(args.forks.max(1)) as f64;
    let floor = waves * commands * args.rtt_ms as f64 / 1000.0;
    Ok(json!({
        "kind": "simulated",
        "hosts": n,
        "playbook": PLAYBOOK,
        "rtt_ms": args.rtt_ms,
        "forks": args.forks,
        "runs": args.runs,
        "wall_median_s": round(wall_median, 3),
        "wall_min_s": round(wall_min, 3),
        "wall_max_s": round(wall_max, 3),
        "round_trips_s": round(floor, 3),
        "cpu_median_s": round(cpu_median, 3),
        "cpu_min_s": round(cpu_min, 3),
        "cpu_max_s": round(cpu_max, 3),
        "simulator_cpu_s": round(simulator, 3),
        "runner_cpu_s": round((cpu_median - simulator).max(0.0), 3),
        "peak_mb": round(peak_median, 1),
        "peak_max_mb": round(peak_max, 1),
        "wall_per_host_ms": round(wall_median * 1000.0 / n as f64, 3),
        "cpu_per_host_ms": round(cpu_median * 1000.0 / n as f64, 3),
        "runner_cpu_per_host_ms": round((cpu_median - simulator).max(0.0) * 1000.0 / n as f64, 3),
        "memory_per_host_kb": round(peak_median * 1024.0 / n as f64, 1),
        "commands_per_host": round(commands, 2),
    }))
}

/// The CPU time this process spends on one thread answering the probes of every host of
/// `inv` as simulated hosts (the probe, the unlock): the simulated hosts' own share of a
/// simulated run's CPU time (the same code, the same build, the same fleet: one state, a script
/// read back and answered once, each host's reply named for it), which is not the runner's.
/// The probe is the one the runner sends the first host of `inv`, with a lock holder like its
/// own. The fleet is answered [`SIMULATOR_ROUNDS`] times, each time a state of its own (as a
/// run's), so that the clock's ticks do not matter.
#[cfg(feature = "simulate")]
fn simulator_cpu(inv: &Path) -> Result<Duration> {
    use tasks::Host as _;
    let inv = playbooks::Inventory::load(inv).map_err(|p| anyhow::anyhow!("{p}"))?;
    let registry = playbooks::Registry::default();
    let playbook = registry.find(PLAYBOOK).context("no k8s-worker playbook")?;
    let names: Vec<&String> = inv.hosts.keys().collect();
    let first = inv
        .target(names.first().context("no host")?)
        .context("no host")?;
    let mut plan = tasks::Plan::new();
    playbook.plan(first, &mut plan)?;
    let mut probe = plan.probe(&tasks::Selection::default());
    let holder = format!(
        "nodeprep run by root@{} (pid {}, started at unix time 1700000000)",
        crate::runner::fanout::this_hostname(),
        std::process::id()
    );
    probe.lock = Some(holder.clone());
    let state = tasks::testing::simulated::converged(plan, tasks::testing::Fixture::debian())?;
    let states: Vec<std::sync::Arc<tasks::state::State>> = (0..SIMULATOR_ROUNDS)
        .map(|_| std::sync::Arc::new(state.clone()))
        .collect();
    let cmd = tasks::Cmd::new(&["sh", "-s"]).stdin(tasks::state::probe_script(&probe));
    let unlock = tasks::Cmd::new(&["sh", "-c", &tasks::state::unlock_script(&holder)]);
    let before = thread_cpu()?;
    for state in &states {
        for name in &names {
            let host =
                tasks::testing::simulated::Simulated::new(*name, Duration::ZERO, state.clone());
            host.exec(&cmd)?;
            host.exec(&unlock)?;
        }
    }
    Ok((thread_cpu()? - before) / SIMULATOR_ROUNDS as u32)
}

/// Built without the simulated hosts (the `simulate` feature): nothing to measure.
#[cfg(not(feature = "simulate"))]
fn simulator_cpu(_inv: &Path) -> Result<Duration> {
    bail!("this build has no simulated hosts (the `simulate` feature)")
}

/// How many times [`simulator_cpu`] answers the fleet.
#[cfg(feature = "simulate")]
const SIMULATOR_ROUNDS: usize = 50;

/// User plus system CPU time of the calling thread: the scheduler's nanoseconds
/// (/proc/thread-self/schedstat, brought up to date at the scheduler's ticks), else the clock
/// ticks of 10 ms of /proc/thread-self/stat.
#[cfg(feature = "simulate")]
fn thread_cpu() -> Result<Duration> {
    if let Some(ns) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|ns| *ns > 0)
    {
        return Ok(Duration::from_nanos(ns));
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.iter().sum::<u64>();
    Ok(Duration::from_millis(ticks * 10))
}

// --- Lab containers -----------------------------------------------------------------------

/// What one command of a run took on one host, from the runner's `-vv` log.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    host: String,
    command: String,
    secs: f64,
}

/// The commands a `-vv` log says were sent, with the time each took (the `sent` and `state
/// probe` debug records; a record runs on over lines when the command holds newlines).
fn sent_commands(log: &str) -> Vec<Sent> {
    let starts_record = |l: &str| {
        l.len() > 20 && l.as_bytes()[..4].iter().all(u8::is_ascii_digit) && l.as_bytes()[10] == b'T'
    };
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        match records.last_mut() {
            Some(r) if !starts_record(line) => {
                r.push('\n');
                r.push_str(line);
            }
            _ => records.push(line.to_string()),
        }
    }
    records
        .iter()
        .filter_map(|r| {
            let rest = if let Some((_, sent)) = r.split_once(" DEBUG sent ") {
                sent.to_string()
            } else {
                format!("state probe{}", r.split_once(" DEBUG state probe")?.1)
            };
            let (command, fields) = rest.rsplit_once(" host=\"")?;
            let (host, ms) = fields.split_once("\" elapsed_ms=")?;
            Some(Sent {
                host: host.to_string(),
                command: command.to_string(),
                secs: ms.trim().parse::<f64>().ok()? / 1000.0,
            })
        })
        .collect()
}

/// The kinds of work a first run's commands are counted under.
const KINDS: [&str; 6] = [
    "package_manager",
    "generators",
    "services",
    "probes",
    "writes",
    "other_commands",
];

/// The kind of work a command is: its program, past `env` and `VAR=value` words.
fn kind_of(command: &str) -> &'static str {
    if command.starts_with("state probe") || command.starts_with("sh -s") {
        return "probes";
    }
    if command.starts_with("sh -c 'set -eu") && command.contains("mktemp") {
        return "writes";
    }
    let program = command
        .split_whitespace()
        .find(|w| *w != "env" && !w.contains('='))
        .unwrap_or("");
    let program = program.rsplit('/').next().unwrap_or(program);
    match program {
        "apt-get" | "apt" | "apt-mark" | "dpkg" | "tdnf" | "dnf" | "yum" | "rpm" => {
            "package_manager"
        }
        "locale-gen"
        | "locale-gen.sh"
        | "localedef"
        | "update-locale"
        | "update-ca-certificates"
        | "update-ca-trust"
        | "sysctl"
        | "ldconfig"
        | "update-initramfs"
        | "dracut" => "generators",
        "systemctl" | "hostnamectl" | "timedatectl" | "localectl" => "services",
        _ => "other_commands",
    }
}

/// The first run's time by kind of work, on the host that waited longest on its commands;
/// nodeprep's own share is that host's time (its recap's `duration_ms`, from its turn among
/// the `--forks` to its end; the run's wall time when no recap says) less that wait.
fn breakdown(wall: f64, sent: &[Sent], recaps: &[Value]) -> Value {
    let mut per_host: BTreeMap<&str, Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        per_host.entry(&s.host).or_default().push(s);
    }
    let total = |v: &Vec<&Sent>| v.iter().map(|s| s.secs).sum::<f64>();
    let Some((host, cmds)) = per_host
        .iter()
        .max_by(|a, b| total(a.1).total_cmp(&total(b.1)))
    else {
        return json!({});
    };
    let mut by_kind: BTreeMap<&str, (f64, usize)> = KINDS.iter().map(|k| (*k, (0.0, 0))).collect();
    for s in cmds {
        let e = by_kind.entry(kind_of(&s.command)).or_default();
        e.0 += s.secs;
        e.1 += 1;
    }
    let mut slowest: Vec<&&Sent> = cmds.iter().collect();
    slowest.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    let host_s = recaps
        .iter()
        .find(|r| r["host"] == *host)
        .and_then(|r| r["duration_ms"].as_f64())
        .map_or(wall, |ms| ms / 1000.0);
    let mut v = json!({
        "first_run_host": host,
        "first_run_host_s": round(host_s, 3),
        "first_run_commands": cmds.len(),
        "first_run_nodeprep_s": round((host_s - total(cmds)).max(0.0), 3),
    });
    for (kind, (s, n)) in by_kind {
        v[format!("first_run_{kind}_s")] = json!(round(s, 3));
        v[format!("first_run_{kind}_commands")] = json!(n);
    }
    v["first_run_slowest"] = json!(
        slowest
            .iter()
            .take(5)
            .map(|s| {
                let short: String = s
                    .command
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(160)
                    .collect();
                json!({"command": short, "s": round(s.secs, 3)})
            })
            .collect::<Vec<_>>()
    );
    v
}

/// The first run of k8s-worker on every host of `bed` (all of that role), then `runs` no-op
/// re-runs, each both as the runner binary `exe` and through `cargo xtask` as a user types it.
fn measure_lab(bed: &dyn Testbed, exe: &Path, runs: usize) -> Result<Value> {
    install_kube_standins(bed)?;
    let inv = bed.write_inventory(LAB_SETTINGS)?;
    let n = bed.hosts().len();
    let mut run_args = os(&["run", PLAYBOOK, "--all", "--json", "--inventory"]);
    run_args.push(inv.clone().into_os_string());

    // The first run, logging every command it sends with its time.
    let mut first_args = os(&["-vv"]);
    first_args.extend(run_args.iter().cloned());
    let first = run_measured(exe, &first_args, None)?;
    if !first.success {
        bail!(
            "first run failed:\n{}\n{}",
            first.stdout,
            first
                .stderr
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let remote = first
        .recaps()
        .iter()
        .filter_map(|e| e["remote_ms"].as_f64())
        .fold(0.0, f64::max)
        / 1000.0;
    let parts = breakdown(
        secs(first.wall),
        &sent_commands(&first.stderr),
        &first.recaps(),
    );

    // `cargo xtask run ...` exactly as .cargo/config.toml's alias spells it, from the workspace.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut cargo_args = os(&[
        "run",
        "--quiet",
        "--package",
        "xtask",
        "--bin",
        "xtask",
        "--",
    ]);
    cargo_args.extend(run_args.iter().cloned());
    let cargo = PathBuf::from("cargo");
    // Built and fresh before it is timed (the timed runs then pay what a user pays: cargo's
    // check that nothing changed, and the start of the binary).
    let warm = run_measured(
        &cargo,
        &os(&["build", "--quiet", "--package", "xtask", "--bin", "xtask"]),
        Some(&root),
    )?;
    if !warm.success {
        bail!("cargo build of xtask failed:\n{}", warm.stderr);
    }

    // ssh connections as the hosts saw them: sshd logs each accepted login.
    let accepted = || -> Result<f64> {
        let mut total = 0.0;
        for host in bed.hosts() {
            let n = bed.sh(
                &host.name,
                "journalctl -q -o cat _COMM=sshd | grep -c 'Accepted publickey' || true",
            )?;
            total += n.trim().parse::<f64>().unwrap_or(0.0);
        }
        Ok(total)
    };
    let before = accepted()?;
    let (mut noop, mut noop_cpu, mut noop_peak, mut via_cargo) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut commands = 0.0;
    for i in 0..runs {
        let m = run_measured(exe, &run_args, None)?;
        let recaps = check_noop(&format!("no-op run {i}"), &m, n)?;
        commands = commands_per_host(&recaps);
        noop.push(secs(m.wall));
        noop_cpu.push(secs(m.cpu));
        noop_peak.push(mb(m.peak));
        let m = run_measured(&cargo, &cargo_args, Some(&root))?;
        check_noop(&format!("no-op run {i} through cargo xtask"), &m, n)?;
        via_cargo.push(secs(m.wall));
    }
    let connections = (accepted()? - before) / (2 * runs.max(1) * n) as f64;
    let (median, min, max) = stats(&noop);
    let (cargo_median, cargo_min, cargo_max) = stats(&via_cargo);
    let mut v = json!({
        "kind": "lab",
        "hosts": n,
        "playbook": PLAYBOOK,
        "first_run_s": round(secs(first.wall), 3),
        "first_run_cpu_s": round(secs(first.cpu), 3),
        "first_run_peak_mb": round(mb(first.peak), 1),
        "first_run_waiting_on_hosts_s": round(remote, 3),
        "noop_runs": runs,
        "noop_median_s": round(median, 3),
        "noop_min_s": round(min, 3),
        "noop_max_s": round(max, 3),
        "noop_cpu_median_s": round(stats(&noop_cpu).0, 3),
        "noop_peak_mb": round(stats(&noop_peak).0, 1),
        "noop_cargo_xtask_median_s": round(cargo_median, 3),
        "noop_cargo_xtask_min_s": round(cargo_min, 3),
        "noop_cargo_xtask_max_s": round(cargo_max, 3),
        "remote_commands_per_host": round(commands, 2),
        "ssh_connections_per_host": round(connections, 2),
    });
    if let (Some(v), Some(parts)) = (v.as_object_mut(), parts.as_object()) {
        v.extend(parts.clone());
    }
    Ok(v)
}

// --- Tables -------------------------------------------------------------------------------

fn print_tables(rows: &[Value]) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let sim: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "simulated").collect();
    let lab: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "lab").collect();
    if !sim.is_empty() {
        println!(
            "Simulated converged hosts (no-op runs of the runner binary; {} ms round trip, {} forks, median of {} runs)",
            sim[0]["rtt_ms"], sim[0]["forks"], sim[0]["runs"]
        );
        println!(
            "{:>6} {:>9} {:>12} {:>8} {:>11} {:>8} {:>10} {:>10} {:>10} {:>14}",
            "hosts",
            "wall",
            "round trips",
            "CPU",
            "runner CPU",
            "peak",
            "wall/host",
            "CPU/host",
            "mem/host",
            "commands/host"
        );
        for r in &sim {
            println!(
                "{:>6} {:>8.3}s {:>11.3}s {:>7.3}s {:>10.3}s {:>6.1}MB {:>8.3}ms {:>8.3}ms {:>8.1}KB {:>14.1}",
                r["hosts"].as_u64().unwrap_or(0),
                f(r, "wall_median_s"),
                f(r, "round_trips_s"),
                f(r, "cpu_median_s"),
                f(r, "runner_cpu_s"),
                f(r, "peak_mb"),
                f(r, "wall_per_host_ms"),
                f(r, "cpu_per_host_ms"),
                f(r, "memory_per_host_kb"),
                f(r, "commands_per_host")
            );
        }
        println!(
            "(round trips: the wall time the round trips alone take; runner CPU: the CPU time less the simulated hosts' own answers)\n"
        );
    }
    if lab.is_empty() {
        return;
    }
    println!("Lab containers: first run of {PLAYBOOK}, by kind of work (on the slowest host)");
    println!(
        "{:>5} {:>9} {:>9} {:>11} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "hosts",
        "total",
        "packages",
        "generators",
        "services",
        "probes",
        "writes",
        "other",
        "nodeprep"
    );
    for r in &lab {
        println!(
            "{:>5} {:>8.2}s {:>8.2}s {:>10.2}s {:>8.2}s {:>7.2}s {:>7.2}s {:>7.2}s {:>8.2}s",
            r["hosts"].as_u64().unwrap_or(0),
            f(r, "first_run_s"),
            f(r, "first_run_package_manager_s"),
            f(r, "first_run_generators_s"),
            f(r, "first_run_services_s"),
            f(r, "first_run_probes_s"),
            f(r, "first_run_writes_s"),
            f(r, "first_run_other_commands_s"),
            f(r, "first_run_nodeprep_s")
        );
    }
    println!("\nLab containers: no-op re-runs (median, min-max)");
    println!(
        "{:>5} {:>22} {:>22} {:>8} {:>14} {:>17}",
        "hosts", "binary", "cargo xtask", "CPU", "commands/host", "connections/host"
    );
    for r in &lab {
        println!(
            "{:>5} {:>22} {:>22} {:>7.3}s {:>14.1} {:>17.1}",
            r["hosts"].as_u64().unwrap_or(0),
            format!(
                "{:.3}s ({:.3}-{:.3})",
                f(r, "noop_median_s"),
                f(r, "noop_min_s"),
                f(r, "noop_max_s")
            ),
            format!(
                "{:.3}s ({:.3}-{:.3})",
                f(r, "noop_cargo_xtask_median_s"),
                f(r, "noop_cargo_xtask_min_s"),
                f(r, "noop_cargo_xtask_max_s")
            ),
            f(r, "noop_cpu_median_s"),
            f(r, "remote_commands_per_host"),
            f(r, "ssh_connections_per_host")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `-vv` records of a run, one of them running on over lines (a write's script).
    const LOG: &str = "2026-11-26T01:13:47.593238Z DEBUG state probe (37 files) host=\"wok01\" elapsed_ms=334
2026-11-26T01:13:47.601423Z DEBUG sent env DEBIAN_FRONTEND=noninteractive apt-get install -y -q locales kbd host=\"wok01\" elapsed_ms=4200
2026-11-26T01:13:47.601423Z  INFO step started host=\"wok01\" step=locale
2026-11-26T01:13:48.000000Z DEBUG sent sh -c 'set -eu
umask 022
p=$1; d=$(dirname -- \"$p\")
t=$(mktemp -- \"$d/.nodeprep.XXXXXX\")…' host=\"wok01\" elapsed_ms=12
2026-11-26T01:13:49.000000Z DEBUG sent locale-gen host=\"wok02\" elapsed_ms=2000
2026-11-26T01:13:50.000000Z DEBUG sent systemctl restart systemd-timesyncd.service host=\"wok01\" elapsed_ms=40
";

    #[test]
    fn commands_and_their_times_are_read_from_the_log() {
        let sent = sent_commands(LOG);
        let shown: Vec<(&str, &str, f64)> = sent
            .iter()
            .map(|s| (s.host.as_str(), kind_of(&s.command), s.secs))
            .collect();
        assert_eq!(
            shown,
            [
                ("wok01", "probes", 0.334),
                ("wok01", "package_manager", 4.2),
                ("wok01", "writes", 0.012),
                ("wok02", "generators", 2.0),
                ("wok01", "services", 0.04),
            ]
        );
        // The host that waited longest is the one broken down.
        let b = breakdown(5.0, &sent, &[]);
        assert_eq!(b["first_run_host"], "wok01");
        assert_eq!(b["first_run_package_manager_s"], 4.2);
        assert_eq!(b["first_run_package_manager_commands"], 1);
        assert_eq!(b["first_run_generators_s"], 0.0);
        assert_eq!(b["first_run_nodeprep_s"], round(5.0 - 4.586, 3));
        // With its recap, the host's own time: a host that waited for its turn among the
        // forks does not count the wait as nodeprep's.
        let recaps = [json!({"event": "recap", "host": "wok01", "duration_ms": 4700})];
        let b = breakdown(9.0, &sent, &recaps);
        assert_eq!(b["first_run_host_s"], 4.7);
        assert_eq!(b["first_run_nodeprep_s"], round(4.7 - 4.586, 3));
        assert_eq!(
            b["first_run_slowest"][0]["command"],
            "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q locales kbd"
        );
    }

    #[test]
    fn kinds_of_work() {
        for (cmd, kind) in [
            ("tdnf install -y --quiet kbd glibc-i18n", "package_manager"),
            (
                "apt-get update -q -o DPkg::Lock::Timeout=120",
                "package_manager",
            ),
            ("update-ca-certificates", "generators"),
            ("sysctl --system", "generators"),
            ("locale-gen.sh", "generators"),
            ("hostnamectl set-hostname wok01", "services"),
            ("sh -s", "probes"),
            ("useradd -m kubeadmin", "other_commands"),
        ] {
            assert_eq!(kind_of(cmd), kind, "{cmd}");
        }
    }

    #[test]
    fn stats_and_inventory() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        let dir = tempfile::tempdir().unwrap();
        let inv = simulated_inventory(dir.path(), 300).unwrap();
        let inv = playbooks::Inventory::load(&inv).unwrap();
        assert_eq!(inv.hosts.len(), 300);
        assert_eq!(inv.hosts["sim00300"].address, "127.0.1.50");
    }

    /// A real child: its exit, its output, its CPU time and memory as the kernel counted them.
    #[test]
    fn a_child_is_measured() {
        let m = run_measured(
            Path::new("sh"),
            &os(&[
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done",
            ]),
            None,
        )
        .unwrap();
        assert!(m.success);
        assert_eq!(m.stdout, "done\n");
        assert!(m.cpu > Duration::ZERO && m.cpu <= m.wall + Duration::from_millis(50));
        assert!(m.peak > 100 * 1024, "{} bytes", m.peak);
    }
}
