//! Packages: presence read from rpm / dpkg (through the state cache), installs with tdnf, apt
//! or dnf in one transaction per call.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::host::{Output, shell_join};

/// Every package in `names` is installed; the missing ones go in one transaction.
pub fn installed(cx: &mut Ctx, names: &[&str]) -> Result<Change> {
    installed_with(cx, names, &[])
}

/// As [`installed`], with `flags` for the package manager before the names
/// (`--disableexcludes=kubernetes`).
pub fn installed_with(cx: &mut Ctx, names: &[&str], flags: &[&str]) -> Result<Change> {
    let have = cx.packages()?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !have.contains_key(*n))
        .collect();
    if missing.is_empty() {
        return Ok(Change::Unchanged);
    }
    cx.progress(format!("installing {}", missing.join(" ")));
    let os = cx.facts().os;
    if os == OsFamily::Debian {
        apt_update_once(cx)?;
    }
    let mut argv = install_argv(os);
    argv.extend(flags);
    argv.extend(missing.iter().copied());
    run(cx, &argv)?;
    cx.after_install(&missing)?;
    cx.note_change(format!("installed: {}", missing.join(" ")));
    Ok(Change::Changed)
}

/// The command that installs packages, without the names. A configuration file the host has
/// before its package (written by hand, by another tool, or by an earlier step) is kept, and
/// nothing stops at a prompt: apt passes dpkg `--force-confdef --force-confold` (the package's
/// version goes beside it as `.dpkg-dist`). rpm (tdnf, dnf) keeps such a file by itself for
/// the `%config(noreplace)` files these packages ship (containerd's config.toml on Photon), the
/// package's version going beside it as `.rpmnew`: nothing to pass.
pub fn install_argv(os: OsFamily) -> Vec<&'static str> {
    match os {
        OsFamily::Photon => vec!["tdnf", "install", "-y", "--quiet"],
        OsFamily::Rhel => vec!["dnf", "install", "-y", "--quiet"],
        OsFamily::Debian => vec![
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            "DPkg::Lock::Timeout=120",
        ],
    }
}

/// Runs a package manager command that changes the host (in check mode, only recorded). A
/// failure says why in the package manager's own words (see [`failure`]), not only its exit
/// status.
pub fn run(cx: &mut Ctx, argv: &[&str]) -> Result<()> {
    match cx.apply_unchecked(argv)? {
        Some(out) if !out.success() => Err(failure(argv, &out)),
        _ => Ok(()),
    }
}

/// The error for a failed package manager command: its exit status, then the lines of its
/// output (stdout and stderr) that carry the cause: dpkg's `error processing package` with the
/// reason on the lines after it, the conffile it stopped at, apt's `E:` lines, unmet
/// dependencies, tdnf's and dnf's `Error` and solver problems, rpm's scriptlet errors. The
/// bare `E: Sub-process /usr/bin/dpkg returned an error code (1)` is left out when a cause is
/// found. With no such line, the last lines of stdout stand in; the tail of stderr follows.
pub fn failure(argv: &[&str], out: &Output) -> Error {
    let status = match out.status {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    let stdout = out.stdout_str();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut cause = failure_cause(&stdout);
    for l in failure_cause(&stderr) {
        if !cause.contains(&l) {
            cause.push(l);
        }
    }
    if cause.iter().any(|l| !is_generic(l)) {
        cause.retain(|l| !is_generic(l));
    }
    if cause.is_empty() {
        cause = crate::error::tail(&out.stdout, 8)
            .lines()
            .map(str::to_string)
            .collect();
    }
    cause.truncate(20);
    // Whole: the package names come last.
    let mut message = format!("`{}` failed ({status})", shell_join(argv));
    if !cause.is_empty() {
        message.push_str(":\n  ");
        message.push_str(&cause.join("\n  "));
    }
    Error::new(ErrorKind::Command, message).with_stderr(&out.stderr)
}

/// apt's summary of a dpkg failure, which says nothing of its cause.
fn is_generic(line: &str) -> bool {
    line.starts_with("E: Sub-process /usr/bin/dpkg returned an error code")
}

/// The lines of one output stream that say why a package manager failed, in order.
pub fn failure_cause(text: &str) -> Vec<String> {
    // (marker, whether the indented lines after it belong to it: the reason, the packages,
    // the dependencies).
    const MARKERS: [(&str, bool); 14] = [
        ("dpkg: error", true),
        ("dpkg: dependency problems", true),
        ("Configuration file '", false),
        ("Errors were encountered while processing", true),
        ("E: ", false),
        ("unmet dependencies", true),
        ("Error(", false),
        ("Error:", true),
        ("error:", false),
        ("Problem", true),
        ("nothing provides", false),
        ("conflicts with", false),
        ("No match for argument", false),
        ("No matching packages", false),
    ];
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let found = MARKERS
            .iter()
            .filter_map(|(m, follow)| line.find(m).map(|at| (at, *follow)))
            .min_by_key(|(at, _)| *at);
        i += 1;
        let Some((at, follow)) = found else {
            continue;
        };
        // A dpkg prompt line ends with the error it ran into: `*** config.toml (Y/I/N/O/D/Z)
        // [default=N] ? dpkg: error processing ...`.
        let start = if line[..at].contains("***") { at } else { 0 };
        out.push(line[start..].trim().to_string());
        let mut taken = 0;
        while follow
            && taken < 4
            && i < lines.len()
            && lines[i].starts_with([' ', '\t'])
            && !lines[i].trim().is_empty()
        {
            out.push(lines[i].trim().to_string());
            i += 1;
            taken += 1;
        }
    }
    out.dedup();
    out
}

/// rpm's ordering of version-release strings, enough for these: runs of digits compared as
/// numbers, runs of letters as text, a number after a letter run, separators ignored.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn segments(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let start = rest
                .find(|c: char| c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            rest = &rest[start..];
            if rest.is_empty() {
                break;
            }
            let digit = rest.starts_with(|c: char| c.is_ascii_digit());
            let end = rest
                .find(|c: char| {
                    !(if digit {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    })
                })
                .unwrap_or(rest.len());
            out.push((digit, &rest[..end]));
            rest = &rest[end..];
        }
        out
    }
    let (sa, sb) = (segments(a), segments(b));
    for ((da, xa), (db, xb)) in sa.iter().zip(&sb) {
        let o = match (da, db) {
            (true, true) => {
                let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
                ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
            }
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => xa.cmp(xb),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    sa.len().cmp(&sb.len())
}

/// `apt-get update` at most once per run, before the first install.
pub fn apt_update_once(cx: &mut Ctx) -> Result<()> {
    if cx.apt_updated(false) {
        return Ok(());
    }
    run(
        cx,
        &["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120"],
    )?;
    cx.apt_updated(true);
    Ok(())
}

/// The installed version of a package, if it is installed.
pub fn version(cx: &mut Ctx, name: &str) -> Result<Option<String>> {
    Ok(cx.packages()?.get(name).cloned())
}

pub fn is_installed(cx: &mut Ctx, name: &str) -> Result<bool> {
    Ok(cx.packages()?.contains_key(name))
}

/// The NFS client: `nfs-utils` (Photon, RHEL) or `nfs-common` (Debian).
pub fn nfs_client(cx: &mut Ctx) -> Result<Change> {
    let name = match cx.facts().os {
        OsFamily::Debian => "nfs-common",
        OsFamily::Photon | OsFamily::Rhel => "nfs-utils",
    };
    installed(cx, &[name])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{Mode, Outcome};
    use crate::testing::{Fixture, plan};

    /// An install says which packages it installed; packages already there are not named.
    #[test]
    fn install_diff_names_the_packages() {
        for mode in [Mode::Apply, Mode::Check] {
            let (mut cx, _rec) = Fixture::photon()
                .packages(&[("kbd", "2.6.4-1.ph5")])
                .ctx(mode);
            let c = cx
                .step("locale packages", |cx| {
                    installed(cx, &["kbd", "glibc-i18n", "tar"])
                })
                .unwrap();
            assert_eq!(c, Change::Changed);
            assert_eq!(plan(&cx), "run tdnf install -y --quiet glibc-i18n tar\n");
            let r = &cx.records()[0];
            assert_eq!(r.outcome, Outcome::Changed);
            assert_eq!(r.diffs, ["installed: glibc-i18n tar\n"], "{mode:?}");
        }
        let (mut cx, _rec) = Fixture::photon()
            .packages(&[("kbd", "2.6.4-1.ph5")])
            .ctx(Mode::Apply);
        let c = cx.step("kbd", |cx| installed(cx, &["kbd"])).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert!(cx.records()[0].diffs.is_empty());
    }

    /// apt-get installing containerd over a config.toml written before it, without
    /// `--force-confold`: dpkg stops at its conffile prompt, reads end of file, fails.
    const APT_STDOUT: &str = "Reading package lists...\nBuilding dependency tree...\nThe following NEW packages will be installed:\n  containerd runc\nSetting up runc (1.1.5+ds1-1+deb12u1) ...\nSetting up containerd (1.6.20~ds1-1+b1) ...\n\nConfiguration file '/etc/containerd/config.toml'\n ==> File on system created by you or by a script.\n ==> File also in package provided by package maintainer.\n   What would you like to do about it ?  Your options are:\n    Y or I  : install the package maintainer's version\n    N or O  : keep your currently-installed version\n The default action is to keep your current version.\n*** config.toml (Y/I/N/O/D/Z) [default=N] ? Processing triggers for man-db (2.11.2-2) ...\n";
    const APT_STDERR: &str = "debconf: delaying package configuration, since apt-utils is not installed\ndpkg: error processing package containerd (--configure):\n end of file on stdin at conffile prompt\nErrors were encountered while processing:\n containerd\nE: Sub-process /usr/bin/dpkg returned an error code (1)\n";

    fn failed(stdout: &str, stderr: &str, status: i32) -> Output {
        Output {
            status: Some(status),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn dpkg_failure_says_why() {
        let (mut cx, rec) = Fixture::debian().ctx(Mode::Apply);
        rec.reply("env DEBIAN_FRONTEND", failed(APT_STDOUT, APT_STDERR, 100));
        let e = installed(&mut cx, &["containerd"]).unwrap_err();
        assert_eq!(
            e.message(),
            "`env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o \
             Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 \
             containerd` failed (exit status 100):\n  \
             Configuration file '/etc/containerd/config.toml'\n  \
             dpkg: error processing package containerd (--configure):\n  \
             end of file on stdin at conffile prompt\n  \
             Errors were encountered while processing:\n  \
             containerd"
        );
        assert!(
            e.stderr_tail().ends_with("returned an error code (1)"),
            "{e}"
        );
        // The prompt and the error on one line (stdout and stderr merged).
        assert_eq!(
            failure_cause(
                "*** config.toml (Y/I/N/O/D/Z) [default=N] ? dpkg: error processing package containerd (--configure):\n end of file on stdin at conffile prompt\n"
            ),
            [
                "dpkg: error processing package containerd (--configure):",
                "end of file on stdin at conffile prompt"
            ]
        );
    }

    #[test]
    fn tdnf_and_dnf_failures_say_why() {
        let e = failure(
            &["tdnf", "install", "-y", "--quiet", "kubernetes"],
            &failed("", "Error(1011) : No matching packages\n", 1),
        );
        assert_eq!(
            e.message(),
            "`tdnf install -y --quiet kubernetes` failed (exit status 1):\n  Error(1011) : No matching packages"
        );
        let e = failure(
            &["dnf", "install", "-y", "--quiet", "containerd"],
            &failed(
                "",
                "Error: \n Problem: package containerd.io-1.7.25-3.1.el9.x86_64 conflicts with runc provided by runc-4:1.1.12-1.el9.x86_64\n  - cannot install the best candidate for the job\n",
                1,
            ),
        );
        assert!(
            e.message().ends_with(
                "(exit status 1):\n  Error:\n  Problem: package containerd.io-1.7.25-3.1.el9.x86_64 conflicts with runc provided by runc-4:1.1.12-1.el9.x86_64\n  - cannot install the best candidate for the job"
            ),
            "{e}"
        );
        // Nothing recognised: the end of stdout stands in.
        let e = failure(
            &["tdnf", "update", "-y"],
            &failed("a\nb\nlast words\n", "", 2),
        );
        assert!(e.message().ends_with(":\n  a\n  b\n  last words"), "{e}");
    }

    /// A config file written before its package never stops apt at a prompt; rpm keeps such a
    /// file by itself (nothing to pass).
    #[test]
    fn existing_config_files_are_kept() {
        let (mut cx, _rec) = Fixture::debian()
            .file("/etc/containerd/config.toml", "version = 2\n", 0o644)
            .ctx(Mode::Check);
        assert!(installed(&mut cx, &["containerd"]).unwrap().changed());
        assert!(
            plan(&cx).contains(
                "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o \
                 Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 containerd"
            ),
            "{}",
            plan(&cx)
        );
        assert_eq!(
            install_argv(OsFamily::Photon),
            ["tdnf", "install", "-y", "--quiet"]
        );
    }
}
