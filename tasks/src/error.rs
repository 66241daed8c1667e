//! The one error type of the task layer: it names the host, what was being done (the command,
//! the file) and carries the tail of stderr.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure this is; the runner maps kinds to exit codes and recap columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host could not be reached or authenticated (ssh connection, host key, auth).
    Unreachable,
    /// A command ran and failed on the host.
    Command,
    /// The host runs something nodeprep does not handle.
    Unsupported,
    /// Bad input: a value that cannot be used (validation, parse).
    Invalid,
    /// Another runner holds the host.
    Busy,
    /// The machine reached is not the inventory's host (name, addresses and recorded
    /// machine-id all differ): refused before anything is changed.
    Identity,
    /// The host needs what only someone outside it can do (a hypervisor setting such as
    /// vSphere's `disk.EnableUUID`): reported as a warning with its fix, counted apart, and no
    /// failure of the run (nor drift); `verify` still fails on it.
    Operator,
    /// A command passed a limit of the run: its time limit, or the most output kept. The
    /// host's run ends there (a check step that meets it does not go on either).
    Limit,
    /// Anything else (I/O on the controller, malformed replies).
    Other,
}

pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    host: Option<String>,
    message: String,
    stderr_tail: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                host: None,
                message: message.into(),
                stderr_tail: String::new(),
            }),
        }
    }

    pub fn other(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Other, message)
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, message)
    }

    /// Attach the host name, unless one is already there.
    pub fn on_host(mut self, host: &str) -> Error {
        if self.inner.host.is_none() {
            self.inner.host = Some(host.to_string());
        }
        self
    }

    pub fn with_stderr(mut self, stderr: &[u8]) -> Error {
        self.inner.stderr_tail = tail(stderr, 12);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    pub fn host(&self) -> Option<&str> {
        self.inner.host.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.inner.message
    }

    pub fn stderr_tail(&self) -> &str {
        &self.inner.stderr_tail
    }
}

/// The last `lines` lines of some output, lossily decoded, trimmed.
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.inner.host {
            write!(f, "{host}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if !self.inner.stderr_tail.is_empty() {
            write!(
                f,
                "\n  stderr: {}",
                self.inner.stderr_tail.replace('\n', "\n          ")
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::other(err.to_string())
    }
}
