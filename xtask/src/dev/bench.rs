//! `cargo xtask bench`: the cost of a run, measured against fresh lab containers. For N = 1 and
//! N = 8 hosts: the first run of k8s-worker, then M no-op re-runs, each a real invocation of
//! this runner binary over ssh. Reports median, min and max wall time, and the remote commands
//! and ssh connections per host. The measurement itself takes any [`Testbed`].

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;
use xshell::Shell;

use super::BenchArgs;
use super::lab::{LAB_SETTINGS, Lab, install_kube_standins};
use super::testbed::Testbed;
use crate::runner::EXIT_OK;

struct Sample {
    hosts: usize,
    first_secs: f64,
    /// Of the first run, the longest time one host spent waiting on its commands (package
    /// installs mostly); the rest is nodeprep's own.
    first_remote_secs: f64,
    noop_secs: Vec<f64>,
    commands_per_host: f64,
    connections_per_host: f64,
}

pub fn bench(args: &BenchArgs) -> Result<u8> {
    let sh = Shell::new()?;
    super::prereq::ensure(&sh)?;
    let image = super::image::ensure(&sh)?;
    let exe = std::env::current_exe()?;
    let mut samples = Vec::new();
    for &n in &args.hosts {
        let names: Vec<String> = (1..=n).map(|i| format!("benchwok{i:02}")).collect();
        let hosts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "k8s-worker")).collect();
        eprintln!("bench: {n} host(s): starting containers");
        let lab = Lab::start(&sh, &image, "nodeprep-bench", &hosts)?;
        samples.push(measure(&lab, &exe, args.runs)?);
        drop(lab);
    }
    report(&samples, args.json);
    Ok(EXIT_OK)
}

/// The first run of k8s-worker on every host of `bed` (all of that role), then `runs` no-op
/// re-runs, each an invocation of the runner binary `exe`.
fn measure(bed: &dyn Testbed, exe: &Path, runs: usize) -> Result<Sample> {
    install_kube_standins(bed)?;
    let inv = bed.write_inventory(LAB_SETTINGS)?;
    let run = |label: &str| -> Result<(f64, Vec<serde_json::Value>)> {
        let start = Instant::now();
        let out = duct::cmd(exe, ["run", "k8s-worker", "--all", "--json", "--inventory"])
            .before_spawn({
                let inv = inv.clone();
                move |c| {
                    c.arg(&inv);
                    Ok(())
                }
            })
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()?;
        let secs = start.elapsed().as_secs_f64();
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if !out.status.success() {
            bail!(
                "{label} run failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok((secs, events))
    };
    let (first_secs, first_events) = run("first")?;
    let first_remote_secs = first_events
        .iter()
        .filter(|e| e["event"] == "recap")
        .filter_map(|e| e["remote_ms"].as_f64())
        .fold(0.0, f64::max)
        / 1000.0;
    let mut noop_secs = Vec::new();
    let mut commands = 0.0;
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
    for i in 0..runs {
        let (secs, events) = run("no-op")?;
        let recaps: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["event"] == "recap").collect();
        let changed: u64 = recaps
            .iter()
            .map(|r| r["changed"].as_u64().unwrap_or(0))
            .sum();
        if changed != 0 {
            bail!("no-op run {i} changed {changed} step(s): the playbook is not idempotent");
        }
        commands = recaps
            .iter()
            .map(|r| r["commands"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / recaps.len().max(1) as f64;
        noop_secs.push(secs);
    }
    let n = bed.hosts().len();
    Ok(Sample {
        hosts: n,
        first_secs,
        first_remote_secs,
        noop_secs,
        commands_per_host: commands,
        connections_per_host: (accepted()? - before) / (runs.max(1) * n) as f64,
    })
}

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

fn report(samples: &[Sample], as_json: bool) {
    if as_json {
        for s in samples {
            let (median, min, max) = stats(&s.noop_secs);
            println!(
                "{}",
                json!({
                    "hosts": s.hosts, "playbook": "k8s-worker", "first_run_s": s.first_secs, "first_run_waiting_on_hosts_s": s.first_remote_secs,
                    "noop_runs": s.noop_secs.len(), "noop_median_s": median, "noop_min_s": min, "noop_max_s": max,
                    "remote_commands_per_host": s.commands_per_host, "ssh_connections_per_host": s.connections_per_host,
                })
            );
        }
        return;
    }
    println!(
        "{:>5} {:>10} {:>13} {:>12} {:>9} {:>9} {:>14} {:>17}",
        "hosts",
        "first run",
        "nodeprep own",
        "no-op median",
        "min",
        "max",
        "commands/host",
        "connections/host"
    );
    for s in samples {
        let (median, min, max) = stats(&s.noop_secs);
        println!(
            "{:>5} {:>9.2}s {:>12.2}s {:>11.3}s {:>8.3}s {:>8.3}s {:>14.1} {:>17.0}",
            s.hosts,
            s.first_secs,
            (s.first_secs - s.first_remote_secs).max(0.0),
            median,
            min,
            max,
            s.commands_per_host,
            s.connections_per_host
        );
    }
    println!(
        "(nodeprep own: first run minus the longest time a host spent running commands, package installs included)"
    );
}
