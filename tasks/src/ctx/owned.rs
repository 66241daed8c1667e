//! Files in a directory a user other than root owns (a home directory, `~/.ssh`): the work
//! there is done as that user (`runuser -u USER --`), so that the kernel's own permission
//! checks apply and the run does nothing there the user could not do. A link the user leaves
//! where a file is expected is read as a link (the probe's `stat` follows none) and refused;
//! a link that appears later is met by a process of the user's, which has no more rights
//! through it than the user has.
//!
//! Root acts there in one way only: `chown -h` (never following a link) of a directory or
//! file the probe saw as one, to give it to its user; the mode is then set by the user.

use super::{Action, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::host::Cmd;
use crate::state::{self, Probe};

/// `argv` run as `user` (util-linux's `runuser`, on every supported OS, Photon's minimal
/// install included).
pub fn as_user(user: &str, argv: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["runuser", "-u", user, "--"].map(String::from).to_vec();
    v.extend(argv.iter().map(|a| a.to_string()));
    v
}

impl Ctx {
    /// Reads into the cache, in one round trip as `user`, those of `paths` it does not know
    /// yet: files in `user`'s own directories. Read so, a link there reads as a link, and
    /// nothing the user may not read is read.
    pub fn prefetch_as(&mut self, user: &str, paths: &[&str]) -> Result<()> {
        check_user(user)?;
        for p in paths {
            self.as_user.insert(p.to_string(), user.to_string());
        }
        let missing = self.unknown_files(paths);
        if missing.is_empty() {
            return Ok(());
        }
        let probe = Probe::default().files(&missing);
        let script = state::files_script(&missing);
        let argv = as_user(user, &["sh", "-s"]);
        let cmd = Cmd::new(&argv).stdin(script);
        let out = self.send(&cmd, false)?;
        if !out.success() {
            // A check run that plans the account's creation: it does not exist yet, nor do
            // its files.
            if self.check_mode() && String::from_utf8_lossy(&out.stderr).contains("does not exist")
            {
                for path in missing {
                    self.state.files.insert(path.to_string(), None);
                }
                return Ok(());
            }
            return Err(crate::host::command_failed(&cmd, &out).on_host(self.host.name()));
        }
        self.files_read(&missing, &probe, &out)
    }

    /// As [`Ctx::apply`], run as `user`.
    pub fn apply_as(&mut self, user: &str, argv: &[&str]) -> Result<Option<crate::host::Output>> {
        check_user(user)?;
        let argv = as_user(user, argv);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.apply(&refs)
    }

    /// As [`Ctx::write_file`], written by `user` in a directory of theirs: the temporary file
    /// is the user's, so no chown; the file is then owned by the user and their primary group
    /// (`group`, as the cache records it). Not backed up under /var/backups (the user may
    /// change it at will).
    pub fn write_file_as(
        &mut self,
        user: &str,
        path: &str,
        content: &[u8],
        mode: u32,
        group: &str,
    ) -> Result<()> {
        check_user(user)?;
        super::write::check_path(path)?;
        self.as_user.insert(path.to_string(), user.to_string());
        self.record_action(Action::Write {
            path: path.into(),
            mode,
            owner: user.into(),
            group: group.into(),
        });
        if !self.check_mode() {
            let mode_s = format!("{mode:04o}");
            let size = content.len().to_string();
            let argv = as_user(
                user,
                &[
                    "sh",
                    "-c",
                    super::write::WRITE_SCRIPT,
                    "nodeprep-write",
                    path,
                    &mode_s,
                    "",
                    "",
                    "",
                    &size,
                ],
            );
            let cmd = Cmd::new(&argv).stdin(content.to_vec());
            self.lock_before_change()?;
            self.send(&cmd, true)?;
        }
        self.written(path, content, mode, user, group);
        Ok(())
    }
}

/// A user name as `runuser` takes it; root is no user to act as.
fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user == "root" || user.starts_with('-') || user.contains(['/', '\n', ' '])
    {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("{user:?} is not a user to act as"),
        ));
    }
    Ok(())
}
