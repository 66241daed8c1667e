//! The system OpenSSH client, one ControlMaster connection per host, host-key checking on by
//! default. The master outlives the run for [`SshConfig::persist_secs`] (its socket in a
//! private per-user directory, [`persist_dir`]), so a run soon after reuses it and skips the
//! login; with 0 it is closed at the end of the run (its socket in a private temporary
//! directory). `BatchMode` unless a password is given: then
//! OpenSSH gets it from nodeprep's askpass program ([`super::askpass`]), only for the
//! invocation that opens the connection. A login user other than root runs commands through
//! sudo ([`super::sudo`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::askpass::{self, AskpassFile};
use super::sudo::{Sudo, Who};
use super::{Cmd, Host, Output, current_uid, local::spawn_env};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use crate::shell::shell_join;

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
    /// The login password (ssh password or keyboard-interactive authentication); `BatchMode`
    /// is on when there is none.
    pub password: Option<Secret>,
    /// sudo's password for a login user other than root; without one, sudo must ask none.
    pub sudo_password: Option<Secret>,
    /// The askpass program OpenSSH runs for the password: a binary that calls
    /// [`askpass::answer_if_asked`] first thing (the running executable when `None`).
    pub askpass_program: Option<PathBuf>,
    /// How long the connection stays open after the run (seconds) for the next run to reuse;
    /// 0 closes it at the end of the run. A reused connection skips the login, and with it the
    /// host key check, which happened when it was made.
    pub persist_secs: u32,
    /// Close a kept connection first: this run logs in anew (and checks the host key).
    pub fresh: bool,
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
            password: None,
            sudo_password: None,
            askpass_program: None,
            persist_secs: 0,
            fresh: false,
        }
    }

    /// What tells one kept connection from another: user, address, port, and the identity and
    /// known_hosts files (a different key file, or another set of trusted host keys, is
    /// another connection).
    fn connection_key(&self) -> String {
        let text = format!(
            "{}\0{}\0{}\0{}\0{}",
            self.user,
            self.address,
            self.port,
            self.identity_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            self.known_hosts
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        // A short, stable name (socket paths are limited to ~108 bytes).
        format!("{:016x}", crate::hash::fnv1a64(text.as_bytes()))
    }
}

/// The directory of kept connections: `$XDG_RUNTIME_DIR/nodeprep` when the session has one
/// of its own ([`is_runtime_dir`]), else `/tmp/nodeprep-UID`; created 0700, and refused unless
/// it is this user's own and private (a socket there is a logged-in shell on every host).
pub fn persist_dir() -> Result<PathBuf> {
    let uid = current_uid();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) if is_runtime_dir(std::path::Path::new(&d), uid) => {
            PathBuf::from(d).join("nodeprep")
        }
        _ => PathBuf::from(format!("/tmp/nodeprep-{uid}")),
    };
    private_dir(dir, uid)
}

/// `XDG_RUNTIME_DIR` as the session's own: a directory (not a link to one) of user `uid`,
/// mode 0700. Anything else (a variable inherited from another user's session, a shared
/// directory) is not used.
fn is_runtime_dir(dir: &std::path::Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o7777 == 0o700)
}

/// `dir`, created 0700 when missing; refused unless it is a directory of user `uid` that no
/// one else may enter.
fn private_dir(dir: PathBuf, uid: u32) -> Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::create_dir(&dir) {
        Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::other(format!(
                "cannot create {} for kept ssh connections: {e}",
                dir.display()
            )));
        }
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "{} is not a private directory of this user (owner uid {}, mode {:o}): not keeping ssh connections there; remove it, or set ssh.persist = 0",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(dir)
}

/// Variables added to an ssh invocation's environment.
type Env = Vec<(&'static str, std::ffi::OsString)>;

pub struct Ssh {
    cfg: SshConfig,
    /// Private (0700): the askpass file while a connection opens, and the ControlMaster socket
    /// of a connection that is not kept.
    control_dir: tempfile::TempDir,
    /// The ControlMaster socket.
    control: PathBuf,
    invocations: AtomicU32,
    sudo: Sudo,
    /// The askpass program, resolved once (with a password only).
    askpass_program: Option<PathBuf>,
}

impl Ssh {
    pub fn new(cfg: SshConfig) -> Result<Ssh> {
        // Unix socket paths are limited to ~108 bytes: keep the directory short.
        // Private: it holds the askpass file while a connection opens.
        use std::os::unix::fs::PermissionsExt;
        let control_dir = tempfile::Builder::new()
            .prefix("np-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in("/tmp")?;
        let askpass_program = match (&cfg.password, &cfg.askpass_program) {
            (None, _) => None,
            (Some(_), Some(p)) => Some(p.clone()),
            (Some(_), None) => Some(std::env::current_exe().map_err(|e| {
                Error::other(format!(
                    "cannot find nodeprep's own executable (the askpass program for the ssh password): {e}"
                ))
            })?),
        };
        let sudo = Sudo::new(cfg.sudo_password.clone());
        let control = if cfg.persist_secs > 0 {
            persist_dir()?.join(cfg.connection_key())
        } else {
            control_dir.path().join("cm")
        };
        let ssh = Ssh {
            cfg,
            control_dir,
            control,
            invocations: AtomicU32::new(0),
            sudo,
            askpass_program,
        };
        if ssh.cfg.fresh && ssh.control.exists() {
            tracing::debug!(host = %ssh.cfg.name, "closing the kept connection (--fresh)");
            ssh.exit_master();
        }
        Ok(ssh)
    }

    /// Asks the master connection to exit (nothing happens when none runs).
    fn exit_master(&self) {
        let mut argv = self.base_args();
        let dest = argv.pop().unwrap_or_default();
        argv.extend(["-O".into(), "exit".into(), dest]);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let _ = spawn_env(&refs, None, &[], std::time::Duration::from_secs(30));
    }

    /// Whether this run leaves its connection open for the next one.
    pub fn keeps_connection(&self) -> bool {
        self.cfg.persist_secs > 0
    }

    /// How many times the ssh client was run (each over the one master connection).
    pub fn invocations(&self) -> u32 {
        self.invocations.load(Ordering::Relaxed)
    }

    fn base_args(&self) -> Vec<String> {
        let c = &self.cfg;
        let mut a: Vec<String> = vec![
            "ssh".into(),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}", self.control.display()),
            "-o".into(),
            // Not kept: the master outlives a command for the run's next one; `close` ends it.
            format!(
                "ControlPersist={}",
                if c.persist_secs > 0 {
                    c.persist_secs
                } else {
                    120
                }
            ),
            "-o".into(),
            format!(
                "BatchMode={}",
                if c.password.is_some() { "no" } else { "yes" }
            ),
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
        if c.password.is_some() {
            // One try: a wrong password must not count against sshd's MaxAuthTries (Photon: 4)
            // or a PAM lockout more than once per run.
            a.extend([
                "-o".into(),
                "NumberOfPasswordPrompts=1".into(),
                "-o".into(),
                "PreferredAuthentications=publickey,keyboard-interactive,password".into(),
            ]);
        }
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

    /// The environment of an ssh invocation: with a password, the askpass program, and the
    /// password file when this invocation opens the connection (no master socket yet).
    fn askpass_env(&self) -> Result<(Env, Option<AskpassFile>)> {
        let (Some(password), Some(program)) = (&self.cfg.password, &self.askpass_program) else {
            return Ok((Vec::new(), None));
        };
        let mut env = vec![
            ("SSH_ASKPASS", program.clone().into_os_string()),
            ("SSH_ASKPASS_REQUIRE", "force".into()),
        ];
        let file = if self.control.exists() {
            None
        } else {
            let f = AskpassFile::write(self.control_dir.path(), password)?;
            env.push((askpass::FILE_ENV, f.path().as_os_str().to_owned()));
            Some(f)
        };
        Ok((env, file))
    }

    /// Runs `argv` on the host as the login user, `stdin` on its stdin.
    fn send(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<Output> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let mut args = self.base_args();
        args.push("--".into());
        args.push(shell_join(argv));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (env, file) = self.askpass_env()?;
        let out = spawn_env(&refs, stdin, &env, timeout);
        // The connection is open (or failed): the password file goes now.
        drop(file);
        let out = out?;
        if out.status == Some(255) {
            return Err(connection_error(&self.cfg, &out));
        }
        Ok(out)
    }
}

impl Host for Ssh {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn exec(&self, cmd: &Cmd) -> Result<Output> {
        let result = if self.cfg.user == "root" {
            self.send(&cmd.argv, cmd.stdin.as_deref(), cmd.time_limit())
        } else {
            let who = Who {
                user: &self.cfg.user,
                place: &self.cfg.address,
            };
            self.sudo.exec(cmd, &who, &|argv, stdin| {
                self.send(argv, stdin, cmd.time_limit())
            })
        };
        result.map_err(|e| e.on_host(&self.cfg.name))
    }

    fn sends_secret(&self) -> bool {
        self.cfg.user != "root" && self.sudo.sends_password()
    }

    fn exec_unprivileged(&self, cmd: &Cmd) -> Result<Output> {
        self.send(&cmd.argv, cmd.stdin.as_deref(), cmd.time_limit())
            .map_err(|e| e.on_host(&self.cfg.name))
    }

    /// Ends the master connection, unless it is kept for the next run.
    fn close(&self) {
        if !self.keeps_connection() {
            self.exit_master();
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if !self.keeps_connection() && self.control.exists() {
            self.exit_master();
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
        if cfg.password.is_some() {
            format!("ssh authentication refused by {target} (key and password)")
        } else {
            format!(
                "ssh authentication refused by {target} (a first run with a password: --ask-pass, --password-file or --password-env)"
            )
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PASSWORD: &str = "pw-in-argv? never";

    fn with_password() -> Ssh {
        let mut cfg = SshConfig::new("h1", "10.0.0.1");
        cfg.user = "kubeadmin".into();
        cfg.password = Some(Secret::new(PASSWORD));
        cfg.sudo_password = Some(Secret::new(PASSWORD));
        cfg.askpass_program = Some("/usr/local/bin/nodeprep".into());
        Ssh::new(cfg).unwrap()
    }

    #[test]
    fn batch_mode_only_without_a_password() {
        let plain = Ssh::new(SshConfig::new("h1", "10.0.0.1")).unwrap();
        let args = plain.base_args();
        assert!(args.contains(&"BatchMode=yes".to_string()), "{args:?}");
        assert!(!args.iter().any(|a| a.contains("NumberOfPasswordPrompts")));
        assert_eq!(plain.askpass_env().unwrap().0, vec![]);
        let args = with_password().base_args();
        assert!(args.contains(&"BatchMode=no".to_string()), "{args:?}");
        assert!(args.contains(&"NumberOfPasswordPrompts=1".to_string()));
    }

    /// The password is on no argv: not ssh's, not in the environment, only in a 0600 file of
    /// the 0700 control directory while the connection opens, then gone.
    #[test]
    fn askpass_plumbing_keeps_the_password_off_argv() {
        let ssh = with_password();
        let mut argv = ssh.base_args();
        argv.push(shell_join(&["sudo", "-n", "--", "true"]));
        assert!(argv.iter().all(|a| !a.contains("never")), "{argv:?}");
        let dir_mode = std::fs::metadata(ssh.control_dir.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let (env, file) = ssh.askpass_env().unwrap();
        let file = file.expect("no connection yet: the file is written");
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", askpass::FILE_ENV]
        );
        assert_eq!(env[0].1, "/usr/local/bin/nodeprep");
        assert_eq!(env[1].1, "force");
        assert!(
            env.iter()
                .all(|(_, v)| !v.to_string_lossy().contains("never")),
            "{env:?}"
        );
        let path = file.path().to_path_buf();
        assert_eq!(path.parent(), Some(ssh.control_dir.path()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), PASSWORD);
        drop(file);
        assert!(!path.exists(), "the password file outlived the invocation");
        // Once the master connection is up, no file is written at all.
        std::fs::write(ssh.control_dir.path().join("cm"), "").unwrap();
        let (env, file) = ssh.askpass_env().unwrap();
        assert!(file.is_none());
        assert_eq!(env.len(), 2);
        std::fs::remove_file(ssh.control_dir.path().join("cm")).unwrap();
        assert!(!format!("{:?}", ssh.cfg).contains("never"));
    }
}

#[cfg(test)]
mod persist_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_kept_connections_directory_is_private() {
        let base = tempfile::tempdir().unwrap();
        let uid = current_uid();
        let dir = private_dir(base.path().join("np"), uid).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Again: the same directory, accepted.
        assert_eq!(private_dir(dir.clone(), uid).unwrap(), dir);
        // Opened to others, or another user's: refused, naming the directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = private_dir(dir.clone(), uid).unwrap_err();
        assert!(e.to_string().contains("not a private directory"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(private_dir(dir.clone(), uid.wrapping_add(1)).is_err());
        // A symbolic link is not a directory of ours.
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(private_dir(link, uid).is_err());
    }

    /// `XDG_RUNTIME_DIR` is used only when it is this user's own, mode 0700: not when open to
    /// others, another user's, or a link.
    #[test]
    fn the_runtime_dir_must_be_the_users_own() {
        let base = tempfile::tempdir().unwrap();
        let uid = current_uid();
        let dir = base.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        for (mode, ok) in [
            (0o700, true),
            (0o755, false),
            (0o1777, false),
            (0o711, false),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(is_runtime_dir(&dir, uid), ok, "mode {mode:o}");
        }
        assert!(!is_runtime_dir(&dir, uid.wrapping_add(1)), "another user's");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(!is_runtime_dir(&link, uid), "a link");
        assert!(!is_runtime_dir(&base.path().join("absent"), uid));
    }

    /// A kept connection is named by who logs in where, with which key and which known hosts:
    /// two labs (or two inventories) never share one.
    #[test]
    fn kept_connections_are_told_apart() {
        let a = SshConfig::new("h", "127.0.0.1");
        let mut b = a.clone();
        assert_eq!(a.connection_key(), b.connection_key());
        assert_eq!(a.connection_key().len(), 16);
        b.known_hosts = Some("/tmp/other/known_hosts".into());
        assert_ne!(a.connection_key(), b.connection_key());
        let mut c = a.clone();
        c.port = 2222;
        assert_ne!(a.connection_key(), c.connection_key());
        let mut d = a.clone();
        d.user = "kubeadmin".into();
        assert_ne!(a.connection_key(), d.connection_key());
        // The inventory name is not part of it: the machine is the same.
        let mut e = a.clone();
        e.name = "other".into();
        assert_eq!(a.connection_key(), e.connection_key());
    }

    #[test]
    fn a_kept_connection_lives_in_the_private_directory_for_its_time() {
        let mut cfg = SshConfig::new("h", "127.0.0.1");
        cfg.persist_secs = 60;
        let ssh = Ssh::new(cfg).unwrap();
        assert!(ssh.keeps_connection());
        let args = ssh.base_args();
        let path = format!(
            "ControlPath={}",
            persist_dir()
                .unwrap()
                .join(ssh.cfg.connection_key())
                .display()
        );
        assert!(args.contains(&path), "{args:?}");
        assert!(args.contains(&"ControlPersist=60".to_string()), "{args:?}");
        let plain = Ssh::new(SshConfig::new("h", "127.0.0.1")).unwrap();
        assert!(!plain.keeps_connection());
        assert!(
            plain
                .base_args()
                .iter()
                .any(|a| a.starts_with("ControlPath=") && a.contains("/np-"))
        );
    }
}
