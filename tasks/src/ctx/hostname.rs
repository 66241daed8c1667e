//! The host's name as the probe reads it, followed when a step changes it.

use super::Ctx;
use crate::state::State;

/// The probe's answer naming the kernel's host name.
const HOSTNAME_ANSWER: &str = "hostname";

pub(super) fn probed_hostname(state: &State) -> Option<String> {
    state
        .facts
        .get(HOSTNAME_ANSWER)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Ctx {
    /// The kernel's host name is now `name` (`hostnamectl set-hostname`): the facts follow,
    /// and so does the probe's answer in the cache (what the host would report now). In check
    /// mode it is the name the host would have.
    pub fn hostname_changed(&mut self, name: &str) {
        self.facts.hostname = name.to_string();
        self.state
            .facts
            .insert(HOSTNAME_ANSWER.into(), name.to_string());
    }
}
