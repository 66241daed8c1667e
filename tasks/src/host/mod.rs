//! The `Host` layer: the only place in nodeprep that spawns processes for a target. A command is
//! an argv vector (never a shell string); transports quote it for the remote shell.
//!
//! Transports: [`Local`] (this machine), [`Ssh`] (the system OpenSSH client with one
//! ControlMaster socket per host), [`Docker`] (`docker exec`); each bounds a command's time
//! ([`Cmd::time_limit`]) and the output it keeps ([`OUTPUT_CAP`]). The test doubles (a host
//! that records, a simulated one) live apart, in `crate::testing`.
//!
//! A login user other than root runs commands through sudo ([`sudo`]); a login password reaches
//! OpenSSH through nodeprep's askpass program ([`askpass`]).

pub mod askpass;
mod docker;
mod local;
mod ssh;
pub mod sudo;

pub use docker::Docker;
pub use local::{Local, current_uid, withhold_env};
pub use ssh::{Ssh, SshConfig};

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::shell::shell_join;

/// A command to run on a host: argv and optional stdin (secrets travel on stdin, never argv).
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    /// How long the command may run before it is stopped ([`DEFAULT_TIMEOUT`] when `None`).
    pub timeout: Option<Duration>,
}

/// The time limit of a command that names none (the engine gives every command the run's:
/// `[timeouts]` in the inventory).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The time limit of a package transaction (downloads, maybe through a proxy).
pub const DEFAULT_PACKAGE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The most of a command's stdout, and of its stderr, kept: past it the command is stopped
/// and fails (the probe's reply is far smaller: each file it reads is at most
/// `state::FILE_CAP`).
pub const OUTPUT_CAP: usize = 32 << 20;

impl Cmd {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Cmd {
        Cmd {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            stdin: None,
            timeout: None,
        }
    }

    /// With this time limit.
    pub fn timeout(mut self, limit: Duration) -> Cmd {
        self.timeout = Some(limit);
        self
    }

    /// The command's time limit.
    pub fn time_limit(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// The command as a shell would read it; stdin is never shown.
    pub fn display(&self) -> String {
        shell_join(&self.argv)
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())?;
        if self.stdin.is_some() {
            f.write_str(" <stdin>")?;
        }
        Ok(())
    }
}

/// What a command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        // Checked at once as UTF-8 (the usual case, a probe's reply of tens of kilobytes);
        // only invalid bytes take the slower lossy path.
        match std::str::from_utf8(&self.stdout) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(&self.stdout).into_owned(),
        }
    }
}

/// A machine commands can be run on.
pub trait Host: Send + Sync {
    /// The inventory name of the host.
    fn name(&self) -> &str;

    /// Runs `cmd`. `Ok` whatever the exit status; `Err` only when the command could not be
    /// run at all (transport failure: unreachable, authentication, host key).
    fn exec(&self, cmd: &Cmd) -> Result<Output>;

    /// Runs `cmd` and fails unless it exits 0, with an error naming host, command and stderr.
    fn run(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.exec(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(command_failed(cmd, &out).on_host(self.name()))
        }
    }

    /// Whether the first command run as root would carry a secret of the run (sudo's password):
    /// then the host proves who it is first, by a command run as the login user
    /// ([`Host::exec_unprivileged`]), and the secret goes only to a host that did.
    fn sends_secret(&self) -> bool {
        false
    }

    /// Runs `cmd` as the login user, without sudo (what reading a host's identity needs: its
    /// name, addresses and machine-id are no secret). The same as [`Host::exec`] when the login
    /// user is root.
    fn exec_unprivileged(&self, cmd: &Cmd) -> Result<Output> {
        self.exec(cmd)
    }

    /// Releases connections (ssh ControlMaster). Called by the runner at the end of a run.
    fn close(&self) {}

    /// A real host, whose files can be read again. `false` for a recorded host (tests),
    /// whose recorded state is the whole truth.
    fn live(&self) -> bool {
        true
    }
}

pub(crate) fn command_failed(cmd: &Cmd, out: &Output) -> Error {
    let status = match out.status {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    Error::new(
        ErrorKind::Command,
        format!("`{}` failed ({status})", short(&cmd.display())),
    )
    .with_stderr(&out.stderr)
}

/// Long commands (inline scripts) are cut in messages.
fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.len() > 160 || s.contains('\n') {
        let cut: String = first.chars().take(160).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

impl<H: Host + ?Sized> Host for std::sync::Arc<H> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        (**self).exec(cmd)
    }

    fn sends_secret(&self) -> bool {
        (**self).sends_secret()
    }

    fn exec_unprivileged(&self, cmd: &Cmd) -> Result<Output> {
        (**self).exec_unprivileged(cmd)
    }

    fn close(&self) {
        (**self).close()
    }

    fn live(&self) -> bool {
        (**self).live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_text_invalid_bytes_replaced() {
        let out = |b: &[u8]| Output {
            stdout: b.to_vec(),
            ..Default::default()
        };
        assert_eq!(out("é ok\n".as_bytes()).stdout_str(), "é ok\n");
        assert_eq!(out(b"a\xffb").stdout_str(), "a\u{fffd}b");
    }
}
