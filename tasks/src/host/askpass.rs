//! The ssh password, given to OpenSSH through its askpass mechanism.
//!
//! OpenSSH reads a password only from a terminal or from an askpass program (`SSH_ASKPASS`,
//! forced with `SSH_ASKPASS_REQUIRE=force`), which it runs with the prompt as its one argument
//! and whose stdout is the answer. nodeprep's own binary is that program: started with
//! [`FILE_ENV`] in its environment it answers a password prompt with the contents of the file
//! named there, and does nothing else ([`answer_if_asked`], the first thing `main` calls).
//!
//! Why a file, and which one: the secret cannot go on argv (world-readable in /proc), and an
//! environment variable would be copied into the ssh master that `ControlPersist` keeps in the
//! background for the whole run (readable in /proc/PID/environ by the same user) and into
//! everything ssh starts. An inherited pipe would be better still, but std opens every
//! descriptor close-on-exec and handing one down to a grandchild (ssh's askpass child) needs
//! `pre_exec`, which is unsafe code, forbidden in this workspace. So the password is written,
//! mode 0600, into the transport's private 0700 directory (the one that holds the
//! ControlMaster socket) only for the ssh invocation that opens the connection, and removed as
//! soon as that invocation returns (`AskpassFile` removes it on drop; the directory goes when
//! the transport does).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::secret::Secret;

/// Names the file holding the password, in the askpass program's environment.
pub const FILE_ENV: &str = "NODEPREP_ASKPASS_FILE";

/// When this process was started by ssh as its askpass program (the transport's environment:
/// [`FILE_ENV`] and `SSH_ASKPASS_REQUIRE`), answers the prompt on stdout and returns the exit
/// status to end with; `None` otherwise (an ordinary start).
pub fn answer_if_asked() -> Option<u8> {
    let file = std::env::var_os(FILE_ENV)?;
    std::env::var_os("SSH_ASKPASS_REQUIRE")?;
    let prompt = std::env::args().nth(1).unwrap_or_default();
    Some(answer(
        Path::new(&file),
        &prompt,
        &mut std::io::stdout().lock(),
    ))
}

/// Writes the password in `file` to `out` if `prompt` asks for the login password; 1 (ssh
/// then takes the prompt as cancelled) for anything else: a key's passphrase, a PIN, a host
/// key question, a new password for an expired one.
pub fn answer(file: &Path, prompt: &str, out: &mut dyn Write) -> u8 {
    if !is_password_prompt(prompt) {
        return 1;
    }
    let Ok(mut password) = std::fs::read(file) else {
        return 1;
    };
    password.push(b'\n');
    let written = out.write_all(&password).and_then(|()| out.flush());
    password.fill(0);
    u8::from(written.is_err())
}

/// `user@host's password: ` (password authentication) or `(user@host) Password: ` (PAM's
/// keyboard-interactive prompt), but not a new or current password of an expired account.
fn is_password_prompt(prompt: &str) -> bool {
    let p = prompt.to_lowercase();
    p.contains("password") && !p.contains("new") && !p.contains("current")
}

/// The password file of one ssh invocation; removed on drop.
#[derive(Debug)]
pub(crate) struct AskpassFile {
    path: PathBuf,
}

impl AskpassFile {
    /// Writes `password` to `dir/askpass`, created with mode 0600 (`dir` is private).
    pub fn write(dir: &Path, password: &Secret) -> Result<AskpassFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("askpass");
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let file = AskpassFile { path };
        f.write_all(password.expose().as_bytes())?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AskpassFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn answers_password_prompts_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = AskpassFile::write(dir.path(), &Secret::new("s3cret")).unwrap();
        let ask = |prompt: &str| {
            let mut out = Vec::new();
            let code = answer(f.path(), prompt, &mut out);
            (code, String::from_utf8(out).unwrap())
        };
        assert_eq!(
            ask("kubeadmin@10.0.0.1's password: "),
            (0, "s3cret\n".into())
        );
        assert_eq!(
            ask("(kubeadmin@10.0.0.1) Password: "),
            (0, "s3cret\n".into())
        );
        for other in [
            "Enter passphrase for key '/root/.ssh/id_ed25519': ",
            "Enter PIN for ECDSA-SK key: ",
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
            "(kubeadmin@10.0.0.1) New password: ",
            "(kubeadmin@10.0.0.1) Current password: ",
        ] {
            assert_eq!(ask(other), (1, String::new()), "{other}");
        }
    }

    #[test]
    fn the_file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = AskpassFile::write(dir.path(), &Secret::new("s3cret")).unwrap();
        let path = f.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret");
        drop(f);
        assert!(!path.exists());
        let mut out = Vec::new();
        assert_eq!(answer(&path, "x's password: ", &mut out), 1);
        assert!(out.is_empty());
    }
}
