//! Reading the probe's reply: the sections `script` asks for, `systemctl show` blocks, and the
//! `tar` stream and base64 the files come in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::script::MARK;
use super::{FileState, PackageLists, Probe, State, UnitState};
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
    let queries: Vec<&Vec<String>> = probe.queries.iter().collect();
    let mut answered: HashMap<usize, String> = HashMap::new();
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
            "lists" => state.package_lists = parse_package_lists(body),
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
            "ans" => {
                if let Ok(i) = name.parse::<usize>() {
                    answered.insert(i, body.to_string());
                }
            }
            "ansrc" => {
                let (i, status) = name.split_once(':').unwrap_or((name, ""));
                if let (Ok(i), "0") = (i.parse::<usize>(), status.trim())
                    && let (Some(q), Some(answer)) = (queries.get(i), answered.remove(&i))
                {
                    state.answers.insert((*q).clone(), answer);
                }
            }
            "none" => {
                state.files.insert(name.to_string(), None);
            }
            "nodir" => {
                state.dirs.insert(name.to_string(), None);
            }
            "dir" => {
                let mut names = Vec::new();
                for line in body.lines().filter(|l| !l.is_empty()) {
                    let (entry, target) = line.split_once('\t').unwrap_or((line, ""));
                    if !target.is_empty() {
                        state
                            .links
                            .insert(format!("{name}/{entry}"), target.to_string());
                    }
                    names.push(entry.to_string());
                }
                names.sort();
                state.dirs.insert(name.to_string(), Some(names));
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

/// apt's package lists from the probe's `lists` section: `NOW NEWEST_MTIME INDEXES`, the host's
/// clock and the newest mtime in seconds since the epoch. Anything else is unknown (`None`:
/// the lists are then refreshed before an install, as if stale).
pub fn parse_package_lists(body: &str) -> Option<PackageLists> {
    let w: Vec<u64> = body
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    let [now, mtime, indexes] = w[..] else {
        return None;
    };
    Some(PackageLists {
        age_secs: now.saturating_sub(mtime),
        indexes: u32::try_from(indexes).unwrap_or(u32::MAX),
    })
}

/// The host's addresses, from the probe's `addresses` fact: `ip -o addr show` lines, or where
/// `ip` is missing, /proc/net/fib_trie (IPv4: the `|-- ADDR` followed by `/32 host LOCAL`) and
/// /proc/net/if_inet6 (IPv6: 32 hex digits first). Sorted, without duplicates; loopback
/// addresses included (the caller decides what they prove).
pub fn parse_addresses(text: &str) -> Vec<IpAddr> {
    let mut out = BTreeSet::new();
    let mut last_trie: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // `2: eth0    inet 172.17.0.2/16 brd ... scope global eth0\ ...`
        if let Some(i) = words.iter().position(|w| *w == "inet" || *w == "inet6") {
            if let Some(ip) = words
                .get(i + 1)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok())
            {
                out.insert(ip);
            }
            continue;
        }
        // fib_trie: `|-- 172.17.0.2` then `/32 host LOCAL`.
        if let Some(rest) = line.trim_start().strip_prefix("|-- ") {
            last_trie = rest.trim().parse().ok();
            continue;
        }
        if line.trim_start().starts_with("/32 host LOCAL") {
            if let Some(ip) = last_trie.take() {
                out.insert(IpAddr::V4(ip));
            }
            continue;
        }
        // if_inet6: `fe800000000000000242ac1100020000 2a 40 20 80 eth0`.
        if let Some(hex) = words.first()
            && words.len() >= 6
            && hex.len() == 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(n) = u128::from_str_radix(hex, 16)
        {
            out.insert(IpAddr::V6(Ipv6Addr::from(n)));
        }
    }
    out.into_iter().collect()
}

/// The members of a tar archive (as GNU `tar -c` writes; ustar and pax too): path → mode,
/// owner, group, contents. Regular files and directories only: links and devices are not
/// managed files (the probe dereferences symlinks, so it sends none). Paths are made absolute
/// and lose a trailing `/`.
pub fn parse_tar(bytes: &[u8]) -> Result<Vec<(String, FileState)>> {
    let bad = |e: std::io::Error| Error::other(format!("state probe: bad tar stream: {e}"));
    let name = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if !(kind.is_file() || is_dir) {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let header = entry.header();
        let mode = header.mode().map_err(bad)? & 0o7777;
        let owner = name(header.username_bytes());
        let group = name(header.groupname_bytes());
        let mut content = Vec::new();
        if !is_dir {
            entry.read_to_end(&mut content).map_err(bad)?;
            // The crate reads a member cut short by the end of the input as a shorter file;
            // a file read in part must not pass for the file.
            if content.len() as u64 != entry.size() {
                return Err(Error::other("state probe: truncated tar stream"));
            }
        }
        out.push((
            path,
            FileState {
                mode,
                owner,
                group,
                is_dir,
                content,
            },
        ));
    }
    Ok(out)
}

/// Standard base64 (RFC 4648 alphabet), padding optional, bits past the last byte ignored: what
/// the hand-written decoder this replaced accepted (`general_purpose::STANDARD` would refuse
/// unpadded input such as `YQ`).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 (RFC 4648) decoding, padding optional; `None` on a bad character
/// (whitespace included: callers trim the ends) or a bad length.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_ip_or_proc() {
        let ip = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.10.57/24 brd 192.168.10.255 scope global eth0\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.10.99/24 scope global secondary eth0
2: eth0    inet6 fe80::250:56ff:fe01:203/64 scope link \\       valid_lft forever preferred_lft forever
";
        let want: Vec<IpAddr> = [
            "127.0.0.1",
            "192.168.10.57",
            "192.168.10.99",
            "::1",
            "fe80::250:56ff:fe01:203",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(parse_addresses(ip), want);
        let proc = "# fib_trie
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 172.17.0.0/16 2 0 2
        |-- 172.17.0.0
           /16 link UNICAST
        |-- 172.17.0.2
           /32 host LOCAL
Local:
        |-- 172.17.0.2
           /32 host LOCAL
# if_inet6
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000250568fffe01203 02 40 20 80     eth0
";
        let got: Vec<String> = parse_addresses(proc)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            got,
            ["127.0.0.1", "172.17.0.2", "::1", "fe80::250:568f:ffe0:1203"]
        );
        assert!(parse_addresses("").is_empty());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a$b=").is_none());
        // As before the crate: bits past the last byte are ignored, short padding is fine,
        // whitespace inside is refused (base64 -w0 wraps nothing; callers trim the ends).
        assert_eq!(base64_decode("YR").unwrap(), b"a");
        assert_eq!(base64_decode("YQ=").unwrap(), b"a");
        assert!(base64_decode("YWJj\nZGVm").is_none());
        assert!(base64_decode("Y").is_none());
    }

    /// A GNU archive as `tar -c -P` writes it, built by the `tar` crate: a file with mode and
    /// owner names, a directory, an empty file, a name past the 100-byte header field, an
    /// absolute name, and a symlink (skipped).
    fn archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add =
            |path: &str, kind: tar::EntryType, mode: u32, owner: (&str, &str), data: &[u8]| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_mode(mode);
                h.set_username(owner.0).unwrap();
                h.set_groupname(owner.1).unwrap();
                h.set_size(data.len() as u64);
                if path.starts_with('/') {
                    // `set_path` takes relative paths only; GNU tar -P keeps the leading '/'.
                    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, data).unwrap();
                } else {
                    b.append_data(&mut h, path, data).unwrap();
                }
            };
        add(
            "etc/app.conf",
            tar::EntryType::Regular,
            0o100640,
            ("root", "adm"),
            b"key = 1\n",
        );
        add(
            "etc/app.d/",
            tar::EntryType::Directory,
            0o40755,
            ("root", "root"),
            b"",
        );
        add(
            "etc/empty",
            tar::EntryType::Regular,
            0o600,
            ("nobody", "nogroup"),
            b"",
        );
        let long = format!("var/lib/{}/f", "x".repeat(120));
        add(
            &long,
            tar::EntryType::Regular,
            0o644,
            ("root", "root"),
            b"long",
        );
        add(
            "/abs/file",
            tar::EntryType::Regular,
            0o4755,
            ("root", "root"),
            b"\0\xff",
        );
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "etc/link", "app.conf").unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_members_read_back() {
        let files: BTreeMap<String, FileState> =
            parse_tar(&archive()).unwrap().into_iter().collect();
        let keys: Vec<&str> = files.keys().map(String::as_str).collect();
        let long = format!("/var/lib/{}/f", "x".repeat(120));
        assert_eq!(
            keys,
            [
                "/abs/file",
                "/etc/app.conf",
                "/etc/app.d",
                "/etc/empty",
                long.as_str()
            ]
        );
        let conf = &files["/etc/app.conf"];
        assert_eq!(
            (
                conf.mode,
                conf.owner.as_str(),
                conf.group.as_str(),
                conf.is_dir
            ),
            (0o640, "root", "adm", false)
        );
        assert_eq!(conf.content, b"key = 1\n");
        let dir = &files["/etc/app.d"];
        assert!(dir.is_dir);
        assert_eq!((dir.mode, dir.content.len()), (0o755, 0));
        let empty = &files["/etc/empty"];
        assert_eq!(
            (
                empty.mode,
                empty.owner.as_str(),
                empty.group.as_str(),
                empty.is_dir
            ),
            (0o600, "nobody", "nogroup", false)
        );
        assert!(empty.content.is_empty());
        assert_eq!(files[&long].content, b"long");
        assert_eq!(
            (
                files["/abs/file"].mode,
                files["/abs/file"].content.as_slice()
            ),
            (0o4755, b"\0\xff".as_slice())
        );
    }

    #[test]
    fn tar_cut_short_or_corrupt_is_an_error() {
        let bytes = archive();
        assert!(parse_tar(&[]).unwrap().is_empty());
        // Inside the first member's contents, and inside its header.
        assert!(parse_tar(&bytes[..512 + 3]).is_err());
        assert!(parse_tar(&bytes[..100]).is_err());
        let mut bad = bytes.clone();
        bad[148] ^= 1; // the header checksum
        assert!(parse_tar(&bad).is_err());
    }

    #[test]
    fn tar_in_a_probe_reply() {
        use base64::Engine;
        let probe = Probe::default().files(&["/etc/app.conf", "/etc/gone"]);
        let reply = format!(
            "\n@@np:tar -\n{}\n\n@@np:want /etc/app.conf\n\n@@np:want /etc/gone\n\n@@np:end -\n",
            base64::engine::general_purpose::STANDARD.encode(archive())
        );
        let s = parse_probe(&reply, &probe).unwrap();
        assert_eq!(
            s.files["/etc/app.conf"].as_ref().unwrap().content,
            b"key = 1\n"
        );
        assert_eq!(s.files["/etc/gone"], None);
        assert!(
            !s.files.contains_key("/etc/empty"),
            "only the paths asked for"
        );
    }

    #[test]
    fn package_lists_age_and_indexes() {
        use std::time::Duration;
        let l = parse_package_lists("1795657180 1795657170 3\n").unwrap();
        assert_eq!((l.age_secs, l.indexes), (10, 3));
        assert!(l.fresh(Duration::from_secs(3600)));
        assert!(!l.fresh(Duration::ZERO));
        // No index: no lists, however recent the directory.
        assert!(
            !parse_package_lists("100 100 0")
                .unwrap()
                .fresh(Duration::from_secs(3600))
        );
        // An mtime ahead of the host's clock is no age at all.
        assert_eq!(parse_package_lists("100 200 1").unwrap().age_secs, 0);
        for bad in ["", "100 200", "a b c", "1 2 3 4"] {
            assert_eq!(parse_package_lists(bad), None, "{bad:?}");
        }
        let reply = "\n@@np:fact os-release\nID=debian\n\n@@np:pkgs -\nbash 5.2\n\n@@np:lists -\n5000 1400 3\n\n@@np:end -\n";
        let s = parse_probe(reply, &Probe::default()).unwrap();
        assert_eq!(
            s.package_lists,
            Some(PackageLists {
                age_secs: 3600,
                indexes: 3
            })
        );
        assert_eq!(s.packages.unwrap().len(), 1);
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
