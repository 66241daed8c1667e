//! nftables: reading `nft list ruleset`, and checking a hand-written ruleset (never edited).

use super::protocols::{Protocols, host_protocols};
use super::{Chain, Net, Ports, Proto, Rule, missing_rules};
use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::host::Cmd;

/// What `nft list ruleset` says about incoming traffic: whether a chain on the input hook
/// drops by default, and the TCP ports such chains accept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NftInput {
    pub drops: bool,
    pub accepted: Vec<Ports>,
}

/// Reads `nft list ruleset`: chains hooked on input with `policy drop`, and their
/// `tcp dport P accept` / `tcp dport { P, A-B } accept` rules (rules narrowed by an address or
/// an interface do not count).
pub fn nft_input(ruleset: &str) -> NftInput {
    let f = nft_filter(ruleset);
    NftInput {
        drops: f.input_drops,
        accepted: f
            .accepted
            .iter()
            .filter(|r| r.chain == Chain::Input && r.proto == Some(Proto::Tcp))
            .filter_map(|r| r.ports)
            .collect(),
    }
}

/// What `nft list ruleset` says about the traffic the host firewall filters: whether a
/// chain on the input hook, and one on the forward hook, drops by default, and what the
/// chains that drop accept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NftFilter {
    pub input_drops: bool,
    pub forward_drops: bool,
    pub accepted: Vec<Rule>,
}

/// Reads `nft list ruleset`: chains hooked on input or forward with `policy drop`, and their
/// `tcp dport P accept`, `udp dport { P, A-B } accept`, `meta l4proto 4 accept` (or
/// `ip protocol`), `ip saddr NET accept`, `ip daddr NET accept` rules. Anything narrower
/// (an interface, a second match) does not count.
pub fn nft_filter(ruleset: &str) -> NftFilter {
    nft_filter_in(ruleset, &Protocols::builtin())
}

/// [`nft_filter`], protocol names read through `protocols` (the host's `/etc/protocols`,
/// through which nft printed them).
pub fn nft_filter_in(ruleset: &str, protocols: &Protocols) -> NftFilter {
    let mut out = NftFilter::default();
    let mut rules: Vec<&str> = Vec::new();
    let mut chain: Option<Chain> = None;
    let mut in_chain = false;
    for line in ruleset.lines() {
        let t = line.trim();
        if t.starts_with("chain ") && t.ends_with('{') {
            in_chain = true;
            chain = None;
            rules.clear();
        } else if in_chain && t == "}" {
            if let Some(c) = chain {
                match c {
                    Chain::Input => out.input_drops = true,
                    Chain::Forward => out.forward_drops = true,
                }
                out.accepted
                    .extend(rules.iter().flat_map(|r| nft_rule(c, r, protocols)));
            }
            rules.clear();
            in_chain = false;
        } else if in_chain && t.starts_with("type filter hook ") {
            let hook = t["type filter hook ".len()..].split_whitespace().next();
            chain = match hook {
                Some("input") if t.contains("policy drop") => Some(Chain::Input),
                Some("forward") if t.contains("policy drop") => Some(Chain::Forward),
                _ => None,
            };
        } else if in_chain {
            rules.push(t);
        }
    }
    out
}

/// The items of `P` or `{ P, Q }`.
fn nft_set(spec: &str) -> Vec<&str> {
    let spec = spec.trim();
    let inner = spec
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(spec);
    inner.split(',').map(str::trim).collect()
}

/// What one nft rule of `chain` accepts (see [`nft_filter`]).
fn nft_rule(chain: Chain, rule: &str, protocols: &Protocols) -> Vec<Rule> {
    let Some(spec) = rule.strip_suffix("accept").map(str::trim) else {
        return Vec::new();
    };
    let base = Rule {
        chain,
        proto: None,
        ports: None,
        source: None,
        destination: None,
    };
    if spec.is_empty() {
        return vec![base];
    }
    let ports = |proto: Proto, set: &str| -> Vec<Rule> {
        let parsed: Option<Vec<Ports>> = nft_set(set).into_iter().map(Ports::parse).collect();
        parsed
            .unwrap_or_default()
            .into_iter()
            .map(|p| Rule {
                proto: Some(proto),
                ports: Some(p),
                ..base
            })
            .collect()
    };
    let net = |text: &str| Net::parse(text).ok();
    if let Some(set) = spec.strip_prefix("tcp dport ") {
        ports(Proto::Tcp, set)
    } else if let Some(set) = spec.strip_prefix("udp dport ") {
        ports(Proto::Udp, set)
    } else if let Some(set) = spec
        .strip_prefix("meta l4proto ")
        .or_else(|| spec.strip_prefix("ip protocol "))
    {
        let parsed: Option<Vec<Proto>> = nft_set(set)
            .into_iter()
            .map(|p| protocols.proto(p))
            .collect();
        parsed
            .unwrap_or_default()
            .into_iter()
            .map(|p| Rule {
                proto: Some(p),
                ..base
            })
            .collect()
    } else if let Some(n) = spec.strip_prefix("ip saddr ").and_then(net) {
        vec![Rule {
            source: Some(n),
            ..base
        }]
    } else if let Some(n) = spec.strip_prefix("ip daddr ").and_then(net) {
        vec![Rule {
            destination: Some(n),
            ..base
        }]
    } else {
        Vec::new()
    }
}

/// nftables is active: a ruleset whose input (forward) chain drops by default must already
/// accept the INPUT (FORWARD) rules of `rules` (nodeprep does not edit a hand-written
/// ruleset); a chain that does not drop needs nothing.
pub fn nftables_checked(cx: &mut Ctx, rules: &[Rule]) -> Result<Change> {
    let argv = ["nft", "list", "ruleset"];
    let out = cx.query(&argv)?;
    if !out.success() {
        return Err(crate::host::command_failed(&Cmd::new(&argv), &out));
    }
    let protocols = host_protocols(cx)?;
    let filter = nft_filter_in(&out.stdout_str(), &protocols);
    let drops = |c: Chain| match c {
        Chain::Input => filter.input_drops,
        Chain::Forward => filter.forward_drops,
    };
    let judged: Vec<Rule> = rules.iter().copied().filter(|r| drops(r.chain)).collect();
    if judged.is_empty() {
        let hooks: Vec<&str> = [Chain::Input, Chain::Forward]
            .into_iter()
            .filter(|c| rules.iter().any(|r| r.chain == *c))
            .map(|c| match c {
                Chain::Input => "input",
                Chain::Forward => "forward",
            })
            .collect();
        return Ok(Change::Skipped(format!(
            "nftables is active but no {} chain drops by default: nothing to open",
            hooks.join(" or ")
        )));
    }
    let add = missing_rules(&filter.accepted, &judged);
    if add.is_empty() {
        return Ok(Change::Unchanged);
    }
    Err(Error::new(ErrorKind::Unsupported, nft_advice(&add)))
}

/// What to add to a hand-written ruleset so that it accepts `add`.
fn nft_advice(add: &[Rule]) -> String {
    let of = |chain: Chain, f: &dyn Fn(&Rule) -> Option<String>| -> Vec<String> {
        add.iter()
            .filter(|r| r.chain == chain)
            .filter_map(f)
            .collect()
    };
    let ports = |proto: Proto| {
        move |r: &Rule| {
            (r.proto == Some(proto))
                .then(|| r.ports.map(|p| p.to_string()))
                .flatten()
        }
    };
    let tcp = of(Chain::Input, &ports(Proto::Tcp));
    let udp = of(Chain::Input, &ports(Proto::Udp));
    let protocols = of(Chain::Input, &|r| {
        (r.ports.is_none())
            .then(|| r.proto.map(|p| p.number().to_string()))
            .flatten()
    });
    let sources = of(Chain::Forward, &|r| r.source.map(|n| n.to_string()));
    let destinations = of(Chain::Forward, &|r| r.destination.map(|n| n.to_string()));
    let (mut what, mut input, mut forward) = (Vec::new(), Vec::new(), Vec::new());
    if !tcp.is_empty() {
        what.push(format!("TCP port(s) {}", tcp.join(", ")));
        input.push(format!("`tcp dport {{ {} }} accept`", tcp.join(", ")));
    }
    if !udp.is_empty() {
        what.push(format!("UDP port(s) {}", udp.join(", ")));
        input.push(format!("`udp dport {{ {} }} accept`", udp.join(", ")));
    }
    if !protocols.is_empty() {
        what.push(format!("IP protocol(s) {}", protocols.join(", ")));
        input.push(format!(
            "`meta l4proto {{ {} }} accept`",
            protocols.join(", ")
        ));
    }
    for n in &sources {
        what.push(format!("traffic forwarded from {n}"));
        forward.push(format!("`ip saddr {n} accept`"));
    }
    for n in &destinations {
        what.push(format!("traffic forwarded to {n}"));
        forward.push(format!("`ip daddr {n} accept`"));
    }
    let mut fix = Vec::new();
    if !input.is_empty() {
        fix.push(format!("{} to the input chain", input.join(" and ")));
    }
    if !forward.is_empty() {
        fix.push(format!("{} to the forward chain", forward.join(" and ")));
    }
    format!(
        "nftables drops traffic the cluster needs: it does not accept {}; nodeprep does not edit a \
         hand-written nftables ruleset: add {} of /etc/nftables.conf, then `systemctl reload nftables`",
        what.join("; "),
        fix.join(", and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::firewall::sample::*;
    use crate::firewall::test_hosts::*;
    use crate::firewall::*;
    use expect_test::expect;

    const NFT_DROP: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t\tiif \"lo\" accept\n\t\ttcp dport 22 accept\n\t\ttcp dport { 6443, 2379-2380 } accept\n\t\tip saddr 10.0.0.0/8 tcp dport 10250 accept\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n";

    #[test]
    fn nft_ruleset_read() {
        let got = nft_input(NFT_DROP);
        assert!(got.drops);
        assert_eq!(
            got.accepted,
            [Ports::one(22), Ports::one(6443), Ports::range(2379, 2380)]
        );
        // Debian's default /etc/nftables.conf: accept policies.
        let open = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n";
        assert_eq!(nft_input(open), NftInput::default());
    }

    #[test]
    fn debian_nftables_checked_never_edited() {
        let (mut cx, rec) = debian()
            .unit("nftables.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply("nft list ruleset", ok(NFT_DROP));
        let e = ports_open(&mut cx, MASTER_PORTS).unwrap_err();
        assert!(
            e.message()
                .contains("does not accept TCP port(s) 10250, 10257, 10259")
                && e.message()
                    .contains("tcp dport { 10250, 10257, 10259 } accept"),
            "{e}"
        );
        assert!(cx.actions().is_empty());
        assert_eq!(
            ports_open(&mut cx, BALANCER_PORTS).unwrap(),
            Change::Unchanged,
            "6443 is accepted already"
        );
        let (mut cx, rec) = debian()
            .unit("nftables.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply(
            "nft list ruleset",
            ok("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"),
        );
        assert!(matches!(
            ports_open(&mut cx, MASTER_PORTS).unwrap(),
            Change::Skipped(_)
        ));
    }

    #[test]
    fn nftables_checked_for_udp_protocols_and_forward() {
        let (mut cx, rec) = debian()
            .unit("nftables.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply("nft list ruleset", ok(NFT_DROP));
        let e = open(&mut cx, &[WORKER_RULES, FORWARD_RULES].concat()).unwrap_err();
        expect![[r#"nftables drops traffic the cluster needs: it does not accept TCP port(s) 10250, 30000-32767, 179; UDP port(s) 30000-32767, 4789; IP protocol(s) 4; traffic forwarded from 10.244.0.0/16; traffic forwarded from 10.96.0.0/12; traffic forwarded to 10.244.0.0/16; traffic forwarded to 10.96.0.0/12; nodeprep does not edit a hand-written nftables ruleset: add `tcp dport { 10250, 30000-32767, 179 } accept` and `udp dport { 30000-32767, 4789 } accept` and `meta l4proto { 4 } accept` to the input chain, and `ip saddr 10.244.0.0/16 accept` and `ip saddr 10.96.0.0/12 accept` and `ip daddr 10.244.0.0/16 accept` and `ip daddr 10.96.0.0/12 accept` to the forward chain of /etc/nftables.conf, then `systemctl reload nftables`"#]]
        .assert_eq(e.message());
        // A ruleset that accepts them all.
        let accepting = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport { 10250, 179, 30000-32767 } accept\n\t\tudp dport { 4789, 30000-32767 } accept\n\t\tmeta l4proto ipencap accept\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tip saddr 10.0.0.0/8 accept\n\t\tip daddr 10.0.0.0/8 accept\n\t}\n}\n";
        let (mut cx, rec) = debian()
            .unit("nftables.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply("nft list ruleset", ok(accepting));
        assert_eq!(
            open(&mut cx, &[WORKER_RULES, FORWARD_RULES].concat()).unwrap(),
            Change::Unchanged
        );
        let f = nft_filter(accepting);
        assert!(f.input_drops && f.forward_drops);
        assert!(f.accepted.contains(&Rule::ip(4)));
    }
}
