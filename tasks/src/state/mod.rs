//! The per-host state cache. One probe script, run in a single round trip at the start of a
//! run, returns the facts and everything tasks compare against (files with mode and owner,
//! installed packages, unit states, commands present); tasks read through the cache, a miss
//! costs one more round trip, and every write updates what it touched.
//!
//! This module holds the cache itself ([`State`] and what it records) and [`Probe`], the
//! description of what to read. The shell sent to the host lives in `script`, the reading of
//! its reply in `parse`, the reply a host in a known state gives in `reply`; all are
//! re-exported here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

mod parse;
mod reply;
mod script;

pub use parse::{base64_decode, parse_probe, parse_tar, parse_units_show};
pub use reply::{Asked, asked, reply};
pub use script::{
    LOCK_DIR, LOCK_STALE_SECS, busy_error, files_script, probe_script, units_show_command,
    unlock_script,
};

/// A file as read on the host.
#[derive(Clone, PartialEq, Eq)]
pub struct FileState {
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub is_dir: bool,
    pub content: Vec<u8>,
}

impl FileState {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

impl std::fmt::Debug for FileState {
    // Contents stay out of Debug output: /etc/shadow passes through here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FileState({:o} {}:{}, {} bytes)",
            self.mode,
            self.owner,
            self.group,
            self.content.len()
        )
    }
}

/// A systemd unit as `systemctl list-unit-files` / `list-units` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// enabled, disabled, static, masked, ... (empty when the unit file is unknown).
    pub enablement: String,
    /// active, inactive, failed, ... (empty when not loaded).
    pub active: String,
}

/// What to read in the probe, beyond the facts.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub files: BTreeSet<String>,
    /// Programs whose presence on PATH is recorded.
    pub programs: BTreeSet<String>,
    /// systemd units whose enablement and activity are read.
    pub units: BTreeSet<String>,
    /// Take the run lock for this holder (see [`LOCK_DIR`]).
    pub lock: Option<String>,
    /// A holder known to be gone (its runner died): its lock is removed first.
    pub break_lock: Option<String>,
}

impl Probe {
    pub fn files<S: AsRef<str>>(mut self, paths: &[S]) -> Probe {
        self.files
            .extend(paths.iter().map(|p| p.as_ref().to_string()));
        self
    }

    pub fn programs<S: AsRef<str>>(mut self, names: &[S]) -> Probe {
        self.programs
            .extend(names.iter().map(|p| p.as_ref().to_string()));
        self
    }

    pub fn units<S: AsRef<str>>(mut self, names: &[S]) -> Probe {
        self.units
            .extend(names.iter().map(|p| p.as_ref().to_string()));
        self
    }

    /// Everything of `other` too.
    pub fn merge(mut self, other: &Probe) -> Probe {
        self.files.extend(other.files.iter().cloned());
        self.programs.extend(other.programs.iter().cloned());
        self.units.extend(other.units.iter().cloned());
        self
    }
}

/// Everything known about a host during a run.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Path → contents and stat; `None` when the file is absent. Paths not in the map are
    /// unknown (not probed).
    pub files: HashMap<String, Option<FileState>>,
    /// Installed package name → version. `None` until known.
    pub packages: Option<BTreeMap<String, String>>,
    pub units: HashMap<String, UnitState>,
    /// Program → present on PATH.
    pub programs: HashMap<String, bool>,
    /// Raw facts answers (os-release text, virtualization, hostname...), as the probe
    /// reported them.
    pub facts: BTreeMap<String, String>,
    /// Answers of read-only commands asked once per run (`iptables -S INPUT`), by argv, as
    /// the run's own changes left them (see `Ctx::query_once`).
    pub answers: HashMap<Vec<String>, String>,
    /// Every file is known: one not in `files` is absent (recorded hosts in tests).
    pub files_complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_through_tar_on_a_real_shell() {
        use crate::host::{Cmd, Host, Local};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(format!("{d}/plain"), "a\nb\n").unwrap();
        std::fs::write(format!("{d}/with space"), [0u8, 1, 2, 255]).unwrap();
        std::fs::create_dir(format!("{d}/sub")).unwrap();
        let long = format!("{d}/{}", "x".repeat(120));
        std::fs::write(&long, "long").unwrap();
        std::os::unix::fs::symlink(format!("{d}/plain"), format!("{d}/link")).unwrap();
        let paths = [
            format!("{d}/plain"),
            format!("{d}/with space"),
            format!("{d}/sub"),
            format!("{d}/absent"),
            format!("{d}/link"),
            long.clone(),
            "/proc/self/status".to_string(),
        ];
        let script = files_script(&paths);
        assert!(script.contains("tar -c"), "{script}");
        let out = Local::new("t")
            .run(&Cmd::new(&["sh", "-s"]).stdin(script))
            .unwrap();
        let probe = Probe::default().files(&paths);
        let s = parse_probe(&out.stdout_str(), &probe).unwrap();
        let get = |p: &str| {
            s.files
                .get(p)
                .unwrap_or_else(|| panic!("{p} not reported"))
                .clone()
        };
        assert_eq!(get(&paths[0]).unwrap().content, b"a\nb\n");
        assert_eq!(get(&paths[1]).unwrap().content, [0u8, 1, 2, 255]);
        assert!(get(&paths[2]).unwrap().is_dir);
        assert_eq!(get(&paths[3]), None);
        assert_eq!(
            get(&paths[4]).unwrap().content,
            b"a\nb\n",
            "symlinks are followed"
        );
        assert_eq!(get(&long).unwrap().content, b"long");
        assert!(
            get("/proc/self/status").unwrap().text().contains("Pid:"),
            "/proc read by content, not size"
        );
        let plain = get(&paths[0]).unwrap();
        let meta = std::fs::metadata(&paths[0]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(plain.mode, meta.permissions().mode() & 0o7777);
        assert_eq!(plain.owner, "root");
    }
}
