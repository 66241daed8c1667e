//! The host firewall: the Kubernetes ports of a role open wherever a host firewall filters
//! incoming traffic, persisted for the next boot and applied live without dropping anything
//! else. What "the firewall" is depends on the host:
//!
//! - **iptables with a saved ruleset** (Photon OS: `iptables.service` restores
//!   `/etc/systemd/scripts/ip4save` over a default-DROP INPUT policy; Debian with
//!   iptables-persistent: `/etc/iptables/rules.v4`). The save file is edited structurally (an
//!   `-A INPUT -p tcp -m tcp --dport PORT -j ACCEPT` line per missing port in the `*filter`
//!   table, everything else kept), and each missing rule is inserted live with `iptables -I`.
//!   The service is never restarted: Photon's start script flushes every chain first, which
//!   would drop the rules of a running kube-proxy or CNI.
//! - **firewalld** active (RHEL-like): the missing ports are added to the runtime and to the
//!   permanent configuration of the default zone (`firewall-cmd [--permanent] --add-port`); no
//!   `--reload`, which would drop runtime rules others added.
//! - **nftables** active with a drop policy on an input chain (a hand-written ruleset): checked,
//!   never edited. Missing ports fail the step with the rule to add: an accept in a table of
//!   nodeprep's own would not help, since a packet dropped by any input chain is dropped.
//! - **no firewall** (Debian's default, everything open): skipped, nothing to open.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::host::Cmd;
use crate::plan::Reads;
use crate::systemd;

/// Photon OS: the IPv4 rules `iptables.service` restores at start.
pub const IP4SAVE: &str = "/etc/systemd/scripts/ip4save";
/// Debian/Ubuntu with iptables-persistent: the IPv4 rules netfilter-persistent restores.
pub const RULES_V4: &str = "/etc/iptables/rules.v4";

/// A TCP port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ports {
    pub from: u16,
    pub to: u16,
}

impl Ports {
    pub const fn one(port: u16) -> Ports {
        Ports {
            from: port,
            to: port,
        }
    }

    pub const fn range(from: u16, to: u16) -> Ports {
        Ports { from, to }
    }

    /// `6443` or `2379:2380`, as iptables writes `--dport`.
    pub fn iptables(&self) -> String {
        if self.from == self.to {
            self.from.to_string()
        } else {
            format!("{}:{}", self.from, self.to)
        }
    }

    /// `6443/tcp` or `2379-2380/tcp`, as firewall-cmd writes ports.
    pub fn firewalld(&self) -> String {
        format!("{self}/tcp")
    }

    /// Every port of `other` is one of these.
    pub fn contains(&self, other: &Ports) -> bool {
        self.from <= other.from && other.to <= self.to
    }

    /// `80`, `2379-2380`, `2379:2380`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Ports> {
        let text = text.trim();
        match text.split_once([':', '-']) {
            Some((a, b)) => {
                let (from, to) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                (from <= to).then_some(Ports { from, to })
            }
            None => text.parse().ok().map(Ports::one),
        }
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// Sample port sets for the tests (the roles own the real ones, in the playbooks crate).
#[cfg(test)]
pub(crate) mod sample {
    use super::Ports;
    pub(crate) const MASTER_PORTS: &[Ports] = &[
        Ports::one(6443),
        Ports::range(2379, 2380),
        Ports::one(10250),
        Ports::one(10257),
        Ports::one(10259),
    ];
    pub(crate) const WORKER_PORTS: &[Ports] = &[Ports::one(10250), Ports::range(30000, 32767)];
    pub(crate) const BALANCER_PORTS: &[Ports] = &[Ports::one(6443)];
    pub(crate) const INGRESS_PORTS: &[Ports] = &[Ports::one(80), Ports::one(443)];
}

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[IP4SAVE, RULES_V4]).units(&[
    "iptables.service",
    "nftables.service",
    "firewalld.service",
]);

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
    if systemd::unit(cx, "firewalld.service")?.active == "active" {
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
    if systemd::unit(cx, "nftables.service")?.active == "active" {
        return Ok(Firewall::Nftables);
    }
    Ok(Firewall::None(
        "no host firewall is active (no firewalld, no nftables.service, no saved iptables rules): \
         nothing to open"
            .into(),
    ))
}

/// Step "firewall ports": `ports` (TCP) are open in the host's firewall, now and after a
/// reboot; only the missing ones are added.
pub fn ports_open(cx: &mut Ctx, ports: &[Ports]) -> Result<Change> {
    if ports.is_empty() {
        return Ok(Change::Skipped("no ports to open for this role".into()));
    }
    match detect(cx)? {
        Firewall::Iptables { save, service } => {
            let persisted = iptables_persisted(cx, save, ports)?;
            Ok(persisted | iptables_live(cx, service, ports)?)
        }
        Firewall::Firewalld => firewalld_ports(cx, ports),
        Firewall::Nftables => nftables_checked(cx, ports),
        Firewall::None(why) => Ok(Change::Skipped(why)),
    }
}

// ---- iptables -------------------------------------------------------------------------------

/// The rule that accepts `p`, as iptables-save and `iptables -S` write it (without `-A INPUT`).
pub fn accept_rule(p: &Ports) -> Vec<String> {
    [
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        &p.iptables(),
        "-j",
        "ACCEPT",
    ]
    .map(String::from)
    .to_vec()
}

/// The ports an `-A INPUT` rule (iptables-save format) accepts from anywhere: TCP, `--dport`
/// or multiport `--dports`, jump to ACCEPT, and nothing that narrows it (source, interface,
/// negation...). Anything else accepts nothing here.
pub fn accepted_ports(line: &str) -> Vec<Ports> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 2 || words[0] != "-A" || words[1] != "INPUT" {
        return Vec::new();
    }
    let (mut tcp, mut accept) = (false, false);
    let mut ports = Vec::new();
    let mut i = 2;
    while i < words.len() {
        let value = words.get(i + 1).copied().unwrap_or("");
        match words[i] {
            "-p" | "--protocol" if value == "tcp" => tcp = true,
            "-m" | "--match" if matches!(value, "tcp" | "multiport" | "conntrack" | "state") => {}
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
    if tcp && accept { ports } else { Vec::new() }
}

/// `want` minus what `have` already covers.
fn missing(have: &[Ports], want: &[Ports]) -> Vec<Ports> {
    want.iter()
        .copied()
        .filter(|w| !have.iter().any(|h| h.contains(w)))
        .collect()
}

/// A rule that drops or rejects everything left on INPUT (`-A INPUT -j DROP`): new rules go
/// before it.
fn is_catch_all(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() >= 4
        && w[..3] == ["-A", "INPUT", "-j"]
        && matches!(w[3], "DROP" | "REJECT")
        && (w.len() == 4 || (w.len() == 6 && w[4] == "--reject-with"))
}

/// An iptables-save text with an ACCEPT rule for each of `ports` the filter table's INPUT
/// chain does not accept yet. New rules follow the last INPUT rule (before a final
/// `-A INPUT -j DROP/REJECT`, when there is one); a file without a `*filter` table gets one.
/// Every other line is kept as it was.
pub fn with_input_rules(text: &str, ports: &[Ports]) -> Result<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let rule = |p: &Ports| format!("-A INPUT {}", accept_rule(p).join(" "));
    let Some(start) = lines.iter().position(|l| l.trim() == "*filter") else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("*filter\n");
        for p in ports {
            out.push_str(&rule(p));
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        return Ok(out);
    };
    let end = lines[start..]
        .iter()
        .position(|l| l.trim() == "COMMIT")
        .map(|i| start + i)
        .ok_or_else(|| {
            Error::invalid("the *filter table has no COMMIT line: not an iptables-save file")
        })?;
    let have: Vec<Ports> = lines[start..end]
        .iter()
        .flat_map(|l| accepted_ports(l))
        .collect();
    let add = missing(&have, ports);
    if add.is_empty() {
        return Ok(text.to_string());
    }
    let input: Vec<usize> = (start..end)
        .filter(|&i| lines[i].trim_start().starts_with("-A INPUT "))
        .collect();
    let at = match input.iter().find(|&&i| is_catch_all(&lines[i])) {
        Some(&catch_all) => catch_all,
        None => input.last().map_or(end, |&i| i + 1),
    };
    let new: Vec<String> = add.iter().map(rule).collect();
    lines.splice(at..at, new);
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// The save file accepts `ports` (kept mode and owner). Changed: the file was edited.
pub fn iptables_persisted(cx: &mut Ctx, save: &str, ports: &[Ports]) -> Result<Change> {
    file::edit(cx, save, None, |old| {
        with_input_rules(old.unwrap_or(""), ports)
    })
}

/// The listing of the live INPUT rules, asked once per run.
const LIVE_RULES: [&str; 5] = ["iptables", "-w", "10", "-S", "INPUT"];

/// The live INPUT chain accepts `ports`: each missing rule is inserted at the top of INPUT
/// (`iptables -I`, so a final DROP/REJECT rule cannot shadow it); the chain is read once with
/// `iptables -S INPUT`. Nothing happens while `service` is not running (the saved rules apply
/// when it starts).
pub fn iptables_live(cx: &mut Ctx, service: &str, ports: &[Ports]) -> Result<Change> {
    if systemd::unit(cx, service)?.active != "active" {
        return Ok(Change::Skipped(format!(
            "{service} is not running: the saved rules apply when it starts"
        )));
    }
    let mut rules = cx.query_once(&LIVE_RULES)?;
    let have: Vec<Ports> = rules.lines().flat_map(accepted_ports).collect();
    let add = missing(&have, ports);
    if add.is_empty() {
        return Ok(Change::Unchanged);
    }
    // Inserted at the top in reverse: they end up in the order given.
    for p in add.iter().rev() {
        let mut argv = vec!["iptables", "-w", "10", "-I", "INPUT"];
        let rule = accept_rule(p);
        argv.extend(rule.iter().map(String::as_str));
        cx.apply(&argv)?;
        rules.push_str(&format!("-A INPUT {}\n", rule.join(" ")));
    }
    cx.answer_changed(&LIVE_RULES, rules);
    cx.note_change(format!(
        "live iptables INPUT: accepting TCP port(s) {}",
        port_list(&add)
    ));
    Ok(Change::Changed)
}

fn port_list(ports: &[Ports]) -> String {
    ports
        .iter()
        .map(Ports::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- firewalld ------------------------------------------------------------------------------

/// Ports listed by `firewall-cmd --list-ports` (`6443/tcp 2379-2380/tcp 53/udp`): the TCP ones.
pub fn firewalld_tcp_ports(listing: &str) -> Vec<Ports> {
    listing
        .split_whitespace()
        .filter_map(|w| w.strip_suffix("/tcp"))
        .filter_map(Ports::parse)
        .collect()
}

/// The default zone accepts `ports`, in the runtime and the permanent configuration (each
/// read once, only the missing ports added to each).
pub fn firewalld_ports(cx: &mut Ctx, ports: &[Ports]) -> Result<Change> {
    let mut change = Change::Unchanged;
    for permanent in [false, true] {
        let list: &[&str] = if permanent {
            &["firewall-cmd", "--permanent", "--list-ports"]
        } else {
            &["firewall-cmd", "--list-ports"]
        };
        let mut listing = cx.query_once(list)?.trim().to_string();
        let add = missing(&firewalld_tcp_ports(&listing), ports);
        if add.is_empty() {
            continue;
        }
        let flags: Vec<String> = add
            .iter()
            .map(|p| format!("--add-port={}", p.firewalld()))
            .collect();
        let mut argv = vec!["firewall-cmd"];
        if permanent {
            argv.push("--permanent");
        }
        argv.extend(flags.iter().map(String::as_str));
        cx.apply(&argv)?;
        for p in &add {
            listing.push(' ');
            listing.push_str(&p.firewalld());
        }
        cx.answer_changed(list, listing);
        cx.note_change(format!(
            "firewalld ({}): accepting TCP port(s) {}",
            if permanent { "permanent" } else { "runtime" },
            port_list(&add)
        ));
        change = Change::Changed;
    }
    Ok(change)
}

// ---- nftables -------------------------------------------------------------------------------

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
    let mut out = NftInput::default();
    let mut rules: Vec<&str> = Vec::new();
    let mut in_chain = false;
    let mut input_drop = false;
    let flush = |out: &mut NftInput, rules: &mut Vec<&str>, input_drop: bool| {
        if input_drop {
            out.drops = true;
            for r in rules.iter() {
                out.accepted.extend(nft_rule_ports(r));
            }
        }
        rules.clear();
    };
    for line in ruleset.lines() {
        let t = line.trim();
        if t.starts_with("chain ") && t.ends_with('{') {
            in_chain = true;
            input_drop = false;
            rules.clear();
        } else if in_chain && t == "}" {
            flush(&mut out, &mut rules, input_drop);
            in_chain = false;
        } else if in_chain && t.starts_with("type filter hook input") {
            input_drop = t.contains("policy drop");
        } else if in_chain {
            rules.push(t);
        }
    }
    out
}

fn nft_rule_ports(rule: &str) -> Vec<Ports> {
    let Some(rest) = rule.strip_prefix("tcp dport ") else {
        return Vec::new();
    };
    let Some(spec) = rest.strip_suffix(" accept") else {
        return Vec::new();
    };
    let spec = spec.trim();
    let inner = spec
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(spec);
    let parsed: Option<Vec<Ports>> = inner.split(',').map(Ports::parse).collect();
    parsed.unwrap_or_default()
}

/// nftables is active: a ruleset that drops incoming traffic must already accept `ports`
/// (nodeprep does not edit a hand-written ruleset); one that does not drop needs nothing.
pub fn nftables_checked(cx: &mut Ctx, ports: &[Ports]) -> Result<Change> {
    let argv = ["nft", "list", "ruleset"];
    let out = cx.query(&argv)?;
    if !out.success() {
        return Err(crate::host::command_failed(&Cmd::new(&argv), &out));
    }
    let input = nft_input(&out.stdout_str());
    if !input.drops {
        return Ok(Change::Skipped(
            "nftables is active but no input chain drops by default: nothing to open".into(),
        ));
    }
    let add = missing(&input.accepted, ports);
    if add.is_empty() {
        return Ok(Change::Unchanged);
    }
    let list: Vec<String> = add.iter().map(Ports::to_string).collect();
    Err(Error::new(
        ErrorKind::Unsupported,
        format!(
            "nftables drops incoming traffic and does not accept TCP port(s) {}; nodeprep does not edit a \
             hand-written nftables ruleset: add `tcp dport {{ {} }} accept` to the input chain of \
             /etc/nftables.conf, then `systemctl reload nftables`",
            list.join(", "),
            list.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::sample::*;
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, photon_files, plan};
    use expect_test::expect;

    fn ok(stdout: &str) -> Output {
        Output {
            status: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    /// As the probe reports them: units that are not installed are known, and absent.
    fn photon() -> Fixture {
        Fixture::photon()
            .unit("firewalld.service", "", "inactive")
            .complete()
    }

    fn debian() -> Fixture {
        Fixture::debian()
            .unit("firewalld.service", "", "inactive")
            .unit("nftables.service", "", "inactive")
            .complete()
    }

    fn rhel() -> Fixture {
        Fixture::rhel()
            .unit("nftables.service", "", "inactive")
            .complete()
    }

    /// `iptables -S INPUT` on a Photon host booted with its default ip4save.
    const PHOTON_LIVE: &str = "-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n";

    #[test]
    fn ports_parsed() {
        assert_eq!(Ports::parse("2379:2380"), Some(Ports::range(2379, 2380)));
        assert_eq!(
            Ports::parse("30000-32767"),
            Some(Ports::range(30000, 32767))
        );
        assert_eq!(Ports::parse("2380-2379"), None);
        assert_eq!(Ports::parse("ssh"), None);
        assert!(Ports::range(30000, 32767).contains(&Ports::one(30080)));
        assert!(!Ports::one(2379).contains(&Ports::range(2379, 2380)));
    }

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
        assert_eq!(
            with_input_rules("", BALANCER_PORTS).unwrap(),
            "*filter\n-A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT\nCOMMIT\n"
        );
        assert!(with_input_rules("*filter\n-A INPUT -j ACCEPT\n", BALANCER_PORTS).is_err());
    }

    #[test]
    fn photon_master_plan() {
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(PHOTON_LIVE));
        assert_eq!(ports_open(&mut cx, MASTER_PORTS).unwrap(), Change::Changed);
        expect![[r#"
            write /etc/systemd/scripts/ip4save 0644 root:root
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

    #[test]
    fn photon_live_only_and_saved_only() {
        // Rules added by hand live (lost at the next restart): only the file is edited.
        let live = format!("{PHOTON_LIVE}-A INPUT -p tcp -m tcp --dport 6443 -j ACCEPT\n");
        let (mut cx, rec) = photon().ctx(Mode::Apply);
        rec.reply("iptables -w 10 -S INPUT", ok(&live));
        assert!(ports_open(&mut cx, BALANCER_PORTS).unwrap().changed());
        assert_eq!(
            plan(&cx),
            "write /etc/systemd/scripts/ip4save 0644 root:root\n"
        );
        // iptables.service stopped: the file only, nothing live, nothing queried.
        let (mut cx, rec) = photon()
            .unit("iptables.service", "disabled", "inactive")
            .ctx(Mode::Apply);
        assert!(ports_open(&mut cx, BALANCER_PORTS).unwrap().changed());
        assert_eq!(
            plan(&cx),
            "write /etc/systemd/scripts/ip4save 0644 root:root\n"
        );
        assert!(
            rec.commands()
                .iter()
                .all(|c| !c.display().starts_with("iptables"))
        );
    }

    #[test]
    fn photon_check_mode_touches_nothing() {
        let (mut cx, rec) = photon().ctx(Mode::Check);
        rec.reply("iptables -w 10 -S INPUT", ok(PHOTON_LIVE));
        assert!(ports_open(&mut cx, WORKER_PORTS).unwrap().changed());
        expect![[r#"
            write /etc/systemd/scripts/ip4save 0644 root:root
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
    fn debian_without_firewall_skipped() {
        let (mut cx, _rec) = debian().ctx(Mode::Apply);
        let c = ports_open(&mut cx, MASTER_PORTS).unwrap();
        assert!(
            matches!(&c, Change::Skipped(r) if r.starts_with("no host firewall is active")),
            "{c:?}"
        );
        assert!(cx.actions().is_empty());
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
            write /etc/iptables/rules.v4 0640 root:root
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        "#]]
        .assert_eq(&plan(&cx));
    }

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
}
