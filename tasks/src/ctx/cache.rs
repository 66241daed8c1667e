//! The state cache: what the run knows of the host, read through it, and kept coherent with
//! what commands did.

use super::Ctx;
use crate::error::Result;
use crate::host::Cmd;
use crate::state::{self, FileState, Probe, State, UnitState};

impl Ctx {
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
    pub(super) fn note_misses(&mut self, what: Vec<String>) {
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

    /// A file as the host has it (`None`: absent), through the cache.
    /// A path the probe found but did not read (a link, a device, a pipe, a file past
    /// [`state::FILE_CAP`]) is an error naming it.
    pub fn file(&mut self, path: &str) -> Result<Option<FileState>> {
        if let Some(unread) = self.state.unread.get(path) {
            return Err(unread.error(path).on_host(self.host.name()));
        }
        if let Some(known) = self.state.files.get(path) {
            return Ok(known.clone());
        }
        if self.state.files_complete {
            return Ok(None);
        }
        self.prefetch(&[path])?;
        if let Some(unread) = self.state.unread.get(path) {
            return Err(unread.error(path).on_host(self.host.name()));
        }
        Ok(self.state.files.get(path).cloned().flatten())
    }

    /// Reads into the cache, in one round trip, those of `paths` it does not know yet (for
    /// files known only at run time: a home directory, names from the inventory).
    pub fn prefetch(&mut self, paths: &[&str]) -> Result<()> {
        let missing = self.unknown_files(paths);
        if missing.is_empty() {
            return Ok(());
        }
        let probe = Probe::default().files(&missing);
        let script = state::files_script(&missing);
        let out = self.send(&Cmd::new(&["sh", "-s"]).stdin(script), true)?;
        self.files_read(&missing, &probe, &out)
    }

    /// Those of `paths` the cache knows nothing of, none when the probe read every file the
    /// run reads (they are then absent, and known so); the others are to be read in one round
    /// trip, a miss each.
    pub(super) fn unknown_files<'p>(&mut self, paths: &[&'p str]) -> Vec<&'p str> {
        let missing: Vec<&str> = paths
            .iter()
            .copied()
            .filter(|p| !self.state.files.contains_key(*p) && !self.state.unread.contains_key(*p))
            .collect();
        if self.state.files_complete {
            for path in missing {
                self.state.files.insert(path.to_string(), None);
            }
            return Vec::new();
        }
        if !missing.is_empty() {
            self.note_misses(missing.iter().map(|p| p.to_string()).collect());
        }
        missing
    }

    /// The answer `out` to [`state::files_script`] of `paths` (asked as `probe`), into the
    /// cache: each file's contents, or what it is when it was not read.
    pub(super) fn files_read(
        &mut self,
        paths: &[&str],
        probe: &Probe,
        out: &crate::host::Output,
    ) -> Result<()> {
        let read = state::parse_probe(&out.stdout_str(), probe)
            .map_err(|e| e.on_host(self.host.name()))?;
        for path in paths {
            self.state
                .files
                .insert(path.to_string(), read.files.get(*path).cloned().flatten());
            if let Some(unread) = read.unread.get(*path) {
                self.state.unread.insert(path.to_string(), unread.clone());
            }
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
    pub(super) fn listed(&mut self, path: &str) {
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
        // A user's own files are read as that user only (`owned.rs`): forgotten here, read
        // again as the user when next needed.
        let users: Vec<String> = self.as_user.keys().cloned().collect();
        for p in &users {
            self.state.files.remove(p);
            self.state.unread.remove(p);
        }
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
            match read.unread.get(path) {
                Some(u) => self.state.unread.insert(path.clone(), u.clone()),
                None => self.state.unread.remove(path),
            };
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

    /// A command changed these files in ways the cache cannot follow (useradd, locale-gen, a
    /// package's scripts): they are read again when next needed.
    pub fn forget(&mut self, paths: &[&str]) {
        for p in paths {
            self.state.files.remove(*p);
            self.state.unread.remove(*p);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{Mode, Options};
    use crate::host::Output;
    use crate::testing::ok;

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
        let facts = &cx.state().facts;
        assert_eq!(
            *facts,
            crate::state::ProbedFacts {
                os_release: facts.os_release.clone(),
                ..Default::default()
            }
        );
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
}
