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
    for path in paths {
        s.push_str(&format!("f {}\n", shell_quote(path.as_ref())));
    }
    s.push_str("m end -\n");
    s
}

/// The probe as a POSIX shell script (run as `sh -s` with the script on stdin).
pub fn probe_script(probe: &Probe) -> String {
    let mut s = String::from(PROBE_PRELUDE);
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
    for path in &probe.files {
        s.push_str(&format!("f {}\n", shell_quote(path)));
    }
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
            "prog" => {
                state.programs.insert(name.to_string(), true);
            }
            "none" => {
                state.files.insert(name.to_string(), None);
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
    if state.facts.contains_key("os-release") {
        state.packages = Some(packages);
    }
    Ok(state)
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
