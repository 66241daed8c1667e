//! The host's run lock: taken before a run's first change, refused while another run holds
//! it or changed the host since the probe, released on close.
//!
//! The lock names its holder ([`LockHolder`]): the user and machine that run nodeprep, the
//! runner's pid, a random id of the run and when it started. A lock is broken only
//! - by the run that holds it (its run id), or
//! - when its holder is gone: a runner of this very machine (same host name, same boot,
//!   same pid namespace) whose process no longer exists ([`LockHolder::is_gone`]); a lock
//!   from another machine, or from another container of the same name, is never judged from
//!   here, or
//! - when it is older than [`state::LOCK_STALE_SECS`] (a runner that died elsewhere).

use super::{Ctx, Options};
use crate::error::{Error, Result};
use crate::host::Cmd;
use crate::state::{self, Probe, State};

/// Who holds a host's run lock. Written into the lock as one line ([`LockHolder::line`]) and
/// read back from it ([`LockHolder::parse`]), here only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The user the runner runs as (a name from the password database, else `uid N`).
    pub user: String,
    /// The runner's machine (its host name).
    pub host: String,
    pub pid: u32,
    /// Random, one per run (empty in a holder line without one).
    pub run_id: String,
    /// When the run started (unix time; 0 when the line does not say).
    pub started: u64,
    /// Where `pid` means something: the runner's pid namespace and boot
    /// ([`this_pid_space`]); `None` in a line without it.
    pub pid_space: Option<String>,
}

const HOLDER_PREFIX: &str = "nodeprep run by ";

impl LockHolder {
    /// The holder for a run starting now in this process: a fresh run id.
    pub fn this_run() -> LockHolder {
        LockHolder {
            user: user_name(crate::host::current_uid()),
            host: this_hostname(),
            pid: std::process::id(),
            run_id: random_id(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pid_space: this_pid_space(),
        }
    }

    /// The holder as the lock holds it, and a second runner is told:
    /// `nodeprep run by USER@HOST (pid N, run ID, started at unix time T, pids of SPACE)`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{HOLDER_PREFIX}{}@{} (pid {}, run {}, started at unix time {}",
            self.user, self.host, self.pid, self.run_id, self.started
        );
        if let Some(space) = &self.pid_space {
            s.push_str(&format!(", pids of {space}"));
        }
        s.push(')');
        s
    }

    /// A holder line read back; `None` when it is not one nodeprep wrote. Fields a line lacks
    /// (an older nodeprep's) are left empty.
    pub fn parse(line: &str) -> Option<LockHolder> {
        let rest = line.trim().strip_prefix(HOLDER_PREFIX)?;
        let (who, fields) = rest.split_once(" (")?;
        let fields = fields.strip_suffix(')')?;
        let (user, host) = who.rsplit_once('@')?;
        let mut holder = LockHolder {
            user: user.to_string(),
            host: host.to_string(),
            pid: 0,
            run_id: String::new(),
            started: 0,
            pid_space: None,
        };
        for field in fields.split(", ") {
            if let Some(pid) = field.strip_prefix("pid ") {
                holder.pid = pid.parse().ok()?;
            } else if let Some(id) = field.strip_prefix("run ") {
                holder.run_id = id.to_string();
            } else if let Some(t) = field.strip_prefix("started at unix time ") {
                holder.started = t.parse().unwrap_or(0);
            } else if let Some(space) = field.strip_prefix("pids of ") {
                holder.pid_space = Some(space.to_string());
            }
        }
        (holder.pid != 0).then_some(holder)
    }

    /// The same run (a non-empty run id, the same).
    pub fn same_run(&self, other: &LockHolder) -> bool {
        !self.run_id.is_empty() && self.run_id == other.run_id
    }

    /// The holder is a runner of this machine that is gone: same host name, same boot and pid
    /// namespace (so that its pid means the same process here), and no such process. A
    /// holder from anywhere else is never judged gone from here.
    pub fn is_gone(&self) -> bool {
        let here = match (&self.pid_space, this_pid_space()) {
            (Some(theirs), Some(ours)) => *theirs == ours && self.host == this_hostname(),
            _ => false,
        };
        here && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

/// This machine's host name.
fn this_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Where this process's pids mean something: its pid namespace and the kernel's boot id
/// (`4026531836@5f1c…`); `None` when either cannot be read.
pub fn this_pid_space() -> Option<String> {
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let ns = ns.to_string_lossy();
    let inode = ns.strip_prefix("pid:[")?.strip_suffix(']')?.to_string();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{inode}@{}", boot.trim()))
}

/// The name of user `uid` in /etc/passwd, else `$USER`, else `uid N`.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid && !name.is_empty()).then(|| name.to_string())
        })
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// 16 random hex digits (the kernel's random source; the time and pid, hashed, without it).
fn random_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes = crate::hash::fnv1a64(seed.as_bytes()).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run lock as the probe saw it: what taking it must check and may break.
#[derive(Debug, Clone, Default)]
pub(super) struct LockSeen {
    /// The last run to release the lock ([`state::LAST_RUN`]); empty when none did.
    last: String,
    /// The holder of a lock left by a runner that is gone, broken when the lock is taken.
    break_holder: Option<String>,
}

impl LockSeen {
    /// The lock as the probe found it (its answers taken out of the state's facts). A lock
    /// another run holds is an error, unless its holder is gone (see
    /// [`Options::lock_is_stale`]): then it is to be broken when this run takes it.
    pub(super) fn from_probe(state: &mut State, opts: &Options) -> Result<LockSeen> {
        let mut lock = LockSeen::default();
        if let Some(busy) = state.lock.busy.take() {
            let line = busy.lines().next().unwrap_or("").to_string();
            let holder = LockHolder::parse(&line);
            let ours = match (&holder, &opts.lock) {
                (Some(h), Some(me)) => h.same_run(me),
                _ => false,
            };
            let gone = match (&holder, opts.lock_is_stale) {
                (Some(h), Some(stale)) => stale(h),
                _ => false,
            };
            if !(ours || gone) {
                return Err(state::busy_error(&busy));
            }
            lock.break_holder = Some(line);
        }
        lock.last = state.lock.last_run.take().unwrap_or_default();
        Ok(lock)
    }
}

impl Ctx {
    /// Takes the run lock before the first change (see [`Options::lock`]); once held, or
    /// without a holder, nothing to do.
    pub(super) fn lock_before_change(&mut self) -> Result<()> {
        if self.flags.locked {
            return Ok(());
        }
        let Some(holder) = self.opts.lock.as_ref().map(LockHolder::line) else {
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
        if got.lock.locked {
            self.flags.locked = true;
            return Ok(());
        }
        let err = match (&got.lock.busy, &got.lock.moved) {
            (Some(busy), _) => state::busy_error(busy),
            (None, Some(last)) => state::moved_error(last),
            (None, None) => Error::other("the run lock's answer is missing"),
        };
        Err(err.on_host(self.host.name()))
    }

    /// Takes the run lock now, as before a change (see [`Options::lock`]): for a task that
    /// says what it is about to do before doing it (a host another run holds is then said
    /// busy first). Nothing in check mode, where nothing changes.
    pub(crate) fn take_lock(&mut self) -> Result<()> {
        if self.check_mode() {
            return Ok(());
        }
        self.lock_before_change()
    }

    /// Releases the run lock, if this run took it (on close).
    pub(super) fn release_lock(&mut self) {
        if std::mem::take(&mut self.flags.locked)
            && let Some(holder) = self.opts.lock.as_ref().map(LockHolder::line)
        {
            let _ = self.send(
                &Cmd::new(&["sh", "-c", &state::unlock_script(&holder)]),
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::host::Host;
    use std::sync::Arc;
    use std::time::Duration;

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
            run(state::probe_script(&p)).lock
        };
        let take = |holder: &str, seen: &str| {
            let s = run(state::lock_script(holder, None, seen));
            if s.lock.locked {
                Ok(())
            } else if let Some(busy) = &s.lock.busy {
                Err(state::busy_error(busy))
            } else {
                Err(state::moved_error(s.lock.moved.as_ref().unwrap()))
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
        assert_eq!(seen.last_run.as_deref(), Some(""));
        take("first run", "").unwrap();
        assert!(probe("second run").busy.is_some());
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
        assert_eq!(probe("third run").last_run.unwrap(), "first run");
        // Seen before the first run changed the host: refused, the lock left free.
        let err = take("second run", "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(err.to_string().contains("changed this host"), "{err}");
        assert!(!std::path::Path::new(&lock).exists());
        take("second run", "first run").unwrap();
    }

    /// The holder is written and read back in one place: a run's own line round-trips, an
    /// older nodeprep's line is read with what it has, anything else is no holder. It names
    /// a real user and a fresh run id each run.
    #[test]
    fn the_holder_line_round_trips() {
        let me = LockHolder::this_run();
        assert_eq!(LockHolder::parse(&me.line()), Some(me.clone()));
        assert!(!me.user.is_empty() && !me.user.starts_with('?'), "{me}");
        assert_eq!(me.run_id.len(), 16, "{me}");
        assert_ne!(LockHolder::this_run().run_id, me.run_id);
        assert!(me.pid_space.is_some(), "{me}");
        let old = LockHolder::parse(
            "nodeprep run by ops@othermachine (pid 4242, started at unix time 1)",
        )
        .unwrap();
        assert_eq!(
            (old.user.as_str(), old.host.as_str(), old.pid),
            ("ops", "othermachine", 4242)
        );
        assert_eq!(
            (old.run_id.as_str(), old.started, old.pid_space),
            ("", 1, None)
        );
        for not in [
            "someone else",
            "nodeprep run by x@y",
            "nodeprep run by x@y (pid z)",
            "",
        ] {
            assert_eq!(LockHolder::parse(not), None, "{not}");
        }
    }

    /// Gone only when it is a runner of this machine, in this pid namespace and boot, whose
    /// process is no more: a namesake machine (two CI containers of one name) or a live
    /// process is never judged gone; a holder without its pid space neither.
    #[test]
    fn a_holder_is_gone_only_when_its_process_is_gone_here() {
        let me = LockHolder::this_run();
        let dead = LockHolder {
            pid: u32::MAX - 1,
            run_id: "0123456789abcdef".into(),
            ..me.clone()
        };
        assert!(dead.is_gone(), "{dead}");
        let live = LockHolder {
            pid: 1,
            ..dead.clone()
        };
        assert!(!live.is_gone(), "pid 1 lives");
        assert!(!me.is_gone(), "this very process");
        let namesake = LockHolder {
            pid_space: Some("4026531836@00000000-0000-0000-0000-000000000000".into()),
            ..dead.clone()
        };
        assert!(!namesake.is_gone(), "another container of the same name");
        let elsewhere = LockHolder {
            host: format!("{}-other", me.host),
            ..dead.clone()
        };
        assert!(!elsewhere.is_gone());
        let unknown = LockHolder {
            pid_space: None,
            ..dead
        };
        assert!(!unknown.is_gone());
    }

    /// The probe finds the lock held: busy, unless the holder is this very run, or gone.
    #[test]
    fn a_held_lock_is_broken_only_by_its_own_run_or_when_gone() {
        let me = LockHolder::this_run();
        let other = LockHolder {
            run_id: "another-run".into(),
            ..me.clone()
        };
        let seen = |holder: &LockHolder, stale: Option<fn(&LockHolder) -> bool>| {
            let mut s = State::default();
            s.lock.busy = Some(format!(
                "{}
since today",
                holder.line()
            ));
            let opts = Options {
                lock: Some(me.clone()),
                lock_is_stale: stale,
                ..Options::default()
            };
            LockSeen::from_probe(&mut s, &opts).map(|l| l.break_holder)
        };
        assert_eq!(seen(&me, None).unwrap(), Some(me.line()), "its own run");
        let e = seen(&other, None).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Busy);
        assert!(e.to_string().contains(&other.line()), "{e}");
        assert!(seen(&other, Some(LockHolder::is_gone)).is_err(), "alive");
        assert_eq!(
            seen(&other, Some(|_| true)).unwrap(),
            Some(other.line()),
            "gone"
        );
    }

    /// A run takes the lock before its first change and not before: reads send nothing more
    /// than the probe, the first write is preceded by the lock, the close releases it; a run
    /// that changes nothing sends the probe alone, even on close.
    #[test]
    fn the_lock_is_taken_before_the_first_change_only() {
        use crate::testing::simulated::Simulated;
        let mut s = State::default();
        s.facts.os_release = Some("ID=debian\nVERSION_ID=\"12\"\n".into());
        s.facts.systemd = true;
        let s = Arc::new(s);
        let opts = || Options {
            probe: Probe::default().files(&["/etc/motd"]),
            lock: Some(LockHolder::this_run()),
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
}
