//! Which firewall a host runs, from the probe's units and files.

use super::{IP4SAVE, RULES_V4};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::ActiveState;
use crate::systemd;

/// Which firewall filters this host's incoming traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firewall {
    /// iptables restored from a save file by a service.
    Iptables {
        save: &'static str,
        service: &'static str,
    },
    Firewalld,
    Nftables,
    /// Nothing filters: the reason, for the record.
    None(String),
}

/// The firewall of this host, from the probe's units and files.
pub fn detect(cx: &mut Ctx) -> Result<Firewall> {
    if systemd::unit(cx, "firewalld.service")?.active == ActiveState::Active {
        return Ok(Firewall::Firewalld);
    }
    if cx.file(IP4SAVE)?.is_some() {
        return Ok(Firewall::Iptables {
            save: IP4SAVE,
            service: "iptables.service",
        });
    }
    if cx.file(RULES_V4)?.is_some() {
        return Ok(Firewall::Iptables {
            save: RULES_V4,
            service: "netfilter-persistent.service",
        });
    }
    if systemd::unit(cx, "nftables.service")?.active == ActiveState::Active {
        return Ok(Firewall::Nftables);
    }
    Ok(Firewall::None(
        "no host firewall is active (no firewalld, no nftables.service, no saved iptables rules): \
         nothing to open"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ctx::Change;
    use crate::ctx::Mode;
    use crate::firewall::sample::*;
    use crate::firewall::test_hosts::*;
    use crate::firewall::*;

    #[test]
    fn debian_without_firewall_skipped() {
        let (mut cx, _rec) = debian().ctx(Mode::Apply);
        let c = ports_open(&mut cx, MASTER_PORTS).unwrap();
        assert!(
            matches!(&c, Change::Skipped(r) if r.starts_with("no host firewall is active")),
            "{c:?}"
        );
        assert!(cx.actions().is_empty());
    }
}
