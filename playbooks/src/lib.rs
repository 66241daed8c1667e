//! nodeprep's playbooks: the built-in roles as types ([`roles`]), the inventory they read their
//! settings from, the registry of named playbooks the runner looks names up in, and the
//! operator's own playbooks and tasks (`playbooks/site/`, compiled in as [`site`]).

pub mod inventory;
pub mod registry;
pub mod roles;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The operator's own playbooks (`playbooks/site/*.rs`) and tasks (`playbooks/site/tasks/`).
pub mod site {
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

pub use inventory::{HostEntry, Inventory, Target};
pub use registry::{FnPlaybook, Playbook, Registry, WithVars, listed_steps, steps};
pub use roles::Role;
