//! The run context: host, facts, state cache, mode, and the record of every step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::facts::Facts;
use crate::host::{Cmd, Host, Output};
use crate::state::{self, FileState, Probe, State, UnitState};

/// How old apt's package lists may be before an install refreshes them, unless the plan says
/// otherwise (the inventory's `system.package_lists_max_age`).
pub const PACKAGE_LISTS_MAX_AGE: Duration = Duration::from_secs(3600);

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
    /// A file removed.
    Remove { path: String },
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
            Action::Remove { path } => write!(f, "remove {path}"),
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
    /// Take the host's run lock (/run/nodeprep.lock) before the run's first change, naming
    /// this holder: a second runner on the same host then fails with "busy", and so does a
    /// run that finds the host changed by another one since its probe. A run that changes
    /// nothing never takes it. Released when the Ctx is dropped.
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
    /// Packages the run's one transaction installed before the first step (see
    /// [`crate::plan::Plan::installs`]) that no step has reported yet: the step that asks for
    /// one reports it installed, without installing it again.
    batched: std::collections::BTreeSet<String>,
    /// apt's package lists are refreshed before an install when older than this.
    lists_max_age: Duration,
    /// The run lock as the probe saw it.
    lock_seen: LockSeen,
}

/// The run lock as the probe saw it: what taking it must check and may break.
#[derive(Debug, Clone, Default)]
struct LockSeen {
    /// The last run to release the lock ([`state::LAST_RUN`]); empty when none did.
    last: String,
    /// The holder of a lock left by a runner that is gone, broken when the lock is taken.
    break_holder: Option<String>,
}

/// What a run has done to a host so far that changes how it reads it. Kept by the engine,
/// never by tasks.
#[derive(Debug, Clone, Copy, Default)]
struct RunFlags {
    /// This run holds the host's lock (released on close).
    locked: bool,
    /// The package lists were refreshed in this run (`apt-get update`, or a tdnf/dnf command
    /// with `--refresh`), after the last repository change.
    lists_refreshed: bool,
    /// A repository was added in this run: apt's lists are refreshed before the next install,
    /// whatever their age.
    sources_changed: bool,
    /// A package install may have brought unit files: unit states are read again.
    units_stale: bool,
}

struct Current {
    name: String,
    diffs: Vec<String>,
    actions: Vec<Action>,
}

impl Ctx {
    /// Connects: runs the state probe (facts and state in one round trip). A lock another
    /// run holds is an error then, unless its holder is gone (broken when this run takes it).
    pub fn connect(host: Box<dyn Host>, opts: Options) -> Result<Ctx> {
        let mut probe = opts.probe.clone();
        probe.lock = opts.lock.clone();
        let start = Instant::now();
        let mut state = run_probe(host.as_ref(), &probe)?;
        let mut lock = LockSeen::default();
        if let Some(busy) = state.facts.remove("lock-busy") {
            let holder = busy.lines().next().unwrap_or("").to_string();
            match opts.lock_is_stale {
                Some(stale) if !holder.is_empty() && stale(&holder) => {
                    lock.break_holder = Some(holder);
                }
                _ => return Err(state::busy_error(&busy).on_host(host.name())),
            }
        }
        lock.last = state.facts.remove("last-run").unwrap_or_default();
        let remote = start.elapsed();
        tracing::debug!(
            host = host.name(),
            elapsed_ms = remote.as_millis() as u64,
            "state probe ({} files)",
            probe.files.len()
        );
        let facts = facts_from_state(&state).map_err(|e| e.on_host(host.name()))?;
        let mut cx = Ctx::with_state(host, facts, state, opts);
        cx.commands = 1;
        cx.remote = remote;
        cx.lock_seen = lock;
        Ok(cx)
    }

    /// Takes the run lock before the first change (see [`Options::lock`]); once held, or
    /// without a holder, nothing to do.
    fn lock_before_change(&mut self) -> Result<()> {
        if self.flags.locked {
            return Ok(());
        }
        let Some(holder) = self.opts.lock.clone() else {
            return Ok(());
        };
        let script = state::lock_script(
            &holder,
            self.lock_seen.break_holder.as_deref(),
            &self.lock_seen.last,
        );
        let out = self.send(&Cmd::new(&["sh", "-s"]).stdin(script), true)?;
        let got = state::parse_probe(&out.stdout_str(), &Probe::default())
            .map_err(|e| e.on_host(self.host.name()))?;
        if got.facts.contains_key("locked") {
            self.flags.locked = true;
            return Ok(());
        }
        let err = match (got.facts.get("lock-busy"), got.facts.get("lock-moved")) {
            (Some(busy), _) => state::busy_error(busy),
            (None, Some(last)) => state::moved_error(last),
            (None, None) => Error::other("the run lock's answer is missing"),
        };
        Err(err.on_host(self.host.name()))
    }

    /// A context over a known state: what tests use to feed recorded facts. A host name the
    /// state holds (the probe's answer, as an earlier run left it) is the host's name.
    pub fn with_state(host: Box<dyn Host>, mut facts: Facts, state: State, opts: Options) -> Ctx {
        if let Some(name) = probed_hostname(&state) {
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
            batched: Default::default(),
            lists_max_age: PACKAGE_LISTS_MAX_AGE,
            lock_seen: LockSeen::default(),
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
        self.note_misses(vec![what]);
    }

    /// What one more round trip reads because no step declared it: logged at `-vv` (with the
    /// step) and counted.
    fn note_misses(&mut self, what: Vec<String>) {
        let step = self
            .current
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        tracing::debug!(
            host = self.host.name(),
            step = %step,
            "cache miss: {} not declared in the step's reads; one more round trip",
            what.join(" ")
        );
        self.misses.extend(what);
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

    /// The steps recorded so far, taken (the context records the next ones anew).
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
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

    /// The whole cache, for tests that simulate what a host answers. The run itself keeps the
    /// cache coherent through the engine: reads go through [`Ctx::file`], writes through
    /// [`Ctx::write_file`], and what commands did is told with [`Ctx::known`],
    /// [`Ctx::apply_touching`], [`Ctx::forget`] and their kin.
    #[cfg(test)]
    pub(crate) fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// The cached unit states, for the systemd primitives (`systemd.rs`) only.
    pub(crate) fn units_mut(&mut self) -> &mut std::collections::HashMap<String, UnitState> {
        &mut self.state.units
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
        // The host's and the step's names are made once: told to the sink with the start,
        // kept while the step runs, then in its record and with the finish.
        let started = Event::StepStarted {
            host: self.host_name().to_string(),
            name: name.to_string(),
        };
        self.emit_ref(&started);
        let Event::StepStarted { host, name: step } = started else {
            unreachable!("made above as a start")
        };
        self.current = Some(Current {
            name: step,
            diffs: Vec::new(),
            actions: Vec::new(),
        });
        let result = f(self);
        let cur = self.current.take().unwrap_or_else(|| Current {
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
            name: cur.name,
            outcome,
            duration: start.elapsed(),
            diffs: cur.diffs,
            actions: cur.actions,
        };
        // Told to the sink, then kept: the event hands the record back, no copy made.
        let finished = Event::StepFinished { host, record };
        self.emit_ref(&finished);
        if let Event::StepFinished { record, .. } = finished {
            self.records.push(record);
        }
        result.map_err(|e| e.on_host(self.host.name()))
    }

    /// Reports progress of a long operation.
    pub fn progress(&self, message: impl Into<String>) {
        self.emit(Event::Progress {
            host: self.host_name().to_string(),
            message: message.into(),
        });
    }

    /// Reports progress of a long operation that changes the host: `doing` when it does
    /// (`installing kbd`), `would` in check mode, where nothing is done (`would install kbd`).
    pub fn progress_doing_or_would(&self, doing: impl Into<String>, would: impl Into<String>) {
        self.progress(if self.check_mode() {
            would.into()
        } else {
            doing.into()
        });
    }

    fn emit(&self, event: Event) {
        self.emit_ref(&event);
    }

    fn emit_ref(&self, event: &Event) {
        if let Some(sink) = &self.opts.sink {
            sink(event);
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

    /// The standard output of a read-only command, asked once per run: later calls get the
    /// same answer, or the one [`Ctx::answer_changed`] gave since (`iptables -S INPUT` read once
    /// by every step that opens ports). A non-zero exit is an error, and is not remembered.
    pub fn query_once(&mut self, argv: &[&str]) -> Result<String> {
        let key: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        if let Some(answer) = self.state.answers.get(&key) {
            return Ok(answer.clone());
        }
        let out = self.query(argv)?;
        if !out.success() {
            return Err(crate::host::command_failed(&Cmd::new(argv), &out));
        }
        let answer = out.stdout_str();
        self.state.answers.insert(key, answer.clone());
        Ok(answer)
    }

    /// A modifying command changed what `argv` answers (a rule inserted changes the
    /// listing): this is its answer now, for the next [`Ctx::query_once`]. In check mode it
    /// is the answer the host would give.
    pub fn answer_changed(&mut self, argv: &[&str], answer: String) {
        self.state
            .answers
            .insert(argv.iter().map(|a| a.to_string()).collect(), answer);
    }

    /// Says in one line, for `--diff`, what a change made by commands did (`user ops: added
    /// to group wheel`, `installed: kbd glibc-i18n`); recorded with the step's diffs when
    /// diffs are wanted. Never a secret: the line is printed and logged as it is.
    pub fn note_change(&mut self, line: impl Into<String>) {
        if self.diff_wanted() {
            let mut line = line.into();
            if !line.ends_with('\n') {
                line.push('\n');
            }
            self.record_diff(line);
        }
    }

    /// [`Ctx::note_change`] for a change made by commands: `done` when the run made it
    /// (`restarted containerd.service`), `would` in check mode, where the commands are only
    /// recorded (`would restart containerd.service`): a check never says it did what it did not.
    pub fn note_done_or_would(&mut self, done: impl Into<String>, would: impl Into<String>) {
        let line = if self.check_mode() {
            would.into()
        } else {
            done.into()
        };
        self.note_change(line);
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
        self.note_misses(missing.iter().map(|p| p.to_string()).collect());
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
        self.write(path, content, mode, owner, group, true)
    }

    /// As [`Ctx::write_file`], for a scratch file (a candidate configuration checked before it
    /// replaces the live one): never backed up.
    pub fn write_scratch(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
    ) -> Result<()> {
        self.write(path, content, mode, owner, group, false)
    }

    /// Removes a scratch file (`rm -f`, no backup: a candidate checked or refused); the cache
    /// then knows it absent.
    pub fn remove_scratch(&mut self, path: &str) -> Result<()> {
        check_path(path)?;
        self.apply(&["rm", "-f", path])?;
        self.state.files.insert(path.to_string(), None);
        Ok(())
    }

    fn write(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
        group: &str,
        backup: bool,
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
                Some(Some(_)) | None if backup && self.opts.backup => {
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
            self.lock_before_change()?;
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

    /// Removes a file, backed up first as [`Ctx::write_file`] backs up a file it replaces. An
    /// absent file is left absent.
    pub fn remove_file(&mut self, path: &str) -> Result<()> {
        check_path(path)?;
        self.record_action(Action::Remove { path: path.into() });
        if !self.check_mode() {
            let backup = if self.opts.backup {
                format!("/var/backups/nodeprep{path}.{}", self.stamp)
            } else {
                String::new()
            };
            let cmd = Cmd::new(&["sh", "-c", REMOVE_SCRIPT, "nodeprep-remove", path, &backup]);
            self.lock_before_change()?;
            self.send(&cmd, true)?;
        }
        self.state.files.insert(path.to_string(), None);
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
        // The probe's own questions were asked again too: an install may change their answers.
        for q in &probe.queries {
            match read.answers.get(q) {
                Some(a) => self.state.answers.insert(q.clone(), a.clone()),
                None => self.state.answers.remove(q),
            };
        }
        self.flags.units_stale = false;
        self.take_listings(read);
        Ok(())
    }

    /// Unit states must be read again (a package install on a recorded host); clears the mark.
    pub(crate) fn take_units_stale(&mut self) -> bool {
        std::mem::take(&mut self.flags.units_stale)
    }

    /// apt's package lists are refreshed before an install when older than `max` (the
    /// inventory's `system.package_lists_max_age`, through the plan).
    pub(crate) fn set_package_lists_max_age(&mut self, max: Duration) {
        self.lists_max_age = max;
    }

    /// Whether apt's package lists must be refreshed before an install: a repository was
    /// added in this run; or they were not refreshed in this run and the probe found none, or
    /// found them older than the maximum age (or could not tell).
    pub(crate) fn apt_lists_stale(&self) -> bool {
        if self.flags.sources_changed {
            return true;
        }
        if self.flags.lists_refreshed {
            return false;
        }
        !self
            .state
            .package_lists
            .is_some_and(|l| l.fresh(self.lists_max_age))
    }

    /// Whether the package lists were refreshed in this run, since the last repository change.
    pub(crate) fn lists_refreshed(&self) -> bool {
        self.flags.lists_refreshed
    }

    /// The package lists were just refreshed.
    pub(crate) fn mark_lists_refreshed(&mut self) {
        self.flags.lists_refreshed = true;
        self.flags.sources_changed = false;
    }

    /// A repository was added: apt's lists must be refreshed before the next install.
    pub(crate) fn apt_lists_changed(&mut self) {
        self.flags.lists_refreshed = false;
        self.flags.sources_changed = true;
    }

    /// The run's one transaction installed `names` (see [`crate::plan::Plan::installs`]).
    pub(crate) fn set_batched(&mut self, names: &[String]) {
        self.batched.extend(names.iter().cloned());
    }

    /// Those of `names` the run's one transaction installed and no step reported yet, in the
    /// order of `names`; from now on, reported.
    pub(crate) fn take_batched(&mut self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .filter(|n| self.batched.remove(**n))
            .map(|n| n.to_string())
            .collect()
    }

    /// A command changed these files in ways the cache cannot follow (useradd, locale-gen, a
    /// package's scripts): they are read again when next needed.
    pub fn forget(&mut self, paths: &[&str]) {
        for p in paths {
            self.state.files.remove(*p);
        }
    }

    /// A command left `path` holding `content`, exactly (a live kernel value after `sysctl`,
    /// /etc/group after `usermod -aG`): the cache follows, as after a write. A file the cache
    /// knows keeps its mode and owner; another is recorded 0644 root:root. In check mode it is
    /// what the command would leave, so that later steps plan against it.
    pub fn known(&mut self, path: &str, content: &str) {
        match self.state.files.get_mut(path) {
            Some(Some(f)) if !f.is_dir => f.content = content.as_bytes().to_vec(),
            _ => {
                let f = FileState {
                    mode: 0o644,
                    owner: "root".into(),
                    group: "root".into(),
                    is_dir: false,
                    content: content.as_bytes().to_vec(),
                };
                self.state.files.insert(path.to_string(), Some(f));
            }
        }
    }

    /// A command left a directory at `path` with this mode and owner (`install -d`, a module
    /// loaded by `modprobe` appearing under /sys/module).
    pub fn known_dir(&mut self, path: &str, mode: u32, owner: &str, group: &str) {
        let dir = FileState {
            mode,
            owner: owner.into(),
            group: group.into(),
            is_dir: true,
            content: Vec::new(),
        };
        self.state.files.insert(path.to_string(), Some(dir));
    }

    /// `chmod`/`chown` gave a known file or directory this mode and owner.
    pub fn known_mode(&mut self, path: &str, mode: u32, owner: &str, group: &str) {
        if let Some(Some(f)) = self.state.files.get_mut(path) {
            (f.mode, f.owner, f.group) = (mode, owner.to_string(), group.to_string());
        }
    }

    /// The kernel's host name is now `name` (`hostnamectl set-hostname`): the facts follow,
    /// and so does the probe's answer in the cache (what the host would report now). In check
    /// mode it is the name the host would have.
    pub fn hostname_changed(&mut self, name: &str) {
        self.facts.hostname = name.to_string();
        self.state
            .facts
            .insert(HOSTNAME_ANSWER.into(), name.to_string());
    }

    /// Packages moved in ways the run cannot name (a full system update): the package list is
    /// read again when next needed. Nothing moved in check mode.
    pub fn packages_changed(&mut self) {
        if !self.check_mode() {
            self.state.packages = None;
        }
    }

    /// Unit files changed (`systemctl daemon-reload`): unit states are read again when next
    /// needed. Nothing changed in check mode.
    pub fn units_changed(&mut self) {
        if !self.check_mode() {
            self.flags.units_stale = true;
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

/// `sh -c REMOVE_SCRIPT nodeprep-remove PATH BACKUP`: the file copied to BACKUP (when given),
/// then removed.
const REMOVE_SCRIPT: &str = r#"set -eu
p=$1
if [ -n "$2" ] && [ -f "$p" ]; then mkdir -p -- "$(dirname -- "$2")"; cp -p -- "$p" "$2"; fi
rm -f -- "$p"
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
    facts.hostname = probed_hostname(state).unwrap_or_default();
    Ok(facts)
}

/// The probe's answer naming the kernel's host name.
const HOSTNAME_ANSWER: &str = "hostname";

fn probed_hostname(state: &State) -> Option<String> {
    state
        .facts
        .get(HOSTNAME_ANSWER)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
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

    /// After a package install on a live host, what the run reads is read again in one round
    /// trip: a file the package brought is seen (and then edited, backed up and diffed like any
    /// other), not taken for absent. On a real shell, over this machine.
    #[test]
    fn an_install_reads_the_host_again() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("config.toml").display().to_string();
        let opts = Options {
            mode: Mode::Apply,
            probe: Probe::default().files(&[conf.as_str()]),
            ..Options::default()
        };
        let mut cx = Ctx::connect(Box::new(Local::new("t")), opts).unwrap();
        assert_eq!(cx.file(&conf).unwrap(), None);
        // What a package's install leaves behind.
        std::fs::write(&conf, "version = 2\n").unwrap();
        let sent = cx.commands_sent();
        cx.after_install(&["containerd"]).unwrap();
        assert_eq!(cx.commands_sent(), sent + 1, "one round trip");
        assert_eq!(cx.file(&conf).unwrap().unwrap().text(), "version = 2\n");
        assert!(cx.misses().is_empty(), "{:?}", cx.misses());
        // In check mode nothing was installed: nothing is read.
        let opts = Options {
            mode: Mode::Check,
            probe: Probe::default().files(&[conf.as_str()]),
            ..Options::default()
        };
        let mut cx = Ctx::connect(Box::new(Local::new("t")), opts).unwrap();
        let sent = cx.commands_sent();
        cx.after_install(&["containerd"]).unwrap();
        assert_eq!(cx.commands_sent(), sent);
    }

    /// The lock on a real shell, with LOCK_DIR and LAST_RUN pointed elsewhere: the probe
    /// only reports it; taken by the first holder, refused to a second one with the first
    /// named, released only by its holder, which is then the last run; a run whose probe saw
    /// an earlier last run is refused (the host changed since it read it) and leaves the
    /// lock free.
    #[test]
    fn run_lock_is_exclusive() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock").display().to_string();
        let last = dir.path().join("last").display().to_string();
        let here = |script: String| {
            script
                .replace(state::LOCK_DIR, &lock)
                .replace(state::LAST_RUN, &last)
        };
        let run = |script: String| {
            let out = Local::new("t")
                .run(&Cmd::new(&["sh", "-s"]).stdin(here(script)))
                .unwrap();
            state::parse_probe(&out.stdout_str(), &Probe::default()).unwrap()
        };
        let probe = |holder: &str| {
            let p = Probe {
                lock: Some(holder.to_string()),
                ..Probe::default()
            };
            run(state::probe_script(&p)).facts
        };
        let take = |holder: &str, seen: &str| {
            let s = run(state::lock_script(holder, None, seen));
            if s.facts.contains_key("locked") {
                Ok(())
            } else if let Some(busy) = s.facts.get("lock-busy") {
                Err(state::busy_error(busy))
            } else {
                Err(state::moved_error(&s.facts["lock-moved"]))
            }
        };
        let unlock = |holder: &str| {
            Local::new("t")
                .run(&Cmd::new(&[
                    "sh",
                    "-c",
                    &here(state::unlock_script(holder)),
                ]))
                .unwrap();
        };
        let seen = probe("first run");
        assert!(
            !std::path::Path::new(&lock).exists(),
            "a probe takes nothing"
        );
        assert_eq!(seen.get("last-run").map(String::as_str), Some(""));
        take("first run", "").unwrap();
        assert!(probe("second run").contains_key("lock-busy"));
        let err = take("second run", "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(err.to_string().contains("first run"), "{err}");
        unlock("second run");
        assert!(
            std::path::Path::new(&lock).exists(),
            "released by a non-holder"
        );
        unlock("first run");
        assert!(!std::path::Path::new(&lock).exists());
        assert_eq!(probe("third run")["last-run"], "first run");
        // Seen before the first run changed the host: refused, the lock left free.
        let err = take("second run", "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(err.to_string().contains("changed this host"), "{err}");
        assert!(!std::path::Path::new(&lock).exists());
        take("second run", "first run").unwrap();
    }

    /// A run takes the lock before its first change and not before: reads send nothing more
    /// than the probe, the first write is preceded by the lock, the close releases it; a run
    /// that changes nothing sends the probe alone, even on close.
    #[test]
    fn the_lock_is_taken_before_the_first_change_only() {
        use crate::host::simulated::Simulated;
        let mut s = State::default();
        s.facts
            .insert("os-release".into(), "ID=debian\nVERSION_ID=\"12\"\n".into());
        s.facts.insert("systemd".into(), "yes".into());
        let s = Arc::new(s);
        let opts = || Options {
            probe: Probe::default().files(&["/etc/motd"]),
            lock: Some("me".into()),
            ..Options::default()
        };
        let host = Simulated::new("h", Duration::ZERO, s.clone());
        let mut cx = Ctx::connect(Box::new(host), opts()).unwrap();
        assert_eq!(cx.file("/etc/motd").unwrap(), None);
        assert_eq!(cx.commands_sent(), 1);
        cx.close();
        assert_eq!(cx.commands_sent(), 1, "nothing taken, nothing to release");

        let host = Simulated::new("h", Duration::ZERO, s);
        let mut cx = Ctx::connect(Box::new(host), opts()).unwrap();
        cx.write_file("/etc/motd", b"hi\n", 0o644, "root", "root")
            .unwrap();
        assert_eq!(cx.commands_sent(), 3, "probe, lock, write");
        cx.write_file("/etc/issue", b"hi\n", 0o644, "root", "root")
            .unwrap();
        assert_eq!(cx.commands_sent(), 4, "the lock is taken once");
        cx.close();
        assert_eq!(cx.commands_sent(), 5, "released");
    }

    fn ok(stdout: &str) -> Output {
        Output {
            status: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    /// A listing is asked once per run; after a change, the next step gets the answer the
    /// change left, without asking again. A failed command is an error.
    #[test]
    fn query_once_asks_once_and_follows_changes() {
        let (mut cx, rec) = crate::testing::Fixture::photon().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok("-P INPUT DROP\n"));
        rec.reply(
            "false",
            Output {
                status: Some(1),
                ..Output::default()
            },
        );
        let argv = ["iptables", "-w", "10", "-S", "INPUT"];
        assert_eq!(cx.query_once(&argv).unwrap(), "-P INPUT DROP\n");
        assert_eq!(cx.query_once(&argv).unwrap(), "-P INPUT DROP\n");
        cx.answer_changed(&argv, "-P INPUT DROP\n-A INPUT -j ACCEPT\n".into());
        assert_eq!(
            cx.query_once(&argv).unwrap(),
            "-P INPUT DROP\n-A INPUT -j ACCEPT\n"
        );
        assert_eq!(rec.commands().len(), 1, "asked again: {:?}", rec.commands());
        assert!(cx.query_once(&["false"]).is_err());
        assert!(cx.query_once(&["false"]).is_err());
        assert_eq!(rec.commands().len(), 3, "a failure was remembered");
        assert!(cx.state().facts.keys().all(|k| k == "os-release"));
    }

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

    /// What a command left is told to the engine: a known file keeps its mode and owner, a
    /// new one is a plain root file, a directory has the mode and owner given.
    #[test]
    fn known_contents_follow_commands() {
        let (mut cx, rec) = crate::testing::Fixture::photon().ctx(Mode::Apply);
        cx.known("/etc/shadow", "root:!:19000:0:99999:7:::\n");
        let shadow = cx.file("/etc/shadow").unwrap().unwrap();
        assert_eq!(shadow.text(), "root:!:19000:0:99999:7:::\n");
        assert_eq!((shadow.mode, shadow.owner.as_str()), (0o400, "root"));
        cx.known("/proc/sys/net/ipv4/ip_forward", "1\n");
        assert_eq!(
            cx.file("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .unwrap()
                .text(),
            "1\n"
        );
        cx.known_dir("/sys/module/br_netfilter", 0o755, "root", "root");
        assert!(cx.file("/sys/module/br_netfilter").unwrap().unwrap().is_dir);
        cx.known_mode("/etc/shadow", 0o640, "root", "shadow");
        let shadow = cx.file("/etc/shadow").unwrap().unwrap();
        assert_eq!((shadow.mode, shadow.group.as_str()), (0o640, "shadow"));
        cx.hostname_changed("prdk8swok511");
        assert_eq!(cx.facts().hostname, "prdk8swok511");
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
        assert!(cx.actions().is_empty());
    }

    /// A change made by commands is said in one line when diffs are wanted, not otherwise.
    #[test]
    fn note_change_only_when_diffs_are_wanted() {
        for (diff, want) in [
            (true, vec!["enabled x.service\n".to_string()]),
            (false, vec![]),
        ] {
            let f = crate::testing::Fixture::photon();
            let rec = std::sync::Arc::new(crate::host::Recorder::new("t"));
            let opts = Options {
                diff,
                ..Options::default()
            };
            let mut cx = Ctx::with_state(Box::new(rec), f.facts, f.state, opts);
            let c = cx
                .step("s", |cx| {
                    cx.note_change("enabled x.service");
                    Ok(Change::Changed)
                })
                .unwrap();
            assert!(c.changed());
            assert_eq!(cx.records()[0].diffs, want);
        }
    }

    /// A scratch file is never backed up; removing it leaves it known absent.
    #[test]
    fn scratch_files_are_not_backed_up() {
        let f = crate::testing::Fixture::photon().file("/etc/x.new", "old\n", 0o600);
        let rec = std::sync::Arc::new(crate::host::Recorder::new("t"));
        let opts = Options {
            backup: true,
            ..Options::default()
        };
        let mut cx = Ctx::with_state(Box::new(rec.clone()), f.facts, f.state, opts);
        cx.write_scratch("/etc/x.new", b"new\n", 0o600, "root", "root")
            .unwrap();
        cx.write_file("/etc/x", b"live\n", 0o644, "root", "root")
            .unwrap();
        cx.remove_scratch("/etc/x.new").unwrap();
        assert_eq!(cx.file("/etc/x.new").unwrap(), None);
        let backups: Vec<String> = rec
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains("/var/backups/nodeprep"))
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert!(
            backups[0].contains("/var/backups/nodeprep/etc/x.") && !backups[0].contains("x.new"),
            "{backups:?}"
        );
        assert_eq!(
            cx.actions().last().map(|a| a.to_string()).as_deref(),
            Some("run rm -f /etc/x.new")
        );
    }

    /// The remove script on a real shell: the file is gone, its copy kept at the backup path;
    /// an absent file is no error.
    #[test]
    fn remove_script_keeps_a_backup() {
        use crate::host::Local;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("10-cloud-init-eth0.network");
        std::fs::write(&target, "[Match]\nName=eth0\n").unwrap();
        let backup = dir.path().join("backups/sub/10-cloud-init-eth0.network.1");
        let run = |backup: &std::path::Path| {
            Local::new("t")
                .exec(&Cmd::new(&[
                    "sh",
                    "-c",
                    REMOVE_SCRIPT,
                    "r",
                    &target.display().to_string(),
                    &backup.display().to_string(),
                ]))
                .unwrap()
        };
        assert!(run(&backup).success());
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap(),
            "[Match]\nName=eth0\n"
        );
        let again = run(std::path::Path::new(""));
        assert!(again.success(), "{again:?}");
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
                stdout: b"\n@@np:dir /etc/sysctl.d\n99-sysctl.conf\t/etc/sysctl.conf\n\n@@np:stat -\n4 644 root root regular file|/etc/sysctl.d/99-sysctl.conf\n\n@@np:data -\nYT0xCg==\n\n@@np:end -\n".to_vec(),
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

    #[test]
    fn write_path_checked() {
        assert!(check_path("etc/x").is_err());
        assert!(check_path("/etc/../x").is_err());
        assert!(check_path("/etc/x\ny").is_err());
        assert!(check_path("/etc/sysctl.d/99-kubernetes-cri.conf").is_ok());
    }
}
