//! The host's run lock: taken before a run's first change, refused while another run holds
//! it or changed the host since the probe, released on close.

use super::{Ctx, Options};
use crate::error::{Error, Result};
use crate::host::Cmd;
use crate::state::{self, Probe, State};

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
            let holder = busy.lines().next().unwrap_or("").to_string();
            match opts.lock_is_stale {
                Some(stale) if !holder.is_empty() && stale(&holder) => {
                    lock.break_holder = Some(holder);
                }
                _ => return Err(state::busy_error(&busy)),
            }
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

    /// Releases the run lock, if this run took it (on close).
    pub(super) fn release_lock(&mut self) {
        if std::mem::take(&mut self.flags.locked)
            && let Some(holder) = self.opts.lock.clone()
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
}
