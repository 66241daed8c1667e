//! iptables: reading `iptables -S` and iptables-save lines, editing the save file (checked
//! with `iptables-restore --test`) and adding the missing rules live.

use super::protocols::{Protocols, host_protocols};
use super::rule::rule_list;
use super::{Chain, Net, Ports, Proto, Rule, missing_rules};
use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::state::ActiveState;
use crate::systemd;

/// Photon OS: the IPv4 rules `iptables.service` restores at start.
pub const IP4SAVE: &str = "/etc/systemd/scripts/ip4save";
/// Debian/Ubuntu with iptables-persistent: the IPv4 rules netfilter-persistent restores.
pub const RULES_V4: &str = "/etc/iptables/rules.v4";

/// The ports an `-A INPUT` rule (iptables-save format) accepts from anywhere: TCP, `--dport`
/// or multiport `--dports`, jump to ACCEPT, and nothing that narrows it (source, interface,
/// negation...). Anything else accepts nothing here.
pub fn accepted_ports(line: &str) -> Vec<Ports> {
    accepted(line)
        .into_iter()
        .filter(|r| {
            r.chain == Chain::Input
                && r.proto == Some(Proto::Tcp)
                && r.source.is_none()
                && r.destination.is_none()
        })
        .filter_map(|r| r.ports)
        .collect()
}

/// What an `-A INPUT` or `-A FORWARD` rule (iptables-save format) accepts: a protocol (`-p`,
/// by name or number), its `--dport`/multiport `--dports`, a source (`-s`) and a destination
/// (`-d`) network, jump to ACCEPT; one [`Rule`] per port set. Anything that narrows it
/// further (an interface, a negation, another match) makes it accept nothing here. Protocol
/// names are the built-in ones; [`accepted_in`] reads them through a host's own table.
pub fn accepted(line: &str) -> Vec<Rule> {
    accepted_in(line, &Protocols::builtin())
}

/// [`accepted`], a `-p NAME` read through `protocols` (the host's `/etc/protocols`, through
/// which iptables printed it): whatever the host calls protocol 4, it is 4.
pub fn accepted_in(line: &str, protocols: &Protocols) -> Vec<Rule> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let chain = match words.get(..2) {
        Some(["-A", "INPUT"]) => Chain::Input,
        Some(["-A", "FORWARD"]) => Chain::Forward,
        _ => return Vec::new(),
    };
    let mut rule = Rule {
        chain,
        proto: None,
        ports: None,
        source: None,
        destination: None,
    };
    let mut accept = false;
    let mut ports = Vec::new();
    let mut i = 2;
    while i < words.len() {
        let value = words.get(i + 1).copied().unwrap_or("");
        match words[i] {
            "-p" | "--protocol" if value == "all" => {}
            "-p" | "--protocol" => match protocols.proto(value) {
                Some(p) => rule.proto = Some(p),
                None => return Vec::new(),
            },
            "-s" | "--source" => match Net::parse(value) {
                Ok(n) => rule.source = Some(n),
                Err(_) => return Vec::new(),
            },
            "-d" | "--destination" => match Net::parse(value) {
                Ok(n) => rule.destination = Some(n),
                Err(_) => return Vec::new(),
            },
            "-m" | "--match"
                if matches!(value, "tcp" | "udp" | "multiport" | "conntrack" | "state") => {}
            "--ctstate" | "--state" if value.split(',').any(|s| s == "NEW") => {}
            "--dport" | "--destination-port" => match Ports::parse(value) {
                Some(p) => ports.push(p),
                None => return Vec::new(),
            },
            "--dports" | "--destination-ports" => {
                for part in value.split(',') {
                    match Ports::parse(part) {
                        Some(p) => ports.push(p),
                        None => return Vec::new(),
                    }
                }
            }
            "-j" | "--jump" if value == "ACCEPT" => accept = true,
            _ => return Vec::new(),
        }
        i += 2;
    }
    if !accept {
        return Vec::new();
    }
    if ports.is_empty() {
        return vec![rule];
    }
    if !rule.proto.is_some_and(|p| p.has_ports()) {
        return Vec::new();
    }
    ports
        .into_iter()
        .map(|p| Rule {
            ports: Some(p),
            ..rule
        })
        .collect()
}

/// A rule that drops or rejects everything left on `chain` (`-A INPUT -j DROP`): new rules go
/// before it.
fn is_catch_all_in(line: &str, chain: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() >= 4
        && w[..3] == ["-A", chain, "-j"]
        && matches!(w[3], "DROP" | "REJECT")
        && (w.len() == 4 || (w.len() == 6 && w[4] == "--reject-with"))
}

/// Photon OS's own INPUT rules (its default ip4save): loopback, replies, ssh. A `*filter`
/// table nodeprep creates starts with them: restoring a filter table flushes its chains, and
/// where the service's policy is DROP (Photon's start script sets it before restoring) a table
/// without them would cut ssh and every reply.
pub const BASE_INPUT: &[&str] = &[
    "-A INPUT -i lo -j ACCEPT",
    "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
];

/// An iptables-save text with an ACCEPT rule for each of `ports` the filter table's INPUT
/// chain does not accept yet. New rules follow the last INPUT rule (before a final
/// `-A INPUT -j DROP/REJECT`, when there is one); a file without a `*filter` table gets one.
/// Every other line is kept as it was.
pub fn with_input_rules(text: &str, ports: &[Ports]) -> Result<String> {
    let rules: Vec<Rule> = ports.iter().copied().map(Rule::tcp).collect();
    with_rules(text, &rules)
}

/// An iptables-save text where the filter table accepts `rules`: each rule it does not accept
/// yet is added to its chain, after the chain's last rule (before a final `-A CHAIN -j
/// DROP/REJECT`, when there is one); a chain without rules gets them after the chains before
/// it. A file without a `*filter` table gets one, starting with [`BASE_INPUT`] (ssh stays
/// open). Every other line is kept as it was.
pub fn with_rules(text: &str, rules: &[Rule]) -> Result<String> {
    with_rules_in(text, rules, &Protocols::builtin())
}

/// [`with_rules`], the file's protocol names read through `protocols` (the host's).
pub fn with_rules_in(text: &str, rules: &[Rule], protocols: &Protocols) -> Result<String> {
    let line = |r: &Rule| format!("-A {} {}", r.chain.iptables(), r.iptables().join(" "));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let Some(start) = lines.iter().position(|l| l.trim() == "*filter") else {
        let base: Vec<Rule> = BASE_INPUT.iter().flat_map(|l| accepted(l)).collect();
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("*filter\n");
        for l in BASE_INPUT {
            out.push_str(l);
            out.push('\n');
        }
        let mut add = missing_rules(&base, rules);
        add.sort_by_key(|r| r.chain);
        for r in &add {
            out.push_str(&line(r));
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        return Ok(out);
    };
    let mut end = lines[start..]
        .iter()
        .position(|l| l.trim() == "COMMIT")
        .map(|i| start + i)
        .ok_or_else(|| {
            Error::invalid("the *filter table has no COMMIT line: not an iptables-save file")
        })?;
    let have: Vec<Rule> = lines[start..end]
        .iter()
        .flat_map(|l| accepted_in(l, protocols))
        .collect();
    let add = missing_rules(&have, rules);
    if add.is_empty() {
        return Ok(text.to_string());
    }
    for chain in [Chain::Input, Chain::Forward] {
        let new: Vec<String> = add.iter().filter(|r| r.chain == chain).map(line).collect();
        if new.is_empty() {
            continue;
        }
        let name = chain.iptables();
        let prefix = format!("-A {name} ");
        let rules_of = |prefix: &str| -> Vec<usize> {
            (start..end)
                .filter(|&i| lines[i].trim_start().starts_with(prefix))
                .collect()
        };
        let own = rules_of(&prefix);
        let at = match own.iter().find(|&&i| is_catch_all_in(&lines[i], name)) {
            Some(&catch_all) => catch_all,
            None => match own.last() {
                Some(&last) => last + 1,
                // The first rules of FORWARD follow INPUT's; INPUT's come before any other.
                None => match (chain, rules_of("-A INPUT ").last(), rules_of("-A ").first()) {
                    (Chain::Forward, Some(&last_input), _) => last_input + 1,
                    (_, _, Some(&first)) => first,
                    _ => end,
                },
            },
        };
        end += new.len();
        lines.splice(at..at, new);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// The save file accepts `rules` (kept mode and owner). A new text is first written beside
/// it and checked with `iptables-restore --test`; only a ruleset iptables accepts replaces
/// the file, so the next boot never meets rules it cannot load (the error carries
/// iptables-restore's messages). Changed: the file was edited.
pub fn iptables_persisted(cx: &mut Ctx, save: &str, rules: &[Rule]) -> Result<Change> {
    let old = match cx.file(save)? {
        Some(f) if !f.is_dir => Some(String::from_utf8(f.content).map_err(|_| {
            Error::new(
                ErrorKind::Invalid,
                format!("{save} is not UTF-8 text; not editing it"),
            )
        })?),
        _ => None,
    };
    let protocols = host_protocols(cx)?;
    let new = with_rules_in(old.as_deref().unwrap_or(""), rules, &protocols)
        .map_err(|e| Error::new(e.kind(), format!("{save}: {}", e.message())))?;
    if old.as_deref() == Some(new.as_str()) {
        return Ok(Change::Unchanged);
    }
    let candidate = format!("{save}.nodeprep-candidate");
    let checker = file::Checker {
        argv: &["iptables-restore", "-w", "10", "--test"],
        rejected: format!(
            "iptables-restore rejected the new rules (`iptables-restore --test`); {save} was left as it was"
        ),
        missing: format!(
            "iptables-restore is not installed, so the new {save} cannot be checked; install iptables"
        ),
    };
    let scratch = file::Perm {
        mode: 0o600,
        owner: "root",
        group: "root",
    };
    file::checked(cx, &candidate, scratch, &new.clone(), checker, |cx| {
        file::edit(cx, save, None, |_| Ok(new))
    })
}

/// The listing of the live INPUT rules, asked once per run.
const LIVE_RULES: [&str; 5] = ["iptables", "-w", "10", "-S", "INPUT"];

/// The live INPUT chain accepts the INPUT rules of `rules`: each missing rule is inserted at
/// the top of INPUT (`iptables -I`, so a final DROP/REJECT rule cannot shadow it); the chain is
/// read once with `iptables -S INPUT`. Nothing happens while `service` is not running (the
/// saved rules apply when it starts).
pub fn iptables_live(cx: &mut Ctx, service: &str, rules: &[Rule]) -> Result<Change> {
    let want: Vec<Rule> = rules
        .iter()
        .copied()
        .filter(|r| r.chain == Chain::Input)
        .collect();
    if want.is_empty() {
        return Ok(Change::Unchanged);
    }
    if systemd::unit(cx, service)?.active != ActiveState::Active {
        return Ok(Change::Skipped(format!(
            "{service} is not running: the saved rules apply when it starts"
        )));
    }
    let protocols = host_protocols(cx)?;
    let mut listing = cx.query_once(&LIVE_RULES)?;
    let have: Vec<Rule> = listing
        .lines()
        .flat_map(|l| accepted_in(l, &protocols))
        .collect();
    let add = missing_rules(&have, &want);
    if add.is_empty() {
        return Ok(Change::Unchanged);
    }
    // Inserted at the top in reverse: they end up in the order given.
    for r in add.iter().rev() {
        let mut argv = vec!["iptables", "-w", "10", "-I", "INPUT"];
        let rule = r.iptables();
        argv.extend(rule.iter().map(String::as_str));
        cx.apply(&argv)?;
        listing.push_str(&format!("-A INPUT {}\n", rule.join(" ")));
    }
    cx.answer_changed(&LIVE_RULES, listing);
    cx.note_change(format!("live iptables: accepting {}", rule_list(&add)));
    Ok(Change::Changed)
}

/// The live FORWARD rules, read once per run.
const LIVE_FORWARD: [&str; 5] = ["iptables", "-w", "10", "-S", "FORWARD"];

/// The live FORWARD chain accepts the FORWARD rules of `rules`; the chain is read once with
/// `iptables -S FORWARD`. Missing rules go before a final `-A FORWARD -j DROP/REJECT`, else
/// at the end (`iptables -A`): not at the top, where they would come before the chains a
/// CNI hooks first into FORWARD to enforce network policies. Nothing happens while `service`
/// is not running (the saved rules apply when it starts).
pub fn iptables_live_forward(cx: &mut Ctx, service: &str, rules: &[Rule]) -> Result<Change> {
    let want: Vec<Rule> = rules
        .iter()
        .copied()
        .filter(|r| r.chain == Chain::Forward)
        .collect();
    if want.is_empty() {
        return Ok(Change::Unchanged);
    }
    if systemd::unit(cx, service)?.active != ActiveState::Active {
        return Ok(Change::Skipped(format!(
            "{service} is not running: the saved rules apply when it starts"
        )));
    }
    let protocols = host_protocols(cx)?;
    let mut listing = cx.query_once(&LIVE_FORWARD)?;
    let have: Vec<Rule> = listing
        .lines()
        .flat_map(|l| accepted_in(l, &protocols))
        .collect();
    let add = missing_rules(&have, &want);
    if add.is_empty() {
        return Ok(Change::Unchanged);
    }
    // `iptables -S` lists the policy (`-P FORWARD DROP`) first, then the rules, numbered from 1.
    let catch_all = listing
        .lines()
        .filter(|l| l.starts_with("-A FORWARD "))
        .position(|l| is_catch_all_in(l, "FORWARD"));
    for (i, r) in add.iter().enumerate() {
        let rule = r.iptables();
        let at = catch_all.map(|n| (n + 1 + i).to_string());
        let mut argv = vec!["iptables", "-w", "10"];
        match &at {
            Some(n) => argv.extend(["-I", "FORWARD", n.as_str()]),
            None => argv.extend(["-A", "FORWARD"]),
        }
        argv.extend(rule.iter().map(String::as_str));
        cx.apply(&argv)?;
        listing.push_str(&format!("-A FORWARD {}\n", rule.join(" ")));
    }
    cx.answer_changed(&LIVE_FORWARD, listing);
    cx.note_change(format!("live iptables: forwarding {}", rule_list(&add)));
    Ok(Change::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::firewall::sample::*;
    use crate::firewall::test_hosts::*;
    use crate::firewall::*;
    use crate::host::Output;
    use crate::testing::{photon_files, plan};
    use expect_test::expect;

    #[test]
    fn rules_recognised() {
        let p = |l| accepted_ports(l);
        assert_eq!(
            p("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
            [Ports::one(22)]
        );
        assert_eq!(
            p("-A INPUT -p tcp -m multiport --dports 80,443,30000:32767 -j ACCEPT"),
            [Ports::one(80), Ports::one(443), Ports::range(30000, 32767)]
        );
        assert_eq!(
            p("-A INPUT -p tcp -m conntrack --ctstate NEW -m tcp --dport 6443 -j ACCEPT"),
            [Ports::one(6443)]
        );
        // Narrowed, or not an accept: they open nothing for everyone.
        assert!(p("-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 6443 -j ACCEPT").is_empty());
        assert!(p("-A INPUT -i eth1 -p tcp -m tcp --dport 6443 -j ACCEPT").is_empty());
        assert!(p("-A INPUT -p tcp -m tcp ! --dport 6443 -j ACCEPT").is_empty());
        assert!(p("-A INPUT -p tcp -m tcp --dport 6443 -j DROP").is_empty());
        assert!(p("-A INPUT -p udp -m udp --dport 6443 -j ACCEPT").is_empty());
        assert!(p("-A FORWARD -p tcp -m tcp --dport 6443 -j ACCEPT").is_empty());
        assert!(p("-A INPUT -i lo -j ACCEPT").is_empty());
    }

    #[test]
    fn photon_ip4save_edited_structurally() {
        let out = with_input_rules(photon_files::IP4SAVE, MASTER_PORTS).unwrap();
        expect![[r#"
            # init
            *filter
            :INPUT DROP [0:0]
            :FORWARD DROP [0:0]
            :OUTPUT DROP [0:0]
            # Allow local-only connections
            -A INPUT -i lo -j ACCEPT
            -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            #keep commented till upgrade issues are sorted
            #-A INPUT -j LOG --log-prefix "FIREWALL:INPUT "
            -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 2379:2380 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 10257 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 10259 -j ACCEPT
            -A OUTPUT -j ACCEPT
            COMMIT
        "#]]
        .assert_eq(&out);
        assert_eq!(
            with_input_rules(&out, MASTER_PORTS).unwrap(),
            out,
            "a second edit changes nothing"
        );
        // A worker on the same file later gets only what it lacks.
        let both = with_input_rules(&out, WORKER_PORTS).unwrap();
        let added: Vec<&str> = both.lines().filter(|l| !out.contains(*l)).collect();
        assert_eq!(
            added,
            ["-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT"]
        );
    }

    #[test]
    fn rules_go_before_a_final_drop_and_other_tables_stay() {
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 80\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n";
        let out = with_input_rules(text, BALANCER_PORTS).unwrap();
        expect![[r#"
            *nat
            :PREROUTING ACCEPT [0:0]
            -A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 80
            COMMIT
            *filter
            :INPUT ACCEPT [0:0]
            -A INPUT -i lo -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
            -A INPUT -j REJECT --reject-with icmp-host-prohibited
            COMMIT
        "#]]
        .assert_eq(&out);
        // No filter table: one is added. A filter table without COMMIT is refused.
        // ... starting with Photon's own INPUT rules: ssh stays open (see created_table_keeps_ssh).
        assert_eq!(
            with_input_rules("", BALANCER_PORTS).unwrap(),
            format!(
                "*filter\n{}\n-A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT\nCOMMIT\n",
                BASE_INPUT.join("\n")
            )
        );
        assert!(with_input_rules("*filter\n-A INPUT -j ACCEPT\n", BALANCER_PORTS).is_err());
    }

    #[test]
    fn photon_master_plan() {
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(PHOTON_LIVE));
        assert_eq!(ports_open(&mut cx, MASTER_PORTS).unwrap(), Change::Changed);
        expect![[r#"
            write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
            run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
            write /etc/systemd/scripts/ip4save 0644 root:root
            run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10259 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10257 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 2379:2380 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        "#]]
        .assert_eq(&plan(&cx));
        // Never a restart of iptables.service: it would flush every chain.
        assert!(
            !rec.commands()
                .iter()
                .any(|c| c.display().contains("restart")),
            "{:?}",
            rec.commands()
        );
        let saved = cx.state().files[IP4SAVE].as_ref().unwrap().text();
        assert!(saved.contains("-A INPUT -p tcp -m tcp --dport 2379:2380 -j ACCEPT\n"));
        // Run again in the same context: everything is known, nothing is sent.
        let sent = rec.commands().len();
        assert_eq!(
            ports_open(&mut cx, MASTER_PORTS).unwrap(),
            Change::Unchanged
        );
        assert_eq!(rec.commands().len(), sent);
    }

    #[test]
    fn photon_no_change() {
        let saved = with_input_rules(photon_files::IP4SAVE, WORKER_PORTS).unwrap();
        let live = format!(
            "{PHOTON_LIVE}-A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT\n"
        );
        let (mut cx, rec) = photon().file(IP4SAVE, &saved, 0o644).ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(&live));
        assert_eq!(
            ports_open(&mut cx, WORKER_PORTS).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty(), "{}", plan(&cx));
        // One read-only query: the live INPUT chain.
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(sent, ["iptables -w 10 -S INPUT"]);
    }

    /// The plan of a save file edit alone: checked as a candidate, then in place.
    const SAVED_ONLY: &str = "write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root\nrun iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate\nwrite /etc/systemd/scripts/ip4save 0644 root:root\nrun rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate\n";

    #[test]
    fn photon_live_only_and_saved_only() {
        // Rules added by hand live (lost at the next restart): only the file is edited.
        let live = format!("{PHOTON_LIVE}-A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT\n");
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(&live));
        assert!(ports_open(&mut cx, BALANCER_PORTS).unwrap().changed());
        assert_eq!(plan(&cx), SAVED_ONLY);
        // iptables.service stopped: the file only, nothing live, nothing queried.
        let (mut cx, rec) = photon()
            .unit("iptables.service", "disabled", "inactive")
            .ctx(Mode::Apply);
        assert!(ports_open(&mut cx, BALANCER_PORTS).unwrap().changed());
        assert_eq!(plan(&cx), SAVED_ONLY);
        assert!(
            rec.commands()
                .iter()
                .all(|c| !c.display().starts_with("iptables "))
        );
    }

    #[test]
    fn photon_check_mode_touches_nothing() {
        let (mut cx, rec) = photon().ctx(Mode::Check);
        rec.reply("iptables -w 10 -S INPUT", ok(PHOTON_LIVE));
        assert!(ports_open(&mut cx, WORKER_PORTS).unwrap().changed());
        expect![[r#"
            write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
            run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
            write /etc/systemd/scripts/ip4save 0644 root:root
            run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
        "#]]
        .assert_eq(&plan(&cx));
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(
            sent,
            ["iptables -w 10 -S INPUT"],
            "only the read-only query"
        );
    }

    #[test]
    fn debian_iptables_persistent() {
        let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        let (mut cx, rec) = debian()
            .file(RULES_V4, rules, 0o640)
            .unit("netfilter-persistent.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply(
            "iptables -w 10 -S INPUT",
            ok("-P INPUT DROP\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"),
        );
        assert!(ports_open(&mut cx, BALANCER_PORTS).unwrap().changed());
        expect![[r#"
            write /etc/iptables/rules.v4.nodeprep-candidate 0600 root:root
            run iptables-restore -w 10 --test /etc/iptables/rules.v4.nodeprep-candidate
            write /etc/iptables/rules.v4 0640 root:root
            run rm -f /etc/iptables/rules.v4.nodeprep-candidate
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn rules_of_every_kind_recognised() {
        let one = |l: &str| {
            let r = accepted(l);
            assert_eq!(r.len(), 1, "{l}: {r:?}");
            r[0]
        };
        assert_eq!(
            one("-A INPUT -p udp -m udp --dport 8472 -j ACCEPT"),
            Rule::udp(Ports::one(8472))
        );
        // iptables -S names protocol 4 from /etc/protocols where it can, or prints the number.
        assert_eq!(one("-A INPUT -p ipencap -j ACCEPT"), Rule::ip(4));
        assert_eq!(one("-A INPUT -p 4 -j ACCEPT"), Rule::ip(4));
        let pods = Net::new(10, 244, 0, 0, 16);
        assert_eq!(
            one("-A FORWARD -s 10.244.0.0/16 -j ACCEPT"),
            Rule::forward_from(pods)
        );
        assert_eq!(
            one("-A FORWARD -d 10.244.0.0/16 -j ACCEPT"),
            Rule::forward_to(pods)
        );
        // An unconditional accept covers everything of its chain, and only of its chain.
        let all = one("-A FORWARD -j ACCEPT");
        assert!(all.covers(&Rule::forward_to(pods)));
        assert!(!all.covers(&Rule::ip(4)));
        // Narrower than the rule wanted: it does not count.
        let narrow = one("-A FORWARD -s 10.244.1.0/24 -j ACCEPT");
        assert!(!narrow.covers(&Rule::forward_from(pods)));
        assert!(Rule::forward_from(pods).covers(&narrow));
        assert!(accepted("-A FORWARD -i cni0 -j ACCEPT").is_empty());
        assert!(accepted("-A INPUT -p 4 -j DROP").is_empty());
        assert!(accepted("-A INPUT -p 4 --dport 5 -j ACCEPT").is_empty());
        assert!(accepted("-A OUTPUT -p udp -m udp --dport 8472 -j ACCEPT").is_empty());
        // A UDP range covers a port of it, never a TCP port.
        let udp = Rule::udp(Ports::range(30000, 32767));
        assert!(udp.covers(&Rule::udp(Ports::one(30080))));
        assert!(!udp.covers(&Rule::tcp(Ports::one(30080))));
        // A port inside a range given too is not added twice.
        assert_eq!(
            minimal(&[
                Rule::tcp(Ports::one(30080)),
                Rule::tcp(Ports::range(30000, 32767)),
                Rule::tcp(Ports::range(30000, 32767)),
            ]),
            [Rule::tcp(Ports::range(30000, 32767))]
        );
    }

    /// `iptables-restore --test` of this machine on `text`, when it has one that may parse
    /// rules here (it needs no change to the live rules, but root); `None` otherwise. In CI
    /// (`CI=true`), which installs iptables, a missing iptables-restore fails the test.
    fn restore_test(text: &str) -> Option<Output> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ip4save");
        std::fs::write(&file, text).unwrap();
        let path = file.display().to_string();
        let out = crate::testing::run_checker(
            &["iptables-restore", "-w", "10", "--test", &path],
            "iptables",
            "the rules",
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("ermission denied") || stderr.contains("not permitted") {
            eprintln!("iptables-restore --test not run here: {}", stderr.trim());
            return None;
        }
        Some(out)
    }

    #[test]
    fn photon_ip4save_takes_udp_protocol_and_forward_rules() {
        let rules = [WORKER_RULES, FORWARD_RULES].concat();
        let out = with_rules(photon_files::IP4SAVE, &rules).unwrap();
        expect![[r#"
            # init
            *filter
            :INPUT DROP [0:0]
            :FORWARD DROP [0:0]
            :OUTPUT DROP [0:0]
            # Allow local-only connections
            -A INPUT -i lo -j ACCEPT
            -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            #keep commented till upgrade issues are sorted
            #-A INPUT -j LOG --log-prefix "FIREWALL:INPUT "
            -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
            -A INPUT -p udp -m udp --dport 30000:32767 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 179 -j ACCEPT
            -A INPUT -p udp -m udp --dport 4789 -j ACCEPT
            -A INPUT -p 4 -j ACCEPT
            -A FORWARD -s 10.244.0.0/16 -j ACCEPT
            -A FORWARD -d 10.244.0.0/16 -j ACCEPT
            -A FORWARD -s 10.96.0.0/12 -j ACCEPT
            -A FORWARD -d 10.96.0.0/12 -j ACCEPT
            -A OUTPUT -j ACCEPT
            COMMIT
        "#]]
        .assert_eq(&out);
        assert_eq!(
            with_rules(&out, &rules).unwrap(),
            out,
            "a second edit changes nothing"
        );
        // Every line of Photon's file is kept, in its order.
        let kept: Vec<&str> = out
            .lines()
            .filter(|l| photon_files::IP4SAVE.lines().any(|o| o == *l))
            .collect();
        assert_eq!(kept, photon_files::IP4SAVE.lines().collect::<Vec<_>>());
        // FORWARD rules alone, on Photon's file: after INPUT's, before OUTPUT's.
        let forward = with_rules(photon_files::IP4SAVE, FORWARD_RULES).unwrap();
        let tail: Vec<&str> = forward.lines().rev().take(6).collect();
        assert_eq!(
            tail,
            [
                "COMMIT",
                "-A OUTPUT -j ACCEPT",
                "-A FORWARD -d 10.96.0.0/12 -j ACCEPT",
                "-A FORWARD -s 10.96.0.0/12 -j ACCEPT",
                "-A FORWARD -d 10.244.0.0/16 -j ACCEPT",
                "-A FORWARD -s 10.244.0.0/16 -j ACCEPT",
            ]
        );
        // The real iptables-restore takes it (where this machine can say).
        if let Some(checked) = restore_test(&out) {
            assert!(checked.success(), "{checked:?}");
        }
    }

    #[test]
    fn created_table_keeps_ssh() {
        // A save file without a filter table (only NAT rules): nodeprep adds one, which the
        // service will restore over a DROP policy.
        let nat_only = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE\nCOMMIT\n";
        let out = with_rules(nat_only, &[WORKER_RULES, FORWARD_RULES].concat()).unwrap();
        expect![[r#"
            *nat
            :POSTROUTING ACCEPT [0:0]
            -A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
            COMMIT
            *filter
            -A INPUT -i lo -j ACCEPT
            -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
            -A INPUT -p udp -m udp --dport 30000:32767 -j ACCEPT
            -A INPUT -p tcp -m tcp --dport 179 -j ACCEPT
            -A INPUT -p udp -m udp --dport 4789 -j ACCEPT
            -A INPUT -p 4 -j ACCEPT
            -A FORWARD -s 10.244.0.0/16 -j ACCEPT
            -A FORWARD -d 10.244.0.0/16 -j ACCEPT
            -A FORWARD -s 10.96.0.0/12 -j ACCEPT
            -A FORWARD -d 10.96.0.0/12 -j ACCEPT
            COMMIT
        "#]]
        .assert_eq(&out);
        let have: Vec<Rule> = out.lines().flat_map(accepted).collect();
        assert!(
            have.iter().any(|r| r.covers(&Rule::tcp(Ports::one(22)))),
            "ssh must stay open in a table nodeprep creates"
        );
        // FORWARD rules alone: the created table still opens ssh.
        let forward_only = with_rules("", FORWARD_RULES).unwrap();
        assert!(forward_only.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"));
        if let Some(checked) = restore_test(&out) {
            assert!(checked.success(), "{checked:?}");
        }
    }

    #[test]
    fn photon_rejected_rules_never_go_live() {
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply(
            "iptables-restore",
            Output {
                status: Some(2),
                stdout: Vec::new(),
                stderr: b"iptables-restore v1.8.9 (nf_tables): unknown protocol \"bogus\" specified\nError occurred at line: 12\n".to_vec(),
            },
        );
        let e = open(&mut cx, WORKER_RULES).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(
            e.message()
                .contains("iptables-restore rejected the new rules")
                && e.message()
                    .contains("/etc/systemd/scripts/ip4save was left as it was"),
            "{e}"
        );
        assert!(
            e.stderr_tail().contains("Error occurred at line: 12"),
            "{e}"
        );
        expect![[r#"
            write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
            run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
            run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
        "#]]
        .assert_eq(&plan(&cx));
        assert_eq!(
            cx.state().files[IP4SAVE].as_ref().unwrap().text(),
            photon_files::IP4SAVE
        );
        // Not installed: said so.
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply(
            "iptables-restore",
            Output {
                status: Some(127),
                ..Default::default()
            },
        );
        let e = open(&mut cx, WORKER_RULES).unwrap_err();
        assert!(
            e.message().starts_with("iptables-restore is not installed"),
            "{e}"
        );
    }

    #[test]
    fn photon_worker_rules_live() {
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(PHOTON_LIVE));
        rec.reply("iptables -w 10 -S FORWARD", ok("-P FORWARD DROP\n"));
        let rules = [WORKER_RULES, FORWARD_RULES].concat();
        assert!(open(&mut cx, &rules).unwrap().changed());
        expect![[r#"
            write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
            run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
            write /etc/systemd/scripts/ip4save 0644 root:root
            run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
            run iptables -w 10 -I INPUT -p 4 -j ACCEPT
            run iptables -w 10 -I INPUT -p udp -m udp --dport 4789 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 179 -j ACCEPT
            run iptables -w 10 -I INPUT -p udp -m udp --dport 30000:32767 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
            run iptables -w 10 -A FORWARD -s 10.244.0.0/16 -j ACCEPT
            run iptables -w 10 -A FORWARD -d 10.244.0.0/16 -j ACCEPT
            run iptables -w 10 -A FORWARD -s 10.96.0.0/12 -j ACCEPT
            run iptables -w 10 -A FORWARD -d 10.96.0.0/12 -j ACCEPT
        "#]]
        .assert_eq(&plan(&cx));
        assert!(
            !rec.commands()
                .iter()
                .any(|c| c.display().contains("restart")),
            "iptables.service is never restarted"
        );
        let sent = rec.commands().len();
        assert_eq!(open(&mut cx, &rules).unwrap(), Change::Unchanged);
        assert_eq!(rec.commands().len(), sent, "everything is known");
    }

    #[test]
    fn live_rules_found_as_iptables_lists_them() {
        // Protocol 4 listed by name, the NodePorts by a multiport rule, FORWARD by Docker's
        // chains and a final REJECT: only the pods' networks are missing, and go before it.
        let saved = with_rules(
            photon_files::IP4SAVE,
            &[WORKER_RULES, FORWARD_RULES].concat(),
        )
        .unwrap();
        let input = format!(
            "{PHOTON_LIVE}-A INPUT -p ipencap -j ACCEPT\n-A INPUT -p udp -m udp --dport 4789 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 179 -j ACCEPT\n-A INPUT -p udp -m multiport --dports 30000:32767 -j ACCEPT\n-A INPUT -p tcp -m multiport --dports 10250,30000:32767 -j ACCEPT\n"
        );
        let forward = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -s 10.96.0.0/12 -j ACCEPT\n-A FORWARD -d 10.96.0.0/12 -j ACCEPT\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n";
        let (mut cx, rec) = photon().file(IP4SAVE, &saved, 0o644).ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(&input));
        rec.reply("iptables -w 10 -S FORWARD", ok(forward));
        assert!(
            open(&mut cx, &[WORKER_RULES, FORWARD_RULES].concat())
                .unwrap()
                .changed()
        );
        expect![[r#"
            run iptables -w 10 -I FORWARD 4 -s 10.244.0.0/16 -j ACCEPT
            run iptables -w 10 -I FORWARD 5 -d 10.244.0.0/16 -j ACCEPT
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn protocol_names_read_through_the_hosts_file() {
        use crate::firewall::protocols::{IANA, NETBASE};
        let netbase = Protocols::parse(NETBASE);
        let iana = Protocols::parse(IANA);
        assert_eq!(
            accepted_in("-A INPUT -p ipencap -j ACCEPT", &netbase),
            [Rule::ip(4)]
        );
        assert_eq!(
            accepted_in("-A INPUT -p ipv4 -j ACCEPT", &iana),
            [Rule::ip(4)]
        );
        // ipip is 94 in both files, never Linux's IPIP.
        assert_eq!(
            accepted_in("-A INPUT -p ipip -j ACCEPT", &iana),
            [Rule::ip(94)]
        );
        // A name only this host's file knows.
        let odd = Protocols::parse("ip-in-ip 4 IP-in-IP\n");
        assert_eq!(
            accepted_in("-A INPUT -p ip-in-ip -j ACCEPT", &odd),
            [Rule::ip(4)]
        );
        assert!(accepted("-A INPUT -p ip-in-ip -j ACCEPT").is_empty());
    }

    #[test]
    fn calico_converged_on_a_host_naming_protocol_4_its_own_way() {
        // iptables -S and a saved file name protocol 4 as the host's /etc/protocols does:
        // the rules hold, nothing is sent.
        let protocols = "ip-in-ip\t4\tIP-in-IP\t# as named by this host\n";
        let rules = [Rule::ip(4), Rule::udp(Ports::one(4789))];
        let saved = photon_files::IP4SAVE.replace(
            "COMMIT",
            "-A INPUT -p ip-in-ip -j ACCEPT\n-A INPUT -p udp -m udp --dport 4789 -j ACCEPT\nCOMMIT",
        );
        let live = format!(
            "{PHOTON_LIVE}-A INPUT -p ip-in-ip -j ACCEPT\n-A INPUT -p udp -m udp --dport 4789 -j ACCEPT\n"
        );
        let host = || {
            photon()
                .file(IP4SAVE, &saved, 0o644)
                .file(ETC_PROTOCOLS, protocols, 0o644)
        };
        let (mut cx, rec) = host().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(&live));
        assert_eq!(open(&mut cx, &rules).unwrap(), Change::Unchanged);
        assert_eq!(plan(&cx), "", "nothing changed");
        // Without the host's file the name is unknown: the rule would be added again.
        let (mut cx, rec) = photon().file(IP4SAVE, &saved, 0o644).ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(&live));
        assert!(open(&mut cx, &rules).unwrap().changed());
    }
}
