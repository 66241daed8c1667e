//! This machine, through duct.

use std::ffi::OsString;

use super::sudo::{Sudo, Who};
use super::{Cmd, Host, Output};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// This process's user id, from /proc (std has no getuid); `u32::MAX` when it cannot be read.
pub fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

pub struct Local {
    name: String,
    /// Run commands through sudo (running as a user other than root): `sudo -n`, or the
    /// password on sudo's stdin when one is given (see [`super::sudo`]).
    sudo: Option<Sudo>,
}

impl Local {
    pub fn new(name: impl Into<String>) -> Local {
        Local {
            name: name.into(),
            sudo: None,
        }
    }

    pub fn with_sudo(mut self, sudo: bool) -> Local {
        self.sudo = sudo.then(|| Sudo::new(None));
        self
    }

    /// Through sudo, with its password (when running as a user other than root).
    pub fn with_sudo_password(mut self, password: Secret) -> Local {
        self.sudo = Some(Sudo::new(Some(password)));
        self
    }
}

impl Host for Local {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        let result = match &self.sudo {
            None => {
                let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
                spawn(&argv, cmd.stdin.as_deref())
            }
            Some(sudo) => {
                let user = std::env::var("USER").unwrap_or_else(|_| "this user".into());
                let who = Who {
                    user: &user,
                    place: "this machine",
                };
                sudo.exec(cmd, &who, &|argv, stdin| {
                    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    spawn(&argv, stdin)
                })
            }
        };
        result.map_err(|e| e.on_host(&self.name))
    }

    fn sends_secret(&self) -> bool {
        self.sudo.as_ref().is_some_and(Sudo::sends_password)
    }

    fn exec_unprivileged(&self, cmd: &Cmd) -> Result<Output> {
        let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
        spawn(&argv, cmd.stdin.as_deref()).map_err(|e| e.on_host(&self.name))
    }
}

/// Runs argv on this machine, capturing everything. Shared by the transports that drive a
/// local client program (ssh, docker).
pub(super) fn spawn(argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    spawn_env(argv, stdin, &[])
}

/// Variables of this process that no child inherits (see [`withhold_env`]).
static WITHHELD: std::sync::RwLock<Vec<OsString>> = std::sync::RwLock::new(Vec::new());

/// Keeps the variable `name` of this process out of the environment of every command
/// nodeprep starts from now on (every ssh, the kept master included; sudo, docker): the
/// variable a password was read from (`--password-env`), which a process started from this
/// one would otherwise carry, readable in its /proc/PID/environ for as long as it lives.
pub fn withhold_env(name: &str) {
    let mut list = WITHHELD.write().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|n| n == name) {
        list.push(name.into());
    }
}

/// As [`spawn`], with these variables added to the environment.
pub(super) fn spawn_env(
    argv: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, OsString)],
) -> Result<Output> {
    let withheld = WITHHELD.read().unwrap_or_else(|e| e.into_inner()).clone();
    spawn_with(argv, stdin, env, &withheld)
}

/// As [`spawn_env`], with the variables `withheld` removed from the environment.
fn spawn_with(
    argv: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, OsString)],
    withheld: &[OsString],
) -> Result<Output> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::other("empty command"))?;
    let mut expr = duct::cmd(*program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    for name in withheld {
        expr = expr.env_remove(name);
    }
    for (key, value) in env {
        expr = expr.env(key, value);
    }
    expr = match stdin {
        Some(bytes) => expr.stdin_bytes(bytes.to_vec()),
        None => expr.stdin_null(),
    };
    let out = expr.run().map_err(|e| {
        Error::new(
            ErrorKind::Unreachable,
            format!("cannot run `{program}`: {e}"),
        )
    })?;
    Ok(Output {
        status: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A withheld variable reaches no child; the others do. (HOME stands for the password's
    /// variable: setting one in a test is unsafe code.)
    #[test]
    fn withheld_variables_reach_no_child() {
        let home = std::env::var_os("HOME").expect("HOME is set");
        let show = [
            "sh",
            "-c",
            "printf '%s|%s' \"${HOME-unset}\" \"${PATH:+path}\"",
        ];
        let out = spawn_with(&show, None, &[], &[]).unwrap();
        assert_eq!(out.stdout_str(), format!("{}|path", home.to_string_lossy()));
        let out = spawn_with(&show, None, &[], &["HOME".into()]).unwrap();
        assert_eq!(out.stdout_str(), "unset|path");
        withhold_env("NODEPREP_TEST_WITHHELD");
        withhold_env("NODEPREP_TEST_WITHHELD");
        let list = WITHHELD.read().unwrap().clone();
        assert_eq!(
            list.iter()
                .filter(|n| *n == "NODEPREP_TEST_WITHHELD")
                .count(),
            1
        );
    }
}
