//! Packages: presence read from rpm / dpkg (through the state cache), installs with tdnf, apt
//! or dnf in one transaction per call.

use crate::ctx::{Change, Ctx};
use crate::error::Result;
use crate::facts::OsFamily;

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
    cx.apply(&argv)?;
    cx.after_install(&missing)?;
    cx.note_change(format!("installed: {}", missing.join(" ")));
    Ok(Change::Changed)
}

/// The command that installs packages, without the names.
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
            "DPkg::Lock::Timeout=120",
        ],
    }
}

/// `apt-get update` at most once per run, before the first install.
pub fn apt_update_once(cx: &mut Ctx) -> Result<()> {
    if cx.apt_updated(false) {
        return Ok(());
    }
    cx.apply(&["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120"])?;
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
}
