//! The per-host state cache. One probe script, run in a single round trip at the start of a
//! run, returns the facts and everything tasks compare against (files with mode and owner,
//! installed packages, unit states, commands present); tasks read through the cache, a miss
//! costs one more round trip, and every write updates what it touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::host::shell_quote;

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

/// The host's run lock: a directory (mkdir is atomic) holding the holder's description.
pub const LOCK_DIR: &str = "/run/nodeprep.lock";

/// A lock older than this is taken to be left by a runner that died (seconds).
pub const LOCK_STALE_SECS: u64 = 6 * 3600;

/// The error for a lock held by someone else (`busy`: the holder's lines).
pub fn busy_error(busy: &str) -> Error {
    let lines: Vec<&str> = busy.lines().filter(|l| !l.trim().is_empty()).collect();
    Error::new(
        crate::error::ErrorKind::Busy,
        format!(
            "busy: another nodeprep run holds {LOCK_DIR} ({}); if none is running, remove that directory",
            lines.join(", ")
        ),
    )
}

/// Releases the lock if this holder has it.
pub fn unlock_script(holder: &str) -> String {
    format!(
        "L={LOCK_DIR}; [ \"$(cat \"$L/holder\" 2>/dev/null)\" = {h} ] && rm -rf \"$L\"; true",
        h = shell_quote(holder)
    )
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

/// `systemctl show` for some units, in the format [`parse_units_show`] reads.
pub fn units_show_command<S: AsRef<str>>(units: &[S]) -> String {
    let mut s = String::from(
        "systemctl show --no-pager -p Id -p LoadState -p UnitFileState -p ActiveState --",
    );
    for u in units {
        s.push(' ');
        s.push_str(&shell_quote(u.as_ref()));
    }
    s.push_str(" 2>/dev/null");
    s
}

/// Parses `systemctl show -p Id -p LoadState -p UnitFileState -p ActiveState` output (blocks
/// separated by blank lines). A unit that does not exist has LoadState=not-found: its
/// enablement is empty.
pub fn parse_units_show(text: &str) -> Vec<(String, UnitState)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut id = String::new();
        let mut st = UnitState::default();
        let mut load = String::new();
        for line in block.lines() {
            match line.split_once('=') {
                Some(("Id", v)) => id = v.to_string(),
                Some(("LoadState", v)) => load = v.to_string(),
                Some(("UnitFileState", v)) => st.enablement = v.to_string(),
                Some(("ActiveState", v)) => st.active = v.to_string(),
                _ => {}
            }
        }
        if id.is_empty() {
            continue;
        }
        if load == "not-found" {
            st.enablement.clear();
        }
        out.push((id, st));
    }
    out
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
    /// Raw facts answers (os-release text, virtualization, hostname...).
    pub facts: BTreeMap<String, String>,
    /// Every file is known: one not in `files` is absent (recorded hosts in tests).
    pub files_complete: bool,
}

const MARK: &str = "@@np:";

const PROBE_PRELUDE: &str = r#"export LC_ALL=C
m() { printf '\n@@np:%s %s\n' "$1" "$2"; }
f() {
  if [ -e "$1" ]; then
    m file "$1"
    if [ -d "$1" ]; then stat -L -c '%a %U %G dir' "$1"; echo; else stat -L -c '%a %U %G file' "$1"; base64 -w0 < "$1"; echo; fi
  else
    m none "$1"
  fi
}
"#;

/// A script that reads only files (a cache miss).
pub fn files_script<S: AsRef<str>>(paths: &[S]) -> String {
    let mut s = String::from(PROBE_PRELUDE);
    push_files(&mut s, paths);
    s.push_str("m end -\n");
    s
}

/// The shell that reads `paths`: files of /proc and /sys one by one (their size is not their
/// content), everything else in one `tar` stream (two processes instead of two per file),
/// falling back to one by one where GNU tar is missing. A path absent from the archive is absent.
fn push_files<S: AsRef<str>>(s: &mut String, paths: &[S]) {
    let (kernel, plain): (Vec<&str>, Vec<&str>) = paths
        .iter()
        .map(|p| p.as_ref())
        .partition(|p| p.starts_with("/proc/") || p.starts_with("/sys/"));
    for path in kernel {
        s.push_str(&format!("f {}\n", shell_quote(path)));
    }
    if plain.is_empty() {
        return;
    }
    let quoted: Vec<String> = plain.iter().map(|p| shell_quote(p)).collect();
    let list = quoted.join(" ");
    s.push_str(&format!(
        "if tar --version 2>/dev/null | grep -q 'GNU tar'; then\n  m tar -\n  tar -c -P -h --hard-dereference --no-recursion -f - -- {list} 2>/dev/null | base64 -w0; echo\nelse\n  for p in {list}; do f \"$p\"; done\nfi\n"
    ));
    for p in &plain {
        s.push_str(&format!("m want {}\n", shell_quote(p)));
    }
}

/// The probe as a POSIX shell script (run as `sh -s` with the script on stdin).
pub fn probe_script(probe: &Probe) -> String {
    let mut s = String::from(PROBE_PRELUDE);
    if let Some(holder) = &probe.lock {
        s.push_str(&format!(
            r#"L={LOCK_DIR}; H={h}; B={b}
if [ -n "$B" ] && [ "$(head -n1 "$L/holder" 2>/dev/null)" = "$B" ]; then rm -rf "$L"; fi
if [ -d "$L" ] && [ $(( $(date +%s) - $(stat -c %Y "$L" 2>/dev/null || date +%s) )) -gt {LOCK_STALE_SECS} ]; then rm -rf "$L"; fi
if mkdir "$L" 2>/dev/null; then printf '%s\n' "$H" > "$L/holder"; m lock ok
else m lock busy; cat "$L/holder" 2>/dev/null; printf 'since %s\n' "$(date -d @$(stat -c %Y "$L") '+%F %T %Z' 2>/dev/null)"
fi
"#,
            h = shell_quote(holder),
            b = shell_quote(probe.break_lock.as_deref().unwrap_or(""))
        ));
    }
    s.push_str(
        r#"m fact os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
m fact systemd; [ -d /run/systemd/system ] && echo yes
m fact container; (systemd-detect-virt --container 2>/dev/null) || { [ -f /.dockerenv ] && echo docker; } || { [ -f /run/.containerenv ] && echo podman; } || true
m fact hostname; cat /proc/sys/kernel/hostname
m fact uid; id -u
m fact nproc; nproc 2>/dev/null
m pkgs -
if command -v rpm >/dev/null 2>&1; then rpm -qa --qf '%{NAME} %{VERSION}-%{RELEASE}\n' 2>/dev/null
elif command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f '${db:Status-Abbrev}|${Package}|${Version}\n' 2>/dev/null | sed -n 's/^ii *|//p' | tr '|' ' '
fi
"#,
    );
    if !probe.units.is_empty() {
        s.push_str("m units -\n");
        s.push_str(&units_show_command(&probe.units.iter().collect::<Vec<_>>()));
        s.push('\n');
    }
    for prog in &probe.programs {
        s.push_str(&format!(
            "command -v {q} >/dev/null 2>&1 && m prog {q}\n",
            q = shell_quote(prog)
        ));
    }
    push_files(&mut s, &probe.files.iter().collect::<Vec<_>>());
    s.push_str("m end -\n");
    s
}

/// Parses the probe's reply. The reply must end with the end marker, or the probe was cut.
pub fn parse_probe(reply: &str, probe: &Probe) -> Result<State> {
    let mut state = State::default();
    if !reply.trim_end().ends_with(&format!("{MARK}end -")) {
        return Err(Error::other("state probe reply is incomplete"));
    }
    for prog in &probe.programs {
        state.programs.insert(prog.clone(), false);
    }
    let mut packages = BTreeMap::new();
    let mut wanted: Vec<String> = Vec::new();
    let mut in_tar: HashMap<String, FileState> = HashMap::new();
    for chunk in reply.split(&format!("\n{MARK}")).skip(1) {
        let (head, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let (kind, name) = head.split_once(' ').unwrap_or((head, ""));
        match kind {
            "fact" => {
                state
                    .facts
                    .insert(name.to_string(), body.trim_end().to_string());
            }
            "pkgs" => {
                for line in body.lines() {
                    let mut it = line.split_whitespace();
                    if let Some(pkg) = it.next() {
                        packages.insert(pkg.to_string(), it.next().unwrap_or("").to_string());
                    }
                }
            }
            "units" => {
                state.units.extend(parse_units_show(body));
            }
            "lock" => {
                if name == "ok" {
                    state.facts.insert("locked".into(), "yes".into());
                } else {
                    // The holder, then when it took the lock: Ctx::connect decides.
                    state
                        .facts
                        .insert("lock-busy".into(), body.trim().to_string());
                }
            }
            "prog" => {
                state.programs.insert(name.to_string(), true);
            }
            "none" => {
                state.files.insert(name.to_string(), None);
            }
            "want" => wanted.push(name.to_string()),
            "tar" => {
                let bytes = base64_decode(body.trim())
                    .ok_or_else(|| Error::other("state probe: bad tar stream"))?;
                for (path, file) in parse_tar(&bytes)? {
                    in_tar.insert(path, file);
                }
            }
            "file" => {
                let mut lines = body.lines();
                let stat = lines.next().unwrap_or("");
                let data = lines.next().unwrap_or("");
                let w: Vec<&str> = stat.split_whitespace().collect();
                if w.len() != 4 {
                    return Err(Error::other(format!(
                        "state probe: bad stat line for {name}: {stat:?}"
                    )));
                }
                let mode = u32::from_str_radix(w[0], 8)
                    .map_err(|_| Error::other(format!("state probe: bad mode for {name}")))?;
                let content = base64_decode(data.trim())
                    .ok_or_else(|| Error::other(format!("state probe: bad contents for {name}")))?;
                state.files.insert(
                    name.to_string(),
                    Some(FileState {
                        mode,
                        owner: w[1].into(),
                        group: w[2].into(),
                        is_dir: w[3] == "dir",
                        content,
                    }),
                );
            }
            _ => {}
        }
    }
    for path in wanted {
        // Read one by one (no tar on the host): already in `files`.
        if let std::collections::hash_map::Entry::Vacant(slot) = state.files.entry(path) {
            let file = in_tar.remove(slot.key());
            slot.insert(file);
        }
    }
    if state.facts.contains_key("os-release") {
        state.packages = Some(packages);
    }
    Ok(state)
}

/// The members of a tar archive (ustar or GNU, as `tar -c` writes): path → mode, owner,
/// group, contents. GNU long names (`L` entries) and the ustar prefix field are understood.
pub fn parse_tar(bytes: &[u8]) -> Result<Vec<(String, FileState)>> {
    fn field(b: &[u8]) -> String {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    }
    fn octal(b: &[u8]) -> Result<u64> {
        let t = field(b);
        let t = t.trim_matches(|c: char| c == ' ' || c == '\0');
        if t.is_empty() {
            return Ok(0);
        }
        u64::from_str_radix(t, 8)
            .map_err(|_| Error::other(format!("state probe: bad tar number {t:?}")))
    }
    let mut out = Vec::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    while pos + 512 <= bytes.len() {
        let h = &bytes[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&h[124..136])? as usize;
        let kind = h[156];
        let data_start = pos + 512;
        let data_end = data_start + size;
        if data_end > bytes.len() {
            return Err(Error::other("state probe: truncated tar stream"));
        }
        let data = &bytes[data_start..data_end];
        pos = data_start + size.div_ceil(512) * 512;
        if kind == b'L' {
            long_name = Some(field(data));
            continue;
        }
        let name = match long_name.take() {
            Some(n) => n,
            None => {
                let prefix = field(&h[345..500]);
                let name = field(&h[0..100]);
                if prefix.is_empty() || &h[257..262] != b"ustar" {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            }
        };
        let is_dir = kind == b'5';
        if !(kind == b'0' || kind == 0 || is_dir) {
            continue; // links, devices: not managed files
        }
        let path = name.trim_end_matches('/').to_string();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let file = FileState {
            mode: (octal(&h[100..108])? & 0o7777) as u32,
            owner: field(&h[265..297]),
            group: field(&h[297..329]),
            is_dir,
            content: if is_dir { Vec::new() } else { data.to_vec() },
        };
        out.push((path, file));
    }
    Ok(out)
}

/// Standard base64 (RFC 4648) decoding, padding optional; `None` on a bad character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
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

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a$b=").is_none());
    }

    #[test]
    fn parse_reply() {
        let probe = Probe::default()
            .files(&["/etc/fstab", "/etc/x"])
            .programs(&["ip", "socat"]);
        let reply = "\n@@np:fact os-release\nID=debian\n\n@@np:fact systemd\nyes\n\n@@np:pkgs -\nbash 5.2\nkmod 30\n\n@@np:units -\nId=ssh.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n\nId=nope.service\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n\n@@np:prog ip\n\n@@np:file /etc/fstab\n644 root root file\nYQ==\n\n@@np:none /etc/x\n\n@@np:end -\n";
        let s = parse_probe(reply, &probe).unwrap();
        assert_eq!(s.facts["systemd"], "yes");
        assert_eq!(s.packages.as_ref().unwrap()["kmod"], "30");
        assert_eq!(
            s.units["ssh.service"],
            UnitState {
                enablement: "enabled".into(),
                active: "active".into()
            }
        );
        assert_eq!(
            s.units["nope.service"],
            UnitState {
                enablement: "".into(),
                active: "inactive".into()
            }
        );
        assert!(s.programs["ip"]);
        assert!(!s.programs["socat"]);
        let fstab = s.files["/etc/fstab"].as_ref().unwrap();
        assert_eq!(
            (fstab.mode, fstab.content.as_slice()),
            (0o644, b"a".as_slice())
        );
        assert_eq!(s.files["/etc/x"], None);
        assert!(parse_probe("\n@@np:fact x\n", &probe).is_err());
    }
}
