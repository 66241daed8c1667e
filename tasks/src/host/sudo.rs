//! sudo for a login user other than root, as the ssh and local transports use it.
//!
//! Without a password, every command runs under `sudo -n` (sudo must ask none: NOPASSWD).
//! With one, the first command of the connection asks sudo whether the user needs a password
//! and checks the one given (`CHECK`); from then on each command runs as
//!
//! ```text
//! sudo -k -S -p '' -- sh -c GUARD nodeprep-sudo ARGV...
//! ```
//!
//! with `PASSWORD\n` + [`MARKER`]`\n` + the command's own stdin on stdin. `-S` makes sudo read
//! the password from stdin; sudo reads it one byte at a time up to the newline, so what follows
//! is left in the pipe for the command. `-p ''` keeps the prompt out of the output. `-k` makes
//! sudo ignore (and not create) a cached credential: with one, sudo would not read the password
//! line, and the command would get it on its stdin. The guard reads one more line and runs the
//! command only when that line is the marker; any other line means sudo did not read the
//! password (the policy asks none for this command, e.g. once nodeprep's own sudoers drop-in
//! went live in this very run): the guard exits [`NOT_READ`] without running anything or
//! printing the line, and the command is sent again under `sudo -n`. So a command's stdin
//! (a file's contents, `chpasswd`'s input) arrives byte for byte, and the password never
//! reaches a command, an argv or an output.

use std::sync::atomic::{AtomicU8, Ordering};

use super::{Cmd, Output};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// The line the guard expects right after the password.
pub const MARKER: &str = "nodeprep-sudo-stdin";

/// The guard's exit status when sudo left the password line unread (the command did not run).
pub const NOT_READ: i32 = 97;

/// What the guard says on stderr when it did not run the command.
const NOT_READ_MESSAGE: &str = "nodeprep: sudo asked no password; the command was not run";

/// Run by `sh -c` as root, the command's argv as its arguments.
const GUARD: &str = "IFS= read -r l || l=; if [ \"$l\" != nodeprep-sudo-stdin ]; then echo 'nodeprep: sudo asked no password; the command was not run' >&2; exit 97; fi; exec \"$@\"";

/// The first command of a connection with a password (the password line on stdin): whether
/// sudo asks this user for a password at all, and if it does, whether it takes this one.
/// `true` stands for any command: the answer holds for the policy `ALL`.
const CHECK: &str = "command -v sudo >/dev/null 2>&1 || { echo nodeprep-sudo:missing; exit 1; }; \
if sudo -k -n -- true 2>/dev/null; then echo nodeprep-sudo:none; \
elif sudo -k -S -p '' -- true; then echo nodeprep-sudo:password; else exit 1; fi";

const UNKNOWN: u8 = 0;
/// sudo takes the password given.
const PASSWORD: u8 = 1;
/// sudo asks no password (NOPASSWD), or no password was given.
const NONE: u8 = 2;

/// How a transport runs commands as root for a login user other than root.
pub(crate) struct Sudo {
    password: Option<Secret>,
    state: AtomicU8,
}

/// Runs an argv with optional stdin as the login user (the transport's own way).
pub(crate) type Send<'a> = dyn Fn(&[String], Option<&[u8]>) -> Result<Output> + 'a;

/// Whom sudo runs for, in messages: the user and where (an address, "this machine").
pub(crate) struct Who<'a> {
    pub user: &'a str,
    pub place: &'a str,
}

impl Sudo {
    pub fn new(password: Option<Secret>) -> Sudo {
        let state = if password.is_some() { UNKNOWN } else { NONE };
        Sudo {
            password,
            state: AtomicU8::new(state),
        }
    }

    /// Whether the next command would send sudo's password (its first check included).
    pub fn sends_password(&self) -> bool {
        self.password.is_some() && self.state.load(Ordering::Relaxed) != NONE
    }

    /// Runs `cmd` as root; `send` runs an argv with stdin as the login user.
    pub fn exec(&self, cmd: &Cmd, who: &Who, send: &Send) -> Result<Output> {
        if let Some(password) = &self.password {
            if self.state.load(Ordering::Relaxed) == UNKNOWN {
                self.check(password, who, send)?;
            }
            if self.state.load(Ordering::Relaxed) == PASSWORD {
                let (argv, stdin) = framed(password, cmd);
                let out = send(&argv, Some(&stdin))?;
                if !password_unread(&out) {
                    return Ok(out);
                }
                // Nothing ran: from now on sudo asks no password.
                tracing::debug!(
                    "sudo for {} on {} asks no password any more: sudo -n from now on",
                    who.user,
                    who.place
                );
                self.state.store(NONE, Ordering::Relaxed);
            }
        }
        let mut argv: Vec<String> = ["sudo", "-n", "--"].map(String::from).to_vec();
        argv.extend(cmd.argv.iter().cloned());
        let out = send(&argv, cmd.stdin.as_deref())?;
        if out.status == Some(1) && password_required(&out.stderr) {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!(
                    "sudo on {} asks {} for a password; nodeprep needs passwordless sudo (NOPASSWD) for that user, \
                     or its password (--ask-become-pass, --become-password-file or --become-password-env)",
                    who.place, who.user
                ),
            )
            .with_stderr(&out.stderr));
        }
        Ok(out)
    }

    fn check(&self, password: &Secret, who: &Who, send: &Send) -> Result<()> {
        let argv: Vec<String> = ["sh", "-c", CHECK].map(String::from).to_vec();
        let out = send(&argv, Some(&password_line(password)))?;
        let answer = out.stdout_str();
        let state = if answer.contains("nodeprep-sudo:none") {
            NONE
        } else if answer.contains("nodeprep-sudo:password") {
            PASSWORD
        } else if answer.contains("nodeprep-sudo:missing") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "sudo is not installed on {}: log in as root, or install sudo",
                    who.place
                ),
            ));
        } else {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!(
                    "sudo on {} refused the password given for {}",
                    who.place, who.user
                ),
            )
            .with_stderr(&out.stderr));
        };
        self.state.store(state, Ordering::Relaxed);
        Ok(())
    }
}

fn password_line(password: &Secret) -> Vec<u8> {
    let mut line = password.expose().as_bytes().to_vec();
    line.push(b'\n');
    line
}

/// The argv and stdin that run `cmd` as root with the password on sudo's stdin (see the
/// module's documentation).
pub(crate) fn framed(password: &Secret, cmd: &Cmd) -> (Vec<String>, Vec<u8>) {
    let mut argv: Vec<String> = [
        "sudo",
        "-k",
        "-S",
        "-p",
        "",
        "--",
        "sh",
        "-c",
        GUARD,
        "nodeprep-sudo",
    ]
    .map(String::from)
    .to_vec();
    argv.extend(cmd.argv.iter().cloned());
    let mut stdin = password_line(password);
    stdin.extend_from_slice(MARKER.as_bytes());
    stdin.push(b'\n');
    if let Some(own) = &cmd.stdin {
        stdin.extend_from_slice(own);
    }
    (argv, stdin)
}

/// The guard did not run the command: sudo left the password line unread.
fn password_unread(out: &Output) -> bool {
    out.status == Some(NOT_READ) && String::from_utf8_lossy(&out.stderr).contains(NOT_READ_MESSAGE)
}

/// `sudo -n` refused for want of a password.
fn password_required(stderr: &[u8]) -> bool {
    let err = String::from_utf8_lossy(stderr);
    err.contains("sudo:")
        && (err.contains("password is required") || err.contains("a terminal is required"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::os::unix::fs::PermissionsExt;

    const PASSWORD: &str = "correct horse $(id) 'battery'";

    /// A stand-in for sudo on PATH: `-S` reads one line from stdin (the password) unless
    /// `NOPASSWD` is set (a policy that asks none); `-n` fails like sudo when a password would
    /// be needed and `NOPASSWD` is not set. It then runs the command after `--`.
    const FAKE_SUDO: &str = r#"#!/bin/sh
s=; n=; k=
while [ $# -gt 0 ]; do
  case $1 in
    -S) s=1 ;;
    -n) n=1 ;;
    -k) k=1 ;;
    -p) shift ;;
    --) shift; break ;;
  esac
  shift
done
if [ -n "$NOPASSWD" ]; then exec "$@"; fi
if [ -n "$s" ]; then
  IFS= read -r pw || pw=
  if [ "$pw" != "$WANT" ]; then echo 'Sorry, try again.' >&2; echo 'sudo: 1 incorrect password attempt' >&2; exit 1; fi
  exec "$@"
fi
echo 'sudo: a password is required' >&2; exit 1
"#;

    struct Fake {
        dir: tempfile::TempDir,
        nopasswd: std::cell::Cell<bool>,
        sent: RefCell<Vec<Vec<String>>>,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let sudo = dir.path().join("sudo");
            std::fs::write(&sudo, FAKE_SUDO).unwrap();
            std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
            Fake {
                dir,
                nopasswd: false.into(),
                sent: RefCell::default(),
            }
        }

        fn send(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<Output> {
            self.sent.borrow_mut().push(argv.to_vec());
            let path = format!(
                "{}:{}",
                self.dir.path().display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let (program, args) = argv.split_first().unwrap();
            let mut expr = duct::cmd(program, args)
                .env("PATH", path)
                .env("WANT", PASSWORD)
                .stdout_capture()
                .stderr_capture()
                .unchecked();
            if self.nopasswd.get() {
                expr = expr.env("NOPASSWD", "1");
            }
            expr = match stdin {
                Some(b) => expr.stdin_bytes(b.to_vec()),
                None => expr.stdin_null(),
            };
            let out = expr.run().unwrap();
            Ok(Output {
                status: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    const WHO: Who = Who {
        user: "kubeadmin",
        place: "10.0.0.1",
    };

    #[test]
    fn the_password_goes_on_stdin_never_on_argv() {
        let cmd = Cmd::new(&["sh", "-c", "cat > /dev/null", "x"]).stdin(b"data\n".to_vec());
        let (argv, stdin) = framed(&Secret::new(PASSWORD), &cmd);
        assert!(argv.iter().all(|a| !a.contains("horse")), "{argv:?}");
        assert_eq!(
            argv[..10],
            [
                "sudo",
                "-k",
                "-S",
                "-p",
                "",
                "--",
                "sh",
                "-c",
                GUARD,
                "nodeprep-sudo"
            ]
        );
        assert_eq!(argv[10..], cmd.argv[..]);
        assert_eq!(
            stdin,
            format!("{PASSWORD}\n{MARKER}\ndata\n").into_bytes(),
            "password line, marker line, then the command's own stdin"
        );
        // The guard names the marker it compares with.
        assert!(GUARD.contains(MARKER) && GUARD.contains(&NOT_READ.to_string()));
        assert!(GUARD.contains(NOT_READ_MESSAGE));
    }

    /// Through a sudo that reads the password: the command's stdin arrives byte for byte
    /// (several lines, no trailing newline, binary), and nothing of the password comes back.
    #[test]
    fn the_command_gets_its_stdin_intact() {
        let fake = Fake::new();
        let sudo = Sudo::new(Some(Secret::new(PASSWORD)));
        let send = |a: &[String], i: Option<&[u8]>| fake.send(a, i);
        for data in [
            &b"line one\nline two\n"[..],
            b"no newline at the end",
            b"\x00\xff\n\nbinary",
            b"",
        ] {
            let out = sudo
                .exec(&Cmd::new(&["cat"]).stdin(data.to_vec()), &WHO, &send)
                .unwrap();
            assert!(out.success(), "{out:?}");
            assert_eq!(out.stdout, data);
            assert!(!String::from_utf8_lossy(&out.stderr).contains("horse"));
        }
        // No stdin of its own: the command reads nothing.
        let out = sudo.exec(&Cmd::new(&["cat"]), &WHO, &send).unwrap();
        assert_eq!(out.stdout, b"");
        let sent = fake.sent.borrow();
        assert_eq!(sent[0][..2], ["sh", "-c"], "the check comes first");
        assert!(sent[1..].iter().all(|a| a[..3] == ["sudo", "-k", "-S"]));
        assert!(sent.iter().flatten().all(|a| !a.contains("horse")));
    }

    /// sudo stops asking mid-run (a NOPASSWD rule went live): the guard runs nothing, the
    /// command is sent again under `sudo -n`, and the password never reaches it.
    #[test]
    fn a_sudo_that_asks_no_more_gets_sudo_n() {
        let fake = Fake::new();
        let sudo = Sudo::new(Some(Secret::new(PASSWORD)));
        let send = |a: &[String], i: Option<&[u8]>| fake.send(a, i);
        let echo = Cmd::new(&["sh", "-c", "cat; echo ran"]).stdin(b"payload\n".to_vec());
        assert_eq!(
            sudo.exec(&echo, &WHO, &send).unwrap().stdout,
            b"payload\nran\n"
        );
        fake.nopasswd.set(true);
        let out = sudo.exec(&echo, &WHO, &send).unwrap();
        assert_eq!(out.stdout, b"payload\nran\n", "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("horse"));
        let sent = fake.sent.borrow();
        let last: Vec<&str> = sent.iter().map(|a| a[1].as_str()).collect();
        // check, framed, framed (refused by the guard), sudo -n.
        assert_eq!(last, ["-c", "-k", "-k", "-n"]);
    }

    #[test]
    fn a_nopasswd_policy_is_seen_at_the_check() {
        let fake = Fake::new();
        fake.nopasswd.set(true);
        let sudo = Sudo::new(Some(Secret::new(PASSWORD)));
        let send = |a: &[String], i: Option<&[u8]>| fake.send(a, i);
        let out = sudo
            .exec(&Cmd::new(&["cat"]).stdin(b"x".to_vec()), &WHO, &send)
            .unwrap();
        assert_eq!(out.stdout, b"x");
        let sent = fake.sent.borrow();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1][..3], ["sudo", "-n", "--"]);
    }

    #[test]
    fn a_wrong_password_is_refused_once_and_said_so() {
        let fake = Fake::new();
        let sudo = Sudo::new(Some(Secret::new("wrong")));
        let send = |a: &[String], i: Option<&[u8]>| fake.send(a, i);
        let e = sudo
            .exec(&Cmd::new(&["cat"]).stdin(b"x".to_vec()), &WHO, &send)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert!(
            e.to_string()
                .starts_with("sudo on 10.0.0.1 refused the password given for kubeadmin"),
            "{e}"
        );
        assert!(!e.to_string().contains("wrong"), "{e}");
        assert_eq!(fake.sent.borrow().len(), 1, "nothing sent after the check");
    }

    #[test]
    fn a_host_without_sudo_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/bin/sh", dir.path().join("sh")).unwrap();
        let path = dir.path().display().to_string();
        let send = |argv: &[String], stdin: Option<&[u8]>| {
            let out = duct::cmd(&argv[0], &argv[1..])
                .env("PATH", &path)
                .stdin_bytes(stdin.unwrap_or_default().to_vec())
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
                .unwrap();
            Ok(Output {
                status: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        };
        let sudo = Sudo::new(Some(Secret::new(PASSWORD)));
        let e = sudo.exec(&Cmd::new(&["true"]), &WHO, &send).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(
            e.to_string(),
            "sudo is not installed on 10.0.0.1: log in as root, or install sudo"
        );
    }

    #[test]
    fn no_password_means_sudo_n_and_a_clear_error() {
        let fake = Fake::new();
        let sudo = Sudo::new(None);
        let send = |a: &[String], i: Option<&[u8]>| fake.send(a, i);
        let e = sudo.exec(&Cmd::new(&["true"]), &WHO, &send).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        let msg = e.to_string();
        assert!(
            msg.contains("asks kubeadmin for a password")
                && msg.contains("NOPASSWD")
                && msg.contains("--ask-become-pass"),
            "{msg}"
        );
    }
}
