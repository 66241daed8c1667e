//! What a run knows of the host's packages beyond the state cache. The engine keeps it; the
//! package tasks ([`crate::pkg`]) read and change it.

use std::collections::BTreeSet;
use std::time::Duration;

/// How old apt's package lists may be before an install refreshes them, unless the plan says
/// otherwise (the inventory's `system.package_lists_max_age`).
pub const PACKAGE_LISTS_MAX_AGE: Duration = Duration::from_secs(3600);

/// What a run knows of the host's packages beyond the state cache: how fresh the package lists
/// are, and what the run's one transaction installed. The [`Ctx`](super::Ctx) keeps it for the run; the
/// functions of [`crate::pkg`] read and change it.
#[derive(Debug, Clone)]
pub struct RunPackages {
    /// apt's package lists are refreshed before an install when older than this.
    pub(crate) lists_max_age: Duration,
    /// The package lists were refreshed in this run (`apt-get update`, or a tdnf/dnf command
    /// with `--refresh`), after the last repository change.
    pub(crate) lists_refreshed: bool,
    /// A repository was added in this run: apt's lists are refreshed before the next install,
    /// whatever their age.
    pub(crate) sources_changed: bool,
    /// Packages the run's one transaction installed before the first step (see
    /// [`crate::plan::Plan::installs`]) that no step has reported yet: the step that asks for
    /// one reports it installed, without installing it again.
    pub(crate) batched: BTreeSet<String>,
}

impl Default for RunPackages {
    fn default() -> RunPackages {
        RunPackages {
            lists_max_age: PACKAGE_LISTS_MAX_AGE,
            lists_refreshed: false,
            sources_changed: false,
            batched: BTreeSet::new(),
        }
    }
}

impl RunPackages {
    /// A repository was added or changed: apt's lists must be refreshed before the next
    /// install, whatever their age.
    pub(crate) fn sources_changed(&mut self) {
        self.lists_refreshed = false;
        self.sources_changed = true;
    }
}
