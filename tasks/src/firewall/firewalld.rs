//! firewalld: what the default zone accepts, and adding the missing ports and protocols.

use super::protocols::{Protocols, host_protocols};
use super::rule::rule_list;
use super::{Chain, Ports, Proto, Rule, missing_rules};
use crate::ctx::{Change, Ctx};
use crate::error::Result;

/// What a zone accepts, from `firewall-cmd --list-ports` (`6443/tcp 8472/udp`) and
/// `firewall-cmd --list-protocols` (`ipencap 112`).
pub fn firewalld_listed(ports: &str, protocols: &str) -> Vec<Rule> {
    firewalld_listed_in(ports, protocols, &Protocols::builtin())
}

/// [`firewalld_listed`], the protocol names read through `names` (the host's
/// `/etc/protocols`, which firewalld checks them against).
pub fn firewalld_listed_in(ports: &str, protocols: &str, names: &Protocols) -> Vec<Rule> {
    let ports = ports.split_whitespace().filter_map(|w| {
        let (ports, proto) = w.split_once('/')?;
        let ports = Ports::parse(ports)?;
        match proto {
            "tcp" => Some(Rule::tcp(ports)),
            "udp" => Some(Rule::udp(ports)),
            _ => None,
        }
    });
    let protocols = protocols
        .split_whitespace()
        .filter_map(|p| names.proto(p))
        .map(Rule::proto);
    ports.chain(protocols).collect()
}

/// firewalld has a zone setting for the rule: incoming, a protocol, from anywhere.
pub(super) fn firewalld_can(r: &Rule) -> bool {
    r.chain == Chain::Input && r.proto.is_some() && r.source.is_none() && r.destination.is_none()
}

/// The protocol as `firewall-cmd --add-protocol` takes it: the host's name for it (firewalld
/// checks names against the host's `/etc/protocols`), else the number.
fn firewalld_proto(p: Proto, names: &Protocols) -> String {
    names
        .name(p.number())
        .unwrap_or_else(|| p.number().to_string())
}

/// The `firewall-cmd` option that adds `r` to a zone.
fn firewalld_flag(r: &Rule, names: &Protocols) -> String {
    match (r.proto, r.ports) {
        (Some(p), Some(ports)) if p.has_ports() => format!("--add-port={ports}/{p}"),
        (Some(p), _) => format!("--add-protocol={}", firewalld_proto(p, names)),
        (None, _) => unreachable!("firewalld_can keeps rules with a protocol"),
    }
}

/// Why firewalld hosts do not get `rules` (FORWARD rules, or rules narrowed by address), for
/// the step's outcome.
pub(super) fn firewalld_no_forward(rules: &[Rule]) -> String {
    let shown: Vec<String> = rules.iter().map(Rule::to_string).collect();
    let sources: Vec<String> = rules
        .iter()
        .filter_map(|r| r.source.or(r.destination))
        .map(|n| n.to_string())
        .collect();
    let example = sources.first().map_or(String::new(), |n| {
        format!(
            " (`firewall-cmd --permanent --zone=trusted --add-source={n}`, then the same without --permanent)"
        )
    });
    format!(
        "firewalld: not applied: {}. firewalld opens ports and protocols per zone and has no rule \
         that accepts traffic by address; where firewalld filters forwarded traffic, add these \
         networks as sources of a zone that accepts them{example}",
        shown.join(", ")
    )
}

/// The default zone accepts `rules` (ports and protocols; see [`super::open`] for the others),
/// in the runtime and the permanent configuration (each read once, only the missing rules
/// added to each).
pub fn firewalld_ports(cx: &mut Ctx, rules: &[Rule]) -> Result<Change> {
    let want: Vec<Rule> = rules.iter().copied().filter(firewalld_can).collect();
    let protocols_wanted = want.iter().any(|r| r.ports.is_none());
    let names = host_protocols(cx)?;
    let mut change = Change::Unchanged;
    for permanent in [false, true] {
        let list: &[&str] = if permanent {
            &["firewall-cmd", "--permanent", "--list-ports"]
        } else {
            &["firewall-cmd", "--list-ports"]
        };
        let listing = cx.query_once(list)?.trim().to_string();
        let protocols_list: &[&str] = if permanent {
            &["firewall-cmd", "--permanent", "--list-protocols"]
        } else {
            &["firewall-cmd", "--list-protocols"]
        };
        let protocols = if protocols_wanted {
            cx.query_once(protocols_list)?.trim().to_string()
        } else {
            String::new()
        };
        let add = missing_rules(&firewalld_listed_in(&listing, &protocols, &names), &want);
        if add.is_empty() {
            continue;
        }
        let mut listing = listing;
        let mut protocols = protocols;
        let flags: Vec<String> = add.iter().map(|r| firewalld_flag(r, &names)).collect();
        let mut argv = vec!["firewall-cmd"];
        if permanent {
            argv.push("--permanent");
        }
        argv.extend(flags.iter().map(String::as_str));
        cx.apply(&argv)?;
        for r in &add {
            let (list, item) = match (r.proto, r.ports) {
                (Some(p), Some(ports)) => (&mut listing, format!("{ports}/{p}")),
                (Some(p), None) => (&mut protocols, firewalld_proto(p, &names)),
                (None, _) => continue,
            };
            if !list.is_empty() {
                list.push(' ');
            }
            list.push_str(&item);
        }
        cx.answer_changed(list, listing);
        if protocols_wanted {
            cx.answer_changed(protocols_list, protocols);
        }
        cx.note_change(format!(
            "firewalld ({}): accepting {}",
            if permanent { "permanent" } else { "runtime" },
            rule_list(&add)
        ));
        change = Change::Changed;
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use crate::ctx::Change;
    use crate::ctx::Mode;
    use crate::firewall::sample::*;
    use crate::firewall::test_hosts::*;
    use crate::firewall::*;
    use crate::testing::plan;
    use expect_test::expect;

    #[test]
    fn rhel_firewalld() {
        let (mut cx, rec) = rhel()
            .unit("firewalld.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply("firewall-cmd --list-ports", ok("10250/tcp\n"));
        rec.reply("firewall-cmd --permanent --list-ports", ok("\n"));
        assert!(ports_open(&mut cx, WORKER_PORTS).unwrap().changed());
        expect![[r#"
            run firewall-cmd --add-port=30000-32767/tcp
            run firewall-cmd --permanent --add-port=10250/tcp --add-port=30000-32767/tcp
        "#]]
        .assert_eq(&plan(&cx));
        assert!(!plan(&cx).contains("--reload"));
        let sent = rec.commands().len();
        assert_eq!(
            ports_open(&mut cx, WORKER_PORTS).unwrap(),
            Change::Unchanged
        );
        assert_eq!(rec.commands().len(), sent, "the listings are cached");
    }

    #[test]
    fn rhel_firewalld_no_change() {
        let (mut cx, rec) = rhel()
            .unit("firewalld.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply(
            "firewall-cmd",
            ok("22/tcp 6443/tcp 2379-2380/tcp 10250/tcp 10257/tcp 10259/tcp\n"),
        );
        assert_eq!(
            ports_open(&mut cx, MASTER_PORTS).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty(), "{}", plan(&cx));
    }

    #[test]
    fn rhel_firewalld_udp_and_protocols() {
        let (mut cx, rec) = rhel()
            .unit("firewalld.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply("firewall-cmd --list-ports", ok("10250/tcp 4789/udp\n"));
        rec.reply("firewall-cmd --list-protocols", ok("\n"));
        rec.reply("firewall-cmd --permanent --list-ports", ok("\n"));
        rec.reply("firewall-cmd --permanent --list-protocols", ok("ipencap\n"));
        assert!(open(&mut cx, WORKER_RULES).unwrap().changed());
        expect![[r#"
            run firewall-cmd --add-port=30000-32767/tcp --add-port=30000-32767/udp --add-port=179/tcp --add-protocol=ipencap
            run firewall-cmd --permanent --add-port=10250/tcp --add-port=30000-32767/tcp --add-port=30000-32767/udp --add-port=179/tcp --add-port=4789/udp
        "#]]
        .assert_eq(&plan(&cx));
        let sent = rec.commands().len();
        assert_eq!(open(&mut cx, WORKER_RULES).unwrap(), Change::Unchanged);
        assert_eq!(rec.commands().len(), sent, "the listings are cached");
        // FORWARD rules: firewalld has no zone setting for them. The outcome says so, and how.
        let c = open(&mut cx, FORWARD_RULES).unwrap();
        let Change::Skipped(why) = &c else {
            panic!("{c:?}")
        };
        assert!(
            why.starts_with(
                "firewalld: not applied: forward from 10.244.0.0/16, forward to 10.244.0.0/16"
            ) && why.contains("--zone=trusted --add-source=10.244.0.0/16"),
            "{why}"
        );
        assert_eq!(rec.commands().len(), sent, "nothing sent for them");
    }
}
