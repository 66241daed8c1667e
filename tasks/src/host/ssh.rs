//! The system OpenSSH client, one ControlMaster socket per host in a private temporary
//! directory, BatchMode, host-key checking on by default.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Cmd, Host, Output, local::spawn, shell_join};
use crate::error::{Error, ErrorKind, Result};

/// How to reach one host.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Inventory name, used in messages.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file to check host keys against (the user's default when `None`).
    pub known_hosts: Option<PathBuf>,
    /// `false` only when the operator asked for it: accept a new host key on first contact.
    pub accept_new_host_key: bool,
    /// Prefer the curve25519 key exchange (about 70 ms less per connection than OpenSSH's
    /// default post-quantum hybrid); the hybrid stays offered after it.
    pub prefer_fast_kex: bool,
    pub connect_timeout_secs: u32,
}

impl SshConfig {
    pub fn new(name: &str, address: &str) -> SshConfig {
        SshConfig {
            name: name.to_string(),
            address: address.to_string(),
            port: 22,
            user: "root".to_string(),
            identity_file: None,
            known_hosts: None,
            accept_new_host_key: false,
            prefer_fast_kex: true,
            connect_timeout_secs: 10,
        }
    }
}

pub struct Ssh {
    cfg: SshConfig,
    control_dir: tempfile::TempDir,
    invocations: AtomicU32,
}

impl Ssh {
    pub fn new(cfg: SshConfig) -> Result<Ssh> {
        // Unix socket paths are limited to ~108 bytes: keep the directory short.
        let control_dir = tempfile::Builder::new().prefix("np-").tempdir_in("/tmp")?;
        Ok(Ssh {
            cfg,
            control_dir,
            invocations: AtomicU32::new(0),
        })
    }

    /// How many times the ssh client was run (each over the one master connection).
    pub fn invocations(&self) -> u32 {
        self.invocations.load(Ordering::Relaxed)
    }

    fn base_args(&self) -> Vec<String> {
        let c = &self.cfg;
        let control = self.control_dir.path().join("cm");
        let mut a: Vec<String> = vec![
            "ssh".into(),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}", control.display()),
            "-o".into(),
            "ControlPersist=120".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", c.connect_timeout_secs),
            "-o".into(),
            "ServerAliveInterval=15".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            format!(
                "StrictHostKeyChecking={}",
                if c.accept_new_host_key {
                    "accept-new"
                } else {
                    "yes"
                }
            ),
        ];
        if c.prefer_fast_kex {
            a.extend(["-o".into(), "KexAlgorithms=^curve25519-sha256".into()]);
        }
        if let Some(kh) = &c.known_hosts {
            a.extend(["-o".into(), format!("UserKnownHostsFile={}", kh.display())]);
        }
        if let Some(id) = &c.identity_file {
            a.extend([
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                id.display().to_string(),
            ]);
        }
        a.extend([
            "-p".into(),
            c.port.to_string(),
            "-l".into(),
            c.user.clone(),
            c.address.clone(),
        ]);
        a
    }

    fn remote_command(&self, cmd: &Cmd) -> String {
        let body = shell_join(&cmd.argv);
        if self.cfg.user == "root" {
            body
        } else {
            format!("sudo -n -- {body}")
        }
    }
}

impl Host for Ssh {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let mut argv = self.base_args();
        argv.push("--".into());
        argv.push(self.remote_command(cmd));
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = spawn(&refs, cmd.stdin.as_deref()).map_err(|e| e.on_host(&self.cfg.name))?;
        if out.status == Some(255) {
            return Err(connection_error(&self.cfg, &out).on_host(&self.cfg.name));
        }
        if self.cfg.user != "root" && out.status == Some(1) {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("sudo:")
                && (err.contains("password is required") || err.contains("a terminal is required"))
            {
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    format!(
                        "sudo on {} asks {} for a password; nodeprep needs passwordless sudo (NOPASSWD) for that user",
                        self.cfg.address, self.cfg.user
                    ),
                )
                .with_stderr(&out.stderr)
                .on_host(&self.cfg.name));
            }
        }
        Ok(out)
    }

    fn close(&self) {
        let mut argv = self.base_args();
        let dest = argv.pop().unwrap_or_default();
        argv.extend(["-O".into(), "exit".into(), dest]);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let _ = spawn(&refs, None);
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if self.control_dir.path().join("cm").exists() {
            self.close();
        }
    }
}

/// ssh exits 255 when the connection itself failed; say why in an operator's words.
fn connection_error(cfg: &SshConfig, out: &Output) -> Error {
    let err = String::from_utf8_lossy(&out.stderr);
    let target = format!("{}@{}", cfg.user, host_port(&cfg.address, cfg.port));
    let message = if err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || err.contains("Host key verification failed")
    {
        if err.contains("HAS CHANGED") {
            format!(
                "host key of {target} has changed: refusing to connect. If the host was reinstalled, remove its old key with `ssh-keygen -R '{}'{}` and run again",
                known_hosts_name(&cfg.address, cfg.port),
                cfg.known_hosts
                    .as_ref()
                    .map(|p| format!(" -f {}", p.display()))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "host key of {target} is not in {}: add it (ssh-keyscan) or set `ssh.accept_new_host_keys = true` in the inventory",
                cfg.known_hosts
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "known_hosts".into())
            )
        }
    } else if err.contains("Permission denied") {
        format!("ssh authentication refused by {target}")
    } else if err.contains("timed out") {
        format!("ssh connection to {target} timed out")
    } else if err.contains("Connection refused") {
        format!("ssh connection to {target} refused")
    } else {
        format!("cannot reach {target} over ssh")
    };
    Error::new(ErrorKind::Unreachable, message).with_stderr(&out.stderr)
}

/// `address:port` for messages; an IPv6 address in brackets (`[fd00::5]:22`).
fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// The name OpenSSH files a host's key under in known_hosts (what `ssh-keygen -R` takes): the
/// bare address on port 22, `[address]:port` on any other.
fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    /// OpenSSH takes a bare IPv6 address as the destination, the port given apart (-p).
    #[test]
    fn ipv6_destination_is_bare_with_its_port_apart() {
        let mut cfg = SshConfig::new("prdk8swok501", "fd00:10::57");
        cfg.port = 2222;
        let args = Ssh::new(cfg).unwrap().base_args();
        assert_eq!(
            args[args.len() - 5..],
            ["-p", "2222", "-l", "root", "fd00:10::57"]
        );
    }

    #[test]
    fn messages_name_the_host_as_openssh_does() {
        let out = |stderr: &str| Output {
            status: Some(255),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let changed = out("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@");
        let mut cfg = SshConfig::new("h", "fd00:10::57");
        cfg.port = 2222;
        let e = connection_error(&cfg, &changed);
        assert!(e.message().contains("root@[fd00:10::57]:2222"), "{e}");
        assert!(
            e.message().contains("ssh-keygen -R '[fd00:10::57]:2222'"),
            "{e}"
        );
        cfg.port = 22;
        let e = connection_error(&cfg, &changed);
        assert!(e.message().contains("ssh-keygen -R 'fd00:10::57'"), "{e}");
        let cfg = SshConfig::new("h", "192.168.10.57");
        let e = connection_error(
            &cfg,
            &out("ssh: connect to host 192.168.10.57 port 22: Connection refused"),
        );
        assert!(e.message().contains("root@192.168.10.57:22 refused"), "{e}");
        let e = connection_error(&cfg, &changed);
        assert!(e.message().contains("ssh-keygen -R '192.168.10.57'"), "{e}");
    }
}
