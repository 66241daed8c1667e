//! What the lab containers ([`super::lab::Lab`]) and the VM ([`super::vm::Vm`]) have in common:
//! hosts that answer ssh as root on loopback ports, logged into with a throwaway key and checked
//! against a known_hosts file that pins each host's key; an inventory that reaches them; a
//! command or a file read on one host. Tests, the demo and the bench drive either through
//! [`Testbed`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use xshell::{Shell, cmd};

/// One host of a testbed, standing for one inventory host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Inventory host name; also the machine's hostname.
    pub name: String,
    pub role: String,
    /// Loopback port forwarded to the host's port 22.
    pub ssh_port: u16,
}

/// Hosts reachable over ssh on 127.0.0.1, as root, with [`Testbed::identity_file`] and
/// [`Testbed::known_hosts`].
pub trait Testbed {
    /// The hosts, in the order they were asked for.
    fn hosts(&self) -> &[Host];

    /// Directory holding known_hosts and the inventory; removed when the testbed is dropped.
    fn dir(&self) -> &Path;

    /// Private key root logs in with on every host.
    fn identity_file(&self) -> &Path;

    /// Runs `argv` as root on `host`; a non-zero exit is not an error.
    fn exec(&self, host: &str, argv: &[&str]) -> Result<Output>;

    /// An error about `host`, with what the testbed can tell about it.
    fn fail(&self, host: &str, what: String) -> anyhow::Error {
        anyhow!("on {host}: {what}")
    }

    /// The host called `name`; panics if there is none (a bug in the caller).
    fn host(&self, name: &str) -> &Host {
        self.hosts()
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no testbed host named {name:?}"))
    }

    /// One line per host: `[127.0.0.1]:PORT KEY` (see [`known_hosts_line`]).
    fn known_hosts(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// Writes `inventory.toml` in [`Testbed::dir`]: the `[ssh]` table, one `[hosts.NAME]` table
    /// per host, then `extra` (more TOML) verbatim. Returns its path.
    fn write_inventory(&self, extra: &str) -> Result<PathBuf> {
        let mut text = String::new();
        writeln!(text, "[ssh]")?;
        writeln!(text, "user = \"root\"")?;
        writeln!(text, "identity_file = {}", toml_str(self.identity_file()))?;
        writeln!(text, "known_hosts = {}", toml_str(&self.known_hosts()))?;
        for host in self.hosts() {
            writeln!(text, "\n[hosts.{}]", host.name)?;
            writeln!(text, "role = \"{}\"", host.role)?;
            writeln!(text, "address = \"127.0.0.1\"")?;
            writeln!(text, "port = {}", host.ssh_port)?;
        }
        if !extra.is_empty() {
            text.push('\n');
            text.push_str(extra);
            if !extra.ends_with('\n') {
                text.push('\n');
            }
        }
        let path = self.dir().join("inventory.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// How nodeprep's own ssh transport reaches `host`.
    fn ssh_config(&self, host: &str) -> tasks::host::SshConfig {
        let mut cfg = tasks::host::SshConfig::new(host, "127.0.0.1");
        cfg.port = self.host(host).ssh_port;
        cfg.identity_file = Some(self.identity_file().to_path_buf());
        cfg.known_hosts = Some(self.known_hosts());
        cfg
    }

    /// Logs into `host` with OpenSSH and runs `script` there (a shell command line); a non-zero
    /// exit is not an error. Killed after `timeout`.
    fn ssh(&self, host: &str, script: &str, timeout: Duration) -> Result<Output> {
        let port = self.host(host).ssh_port;
        let expr = ssh_command(self.identity_file(), &self.known_hosts(), port, 10, script);
        output_within(&expr, timeout)
            .with_context(|| format!("`{script}` on {host} (127.0.0.1:{port})"))
    }

    /// Runs `script` with `sh -c` on `host`; fails (with its output) on a non-zero exit.
    /// Returns stdout.
    fn sh(&self, host: &str, script: &str) -> Result<String> {
        let out = self
            .exec(host, &["sh", "-c", script])
            .map_err(|e| self.fail(host, format!("{e:#}")))?;
        if !out.status.success() {
            return Err(self.fail(
                host,
                format!(
                    "`sh -c {script:?}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Contents of `path` on `host`, or `None` if it can't be read.
    fn read_file(&self, host: &str, path: &str) -> Option<String> {
        let out = self.exec(host, &["cat", "--", path]).ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Makes an ed25519 key pair without a passphrase at `key` (and `key`.pub). Returns the public
/// key's path.
pub fn keygen(sh: &Shell, key: &Path, comment: &str) -> Result<PathBuf> {
    cmd!(sh, "ssh-keygen -t ed25519 -N '' -q -C {comment} -f {key}")
        .quiet()
        .run()
        .context("ssh-keygen failed (is openssh-client installed?)")?;
    let mut public = key.as_os_str().to_owned();
    public.push(".pub");
    Ok(PathBuf::from(public))
}

/// The known_hosts line for a host key (`ssh-ed25519 AAAA... [comment]`, as in
/// `ssh_host_ed25519_key.pub`) served on 127.0.0.1:`port`.
pub fn known_hosts_line(port: u16, host_key: &str) -> String {
    let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
    format!("[127.0.0.1]:{port} {}\n", key.join(" "))
}

/// `ssh` as root to 127.0.0.1:`port` with `identity` only, the host key checked against
/// `known_hosts` (no other file, no prompt), running `script`; stdin empty, output captured, a
/// non-zero exit not an error.
pub fn ssh_command(
    identity: &Path,
    known_hosts: &Path,
    port: u16,
    connect_timeout_secs: u32,
    script: &str,
) -> duct::Expression {
    let known = format!("UserKnownHostsFile={}", known_hosts.display());
    let connect = format!("ConnectTimeout={connect_timeout_secs}");
    let port = port.to_string();
    let options = [
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=yes",
        &known,
        &connect,
        "ServerAliveInterval=5",
        "ServerAliveCountMax=6",
        "LogLevel=ERROR",
    ];
    let mut args: Vec<std::ffi::OsString> = vec!["-F".into(), "/dev/null".into()];
    for option in options {
        args.extend(["-o".into(), option.into()]);
    }
    args.extend([
        "-i".into(),
        identity.as_os_str().to_owned(),
        "-p".into(),
        port.into(),
        "root@127.0.0.1".into(),
        "--".into(),
        script.into(),
    ]);
    duct::cmd("ssh", args)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
}

/// Runs `expr` and returns its output, or kills it and fails once `timeout` has passed.
pub fn output_within(expr: &duct::Expression, timeout: Duration) -> Result<Output> {
    let handle = expr.start()?;
    match handle.wait_timeout(timeout)? {
        Some(out) => Ok(out.clone()),
        None => {
            let _ = handle.kill();
            let _ = handle.wait();
            bail!("still running after {timeout:?}")
        }
    }
}

/// A TOML basic string for a path.
fn toml_str(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
