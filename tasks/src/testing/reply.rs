//! The other side of the probe: what a host in a known [`State`] answers to the scripts of
//! `script`, in the format `parse` reads (sections opened by the marker, `systemctl show`
//! blocks, files as `stat` lines with their contents in one base64 stream), and what
//! such a script asks, read back from its text. A simulated host
//! ([`super::simulated::Simulated`]) answers with these; `parse_probe` of the reply gives the state
//! back, restricted to what was asked.

use std::fmt::Write as _;

use base64::Engine;

use crate::state::{ActiveState, LOCK_DIR, MARK, Probe, ProbedFacts, State, UnitState};

/// The facts a probe asks for, in the order its script asks, as the probe prints them
/// (`None`: nothing printed).
fn facts(f: &ProbedFacts) -> [(&'static str, Option<String>); 6] {
    [
        ("os-release", f.os_release.clone()),
        ("systemd", f.systemd.then(|| "yes".to_string())),
        ("container", f.container.clone()),
        ("hostname", f.hostname.clone()),
        ("uid", f.uid.map(|n| n.to_string())),
        ("nproc", f.nproc.map(|n| n.to_string())),
    ]
}

/// What a script of [`crate::state::probe_script`] or [`crate::state::files_script`] asks a host.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// Files, units, programs, and the run lock's state.
    pub probe: Probe,
    /// The facts and the installed packages too: a probe, not a cache-miss file read.
    pub facts: bool,
    /// The script takes the run lock ([`crate::state::lock_script`]), and asks nothing else.
    pub take_lock: bool,
}

/// What `script` asks, read back from its text; `None` for a script that is not one of
/// `script`'s (no end marker).
pub fn asked(script: &str) -> Option<Asked> {
    let mut a = Asked::default();
    let mut ended = false;
    let units_cmd = crate::state::units_show_command::<&str>(&[]);
    let units_prefix = units_cmd.trim_end_matches(" 2>/dev/null");
    let lock_prefix = format!("L={LOCK_DIR}; H=");
    // The probe's questions: `m ans I`, the command (its quoted words may span lines), then
    // `m ansrc I:$?`.
    let mut rest = script;
    while let Some(at) = rest.find("m ans ") {
        let after = &rest[at..];
        let start = after.find('\n')? + 1;
        let end = after.find("\nm ansrc ")?;
        let q = words(&after[start..end]);
        let cut = q.iter().position(|w| w == "2>/dev/null").unwrap_or(q.len());
        a.probe.queries.insert(q[..cut].to_vec());
        rest = &after[end + 1..];
    }
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("m fact os-release;") {
            a.facts = true;
        } else if line == "m end -" {
            ended = true;
        } else if line == "m stat -" {
            // `S=$( { if ...; then stat -L -c FORMAT -- "$@"; fi; stat -c FORMAT -- PATHS ; } ...`
            let w = words(lines.next()?);
            let from = w.iter().rposition(|w| w == "--")? + 1;
            let to = from + w[from..].iter().position(|w| w == "}")?;
            a.probe.files.extend(w[from..to].iter().cloned());
        } else if line.starts_with("stat -L -c ") {
            // The kernel's files: `stat -L -c FORMAT -- PATHS 2>/dev/null </dev/null`.
            let w = words(line);
            let from = w.iter().position(|w| w == "--")? + 1;
            let to = w.iter().position(|w| w == "2>/dev/null")?;
            a.probe.files.extend(w[from..to].iter().cloned());
        } else if let Some(rest) = line.strip_prefix(units_prefix) {
            let units = words(rest);
            let end = units.iter().position(|w| w == "2>/dev/null")?;
            a.probe.units.extend(units[..end].iter().cloned());
        } else if let Some(rest) = line.strip_prefix("# dir ") {
            a.probe.dirs.insert(words(rest).into_iter().next()?);
        } else if let Some(rest) = line.strip_prefix("command -v ") {
            a.probe.programs.insert(words(rest).into_iter().next()?);
        } else if let Some(rest) = line.strip_prefix(&lock_prefix) {
            // The probe: `L=DIR; H=HOLDER`; the lock script: `L=DIR; H=HOLDER; B=BREAK; S=LAST`.
            let w = words(rest);
            a.probe.lock = Some(w.first()?.clone());
            if w.iter().any(|w| w.starts_with("S=")) {
                a.take_lock = true;
                ended = true;
            }
        }
    }
    ended.then_some(a)
}

/// A line of shell as `sh` splits it into words, for the quoting [`crate::shell::shell_quote`]
/// writes (bare words, `'...'`, `\x`); an unquoted `;` ends a word like a space.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                started = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '\\' => {
                started = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() || c == ';' => {
                if started {
                    out.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// What a host in `state` answers to the script that asks `asked`, section for section as
/// that script prints them: the lock's state (busy when `state` holds a `lock-busy` fact), the
/// facts and packages of a probe, the units, the programs present, the steps' questions, the
/// directories listed, the files (`stat` lines, the plain files' contents in one base64 stream,
/// /proc and /sys files as text), the end marker. A path `state` does not hold is absent; a
/// unit it does not hold is not found. The lock script gets the lock, unless it is busy.
pub fn reply(state: &State, asked: &Asked) -> String {
    let probe = &asked.probe;
    let mut s = String::new();
    let busy = state.lock.busy.as_ref();
    if asked.take_lock {
        match busy {
            Some(holder) => {
                mark(&mut s, "lock", "busy");
                s.push_str(holder);
                s.push('\n');
            }
            None => mark(&mut s, "lock", "ok"),
        }
        mark(&mut s, "end", "-");
        return s;
    }
    if probe.lock.is_some() {
        if let Some(holder) = busy {
            mark(&mut s, "lock", "busy");
            s.push_str(holder);
            s.push('\n');
        }
        mark(&mut s, "last", "-");
        if let Some(last) = &state.lock.last_run {
            s.push_str(last);
            s.push('\n');
        }
    }
    if asked.facts {
        for (fact, value) in facts(&state.facts) {
            mark(&mut s, "fact", fact);
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                s.push_str(&v);
                s.push('\n');
            }
        }
        mark(&mut s, "pkgs", "-");
        for (name, version) in state.packages.iter().flatten() {
            let _ = writeln!(s, "{} {version}", name);
        }
    }
    if !probe.units.is_empty() {
        mark(&mut s, "units", "-");
        let blocks: Vec<String> = probe
            .units
            .iter()
            .map(|u| unit_block(u, state.units.get(u)))
            .collect();
        s.push_str(&blocks.join("\n"));
    }
    for prog in &probe.programs {
        if state.programs.get(prog) == Some(&true) {
            mark(&mut s, "prog", prog);
        }
    }
    // The probe's questions, answered as the converged host answers them (an unknown one:
    // an empty success, as every other command here).
    for (i, q) in probe.queries.iter().enumerate() {
        mark(&mut s, "ans", &i.to_string());
        if let Some(answer) = state.answers.get(q) {
            s.push_str(answer);
        }
        mark(&mut s, "ansrc", &format!("{i}:0"));
    }
    // Directories as the probe lists them (a symlink with its target); their regular files
    // are read with the others. A directory the state does not hold is absent.
    let mut listed: Vec<String> = Vec::new();
    for dir in &probe.dirs {
        match state.dirs.get(dir.as_str()).cloned().flatten() {
            Some(names) => {
                mark(&mut s, "dir", dir);
                for name in &names {
                    let path = format!("{dir}/{name}");
                    match state.links.get(&path) {
                        Some(target) => {
                            let _ = writeln!(s, "{name}\t{target}");
                        }
                        None => {
                            let _ = writeln!(s, "{name}\t");
                        }
                    }
                    if matches!(state.files.get(&path), Some(Some(f)) if !f.is_dir) {
                        listed.push(path);
                    }
                }
            }
            None => mark(&mut s, "nodir", dir),
        }
    }
    let (kernel, plain): (Vec<&str>, Vec<&str>) = probe
        .files
        .iter()
        .map(String::as_str)
        .partition(|p| crate::state::is_kernel_path(p));
    if probe.files.is_empty() && probe.dirs.is_empty() {
        mark(&mut s, "end", "-");
        return s;
    }
    let held = |p: &str| state.files.get(p).and_then(Option::as_ref);
    // `stat` as the script runs it: the plain files, the listed ones, the kernel's.
    let order: Vec<&str> = plain
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
        .chain(kernel.iter().copied())
        .collect();
    mark(&mut s, "stat", "-");
    let mut data = Vec::new();
    for path in &order {
        let Some(f) = held(path) else { continue };
        let kind = match (f.is_dir, f.content.is_empty()) {
            (true, _) => "directory",
            (false, true) => "regular empty file",
            (false, false) => "regular file",
        };
        let kernel_file = crate::state::is_kernel_path(path);
        let size = if f.is_dir || kernel_file {
            0
        } else {
            f.content.len()
        };
        let _ = writeln!(
            s,
            "{size} {:o} {} {} {kind}|{path}",
            f.mode, f.owner, f.group
        );
        if !f.is_dir && !kernel_file {
            data.extend_from_slice(&f.content);
        }
    }
    mark(&mut s, "data", "-");
    s.push_str(&base64::engine::general_purpose::STANDARD.encode(&data));
    s.push('\n');
    if !kernel.is_empty() {
        mark(&mut s, "kdata", "-");
        for path in &kernel {
            if let Some(f) = held(path).filter(|f| !f.is_dir) {
                for line in String::from_utf8_lossy(&f.content).lines() {
                    let _ = writeln!(s, "{path}\0{line}");
                }
            }
        }
    }
    mark(&mut s, "end", "-");
    s
}

/// Opens a section, as the probe's `m` does.
fn mark(s: &mut String, kind: &str, name: &str) {
    let _ = write!(s, "\n{MARK}{kind} {name}\n");
}

/// One unit as `systemctl show -p Id -p LoadState -p UnitFileState -p ActiveState` prints it.
fn unit_block(name: &str, unit: Option<&UnitState>) -> String {
    let unit = unit.cloned().unwrap_or_default();
    let load = if unit.enablement.is_found() {
        "loaded"
    } else {
        "not-found"
    };
    let active = match &unit.active {
        ActiveState::Unknown => "inactive",
        known => known.as_str(),
    };
    format!(
        "Id={name}\nLoadState={load}\nUnitFileState={}\nActiveState={active}\n",
        unit.enablement
    )
}

/// A quoted, multi-line script, asked by [`questions_probe`].
pub const QUOTED_SCRIPT: &str = "printf 'a b\\n'\nprintf 'it'\\''s\\n'";

/// A probe asking read-only questions that try its quoting and its answers: a quoted,
/// multi-line script ([`QUOTED_SCRIPT`]), a command that fails, an answer without a final
/// newline.
pub fn questions_probe() -> Probe {
    Probe::default().queries(&[
        &["echo", "one", "two"][..],
        &["sh", "-c", QUOTED_SCRIPT][..],
        &["false"][..],
        &["printf", "no newline"][..],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Host as _;
    use crate::state::{FileState, LockAnswer};
    use crate::state::{files_script, parse_probe, probe_script};

    fn file(mode: u32, owner: &str, content: &[u8]) -> Option<FileState> {
        Some(FileState {
            mode,
            owner: owner.into(),
            group: owner.into(),
            is_dir: false,
            content: content.to_vec(),
        })
    }

    fn unit(enablement: &str, active: &str) -> UnitState {
        UnitState {
            enablement: crate::state::Enablement::parse(enablement),
            active: ActiveState::parse(active),
        }
    }

    /// A host as a probe can report it: every fact, packages, units, programs, plain and
    /// kernel files, a directory, binary contents, a long name, an absent file.
    fn host() -> State {
        let mut s = State {
            facts: ProbedFacts {
                os_release: Some("ID=debian\nVERSION_ID=\"12\"".into()),
                systemd: true,
                container: None,
                hostname: Some("wok01".into()),
                uid: Some(0),
                nproc: Some(2),
                ..ProbedFacts::default()
            },
            ..State::default()
        };
        s.packages = Some(
            [("kbd", "2.5.1-1+b1"), ("locales", "2.36-9+deb12u9")]
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .into(),
        );
        s.units
            .insert("containerd.service".into(), unit("enabled", "active"));
        s.units
            .insert("kubelet.service".into(), unit("disabled", "inactive"));
        s.programs.insert("iptables".into(), true);
        s.programs.insert("nft".into(), false);
        s.files
            .insert("/etc/hostname".into(), file(0o644, "root", b"wok01\n"));
        s.files.insert(
            "/etc/shadow".into(),
            file(0o640, "shadow", b"root:*:1::::::\n"),
        );
        s.files
            .insert("/etc/bin".into(), file(0o755, "root", &[0, 1, 255]));
        s.files
            .insert("/etc/empty".into(), file(0o600, "nobody", b""));
        let long = format!("/var/lib/{}/f", "x".repeat(120));
        s.files.insert(long, file(0o644, "root", b"long"));
        s.files.insert(
            "/home/ops/.ssh".into(),
            Some(FileState {
                mode: 0o700,
                owner: "ops".into(),
                group: "ops".into(),
                is_dir: true,
                content: Vec::new(),
            }),
        );
        s.files.insert(
            "/proc/sys/net/ipv4/ip_forward".into(),
            file(0o644, "root", b"1\n"),
        );
        s.files.insert(
            "/sys/module/br_netfilter".into(),
            Some(FileState {
                mode: 0o755,
                owner: "root".into(),
                group: "root".into(),
                is_dir: true,
                content: Vec::new(),
            }),
        );
        s.files.insert("/etc/gone".into(), None);
        s
    }

    fn probe() -> Probe {
        let files: Vec<String> = [
            "/etc/hostname",
            "/etc/shadow",
            "/etc/bin",
            "/etc/empty",
            "/home/ops/.ssh",
            "/proc/sys/net/ipv4/ip_forward",
            "/sys/module/br_netfilter",
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "/etc/gone",
            "/etc/never/heard of",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("/var/lib/{}/f", "x".repeat(120))])
        .collect();
        Probe::default()
            .files(&files)
            .units(&["containerd.service", "kubelet.service", "nope.service"])
            .programs(&["iptables", "nft", "ip"])
    }

    /// Encoding then parsing gives the state back, restricted to what the probe asked: paths
    /// and units not held are absent and not found, programs not held are missing.
    /// The probe's read-only questions (a quoted, multi-line script included) are read back
    /// from its script as it asks them.
    #[test]
    fn the_probes_questions_are_read_back() {
        let probe = questions_probe();
        let asked = asked(&probe_script(&probe)).unwrap();
        assert_eq!(asked.probe.queries, probe.queries);
    }

    #[test]
    fn a_reply_parses_back_to_the_state() {
        let s = host();
        let p = probe();
        let asked = asked(&probe_script(&p)).unwrap();
        let back = parse_probe(&reply(&s, &asked), &p).unwrap();
        assert_eq!(back.facts, s.facts);
        assert_eq!(back.packages, s.packages);
        for path in &p.files {
            assert_eq!(
                back.files.get(path),
                Some(&s.files.get(path).cloned().flatten()),
                "{path}"
            );
        }
        assert_eq!(back.files.len(), p.files.len());
        assert_eq!(back.units["containerd.service"], unit("enabled", "active"));
        assert_eq!(back.units["kubelet.service"], unit("disabled", "inactive"));
        assert_eq!(back.units["nope.service"], unit("", "inactive"));
        assert_eq!(back.units.len(), 3);
        assert!(back.programs["iptables"]);
        assert!(!back.programs["nft"] && !back.programs["ip"]);
        assert_eq!(back.lock, LockAnswer::default(), "no lock was asked for");
    }

    /// The lock: the probe reports it busy (naming the holder) and the last run that released
    /// it; the lock script gets it when free, is refused naming the holder when held.
    #[test]
    fn the_lock_is_answered() {
        let p = Probe {
            lock: Some("nodeprep run by ops@adm (pid 7, started at unix time 1)".into()),
            ..Probe::default()
        };
        let a = asked(&probe_script(&p)).unwrap();
        assert_eq!(a.probe.lock, p.lock);
        assert!(!a.take_lock, "the probe only looks at the lock");
        let mut s = host();
        s.lock.last_run = Some("an earlier run".into());
        let back = parse_probe(&reply(&s, &a), &p).unwrap();
        assert_eq!(back.lock.busy, None);
        assert_eq!(back.lock.last_run.as_deref(), Some("an earlier run"));
        let take = asked(&crate::state::lock_script("me", None, "an earlier run")).unwrap();
        assert!(take.take_lock);
        let got = parse_probe(&reply(&s, &take), &Probe::default()).unwrap();
        assert!(got.lock.locked);
        s.lock.busy = Some("someone else\nsince today".into());
        let back = parse_probe(&reply(&s, &a), &p).unwrap();
        assert_eq!(back.lock.busy.as_deref(), Some("someone else\nsince today"));
        let got = parse_probe(&reply(&s, &take), &Probe::default()).unwrap();
        assert!(!got.lock.locked);
        assert_eq!(got.lock.busy.as_deref(), Some("someone else\nsince today"));
    }

    /// What a script asks, read back from the scripts `script` writes: a probe with a lock
    /// holder and names that need quoting, directories, and a cache-miss read of files only.
    #[test]
    fn scripts_are_read_back() {
        let p = Probe {
            lock: Some("run by o'brien (pid 1)".into()),
            ..probe()
        }
        .dirs(&["/etc/sysctl.d", "/etc/it's here"]);
        let a = asked(&probe_script(&p)).unwrap();
        assert!(a.facts);
        assert_eq!(a.probe.files, p.files);
        assert_eq!(a.probe.units, p.units);
        assert_eq!(a.probe.programs, p.programs);
        assert_eq!(a.probe.dirs, p.dirs);
        assert_eq!(a.probe.lock, p.lock);
        let a = asked(&probe_script(&Probe::default())).unwrap();
        assert!(a.probe.files.is_empty() && a.probe.lock.is_none());
        let paths = ["/etc/a b", "/proc/swaps", "/etc/it's"];
        let a = asked(&files_script(&paths)).unwrap();
        assert!(!a.facts);
        assert_eq!(a.probe.files, Probe::default().files(&paths).files);
        assert!(asked("echo hi").is_none());
        // A file read gets files only, which parse back.
        let s = host();
        let text = reply(&s, &asked(&files_script(&["/etc/hostname"])).unwrap());
        assert!(!text.contains("@@np:fact"), "{text}");
        let back = parse_probe(&text, &Probe::default().files(&["/etc/hostname"])).unwrap();
        assert_eq!(back.files["/etc/hostname"], s.files["/etc/hostname"]);
    }

    /// The reply is what a real shell running the probe prints, section for section: the same
    /// script run with `sh` over files laid out like the state gives the same parsed state.
    #[test]
    fn a_reply_reads_like_the_real_probe() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(format!("{d}/conf"), "a = 1\n").unwrap();
        std::fs::create_dir(format!("{d}/sub")).unwrap();
        let paths = [
            format!("{d}/conf"),
            format!("{d}/sub"),
            format!("{d}/absent"),
        ];
        let p = Probe::default().files(&paths);
        let real = crate::host::Local::new("t")
            .run(&crate::host::Cmd::new(&["sh", "-s"]).stdin(files_script(&paths)))
            .unwrap();
        let from_host = parse_probe(&real.stdout_str(), &p).unwrap();
        let mut s = State::default();
        for path in &paths {
            s.files
                .insert(path.clone(), from_host.files[path.as_str()].clone());
        }
        let simulated = reply(&s, &asked(&files_script(&paths)).unwrap());
        let back = parse_probe(&simulated, &p).unwrap();
        for path in &paths {
            assert_eq!(
                back.files[path.as_str()],
                from_host.files[path.as_str()],
                "{path}"
            );
        }
        // The same sections (a probe lists its files sorted; a file read as asked).
        let headers = |text: &str| -> Vec<String> {
            let mut h: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with(MARK))
                .map(String::from)
                .collect();
            h.sort();
            h
        };
        assert_eq!(headers(&simulated), headers(&real.stdout_str()));
    }

    #[test]
    fn words_as_sh_splits_them() {
        assert_eq!(words("a 'b c' d\\ e;f"), ["a", "b c", "d e", "f"]);
        assert_eq!(words(r"'it'\''s' ''"), ["it's", ""]);
    }
}
