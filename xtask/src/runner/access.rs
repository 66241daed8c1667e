//! The passwords of a run: the ssh login password and sudo's, each read once per run (asked on
//! the terminal, or read from a file or an environment variable the operator names) and kept
//! as [`Secret`]s. What a first contact with a fresh install needs: an admin who logs in with
//! a password and whose sudo asks for it (Photon OS: `%wheel ALL=(ALL) ALL`). They reach
//! OpenSSH through the askpass program and sudo on its stdin (see `tasks::host`), never an
//! argv, a log line, a JSON event or an error message: messages name the source, not the value.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use playbooks::Inventory;
use tasks::Secret;

/// The passwords of a first contact: the ssh login password, and sudo's when it differs (it is
/// the ssh password otherwise). Each is read once per run; none is ever put on a command line,
/// in a log or in JSON.
#[derive(Args, Clone, Debug, Default)]
pub struct AccessArgs {
    /// Ask the ssh login password on the terminal (once per run; also sudo's unless given apart).
    #[arg(long, group = "ssh_password")]
    pub ask_pass: bool,
    /// Read the ssh login password from the first line of this file (keep it mode 0600).
    #[arg(long, value_name = "PATH", group = "ssh_password")]
    pub password_file: Option<PathBuf>,
    /// Read the ssh login password from this environment variable.
    #[arg(long, value_name = "VAR", group = "ssh_password")]
    pub password_env: Option<String>,
    /// Ask sudo's password on the terminal (when it is not the ssh password, or login is by key).
    #[arg(long, group = "sudo_password")]
    pub ask_become_pass: bool,
    /// Read sudo's password from the first line of this file.
    #[arg(long, value_name = "PATH", group = "sudo_password")]
    pub become_password_file: Option<PathBuf>,
    /// Read sudo's password from this environment variable.
    #[arg(long, value_name = "VAR", group = "sudo_password")]
    pub become_password_env: Option<String>,
}

impl AccessArgs {
    /// Where the ssh password comes from, if anywhere.
    pub fn ssh(&self) -> Option<Source> {
        source(self.ask_pass, &self.password_file, &self.password_env)
    }

    /// Where sudo's own password comes from, if anywhere.
    pub fn sudo(&self) -> Option<Source> {
        source(
            self.ask_become_pass,
            &self.become_password_file,
            &self.become_password_env,
        )
    }
}

fn source(ask: bool, file: &Option<PathBuf>, env: &Option<String>) -> Option<Source> {
    if ask {
        Some(Source::Prompt)
    } else if let Some(f) = file {
        Some(Source::File(f.clone()))
    } else {
        env.as_ref().map(|v| Source::Env(v.clone()))
    }
}

/// Where a password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Asked on the terminal, without echo.
    Prompt,
    /// The first line of a file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

/// The passwords a run was given.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The ssh login password (`BatchMode` stays on without one).
    pub ssh: Option<Secret>,
    /// sudo's password for a login user other than root (the ssh password unless given apart).
    pub sudo: Option<Secret>,
}

impl Credentials {
    /// Reads the passwords: `ssh` and `sudo` sources, each read once; sudo's is the ssh
    /// password when it has no source of its own. `who` names the login users in prompts.
    pub fn read(ssh: Option<&Source>, sudo: Option<&Source>, who: &str) -> Result<Credentials> {
        let ssh_password = ssh
            .map(|s| read_one(s, &format!("ssh password for {who}: "), "password"))
            .transpose()?;
        let sudo_password = match sudo {
            Some(s) => Some(read_one(
                s,
                &format!("sudo password for {who}: "),
                "become password",
            )?),
            None => ssh_password.clone(),
        };
        Ok(Credentials {
            ssh: ssh_password,
            sudo: sudo_password,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.ssh.is_none() && self.sudo.is_none()
    }
}

/// The warning for a run that logs in with a password to hosts whose key may be new
/// (`ssh.accept_new_host_keys`): sshd receives the login password during the login, before
/// nodeprep can ask the host who it is, so only a known host key protects it.
pub fn unverified_key_warning(inv: &Inventory, creds: &Credentials) -> Option<String> {
    (creds.ssh.is_some() && inv.ssh.accept_new_host_keys).then(|| {
        "the ssh login password goes to whatever machine answers at each address:          ssh.accept_new_host_keys accepts a host key never seen before, and sshd receives the          password during the login, before any identity check. Add the hosts' keys to known_hosts          and set ssh.accept_new_host_keys = false to keep it from a wrong machine"
            .to_string()
    })
}

/// One password from its source. `what` names the flag family in errors (`password`,
/// `become password`).
fn read_one(source: &Source, prompt: &str, what: &str) -> Result<Secret> {
    let flag = what.replace(' ', "-");
    let text = match source {
        Source::Prompt => {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
                bail!(
                    "--ask-{} needs a terminal; use --{flag}-file PATH or --{flag}-env VAR",
                    if what == "password" {
                        "pass"
                    } else {
                        "become-pass"
                    }
                );
            }
            rpassword::prompt_password(prompt)
                .map_err(|e| anyhow!("reading the {what} from the terminal: {e}"))?
        }
        Source::File(path) => {
            warn_if_shared(path);
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("--{flag}-file {}: {e}", path.display()))?;
            first_line(text)
                .ok_or_else(|| anyhow!("--{flag}-file {}: the file is empty", path.display()))?
        }
        Source::Env(var) => {
            let text = std::env::var(var).map_err(|_| {
                anyhow!("--{flag}-env {var}: the variable {var} is not set (or not UTF-8)")
            })?;
            first_line(text).ok_or_else(|| anyhow!("--{flag}-env {var}: {var} is empty"))?
        }
    };
    check(&text).map_err(|why| anyhow!("the {what} given {why}"))?;
    Ok(Secret::new(text))
}

/// The text up to its first line end (a file written by `echo` ends with one); `None` when
/// that is empty.
fn first_line(mut text: String) -> Option<String> {
    if let Some(end) = text.find(['\n', '\r']) {
        text.truncate(end);
    }
    (!text.is_empty()).then_some(text)
}

/// A password travels as one line (sudo and askpass read up to a line end).
fn check(password: &str) -> Result<(), &'static str> {
    if password.is_empty() {
        Err("is empty")
    } else if password.contains(['\n', '\r', '\0']) {
        Err("holds a line break or a NUL byte")
    } else {
        Ok(())
    }
}

/// A password file others can read is worth a warning (not an error: the operator may know why).
fn warn_if_shared(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} is readable by other users (mode {mode:04o}): `chmod 600` it",
                path.display()
            );
        }
    }
}

/// The admin's login password is also the one nodeprep sets (step "admin user", from
/// `admin.password_hash`). When the run logs in as the admin (`users`: the login users of the
/// selected hosts), a password given that is not the hash's would be changed during the run,
/// and sudo would refuse the rest of it: refused before anything connects.
pub fn check_admin_password(inv: &Inventory, users: &[&str], creds: &Credentials) -> Result<()> {
    let Some(admin) = &inv.admin else {
        return Ok(());
    };
    if !users.contains(&admin.name.as_str()) {
        return Ok(());
    }
    for (what, password) in [("ssh password", &creds.ssh), ("sudo password", &creds.sudo)] {
        let Some(password) = password else { continue };
        if sha_crypt::sha512_check(password.expose(), admin.password_hash.expose()).is_err() {
            bail!(
                "the {what} given for {name} is not the one admin.password_hash in {file} describes: \
                 the step \"admin user\" would set that one during the run, and sudo would refuse the \
                 rest. Put the hash of the password {name} logs in with in admin.password_hash \
                 (`openssl passwd -6`), or give that password",
                name = admin.name,
                file = inv.path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret pass\n").unwrap();
        let c = Credentials::read(Some(&Source::File(file.clone())), None, "kubeadmin").unwrap();
        assert_eq!(c.ssh.as_ref().unwrap().expose(), "s3cret pass");
        assert_eq!(c.sudo, c.ssh, "sudo's password defaults to the ssh one");
        // The environment: a variable every process has (setting one is unsafe code).
        let c = Credentials::read(None, Some(&Source::Env("PATH".into())), "kubeadmin").unwrap();
        assert!(c.ssh.is_none());
        assert_eq!(c.sudo.unwrap().expose(), std::env::var("PATH").unwrap());
    }

    /// A login password with new host keys accepted: warned (the password reaches whatever
    /// sshd answers); a sudo password alone, or known keys only: no warning.
    #[test]
    fn a_login_password_with_new_host_keys_is_warned() {
        let inv = |accept: bool| {
            Inventory::parse(
                &format!("[ssh]\naccept_new_host_keys = {accept}\n"),
                Path::new("inventory.toml"),
            )
            .unwrap()
        };
        let login = Credentials {
            ssh: Some(Secret::new("pw")),
            sudo: Some(Secret::new("pw")),
        };
        let sudo_only = Credentials {
            ssh: None,
            sudo: Some(Secret::new("pw")),
        };
        let w = unverified_key_warning(&inv(true), &login).unwrap();
        assert!(
            w.contains("accept_new_host_keys") && !w.contains("pw,"),
            "{w}"
        );
        assert!(unverified_key_warning(&inv(false), &login).is_none());
        assert!(unverified_key_warning(&inv(true), &sudo_only).is_none());
    }

    #[test]
    fn errors_name_the_source_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = Credentials::read(Some(&Source::File(empty)), None, "u").unwrap_err();
        assert!(e.to_string().contains("the file is empty"), "{e}");
        let e = Credentials::read(
            None,
            Some(&Source::Env("NODEPREP_TEST_SURELY_UNSET".into())),
            "u",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--become-password-env NODEPREP_TEST_SURELY_UNSET: the variable NODEPREP_TEST_SURELY_UNSET is not set (or not UTF-8)"
        );
        let e = Credentials::read(Some(&Source::File(dir.path().join("absent"))), None, "u")
            .unwrap_err();
        assert!(e.to_string().starts_with("--password-file "), "{e}");
        assert_eq!(check("a\0b"), Err("holds a line break or a NUL byte"));
        assert_eq!(first_line("\nrest".into()), None);
    }

    #[test]
    fn the_admin_password_must_be_the_inventorys() {
        let params = sha_crypt::Sha512Params::new(5000).unwrap();
        let hash = sha_crypt::sha512_simple("right one", &params).unwrap();
        let inv = Inventory::parse(
            &format!("[admin]\nname = \"kubeadmin\"\npassword_hash = \"{hash}\"\n"),
            Path::new("inventory.toml"),
        )
        .unwrap();
        let creds = |ssh: &str, sudo: &str| Credentials {
            ssh: Some(Secret::new(ssh)),
            sudo: Some(Secret::new(sudo)),
        };
        check_admin_password(&inv, &["kubeadmin"], &creds("right one", "right one")).unwrap();
        let e =
            check_admin_password(&inv, &["kubeadmin"], &creds("right one", "wrong")).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "the sudo password given for kubeadmin is not the one admin.password_hash in inventory.toml describes"
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("wrong"));
        // Another login user: the admin's password is not in play.
        check_admin_password(&inv, &["deploy"], &creds("wrong", "wrong")).unwrap();
        check_admin_password(&inv, &["kubeadmin"], &Credentials::default()).unwrap();
    }
}
