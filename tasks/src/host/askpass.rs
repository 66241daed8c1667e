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
//! the transport does). An interrupted run (SIGINT, SIGTERM, SIGHUP) removes the files it
//! holds before it ends ([`AskpassFile`] registers each with a signal thread, installed with
//! the first file).

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

/// The password files that exist now, for the signal thread to remove.
static LIVE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Once per process: a thread that, on SIGINT, SIGTERM or SIGHUP, removes the live password
/// files, then ends the process as the signal would have.
fn remove_on_signal() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch for interruptions (the askpass file would stay): {e}");
                return;
            }
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                for path in live().drain(..) {
                    let _ = std::fs::remove_file(path);
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        });
    });
}

impl AskpassFile {
    /// Writes `password` to `dir/askpass`, created with mode 0600 (`dir` is private).
    pub fn write(dir: &Path, password: &Secret) -> Result<AskpassFile> {
        use std::os::unix::fs::OpenOptionsExt;
        remove_on_signal();
        let path = dir.join("askpass");
        let _ = std::fs::remove_file(&path);
        live().push(path.clone());
        // From here on, dropped (an error below included) means removed.
        let file = AskpassFile { path };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file.path)?;
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
        let mut live = live();
        if let Some(i) = live.iter().position(|p| *p == self.path) {
            live.swap_remove(i);
        }
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

    /// Stands for a run holding a password file when it is interrupted: started by
    /// [`an_interrupted_run_leaves_no_password_file`] (its environment names the folder), it
    /// writes one, says so, and waits to be killed. Does nothing otherwise.
    #[test]
    fn holder_of_a_password_file() {
        let Some(dir) = std::env::var_os("NODEPREP_TEST_ASKPASS_DIR") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let _f = AskpassFile::write(&dir, &Secret::new("s3cret")).unwrap();
        std::fs::write(dir.join("ready"), "").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(30));
    }

    /// SIGINT, SIGTERM or SIGHUP while the password file exists: it is removed, and the
    /// process still ends by that signal.
    #[test]
    fn an_interrupted_run_leaves_no_password_file() {
        use std::os::unix::process::ExitStatusExt;
        for (signal, number) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
            let dir = tempfile::tempdir().unwrap();
            let child = duct::cmd(
                std::env::current_exe().unwrap(),
                [
                    "host::askpass::tests::holder_of_a_password_file",
                    "--exact",
                    "--nocapture",
                ],
            )
            .env("NODEPREP_TEST_ASKPASS_DIR", dir.path())
            .stdout_null()
            .stderr_null()
            .unchecked()
            .start()
            .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !dir.path().join("ready").exists() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the holder never wrote"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let file = dir.path().join("askpass");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "s3cret");
            let pid = child.pids()[0].to_string();
            let killed = duct::cmd("kill", [format!("-{signal}"), pid])
                .run()
                .unwrap();
            assert!(killed.status.success());
            let status = child.wait().unwrap().status;
            assert_eq!(status.signal(), Some(number), "SIG{signal}: {status:?}");
            assert!(!file.exists(), "SIG{signal} left the password file");
        }
    }
}
