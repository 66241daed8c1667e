//! The run context: host, facts, state cache, mode, and the record of every step.

mod cache;
mod hostname;
mod lock;
mod owned;
pub(crate) mod packages;
mod record;
mod write;

pub use lock::{LockHolder, this_pid_space};
pub use owned::as_user;
pub use record::{Action, Change, Event, Outcome, Record, Sink};

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::facts::Facts;
use crate::host::{Cmd, Host, Output};

use crate::state::{self, Probe, State};
use lock::LockSeen;
use record::Current;

/// A handle on a step declared in a [`crate::plan::Plan`], for handlers: [`Ctx::changed`]
/// tells whether that step changed something in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef(pub(crate) usize);

/// Apply changes, or only say what would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Apply,
    Check,
}

/// Run settings.
#[derive(Clone, Default)]
pub struct Options {
    pub mode: Mode,
    /// Compute diffs of changed files (always on in check mode).
    pub diff: bool,
    /// What the run reads in its first round trip: the reads its steps declare (see
    /// [`crate::plan::Plan::probe`]).
    pub probe: Probe,
    /// Receives events as they happen.
    pub sink: Option<Sink>,
    /// Keep a copy of every replaced file under /var/backups/nodeprep (on by default in the runner).
    pub backup: bool,
    /// Take the host's run lock (/run/nodeprep.lock) before the run's first change, naming
    /// this holder: a second runner on the same host then fails with "busy", and so does a
    /// run that finds the host changed by another one since its probe. A run that changes
    /// nothing never takes it. Released when the Ctx is dropped.
    pub lock: Option<LockHolder>,
    /// Tells whether a lock holder is gone (its runner died), e.g. [`LockHolder::is_gone`];
    /// such a lock is broken and taken (so is one this very run holds).
    pub lock_is_stale: Option<fn(&LockHolder) -> bool>,
    /// Whether the machine reached is the host meant, from its identity facts (`hostname`,
    /// `addresses`, `machine-id` in the state's facts): `Err` is the refusal, for the
    /// operator. Asked before anything is changed, and before any secret goes to the host:
    /// a host whose first command as root would carry sudo's password
    /// ([`Host::sends_secret`]) is first asked for those facts alone, as the login user.
    pub identity: Option<IdentityCheck>,
    /// How long a command sent to the host may run before it is stopped (and the host's run
    /// ends there).
    pub timeouts: Timeouts,
}

/// The time limits of the commands sent to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Package transactions and package list refreshes (apt-get, dnf, tdnf, yum, dpkg, rpm),
    /// which download, maybe through a proxy.
    pub package: Duration,
    /// Every other command, the probe included.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            package: crate::host::DEFAULT_PACKAGE_TIMEOUT,
            command: crate::host::DEFAULT_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The limit of `cmd`: its own, else the package one for a package manager, else the
    /// command one.
    pub fn of(&self, cmd: &Cmd) -> Duration {
        if let Some(own) = cmd.timeout {
            return own;
        }
        let program = cmd.argv.first().map(String::as_str).unwrap_or("");
        let program = program.rsplit('/').next().unwrap_or(program);
        match program {
            "apt-get" | "apt" | "dpkg" | "dnf" | "tdnf" | "yum" | "rpm" => self.package,
            _ => self.command,
        }
    }
}

/// See [`Options::identity`].
pub type IdentityCheck =
    std::sync::Arc<dyn Fn(&State) -> std::result::Result<(), String> + Send + Sync>;

pub struct Ctx {
    host: Box<dyn Host>,
    facts: Facts,
    state: State,
    opts: Options,
    records: Vec<Record>,
    current: Option<Current>,
    commands: u32,
    remote: Duration,
    actions: Vec<Action>,
    stamp: u64,
    flags: RunFlags,
    /// Steps of the running plan that changed something (for handlers).
    changed: std::collections::BTreeSet<usize>,
    /// Paths read after the probe, one round trip each time: reads a step did not declare.
    misses: Vec<String>,
    /// Why the host must reboot for what this run did to take effect (a newer kernel).
    reboot: Option<String>,
    /// What the run knows of the host's packages beyond the cache (the package lists'
    /// freshness, the one transaction's packages), for the package tasks ([`crate::pkg`]).
    packages_run: packages::RunPackages,
    /// The run lock as the probe saw it.
    lock_seen: LockSeen,
    /// Paths in a user's own directories → that user: read and written as the user
    /// (`owned.rs`), never read again as root.
    as_user: std::collections::BTreeMap<String, String>,
}

/// What a run has done to a host so far that changes how it reads it. Kept by the engine,
/// never by tasks.
#[derive(Debug, Clone, Copy, Default)]
struct RunFlags {
    /// This run holds the host's lock (released on close).
    locked: bool,
    /// A package install may have brought unit files: unit states are read again.
    units_stale: bool,
}

impl Ctx {
    /// Connects: runs the state probe (facts and state in one round trip). A lock another
    /// run holds is an error then, unless its holder is gone (broken when this run takes it).
    pub fn connect(host: Box<dyn Host>, opts: Options) -> Result<Ctx> {
        let mut probe = opts.probe.clone();
        probe.lock = opts.lock.as_ref().map(LockHolder::line);
        let start = Instant::now();
        let mut commands = 1;
        let mut identity = opts.identity.as_ref();
        if let Some(check) = identity.filter(|_| host.sends_secret()) {
            // Who the host is, asked as the login user: the secret waits for the answer.
            let cmd = Cmd::new(&["sh", "-s"])
                .stdin(state::identity_script())
                .timeout(opts.timeouts.command);
            let out = host.exec_unprivileged(&cmd)?;
            if !out.success() {
                return Err(crate::host::command_failed(&cmd, &out).on_host(host.name()));
            }
            let seen = state::parse_probe(&out.stdout_str(), &Probe::default())
                .map_err(|e| e.on_host(host.name()))?;
            check(&seen)
                .map_err(|why| Error::new(ErrorKind::Identity, why).on_host(host.name()))?;
            identity = None;
            commands += 1;
        }
        let mut state = run_probe(host.as_ref(), &probe, opts.timeouts.command)?;
        if let Some(check) = identity {
            check(&state)
                .map_err(|why| Error::new(ErrorKind::Identity, why).on_host(host.name()))?;
        }
        let lock = LockSeen::from_probe(&mut state, &opts).map_err(|e| e.on_host(host.name()))?;
        let remote = start.elapsed();
        tracing::debug!(
            host = host.name(),
            elapsed_ms = remote.as_millis() as u64,
            "state probe ({} files)",
            probe.files.len()
        );
        let facts = facts_from_state(&state).map_err(|e| e.on_host(host.name()))?;
        let mut cx = Ctx::with_state(host, facts, state, opts);
        cx.commands = commands;
        cx.remote = remote;
        cx.lock_seen = lock;
        Ok(cx)
    }

    /// A context over a known state: what tests use to feed recorded facts. A host name the
    /// state holds (the probe's answer, as an earlier run left it) is the host's name.
    pub fn with_state(host: Box<dyn Host>, mut facts: Facts, state: State, opts: Options) -> Ctx {
        if let Some(name) = state.facts.hostname.clone() {
            facts.hostname = name;
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ctx {
            host,
            facts,
            state,
            opts,
            records: Vec::new(),
            current: None,
            commands: 0,
            remote: Duration::ZERO,
            actions: Vec::new(),
            stamp,
            flags: RunFlags::default(),
            changed: Default::default(),
            misses: Vec::new(),
            reboot: None,
            packages_run: Default::default(),
            lock_seen: LockSeen::default(),
            as_user: Default::default(),
        }
    }

    /// What the running plan reads (refreshed after a package install).
    pub(crate) fn set_reads(&mut self, probe: Probe) {
        self.opts.probe.files.extend(probe.files);
        self.opts.probe.units.extend(probe.units);
        self.opts.probe.programs.extend(probe.programs);
        self.opts.probe.dirs.extend(probe.dirs);
    }

    /// Whether the step `r` of the running plan changed something (for handlers: restart
    /// a service when its configuration changed). A step left out by `--only`/`--skip`
    /// changed nothing.
    pub fn changed(&self, r: StepRef) -> bool {
        self.changed.contains(&r.0)
    }

    pub(crate) fn mark_changed(&mut self, r: StepRef) {
        self.changed.insert(r.0);
    }

    pub fn host_name(&self) -> &str {
        self.host.name()
    }

    /// The host must be rebooted for the run's changes to take effect (a kernel newer than the
    /// running one was installed): `why` is shown in the host's recap. The first reason stays.
    pub fn require_reboot(&mut self, why: impl Into<String>) {
        if self.reboot.is_none() {
            self.reboot = Some(why.into());
        }
    }

    /// Why the host needs a reboot, when a step said so.
    pub fn reboot_required(&self) -> Option<&str> {
        self.reboot.as_deref()
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn check_mode(&self) -> bool {
        self.opts.mode == Mode::Check
    }

    /// Commands sent to the host so far (the probe included).
    pub fn commands_sent(&self) -> u32 {
        self.commands
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Releases the run lock (if this run took it) and the connection. Also done on drop.
    pub fn close(&mut self) {
        self.release_lock();
        self.host.close();
    }

    /// Sends one command to the host, counting it and the time spent waiting on the host.
    /// `check`: a non-zero exit is an error.
    fn send(&mut self, cmd: &Cmd, check: bool) -> Result<Output> {
        self.commands += 1;
        let start = Instant::now();
        let timed;
        let cmd = if cmd.timeout.is_none() {
            timed = cmd.clone().timeout(self.opts.timeouts.of(cmd));
            &timed
        } else {
            cmd
        };
        let out = if check {
            self.host.run(cmd)
        } else {
            self.host.exec(cmd)
        };
        let out = out.map_err(|e| limit_named(e, cmd));
        self.remote += start.elapsed();
        // The command line only: stdin (where secrets travel) is never logged.
        tracing::debug!(
            host = self.host.name(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "sent {}",
            short_display(cmd)
        );
        out
    }

    /// Time spent waiting on the host (transport included).
    pub fn remote_time(&self) -> Duration {
        self.remote
    }

    /// Runs a read-only command (always, also in check mode).
    pub fn query(&mut self, argv: &[&str]) -> Result<Output> {
        self.send(&Cmd::new(argv), false)
    }

    /// Runs a command that changes the host; in check mode it is only recorded. Fails on a
    /// non-zero exit. Returns `None` in check mode.
    pub fn apply(&mut self, argv: &[&str]) -> Result<Option<Output>> {
        self.apply_cmd(Cmd::new(argv))
    }

    /// As [`Ctx::apply`], with stdin.
    pub fn apply_cmd(&mut self, cmd: Cmd) -> Result<Option<Output>> {
        self.record_action(Action::Run(cmd.display()));
        if self.check_mode() {
            return Ok(None);
        }
        self.lock_before_change()?;
        self.send(&cmd, true).map(Some)
    }

    /// As [`Ctx::apply`] but a non-zero exit is returned, not raised.
    pub fn apply_unchecked(&mut self, argv: &[&str]) -> Result<Option<Output>> {
        let cmd = Cmd::new(argv);
        self.record_action(Action::Run(cmd.display()));
        if self.check_mode() {
            return Ok(None);
        }
        self.lock_before_change()?;
        self.send(&cmd, false).map(Some)
    }

    /// As [`Ctx::apply`], for a command that changes files in ways the cache cannot follow
    /// (`useradd` picks ids, a script fetches a keyring): once it ran, `paths` are forgotten
    /// and read again when next needed. In check mode nothing ran and nothing is forgotten.
    pub fn apply_touching(&mut self, argv: &[&str], paths: &[&str]) -> Result<Option<Output>> {
        let out = self.apply(argv)?;
        if !self.check_mode() {
            self.forget(paths);
        }
        Ok(out)
    }

    /// As [`Ctx::apply`], for a command that creates `path` with contents the run does not
    /// follow (a keyring a script fetches and dearmors): once it ran, `path` is read again
    /// when next needed. In check mode nothing ran: `path` counts as present (0644 root:root,
    /// contents unknown, read as empty) so that later steps plan against it, as installed
    /// packages count as present with their version unknown.
    pub fn apply_creating(&mut self, argv: &[&str], path: &str) -> Result<Option<Output>> {
        let out = self.apply_touching(argv, &[path])?;
        if self.check_mode() {
            self.known(path, "");
        }
        Ok(out)
    }

    /// The run's package knowledge beyond the cache, for the package tasks ([`crate::pkg`]).
    pub(crate) fn packages_run(&mut self) -> &mut packages::RunPackages {
        &mut self.packages_run
    }
}

/// A command as the `-vv` log shows it: whole (an install names every package), unless it
/// carries an inline script (a line break in its arguments), cut at 200 characters.
fn short_display(cmd: &Cmd) -> String {
    let shown = cmd.display();
    if !shown.contains('\n') {
        return shown;
    }
    match shown.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &shown[..i]),
        None => shown,
    }
}

/// A limit met (time, output) names the command that met it.
fn limit_named(e: crate::error::Error, cmd: &Cmd) -> crate::error::Error {
    if e.kind() != crate::error::ErrorKind::Limit {
        return e;
    }
    let what = match cmd.argv.as_slice() {
        [sh, s] if sh == "sh" && s == "-s" => "the state probe".to_string(),
        _ => format!("`{}`", short_display(cmd)),
    };
    let mut named = crate::error::Error::new(e.kind(), format!("{what}: {}", e.message()));
    if let Some(host) = e.host() {
        named = named.on_host(host);
    }
    named
}

fn run_probe(host: &dyn Host, probe: &Probe, timeout: Duration) -> Result<State> {
    let cmd = Cmd::new(&["sh", "-s"])
        .stdin(state::probe_script(probe))
        .timeout(timeout);
    let out = host.run(&cmd).map_err(|e| limit_named(e, &cmd))?;
    state::parse_probe(&out.stdout_str(), probe).map_err(|e| e.on_host(host.name()))
}

fn facts_from_state(state: &State) -> Result<Facts> {
    let os_release = state.facts.os_release.as_deref().unwrap_or("");
    let mut facts = Facts::from_os_release(os_release)?;
    facts.systemd = state.facts.systemd;
    facts.container = state.facts.container.clone();
    facts.hostname = state.facts.hostname.clone().unwrap_or_default();
    Ok(facts)
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.flags.locked {
            self.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that changes files the cache cannot follow makes the engine read them again;
    /// in check mode nothing ran, and the cache stays as probed.
    #[test]
    fn apply_touching_forgets_only_what_ran() {
        for (mode, forgotten) in [(Mode::Apply, true), (Mode::Check, false)] {
            let (mut cx, _rec) = crate::testing::Fixture::photon().ctx(mode);
            cx.apply_touching(&["useradd", "ops"], &["/etc/passwd", "/etc/group"])
                .unwrap();
            assert_eq!(!cx.state().files.contains_key("/etc/passwd"), forgotten);
            assert_eq!(!cx.state().files.contains_key("/etc/group"), forgotten);
            assert!(cx.state().files.contains_key("/etc/shadow"));
            assert_eq!(cx.actions().len(), 1);
        }
    }

    /// Package managers get the package time limit, everything else the command one; a
    /// command's own limit wins; every command the engine sends carries one.
    #[test]
    fn every_command_has_a_time_limit() {
        let t = Timeouts {
            package: Duration::from_secs(1800),
            command: Duration::from_secs(7),
        };
        assert_eq!(
            t.of(&Cmd::new(&["apt-get", "install", "-y", "x"])),
            t.package
        );
        assert_eq!(
            t.of(&Cmd::new(&["/usr/bin/tdnf", "install", "x"])),
            t.package
        );
        assert_eq!(t.of(&Cmd::new(&["sh", "-s"])), t.command);
        let own = Cmd::new(&["dnf", "x"]).timeout(Duration::from_secs(3));
        assert_eq!(t.of(&own), Duration::from_secs(3));
        let (mut cx, rec) = crate::testing::Fixture::photon().ctx(Mode::Apply);
        cx.opts.timeouts = t;
        cx.apply(&["true"]).unwrap();
        cx.apply_unchecked(&["tdnf", "makecache"]).unwrap();
        let limits: Vec<_> = rec.commands().iter().map(|c| c.timeout).collect();
        assert_eq!(limits, [Some(t.command), Some(t.package)]);
    }

    /// A host whose first command as root would carry sudo's password: it is asked who it is
    /// as the login user first, and a refused one gets no command as root at all; an
    /// accepted one gets the probe. Without a secret, the probe alone answers (one command).
    #[test]
    fn a_secret_goes_only_to_a_host_that_proved_who_it_is() {
        use crate::host::Local;
        use std::sync::{Arc, Mutex};
        struct Guarded {
            secret: bool,
            inner: Local,
            as_root: Mutex<Vec<String>>,
            as_login: Mutex<u32>,
        }
        impl Host for Guarded {
            fn name(&self) -> &str {
                "h"
            }
            fn exec(&self, cmd: &Cmd) -> Result<Output> {
                self.as_root.lock().unwrap().push(cmd.display());
                self.inner.exec(cmd)
            }
            fn sends_secret(&self) -> bool {
                self.secret
            }
            fn exec_unprivileged(&self, cmd: &Cmd) -> Result<Output> {
                *self.as_login.lock().unwrap() += 1;
                self.inner.exec(cmd)
            }
        }
        let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let here = here.trim().to_string();
        for (secret, accept) in [(true, false), (true, true), (false, false), (false, true)] {
            let host = Arc::new(Guarded {
                secret,
                inner: Local::new("h"),
                as_root: Mutex::default(),
                as_login: Mutex::default(),
            });
            let want = if accept {
                here.clone()
            } else {
                "elsewhere".into()
            };
            let seen = Arc::new(Mutex::new(Vec::new()));
            let seen_by_check = seen.clone();
            let opts = Options {
                identity: Some(Arc::new(move |s: &State| {
                    let name = s.facts.hostname.as_ref().map(|h| h.trim().to_string());
                    seen_by_check.lock().unwrap().push(name.clone());
                    if name.as_deref() == Some(want.as_str()) {
                        Ok(())
                    } else {
                        Err(format!("not {want}"))
                    }
                })),
                ..Options::default()
            };
            let got = Ctx::connect(Box::new(host.clone()), opts);
            let case = format!("secret {secret}, accepted {accept}");
            assert_eq!(
                *seen.lock().unwrap(),
                [Some(here.clone())],
                "{case}: checked once, on the host's own answer"
            );
            assert_eq!(*host.as_login.lock().unwrap(), u32::from(secret), "{case}");
            let as_root = host.as_root.lock().unwrap().len();
            match got {
                Ok(cx) => {
                    assert!(accept, "{case}");
                    assert_eq!(as_root, 1, "{case}: the probe");
                    assert_eq!(cx.commands_sent(), 1 + u32::from(secret), "{case}");
                }
                Err(e) => {
                    assert!(!accept, "{case}: {e}");
                    assert_eq!(e.kind(), ErrorKind::Identity, "{case}");
                    assert!(e.to_string().contains("not elsewhere"), "{case}: {e}");
                    let expected = if secret { 0 } else { 1 };
                    assert_eq!(as_root, expected, "{case}: commands as root");
                }
            }
        }
    }

    #[test]
    fn logged_commands_whole_scripts_cut() {
        let names: Vec<String> = (0..40).map(|i| format!("package-{i}")).collect();
        let mut argv = vec!["apt-get", "install", "-y"];
        argv.extend(names.iter().map(String::as_str));
        let shown = short_display(&Cmd::new(&argv));
        assert!(shown.ends_with(" package-39"), "{shown}");
        let script = format!("set -eu\n{}", "true\n".repeat(100));
        let shown = short_display(&Cmd::new(&["sh", "-c", &script]));
        assert!(
            shown.ends_with('…') && shown.chars().count() == 201,
            "{shown}"
        );
    }
}
