//! The run context: host, facts, state cache, mode, and the record of every step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::facts::Facts;
use crate::host::{Cmd, Host, Output};
use crate::state::{self, FileState, Probe, State};

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

/// What a task did. `#[must_use]`: a handler decides on it (`if c.changed() { restart }`).
#[must_use = "a Change tells whether handlers must run"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Changed,
    /// Not done, with the reason (e.g. the kernel belongs to a container's host).
    Skipped(String),
}

impl Change {
    pub fn changed(&self) -> bool {
        matches!(self, Change::Changed)
    }

    pub fn from_bool(changed: bool) -> Change {
        if changed {
            Change::Changed
        } else {
            Change::Unchanged
        }
    }
}

impl std::ops::BitOr for Change {
    type Output = Change;
    /// Changed wins over Skipped, which wins over Unchanged.
    fn bitor(self, rhs: Change) -> Change {
        match (self, rhs) {
            (Change::Changed, _) | (_, Change::Changed) => Change::Changed,
            (Change::Skipped(a), _) => Change::Skipped(a),
            (_, Change::Skipped(b)) => Change::Skipped(b),
            _ => Change::Unchanged,
        }
    }
}

impl std::ops::BitOrAssign for Change {
    fn bitor_assign(&mut self, rhs: Change) {
        *self = std::mem::replace(self, Change::Unchanged) | rhs;
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Changed,
    Skipped(String),
    Failed(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Changed => "changed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// A modifying action, in the order it was (or, in check mode, would have been) taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A command that changes the host.
    Run(String),
    /// A file replaced (or created) with this mode and owner.
    Write {
        path: String,
        mode: u32,
        owner: String,
        group: String,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Run(cmd) => write!(f, "run {cmd}"),
            Action::Write {
                path,
                mode,
                owner,
                group,
            } => write!(f, "write {path} {mode:04o} {owner}:{group}"),
        }
    }
}

/// One step of a playbook, as recorded.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub outcome: Outcome,
    pub duration: Duration,
    /// Unified diffs of the files the step changed (or would change).
    pub diffs: Vec<String>,
    pub actions: Vec<Action>,
}

/// What the runner hears while a playbook runs.
#[derive(Debug, Clone)]
pub enum Event {
    StepStarted {
        host: String,
        name: String,
    },
    StepFinished {
        host: String,
        record: Record,
    },
    /// A long operation (package install, system update) is under way.
    Progress {
        host: String,
        message: String,
    },
}

pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

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
    /// Take the host's run lock (/run/nodeprep.lock) in the probe, naming this holder; a
    /// second runner on the same host then fails with "busy". Released when the Ctx is dropped.
    pub lock: Option<String>,
    /// Tells whether a lock holder is gone (its runner died), given the holder's description;
    /// such a lock is broken and taken.
    pub lock_is_stale: Option<fn(&str) -> bool>,
}

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
}

/// What a run has done to a host so far that changes how it reads it. Kept by the engine,
/// never by tasks.
#[derive(Debug, Clone, Copy, Default)]
struct RunFlags {
    /// This run holds the host's lock (released on close).
    locked: bool,
    /// `apt-get update` ran in this run.
    apt_updated: bool,
    /// A package install may have brought unit files: unit states are read again.
    units_stale: bool,
}

struct Current {
    name: String,
    diffs: Vec<String>,
    actions: Vec<Action>,
}

impl Ctx {
    /// Connects: runs the state probe (facts and state in one round trip).
    pub fn connect(host: Box<dyn Host>, opts: Options) -> Result<Ctx> {
        let mut probe = opts.probe.clone();
        probe.lock = opts.lock.clone();
        let start = Instant::now();
        let mut state = run_probe(host.as_ref(), &probe)?;
        if let Some(busy) = state.facts.remove("lock-busy") {
            let holder = busy.lines().next().unwrap_or("").to_string();
            match opts.lock_is_stale {
                Some(stale) if !holder.is_empty() && stale(&holder) => {
                    probe.break_lock = Some(holder);
                    state = run_probe(host.as_ref(), &probe)?;
                    if let Some(busy) = state.facts.remove("lock-busy") {
                        return Err(state::busy_error(&busy).on_host(host.name()));
                    }
                }
                _ => return Err(state::busy_error(&busy).on_host(host.name())),
            }
        }
        let locked = state.facts.remove("locked").is_some();
        let remote = start.elapsed();
        tracing::debug!(
            host = host.name(),
            elapsed_ms = remote.as_millis() as u64,
            "state probe ({} files)",
            probe.files.len()
        );
        let facts = facts_from_state(&state).map_err(|e| e.on_host(host.name()))?;
        let commands = if probe.break_lock.is_some() { 2 } else { 1 };
        let mut cx = Ctx::with_state(host, facts, state, opts);
        cx.commands = commands;
        cx.remote = remote;
        cx.flags.locked = locked;
        Ok(cx)
    }

    /// A context over a known state: what tests use to feed recorded facts.
    pub fn with_state(host: Box<dyn Host>, facts: Facts, state: State, opts: Options) -> Ctx {
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

    /// What was read after the first round trip because no step declared it: file paths,
    /// and `unit NAME` for unit states.
    pub fn misses(&self) -> &[String] {
        &self.misses
    }

    /// Something read outside the probe (a unit's state): logged at `-vv` and counted.
    pub(crate) fn note_miss(&mut self, what: String) {
        let step = self
            .current
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        tracing::debug!(
            host = self.host.name(),
            step = %step,
            "cache miss: {what} not declared in the step's reads; one more round trip"
        );
        self.misses.push(what);
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

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Every modifying action of the run, in order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Commands sent to the host so far (the probe included).
    pub fn commands_sent(&self) -> u32 {
        self.commands
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The cache, for the engine's primitives (files, packages, units) only: task families
    /// go through [`Ctx::file`], [`Ctx::write_file`], [`Ctx::forget`] and the primitives.
    pub(crate) fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// Releases the run lock (if this run took it) and the connection. Also done on drop.
    pub fn close(&mut self) {
        if std::mem::take(&mut self.flags.locked)
            && let Some(holder) = self.opts.lock.clone()
        {
            let _ = self.send(
                &Cmd::new(&["sh", "-c", &state::unlock_script(&holder)]),
                false,
            );
        }
        self.host.close();
    }

    /// Runs one named step, records its outcome and duration, and tells the sink.
    pub fn step(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Ctx) -> Result<Change>,
    ) -> Result<Change> {
        let start = Instant::now();
        self.emit(Event::StepStarted {
            host: self.host_name().to_string(),
            name: name.to_string(),
        });
        self.current = Some(Current {
            name: name.to_string(),
            diffs: Vec::new(),
            actions: Vec::new(),
        });
        let result = f(self);
        let cur = self.current.take().unwrap_or(Current {
            name: name.to_string(),
            diffs: Vec::new(),
            actions: Vec::new(),
        });
        let outcome = match &result {
            Ok(Change::Unchanged) => Outcome::Ok,
            Ok(Change::Changed) => Outcome::Changed,
            Ok(Change::Skipped(why)) => Outcome::Skipped(why.clone()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let record = Record {
            name: name.to_string(),
            outcome,
            duration: start.elapsed(),
            diffs: cur.diffs,
            actions: cur.actions,
        };
        self.records.push(record.clone());
        self.emit(Event::StepFinished {
            host: self.host_name().to_string(),
            record,
        });
        result.map_err(|e| e.on_host(self.host.name()))
    }

    /// Reports progress of a long operation.
    pub fn progress(&self, message: impl Into<String>) {
        self.emit(Event::Progress {
            host: self.host_name().to_string(),
            message: message.into(),
        });
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = &self.opts.sink {
            sink(&event);
        }
    }

    /// Sends one command to the host, counting it and the time spent waiting on the host.
    /// `check`: a non-zero exit is an error.
    fn send(&mut self, cmd: &Cmd, check: bool) -> Result<Output> {
        self.commands += 1;
        let start = Instant::now();
        let out = if check {
            self.host.run(cmd)
        } else {
            self.host.exec(cmd)
        };
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
        self.send(&cmd, true).map(Some)
    }

    /// As [`Ctx::apply`] but a non-zero exit is returned, not raised.
    pub fn apply_unchecked(&mut self, argv: &[&str]) -> Result<Option<Output>> {
        let cmd = Cmd::new(argv);
        self.record_action(Action::Run(cmd.display()));
        if self.check_mode() {
            return Ok(None);
        }
        self.send(&cmd, false).map(Some)
    }

    fn record_action(&mut self, action: Action) {
        if let Some(cur) = &mut self.current {
            cur.actions.push(action.clone());
        }
        self.actions.push(action);
    }

    pub(crate) fn record_diff(&mut self, diff: String) {
        if let Some(cur) = &mut self.current {
            cur.diffs.push(diff);
        }
    }

    pub fn diff_wanted(&self) -> bool {
        self.opts.diff || self.check_mode()
    }

    /// A file as the host has it (`None`: absent), through the cache.
    pub fn file(&mut self, path: &str) -> Result<Option<FileState>> {
        if let Some(known) = self.state.files.get(path) {
            return Ok(known.clone());
        }
        if self.state.files_complete {
            return Ok(None);
        }
        self.prefetch(&[path])?;
        Ok(self.state.files.get(path).cloned().flatten())
    }

    /// Reads into the cache, in one round trip, those of `paths` it does not know yet (for
    /// files known only at run time: a home directory, names from the inventory).
    pub fn prefetch(&mut self, paths: &[&str]) -> Result<()> {
        let missing: Vec<&str> = paths
            .iter()
            .copied()
            .filter(|p| !self.state.files.contains_key(*p))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.state.files_complete {
            for path in missing {
                self.state.files.insert(path.to_string(), None);
            }
            return Ok(());
        }
        let step = self
            .current
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        tracing::debug!(
            host = self.host.name(),
            step = %step,
            "cache miss: {} not declared in the step's reads; one more round trip",
            missing.join(" ")
        );
        self.misses.extend(missing.iter().map(|p| p.to_string()));
        let probe = Probe::default().files(&missing);
        let script = state::files_script(&missing);
        let out = self.send(&Cmd::new(&["sh", "-s"]).stdin(script), true)?;
        let read = state::parse_probe(&out.stdout_str(), &probe)
            .map_err(|e| e.on_host(self.host.name()))?;
        for path in missing {
            self.state
                .files
                .insert(path.to_string(), read.files.get(path).cloned().flatten());
        }
        Ok(())
    }

    /// The entry names of a directory, sorted (`None`: no such directory), through the cache.
    /// Declared directories are listed by the probe with their files read; any other costs
    /// one round trip (a miss, `dir PATH`), which reads its files too.
    pub fn dir(&mut self, path: &str) -> Result<Option<Vec<String>>> {
        if let Some(known) = self.state.dirs.get(path) {
            return Ok(known.clone());
        }
        if self.state.files_complete {
            return Ok(self.state.listing_from_files(path));
        }
        self.note_miss(format!("dir {path}"));
        let out = self.send(
            &Cmd::new(&["sh", "-s"]).stdin(state::dirs_script(&[path])),
            true,
        )?;
        let probe = Probe::default().dirs(&[path]);
        let read = state::parse_probe(&out.stdout_str(), &probe)
            .map_err(|e| e.on_host(self.host.name()))?;
        self.take_listings(read);
        Ok(self.state.dirs.get(path).cloned().flatten())
    }

    /// Where an entry of a listed directory points, when it is a symlink (`readlink -f`).
    pub fn link_target(&self, path: &str) -> Option<&str> {
        self.state.links.get(path).map(String::as_str)
    }

    /// Directory listings just read, into the cache: the listings, their symlinks, their
    /// files (a file cached under a listed directory and no longer listed is gone).
    fn take_listings(&mut self, read: State) {
        for (dir, names) in &read.dirs {
            let prefix = format!("{dir}/");
            let gone: Vec<String> = self
                .state
                .files
                .keys()
                .filter(|p| {
                    p.strip_prefix(&prefix).is_some_and(|n| {
                        !n.contains('/')
                            && !names.as_ref().is_some_and(|l| l.iter().any(|x| x == n))
                    })
                })
                .cloned()
                .collect();
            for p in gone {
                self.state.files.insert(p, None);
            }
            self.state.links.retain(|p, _| !p.starts_with(&prefix));
        }
        self.state.links.extend(read.links);
        self.state.files.extend(read.files);
        self.state.dirs.extend(read.dirs);
    }

    /// A file was written: the listing of its directory, when known, shows it, and the
    /// symlinks known to point to it read its new contents.
    fn listed(&mut self, path: &str) {
        let aliases: Vec<String> = self
            .state
            .links
            .iter()
            .filter(|(_, target)| target.as_str() == path)
            .map(|(link, _)| link.clone())
            .collect();
        let written = self.state.files.get(path).cloned().flatten();
        for link in aliases {
            self.state.files.insert(link, written.clone());
        }
        let Some((dir, name)) = path.rsplit_once('/') else {
            return;
        };
        if let Some(entry) = self.state.dirs.get_mut(dir) {
            let names = entry.get_or_insert_with(Vec::new);
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
                names.sort();
            }
        }
    }

    /// Replaces a file atomically: written to a temporary file beside it, mode and owner set,
    /// then renamed over it. A crash leaves either the old file or the new one, never half of
    /// one. The old file is backed up first when backups are on.
    pub fn write_file(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<()> {
        check_path(path)?;
        self.record_action(Action::Write {
            path: path.into(),
            mode,
            owner: owner.into(),
            group: group.into(),
        });
        if !self.check_mode() {
            let backup = match self.state.files.get(path) {
                Some(Some(_)) | None if self.opts.backup => {
                    format!("/var/backups/nodeprep{path}.{}", self.stamp)
                }
                _ => String::new(),
            };
            let mode_s = format!("{mode:04o}");
            let cmd = Cmd::new(&[
                "sh",
                "-c",
                WRITE_SCRIPT,
                "nodeprep-write",
                path,
                &mode_s,
                owner,
                group,
                &backup,
                &content.len().to_string(),
            ])
            .stdin(content.to_vec());
            self.send(&cmd, true)?;
        }
        self.state.files.insert(
            path.to_string(),
            Some(FileState {
                mode,
                owner: owner.into(),
                group: group.into(),
                is_dir: false,
                content: content.to_vec(),
            }),
        );
        self.listed(path);
        Ok(())
    }

    /// After packages were installed: what a package brings (its files, its units, other
    /// packages) is read again. On a live host in apply mode that is one round trip over
    /// everything the run reads, so a package's own configuration file is edited, backed up
    /// and diffed like any other. In check mode nothing was installed: the packages count as
    /// present (version unknown) and the rest stays as probed. A recorded host (tests) has
    /// no live files to read: its packages and units are asked again when next needed.
    pub(crate) fn after_install(&mut self, names: &[&str]) -> Result<()> {
        if self.check_mode() {
            if let Some(p) = &mut self.state.packages {
                for n in names {
                    p.insert(n.to_string(), String::new());
                }
            }
            return Ok(());
        }
        if self.state.files_complete || !self.host.live() {
            self.state.packages = None;
            self.flags.units_stale = true;
            return Ok(());
        }
        let mut probe = self.opts.probe.clone();
        probe.lock = None;
        probe.break_lock = None;
        probe.files.extend(self.state.files.keys().cloned());
        probe.units.extend(self.state.units.keys().cloned());
        probe.programs.extend(self.state.programs.keys().cloned());
        probe.dirs.extend(self.state.dirs.keys().cloned());
        let out = self.send(
            &Cmd::new(&["sh", "-s"]).stdin(state::probe_script(&probe)),
            true,
        )?;
        let read = state::parse_probe(&out.stdout_str(), &probe)
            .map_err(|e| e.on_host(self.host.name()))?;
        tracing::debug!(
            host = self.host.name(),
            "read again after installing {}: {} files, {} units",
            names.join(" "),
            probe.files.len(),
            probe.units.len()
        );
        for path in &probe.files {
            let f = read.files.get(path).cloned().flatten();
            self.state.files.insert(path.clone(), f);
        }
        self.state.units = read.units.clone();
        self.state.programs = read.programs.clone();
        self.state.packages = read.packages.clone();
        self.flags.units_stale = false;
        self.take_listings(read);
        Ok(())
    }

    /// Unit states must be read again (a package install on a recorded host); clears the mark.
    pub(crate) fn take_units_stale(&mut self) -> bool {
        std::mem::take(&mut self.flags.units_stale)
    }

    /// Whether `apt-get update` already ran in this run; marks it as run.
    pub(crate) fn apt_updated(&mut self, mark: bool) -> bool {
        let was = self.flags.apt_updated;
        self.flags.apt_updated |= mark;
        was
    }

    /// A repository was added: the package lists must be read again before the next install.
    pub(crate) fn apt_lists_changed(&mut self) {
        self.flags.apt_updated = false;
    }

    /// A command changed these files in ways the cache cannot follow (useradd, locale-gen, a
    /// package's scripts): they are read again when next needed.
    pub fn forget(&mut self, paths: &[&str]) {
        for p in paths {
            self.state.files.remove(*p);
        }
    }

    /// Packages known installed (name → version); read once per run.
    pub fn packages(&mut self) -> Result<&std::collections::BTreeMap<String, String>> {
        if self.state.packages.is_none() {
            let script = "if command -v rpm >/dev/null 2>&1; then rpm -qa --qf '%{NAME} %{VERSION}-%{RELEASE}\\n'; \
                          else dpkg-query -W -f '${db:Status-Abbrev}|${Package}|${Version}\\n' | sed -n 's/^ii *|//p' | tr '|' ' '; fi";
            let out = self.query(&["sh", "-c", script])?;
            let map = out
                .stdout_str()
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    Some((it.next()?.to_string(), it.next().unwrap_or("").to_string()))
                })
                .collect();
            self.state.packages = Some(map);
        }
        Ok(self.state.packages.as_ref().expect("just filled"))
    }
}

fn short_display(cmd: &Cmd) -> String {
    let shown = cmd.display();
    match shown.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &shown[..i]),
        None => shown,
    }
}

/// Paths tasks write must be absolute and plain.
fn check_path(path: &str) -> Result<()> {
    if !path.starts_with('/') || path.contains('\n') || path.contains("/../") || path.ends_with('/')
    {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("refusing to write to {path:?}: not a plain absolute path"),
        ));
    }
    Ok(())
}

/// `sh -c WRITE_SCRIPT nodeprep-write PATH MODE OWNER GROUP BACKUP SIZE`, contents on stdin.
/// The byte count guards against a connection cut mid-stream: stdin then ends early, and a
/// short file must never replace the real one.
const WRITE_SCRIPT: &str = r#"set -eu
umask 022
p=$1; d=$(dirname -- "$p")
mkdir -p -- "$d"
t=$(mktemp -- "$d/.nodeprep.XXXXXX")
trap 'rm -f -- "$t"' EXIT INT TERM HUP
cat > "$t"
n=$(wc -c < "$t")
if [ "$n" -ne "$6" ]; then echo "nodeprep: got $n of $6 bytes for $p; the file is left as it was" >&2; exit 1; fi
sync -- "$t" 2>/dev/null || true
chown -- "$3:$4" "$t"
chmod -- "$2" "$t"
if [ -n "$5" ] && [ -f "$p" ]; then mkdir -p -- "$(dirname -- "$5")"; cp -p -- "$p" "$5"; fi
mv -f -- "$t" "$p"
trap - EXIT INT TERM HUP
"#;

fn run_probe(host: &dyn Host, probe: &Probe) -> Result<State> {
    let out = host.run(&Cmd::new(&["sh", "-s"]).stdin(state::probe_script(probe)))?;
    state::parse_probe(&out.stdout_str(), probe).map_err(|e| e.on_host(host.name()))
}

fn facts_from_state(state: &State) -> Result<Facts> {
    let os_release = state
        .facts
        .get("os-release")
        .map(String::as_str)
        .unwrap_or("");
    let mut facts = Facts::from_os_release(os_release)?;
    facts.systemd = state
        .facts
        .get("systemd")
        .is_some_and(|v| v.trim() == "yes");
    facts.container = state
        .facts
        .get("container")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "none");
    facts.hostname = state
        .facts
        .get("hostname")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
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

    #[test]
    fn change_combines() {
        assert_eq!(Change::Unchanged | Change::Changed, Change::Changed);
        assert_eq!(
            Change::Skipped("x".into()) | Change::Unchanged,
            Change::Skipped("x".into())
        );
        assert_eq!(
            Change::Skipped("x".into()) | Change::Changed,
            Change::Changed
        );
        let mut c = Change::Unchanged;
        c |= Change::Unchanged;
        assert!(!c.changed());
    }

    /// The write script on a real shell: a whole write lands; a short stream (a cut connection)
    /// leaves the old file and no temporary file.
    #[test]
    fn write_script_never_installs_a_short_file() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("conf");
        std::fs::write(&target, "old\n").unwrap();
        let path = target.display().to_string();
        let run = |content: &[u8], size: usize| {
            let size = size.to_string();
            Local::new("t")
                .exec(
                    &Cmd::new(&[
                        "sh",
                        "-c",
                        WRITE_SCRIPT,
                        "w",
                        &path,
                        "0640",
                        "root",
                        "root",
                        "",
                        &size,
                    ])
                    .stdin(content.to_vec()),
                )
                .unwrap()
        };
        let short = run(b"new con", 12);
        assert!(!short.success());
        assert!(
            String::from_utf8_lossy(&short.stderr).contains("got 7 of 12 bytes"),
            "{short:?}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        let whole = run(b"new content\n", 12);
        assert!(whole.success(), "{whole:?}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new content\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["conf"], "temporary files left behind");
    }

    /// The lock on a real shell, with LOCK_DIR pointed elsewhere: taken, refused to a second
    /// holder with the first one named, released only by its holder.
    #[test]
    fn run_lock_is_exclusive() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock").display().to_string();
        let probe = |holder: &str| {
            let p = Probe {
                lock: Some(holder.to_string()),
                ..Probe::default()
            };
            let script = state::probe_script(&p).replace(state::LOCK_DIR, &lock);
            let out = Local::new("t")
                .run(&Cmd::new(&["sh", "-s"]).stdin(script))
                .unwrap();
            let s = state::parse_probe(&out.stdout_str(), &p).unwrap();
            match s.facts.get("lock-busy") {
                Some(busy) => Err(state::busy_error(busy)),
                None => Ok(s),
            }
        };
        probe("first run").unwrap();
        let err = probe("second run").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(err.to_string().contains("first run"), "{err}");
        let unlock = |holder: &str| {
            let script = state::unlock_script(holder).replace(state::LOCK_DIR, &lock);
            Local::new("t")
                .run(&Cmd::new(&["sh", "-c", &script]))
                .unwrap();
        };
        unlock("second run");
        assert!(
            std::path::Path::new(&lock).exists(),
            "released by a non-holder"
        );
        unlock("first run");
        assert!(!std::path::Path::new(&lock).exists());
        assert!(probe("second run").is_ok());
    }

    /// A directory nobody declared: one round trip (counted as a miss) lists it and reads its
    /// files; a write into it shows in the listing.
    #[test]
    fn undeclared_directory_read_once() {
        use crate::testing::Fixture;
        let (mut cx, rec) = Fixture::debian().ctx(Mode::Apply);
        rec.reply(
            "sh -s",
            Output {
                status: Some(0),
                stdout: b"\n@@np:dir /etc/sysctl.d\n99-sysctl.conf\t/etc/sysctl.conf\n\n@@np:file /etc/sysctl.d/99-sysctl.conf\n644 root root file\nYT0xCg==\n\n@@np:end -\n".to_vec(),
                stderr: Vec::new(),
            },
        );
        assert_eq!(
            cx.dir("/etc/sysctl.d").unwrap().unwrap(),
            ["99-sysctl.conf"]
        );
        assert_eq!(cx.misses(), ["dir /etc/sysctl.d"]);
        assert_eq!(
            cx.link_target("/etc/sysctl.d/99-sysctl.conf"),
            Some("/etc/sysctl.conf")
        );
        assert_eq!(
            cx.file("/etc/sysctl.d/99-sysctl.conf")
                .unwrap()
                .unwrap()
                .text(),
            "a=1\n"
        );
        cx.write_file("/etc/sysctl.d/10-a.conf", b"", 0o644, "root", "root")
            .unwrap();
        assert_eq!(
            cx.dir("/etc/sysctl.d").unwrap().unwrap(),
            ["10-a.conf", "99-sysctl.conf"]
        );
        assert_eq!(rec.commands().len(), 2, "the listing, the write");
    }

    #[test]
    fn write_path_checked() {
        assert!(check_path("etc/x").is_err());
        assert!(check_path("/etc/../x").is_err());
        assert!(check_path("/etc/x\ny").is_err());
        assert!(check_path("/etc/sysctl.d/99-kubernetes-cri.conf").is_ok());
    }
}
