//! Reading the probe's reply: the sections `script` asks for, `systemctl show` blocks, and the
//! `tar` stream and base64 the files come in.

use std::collections::{BTreeMap, HashMap};

use super::script::MARK;
use super::{FileState, Probe, State, UnitState};
use crate::error::{Error, Result};

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
