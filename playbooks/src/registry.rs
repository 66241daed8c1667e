//! The registry of named playbooks: the built-in roles and the operator's own (see
//! [`crate::custom`]). `cargo xtask run NAME` looks NAME up here.

use tasks::{Ctx, Result};

use crate::inventory::Target;

/// A named playbook.
#[derive(Clone, Copy)]
pub struct Playbook {
    pub name: &'static str,
    pub about: &'static str,
    /// The inventory role it is meant for; the runner refuses hosts of another role unless
    /// forced. `None`: any host.
    pub role: Option<&'static str>,
    /// Its steps, in order (for `cargo xtask playbooks`, `--only` and `--skip`).
    pub steps: &'static [&'static str],
    /// Files it manages beyond those the task families always read: the state probe fetches
    /// them in the run's first round trip (a file missing here costs one more round trip).
    pub files: &'static [&'static str],
    /// Files known only from the inventory (a user's home, certificate names): added to the
    /// first round trip too.
    pub probe: fn(&Target) -> Vec<String>,
    pub run: fn(&mut Ctx, &Target) -> Result<()>,
}

impl std::fmt::Debug for Playbook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playbook")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The built-in playbooks, then the custom ones.
pub fn all() -> Vec<&'static Playbook> {
    crate::roles::BUILTIN
        .iter()
        .chain(crate::custom::PLAYBOOKS.iter())
        .collect()
}

pub fn find(name: &str) -> Option<&'static Playbook> {
    all().into_iter().find(|p| p.name == name)
}

/// For playbooks whose files are all static.
pub fn no_probe(_: &Target) -> Vec<String> {
    Vec::new()
}
