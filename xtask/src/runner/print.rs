//! What the runner prints: one line per step prefixed by the host, diffs, the recap; or
//! JSON-lines events with `--json`; and the listings (hosts, playbooks, inventory check).
//! Tasks never print, and nothing else in the runner writes to stdout: everything comes
//! through here.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tasks::ctx::Sink;
use tasks::{Event, Outcome};

use playbooks::{Inventory, Registry, Target};

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
    out: Arc<Lines>,
}

/// How often lines gathered for a pipe or a file are written out.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
/// Gathered lines are written out at once past this many bytes.
const GATHER_MAX: usize = 256 * 1024;

/// The printer's lines, for as long as a printer (or a clone) lives: written to stdout as they
/// come on a terminal; gathered for a pipe or a file and written every [`FLUSH_EVERY`] by a
/// thread of their own, and when the printer goes (a run over many hosts prints thousands of
/// lines: one write each would be most of the printing's cost).
struct Lines {
    out: Arc<Out>,
}

struct Out {
    gather: bool,
    pending: Mutex<String>,
    /// Held while lines are written, so that they go out in order.
    writing: Mutex<()>,
    /// The printer is gone: the writing thread stops.
    done: std::sync::atomic::AtomicBool,
}

impl Out {
    fn line(&self, text: &str) {
        self.line_with(|out| out.push_str(text));
    }

    /// A line `write` writes: into the gathered lines themselves (no line of its own made
    /// first), or, on a terminal, out at once.
    fn line_with(&self, write: impl FnOnce(&mut String)) {
        if !self.gather {
            let mut line = String::new();
            write(&mut line);
            line.push('\n');
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
            return;
        }
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            write(&mut pending);
            pending.push('\n');
            pending.len() >= GATHER_MAX
        };
        if full {
            self.flush();
        }
    }

    /// Writes out the lines gathered so far.
    fn flush(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let lines = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes());
        let _ = out.flush();
    }
}

impl Lines {
    fn new() -> Lines {
        use std::io::IsTerminal;
        let out = Arc::new(Out {
            gather: !std::io::stdout().is_terminal(),
            pending: Mutex::new(String::new()),
            writing: Mutex::new(()),
            done: std::sync::atomic::AtomicBool::new(false),
        });
        if out.gather {
            let writer = out.clone();
            // Without the thread (none to be had), lines still go out past GATHER_MAX bytes
            // and when the printer goes.
            let _ = std::thread::Builder::new()
                .name("printer".into())
                .spawn(move || {
                    while !writer.done.load(std::sync::atomic::Ordering::Acquire) {
                        std::thread::sleep(FLUSH_EVERY);
                        writer.flush();
                    }
                });
        }
        Lines { out }
    }
}

impl Drop for Lines {
    /// The last lines are written before the printer is gone (before the process exits).
    fn drop(&mut self) {
        self.out
            .done
            .store(true, std::sync::atomic::Ordering::Release);
        self.out.flush();
    }
}

impl Printer {
    pub fn new(json: bool, diffs: bool) -> Printer {
        Printer {
            json,
            diffs,
            out: Arc::new(Lines::new()),
        }
    }

    /// The sink handed to each host's context.
    pub fn sink(&self) -> Sink {
        let p = self.clone();
        Arc::new(move |event: &Event| p.event(event))
    }

    fn line(&self, text: &str) {
        self.out.out.line(text);
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
                    self.line(&format!("{host} | ... {}", visible(message)));
                }
            }
            Event::StepFinished { host, record } => {
                if self.json {
                    let diffs = self.diffs;
                    self.out
                        .out
                        .line_with(|out| write_step_json(out, host, record, diffs));
                    return;
                }
                let detail = match &record.outcome {
                    Outcome::Skipped(why) => format!(" ({})", visible(why)),
                    Outcome::Failed(e) | Outcome::Operator(e) => format!("\n{}", indent(e, "    ")),
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
            return reports.iter().map(|r| recap_json(r, check)).collect();
        }
        let mut text = format!(
            "\nRECAP{}\n{:<16} {:>4} {:>8} {:>7} {:>8} {:>8} {:>12} {:>9}",
            if check {
                " (check mode: nothing was changed)"
            } else {
                ""
            },
            "HOST",
            "ok",
            "changed",
            "failed",
            "operator",
            "skipped",
            "unreachable",
            "time"
        );
        for r in reports {
            let failed = r.failures();
            text.push_str(&format!(
                "\n{:<16} {:>4} {:>8} {:>7} {:>8} {:>8} {:>12} {:>8.2}s",
                r.host,
                r.count("ok"),
                r.count("changed"),
                failed,
                r.count("operator"),
                r.count("skipped"),
                usize::from(r.unreachable()),
                r.duration.as_secs_f64()
            ));
        }
        for r in reports {
            if let Some(why) = &r.reboot_required {
                text.push_str(&format!("\n{}: reboot needed ({})", r.host, visible(why)));
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
        // What only someone outside the host can do: neither a failure nor drift.
        let waiting = reports.iter().filter(|r| r.count("operator") > 0).count();
        if waiting > 0 {
            text.push_str(&format!(
                "\n{waiting} host{} need{} an operator's action outside the host (the fix is above)",
                if waiting == 1 { "" } else { "s" },
                if waiting == 1 { "s" } else { "" }
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

/// The JSON line of a finished step, written field by field (see [`JsonLine`]): a run prints
/// one per step and host.
#[cfg(test)]
fn step_json(host: &str, record: &tasks::Record, diffs: bool) -> String {
    let mut line = String::new();
    write_step_json(&mut line, host, record, diffs);
    line
}

/// [`step_json`], written at the end of `out`.
fn write_step_json(out: &mut String, host: &str, record: &tasks::Record, diffs: bool) {
    // The fields every step has, their names written with the punctuation around them (the
    // outcome's label, a plain word, with its own).
    out.push_str("{\"event\":\"step\",\"host\":\"");
    json_escaped(out, host);
    out.push_str("\",\"step\":\"");
    json_escaped(out, &record.name);
    out.push_str(match record.outcome {
        Outcome::Ok => "\",\"outcome\":\"ok\",\"duration_ms\":",
        Outcome::Changed => "\",\"outcome\":\"changed\",\"duration_ms\":",
        Outcome::Skipped(_) => "\",\"outcome\":\"skipped\",\"duration_ms\":",
        Outcome::Failed(_) => "\",\"outcome\":\"failed\",\"duration_ms\":",
        Outcome::Operator(_) => "\",\"outcome\":\"operator\",\"duration_ms\":",
    });
    push_number(out, record.duration.as_millis() as u64);
    let mut j = JsonLine { out, first: false };
    match &record.outcome {
        Outcome::Skipped(why) => {
            j.str("reason", why);
        }
        Outcome::Failed(e) => {
            j.str("error", e);
        }
        Outcome::Operator(e) => {
            j.str("warning", e);
        }
        _ => {}
    }
    if !record.actions.is_empty() {
        let actions: Vec<String> = record.actions.iter().map(|a| a.to_string()).collect();
        j.strs("actions", &actions);
    }
    if diffs && !record.diffs.is_empty() {
        j.str("diff", &record.diffs.concat());
    }
    j.end();
}

/// The recap of one host as a JSON line.
fn recap_json(r: &HostReport, check: bool) -> String {
    // The outcomes counted in one pass.
    let (mut ok, mut changed, mut failed, mut skipped, mut operator) =
        (0u64, 0u64, 0usize, 0u64, 0u64);
    for rec in &r.records {
        match rec.outcome {
            Outcome::Ok => ok += 1,
            Outcome::Changed => changed += 1,
            Outcome::Failed(_) => failed += 1,
            Outcome::Skipped(_) => skipped += 1,
            Outcome::Operator(_) => operator += 1,
        }
    }
    // As `HostReport::failures` counts them: an error outside any step counts once.
    let failures = failed + usize::from(r.error.is_some() && !r.unreachable() && failed == 0);
    let mut line = String::with_capacity(320);
    let mut j = JsonLine::open(&mut line);
    j.str("event", "recap")
        .str("host", &r.host)
        .num("ok", ok)
        .num("changed", changed)
        .num("failed", failures as u64)
        .num("operator", operator)
        .num("skipped", skipped)
        .num("not_selected", r.not_selected as u64)
        .bool("unreachable", r.unreachable())
        .bool("refused", r.refused())
        .num("duration_ms", r.duration.as_millis() as u64)
        .num("commands", u64::from(r.commands))
        .num("remote_ms", r.remote.as_millis() as u64)
        .bool("check", check)
        .bool("reboot_required", r.reboot_required.is_some())
        .opt_str("reboot_reason", r.reboot_required.as_deref());
    j.end();
    line
}

/// A JSON object written straight into its line, as serde_json writes it (compact, the fields
/// in the order given, strings escaped alike), with no map or value built first: the printer's
/// lines are most of what a run over many hosts writes.
struct JsonLine<'o> {
    out: &'o mut String,
    /// No field written yet.
    first: bool,
}

impl<'o> JsonLine<'o> {
    /// Opens an object at the end of `out`.
    fn open(out: &'o mut String) -> JsonLine<'o> {
        out.push('{');
        JsonLine { out, first: true }
    }

    /// Opens the field `key`: a name of this file's, written as it is (nothing to escape).
    fn key(&mut self, key: &str) -> &mut String {
        self.out.push_str(if std::mem::take(&mut self.first) {
            "\""
        } else {
            ",\""
        });
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    fn str(&mut self, key: &str, value: &str) -> &mut Self {
        json_string(self.key(key), value);
        self
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => {
                self.key(key).push_str("null");
                self
            }
        }
    }

    fn strs(&mut self, key: &str, values: &[String]) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(out, v);
        }
        out.push(']');
        self
    }

    fn num(&mut self, key: &str, value: u64) -> &mut Self {
        push_number(self.key(key), value);
        self
    }

    fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// Closes the object.
    fn end(self) {
        self.out.push('}');
    }
}

/// `n` in decimal.
fn push_number(out: &mut String, n: u64) {
    // The digits, last first (most values here are a few milliseconds).
    let mut digits = [0u8; 20];
    let (mut n, mut at) = (n, digits.len());
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

/// `s` as a JSON string, escaped as serde_json escapes it: the quote, the backslash and the
/// control characters; everything else as it is.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    json_escaped(out, s);
    out.push('"');
}

/// The inside of [`json_string`]: `s` escaped, without the quotes.
fn json_escaped(out: &mut String, s: &str) {
    // A plain loop over the bytes: every line passes here.
    let bytes = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        // Every byte escaped is ASCII: a character boundary on either side.
        out.push_str(&s[plain..i - 1]);
        plain = i;
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{b:04x}");
                continue;
            }
        };
        out.push_str(escaped);
    }
    out.push_str(&s[plain..]);
}

/// `cargo xtask hosts`: one line per host.
pub fn hosts(inv: &Inventory, targets: &[Target]) {
    let mut out = format!(
        "{:<16} {:<11} {:<6} {:<22} NETWORK",
        "HOST", "ROLE", "ZONE", "SSH"
    );
    for &Target { name, host: h, .. } in targets {
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

/// The keys of `[vars]` and `[hosts.NAME.vars]` that no playbook's declared vars type reads:
/// warnings, like placeholders.
pub fn vars_unused(inv: &Inventory, unused: &[playbooks::inventory::Problem]) {
    for p in unused {
        let mut at = inv.path.display().to_string();
        if let Some(l) = p.line {
            at.push_str(&format!(":{l}"));
        }
        if let Some(h) = &p.host {
            at.push_str(&format!(": host {h}"));
        }
        println!("warning: {at}: {}: {}", p.field, p.message);
    }
}

/// `text`'s lines, each after `prefix`, control characters shown ([`visible`]): what a host
/// sent (an error's stderr, a file's diff) reaches the terminal as text.
fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{}", visible(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with its control characters escaped (`\x1b`, `\r`, `\u{9b}`), line breaks and tabs
/// kept: text that came from a host (a file's contents, a command's stderr, the lock's holder)
/// cannot move the cursor, recolour, retitle or rewrite the operator's terminal. JSON escapes
/// them itself.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    let shown = |c: char| c == '\n' || c == '\t' || !c.is_control();
    if text.chars().all(shown) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            _ if shown(c) => out.push(c),
            '\r' => out.push_str("\\r"),
            '\0'..='\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            _ => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host text reaches the terminal as text: ESC, CR, BEL, DEL and C1 controls shown
    /// escaped; line breaks and tabs (a diff's layout) and other characters kept.
    #[test]
    fn control_characters_are_shown_escaped() {
        assert!(matches!(
            visible("plain\ttext, é\n"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            visible("\x1b[2J\x1b]0;pwned\x07ok\rover\x7f\u{9b}31m\0"),
            "\\x1b[2J\\x1b]0;pwned\\x07ok\\rover\\x7f\\u{9b}31m\\x00"
        );
        let diff = "--- /etc/motd\n+++ /etc/motd\n-old\n+\x1b[31mred\x1b[0m\tx\n";
        let shown = indent(diff, "h |   ");
        assert!(!shown.contains('\x1b'), "{shown}");
        assert_eq!(
            shown,
            "h |   --- /etc/motd\nh |   +++ /etc/motd\nh |   -old\nh |   +\\x1b[31mred\\x1b[0m\tx"
        );
    }

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

    /// Lines for a pipe are gathered in order and written out together: every
    /// [`FLUSH_EVERY`], past [`GATHER_MAX`] bytes, and when the printer goes.
    #[test]
    fn lines_for_a_pipe_are_gathered() {
        let out = Out {
            gather: true,
            pending: Mutex::new(String::new()),
            writing: Mutex::new(()),
            done: std::sync::atomic::AtomicBool::new(false),
        };
        out.line("one");
        out.line("two");
        out.line_with(|line| line.push_str("three"));
        assert_eq!(*out.pending.lock().unwrap(), "one\ntwo\nthree\n");
        out.flush();
        assert!(out.pending.lock().unwrap().is_empty());
        let long = "x".repeat(GATHER_MAX);
        out.line(&long);
        assert!(out.pending.lock().unwrap().is_empty(), "written at once");
        let lines = Lines { out: Arc::new(out) };
        lines.out.line("last");
        let out = lines.out.clone();
        drop(lines);
        assert!(out.pending.lock().unwrap().is_empty());
        assert!(out.done.load(std::sync::atomic::Ordering::Acquire));
    }

    /// The JSON lines are serde_json's, byte for byte: strings with quotes, backslashes,
    /// control characters and other scripts; fields left out as serde leaves them out.
    #[test]
    fn json_lines_are_serde_jsons() {
        use std::time::Duration;
        use tasks::{Action, Record};
        for text in [
            "",
            "plain",
            "a \"quoted\" \\ path\n\ttab\r\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "é ü 日本 \u{2028} 🦀",
        ] {
            let mut line = String::new();
            json_string(&mut line, text);
            assert_eq!(line, serde_json::to_string(text).unwrap(), "{text:?}");
        }
        for n in [0, 7, 10, 99, 1000, 1234567, u64::MAX] {
            let mut line = String::new();
            let mut j = JsonLine::open(&mut line);
            j.num("n", n).bool("b", n == 0);
            j.end();
            assert_eq!(line, json!({"n": n, "b": n == 0}).to_string());
        }
        let record = |outcome: Outcome, actions: Vec<Action>, diffs: Vec<String>| Record {
            name: "time \"servers\"".into(),
            outcome,
            duration: Duration::from_millis(1234),
            diffs,
            actions,
        };
        let records = [
            record(Outcome::Ok, vec![], vec![]),
            record(
                Outcome::Changed,
                vec![Action::Run("systemctl restart a\tb".into())],
                vec!["--- a\n+++ b\n".into(), "x\n".into()],
            ),
            record(Outcome::Skipped("no \\ ntp".into()), vec![], vec![]),
            record(
                Outcome::Failed("broke:\n\"x\"".into()),
                vec![],
                vec!["d\n".into()],
            ),
            record(
                Outcome::Operator("govc vm.change -vm \"w\"".into()),
                vec![],
                vec![],
            ),
        ];
        for r in &records {
            for diffs in [false, true] {
                let (reason, error, warning) = match &r.outcome {
                    Outcome::Skipped(why) => (Some(why.clone()), None, None),
                    Outcome::Failed(e) => (None, Some(e.clone()), None),
                    Outcome::Operator(e) => (None, None, Some(e.clone())),
                    _ => (None, None, None),
                };
                let mut want = json!({
                    "event": "step",
                    "host": "wok01",
                    "step": r.name,
                    "outcome": r.outcome.label(),
                    "duration_ms": 1234,
                });
                if let Some(why) = reason {
                    want["reason"] = json!(why);
                }
                if let Some(e) = error {
                    want["error"] = json!(e);
                }
                if let Some(w) = warning {
                    want["warning"] = json!(w);
                }
                if !r.actions.is_empty() {
                    want["actions"] =
                        json!(r.actions.iter().map(|a| a.to_string()).collect::<Vec<_>>());
                }
                if diffs && !r.diffs.is_empty() {
                    want["diff"] = json!(r.diffs.concat());
                }
                assert_eq!(step_json("wok01", r, diffs), want.to_string());
            }
        }
        let mut r = report("wok\"01", Some("kernel 6.1"));
        r.records = records.to_vec();
        r.commands = 2;
        r.remote = Duration::from_millis(101);
        let early = |kind| HostReport::early("w2", kind, "no".into(), Duration::ZERO);
        for (r, check) in [
            (r.clone(), true),
            (report("w", None), false),
            (early(tasks::ErrorKind::Other), false),
            (early(tasks::ErrorKind::Unreachable), false),
        ] {
            let want = json!({
                "event": "recap",
                "host": r.host,
                "ok": r.count("ok"),
                "changed": r.count("changed"),
                "failed": r.failures(),
                "operator": r.count("operator"),
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
            });
            assert_eq!(recap_json(&r, check), want.to_string());
        }
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
