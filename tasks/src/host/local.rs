//! This machine: processes spawned with their output and time bounded ([`spawn_env`]).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::sudo::{Sudo, Who};
use super::{Cmd, Host, OUTPUT_CAP, Output};
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
                spawn(&argv, cmd.stdin.as_deref(), cmd.time_limit())
            }
            Some(sudo) => {
                let user = std::env::var("USER").unwrap_or_else(|_| "this user".into());
                let who = Who {
                    user: &user,
                    place: "this machine",
                };
                sudo.exec(cmd, &who, &|argv, stdin| {
                    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    spawn(&argv, stdin, cmd.time_limit())
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
        spawn(&argv, cmd.stdin.as_deref(), cmd.time_limit()).map_err(|e| e.on_host(&self.name))
    }
}

/// Runs argv on this machine, capturing its output up to [`OUTPUT_CAP`] per stream, for at
/// most `timeout`. Shared by the transports that drive a local client program (ssh, docker).
pub(super) fn spawn(argv: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
    spawn_env(argv, stdin, &[], timeout)
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
///
/// Bounded: each of stdout and stderr is read up to [`OUTPUT_CAP`] bytes (a reader thread
/// each); a stream that goes past it, or a command that is still running after `timeout`, is
/// killed and the call fails with [`ErrorKind::Limit`]. A host can then neither exhaust the
/// runner's memory (`/dev/zero` where a file was expected) nor hold it for ever (a FIFO).
pub(super) fn spawn_env(
    argv: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, OsString)],
    timeout: Duration,
) -> Result<Output> {
    let withheld = WITHHELD.read().unwrap_or_else(|e| e.into_inner()).clone();
    spawn_capped(argv, stdin, env, &withheld, timeout, OUTPUT_CAP)
}

pub(super) fn spawn_capped(
    argv: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, OsString)],
    withheld: &[OsString],
    timeout: Duration,
    cap: usize,
) -> Result<Output> {
    use std::process::Stdio;
    use std::sync::mpsc;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::other("empty command"))?;
    // The Host layer is where processes for a target are spawned.
    #[allow(clippy::disallowed_methods)]
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in withheld {
        command.env_remove(name);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().map_err(|e| {
        Error::new(
            ErrorKind::Unreachable,
            format!("cannot run `{program}`: {e}"),
        )
    })?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let bytes = bytes.to_vec();
        // A command that does not read its stdin must not block the runner: written apart.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&bytes);
        });
    }
    let (tx, rx) = mpsc::channel::<(usize, Option<Vec<u8>>)>();
    let readers: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ];
    for (i, pipe) in readers.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((i, pipe.and_then(|p| read_capped(p, cap))));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut streams: [Option<Vec<u8>>; 2] = [None, None];
    let mut done = 0;
    let stop = |child: &mut std::process::Child, why: String| -> Error {
        let _ = child.kill();
        let _ = child.wait();
        Error::new(ErrorKind::Limit, why)
    };
    let secs = timeout.as_secs();
    while done < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Some(bytes))) => {
                streams[i] = Some(bytes);
                done += 1;
            }
            Ok((i, None)) => {
                let which = if i == 0 { "output" } else { "error output" };
                return Err(stop(
                    &mut child,
                    format!(
                        "its {which} passed {} MiB: stopped (a host does not answer that much; a device or a pipe where a file was expected?)",
                        cap >> 20
                    ),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(stop(
                    &mut child,
                    format!("no answer within {secs} s (the command time limit): stopped"),
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(stop(
                &mut child,
                format!("no answer within {secs} s (the command time limit): stopped"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let [stdout, stderr] = streams;
    Ok(Output {
        status: status.code(),
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

/// Everything `pipe` gives until its end, or `None` once it passed `cap` bytes (the pipe is
/// then closed: its writer gets SIGPIPE).
fn read_capped(mut pipe: Box<dyn std::io::Read + Send>, cap: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => return Some(buf),
            Ok(n) => {
                if buf.len() + n > cap {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Some(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream past the cap is refused at once, with bounded memory; a command past its time
    /// limit is stopped.
    #[test]
    fn output_and_time_bounded() {
        let start = Instant::now();
        let err = spawn_capped(
            &["sh", "-c", "cat /dev/zero"],
            None,
            &[],
            &[],
            Duration::from_secs(60),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit, "{err}");
        assert!(err.to_string().contains("passed 1 MiB"), "{err}");
        let err = spawn_capped(
            &["sh", "-c", "cat /dev/zero >&2"],
            None,
            &[],
            &[],
            Duration::from_secs(60),
            1 << 20,
        )
        .unwrap_err();
        assert!(err.to_string().contains("error output passed"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(20));
        let start = Instant::now();
        let err = spawn(&["sleep", "30"], None, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit);
        assert!(err.to_string().contains("time limit"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // A command that does not read its stdin is no trouble, nor is a whole answer.
        let out = spawn(
            &["sh", "-c", "echo ok; echo err >&2"],
            Some(&vec![b'x'; 1 << 20]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(out.stdout, b"ok\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(out.success());
    }

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
        let out = spawn_capped(&show, None, &[], &[], Duration::from_secs(30), OUTPUT_CAP).unwrap();
        assert_eq!(out.stdout_str(), format!("{}|path", home.to_string_lossy()));
        let out = spawn_capped(
            &show,
            None,
            &[],
            &["HOME".into()],
            Duration::from_secs(30),
            OUTPUT_CAP,
        )
        .unwrap();
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
