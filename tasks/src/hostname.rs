//! The host name: lowercase RFC 1123, equal to the inventory name (it is also the vCenter VM
//! name and the Kubernetes node name).
//!
//! Two parts, like the kernel tasks: persisted ([`hostname_persisted`]: /etc/hostname, read at
//! boot) and live ([`hostname_live`]: `hostnamectl set-hostname`, the kernel's name now).
//! Inside a container both belong to the runtime: /etc/hostname is a bind mount (a rename over
//! it fails with "Device or resource busy", and so does `hostnamectl set-hostname`), and the
//! name comes from `docker run --hostname`; both parts are then reported skipped, with that
//! reason, when the name differs.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, Result};
use crate::file::{self, Perm};
use crate::reads::Reads;

pub const HOSTNAME_FILE: &str = "/etc/hostname";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[HOSTNAME_FILE]);

/// A lowercase RFC 1123 name: labels of 1 to 63 characters `[a-z0-9-]`, not starting or
/// ending with `-`, separated by dots, 253 characters at most (what Kubernetes accepts as a
/// node name).
pub fn validate(name: &str) -> Result<()> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid host name {name:?}: expected lowercase RFC 1123 (a-z, 0-9, '-', labels of at most 63 characters)"
        )))
    }
}

/// The name /etc/hostname gives: its first line that is not blank or a comment.
pub fn configured(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

fn container_reason(cx: &Ctx, name: &str) -> Option<String> {
    cx.facts().container.as_ref().map(|c| {
        format!(
            "inside a container ({c}) the host name belongs to the runtime (/etc/hostname is bind-mounted): \
             start the container with --hostname {name}"
        )
    })
}

/// Step "hostname persisted": /etc/hostname holds `name` (0644).
pub fn hostname_persisted(cx: &mut Ctx, name: &str) -> Result<Change> {
    validate(name)?;
    let current = cx.file(HOSTNAME_FILE)?.map(|f| f.text());
    if current.as_deref().and_then(configured) == Some(name) {
        return Ok(Change::Unchanged);
    }
    if let Some(reason) = container_reason(cx, name) {
        return Ok(Change::Skipped(reason));
    }
    file::content(cx, HOSTNAME_FILE, &format!("{name}\n"), Perm::CONFIG)
}

/// Step "hostname live": the kernel's host name is `name`: `hostnamectl set-hostname NAME`
/// (`hostname NAME` where systemd does not run). Run it after [`hostname_persisted`]:
/// hostnamectl also writes /etc/hostname, with the same contents.
pub fn hostname_live(cx: &mut Ctx, name: &str) -> Result<Change> {
    validate(name)?;
    let live = cx.facts().hostname.clone();
    if live == name {
        return Ok(Change::Unchanged);
    }
    if let Some(reason) = container_reason(cx, name) {
        return Ok(Change::Skipped(reason));
    }
    if cx.facts().systemd {
        cx.apply(&["hostnamectl", "set-hostname", name])?;
    } else {
        cx.apply(&["hostname", name])?;
    }
    cx.hostname_changed(name);
    let was = if live.is_empty() { "(none)" } else { &live };
    cx.note_change(format!("host name: {was} -> {name}"));
    Ok(Change::Changed)
}

/// Both parts as one step.
pub fn hostname(cx: &mut Ctx, name: &str) -> Result<Change> {
    let persisted = hostname_persisted(cx, name)?;
    Ok(persisted | hostname_live(cx, name)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, actions as strings};

    #[test]
    fn names() {
        for ok in ["prdk8swok511", "a", "node-1.lan", &"a".repeat(63)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "PRDK8SWOK511",
            "Prdk8swok511",
            "-node",
            "node-",
            "a..b",
            "a_b",
            "a b",
            &"a".repeat(64),
            "x\ny",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            configured("# set by installer\n\n  prdk8swok511 \n"),
            Some("prdk8swok511")
        );
        assert_eq!(configured(""), None);
    }

    #[test]
    fn photon_plan_then_no_change() {
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Apply);
        assert_eq!(hostname(&mut cx, "prdk8swok511").unwrap(), Change::Changed);
        assert_eq!(
            strings(&cx),
            [
                "write /etc/hostname 0644 root:root",
                "run hostnamectl set-hostname prdk8swok511"
            ]
        );
        let sent = rec.commands().len();
        assert_eq!(
            hostname(&mut cx, "prdk8swok511").unwrap(),
            Change::Unchanged
        );
        assert_eq!((cx.actions().len(), rec.commands().len()), (2, sent));
    }

    #[test]
    fn no_change() {
        let (mut cx, rec) = Fixture::debian().hostname("prdk8swok511").ctx(Mode::Apply);
        assert_eq!(
            hostname_persisted(&mut cx, "prdk8swok511").unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            hostname_live(&mut cx, "prdk8swok511").unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty());
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn live_only() {
        // /etc/hostname already right (edited by hand, not applied yet).
        let (mut cx, _rec) = Fixture::rhel()
            .file(HOSTNAME_FILE, "prdk8swok511\n", 0o644)
            .ctx(Mode::Apply);
        assert_eq!(hostname(&mut cx, "prdk8swok511").unwrap(), Change::Changed);
        assert_eq!(strings(&cx), ["run hostnamectl set-hostname prdk8swok511"]);
    }

    /// The renaming says what it did. Once renamed, the host's name is the new one, for this
    /// run and for a run over the state it leaves.
    #[test]
    fn live_rename_is_followed() {
        let (mut cx, _rec) = Fixture::rhel()
            .file(HOSTNAME_FILE, "prdk8swok511\n", 0o644)
            .ctx(Mode::Check);
        let c = cx
            .step("hostname", |cx| hostname_live(cx, "prdk8swok511"))
            .unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(
            cx.records()[0].diffs,
            ["host name: localhost -> prdk8swok511\n"]
        );
        assert_eq!(cx.facts().hostname, "prdk8swok511");
        assert_eq!(
            hostname_live(&mut cx, "prdk8swok511").unwrap(),
            Change::Unchanged
        );
        let (again, _rec) = Fixture {
            facts: Fixture::rhel().facts,
            state: cx.state().clone(),
        }
        .ctx(Mode::Check);
        assert_eq!(again.facts().hostname, "prdk8swok511");
    }

    #[test]
    fn check_mode() {
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        assert_eq!(hostname(&mut cx, "prdk8smst501").unwrap(), Change::Changed);
        assert_eq!(
            strings(&cx),
            [
                "write /etc/hostname 0644 root:root",
                "run hostnamectl set-hostname prdk8smst501"
            ]
        );
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn container_skipped() {
        let (mut cx, _rec) = Fixture::debian().in_container().ctx(Mode::Apply);
        let p = hostname_persisted(&mut cx, "prdk8swok511").unwrap();
        let l = hostname_live(&mut cx, "prdk8swok511").unwrap();
        for c in [p, l] {
            assert!(
                matches!(&c, Change::Skipped(r) if r.contains("--hostname prdk8swok511")),
                "{c:?}"
            );
        }
        assert!(cx.actions().is_empty());
        // Already named right by the runtime: plain unchanged.
        let (mut cx, _rec) = Fixture::debian()
            .hostname("prdk8swok511")
            .in_container()
            .ctx(Mode::Apply);
        assert_eq!(
            hostname(&mut cx, "prdk8swok511").unwrap(),
            Change::Unchanged
        );
    }

    #[test]
    fn invalid_refused() {
        let (mut cx, _rec) = Fixture::photon().ctx(Mode::Apply);
        assert!(hostname(&mut cx, "PRDK8SWOK511").is_err());
        assert!(cx.actions().is_empty());
    }
}
