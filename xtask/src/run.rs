//! `cargo xtask run`: one playbook over the selected hosts, in parallel (at most `--forks` at
//! once). A failure on one host never stops the others.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use playbooks::{Inventory, Playbook, Target};
use tasks::host::{Local, Ssh, SshConfig};
use tasks::{Ctx, ErrorKind, Host, Mode, Options, Outcome, Record};

use crate::cli::RunArgs;
use crate::output::Printer;
use crate::select;

/// Every host done, every step ok, changed or skipped.
pub const EXIT_OK: u8 = 0;
/// Bad input: command line, inventory, unknown playbook or host; nothing was touched.
pub const EXIT_BAD_INPUT: u8 = 1;
/// A step failed on at least one host.
pub const EXIT_FAILED: u8 = 2;
/// At least one host could not be reached (whatever happened on the others).
pub const EXIT_UNREACHABLE: u8 = 3;

/// What happened on one host.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub host: String,
    pub records: Vec<Record>,
    /// Set when the host could not be reached, or the run stopped on an error.
    pub error: Option<(ErrorKind, String)>,
    pub duration: Duration,
    pub commands: u32,
    /// Time spent waiting on the host (commands and transport); the rest is nodeprep's own.
    pub remote: Duration,
}

impl HostReport {
    pub fn unreachable(&self) -> bool {
        matches!(self.error, Some((ErrorKind::Unreachable, _)))
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self
                .records
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    pub fn count(&self, label: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.outcome.label() == label)
            .count()
    }
}

pub fn run(args: &RunArgs) -> Result<u8> {
    let Some(playbook) = playbooks::find(&args.playbook) else {
        let names: Vec<&str> = playbooks::all().iter().map(|p| p.name).collect();
        bail!(
            "no playbook `{}` (known: {})",
            args.playbook,
            names.join(", ")
        );
    };
    for step in args.only.iter().chain(&args.skip) {
        if !playbook.steps.contains(&step.as_str()) {
            bail!(
                "playbook {} has no step `{step}` (see `cargo xtask playbooks`)",
                playbook.name
            );
        }
    }
    if args.forks == 0 {
        bail!("--forks must be at least 1");
    }
    if args.local {
        return run_local(args, playbook);
    }
    let inv = match select::load(&args.select.inv) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let names = select::select(&inv, &args.select)?;
    if let Some(role) = playbook.role {
        let wrong: Vec<String> = names
            .iter()
            .filter(|n| inv.hosts[**n].role != role)
            .map(|n| format!("{n} ({})", inv.hosts[*n].role))
            .collect();
        if !wrong.is_empty() && !args.force {
            bail!(
                "playbook {} is for role {role}; refusing {} (use --force to run it anyway)",
                playbook.name,
                wrong.join(", ")
            );
        }
    }
    let printer = Printer::new(args.json, args.diff || args.check);
    let reports = fan_out(&inv, &names, playbook, args, &printer);
    printer.recap(&reports, args.check);
    Ok(exit_code(&reports))
}

pub fn exit_code(reports: &[HostReport]) -> u8 {
    if reports.iter().any(HostReport::unreachable) {
        EXIT_UNREACHABLE
    } else if reports.iter().any(HostReport::failed) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn options(args: &RunArgs, printer: &Printer) -> Options {
    Options {
        mode: if args.check { Mode::Check } else { Mode::Apply },
        diff: args.diff,
        only: args.only.clone(),
        skip: args.skip.clone(),
        probe: Default::default(),
        sink: Some(printer.sink()),
        backup: !args.no_backup,
        // Apply runs take the host's lock; a check run reads only.
        lock: (!args.check).then(holder),
        lock_is_stale: Some(holder_is_gone),
    }
}

/// Who holds a host's lock during a run, as a second runner is told.
fn holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "nodeprep run by {user}@{} (pid {}, started at unix time {since})",
        host.trim(),
        std::process::id()
    )
}

/// A lock taken by a runner of this machine whose process is gone (killed) is stale; one
/// from another machine is never judged from here.
fn holder_is_gone(holder: &str) -> bool {
    let this = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let Some(rest) = holder.strip_prefix("nodeprep run by ") else {
        return false;
    };
    let Some((who, after)) = rest.split_once(" (pid ") else {
        return false;
    };
    let host = who.rsplit_once('@').map(|(_, h)| h).unwrap_or("");
    let pid: u32 = after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    host == this.trim()
        && pid != 0
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `playbook` on every named host, `--forks` at a time.
pub fn fan_out(
    inv: &Inventory,
    names: &[&str],
    playbook: &Playbook,
    args: &RunArgs,
    printer: &Printer,
) -> Vec<HostReport> {
    let queue = Mutex::new(
        names
            .iter()
            .copied()
            .enumerate()
            .collect::<Vec<_>>()
            .into_iter(),
    );
    let results: Mutex<Vec<(usize, HostReport)>> = Mutex::new(Vec::new());
    let workers = args.forks.min(names.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((i, name)) = next else { break };
                    let target = inv.target(name).expect("selected from the inventory");
                    let host = ssh_host(inv, &target);
                    let report = run_one(host, &target, playbook, options(args, printer));
                    printer.host_done(&report);
                    results.lock().unwrap().push((i, report));
                }
            });
        }
    });
    let mut out = results.into_inner().unwrap();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn ssh_host(inv: &Inventory, t: &Target) -> tasks::Result<Box<dyn Host>> {
    let mut cfg = SshConfig::new(t.name, &t.host.address);
    cfg.port = t.host.port.unwrap_or(inv.ssh.port);
    cfg.user = t.host.user.clone().unwrap_or_else(|| inv.ssh.user.clone());
    cfg.identity_file = inv
        .ssh
        .identity_file
        .as_ref()
        .map(|p| inv.resolve(&expand_home(p)));
    cfg.known_hosts = inv
        .ssh
        .known_hosts
        .as_ref()
        .map(|p| inv.resolve(&expand_home(p)));
    cfg.accept_new_host_key = inv.ssh.accept_new_host_keys;
    cfg.prefer_fast_kex = inv.ssh.fast_kex;
    cfg.connect_timeout_secs = inv.ssh.connect_timeout;
    Ok(Box::new(Ssh::new(cfg)?))
}

fn expand_home(p: &std::path::Path) -> std::path::PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Connects, runs the playbook, closes; never panics the caller.
pub fn run_one(
    host: tasks::Result<Box<dyn Host>>,
    target: &Target,
    playbook: &Playbook,
    opts: Options,
) -> HostReport {
    let start = Instant::now();
    let name = target.name.to_string();
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            return HostReport {
                host: name,
                records: vec![],
                error: Some((e.kind(), e.to_string())),
                duration: start.elapsed(),
                commands: 0,
                remote: Duration::ZERO,
            };
        }
    };
    let mut opts = opts;
    opts.probe = std::mem::take(&mut opts.probe)
        .files(playbook.files)
        .files(&(playbook.probe)(target));
    let mut cx = match Ctx::connect(host, opts) {
        Ok(cx) => cx,
        Err(e) => {
            return HostReport {
                host: name,
                records: vec![],
                error: Some((e.kind(), e.to_string())),
                duration: start.elapsed(),
                commands: 1,
                remote: start.elapsed(),
            };
        }
    };
    let result = (playbook.run)(&mut cx, target);
    cx.close();
    HostReport {
        host: name,
        records: cx.records().to_vec(),
        error: result.err().map(|e| (e.kind(), e.to_string())),
        duration: start.elapsed(),
        commands: cx.commands_sent(),
        remote: cx.remote_time(),
    }
}

fn run_local(args: &RunArgs, playbook: &Playbook) -> Result<u8> {
    // The inventory is optional here: its settings are used when it exists and names this host.
    let path = select::inventory_path(&args.select.inv);
    let inv = if path.exists() {
        match select::load_path(&path) {
            Ok(inv) => inv,
            Err(code) => return Ok(code),
        }
    } else {
        playbooks::Inventory::parse("", &path).map_err(|p| anyhow::anyhow!("{p}"))?
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let name = args.select.hosts.first().cloned().unwrap_or(hostname);
    let fallback = playbooks::HostEntry {
        role: playbook.role.unwrap_or("k8s-worker").to_string(),
        address: "127.0.0.1".into(),
        port: None,
        user: None,
        zone: None,
        network: None,
    };
    let target = inv.target(&name).unwrap_or(Target {
        name: &name,
        host: &fallback,
        inventory: &inv,
    });
    let sudo = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) != Some("0"))
        })
        .unwrap_or(true);
    let printer = Printer::new(args.json, args.diff || args.check);
    let host: Box<dyn Host> = Box::new(Local::new(target.name).with_sudo(sudo));
    let report = run_one(Ok(host), &target, playbook, options(args, &printer));
    printer.host_done(&report);
    let reports = vec![report];
    printer.recap(&reports, args.check);
    Ok(exit_code(&reports))
}
