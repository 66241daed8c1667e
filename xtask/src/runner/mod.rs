//! nodeprep's runner, as a library: inventory loading and host selection, the fan-out over
//! hosts, the per-host report and its exit code, and the printers (text, JSON). It is driven
//! by a [`Job`] (a playbook, its targets, typed options), not by the command line: `run` and
//! `verify` share it, and so does a crate of the operator's own ([`main`] gives it the whole
//! command line over its own [`Registry`](playbooks::Registry)). It holds no global state.
//!
//! Who imports whom (no loops): `cli` → `verify` → `job` → `fanout`, `select`, `print` →
//! `report`; this file only declares the modules and names the entry points. The dev tools (`crate::dev`) use the runner; the runner never uses them.

pub mod access;
pub mod cli;
pub mod fanout;
pub mod identity;
pub mod job;
pub mod print;
pub mod report;
pub mod select;
pub mod verify;

pub use cli::{dispatch, error_code, main, usage_error};
pub use fanout::RunOptions;
pub use job::{Job, Reported, Targets, run};
pub use print::Printer;
pub use report::{
    EXIT_BAD_INPUT, EXIT_CHANGES_PENDING, EXIT_FAILED, EXIT_IDENTITY, EXIT_OK, EXIT_UNREACHABLE,
    HostReport, exit_code,
};
pub use select::Selector;
