//! Reading the probe's reply: the sections `script` asks for, `systemctl show` blocks, and the
//! files (`stat` lines, their contents in one base64 stream, /proc and /sys files as text).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::script::MARK;
use super::{
    ActiveState, Enablement, FileState, PackageLists, Probe, ProbedFacts, State, UnitState, Unread,
};
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
                Some(("UnitFileState", v)) => st.enablement = Enablement::parse(v),
                Some(("ActiveState", v)) => st.active = ActiveState::parse(v),
                _ => {}
            }
        }
        if id.is_empty() {
            continue;
        }
        if load == "not-found" {
            st.enablement = Enablement::NotFound;
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
    let mut stats: Vec<(String, Stat)> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut kernel: HashMap<&str, Vec<u8>> = HashMap::new();
    for chunk in reply.split(&format!("\n{MARK}")).skip(1) {
        let (head, body) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let (kind, name) = head.split_once(' ').unwrap_or((head, ""));
        match kind {
            "fact" => read_fact(&mut state.facts, name, body.trim_end()),
            "pkgs" => {
                for line in body.lines() {
                    let mut it = line.split_whitespace();
                    if let Some(pkg) = it.next() {
                        packages.insert(pkg.to_string(), it.next().unwrap_or("").to_string());
                    }
                }
            }
            "dpkg" => {
                for (pkg, version) in body.lines().filter_map(dpkg_installed) {
                    packages.insert(pkg.to_string(), version.to_string());
                }
            }
            "units" => {
                state.units.extend(parse_units_show(body));
            }
            "lists" => state.package_lists = parse_package_lists(body),
            "lock" => match name {
                "ok" => state.lock.locked = true,
                "moved" => state.lock.moved = Some(body.trim().to_string()),
                // The holder, then when it took the lock: Ctx decides.
                _ => state.lock.busy = Some(body.trim().to_string()),
            },
            "last" => state.lock.last_run = Some(body.trim().to_string()),
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
            "stat" => {
                for line in body.lines().filter(|l| !l.is_empty()) {
                    let (st, path) = parse_stat_line(line)?;
                    stats.push((path.to_string(), st));
                }
            }
            "data" => {
                data = base64_decode(body.trim())
                    .ok_or_else(|| Error::other("state probe: bad file contents (base64)"))?;
            }
            "kdata" => {
                // `PATH\0LINE` for each line of each file (grep -aHZ '').
                for line in body.split_inclusive('\n') {
                    if let Some((path, text)) = line.split_once('\0') {
                        let buf = kernel.entry(path).or_default();
                        buf.extend_from_slice(text.as_bytes());
                        if !text.ends_with('\n') {
                            buf.push(b'\n');
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // The files: every one asked is absent unless `stat` reported it; the plain files'
    // contents follow one another in `data`, in `stat`'s order.
    for path in &probe.files {
        state.files.insert(path.clone(), None);
    }
    let mut at = 0usize;
    for (path, st) in stats {
        let kernel_file = super::script::is_kernel_path(&path);
        let content = match st.kind {
            Kind::Dir => Vec::new(),
            Kind::Link | Kind::Other(_) => {
                let what = match st.kind {
                    Kind::Other(what) => what,
                    _ => "symbolic link".to_string(),
                };
                state.unread.insert(path, Unread::NotRegular(what));
                continue;
            }
            Kind::File if kernel_file => kernel.remove(path.as_str()).unwrap_or_default(),
            Kind::File if st.size as u64 > super::script::FILE_CAP => {
                state.unread.insert(path, Unread::TooLarge(st.size as u64));
                continue;
            }
            Kind::File => {
                let end = at
                    .checked_add(st.size)
                    .filter(|end| *end <= data.len())
                    .ok_or_else(|| files_moved(&path))?;
                let c = data[at..end].to_vec();
                at = end;
                c
            }
        };
        state.files.insert(
            path,
            Some(FileState {
                mode: st.mode,
                owner: st.owner,
                group: st.group,
                is_dir: st.kind == Kind::Dir,
                content,
            }),
        );
    }
    if at != data.len() {
        return Err(files_moved("a file"));
    }
    if state.facts.os_release.is_some() {
        state.packages = Some(packages);
    }
    Ok(state)
}

/// One `fact NAME` answer of the probe, into its field: text trimmed, an empty one or one not
/// of the field's type left out (`systemd` is `yes` or not; a `container` of `none` is none).
fn read_fact(facts: &mut ProbedFacts, name: &str, text: &str) {
    let word = || Some(text.trim().to_string()).filter(|v| !v.is_empty());
    match name {
        "os-release" => facts.os_release = Some(text.to_string()),
        "systemd" => facts.systemd = text.trim() == "yes",
        "container" => facts.container = word().filter(|v| v != "none"),
        "hostname" => facts.hostname = word(),
        "machine-id" => facts.machine_id = word(),
        "addresses" => facts.addresses = parse_addresses(text),
        "uid" => facts.uid = text.trim().parse().ok(),
        "nproc" => facts.nproc = text.trim().parse().ok(),
        _ => {}
    }
}

/// Contents and sizes that do not add up: a file changed between `stat` and `cat`, or could
/// not be read.
fn files_moved(what: &str) -> Error {
    Error::other(format!(
        "state probe: {what} changed while it was read, or cannot be read (run again; the probe runs as root)"
    ))
}

/// A file as `stat -c '%s %a %U %G %F|%n'` describes it.
pub(crate) struct Stat {
    pub(crate) size: usize,
    mode: u32,
    owner: String,
    group: String,
    pub(crate) kind: Kind,
}

#[derive(PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    /// A symbolic link (the probe does not follow the links it is asked about).
    Link,
    /// A device, a socket, a pipe (`stat`'s word for it): not read.
    Other(String),
}

/// `SIZE MODE OWNER GROUP KIND|PATH` (KIND in words: `regular file`, `regular empty file`,
/// `directory`...).
pub(crate) fn parse_stat_line(line: &str) -> Result<(Stat, &str)> {
    let bad = || Error::other(format!("state probe: bad stat line {line:?}"));
    let (head, path) = line.split_once('|').ok_or_else(bad)?;
    let mut w = head.splitn(5, ' ');
    let size = w.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let mode = w
        .next()
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .ok_or_else(bad)?;
    let owner = w.next().ok_or_else(bad)?.to_string();
    let group = w.next().ok_or_else(bad)?.to_string();
    let kind = match w.next().ok_or_else(bad)? {
        "directory" => Kind::Dir,
        "symbolic link" => Kind::Link,
        k if k.starts_with("regular") => Kind::File,
        k => Kind::Other(k.to_string()),
    };
    Ok((
        Stat {
            size,
            mode: mode & 0o7777,
            owner,
            group,
            kind,
        },
        path,
    ))
}

/// A package dpkg has installed, from a `${db:Status-Abbrev} ${Package} ${Version}` line: the
/// status (second letter) `i`, no error flag, whatever is wanted of it (`hi`: held).
fn dpkg_installed(line: &str) -> Option<(&str, &str)> {
    let abbrev = line.get(..3)?.as_bytes();
    if abbrev[1] != b'i' || abbrev[2] != b' ' {
        return None;
    }
    let mut it = line[3..].split_whitespace();
    let pkg = it.next()?;
    Some((pkg, it.next().unwrap_or("")))
}

/// apt's package lists from the probe's `lists` section: the host's clock (`date +%s`), the
/// number of `*_Packages*` indexes, then the mtimes `stat` found of the lists directory, its
/// `partial/` and Ubuntu's update stamp, all in seconds since the epoch. Anything else is
/// unknown (`None`: the lists are then refreshed before an install, as if stale).
pub fn parse_package_lists(body: &str) -> Option<PackageLists> {
    let w: Vec<u64> = body
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    let [now, indexes, ref mtimes @ ..] = w[..] else {
        return None;
    };
    let newest = mtimes.iter().copied().max()?;
    Some(PackageLists {
        age_secs: now.saturating_sub(newest),
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

    /// Files as the probe sends them: `stat` lines, the plain files' contents one after the
    /// other in `data` (split by their sizes), /proc and /sys files line by line after their
    /// path and a NUL; a path asked and not reported is absent, a listed directory's file is
    /// kept though not asked, a device is no managed file.
    #[test]
    fn files_in_a_probe_reply() {
        use base64::Engine;
        let probe = Probe::default().files(&[
            "/etc/app.conf",
            "/etc/empty",
            "/etc/my dir",
            "/etc/gone",
            "/proc/swaps",
            "/dev/null",
        ]);
        let data = base64::engine::general_purpose::STANDARD.encode(b"key = 1\n\x00\xffz");
        let reply = format!(
            "\n@@np:stat -\n8 640 root adm regular file|/etc/app.conf\n0 600 nobody nogroup regular empty file|/etc/empty\n4096 2755 root root directory|/etc/my dir\n3 644 root root regular file|/etc/sysctl.d/b.conf\n0 444 root root regular empty file|/proc/swaps\n0 666 root root character special file|/dev/null\n\
             \n@@np:data -\n{data}\n\n@@np:kdata -\n/proc/swaps\0Filename Type\n/proc/swaps\0/swap.img file\n\n@@np:end -\n"
        );
        let s = parse_probe(&reply, &probe).unwrap();
        let get = |p: &str| s.files[p].clone().unwrap();
        let app = get("/etc/app.conf");
        assert_eq!(
            (app.mode, app.owner.as_str(), app.group.as_str()),
            (0o640, "root", "adm")
        );
        assert_eq!(app.content, b"key = 1\n");
        assert_eq!(get("/etc/empty").content, b"");
        assert_eq!(get("/etc/empty").owner, "nobody");
        let dir = get("/etc/my dir");
        assert!(dir.is_dir && dir.mode == 0o2755);
        assert_eq!(get("/etc/sysctl.d/b.conf").content, [0u8, 0xff, b'z']);
        assert_eq!(
            get("/proc/swaps").content,
            b"Filename Type\n/swap.img file\n"
        );
        assert_eq!(s.files["/etc/gone"], None);
        assert_eq!(s.files["/dev/null"], None);
        // Contents that do not add up to the sizes: a file changed while it was read.
        let short = reply.replace("8 640 root adm", "9 640 root adm");
        let e = parse_probe(&short, &probe).unwrap_err();
        assert!(e.to_string().contains("changed while it was read"), "{e}");
        let long = reply.replace("8 640 root adm", "7 640 root adm");
        assert!(parse_probe(&long, &probe).is_err());
        let bad = reply.replace("8 640 root adm regular file|", "8 640 root|");
        assert!(parse_probe(&bad, &probe).is_err());
    }

    /// dpkg's packages: installed ones only, held ones included (`hi`), none half-installed or
    /// with an error flag, none only remembered for their configuration (`rc`).
    #[test]
    fn dpkg_packages() {
        let reply = "\n@@np:fact os-release\nID=debian\n\n@@np:dpkg -\nii  bash 5.2\nhi  kubelet 1.30.2-1.1\nrc  old 1.0\niU  half 2.0\niiR broken 3.0\nri  leaving 4.0\n\n@@np:end -\n";
        let s = parse_probe(reply, &Probe::default()).unwrap();
        let p = s.packages.unwrap();
        let names: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(names, ["bash", "kubelet", "leaving"]);
        assert_eq!(p["kubelet"], "1.30.2-1.1");
    }

    #[test]
    fn package_lists_age_and_indexes() {
        use std::time::Duration;
        let l = parse_package_lists("1795657180\n3\n1795657170\n1795650000\n").unwrap();
        assert_eq!((l.age_secs, l.indexes), (10, 3), "the newest mtime counts");
        assert!(l.fresh(Duration::from_secs(3600)));
        assert!(!l.fresh(Duration::ZERO));
        // No index: no lists, however recent the directory.
        assert!(
            !parse_package_lists("100 0 100")
                .unwrap()
                .fresh(Duration::from_secs(3600))
        );
        // An mtime ahead of the host's clock is no age at all.
        assert_eq!(parse_package_lists("100 1 200").unwrap().age_secs, 0);
        for bad in ["", "100 2", "a b c", "1 2 x"] {
            assert_eq!(parse_package_lists(bad), None, "{bad:?}");
        }
        let reply = "\n@@np:fact os-release\nID=debian\n\n@@np:pkgs -\nbash 5.2\n\n@@np:lists -\n5000\n3\n1400\n\n@@np:end -\n";
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
        let reply = "\n@@np:fact os-release\nID=debian\n\n@@np:fact systemd\nyes\n\n@@np:pkgs -\nbash 5.2\nkmod 30\n\n@@np:units -\nId=ssh.service\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n\nId=nope.service\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n\n@@np:prog ip\n\n@@np:stat -\n1 644 root root regular file|/etc/fstab\n\n@@np:data -\nYQ==\n\n@@np:end -\n";
        let s = parse_probe(reply, &probe).unwrap();
        assert!(s.facts.systemd);
        assert_eq!(s.packages.as_ref().unwrap()["kmod"], "30");
        assert_eq!(
            s.units["ssh.service"],
            UnitState {
                enablement: Enablement::Enabled,
                active: ActiveState::Active
            }
        );
        assert_eq!(
            s.units["nope.service"],
            UnitState {
                enablement: Enablement::NotFound,
                active: ActiveState::Inactive
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
