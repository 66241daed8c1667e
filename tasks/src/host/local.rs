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
}

/// Runs argv on this machine, capturing everything. Shared by the transports that drive a
/// local client program (ssh, docker).
pub(super) fn spawn(argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    spawn_env(argv, stdin, &[])
}

/// As [`spawn`], with these variables added to the environment.
pub(super) fn spawn_env(
    argv: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, OsString)],
) -> Result<Output> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::other("empty command"))?;
    let mut expr = duct::cmd(*program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
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
