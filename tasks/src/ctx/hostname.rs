//! The host's name as the probe reads it, followed when a step changes it.

use super::Ctx;

impl Ctx {
    /// The kernel's host name is now `name` (`hostnamectl set-hostname`): the facts follow,
    /// and so does the probe's answer in the cache (what the host would report now). In check
    /// mode it is the name the host would have.
    pub fn hostname_changed(&mut self, name: &str) {
        self.facts.hostname = name.to_string();
        self.state.facts.hostname = Some(name.to_string());
    }
}
