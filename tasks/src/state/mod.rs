//! The per-host state cache. One probe script, run in a single round trip at the start of a
//! run, returns the facts and everything tasks compare against (files with mode and owner,
//! installed packages, unit states, commands present); tasks read through the cache, a miss
//! costs one more round trip, and every write updates what it touched.
//!
//! This module holds the cache itself ([`State`] and what it records) and [`Probe`], the
//! description of what to read. The shell sent to the host lives in `script`, the reading of
//! its reply in `parse`; both are re-exported here. (The reply a host in a known state gives,
//! for the simulated hosts, is a test double's: `crate::testing::reply`.)

use std::collections::{BTreeMap, BTreeSet, HashMap};

mod parse;
mod script;

// For the test doubles (`crate::testing`), which write and read back the probe's reply.
#[cfg(any(test, feature = "testing"))]
pub(crate) use parse::{Kind, parse_stat_line};
pub use parse::{
    base64_decode, parse_addresses, parse_package_lists, parse_probe, parse_units_show,
};
pub use script::{
    FILE_CAP, LAST_RUN, LOCK_DIR, LOCK_STALE_SECS, busy_error, dirs_script, files_script,
    identity_script, lock_script, moved_error, probe_script, units_show_command, unlock_script,
};
#[cfg(any(test, feature = "testing"))]
pub(crate) use script::{MARK, is_kernel_path};

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

/// A path the probe found but did not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Not a regular file nor a directory: `stat`'s word for what it is (`symbolic link`,
    /// `fifo`, `character special file`, `socket`...). The probe follows no link it is asked
    /// about: a step that expects a file there fails, naming the path.
    NotRegular(String),
    /// A regular file larger than the probe reads ([`FILE_CAP`]): its size.
    TooLarge(u64),
}

impl Unread {
    /// The error of a step that needs `path` as a file or a directory.
    pub fn error(&self, path: &str) -> crate::error::Error {
        match self {
            Unread::NotRegular(what) => crate::error::Error::invalid(format!(
                "{path} is a {what}, not a regular file or directory: refusing to read or replace it (nodeprep follows no link and reads no device or pipe there)"
            )),
            Unread::TooLarge(size) => crate::error::Error::invalid(format!(
                "{path} is {size} bytes, more than the {} MiB nodeprep reads of a file",
                FILE_CAP >> 20
            )),
        }
    }
}

/// A systemd unit as `systemctl list-unit-files` / `list-units` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// enabled, disabled, static, masked, ... ([`Enablement::NotFound`] when the unit file is
    /// unknown).
    pub enablement: Enablement,
    /// active, inactive, failed, ... ([`ActiveState::Unknown`] when not loaded).
    pub active: ActiveState,
}

/// Names systemd's words for a state, each variant to its word and back, any other word kept
/// in `Other` (nothing systemd says is lost; `Display` gives the word back).
macro_rules! systemd_words {
    ($(#[$doc:meta])* $name:ident, $empty:ident, { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
        pub enum $name {
            /// No word (an empty answer).
            #[default]
            $empty,
            $($(#[$vdoc])* $variant,)*
            /// A word not named here, as systemd said it.
            Other(String),
        }

        impl $name {
            /// The state systemd names `word` (surrounding space ignored).
            pub fn parse(word: &str) -> $name {
                match word.trim() {
                    "" => $name::$empty,
                    $($word => $name::$variant,)*
                    other => $name::Other(other.to_string()),
                }
            }

            /// systemd's word (empty for none).
            pub fn as_str(&self) -> &str {
                match self {
                    $name::$empty => "",
                    $($name::$variant => $word,)*
                    $name::Other(word) => word,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

systemd_words!(
    /// A unit's `UnitFileState`: whether it starts at boot.
    Enablement, NotFound, {
        Enabled = "enabled",
        EnabledRuntime = "enabled-runtime",
        Static = "static",
        Alias = "alias",
        Indirect = "indirect",
        Generated = "generated",
        Disabled = "disabled",
        Masked = "masked",
    }
);

systemd_words!(
    /// A unit's `ActiveState` (or `systemctl is-active`'s answer): whether it runs.
    ActiveState, Unknown, {
        Active = "active",
        Inactive = "inactive",
        Failed = "failed",
        Activating = "activating",
        Deactivating = "deactivating",
        Reloading = "reloading",
    }
);

impl Enablement {
    /// A unit file is known (LoadState was not `not-found`).
    pub fn is_found(&self) -> bool {
        *self != Enablement::NotFound
    }
}

/// apt's package lists as the probe saw them: how long ago they were last refreshed, and how
/// many package indexes they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageLists {
    /// Seconds since the last `apt-get update`, by the host's clock: its `date +%s` against the
    /// newest mtime of /var/lib/apt/lists, /var/lib/apt/lists/partial (which every `apt-get
    /// update` touches, even one that finds nothing new) and
    /// /var/lib/apt/periodic/update-success-stamp (Ubuntu's stamp, what Ansible's
    /// `cache_valid_time` reads first). 0 when the newest is in the future.
    pub age_secs: u64,
    /// `*_Packages*` files in /var/lib/apt/lists: none means no lists at all (a container
    /// image that removed them), whatever their age.
    pub indexes: u32,
}

impl PackageLists {
    /// Lists that hold packages and are no older than `max_age`.
    pub fn fresh(&self, max_age: std::time::Duration) -> bool {
        self.indexes > 0 && self.age_secs <= max_age.as_secs()
    }
}

/// What to read in the probe, beyond the facts.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub files: BTreeSet<String>,
    /// Programs whose presence on PATH is recorded.
    pub programs: BTreeSet<String>,
    /// systemd units whose enablement and activity are read.
    pub units: BTreeSet<String>,
    /// Directories listed (their entries, symlinks with their targets), every regular file in
    /// them read too: for configuration read from whole directories (sysctl.d).
    pub dirs: BTreeSet<String>,
    /// Read-only commands run in the probe (argv); an answer (stdout of a zero exit) is kept
    /// in [`State::answers`].
    pub queries: BTreeSet<Vec<String>>,
    /// A run that takes the lock for this holder before its first change (see [`LOCK_DIR`]):
    /// the probe reports who holds it now, and the last run that released it.
    pub lock: Option<String>,
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

    pub fn dirs<S: AsRef<str>>(mut self, paths: &[S]) -> Probe {
        self.dirs
            .extend(paths.iter().map(|p| p.as_ref().to_string()));
        self
    }

    pub fn queries<S: AsRef<str>>(mut self, queries: &[&[S]]) -> Probe {
        self.queries.extend(
            queries
                .iter()
                .map(|q| q.iter().map(|w| w.as_ref().to_string()).collect()),
        );
        self
    }

    /// Everything of `other` too.
    pub fn merge(mut self, other: &Probe) -> Probe {
        self.files.extend(other.files.iter().cloned());
        self.queries.extend(other.queries.iter().cloned());
        self.dirs.extend(other.dirs.iter().cloned());
        self.programs.extend(other.programs.iter().cloned());
        self.units.extend(other.units.iter().cloned());
        self
    }
}

/// What the probe read of the host itself, each answer in its type (`None`: not reported, or
/// not in a form the field holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbedFacts {
    /// /etc/os-release's text; `Some` (perhaps empty) whenever the reply was a probe's, `None`
    /// for a lock or file read.
    pub os_release: Option<String>,
    /// systemd is PID 1 (/run/systemd/system exists).
    pub systemd: bool,
    /// The container technology when the host is a container (docker, podman, lxc...).
    pub container: Option<String>,
    /// The kernel's host name.
    pub hostname: Option<String>,
    /// /etc/machine-id's text.
    pub machine_id: Option<String>,
    /// The host's addresses (loopback included).
    pub addresses: Vec<std::net::IpAddr>,
    /// The user the probe runs as.
    pub uid: Option<u32>,
    /// The CPUs the probe may run on.
    pub nproc: Option<u32>,
}

/// The run lock's state as a probe (asked with a holder) or the lock script answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockAnswer {
    /// The lock script took the lock.
    pub locked: bool,
    /// Another run holds it: its holder, then a `since ...` line.
    pub busy: Option<String>,
    /// Another run released it since the probe: that run.
    pub moved: Option<String>,
    /// The last run to release the lock (empty when none did); `None` when not asked.
    pub last_run: Option<String>,
}

/// Everything known about a host during a run.
#[derive(Debug, Clone)]
pub struct State {
    /// Path → contents and stat; `None` when the file is absent. Paths not in the map are
    /// unknown (not probed).
    pub files: HashMap<String, Option<FileState>>,
    /// Installed package name → version. `None` until known.
    pub packages: Option<BTreeMap<String, String>>,
    /// apt's package lists (`None`: the host has no /var/lib/apt/lists, or it was not read).
    pub package_lists: Option<PackageLists>,
    pub units: HashMap<String, UnitState>,
    /// Program → present on PATH.
    pub programs: HashMap<String, bool>,
    /// What the probe read of the host itself (os-release text, systemd, container, hostname...).
    pub facts: ProbedFacts,
    /// The run lock as the probe or the lock script found it.
    pub lock: LockAnswer,
    /// Answers of read-only commands asked once per run (`iptables -S INPUT`), by argv, as
    /// the run's own changes left them (see `Ctx::query_once`).
    pub answers: HashMap<Vec<String>, String>,
    /// Every file is known: one not in `files` is absent (recorded hosts in tests).
    pub files_complete: bool,
    /// Directory → its entry names, sorted (`None`: no such directory). Listed directories
    /// have their regular files in `files` too.
    pub dirs: HashMap<String, Option<Vec<String>>>,
    /// Entries of listed directories that are symlinks → the path they resolve to
    /// (`readlink -f`).
    pub links: HashMap<String, String>,
    /// Paths the probe was asked to read and found, but did not read: links, devices, pipes,
    /// sockets, files past [`FILE_CAP`]. Absent from `files`.
    pub unread: HashMap<String, Unread>,
}

impl Default for State {
    /// An empty state, with room for what a role's probe reads (its files, units and programs):
    /// a probe's reply is read into it without the maps growing on the way.
    fn default() -> State {
        State {
            files: HashMap::with_capacity(56),
            packages: None,
            package_lists: None,
            units: HashMap::with_capacity(28),
            programs: HashMap::with_capacity(7),
            facts: ProbedFacts::default(),
            lock: LockAnswer::default(),
            answers: HashMap::new(),
            files_complete: false,
            dirs: HashMap::new(),
            links: HashMap::new(),
            unread: HashMap::new(),
        }
    }
}

impl State {
    /// The entries of `dir` as the files this state knows show them (a recorded host whose
    /// files are all known): every present file or directory whose parent is `dir`. `None`
    /// when nothing is known under `dir` and `dir` itself is not a known directory.
    pub fn listing_from_files(&self, dir: &str) -> Option<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .files
            .iter()
            .filter(|(_, f)| f.is_some())
            .filter_map(|(p, _)| p.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        let is_dir = matches!(self.files.get(dir), Some(Some(f)) if f.is_dir);
        (is_dir || !names.is_empty()).then_some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// systemd's words read into the states and given back as they were, an unknown word
    /// kept whole, none read as none.
    #[test]
    fn unit_states_keep_systemds_words() {
        for word in [
            "enabled",
            "enabled-runtime",
            "static",
            "masked",
            "linked-runtime",
            "",
        ] {
            assert_eq!(Enablement::parse(word).to_string(), word);
        }
        for word in [
            "active",
            "inactive",
            "failed",
            "activating",
            "maintenance",
            "",
        ] {
            assert_eq!(ActiveState::parse(word).to_string(), word);
        }
        assert_eq!(Enablement::parse(" masked\n"), Enablement::Masked);
        assert_eq!(
            Enablement::parse("linked"),
            Enablement::Other("linked".into())
        );
        assert!(!Enablement::parse("").is_found() && Enablement::parse("bad").is_found());
        assert_eq!(ActiveState::parse("active\n"), ActiveState::Active);
        assert_eq!(ActiveState::parse(""), ActiveState::Unknown);
        assert_eq!(
            ActiveState::parse("maintenance"),
            ActiveState::Other("maintenance".into())
        );
    }

    /// What proves a host's identity, read by the probe on a real shell: its addresses
    /// (loopback at least) and its machine-id.
    /// The probe's own read-only questions, on a real shell: an answer kept as the command
    /// printed it (a quoted, multi-line script included), a failed one not kept (the simulated
    /// host reads the same questions back from the script: `testing::reply`'s tests).
    #[test]
    fn the_probe_answers_its_questions() {
        use crate::host::{Cmd, Host, Local};
        use crate::testing::reply::{QUOTED_SCRIPT, questions_probe};
        let probe = questions_probe();
        let out = Local::new("t")
            .run(&Cmd::new(&["sh", "-s"]).stdin(probe_script(&probe)))
            .unwrap();
        let s = parse_probe(&out.stdout_str(), &probe).unwrap();
        let answer = |q: &[&str]| {
            s.answers
                .get(&q.iter().map(|w| w.to_string()).collect::<Vec<_>>())
                .cloned()
        };
        assert_eq!(
            answer(&["echo", "one", "two"]).as_deref(),
            Some("one two\n")
        );
        assert_eq!(
            answer(&["sh", "-c", QUOTED_SCRIPT]).as_deref(),
            Some("a b\nit's\n")
        );
        assert_eq!(answer(&["false"]), None);
        assert_eq!(
            answer(&["printf", "no newline"]).as_deref(),
            Some("no newline")
        );
    }

    #[test]
    fn the_probe_reads_addresses_and_machine_id() {
        use crate::host::{Cmd, Host, Local};
        let out = Local::new("t")
            .run(&Cmd::new(&["sh", "-s"]).stdin(probe_script(&Probe::default())))
            .unwrap();
        let s = parse_probe(&out.stdout_str(), &Probe::default()).unwrap();
        let addresses = &s.facts.addresses;
        assert!(
            addresses.contains(&"127.0.0.1".parse().unwrap()),
            "{addresses:?}"
        );
        let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        assert_eq!(s.facts.machine_id.as_deref().unwrap_or(""), id.trim());
    }

    /// apt's lists read by the probe on a real shell, /var/lib/apt pointed elsewhere: their
    /// age is the newest of the directory and its `partial/` (which `apt-get update` touches
    /// even when nothing changed), their indexes counted; no directory, nothing reported.
    #[test]
    fn the_probe_reads_the_age_of_apt_lists() {
        use crate::host::{Cmd, Host, Local};
        use std::time::SystemTime;
        let tmp = tempfile::tempdir().unwrap();
        let apt = tmp.path().display().to_string();
        let lists = tmp.path().join("lists");
        let run = || {
            let script =
                probe_script(&Probe::default()).replace("/var/lib/apt/", &format!("{apt}/"));
            let out = Local::new("t")
                .run(&Cmd::new(&["sh", "-s"]).stdin(script))
                .unwrap();
            parse_probe(&out.stdout_str(), &Probe::default())
                .unwrap()
                .package_lists
        };
        assert_eq!(run(), None, "no lists directory");
        std::fs::create_dir_all(lists.join("partial")).unwrap();
        for f in [
            "deb.debian.org_debian_dists_bookworm_InRelease",
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
            "security.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4",
        ] {
            std::fs::write(lists.join(f), "").unwrap();
        }
        let aged = |path: &std::path::Path, secs: u64| {
            let when = SystemTime::now() - Duration::from_secs(secs);
            std::fs::File::open(path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        aged(&lists, 7200);
        aged(&lists.join("partial"), 100);
        let got = run().unwrap();
        assert_eq!(got.indexes, 2);
        assert!((100..160).contains(&got.age_secs), "{got:?}");
        assert!(got.fresh(Duration::from_secs(3600)));
        std::fs::remove_dir(lists.join("partial")).unwrap();
        aged(&lists, 7200);
        let got = run().unwrap();
        assert!((7200..7260).contains(&got.age_secs), "{got:?}");
        assert!(!got.fresh(Duration::from_secs(3600)));
    }

    #[test]
    fn files_read_on_a_real_shell() {
        use crate::host::{Cmd, Host, Local};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(format!("{d}/plain"), "a\nb\n").unwrap();
        std::fs::write(format!("{d}/with space"), [0u8, 1, 2, 255]).unwrap();
        std::fs::create_dir(format!("{d}/sub")).unwrap();
        let long = format!("{d}/{}", "x".repeat(120));
        std::fs::write(&long, "long").unwrap();
        std::os::unix::fs::symlink(format!("{d}/plain"), format!("{d}/link")).unwrap();
        // What a user may leave where a file is expected: a pipe (a read would wait for ever),
        // a device (endless), a file past the cap (sparse: no disk used).
        Local::new("t")
            .run(&Cmd::new(&["mkfifo", &format!("{d}/fifo")]))
            .unwrap();
        std::os::unix::fs::symlink("/dev/zero", format!("{d}/zero")).unwrap();
        std::fs::File::create(format!("{d}/big"))
            .unwrap()
            .set_len(FILE_CAP + 1)
            .unwrap();
        std::fs::File::create(format!("{d}/at-cap"))
            .unwrap()
            .set_len(FILE_CAP)
            .unwrap();
        // A directory of root's that only root may write: a link there is the system's own
        // (Debian's /etc/sysctl.d/99-sysctl.conf) and is followed. The others above are in a
        // directory another user owns, where a link stays a link.
        std::fs::create_dir(format!("{d}/sys")).unwrap();
        std::fs::set_permissions(
            format!("{d}/sys"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("../plain", format!("{d}/sys/99-link.conf")).unwrap();
        let root = crate::host::current_uid() == 0;
        if root {
            std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
        }
        let paths = [
            format!("{d}/plain"),
            format!("{d}/with space"),
            format!("{d}/sub"),
            format!("{d}/absent"),
            format!("{d}/link"),
            long.clone(),
            "/proc/self/status".to_string(),
            format!("{d}/fifo"),
            format!("{d}/zero"),
            "/dev/zero".to_string(),
            format!("{d}/big"),
            format!("{d}/at-cap"),
            format!("{d}/sys/99-link.conf"),
        ];
        let script = files_script(&paths);
        assert!(!script.contains("tar"), "no tar needed: {script}");
        let start = std::time::Instant::now();
        let out = Local::new("t")
            .run(
                &Cmd::new(&["sh", "-s"])
                    .stdin(script)
                    .timeout(Duration::from_secs(60)),
            )
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(30));
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
        // Links, pipes and devices are reported as what they are, never read; a file past the
        // cap by its size.
        assert_eq!(get(&paths[4]), None, "a link named is not followed");
        let unread = |p: &str| s.unread.get(p).cloned();
        assert_eq!(
            unread(&paths[4]),
            Some(Unread::NotRegular("symbolic link".into()))
        );
        assert_eq!(unread(&paths[7]), Some(Unread::NotRegular("fifo".into())));
        assert_eq!(
            unread(&paths[8]),
            Some(Unread::NotRegular("symbolic link".into()))
        );
        assert_eq!(
            unread("/dev/zero"),
            Some(Unread::NotRegular("character special file".into()))
        );
        assert_eq!(unread(&paths[10]), Some(Unread::TooLarge(FILE_CAP + 1)));
        assert_eq!(
            get(&paths[11]).unwrap().content.len() as u64,
            FILE_CAP,
            "a file of the cap's size is read"
        );
        if root {
            assert_eq!(
                get(&paths[12]).unwrap().content,
                b"a\nb\n",
                "a link in a directory only root writes is followed"
            );
        }
        assert!(
            unread(&paths[7])
                .unwrap()
                .error(&paths[7])
                .to_string()
                .contains(&format!("{} is a fifo", paths[7]))
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

    /// Directory listings on a real shell: entries sorted, symlinks with their targets, the
    /// regular files read, an absent directory told apart from an empty one.
    #[test]
    fn dirs_listed_on_a_real_shell() {
        use crate::host::{Cmd, Host, Local};
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("sysctl.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("99-b.conf"), "b = 1\n").unwrap();
        std::fs::write(d.join("10-a.conf"), "a = 1\n").unwrap();
        std::fs::write(tmp.path().join("sysctl.conf"), "c = 1\n").unwrap();
        std::os::unix::fs::symlink("../sysctl.conf", d.join("99-sysctl.conf")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("odd\nname.conf"), "x").unwrap();
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let dir = d.display().to_string();
        let dirs = [
            dir.clone(),
            empty.display().to_string(),
            tmp.path().join("absent").display().to_string(),
        ];
        let probe = Probe::default().dirs(&dirs);
        let out = Local::new("t")
            .run(&Cmd::new(&["sh", "-s"]).stdin(probe_script(&probe)))
            .unwrap();
        let s = parse_probe(&out.stdout_str(), &probe).unwrap();
        assert_eq!(
            s.dirs[&dir].as_deref().unwrap(),
            ["10-a.conf", "99-b.conf", "99-sysctl.conf", "sub"]
        );
        assert_eq!(s.dirs[&dirs[1]].as_deref(), Some(&[][..]));
        assert_eq!(s.dirs[&dirs[2]], None);
        let link = format!("{dir}/99-sysctl.conf");
        let target = std::fs::canonicalize(tmp.path().join("sysctl.conf")).unwrap();
        assert_eq!(s.links[&link], target.display().to_string());
        assert_eq!(s.files[&link].as_ref().unwrap().content, b"c = 1\n");
        assert_eq!(
            s.files[&format!("{dir}/10-a.conf")]
                .as_ref()
                .unwrap()
                .content,
            b"a = 1\n"
        );
        assert!(!s.files.contains_key(&format!("{dir}/sub")));
    }
}
