//! sudo without a password for the admin user: a drop-in `/etc/sudoers.d/nodeprep-USER`
//! (`USER ALL=(ALL) NOPASSWD: ALL`, 0440 root:root), so that after a first run with the
//! password, nodeprep (and the operator) log in with a key and use `sudo -n`.
//!
//! A broken sudoers file can lock everyone out of root, so a new drop-in is first written as a
//! candidate and checked with `visudo -cf`; only a candidate visudo accepts goes live (written
//! atomically like every file). The candidate's name holds a `.`, and sudo skips such names in
//! an included directory: it is never read as policy, even when left behind. The drop-in only
//! counts when /etc/sudoers includes /etc/sudoers.d (Photon's, Debian's and RHEL's do:
//! `@includedir` or `#includedir`); without that the step fails rather than write a file that
//! does nothing.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file::{self, Perm};
use crate::reads::Reads;
use crate::users;

pub const SUDOERS: &str = "/etc/sudoers";
pub const DIR: &str = "/etc/sudoers.d";
/// sudo's own mode for sudoers files.
pub const PERM: Perm = Perm::mode(0o440);

/// What these tasks read besides the drop-in itself, whose name comes from the inventory
/// (see [`drop_in`]).
pub const READS: Reads = Reads::files(&[SUDOERS]);

/// The drop-in for `user`.
pub fn drop_in(user: &str) -> String {
    format!("{DIR}/nodeprep-{user}")
}

/// Where a new drop-in is checked before it goes live (skipped by sudo: the name has a `.`).
pub fn candidate(user: &str) -> String {
    format!("{DIR}/.nodeprep-{user}.candidate")
}

/// The drop-in's text.
pub fn render(user: &str) -> String {
    format!(
        "# Managed by nodeprep (inventory: admin.passwordless_sudo = true).\n{user} ALL=(ALL) NOPASSWD: ALL\n"
    )
}

/// Whether a sudoers text includes /etc/sudoers.d (`@includedir` since sudo 1.9.1, or the
/// older `#includedir`).
pub fn includes_drop_ins(sudoers: &str) -> bool {
    sudoers.lines().any(|l| {
        let mut w = l.split_whitespace();
        matches!(w.next(), Some("@includedir" | "#includedir"))
            && matches!(w.next(), Some("/etc/sudoers.d" | "/etc/sudoers.d/"))
    })
}

/// Step "admin passwordless sudo": `user` may run anything with sudo without a password.
pub fn passwordless(cx: &mut Ctx, user: &str) -> Result<Change> {
    users::validate_name(user)?;
    if user == "root" {
        return Err(Error::invalid("root needs no sudo rule"));
    }
    match cx.file(SUDOERS)? {
        None => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{SUDOERS} is absent: sudo is not installed"),
            ));
        }
        Some(f) if !includes_drop_ins(&f.text()) => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{SUDOERS} does not include {DIR} (no `@includedir {DIR}` line): a drop-in there would have no effect; add that line with visudo"
                ),
            ));
        }
        Some(_) => {}
    }
    let path = drop_in(user);
    let text = render(user);
    if cx
        .file(&path)?
        .is_some_and(|f| !f.is_dir && f.content == text.as_bytes())
    {
        // Same text: at most mode and owner to fix, nothing to check.
        return file::content(cx, &path, &text, PERM);
    }
    let checker = file::Checker {
        argv: &["visudo", "-c", "-f"],
        rejected: format!("visudo rejected the new {path} (`visudo -c -f`); nothing was installed"),
        missing: format!("visudo is not installed, so {path} cannot be checked; install sudo"),
    };
    file::checked(cx, &candidate(user), PERM, &text, checker, |cx| {
        file::content(cx, &path, &text, PERM)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, plan};
    use expect_test::expect;

    #[test]
    fn rendered() {
        expect![[r#"
            # Managed by nodeprep (inventory: admin.passwordless_sudo = true).
            kubeadmin ALL=(ALL) NOPASSWD: ALL
        "#]]
        .assert_eq(&render("kubeadmin"));
        assert_eq!(drop_in("kubeadmin"), "/etc/sudoers.d/nodeprep-kubeadmin");
        // sudo skips names with a dot in an included directory: the candidate is never policy.
        assert!(
            candidate("kubeadmin")
                .rsplit('/')
                .next()
                .unwrap()
                .contains('.')
        );
        assert!(
            !drop_in("kubeadmin")
                .rsplit('/')
                .next()
                .unwrap()
                .contains('.')
        );
    }

    #[test]
    fn checked_then_installed() {
        let (mut cx, rec) = Fixture::photon()
            .absent(&drop_in("kubeadmin"))
            .ctx(Mode::Apply);
        assert!(passwordless(&mut cx, "kubeadmin").unwrap().changed());
        expect![[r#"
            write /etc/sudoers.d/.nodeprep-kubeadmin.candidate 0440 root:root
            run visudo -c -f /etc/sudoers.d/.nodeprep-kubeadmin.candidate
            write /etc/sudoers.d/nodeprep-kubeadmin 0440 root:root
            run rm -f /etc/sudoers.d/.nodeprep-kubeadmin.candidate
        "#]]
        .assert_eq(&plan(&cx));
        let sent = rec.commands();
        assert!(
            sent.iter().any(|c| c.display().contains("visudo -c -f")),
            "{sent:?}"
        );
        let (mut again, rec) = Fixture {
            facts: cx.facts().clone(),
            state: cx.state().clone(),
        }
        .ctx(Mode::Apply);
        assert_eq!(
            passwordless(&mut again, "kubeadmin").unwrap(),
            Change::Unchanged
        );
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn a_rejected_drop_in_never_goes_live() {
        let (mut cx, rec) = Fixture::photon()
            .absent(&drop_in("kubeadmin"))
            .ctx(Mode::Apply);
        rec.reply(
            "visudo",
            Output {
                status: Some(1),
                stdout: b"/etc/sudoers.d/.nodeprep-kubeadmin.candidate:2:27: syntax error\n"
                    .to_vec(),
                stderr: Vec::new(),
            },
        );
        let e = passwordless(&mut cx, "kubeadmin").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("visudo rejected"), "{e}");
        assert!(e.stderr_tail().contains("syntax error"), "{e}");
        expect![[r#"
            write /etc/sudoers.d/.nodeprep-kubeadmin.candidate 0440 root:root
            run visudo -c -f /etc/sudoers.d/.nodeprep-kubeadmin.candidate
            run rm -f /etc/sudoers.d/.nodeprep-kubeadmin.candidate
        "#]]
        .assert_eq(&plan(&cx));
        assert_eq!(cx.state().files[&drop_in("kubeadmin")], None);
    }

    #[test]
    fn wrong_mode_fixed_without_a_check() {
        let (mut cx, _rec) = Fixture::photon()
            .file(&drop_in("kubeadmin"), &render("kubeadmin"), 0o644)
            .ctx(Mode::Apply);
        assert!(passwordless(&mut cx, "kubeadmin").unwrap().changed());
        expect![[r#"
            run chmod 0440 /etc/sudoers.d/nodeprep-kubeadmin
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn refused_where_it_would_not_count() {
        let (mut cx, _) = Fixture::photon()
            .file(SUDOERS, "root ALL=(ALL:ALL) ALL\n", 0o440)
            .ctx(Mode::Check);
        let e = passwordless(&mut cx, "kubeadmin").unwrap_err();
        assert!(
            e.to_string().contains("does not include /etc/sudoers.d"),
            "{e}"
        );
        let (mut cx, _) = Fixture::photon().absent(SUDOERS).ctx(Mode::Check);
        let e = passwordless(&mut cx, "kubeadmin").unwrap_err();
        assert!(e.to_string().contains("sudo is not installed"), "{e}");
        let (mut cx, _) = Fixture::photon().ctx(Mode::Check);
        assert!(passwordless(&mut cx, "root").is_err());
        assert!(passwordless(&mut cx, "a b").is_err());
        assert!(cx.actions().is_empty());
        assert!(includes_drop_ins("#includedir /etc/sudoers.d\n"));
        assert!(!includes_drop_ins("## @includedir /etc/sudoers.d\n"));
    }
}
