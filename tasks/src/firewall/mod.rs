//! The host firewall: the rules a role needs ([`Rule`]: TCP and UDP ports, other IP protocols
//! on INPUT; networks on FORWARD) hold wherever a host firewall filters traffic, persisted for
//! the next boot and applied live without dropping anything else. The roles give the rules
//! (the tasks know no role). What "the firewall" is depends on the host:
//!
//! - **iptables with a saved ruleset** (Photon OS: `iptables.service` restores
//!   `/etc/systemd/scripts/ip4save` over default-DROP INPUT and FORWARD policies; Debian with
//!   iptables-persistent: `/etc/iptables/rules.v4`). The save file is edited structurally (an
//!   `-A INPUT -p udp -m udp --dport 8472 -j ACCEPT`, `-A INPUT -p 4 -j ACCEPT` or
//!   `-A FORWARD -s 10.244.0.0/16 -j ACCEPT` line per missing rule in the `*filter` table,
//!   everything else kept), checked with `iptables-restore --test` before it replaces the
//!   file; a `*filter` table nodeprep creates keeps ssh open. Each missing rule is added live:
//!   INPUT rules with `iptables -I` at the top, FORWARD rules at the end (before a final
//!   DROP/REJECT). The service is never restarted: Photon's start script flushes every chain
//!   first, which would drop the rules of a running kube-proxy or CNI.
//! - **firewalld** active (RHEL-like): the missing ports and protocols are added to the
//!   runtime and to the permanent configuration of the default zone (`firewall-cmd
//!   [--permanent] --add-port=8472/udp --add-protocol=ipencap`); no `--reload`, which would
//!   drop runtime rules others added. FORWARD rules have no zone setting: the step says they
//!   were not applied, and how to do it.
//! - **nftables** active with a drop policy on an input or forward chain (a hand-written
//!   ruleset): checked, never edited. Missing rules fail the step with the lines to add: an
//!   accept in a table of nodeprep's own would not help, since a packet dropped by any chain is
//!   dropped.
//! - **no firewall** (Debian's default, everything open): skipped, nothing to open.

mod detect;
mod firewalld;
mod iptables;
mod nftables;
mod protocols;
mod rule;

pub use detect::{Firewall, detect};
pub use firewalld::{firewalld_listed, firewalld_ports};
pub use iptables::{
    BASE_INPUT, IP4SAVE, RULES_V4, accepted, accepted_in, accepted_ports, iptables_live,
    iptables_live_forward, iptables_persisted, with_input_rules, with_rules, with_rules_in,
};
pub use nftables::{NftFilter, NftInput, nft_filter, nft_input, nftables_checked};
pub use protocols::{ETC_PROTOCOLS, Protocols, host_protocols};
#[cfg(test)]
pub(crate) use rule::sample;
pub use rule::{Chain, Net, Ports, Proto, Rule, minimal, missing_rules};

use firewalld::{firewalld_can, firewalld_no_forward};

use crate::ctx::{Change, Ctx};
use crate::error::Result;
use crate::reads::Reads;

/// What these tasks read (see [`crate::plan::Reads`]).
/// `/etc/protocols`: the names the host's iptables, nft and firewall-cmd print protocols by.
pub const READS: Reads = Reads::files(&[IP4SAVE, RULES_V4, ETC_PROTOCOLS]).units(&[
    "iptables.service",
    "nftables.service",
    "firewalld.service",
]);

/// Step "firewall ports": `ports` (TCP) are open in the host's firewall, now and after a
/// reboot; only the missing ones are added.
pub fn ports_open(cx: &mut Ctx, ports: &[Ports]) -> Result<Change> {
    if ports.is_empty() {
        return Ok(Change::Skipped("no ports to open for this role".into()));
    }
    let rules: Vec<Rule> = ports.iter().copied().map(Rule::tcp).collect();
    open(cx, &rules)
}

/// Steps "firewall ports" and "firewall forward": `rules` hold in the host's firewall, now
/// and after a reboot; only the missing ones are added. firewalld opens ports and protocols
/// only: FORWARD rules are reported not applied, with the reason, as the step's outcome
/// (which is why the roles open them in a step of their own).
pub fn open(cx: &mut Ctx, rules: &[Rule]) -> Result<Change> {
    if rules.is_empty() {
        return Ok(Change::Skipped("no rules to open for this role".into()));
    }
    match detect(cx)? {
        Firewall::Iptables { save, service } => {
            let persisted = iptables_persisted(cx, save, rules)?;
            let input = iptables_live(cx, service, rules)?;
            Ok(persisted | input | iptables_live_forward(cx, service, rules)?)
        }
        Firewall::Firewalld => {
            let (input, forward): (Vec<Rule>, Vec<Rule>) =
                rules.iter().partition(|r| firewalld_can(r));
            let mut change = if input.is_empty() {
                Change::Unchanged
            } else {
                firewalld_ports(cx, &input)?
            };
            if !forward.is_empty() {
                change |= Change::Skipped(firewalld_no_forward(&forward));
            }
            Ok(change)
        }
        Firewall::Nftables => nftables_checked(cx, rules),
        Firewall::None(why) => Ok(Change::Skipped(why)),
    }
}

/// Hosts and replies the tests of these modules share.
#[cfg(test)]
mod test_hosts {
    use crate::testing::Fixture;

    pub(super) use crate::testing::ok;

    /// As the probe reports them: units that are not installed are known, and absent.
    pub(super) fn photon() -> Fixture {
        Fixture::photon()
            .unit("firewalld.service", "", "inactive")
            .complete()
    }

    pub(super) fn debian() -> Fixture {
        Fixture::debian()
            .unit("firewalld.service", "", "inactive")
            .unit("nftables.service", "", "inactive")
            .complete()
    }

    pub(super) fn rhel() -> Fixture {
        Fixture::rhel()
            .unit("nftables.service", "", "inactive")
            .complete()
    }

    /// `iptables -S INPUT` on a Photon host booted with its default ip4save.
    pub(super) const PHOTON_LIVE: &str = "-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n";
}
