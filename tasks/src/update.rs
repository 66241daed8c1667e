//! The full system update: every package to the newest version the configured repositories
//! have. Changed only when something was actually upgraded, installed or removed (the
//! installed packages, name → version, compared before and after). In check mode a read-only
//! query says what would be upgraded.

use std::collections::BTreeMap;

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::host::{Cmd, Output};
use crate::pkg;
use crate::plan::Reads;

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::NONE;

/// The commands of a full update, per OS family (after `apt-get update` on Debian).
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
/// `dnf upgrade --refresh`, Debian `apt-get update` then `apt-get dist-upgrade` keeping the
/// configuration files the host has (`--force-confold`). The packages that moved are recorded
/// as the step's diff.
pub fn full_update(cx: &mut Ctx) -> Result<Change> {
    if cx.check_mode() {
        return pending(cx);
    }
    let before = cx.packages()?.clone();
    let os = cx.facts().os;
    cx.progress("updating every package (this can take minutes)");
    if os == OsFamily::Debian {
        pkg::apt_update_once(cx)?;
    }
    for argv in update_commands(os) {
        pkg::run(cx, &argv)?;
    }
    cx.state_mut().packages = None;
    cx.state_mut()
        .facts
        .insert("units-stale".into(), "yes".into());
    let after = cx.packages()?.clone();
    if after.is_empty() {
        return Err(Error::new(
            ErrorKind::Command,
            "the package list could not be read after the update",
        ));
    }
    let moved = package_changes(&before, &after);
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
    match (os, out.status) {
        (OsFamily::Debian, Some(0)) => Ok(text.lines().filter(|l| l.starts_with("Inst ")).count()),
        // dnf, and tdnf with dnf_check_update_compat: 100 means updates are listed.
        (OsFamily::Rhel | OsFamily::Photon, Some(100)) => {
            Ok(text.lines().filter(|l| is_update_line(l)).count().max(1))
        }
        (OsFamily::Rhel, Some(0)) => Ok(0),
        // tdnf's default: 0 whatever it found; the list tells.
        (OsFamily::Photon, Some(0)) => Ok(text.lines().filter(|l| is_update_line(l)).count()),
        _ => Err(None),
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
        after = after.replace("openssl 3.0.16-2.ph5", "openssl 3.0.16-3.ph5")
            + "kernel 6.1.128-1.ph5\n";
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
              openssl 3.0.16-2.ph5 -> 3.0.16-3.ph5
        "#]]
        .assert_eq(&cx.records()[0].diffs.join(""));
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
