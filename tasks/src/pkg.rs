//! Packages: presence read from rpm / dpkg (through the state cache), installs with tdnf, apt
//! or dnf.
//!
//! In apply mode a plan installs the packages its steps declare ([`crate::plan::Plan::installs`])
//! in one transaction before its first step; each step then reports the
//! ones it asks for as installed ([`installed`]: `changed`, `installed: NAME` in its diff)
//! without installing them again. Whatever a step asks for that is still missing is installed
//! by the step itself, in one transaction per call. Check mode installs nothing: each step
//! says what it would install.
//!
//! apt's package lists are refreshed (`apt-get update`) before an install only when the probe
//! found them older than the maximum age ([`PACKAGE_LISTS_MAX_AGE`] unless the plan says
//! otherwise), or found none, or a repository was added in the run. An install that cannot
//! find a package refreshes the lists and is tried once more: `apt-get update` (apt's "Unable
//! to locate package", "has no installation candidate"), `--refresh` (tdnf's "No matching
//! packages", dnf's "No match for argument"), unless they were refreshed in this run already.

use std::time::Duration;

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::host::Output;
use crate::shell::shell_join;
use crate::state::PackageLists;

pub use crate::ctx::packages::{PACKAGE_LISTS_MAX_AGE, RunPackages};

impl RunPackages {
    /// Whether apt's package lists must be refreshed before an install: a repository was
    /// added in this run; or they were not refreshed in this run and the probe found none
    /// (`found`), or found them older than the maximum age (or could not tell).
    fn apt_lists_stale(&self, found: Option<PackageLists>) -> bool {
        if self.sources_changed {
            return true;
        }
        if self.lists_refreshed {
            return false;
        }
        !found.is_some_and(|l| l.fresh(self.lists_max_age))
    }

    /// The package lists were just refreshed.
    fn mark_lists_refreshed(&mut self) {
        self.lists_refreshed = true;
        self.sources_changed = false;
    }
}

/// apt's package lists are refreshed before an install when older than `max` (the
/// inventory's `system.package_lists_max_age`, through the plan).
pub(crate) fn set_package_lists_max_age(cx: &mut Ctx, max: Duration) {
    cx.packages_run().lists_max_age = max;
}

/// A repository was added: apt's lists must be refreshed before the next install.
pub(crate) fn apt_lists_changed(cx: &mut Ctx) {
    cx.packages_run().sources_changed();
}

/// Those of `names` the run's one transaction installed and no step reported yet, in the
/// order of `names`; from now on, reported.
fn take_batched(cx: &mut Ctx, names: &[&str]) -> Vec<String> {
    let batched = &mut cx.packages_run().batched;
    names
        .iter()
        .filter(|n| batched.remove(**n))
        .map(|n| n.to_string())
        .collect()
}

/// Every package in `names` is installed; the missing ones go in one transaction. Those the
/// run's one transaction installed before the first step are reported installed by the first
/// step that asks for them.
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
    let batched = take_batched(cx, names);
    if missing.is_empty() && batched.is_empty() {
        return Ok(Change::Unchanged);
    }
    if !missing.is_empty() {
        cx.progress_doing_or_would(
            format!("installing {}", missing.join(" ")),
            format!("would install {}", missing.join(" ")),
        );
        install(cx, &missing, flags)?;
        cx.after_install(&missing)?;
    }
    let shown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| missing.contains(n) || batched.iter().any(|b| b == n))
        .collect();
    cx.note_done_or_would(
        format!("installed: {}", shown.join(" ")),
        format!("would install: {}", shown.join(" ")),
    );
    Ok(Change::Changed)
}

/// The run's one transaction (apply mode): those of `wanted` (the packages the selected steps
/// declare, in step order) the host lacks, installed in one command. A failed transaction is
/// said (a progress line, a warning in the log) and leaves each step to install its own
/// packages, the one that cannot be installed failing its step with the package manager's
/// words.
pub(crate) fn install_batch(cx: &mut Ctx, wanted: Vec<String>) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = match cx.packages() {
        Ok(have) => wanted
            .into_iter()
            .filter(|n| !have.contains_key(n))
            .collect(),
        Err(e) => {
            tracing::debug!(
                host = cx.host_name(),
                "installed packages unknown ({e}): each step installs its own"
            );
            return Ok(());
        }
    };
    if missing.is_empty() {
        return Ok(());
    }
    match install_together(cx, &missing) {
        Ok(()) => Ok(()),
        // Another run holds the host: no step would do better, the run ends here.
        Err(e) if e.kind() == ErrorKind::Busy => Err(e),
        Err(e) => {
            fall_back(cx, &missing, &e);
            Ok(())
        }
    }
}

/// The one transaction failed: each step installs its own packages.
fn fall_back(cx: &mut Ctx, missing: &[String], e: &Error) {
    tracing::warn!(
        host = cx.host_name(),
        "installing {} in one transaction failed; each step installs its own: {e}",
        missing.join(" ")
    );
    cx.progress(format!(
        "installing {} in one transaction failed; each step installs its own",
        missing.join(" ")
    ));
    // What the failed transaction left is read again when next needed.
    cx.packages_changed();
}

/// `names` installed in one command, remembered for the steps that ask for them
/// ([`installed`]), and the host read again once. A failed install leaves nothing remembered:
/// each step then installs its own packages.
fn install_together(cx: &mut Ctx, names: &[String]) -> Result<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // The host's lock first: a host another run holds is said busy before anything else.
    cx.take_lock()?;
    cx.progress(format!(
        "installing {} (the packages of every step, in one transaction)",
        names.join(" ")
    ));
    install(cx, &names, &[])?;
    let installed: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    cx.packages_run().batched.extend(installed);
    cx.after_install(&names)
}

/// One install command for `names` (after `apt-get update` when apt's lists are stale); when
/// the package manager cannot find a package, the lists refreshed and the command tried once
/// more (see the module's notes).
fn install(cx: &mut Ctx, names: &[&str], flags: &[&str]) -> Result<()> {
    let os = cx.facts().os;
    if os.uses_apt() {
        refresh_apt_lists(cx)?;
    }
    let mut argv = install_argv(os);
    argv.extend(flags);
    argv.extend(names.iter().copied());
    let out = match cx.apply_unchecked(&argv)? {
        Some(out) if !out.success() => out,
        _ => return Ok(()),
    };
    // tdnf skipped a repository it could not reach: the package only looks missing.
    if os.uses_tdnf()
        && let Some(e) = crate::repos::skipped_repositories(cx, &out)
    {
        return Err(crate::proxy::through_proxy(cx, e));
    }
    if !not_found(&out) || cx.packages_run().lists_refreshed {
        let e = failure(&argv, &out);
        return Err(crate::proxy::through_proxy(cx, e));
    }
    tracing::debug!(
        host = cx.host_name(),
        "a package was not found: the package lists are refreshed and the install tried again"
    );
    match os {
        OsFamily::Debian => {
            apt_get_update(cx)?;
            run(cx, &argv).map_err(|e| crate::proxy::through_proxy(cx, e))
        }
        OsFamily::Photon | OsFamily::Rhel => {
            // `tdnf install --refresh`, `dnf install --refresh`: metadata read anew first.
            argv.insert(install_argv(os).len(), "--refresh");
            let retried = run(cx, &argv);
            // Refreshed, whether or not the package was found this time.
            cx.packages_run().mark_lists_refreshed();
            retried
        }
    }
}

/// The package manager said it cannot find a package: apt's `E: Unable to locate package X`
/// and `E: Package 'X' has no installation candidate`, tdnf's `Error(1011) : No matching
/// packages`, dnf's `No match for argument: X` / `Error: Unable to find a match: X`.
pub fn not_found(out: &Output) -> bool {
    const MARKERS: [&str; 5] = [
        "Unable to locate package",
        "has no installation candidate",
        "No matching packages",
        "No match for argument",
        "Unable to find a match",
    ];
    let stdout = out.stdout_str();
    let stderr = String::from_utf8_lossy(&out.stderr);
    MARKERS
        .iter()
        .any(|m| stdout.contains(m) || stderr.contains(m))
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

/// `apt-get update` when apt's package lists are stale: a repository was added in this run,
/// or they were not refreshed in this run and the probe found none, or found them older than
/// the maximum age (see the module's notes). At most once per run otherwise.
pub fn refresh_apt_lists(cx: &mut Ctx) -> Result<()> {
    let found = cx.state().package_lists;
    if cx.packages_run().apt_lists_stale(found) {
        apt_get_update(cx)?;
    }
    Ok(())
}

fn apt_get_update(cx: &mut Ctx) -> Result<()> {
    let argv = ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120"];
    match cx.apply_unchecked(&argv)? {
        Some(out) if !out.success() => {
            let e = failure(&argv, &out);
            return Err(crate::proxy::through_proxy(cx, e));
        }
        // apt leaves lists it could not fetch as they were, and says so in a warning: through
        // a proxy, that is the proxy failing, and every install after it would fail as a
        // missing package.
        Some(out) if crate::proxy::package_proxy_in_use(cx).is_some() => {
            let text = format!(
                "{}{}",
                out.stdout_str(),
                String::from_utf8_lossy(&out.stderr)
            );
            let failed: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("Failed to fetch") || l.contains("Could not connect"))
                .collect();
            if !failed.is_empty() {
                let e = Error::new(
                    ErrorKind::Command,
                    format!(
                        "`{}` could not fetch the package lists:\n  {}",
                        shell_join(&argv),
                        failed.join("\n  ")
                    ),
                );
                return Err(crate::proxy::through_proxy(cx, e));
            }
        }
        _ => {}
    }
    cx.packages_run().mark_lists_refreshed();
    Ok(())
}

/// The installed version of a package, if it is installed.
pub fn version(cx: &mut Ctx, name: &str) -> Result<Option<String>> {
    Ok(cx.packages()?.get(name).cloned())
}

pub fn is_installed(cx: &mut Ctx, name: &str) -> Result<bool> {
    Ok(cx.packages()?.contains_key(name))
}

/// The NFS client's package: `nfs-utils` (Photon, RHEL) or `nfs-common` (Debian).
pub fn nfs_client_package(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "nfs-common",
        OsFamily::Photon | OsFamily::Rhel => "nfs-utils",
    }
}

/// The NFS client is installed.
pub fn nfs_client(cx: &mut Ctx) -> Result<Change> {
    installed(cx, &[nfs_client_package(cx.facts().os)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{Mode, Outcome};
    use crate::testing::{Fixture, plan};

    /// An install says which packages it installed (in check mode, which it would install:
    /// nothing is); packages already there are not named.
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
            let said = match mode {
                Mode::Apply => "installed: glibc-i18n tar\n",
                Mode::Check => "would install: glibc-i18n tar\n",
            };
            assert_eq!(r.diffs, [said], "{mode:?}");
        }
        let (mut cx, _rec) = Fixture::photon()
            .packages(&[("kbd", "2.6.4-1.ph5")])
            .ctx(Mode::Apply);
        let c = cx.step("kbd", |cx| installed(cx, &["kbd"])).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert!(cx.records()[0].diffs.is_empty());
    }

    /// A host answering from a script: each reply is given once, to the first command that
    /// starts with its prefix; other commands succeed with no output.
    struct Scripted {
        log: std::sync::Mutex<Vec<String>>,
        replies: std::sync::Mutex<Vec<(String, Output)>>,
    }

    impl crate::host::Host for std::sync::Arc<Scripted> {
        fn name(&self) -> &str {
            "scripted"
        }
        fn live(&self) -> bool {
            false
        }
        fn exec(&self, cmd: &crate::host::Cmd) -> Result<Output> {
            let shown = cmd.display();
            self.log.lock().unwrap().push(shown.clone());
            let mut replies = self.replies.lock().unwrap();
            match replies
                .iter()
                .position(|(p, _)| shown.starts_with(p.as_str()))
            {
                Some(i) => Ok(replies.remove(i).1),
                None => Ok(Output {
                    status: Some(0),
                    ..Output::default()
                }),
            }
        }
    }

    fn scripted(f: Fixture, replies: &[(&str, Output)]) -> (Ctx, std::sync::Arc<Scripted>) {
        let host = std::sync::Arc::new(Scripted {
            log: Default::default(),
            replies: std::sync::Mutex::new(
                replies
                    .iter()
                    .map(|(p, o)| (p.to_string(), o.clone()))
                    .collect(),
            ),
        });
        let opts = crate::ctx::Options {
            diff: true,
            ..Default::default()
        };
        let cx = Ctx::with_state(Box::new(host.clone()), f.facts, f.state, opts);
        (cx, host)
    }

    fn lists(age_secs: u64, indexes: u32) -> Option<crate::state::PackageLists> {
        Some(crate::state::PackageLists { age_secs, indexes })
    }

    const APT_UPDATE: &str = "apt-get update -q -o DPkg::Lock::Timeout=120";
    const APT_INSTALL: &str = "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120";

    /// apt's lists are refreshed before an install only when stale: unknown, empty, or older
    /// than the plan's maximum age (default one hour); at most once in a run, unless a
    /// repository was added.
    #[test]
    fn apt_lists_refreshed_only_when_stale() {
        use crate::plan::{Plan, Reads, Selection};
        use std::time::Duration;
        for (found, max, refreshed) in [
            (None, None, true),
            (lists(600, 3), None, false),
            (lists(7200, 3), None, true),
            (lists(600, 0), None, true),
            (lists(600, 3), Some(300), true),
            (lists(7200, 3), Some(86400), false),
        ] {
            let mut f = Fixture::debian();
            f.state.package_lists = found;
            let (mut cx, rec) = f.ctx(Mode::Apply);
            let mut p = Plan::new();
            if let Some(secs) = max {
                p.package_lists_max_age(Duration::from_secs(secs));
            }
            p.step("nfs", Reads::NONE, nfs_client);
            p.step("more", Reads::NONE, |cx| installed(cx, &["curl"]));
            assert!(p.run(&mut cx, &Selection::default()).error.is_none());
            let updates = rec
                .commands()
                .iter()
                .filter(|c| c.display() == APT_UPDATE)
                .count();
            assert_eq!(updates, usize::from(refreshed), "{found:?} max {max:?}");
        }
        // A repository added: refreshed before the next install, fresh or not, once.
        let mut f = Fixture::debian();
        f.state.package_lists = lists(10, 3);
        let (mut cx, rec) = f.ctx(Mode::Apply);
        assert!(installed(&mut cx, &["curl"]).unwrap().changed());
        apt_lists_changed(&mut cx);
        assert!(installed(&mut cx, &["kubelet"]).unwrap().changed());
        assert!(installed(&mut cx, &["kubeadm"]).unwrap().changed());
        let sent: Vec<String> = rec
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains("apt-get"))
            .collect();
        assert_eq!(
            sent,
            [
                format!("{APT_INSTALL} curl"),
                APT_UPDATE.to_string(),
                format!("{APT_INSTALL} kubelet"),
                format!("{APT_INSTALL} kubeadm"),
            ]
        );
    }

    fn not_found_reply(stderr: &str) -> Output {
        Output {
            status: Some(100),
            stdout: b"Reading package lists...\n".to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    /// Fresh lists that lack a package (a mirror that moved on since): the install refreshes
    /// them and is tried once more. Lists refreshed in this run already: no second refresh,
    /// the package manager's words.
    #[test]
    fn a_package_not_found_refreshes_the_lists_and_tries_once_more() {
        let mut f = Fixture::debian();
        f.state.package_lists = lists(600, 3);
        let (mut cx, host) = scripted(
            f,
            &[(
                APT_INSTALL,
                not_found_reply("E: Unable to locate package nfs-common\n"),
            )],
        );
        let c = cx.step("nfs client", nfs_client).unwrap();
        assert_eq!(c, Change::Changed);
        let install = format!("{APT_INSTALL} nfs-common");
        let sent = host.log.lock().unwrap().clone();
        assert_eq!(
            sent,
            [install.clone(), APT_UPDATE.to_string(), install.clone()]
        );
        assert_eq!(cx.records()[0].diffs, ["installed: nfs-common\n"]);

        // Stale lists, refreshed first: not found all the same is an error at once.
        let (mut cx, host) = scripted(
            Fixture::debian(),
            &[(
                APT_INSTALL,
                not_found_reply("E: Package 'nfs-common' has no installation candidate\n"),
            )],
        );
        let e = cx.step("nfs client", nfs_client).unwrap_err();
        assert!(
            e.to_string().contains("has no installation candidate"),
            "{e}"
        );
        let sent = host.log.lock().unwrap().clone();
        assert_eq!(sent, [APT_UPDATE.to_string(), install]);

        // tdnf and dnf: the same install with `--refresh`.
        for (f, stderr, first, retry) in [
            (
                Fixture::photon(),
                "Error(1011) : No matching packages\n",
                "tdnf install -y --quiet nfs-utils",
                "tdnf install -y --quiet --refresh nfs-utils",
            ),
            (
                Fixture::rhel(),
                "No match for argument: nfs-utils\nError: Unable to find a match: nfs-utils\n",
                "dnf install -y --quiet nfs-utils",
                "dnf install -y --quiet --refresh nfs-utils",
            ),
        ] {
            let (mut cx, host) = scripted(f, &[(first, not_found_reply(stderr))]);
            assert!(cx.step("nfs client", nfs_client).unwrap().changed());
            assert_eq!(*host.log.lock().unwrap(), [first, retry]);
        }
        // Another failure is not retried.
        let (mut cx, host) = scripted(
            Fixture::photon(),
            &[(
                "tdnf install",
                not_found_reply("Error(1525) : rpm transaction failed\n"),
            )],
        );
        assert!(cx.step("nfs client", nfs_client).is_err());
        assert_eq!(host.log.lock().unwrap().len(), 1);
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
