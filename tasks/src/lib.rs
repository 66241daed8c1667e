//! nodeprep's task DSL: the `Host` layer and its transports, facts, the per-host state cache,
//! the run context that records every step, and the idempotent task families.
//!
//! A task is a plain function `fn(&mut Ctx, ...) -> Result<Change>`: it reads the current state
//! (through the cache in [`Ctx`]), compares it with the desired one and acts only on the
//! difference. Tasks never print; the runner renders what [`Ctx`] records.

pub mod ca;
pub mod cloudinit;
pub mod containerd;
pub mod ctx;
pub mod disks;
pub mod docker;
pub mod error;
pub mod facts;
pub mod file;
pub mod firewall;
pub mod haproxy;
pub mod host;
pub mod hostname;
pub mod kernel;
pub mod kubelet;
pub mod locale;
pub mod network;
pub mod pkg;
pub mod plan;
pub mod secret;
pub mod state;
pub mod systemd;
pub mod testing;
pub mod timesync;
pub mod update;
pub mod users;
pub mod verify;

pub use ctx::{Action, Change, Ctx, Event, Mode, Options, Outcome, Record};
pub use error::{Error, ErrorKind, Result};
pub use facts::{Facts, OsFamily};
pub use host::{Cmd, Host, Output};
pub use plan::{Plan, Reads, Selection, StepRef};
pub use secret::Secret;
