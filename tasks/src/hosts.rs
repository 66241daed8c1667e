//! The node's name resolves to its cluster address through `/etc/hosts`.
//!
//! Photon's `/etc/nsswitch.conf` has `hosts: files dns` with no `myhostname` (vmware/photon
//! `SPECS/glibc/nsswitch.conf` @ 6f8f65b9, tests/data/photon/nsswitch.conf), and its installer
//! writes `127.0.0.1   <hostname>` under the old name (photon-os-installer v2.7
//! `m_updatehostname.py`, tests/data/photon/README.md "/etc/hosts and other installer edits"):
//! after the node is renamed its name resolves to nothing, kubeadm's preflight warns and
//! kubelet guesses its node IP. The line naming the node (or the old name) is replaced by
//! `ADDRESS   NAME`; every other line stays as it is.
//!
//! In a container `/etc/hosts` is the engine's bind mount, where renaming a file over it
//! fails (EBUSY): there it is written in place.

use crate::ctx::{Change, Ctx};
use crate::error::Result;
use crate::file;
use crate::host::Cmd;
use crate::reads::Reads;

pub const HOSTS: &str = "/etc/hosts";
/// The mounts of the probe's process: tells whether `/etc/hosts` is a mount point.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[HOSTS, MOUNTINFO]);

/// Names that belong to the loopback lines and are never moved.
const LOOPBACK_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "localhost4",
    "localhost6",
    "ip6-localhost",
    "ip6-loopback",
    "ipv6-localhost",
    "ipv6-loopback",
];

/// `path` is a mount point in this `/proc/self/mountinfo` (its fifth field).
pub fn is_mount_point(mountinfo: &str, path: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|m| m == path)
}

/// The active entries of a hosts line: (address, names), comments dropped.
fn entry(line: &str) -> Option<(&str, Vec<&str>)> {
    let body = line.split('#').next().unwrap_or("");
    let mut w = body.split_whitespace();
    let addr = w.next()?;
    Some((addr, w.collect()))
}

/// The first address `/etc/hosts` gives `name`, as glibc's `files` source answers.
pub fn resolved(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter_map(entry)
        .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(a, _)| a.to_string())
}

/// The hosts file with `name` resolving to `address`: its first line naming `name` or `old`
/// (the host's name before the run: the installer's line) becomes `address   name` (other
/// names on a line kept, the loopback names never moved), later lines naming them lose those
/// names (a line left with none is dropped); with no such line, `address   name` is
/// appended. Unchanged when `name`'s first entry already is `address` and no other line
/// names `old`.
pub fn with_host(text: &str, name: &str, address: &str, old: &str) -> String {
    let old =
        (!old.is_empty() && !old.eq_ignore_ascii_case(name) && !LOOPBACK_NAMES.contains(&old))
            .then_some(old);
    let ours =
        |n: &&str| n.eq_ignore_ascii_case(name) || old.is_some_and(|o| n.eq_ignore_ascii_case(o));
    let want = format!("{address}   {name}");
    let mut placed = false;
    let mut out = String::with_capacity(text.len() + want.len() + 1);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let eol = if line.len() > body.len() {
            &line[body.len()..]
        } else {
            "\n"
        };
        let Some((addr, names)) = entry(body) else {
            out.push_str(line);
            continue;
        };
        if !names.iter().any(ours) {
            out.push_str(line);
            continue;
        }
        let rest: Vec<&str> = names.iter().copied().filter(|n| !ours(n)).collect();
        let named = names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if !placed && addr == address && named {
            // Already the right entry: only the old name leaves it.
            placed = true;
            if rest.len() + 1 == names.len() {
                out.push_str(line);
            } else {
                let mut keep = vec![name];
                keep.extend(rest.iter().copied());
                out.push_str(&format!("{addr}   {}{eol}", keep.join(" ")));
            }
            continue;
        }
        if !placed {
            placed = true;
            out.push_str(&want);
            out.push_str(eol);
        }
        if !rest.is_empty() {
            out.push_str(&format!("{addr}   {}{eol}", rest.join(" ")));
        }
    }
    if !placed {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&want);
        out.push('\n');
    }
    out
}

/// `/etc/hosts` names `name` at `address` (see [`with_host`]). `renamed`: the plan renames
/// the host to `name`, so the lines naming its old name (the kernel's host name the probe
/// read, before the run: the installer's line) are the ones replaced. Written in place when
/// the file is a mount point (a container's), else as any file is (temporary file, rename).
pub fn name_resolves(cx: &mut Ctx, name: &str, address: &str, renamed: bool) -> Result<Change> {
    let old = if renamed {
        cx.facts().hostname.clone()
    } else {
        String::new()
    };
    let mounted = cx
        .file(MOUNTINFO)?
        .is_some_and(|f| is_mount_point(&f.text(), HOSTS));
    if !mounted {
        return file::edit(cx, HOSTS, None, |text| {
            Ok(with_host(text.unwrap_or(""), name, address, &old))
        });
    }
    let text = cx.file(HOSTS)?.map(|f| f.text()).unwrap_or_default();
    let new = with_host(&text, name, address, &old);
    if new == text {
        return Ok(Change::Unchanged);
    }
    if cx.diff_wanted() {
        cx.record_diff(file::unified_diff(HOSTS, Some(&text), &new));
    }
    // A bind mount: rename over it fails (EBUSY), so its content is replaced in place.
    let cmd = Cmd::new(&["sh", "-c", "cat > \"$1\"", "nodeprep-hosts", HOSTS])
        .stdin(new.clone().into_bytes());
    cx.apply_cmd(cmd)?;
    cx.known(HOSTS, &new);
    Ok(Change::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::Fixture;

    /// Photon's hosts file after its installer named the host `photon-4a1b2c3d4e5f`
    /// (tests/data/photon/README.md "/etc/hosts and other installer edits").
    const PHOTON: &str = "# Begin /etc/hosts (network card version)\n\n::1         ipv6-localhost ipv6-loopback\n127.0.0.1   localhost.localdomain\n127.0.0.1   localhost\n127.0.0.1   photon-4a1b2c3d4e5f\n# End /etc/hosts (network card version)\n";

    #[test]
    fn the_installer_line_is_replaced() {
        let new = with_host(PHOTON, "prdk8swok511", "10.1.2.11", "photon-4a1b2c3d4e5f");
        assert_eq!(
            new,
            PHOTON.replace(
                "127.0.0.1   photon-4a1b2c3d4e5f",
                "10.1.2.11   prdk8swok511"
            )
        );
        assert_eq!(resolved(&new, "prdk8swok511").as_deref(), Some("10.1.2.11"));
        // Idempotent: the host is renamed by then, old == name.
        assert_eq!(
            with_host(&new, "prdk8swok511", "10.1.2.11", "prdk8swok511"),
            new
        );
        assert_eq!(
            with_host(&new, "prdk8swok511", "10.1.2.11", "photon-4a1b2c3d4e5f"),
            new
        );
    }

    #[test]
    fn other_lines_kept_and_a_missing_name_appended() {
        let text = "127.0.0.1 localhost\n10.0.0.9 db # the database\n";
        let new = with_host(text, "n1", "10.1.2.11", "localhost");
        assert_eq!(new, format!("{text}10.1.2.11   n1\n"));
        // A wrong address for the name is replaced; names sharing its line stay there.
        let text = "127.0.1.1 n1 n1.lan\n127.0.0.1 localhost\n";
        assert_eq!(
            with_host(text, "n1", "10.1.2.11", "n1"),
            "10.1.2.11   n1\n127.0.1.1   n1.lan\n127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn mount_points() {
        let info = "612 540 0:52 / / rw - overlay overlay rw\n640 612 259:2 /var/lib/docker/containers/ab/hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p2 rw\n";
        assert!(is_mount_point(info, HOSTS));
        assert!(!is_mount_point(info, "/etc/hostname"));
    }

    #[test]
    fn written_in_place_on_a_mount_point() {
        let info =
            "640 612 259:2 /var/lib/docker/containers/ab/hosts /etc/hosts rw - ext4 /dev/sda rw\n";
        let (mut cx, rec) = Fixture::photon()
            .file(MOUNTINFO, info, 0o444)
            .ctx(Mode::Apply);
        assert_eq!(
            name_resolves(&mut cx, "n1", "10.1.2.11", true).unwrap(),
            Change::Changed
        );
        let cmds: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert!(cmds.iter().any(|c| c.contains("cat > \"$1\"")), "{cmds:?}");
        assert!(!cmds.iter().any(|c| c.contains("mktemp")), "{cmds:?}");
        assert_eq!(
            resolved(&cx.file(HOSTS).unwrap().unwrap().text(), "n1").as_deref(),
            Some("10.1.2.11")
        );
        assert_eq!(
            name_resolves(&mut cx, "n1", "10.1.2.11", true).unwrap(),
            Change::Unchanged
        );
    }
}
