//! What the runner prints: one line per step prefixed by the host, diffs, the recap; or
//! JSON-lines events with `--json`; and the listings (hosts, playbooks, inventory check).
//! Tasks never print, and nothing else in the runner writes to stdout: everything comes
//! through here.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tasks::ctx::Sink;
use tasks::{Event, Outcome};

use playbooks::{Inventory, Registry};

use super::report::HostReport;

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only where a person reads them: not in a file, a pipe or a CI log.
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[derive(Clone)]
pub struct Printer {
    json: bool,
    diffs: bool,
    out: Arc<Mutex<()>>,
}

impl Printer {
    pub fn new(json: bool, diffs: bool) -> Printer {
        Printer {
            json,
            diffs,
            out: Arc::new(Mutex::new(())),
        }
    }

    /// The sink handed to each host's context.
    pub fn sink(&self) -> Sink {
        let p = self.clone();
        Arc::new(move |event: &Event| p.event(event))
    }

    fn line(&self, text: &str) {
        let _guard = self.out.lock().unwrap();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn event(&self, event: &Event) {
        match event {
            Event::StepStarted { host, name } => {
                tracing::info!(host = %host, step = %name, "step started");
            }
            Event::Progress { host, message } => {
                if self.json {
                    self.line(
                        &json!({"event": "progress", "host": host, "message": message}).to_string(),
                    );
                } else {
                    self.line(&format!("{host} | ... {message}"));
                }
            }
            Event::StepFinished { host, record } => {
                if self.json {
                    self.line(&step_json(host, record, self.diffs));
                    return;
                }
                let detail = match &record.outcome {
                    Outcome::Skipped(why) => format!(" ({why})"),
                    Outcome::Failed(e) => format!("\n{}", indent(e, "    ")),
                    _ => String::new(),
                };
                let mut text = format!(
                    "{host} | {:<8} {} [{:.2}s]{detail}",
                    record.outcome.label(),
                    record.name,
                    record.duration.as_secs_f64()
                );
                if self.diffs {
                    for d in &record.diffs {
                        text.push('\n');
                        text.push_str(&indent(d.trim_end(), &format!("{host} |   ")));
                    }
                }
                self.line(&text);
            }
        }
    }

    /// A host finished: say so when it ended on an error outside any step (unreachable).
    pub fn host_done(&self, r: &HostReport) {
        if let Some((kind, msg)) = &r.error {
            let in_step = r
                .records
                .iter()
                .any(|rec| matches!(rec.outcome, Outcome::Failed(_)));
            if self.json {
                self.line(&json!({"event": "host_error", "host": r.host, "kind": format!("{kind:?}").to_lowercase(), "error": msg}).to_string());
            } else if !in_step {
                let what = if r.unreachable() {
                    "UNREACHABLE"
                } else if r.refused() {
                    "REFUSED"
                } else {
                    "FAILED"
                };
                self.line(&format!("{} | {what}\n{}", r.host, indent(msg, "    ")));
            }
        }
    }

    pub fn recap(&self, reports: &[HostReport], check: bool) {
        for line in self.recap_lines(reports, check) {
            self.line(&line);
        }
    }

    /// The recap: a JSON event per host, or the table (with a line per host that must be
    /// rebooted).
    fn recap_lines(&self, reports: &[HostReport], check: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.json {
            for r in reports {
                out.push(
                    json!({
                        "event": "recap",
                        "host": r.host,
                        "ok": r.count("ok"),
                        "changed": r.count("changed"),
                        "failed": r.failures(),
                        "skipped": r.count("skipped"),
                        "not_selected": r.not_selected,
                        "unreachable": r.unreachable(),
                        "refused": r.refused(),
                        "duration_ms": r.duration.as_millis() as u64,
                        "commands": r.commands,
                        "remote_ms": r.remote.as_millis() as u64,
                        "check": check,
                        "reboot_required": r.reboot_required.is_some(),
                        "reboot_reason": r.reboot_required,
                    })
                    .to_string(),
                );
            }
            return out;
        }
        let mut text = format!(
            "\nRECAP{}\n{:<16} {:>4} {:>8} {:>7} {:>8} {:>12} {:>9}",
            if check {
                " (check mode: nothing was changed)"
            } else {
                ""
            },
            "HOST",
            "ok",
            "changed",
            "failed",
            "skipped",
            "unreachable",
            "time"
        );
        for r in reports {
            let failed = r.failures();
            text.push_str(&format!(
                "\n{:<16} {:>4} {:>8} {:>7} {:>8} {:>12} {:>8.2}s",
                r.host,
                r.count("ok"),
                r.count("changed"),
                failed,
                r.count("skipped"),
                usize::from(r.unreachable()),
                r.duration.as_secs_f64()
            ));
        }
        for r in reports {
            if let Some(why) = &r.reboot_required {
                text.push_str(&format!("\n{}: reboot needed ({why})", r.host));
            }
        }
        // Left out by --only/--skip: one line, not one per step.
        if let Some(n) = reports
            .iter()
            .map(|r| r.not_selected)
            .max()
            .filter(|n| *n > 0)
        {
            text.push_str(&format!(
                "\n{n} step{} of the playbook not selected (--only/--skip)",
                if n == 1 { "" } else { "s" }
            ));
        }
        // Drift, as `run --check` reports it in its exit code.
        let drifted = reports.iter().filter(|r| r.changed()).count();
        if check && drifted > 0 {
            text.push_str(&format!(
                "\nchanges pending on {drifted} of {} host{}",
                reports.len(),
                if reports.len() == 1 { "" } else { "s" }
            ));
        }
        out.push(text);
        out
    }
}

/// The JSON line of a finished step. Serialized from a struct, not built as a `Value`: a run
/// prints one per step and host, and a map per line is most of the runner's printing cost.
fn step_json(host: &str, record: &tasks::Record, diffs: bool) -> String {
    #[derive(serde::Serialize)]
    struct Step<'a> {
        event: &'static str,
        host: &'a str,
        step: &'a str,
        outcome: &'static str,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        actions: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    }
    let (reason, error) = match &record.outcome {
        Outcome::Skipped(why) => (Some(why.as_str()), None),
        Outcome::Failed(e) => (None, Some(e.as_str())),
        _ => (None, None),
    };
    let step = Step {
        event: "step",
        host,
        step: &record.name,
        outcome: record.outcome.label(),
        duration_ms: record.duration.as_millis() as u64,
        reason,
        error,
        actions: record.actions.iter().map(|a| a.to_string()).collect(),
        diff: (diffs && !record.diffs.is_empty()).then(|| record.diffs.concat()),
    };
    serde_json::to_string(&step).unwrap_or_default()
}

/// `cargo xtask hosts`: one line per host.
pub fn hosts(inv: &Inventory, names: &[&str]) {
    let mut out = format!(
        "{:<16} {:<11} {:<6} {:<22} NETWORK",
        "HOST", "ROLE", "ZONE", "SSH"
    );
    for name in names {
        let h = &inv.hosts[*name];
        let ssh = format!(
            "{}@{}:{}",
            h.user.as_deref().unwrap_or(&inv.ssh.user),
            h.address,
            h.port.unwrap_or(inv.ssh.port)
        );
        let net = h
            .network
            .as_ref()
            .map(|n| format!("{} {}", n.interface, n.cidr()))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "\n{name:<16} {:<11} {:<6} {ssh:<22} {net}",
            h.role,
            h.zone.as_deref().unwrap_or("-")
        ));
    }
    println!("{out}");
}

/// `cargo xtask playbooks`: each playbook with its steps, as its plan declares them for a
/// host of `inv`.
pub fn playbooks(registry: &Registry, inv: &Inventory) {
    for p in registry.all() {
        println!(
            "{}  ({}{})",
            p.name(),
            p.about(),
            p.role()
                .map(|r| format!("; role {}", r.name()))
                .unwrap_or_default()
        );
        match playbooks::listed_steps(p, inv) {
            Ok(steps) => {
                for (i, s) in steps.iter().enumerate() {
                    println!("  {:>2}. {s}", i + 1);
                }
            }
            Err(e) => println!("  (its steps depend on the inventory: {e})"),
        }
    }
}

/// `cargo xtask inventory check` on a valid inventory: ok, then a warning for each value
/// written as a placeholder, in file order.
pub fn inventory_ok(inv: &Inventory) {
    println!("{}: ok, {} hosts", inv.path.display(), inv.hosts.len());
    let mut placeholders: Vec<_> = inv.placeholders.iter().collect();
    placeholders.sort_by_key(|p| p.line);
    for p in placeholders {
        println!(
            "warning: {}: placeholder {}: confirm it (write the value alone); until then `run` refuses the plans that use it",
            p.located(&inv.path),
            p.value
        );
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, reboot: Option<&str>) -> HostReport {
        let mut r = HostReport::early(
            host,
            tasks::ErrorKind::Other,
            String::new(),
            Default::default(),
        );
        r.error = None;
        r.reboot_required = reboot.map(str::to_string);
        r
    }

    /// A host a newer kernel was installed on: its recap says it must reboot, in text and in
    /// JSON; the others say nothing of it.
    #[test]
    fn recap_says_reboot_needed() {
        let reports = [
            report(
                "prdk8swok511",
                Some("kernel 6.1.128-1.ph5-esx is installed, 6.1.10-11.ph5-esx is running"),
            ),
            report("prdk8swok512", None),
        ];
        let text = Printer::new(false, false)
            .recap_lines(&reports, false)
            .join("\n");
        assert!(
            text.contains("\nprdk8swok511: reboot needed (kernel 6.1.128-1.ph5-esx is installed, 6.1.10-11.ph5-esx is running)"),
            "{text}"
        );
        assert!(!text.contains("prdk8swok512: reboot"), "{text}");
        let json = Printer::new(true, false).recap_lines(&reports, false);
        let events: Vec<serde_json::Value> = json
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events[0]["reboot_required"], true);
        assert_eq!(
            events[0]["reboot_reason"],
            "kernel 6.1.128-1.ph5-esx is installed, 6.1.10-11.ph5-esx is running"
        );
        assert_eq!(events[1]["reboot_required"], false);
        assert!(events[1]["reboot_reason"].is_null());
    }
}
