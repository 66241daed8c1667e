//! nodeprep's playbooks: the roles as plain Rust functions over the `tasks` API, the
//! inventory they read their settings from, and the registry of named playbooks that the
//! runner looks names up in.

pub mod custom;
pub mod inventory;
pub mod registry;
pub mod roles;

pub use inventory::{HostEntry, Inventory, Target};
pub use registry::{Playbook, all, find};
