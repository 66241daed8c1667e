//! The full system update: every package to the newest version the configured repositories
//! have. Changed only when something was actually upgraded, installed or removed (the
//! installed packages, name → version, compared before and after). In check mode a read-only
//! query says what would be upgraded. After an update, a kernel newer than the running one
//! means the host must reboot: [`Ctx::require_reboot`], which the host's recap shows.

use std::collections::BTreeMap;

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::host::{Cmd, Output};
use crate::pkg;
use crate::reads::Reads;

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::NONE;

/// The commands of a full update, per OS family (after `apt-get update` on Debian when the
/// package lists are stale: see [`pkg::refresh_apt_lists`]).
pub fn update_commands(os: OsFamily) -> Vec<Vec<&'static str>> {
    match os {
        OsFamily::Photon => vec![
            vec!["tdnf", "distro-sync", "--refresh", "-y"],
            vec!["tdnf", "update", "-y"],
        ],
        OsFamily::Rhel => vec![vec!["dnf", "upgrade", "--refresh", "-y"]],
        OsFamily::Debian => vec![vec![
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "dist-upgrade",
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            "DPkg::Lock::Timeout=120",
        ]],
    }
}

/// Every package is up to date: Photon `tdnf distro-sync --refresh` then `tdnf update`, RHEL
/// `dnf upgrade --refresh`, Debian `apt-get update` (when the lists are stale) then
/// `apt-get dist-upgrade` keeping the configuration files the host has (`--force-confold`).
/// The packages that moved are recorded as the step's diff.
pub fn full_update(cx: &mut Ctx) -> Result<Change> {
    if cx.check_mode() {
        return pending(cx);
    }
    let before = cx.packages()?.clone();
    let os = cx.facts().os;
    cx.progress("updating every package (this can take minutes)");
    if os.uses_apt() {
        pkg::refresh_apt_lists(cx)?;
    }
    for argv in update_commands(os) {
        pkg::run(cx, &argv)?;
    }
    cx.packages_changed();
    let after = cx.packages()?.clone();
    if after.is_empty() {
        return Err(Error::new(
            ErrorKind::Command,
            "the package list could not be read after the update",
        ));
    }
    let moved = package_changes(&before, &after);
    reboot_for_kernel(cx)?;
    if moved.is_empty() {
        return Ok(Change::Unchanged);
    }
    if cx.diff_wanted() {
        cx.record_diff(format!(
            "packages changed by the update:\n{}",
            moved.join("\n") + "\n"
        ));
    }
    Ok(Change::Changed)
}

/// The running kernel and the installed kernel packages, read-only: `uname -r`, then
/// `NAME VERSION-RELEASE ARCH` per kernel package (rpm) or `STATUS PACKAGE` per
/// `linux-image-*` package (dpkg).
const KERNELS_SCRIPT: &str = "uname -r
if command -v rpm >/dev/null 2>&1; then rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\\n' kernel-core kernel linux linux-esx linux-secure linux-rt linux-aws
else dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' 'linux-image-*'; fi
true";

/// Photon OS's kernel packages: `linux` boots as `VERSION-RELEASE`, the others as
/// `VERSION-RELEASE-FLAVOR` (the `uname_r` of their specs).
const PHOTON_FLAVORS: [&str; 4] = ["esx", "secure", "rt", "aws"];

/// After an update: when a kernel newer than the running one is installed, the host must be
/// rebooted, and its recap says so (also when an earlier run installed it).
fn reboot_for_kernel(cx: &mut Ctx) -> Result<()> {
    let os = cx.facts().os;
    let out = cx.query(&["sh", "-c", KERNELS_SCRIPT])?;
    if let Some((newest, running)) = newer_kernel(os, &out.stdout_str()) {
        cx.require_reboot(format!(
            "kernel {newest} is installed, {running} is running"
        ));
    }
    Ok(())
}

/// The newest installed kernel of the running one's flavor, when it is newer than the running
/// one: (newest, running), as `uname -r` names them. `text`: what `KERNELS_SCRIPT` printed.
pub fn newer_kernel(os: OsFamily, text: &str) -> Option<(String, String)> {
    let mut lines = text.lines();
    let running = lines.next()?.trim().to_string();
    if running.is_empty() {
        return None;
    }
    let flavor = |release: &str| -> String {
        match os {
            OsFamily::Photon => PHOTON_FLAVORS
                .iter()
                .find(|f| release.ends_with(&format!("-{f}")))
                .map_or(String::new(), |f| f.to_string()),
            // 6.1.0-28-cloud-amd64: what follows the version and the ABI number.
            OsFamily::Debian => release.splitn(3, '-').nth(2).unwrap_or("").to_string(),
            OsFamily::Rhel => String::new(),
        }
    };
    let installed: Vec<String> = lines
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match os {
                OsFamily::Rhel => match w.as_slice() {
                    [name, vr, arch] if name.starts_with("kernel") => Some(format!("{vr}.{arch}")),
                    _ => None,
                },
                OsFamily::Photon => match w.as_slice() {
                    ["linux", vr, _] => Some(vr.to_string()),
                    [name, vr, _] => name
                        .strip_prefix("linux-")
                        .filter(|f| PHOTON_FLAVORS.contains(f))
                        .map(|f| format!("{vr}-{f}")),
                    _ => None,
                },
                OsFamily::Debian => match w.as_slice() {
                    [status, name] if status.starts_with("ii") => {
                        let release = name.strip_prefix("linux-image-")?;
                        let release = release.strip_suffix("-unsigned").unwrap_or(release);
                        release
                            .starts_with(|c: char| c.is_ascii_digit())
                            .then(|| release.to_string())
                    }
                    _ => None,
                },
            }
        })
        .collect();
    let want = flavor(&running);
    let newest = installed
        .into_iter()
        .filter(|r| flavor(r) == want)
        .max_by(|a, b| pkg::version_cmp(a, b))?;
    (pkg::version_cmp(&newest, &running) == std::cmp::Ordering::Greater)
        .then_some((newest, running))
}

/// What moved between two package lists: `name old -> new`, `+ name version` (new),
/// `- name version` (removed).
pub fn package_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, new) in after {
        match before.get(name) {
            Some(old) if old != new => out.push(format!("  {name} {old} -> {new}")),
            Some(_) => {}
            None => out.push(format!("  + {name} {new}")),
        }
    }
    for (name, old) in before {
        if !after.contains_key(name) {
            out.push(format!("  - {name} {old}"));
        }
    }
    out
}

/// Check mode: how many packages an update would change, asked read-only (the package lists
/// are not refreshed: on Debian the answer is as of the last `apt-get update`).
fn pending(cx: &mut Ctx) -> Result<Change> {
    let os = cx.facts().os;
    let argv: &[&str] = match os {
        OsFamily::Debian => &[
            "apt-get",
            "-s",
            "-q",
            "-o",
            "Debug::NoLocking=1",
            "dist-upgrade",
        ],
        OsFamily::Photon => &["tdnf", "check-update"],
        OsFamily::Rhel => &["dnf", "check-update", "-q"],
    };
    let out = cx.query(argv)?;
    let n = pending_count(os, &out).map_err(|e| match e {
        Some(e) => e,
        None => crate::host::command_failed(&Cmd::new(argv), &out),
    })?;
    if n == 0 {
        return Ok(Change::Unchanged);
    }
    cx.progress(format!("{n} package(s) would be updated"));
    if cx.diff_wanted() {
        cx.record_diff(format!(
            "{n} package(s) would be updated ({})\n",
            argv.join(" ")
        ));
    }
    Ok(Change::Changed)
}

/// The number of pending updates in a query's answer; `Err(None)`: the query failed.
fn pending_count(os: OsFamily, out: &Output) -> Result<usize, Option<Error>> {
    let text = out.stdout_str();
    // dnf, and tdnf with dnf_check_update_compat: 100 means updates are listed.
    let listed = || Ok(text.lines().filter(|l| is_update_line(l)).count().max(1));
    match os {
        OsFamily::Debian => match out.status {
            Some(0) => Ok(text.lines().filter(|l| l.starts_with("Inst ")).count()),
            _ => Err(None),
        },
        OsFamily::Rhel => match out.status {
            Some(100) => listed(),
            Some(0) => Ok(0),
            _ => Err(None),
        },
        OsFamily::Photon => match out.status {
            Some(100) => listed(),
            // tdnf's default: 0 whatever it found; the list tells.
            Some(0) => Ok(text.lines().filter(|l| is_update_line(l)).count()),
            _ => Err(None),
        },
    }
}

/// A `name.arch  version  repo` line of `check-update`.
fn is_update_line(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() == 3 && w[0].contains('.') && w[1].chars().next().is_some_and(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, plan};
    use expect_test::expect;

    const PKGS_QUERY: &str = "sh -c 'if command -v rpm";

    fn reply(stdout: &str, status: i32) -> Output {
        Output {
            status: Some(status),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn photon_upgrades_something() {
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Apply);
        let mut after: String = cx
            .state()
            .packages
            .as_ref()
            .unwrap()
            .iter()
            .map(|(n, v)| format!("{n} {v}\n"))
            .collect();
        after = after.replace(
            "openssl-c_rehash 3.0.16-2.ph5",
            "openssl-c_rehash 3.0.16-3.ph5",
        ) + "kernel 6.1.128-1.ph5\n";
        rec.reply(PKGS_QUERY, reply(&after, 0));
        assert!(cx.step("full update", full_update).unwrap().changed());
        expect![[r#"
            run tdnf distro-sync --refresh -y
            run tdnf update -y
        "#]]
        .assert_eq(&plan(&cx));
        assert_eq!(cx.records()[0].outcome, crate::Outcome::Changed);
        expect![[r#"
            packages changed by the update:
              + kernel 6.1.128-1.ph5
              openssl-c_rehash 3.0.16-2.ph5 -> 3.0.16-3.ph5
        "#]]
        .assert_eq(&cx.records()[0].diffs.join(""));
    }

    /// An update that brought a newer kernel: the host must reboot, and says why.
    #[test]
    fn newer_kernel_needs_a_reboot() {
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Apply);
        let mut after: String = cx
            .state()
            .packages
            .as_ref()
            .unwrap()
            .iter()
            .map(|(n, v)| format!("{n} {v}\n"))
            .collect();
        after += "linux-esx 6.1.128-1.ph5\n";
        rec.reply(PKGS_QUERY, reply(&after, 0));
        rec.reply(
            "sh -c 'uname -r",
            reply(
                "6.1.10-11.ph5-esx\nlinux-esx 6.1.10-11.ph5 x86_64\nlinux-esx 6.1.128-1.ph5 x86_64\npackage linux is not installed\n",
                0,
            ),
        );
        assert!(full_update(&mut cx).unwrap().changed());
        assert_eq!(
            cx.reboot_required(),
            Some("kernel 6.1.128-1.ph5-esx is installed, 6.1.10-11.ph5-esx is running")
        );
        // Running the newest: nothing to say (the update itself went through, the kernels
        // were read).
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Apply);
        rec.reply(PKGS_QUERY, reply(&after, 0));
        rec.reply(
            "sh -c 'uname -r",
            reply("6.1.128-1.ph5-esx\nlinux-esx 6.1.128-1.ph5 x86_64\n", 0),
        );
        assert!(full_update(&mut cx).unwrap().changed());
        assert!(
            rec.commands()
                .iter()
                .any(|c| c.display().contains("uname -r")),
            "the kernels were not read"
        );
        assert_eq!(cx.reboot_required(), None);
        // Check mode installs nothing and asks nothing of the kernels.
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        rec.reply("tdnf check-update", reply("", 0));
        let _ = full_update(&mut cx).unwrap();
        assert!(
            rec.commands()
                .iter()
                .all(|c| !c.display().contains("uname"))
        );
    }

    #[test]
    fn kernels_compared() {
        use OsFamily::*;
        // Photon: each flavor against its own package.
        assert_eq!(
            newer_kernel(
                Photon,
                "6.1.10-11.ph5\nlinux 6.1.10-11.ph5 x86_64\nlinux-esx 6.1.128-1.ph5 x86_64\n"
            ),
            None
        );
        assert_eq!(
            newer_kernel(Photon, "6.1.10-11.ph5\nlinux 6.1.128-1.ph5 x86_64\n"),
            Some(("6.1.128-1.ph5".into(), "6.1.10-11.ph5".into()))
        );
        // Rocky: kernel-core VERSION-RELEASE.ARCH, several installed.
        assert_eq!(
            newer_kernel(
                Rhel,
                "5.14.0-427.13.1.el9_4.x86_64\nkernel-core 5.14.0-427.13.1.el9_4 x86_64\nkernel-core 5.14.0-503.11.1.el9_5 x86_64\npackage kernel is not installed\n"
            ),
            Some((
                "5.14.0-503.11.1.el9_5.x86_64".into(),
                "5.14.0-427.13.1.el9_4.x86_64".into()
            ))
        );
        // Debian: the release is in the package name; another flavor, a removed kernel and the
        // meta package do not count.
        let dpkg = "6.1.0-28-amd64\nii  linux-image-6.1.0-28-amd64\nii  linux-image-6.1.0-31-cloud-amd64\nrc  linux-image-6.1.0-30-amd64\nii  linux-image-amd64\n";
        assert_eq!(newer_kernel(Debian, dpkg), None);
        let dpkg = format!("{dpkg}ii  linux-image-6.1.0-29-amd64-unsigned\n");
        assert_eq!(
            newer_kernel(Debian, &dpkg),
            Some(("6.1.0-29-amd64".into(), "6.1.0-28-amd64".into()))
        );
        assert_eq!(newer_kernel(Debian, ""), None);
    }

    #[test]
    fn debian_commands() {
        let (mut cx, rec) = Fixture::debian().ctx(Mode::Apply);
        let same: String = cx
            .state()
            .packages
            .as_ref()
            .unwrap()
            .iter()
            .map(|(n, v)| format!("{n} {v}\n"))
            .collect();
        rec.reply(PKGS_QUERY, reply(&same, 0));
        assert_eq!(full_update(&mut cx).unwrap(), Change::Unchanged);
        expect![[r#"
            run apt-get update -q -o DPkg::Lock::Timeout=120
            run env DEBIAN_FRONTEND=noninteractive apt-get dist-upgrade -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn rhel_commands_and_unreadable_list() {
        let (mut cx, _rec) = Fixture::rhel().ctx(Mode::Apply);
        // The recorder answers the package query with nothing: that must not pass for "all removed".
        let e = full_update(&mut cx).unwrap_err();
        assert!(e.message().contains("could not be read"), "{e}");
        assert_eq!(plan(&cx), "run dnf upgrade --refresh -y\n");
    }

    #[test]
    fn no_change() {
        // Nothing pending: no modifying action at all (check mode asks, apply mode would run
        // the package manager, which is the only way to know).
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        rec.reply("tdnf check-update", reply("", 0));
        assert_eq!(full_update(&mut cx).unwrap(), Change::Unchanged);
        assert!(cx.actions().is_empty());
        // Apply mode, nothing upgraded: Unchanged, only the update commands ran.
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Apply);
        let same: String = cx
            .state()
            .packages
            .as_ref()
            .unwrap()
            .iter()
            .map(|(n, v)| format!("{n} {v}\n"))
            .collect();
        rec.reply(PKGS_QUERY, reply(&same, 0));
        assert_eq!(full_update(&mut cx).unwrap(), Change::Unchanged);
        assert!(
            cx.actions()
                .iter()
                .all(|a| a.to_string().starts_with("run tdnf "))
        );
    }

    #[test]
    fn check_mode_counts() {
        let (mut cx, rec) = Fixture::debian().ctx(Mode::Check);
        rec.reply(
            "apt-get -s",
            reply("NOTE: This is only a simulation!\nInst libssl3 [3.0.15-1~deb12u1] (3.0.16-1~deb12u1 Debian-Security:12/stable-security [amd64])\nInst openssl [3.0.15-1~deb12u1] (3.0.16-1~deb12u1 Debian-Security:12/stable-security [amd64])\nConf libssl3 (3.0.16-1~deb12u1 Debian-Security:12/stable-security [amd64])\n", 0),
        );
        assert!(cx.step("full update", full_update).unwrap().changed());
        assert!(cx.actions().is_empty());
        assert_eq!(cx.records()[0].outcome, crate::Outcome::Changed);
        assert_eq!(
            cx.records()[0].diffs,
            vec![
                "2 package(s) would be updated (apt-get -s -q -o Debug::NoLocking=1 dist-upgrade)\n"
            ]
        );

        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        rec.reply(
            "tdnf check-update",
            reply("openssl.x86_64    3.0.16-3.ph5    photon-updates\n", 0),
        );
        assert!(full_update(&mut cx).unwrap().changed());

        let (mut cx, rec) = Fixture::rhel().ctx(Mode::Check);
        rec.reply(
            "dnf check-update",
            reply("\nopenssl.x86_64  1:3.2.2-6.el9_5  baseos\n", 100),
        );
        assert!(full_update(&mut cx).unwrap().changed());

        let (mut cx, rec) = Fixture::rhel().ctx(Mode::Check);
        rec.reply(
            "dnf check-update",
            Output {
                status: Some(1),
                stderr: b"Error: Failed to download metadata".to_vec(),
                ..Default::default()
            },
        );
        let e = full_update(&mut cx).unwrap_err();
        assert!(
            e.to_string()
                .contains("`dnf check-update -q` failed (exit status 1)"),
            "{e}"
        );
        assert!(e.to_string().contains("Failed to download metadata"), "{e}");
    }
}
