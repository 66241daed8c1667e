//! This machine, through duct.

use super::{Cmd, Host, Output};
use crate::error::{Error, ErrorKind, Result};

pub struct Local {
    name: String,
    /// Prefix commands with `sudo -n --` (running as a user other than root).
    sudo: bool,
}

impl Local {
    pub fn new(name: impl Into<String>) -> Local {
        Local {
            name: name.into(),
            sudo: false,
        }
    }

    pub fn with_sudo(mut self, sudo: bool) -> Local {
        self.sudo = sudo;
        self
    }
}

impl Host for Local {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        let mut argv: Vec<&str> = Vec::new();
        if self.sudo {
            argv.extend(["sudo", "-n", "--"]);
        }
        argv.extend(cmd.argv.iter().map(String::as_str));
        spawn(&argv, cmd.stdin.as_deref()).map_err(|e| e.on_host(&self.name))
    }
}

/// Runs argv on this machine, capturing everything. Shared by the transports that drive a
/// local client program (ssh, docker).
pub(super) fn spawn(argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::other("empty command"))?;
    let mut expr = duct::cmd(*program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
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
