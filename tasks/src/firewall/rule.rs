//! The rule model: ports, protocols, networks and the accept rules made of them.

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

/// IP protocols by name, as `/etc/protocols` (IANA's assigned numbers) and iptables write
/// them: what a rule, a `-p` option or a firewalld listing may name.
/// A host's own `/etc/protocols` comes first ([`super::Protocols`]); these are the names
/// when the host does not hold one.
pub(super) const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    // IP in IP (RFC 2003): what Linux calls IPPROTO_IPIP and Calico's IP-in-IP mode sends.
    // Debian's netbase names it `ipencap`; IANA's keyword is `IPv4`, which iana-etc (Photon OS)
    // writes `ipv4` (see tests/data/photon/README.md). The first name is the one shown.
    ("ipencap", 4),
    ("ipv4", 4),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("ospf", 89),
    // /etc/protocols' `ipip` is protocol 94 (IP-within-IP, RFC 1853), not Linux's IPIP (4).
    ("ipip", 94),
    ("vrrp", 112),
    ("sctp", 132),
];

/// The number of a built-in name (lowercase).
pub(super) fn builtin_number(name: &str) -> Option<u8> {
    PROTOCOLS.iter().find(|(n, _)| *n == name).map(|(_, n)| *n)
}

/// The IP protocol a rule accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    /// Any other protocol, by number.
    Ip(u8),
}

impl Proto {
    /// `tcp`, `udp`, a name of `PROTOCOLS` or a number 1-255 (`6` is `tcp`, `17` is `udp`);
    /// `None` for anything else (`0` and `all` mean every protocol, not one).
    /// The names of a host's own `/etc/protocols` are [`super::Protocols::proto`]'s.
    pub fn parse(text: &str) -> Option<Proto> {
        let text = text.trim().to_ascii_lowercase();
        let number = match text.parse::<u8>() {
            Ok(n) => n,
            Err(_) => builtin_number(&text)?,
        };
        Proto::from_number(number)
    }

    /// `None` for 0 (every protocol).
    pub const fn from_number(n: u8) -> Option<Proto> {
        match n {
            0 => None,
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            n => Some(Proto::Ip(n)),
        }
    }

    pub fn number(&self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Ip(n) => *n,
        }
    }

    /// The name `/etc/protocols` gives it, where it is one of `PROTOCOLS`.
    pub fn name(&self) -> Option<&'static str> {
        let n = self.number();
        PROTOCOLS
            .iter()
            .find(|(_, num)| *num == n)
            .map(|(name, _)| *name)
    }

    /// Ports apply (TCP and UDP).
    pub fn has_ports(&self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }

    /// As an iptables `-p` value: `tcp`, `udp`, else the number (no lookup in the host's
    /// `/etc/protocols` needed, and no name that means two protocols).
    pub fn iptables(&self) -> String {
        match self {
            Proto::Tcp => "tcp".into(),
            Proto::Udp => "udp".into(),
            Proto::Ip(n) => n.to_string(),
        }
    }

    /// As `firewall-cmd --add-protocol` takes it: the name where there is one, else the number.
    pub fn firewalld(&self) -> String {
        self.name()
            .map(str::to_string)
            .unwrap_or_else(|| self.number().to_string())
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self, self.name()) {
            (Proto::Tcp, _) => write!(f, "tcp"),
            (Proto::Udp, _) => write!(f, "udp"),
            (Proto::Ip(n), Some(name)) => write!(f, "{name} (protocol {n})"),
            (Proto::Ip(n), None) => write!(f, "protocol {n}"),
        }
    }
}

/// An IPv4 network: an address with its prefix length, host bits zero (as iptables prints
/// it back, so that a rule read from `iptables -S` compares equal to the rule given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    pub addr: std::net::Ipv4Addr,
    pub prefix: u8,
}

impl Net {
    pub const fn new(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Net {
        Net {
            addr: std::net::Ipv4Addr::new(a, b, c, d),
            prefix,
        }
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// `10.244.0.0/16` (a bare address is a /32). Refused, with the reason: not IPv4, a
    /// prefix out of 0..=32, host bits set (`10.244.1.0/16`: the network is 10.244.0.0/16).
    pub fn parse(text: &str) -> std::result::Result<Net, String> {
        let text = text.trim();
        let (addr, prefix) = text.split_once('/').unwrap_or((text, "32"));
        let addr: std::net::Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("prefix `{prefix}` is not in 0..=32"))?;
        let bits = u32::from(addr);
        let network = bits & Net::mask(prefix);
        if network != bits {
            return Err(format!(
                "{text} has host bits set: the network is {}/{prefix}",
                std::net::Ipv4Addr::from(network)
            ));
        }
        Ok(Net { addr, prefix })
    }

    /// `ip` is inside this network.
    pub fn contains(&self, ip: std::net::Ipv4Addr) -> bool {
        u32::from(ip) & Net::mask(self.prefix) == u32::from(self.addr)
    }

    /// The two networks share an address.
    pub fn overlaps(&self, other: &Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The chain of the filter table a rule goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chain {
    /// Traffic to this host.
    Input,
    /// Traffic routed through this host (pods' traffic between nodes).
    Forward,
}

impl Chain {
    pub fn iptables(&self) -> &'static str {
        match self {
            Chain::Input => "INPUT",
            Chain::Forward => "FORWARD",
        }
    }
}

/// One accept rule of the host firewall: a chain, and what it accepts there. `None` fields
/// match anything: `proto: None` every protocol, `ports: None` every port of `proto`,
/// `source`/`destination: None` every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub chain: Chain,
    pub proto: Option<Proto>,
    pub ports: Option<Ports>,
    pub source: Option<Net>,
    pub destination: Option<Net>,
}

impl Rule {
    const fn input(proto: Proto, ports: Option<Ports>) -> Rule {
        Rule {
            chain: Chain::Input,
            proto: Some(proto),
            ports,
            source: None,
            destination: None,
        }
    }

    /// Incoming TCP to `ports`.
    pub const fn tcp(ports: Ports) -> Rule {
        Rule::input(Proto::Tcp, Some(ports))
    }

    /// Incoming UDP to `ports`.
    pub const fn udp(ports: Ports) -> Rule {
        Rule::input(Proto::Udp, Some(ports))
    }

    /// Incoming packets of IP protocol `proto` (every port for TCP and UDP).
    pub const fn proto(proto: Proto) -> Rule {
        Rule::input(proto, None)
    }

    /// Incoming packets of IP protocol `number`, other than TCP and UDP (4: IP in IP).
    pub const fn ip(number: u8) -> Rule {
        match number {
            0 | 6 | 17 => panic!("Rule::ip is for protocols other than all, tcp and udp"),
            n => Rule::input(Proto::Ip(n), None),
        }
    }

    /// Forwarded packets from `net`.
    pub const fn forward_from(net: Net) -> Rule {
        Rule {
            chain: Chain::Forward,
            proto: None,
            ports: None,
            source: Some(net),
            destination: None,
        }
    }

    /// Forwarded packets to `net`.
    pub const fn forward_to(net: Net) -> Rule {
        Rule {
            chain: Chain::Forward,
            proto: None,
            ports: None,
            source: None,
            destination: Some(net),
        }
    }

    /// The rule as iptables-save and `iptables -S` write it, without `-A CHAIN`:
    /// `-p udp -m udp --dport 8472 -j ACCEPT`, `-p 4 -j ACCEPT`, `-s 10.244.0.0/16 -j ACCEPT`.
    pub fn iptables(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(net) = self.source {
            out.extend(["-s".into(), net.to_string()]);
        }
        if let Some(net) = self.destination {
            out.extend(["-d".into(), net.to_string()]);
        }
        if let Some(proto) = self.proto {
            out.extend(["-p".into(), proto.iptables()]);
            if let (Some(ports), true) = (self.ports, proto.has_ports()) {
                out.extend([
                    "-m".into(),
                    proto.iptables(),
                    "--dport".into(),
                    ports.iptables(),
                ]);
            }
        }
        out.extend(["-j".into(), "ACCEPT".into()]);
        out
    }

    /// Everything `other` accepts, this rule accepts too.
    pub fn covers(&self, other: &Rule) -> bool {
        let net = |mine: Option<Net>, theirs: Option<Net>| match (mine, theirs) {
            (None, _) => true,
            (Some(m), Some(t)) => m.prefix <= t.prefix && m.contains(t.addr),
            (Some(_), None) => false,
        };
        let ports = match (self.ports, other.ports) {
            (None, _) => true,
            (Some(m), Some(t)) => m.contains(&t),
            (Some(_), None) => false,
        };
        self.chain == other.chain
            && net(self.source, other.source)
            && net(self.destination, other.destination)
            && match (self.proto, other.proto) {
                (None, _) => true,
                (Some(m), Some(t)) => m == t && ports,
                (Some(_), None) => false,
            }
    }
}

impl std::fmt::Display for Rule {
    /// `tcp/6443`, `udp/30000-32767`, `ipencap (protocol 4)`, `forward from 10.244.0.0/16`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.chain == Chain::Forward {
            parts.push("forward".into());
        }
        if let Some(net) = self.source {
            parts.push(format!("from {net}"));
        }
        if let Some(net) = self.destination {
            parts.push(format!("to {net}"));
        }
        match (self.proto, self.ports) {
            (Some(p), Some(ports)) if p.has_ports() => parts.push(format!("{p}/{ports}")),
            (Some(p), _) => parts.push(p.to_string()),
            (None, _) if self.chain == Chain::Input => parts.push("everything".into()),
            (None, _) => {}
        }
        write!(f, "{}", parts.join(" "))
    }
}

/// `want` without duplicates and without the rules another of them covers, in order.
pub fn minimal(want: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for (i, r) in want.iter().enumerate() {
        let covered = want
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.covers(r) && (!r.covers(o) || j < i));
        if !covered {
            out.push(*r);
        }
    }
    out
}

/// `want` minus what the rules of `have` already accept.
pub fn missing_rules(have: &[Rule], want: &[Rule]) -> Vec<Rule> {
    minimal(want)
        .into_iter()
        .filter(|w| !have.iter().any(|h| h.covers(w)))
        .collect()
}

pub(super) fn rule_list(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(Rule::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sample port sets for the tests (the roles own the real ones, in the playbooks crate).
#[cfg(test)]
pub(crate) mod sample {
    use super::{Net, Ports, Rule};
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
    /// A worker with an overlay network: kubelet, NodePorts for TCP and UDP, BGP, VXLAN, IP in
    /// IP (the shape of what the roles give for Calico).
    pub(crate) const WORKER_RULES: &[Rule] = &[
        Rule::tcp(Ports::one(10250)),
        Rule::tcp(Ports::range(30000, 32767)),
        Rule::udp(Ports::range(30000, 32767)),
        Rule::tcp(Ports::one(179)),
        Rule::udp(Ports::one(4789)),
        Rule::ip(4),
    ];
    /// Pods' and services' networks, forwarded both ways.
    pub(crate) const FORWARD_RULES: &[Rule] = &[
        Rule::forward_from(Net::new(10, 244, 0, 0, 16)),
        Rule::forward_to(Net::new(10, 244, 0, 0, 16)),
        Rule::forward_from(Net::new(10, 96, 0, 0, 12)),
        Rule::forward_to(Net::new(10, 96, 0, 0, 12)),
    ];
}

#[cfg(test)]
mod tests {
    use super::sample::*;
    use super::*;

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
    fn protocols_and_networks_parsed() {
        assert_eq!(Proto::parse("UDP"), Some(Proto::Udp));
        assert_eq!(Proto::parse("17"), Some(Proto::Udp));
        assert_eq!(Proto::parse("4"), Some(Proto::Ip(4)));
        assert_eq!(Proto::parse("ipencap"), Some(Proto::Ip(4)));
        // /etc/protocols' ipip is 94, not Linux's IPIP (4).
        assert_eq!(Proto::parse("ipip"), Some(Proto::Ip(94)));
        assert_eq!(Proto::parse("0"), None, "0 is every protocol");
        assert_eq!(Proto::parse("256"), None);
        assert_eq!(Proto::parse("bogus"), None);
        assert_eq!(Proto::Ip(4).firewalld(), "ipencap");
        assert_eq!(Proto::Ip(99).firewalld(), "99");
        assert_eq!(Proto::Ip(4).iptables(), "4");
        assert_eq!(Net::parse("10.244.0.0/16"), Ok(Net::new(10, 244, 0, 0, 16)));
        assert_eq!(
            Net::parse("192.168.10.45"),
            Ok(Net::new(192, 168, 10, 45, 32))
        );
        assert_eq!(
            Net::parse("10.244.1.0/16").unwrap_err(),
            "10.244.1.0/16 has host bits set: the network is 10.244.0.0/16"
        );
        assert!(Net::parse("10.244.0.0/33").is_err());
        assert!(Net::parse("fd00::/64").is_err());
        let pods = Net::new(10, 244, 0, 0, 16);
        assert!(pods.contains("10.244.3.7".parse().unwrap()));
        assert!(!pods.overlaps(&Net::new(10, 96, 0, 0, 12)));
        assert!(Net::new(10, 0, 0, 0, 8).overlaps(&Net::new(10, 96, 0, 0, 12)));
        let shown: Vec<String> = [WORKER_RULES, FORWARD_RULES]
            .concat()
            .iter()
            .map(Rule::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "tcp/10250",
                "tcp/30000-32767",
                "udp/30000-32767",
                "tcp/179",
                "udp/4789",
                "ipencap (protocol 4)",
                "forward from 10.244.0.0/16",
                "forward to 10.244.0.0/16",
                "forward from 10.96.0.0/12",
                "forward to 10.96.0.0/12",
            ]
        );
    }
}
