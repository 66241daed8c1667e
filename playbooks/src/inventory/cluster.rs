//! The cluster's network as the host firewalls see it: the CNI, the pods' and services'
//! networks, extra rules, the ingress controller's NodePorts. The model's parts that need more
//! than serde ([`ExtraRule`]) and their checks, and the CNIs `kubernetes.cni` names ([`CNIS`]:
//! what their nodes exchange, their default pods' network), which the roles open the firewall
//! for.

use std::net::Ipv4Addr;

use serde::Deserialize;
use tasks::firewall::{Net, Ports, Proto, Rule};

use super::Inventory;
use super::problems::Problem;
use super::problems::take;

/// A pod network add-on: what its nodes exchange with each other (from its documented
/// network requirements), and the pods' network it uses unless told otherwise.
#[derive(Debug)]
pub struct Cni {
    pub name: &'static str,
    pub rules: &'static [Rule],
    pub pod_cidr: Option<Net>,
}

/// The CNIs `kubernetes.cni` names.
pub static CNIS: &[Cni] = &[
    // Calico's network requirements: BGP (TCP 179), IP in IP (protocol 4, its default
    // encapsulation), VXLAN (UDP 4789), Typha's clients (TCP 5473). Default IP pool:
    // 192.168.0.0/16.
    Cni {
        name: "calico",
        rules: &[
            Rule::tcp(Ports::one(179)),
            Rule::ip(4),
            Rule::udp(Ports::one(4789)),
            Rule::tcp(Ports::one(5473)),
        ],
        pod_cidr: Some(Net::new(192, 168, 0, 0, 16)),
    },
    // flannel's VXLAN backend (the default): UDP 8472, the Linux kernel's VXLAN port.
    // kube-flannel.yml's network: 10.244.0.0/16.
    Cni {
        name: "flannel",
        rules: &[Rule::udp(Ports::one(8472))],
        pod_cidr: Some(Net::new(10, 244, 0, 0, 16)),
    },
    // Cilium: VXLAN (UDP 8472), cilium-health (TCP 4240, and ICMP echo: every ICMP type,
    // the rules have no ICMP type), Hubble (TCP 4244). Cluster-pool IPAM default: 10.0.0.0/8.
    Cni {
        name: "cilium",
        rules: &[
            Rule::udp(Ports::one(8472)),
            Rule::tcp(Ports::one(4240)),
            Rule::ip(1),
            Rule::tcp(Ports::one(4244)),
        ],
        pod_cidr: Some(Net::new(10, 0, 0, 0, 8)),
    },
    // Another CNI, or none yet: its rules go to kubernetes.extra_rules.
    Cni {
        name: "none",
        rules: &[],
        pod_cidr: None,
    },
];

/// The pods' network of the inventory: `kubernetes.pod_cidr`, else the CNI's default; `None`
/// when there is neither.
pub fn pod_network(inv: &Inventory) -> Option<Net> {
    let k = &inv.kubernetes;
    k.pod_cidr.or(k.cni.pod_cidr)
}

/// The services' network of the inventory (`kubernetes.service_cidr`).
pub fn service_network(inv: &Inventory) -> Net {
    inv.kubernetes.service_cidr
}

/// The CNI named `name`.
pub fn cni(name: &str) -> Option<&'static Cni> {
    CNIS.iter().find(|c| c.name == name)
}

/// One more incoming rule for every Kubernetes node (`kubernetes.extra_rules`), e.g.
/// `{ proto = "udp", ports = 51820 }` (Calico's WireGuard) or `{ proto = "esp" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraRule {
    /// `tcp`, `udp`, another IP protocol by name (`ipencap`, `gre`, `esp`...) or by number.
    pub proto: toml::Value,
    /// For tcp and udp: a port (`4789`) or a range (`"30000-32767"`).
    #[serde(default)]
    pub ports: Option<toml::Value>,
}

impl ExtraRule {
    /// The firewall rule, or why there is none.
    pub fn rule(&self) -> Result<Rule, String> {
        let text = match &self.proto {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            other => {
                return Err(format!(
                    "proto: expected a protocol name or number, found a {}",
                    other.type_str()
                ));
            }
        };
        if text.trim().eq_ignore_ascii_case("ipip") {
            return Err(
                "proto `ipip`: /etc/protocols gives that name to protocol 94; IP in IP \
                        as Linux and Calico use it is protocol 4: write 4 or \"ipencap\""
                    .into(),
            );
        }
        let proto = Proto::parse(&text).ok_or_else(|| {
            format!(
                "proto `{}` is not tcp, udp, a known protocol name (icmp, ipencap, gre, esp, ah, \
                 vrrp, sctp...) or a number from 1 to 255",
                text.escape_debug()
            )
        })?;
        let ports = match &self.ports {
            None => None,
            Some(toml::Value::Integer(n)) => Some(
                u16::try_from(*n)
                    .ok()
                    .filter(|p| *p > 0)
                    .map(Ports::one)
                    .ok_or_else(|| format!("ports: {n} is not a port (1-65535)"))?,
            ),
            Some(toml::Value::String(s)) => {
                Some(Ports::parse(s).filter(|p| p.from > 0).ok_or_else(|| {
                    format!(
                        "ports: `{}` is not a port or a range like \"30000-32767\"",
                        s.escape_debug()
                    )
                })?)
            }
            Some(other) => {
                return Err(format!(
                    "ports: expected a port or a range like \"30000-32767\", found a {}",
                    other.type_str()
                ));
            }
        };
        match (proto, ports) {
            (Proto::Tcp, Some(p)) => Ok(Rule::tcp(p)),
            (Proto::Udp, Some(p)) => Ok(Rule::udp(p)),
            (Proto::Tcp | Proto::Udp, None) => Err(format!(
                "{proto} needs `ports` (a port like 4789 or a range like \"30000-32767\"): nodeprep \
                 does not open every {proto} port"
            )),
            (_, Some(_)) => Err(format!("ports apply to tcp and udp only, not to {proto}")),
            (_, None) => Ok(Rule::proto(proto)),
        }
    }
}

/// Every problem of these settings, as shared settings (no host); those of `unresolved` (the
/// CNI and networks that did not resolve at load) in their place.
pub(super) fn problems(inv: &Inventory, unresolved: &mut Vec<Problem>) -> Vec<Problem> {
    let mut out = take(unresolved, None, "kubernetes.cni");
    let pod_invalid = take(unresolved, None, "kubernetes.pod_cidr");
    let service_invalid = take(unresolved, None, "kubernetes.service_cidr");
    let (pod_valid, service_valid) = (pod_invalid.is_empty(), service_invalid.is_empty());
    out.extend(pod_invalid);
    out.extend(service_invalid);
    let mut push = |field: &str, message: String| {
        out.push(Problem {
            host: None,
            field: field.into(),
            line: None,
            message,
        })
    };
    let k = &inv.kubernetes;
    let mut networks: Vec<(&str, Net, String)> = Vec::new();
    match k.pod_cidr {
        Some(net) => networks.push(("kubernetes.pod_cidr", net, String::new())),
        None if pod_valid => {
            if let Some(net) = pod_network(inv) {
                let why = format!(" ({}'s default; set kubernetes.pod_cidr)", k.cni.name);
                networks.push(("kubernetes.pod_cidr", net, why));
            }
        }
        None => {}
    }
    if service_valid {
        networks.push(("kubernetes.service_cidr", k.service_cidr, String::new()));
    }
    if let [(_, pods, _), (_, services, _)] = networks.as_slice()
        && k.pod_cidr.is_some()
        && pods.overlaps(services)
    {
        push(
            "kubernetes.pod_cidr",
            format!("the pod network {pods} overlaps the service network {services}"),
        );
    }
    // A host inside the pods' or services' network would have its traffic taken for theirs.
    for (field, net, default) in &networks {
        let name = if field.ends_with("pod_cidr") {
            "pod"
        } else {
            "service"
        };
        for (host, ip) in host_addresses(inv) {
            if net.contains(ip) {
                push(
                    field,
                    format!(
                        "the {name} network {net}{default} contains the address of host {host} ({ip}): choose a network apart from the hosts'"
                    ),
                );
                break;
            }
        }
    }
    for (i, r) in k.extra_rules.iter().enumerate() {
        if let Err(why) = r.rule() {
            push("kubernetes.extra_rules", format!("rule #{}: {why}", i + 1));
        }
    }
    let h = &inv.haproxy;
    let nodeports = Ports::range(30000, 32767);
    for (field, port) in [
        ("haproxy.ingress_http_nodeport", h.ingress_http_nodeport),
        ("haproxy.ingress_https_nodeport", h.ingress_https_nodeport),
    ] {
        if !nodeports.contains(&Ports::one(port)) {
            push(
                field,
                format!(
                    "{port} is not in Kubernetes' NodePort range {nodeports}: give the ingress controller's NodePort"
                ),
            );
        }
    }
    if h.ingress_http_nodeport == h.ingress_https_nodeport {
        push(
            "haproxy.ingress_https_nodeport",
            format!(
                "{} is also haproxy.ingress_http_nodeport: HTTP and HTTPS need NodePorts of their own",
                h.ingress_https_nodeport
            ),
        );
    }
    out
}

/// The message for a network that does not parse.
pub(super) fn ipv4_network(text: &str, why: &str) -> String {
    format!(
        "`{}`: {why} (expected an IPv4 network like 10.244.0.0/16)",
        text.escape_debug()
    )
}

/// Every IPv4 address the inventory gives a host: its ssh address and its static one.
fn host_addresses(inv: &Inventory) -> Vec<(&str, Ipv4Addr)> {
    let mut out = Vec::new();
    for (name, h) in &inv.hosts {
        if let Ok(ip) = h.address.parse::<Ipv4Addr>() {
            out.push((name.as_str(), ip));
        }
        if let Some(std::net::IpAddr::V4(ip)) =
            h.network.as_ref().and_then(|n| n.parsed).map(|c| c.addr)
        {
            out.push((name.as_str(), ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const HOSTS: &str = r#"
[hosts.m1]
role = "k8s-master"
address = "192.168.10.56"

[hosts.w1]
role = "k8s-worker"
address = "192.168.10.57"
network = { address = "192.168.10.57/24" }
"#;

    fn parse(settings: &str) -> Result<Inventory, String> {
        Inventory::parse(&format!("{settings}\n{HOSTS}"), Path::new("inv.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let inv = parse("").unwrap();
        assert_eq!(inv.kubernetes.cni.name, "none");
        assert_eq!(pod_network(&inv), None, "no CNI, no pod network");
        assert_eq!(service_network(&inv), Net::new(10, 96, 0, 0, 12));
        assert_eq!(inv.haproxy.ingress_http_nodeport, 30080);
        assert_eq!(inv.haproxy.ingress_https_nodeport, 30443);
        let inv = parse("[kubernetes]\ncni = \"flannel\"").unwrap();
        assert_eq!(pod_network(&inv), Some(Net::new(10, 244, 0, 0, 16)));
        let inv = parse("[kubernetes]\ncni = \"cilium\"").unwrap();
        assert_eq!(pod_network(&inv), Some(Net::new(10, 0, 0, 0, 8)));
        let inv = parse("[kubernetes]\ncni = \"calico\"\npod_cidr = \"10.244.0.0/16\"").unwrap();
        assert_eq!(pod_network(&inv), Some(Net::new(10, 244, 0, 0, 16)));
    }

    #[test]
    fn extra_rules_read() {
        let inv = parse(
            r#"[kubernetes]
extra_rules = [
  { proto = "udp", ports = 51820 },
  { proto = "tcp", ports = "9100-9101" },
  { proto = "esp" },
  { proto = 47 },
  { proto = "17", ports = 6081 },
]"#,
        )
        .unwrap();
        let rules: Vec<String> = inv
            .kubernetes
            .extra_rules
            .iter()
            .map(|r| r.rule().unwrap().to_string())
            .collect();
        assert_eq!(
            rules,
            [
                "udp/51820",
                "tcp/9100-9101",
                "esp (protocol 50)",
                "gre (protocol 47)",
                "udp/6081"
            ]
        );
    }

    #[test]
    fn bad_values_named_with_field_and_line() {
        let e = parse(
            r#"[kubernetes]
cni = "weave"
pod_cidr = "10.244.1.0/16"
service_cidr = "fd00::/108"
extra_rules = [
  { proto = "ipip" },
  { proto = "udp" },
  { proto = "gre", ports = 47 },
  { proto = "bogus" },
  { proto = "tcp", ports = "0-10" },
]

[haproxy]
ingress_http_nodeport = 8080
ingress_https_nodeport = 8080
"#,
        )
        .unwrap_err();
        expect_test::expect![[r#"
            inv.toml: 11 problems
              inv.toml:2: kubernetes.cni: unknown CNI `weave` (expected one of: calico, flannel, cilium, none; for another, `none` and its rules in kubernetes.extra_rules)
              inv.toml:3: kubernetes.pod_cidr: `10.244.1.0/16`: 10.244.1.0/16 has host bits set: the network is 10.244.0.0/16 (expected an IPv4 network like 10.244.0.0/16)
              inv.toml:4: kubernetes.service_cidr: `fd00::/108`: `fd00::` is not an IPv4 address (expected an IPv4 network like 10.244.0.0/16)
              inv.toml:5: kubernetes.extra_rules: rule #1: proto `ipip`: /etc/protocols gives that name to protocol 94; IP in IP as Linux and Calico use it is protocol 4: write 4 or "ipencap"
              inv.toml:5: kubernetes.extra_rules: rule #2: udp needs `ports` (a port like 4789 or a range like "30000-32767"): nodeprep does not open every udp port
              inv.toml:5: kubernetes.extra_rules: rule #3: ports apply to tcp and udp only, not to gre (protocol 47)
              inv.toml:5: kubernetes.extra_rules: rule #4: proto `bogus` is not tcp, udp, a known protocol name (icmp, ipencap, gre, esp, ah, vrrp, sctp...) or a number from 1 to 255
              inv.toml:5: kubernetes.extra_rules: rule #5: ports: `0-10` is not a port or a range like "30000-32767"
              inv.toml:14: haproxy.ingress_http_nodeport: 8080 is not in Kubernetes' NodePort range 30000-32767: give the ingress controller's NodePort
              inv.toml:15: haproxy.ingress_https_nodeport: 8080 is not in Kubernetes' NodePort range 30000-32767: give the ingress controller's NodePort
              inv.toml:15: haproxy.ingress_https_nodeport: 8080 is also haproxy.ingress_http_nodeport: HTTP and HTTPS need NodePorts of their own
        "#]]
        .assert_eq(&e);
    }

    #[test]
    fn networks_apart_from_the_hosts() {
        // Calico's default pool holds the seed's LAN addresses.
        let e = parse("[kubernetes]\ncni = \"calico\"").unwrap_err();
        assert!(
            e.contains("inv.toml:1: kubernetes.pod_cidr: the pod network 192.168.0.0/16 (calico's default; set kubernetes.pod_cidr) contains the address of host m1 (192.168.10.56)"),
            "{e}"
        );
        let e = parse("[kubernetes]\ncni = \"calico\"\npod_cidr = \"10.96.0.0/16\"").unwrap_err();
        assert!(
            e.contains("kubernetes.pod_cidr: the pod network 10.96.0.0/16 overlaps the service network 10.96.0.0/12"),
            "{e}"
        );
        let e = parse("[kubernetes]\nservice_cidr = \"192.168.10.0/24\"").unwrap_err();
        assert!(
            e.contains("inv.toml:2: kubernetes.service_cidr: the service network 192.168.10.0/24 contains the address of host m1"),
            "{e}"
        );
        parse("[kubernetes]\ncni = \"calico\"\npod_cidr = \"10.244.0.0/16\"").unwrap();
    }
}
