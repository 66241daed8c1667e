//! A container on this machine, through `docker exec`.

use super::{Cmd, Host, Output, local::spawn};
use crate::error::{Error, ErrorKind, Result};

pub struct Docker {
    name: String,
    container: String,
}

impl Docker {
    pub fn new(name: impl Into<String>, container: impl Into<String>) -> Docker {
        Docker {
            name: name.into(),
            container: container.into(),
        }
    }
}

impl Host for Docker {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        let mut argv = vec!["docker", "exec", "-i", self.container.as_str()];
        argv.extend(cmd.argv.iter().map(String::as_str));
        let out = spawn(&argv, cmd.stdin.as_deref(), cmd.time_limit())
            .map_err(|e| e.on_host(&self.name))?;
        // docker exec itself failing (no such container, not running) exits 125-127 with its
        // own message on stderr.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if matches!(out.status, Some(125..=127))
            && (stderr.contains("No such container") || stderr.contains("is not running"))
        {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("container {} unavailable", self.container),
            )
            .with_stderr(&out.stderr)
            .on_host(&self.name));
        }
        Ok(out)
    }
}
