//! nodeprep's task DSL: the `Host` layer and its transports, facts, the per-host state cache,
//! the run context that records every step, and the idempotent task families.
//!
//! A task is a plain function `fn(&mut Ctx, ...) -> Result<Change>`: it reads the current state
//! (through the cache in [`Ctx`]), compares it with the desired one and acts only on the
//! difference. Tasks never print; the runner renders what [`Ctx`] records.

pub mod ctx;
pub mod error;
pub mod facts;
pub mod file;
pub mod host;
pub mod kernel;
pub mod pkg;
pub mod secret;
pub mod state;
pub mod systemd;

pub use ctx::{Action, Change, Ctx, Event, Mode, Options, Outcome, Record};
pub use error::{Error, ErrorKind, Result};
pub use facts::{Facts, OsFamily};
pub use host::{Cmd, Host, Output};
pub use secret::Secret;

/// What the state probe reads on every host: the files and programs the task families use.
pub fn default_probe() -> state::Probe {
    state::Probe::default()
        .files(&kernel::probe_files())
}
