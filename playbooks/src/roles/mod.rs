//! The built-in roles. A role is a type that owns everything nodeprep knows about it: the
//! ports its hosts serve (checked free by `verify`) and the firewall rules they need (those
//! ports, and for Kubernetes nodes the CNI's ports and protocols, the NodePorts, the pods' and
//! services' networks), the kernel modules and sysctls it needs, its steps, and its `verify`
//! checks. Nothing else in the code matches on role names: the inventory, the runner and the
//! tasks ask the role.
//!
//! Adding a role: a file here with a type implementing [`Role`], and one line in [`ALL`].

mod common;
mod haproxy;
mod k8s;

use tasks::firewall::{Ports, Rule};
use tasks::verify;
use tasks::{Plan, Result};

use std::path::Path;

use crate::inventory::{HostEntry, Inventory, Problems, Target};

pub use crate::inventory::{CNIS, Cni, RoleRef, cni, pod_network, service_network};
pub use common::{common, full_update, name_resolves, network};
pub use haproxy::{Haproxy, ingress_nodeports};
pub use k8s::{K8sNode, NODEPORTS, NodeKind};

/// Everything nodeprep knows about one inventory role.
pub trait Role: Send + Sync {
    /// The name the inventory's `role` field uses.
    fn name(&self) -> &'static str;
    /// One line for `cargo xtask playbooks`.
    fn about(&self) -> &'static str;
    /// The TCP ports this host serves: opened in its firewall, free before kubeadm runs.
    fn ports(&self, t: &Target) -> Vec<Ports>;
    /// Everything its host firewall must accept: by default its [`ports`](Self::ports).
    fn firewall(&self, t: &Target) -> Vec<Rule> {
        self.ports(t).into_iter().map(Rule::tcp).collect()
    }
    /// Kernel modules loaded now and at boot.
    fn modules(&self) -> &'static [&'static str] {
        &[]
    }
    /// Sysctls persisted and applied.
    fn sysctls(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// The preparation: its steps, in order.
    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()>;
    /// What `cargo xtask verify` checks on this role's hosts.
    fn verify<'a>(&self, t: Target<'a>) -> verify::Spec<'a>;
}

/// Every built-in role.
pub static ALL: &[&dyn Role] = &[
    &Haproxy,
    &K8sNode(NodeKind::Master),
    &K8sNode(NodeKind::Worker),
];

/// The role named `name`.
pub fn find(name: &str) -> Option<&'static dyn Role> {
    ALL.iter().copied().find(|r| r.name() == name)
}

/// The role of a host that nothing gives one: the stand-in host of a playbook meant for no
/// role (`--local`, a listing with no such host in the inventory) is a worker, the plainest
/// node.
pub static STAND_IN: &dyn Role = &K8sNode(NodeKind::Worker);

/// A host's role is one of [`ALL`] once the inventory is loaded ([`Inventory::load`]): its
/// behaviour is that role's.
impl RoleRef {
    /// Whether this is `role`.
    pub fn is(self, role: &dyn Role) -> bool {
        self.name() == role.name()
    }

    /// The built-in role this names.
    pub fn role(self) -> &'static dyn Role {
        find(self.name()).unwrap_or(STAND_IN)
    }
}

impl From<&'static dyn Role> for RoleRef {
    fn from(role: &'static dyn Role) -> RoleRef {
        RoleRef(role.name())
    }
}

impl std::ops::Deref for RoleRef {
    type Target = dyn Role;
    fn deref(&self) -> &(dyn Role + 'static) {
        self.role()
    }
}

/// Every check name `role`'s hosts can get, as its spec declares them: planned for a stand-in
/// host of an inventory that asks for everything optional (the balancers' ingress frontends).
pub fn check_names(role: &'static dyn Role) -> Vec<String> {
    let mut inv = Inventory::parse("", std::path::Path::new("inventory.toml"))
        .expect("an empty inventory is valid");
    inv.haproxy.ingress = true;
    let host = HostEntry::stand_in(role.into());
    let t = Target {
        name: "localhost",
        host: &host,
        inventory: &inv,
    };
    let mut p = Plan::new();
    verify::declare(role.verify(t), &mut p);
    p.names()
}

/// The names of the roles, for messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|r| r.name()).collect()
}

/// The inventory as the built-in roles read it: each host's `role` names one of [`ALL`].
impl Inventory {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Inventory, Problems> {
        Inventory::load_for(path, &names())
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, Problems> {
        Inventory::parse_for(text, path, &names())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn ports_by_role() {
        let with = |ingress: bool| {
            let text = include_str!("../../../inventory.toml");
            let mut inv = Inventory::parse(text, Path::new("inventory.toml")).unwrap();
            inv.haproxy.ingress = ingress;
            inv
        };
        let shown = |role: &str, host: &str, ingress: bool| {
            let inv = with(ingress);
            let t = inv.target(host).unwrap();
            find(role)
                .unwrap()
                .ports(&t)
                .iter()
                .map(Ports::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            shown("k8s-master", "prdk8smst501", false),
            "6443 2379-2380 10250 10257 10259"
        );
        assert_eq!(
            shown("k8s-worker", "prdk8swok511", true),
            "10250 30000-32767"
        );
        assert_eq!(shown("haproxy", "prdinfhap511", false), "6443");
        assert_eq!(shown("haproxy", "prdinfhap511", true), "6443 80 443");
        assert!(find("other").is_none());
    }

    /// The example inventory with `[kubernetes]` settings replaced.
    fn example_with(kubernetes: &str) -> Inventory {
        let text = include_str!("../../../inventory.toml");
        let start = text.find("\ncni = ").unwrap();
        let end = text.find("\n[haproxy]").unwrap();
        let text = format!("{}\n{kubernetes}\n{}", &text[..start], &text[end..]);
        Inventory::parse(&text, Path::new("inventory.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rules(inv: &Inventory, role: &str, host: &str) -> String {
        let t = inv.target(host).unwrap();
        find(role)
            .unwrap()
            .firewall(&t)
            .iter()
            .map(Rule::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn firewall_by_role_and_cni() {
        let calico = example_with("cni = \"calico\"\npod_cidr = \"10.244.0.0/16\"");
        expect_test::expect!["tcp/10250, tcp/30000-32767, udp/30000-32767, tcp/30080, tcp/30443, tcp/179, ipencap (protocol 4), udp/4789, tcp/5473, forward from 10.244.0.0/16, forward to 10.244.0.0/16, forward from 10.96.0.0/12, forward to 10.96.0.0/12"]
            .assert_eq(&rules(&calico, "k8s-worker", "prdk8swok501"));
        expect_test::expect!["tcp/6443, tcp/2379-2380, tcp/10250, tcp/10257, tcp/10259, tcp/179, ipencap (protocol 4), udp/4789, tcp/5473, forward from 10.244.0.0/16, forward to 10.244.0.0/16, forward from 10.96.0.0/12, forward to 10.96.0.0/12"]
            .assert_eq(&rules(&calico, "k8s-master", "prdk8smst501"));
        // The balancers forward nothing and carry no CNI.
        expect_test::expect!["tcp/6443, tcp/80, tcp/443"].assert_eq(&rules(
            &calico,
            "haproxy",
            "prdinfhap501",
        ));
        let flannel = example_with("cni = \"flannel\"");
        expect_test::expect!["tcp/6443, tcp/2379-2380, tcp/10250, tcp/10257, tcp/10259, udp/8472, forward from 10.244.0.0/16, forward to 10.244.0.0/16, forward from 10.96.0.0/12, forward to 10.96.0.0/12"]
            .assert_eq(&rules(&flannel, "k8s-master", "prdk8smst501"));
        let cilium = example_with("cni = \"cilium\"\nservice_cidr = \"172.20.0.0/16\"");
        expect_test::expect!["tcp/6443, tcp/2379-2380, tcp/10250, tcp/10257, tcp/10259, udp/8472, tcp/4240, icmp (protocol 1), tcp/4244, forward from 10.0.0.0/8, forward to 10.0.0.0/8, forward from 172.20.0.0/16, forward to 172.20.0.0/16"]
            .assert_eq(&rules(&cilium, "k8s-master", "prdk8smst501"));
        // Another CNI: its rules by hand; no pod network known, the services' still forwarded.
        let other = example_with(
            "cni = \"none\"\nextra_rules = [{ proto = \"udp\", ports = 6081 }, { proto = \"gre\" }]",
        );
        expect_test::expect!["tcp/6443, tcp/2379-2380, tcp/10250, tcp/10257, tcp/10259, udp/6081, gre (protocol 47), forward from 10.96.0.0/12, forward to 10.96.0.0/12"]
            .assert_eq(&rules(&other, "k8s-master", "prdk8smst501"));
    }

    /// Every port a balancer sends to is one its backends' role opens: the API on the masters,
    /// the ingress NodePorts on the workers (whatever NodePorts the inventory gives).
    #[test]
    fn balancers_send_to_ports_their_backends_open() {
        let text = include_str!("../../../inventory.toml");
        for nodeports in [
            "",
            "ingress_http_nodeport = 31080\ningress_https_nodeport = 32443\n",
        ] {
            let text = text.replace("[haproxy]\n", &format!("[haproxy]\n{nodeports}"));
            let text = text.replace(
                "\ningress_http_nodeport = 30080\ningress_https_nodeport = 30443\n",
                "\n",
            );
            let inv = Inventory::parse(&text, Path::new("inventory.toml")).unwrap();
            let mut checked = 0;
            for balancer in ["prdinfhap501", "prdinfhap511"] {
                let cfg = haproxy::config(&inv.target(balancer).unwrap());
                for line in cfg
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with("server "))
                {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let (name, addr) = (words[1], words[2]);
                    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
                    let t = inv.target(name).unwrap();
                    let opened = t.host.role.firewall(&t);
                    assert!(
                        opened
                            .iter()
                            .any(|r| r.covers(&Rule::tcp(Ports::one(port)))),
                        "{balancer} sends to {name}:{port}, which {name} ({}) does not open: {opened:?}",
                        t.host.role
                    );
                    checked += 1;
                }
                assert!(cfg.contains(&format!(":{} check\n", inv.haproxy.ingress_http_nodeport)));
            }
            assert_eq!(
                checked,
                2 * (1 + 2 * 2),
                "a master and two workers per zone, ingress on"
            );
        }
    }

    /// The full update runs where the seed puts it: right after the NFS client, before the
    /// role's own packages (and long before the network, the last step).
    #[test]
    fn full_update_before_the_roles_packages() {
        let text = include_str!("../../../inventory.toml");
        let mut inv = Inventory::parse(text, Path::new("inventory.toml")).unwrap();
        inv.placeholders.clear();
        for (role, host, first_own) in [
            ("k8s-master", "prdk8smst501", "hostname"),
            ("k8s-worker", "prdk8swok511", "hostname"),
            ("haproxy", "prdinfhap511", "name resolves"),
        ] {
            let mut p = Plan::new();
            find(role)
                .unwrap()
                .plan(inv.target(host).unwrap(), &mut p)
                .unwrap();
            let names = p.names();
            let at = |n: &str| {
                names
                    .iter()
                    .position(|x| x == n)
                    .unwrap_or_else(|| panic!("{role}: no {n}"))
            };
            assert_eq!(
                at("system updated"),
                at("nfs client") + 1,
                "{role}: {names:?}"
            );
            assert_eq!(at(first_own), at("system updated") + 1, "{role}: {names:?}");
            assert!(
                at("system updated")
                    < at(if role == "haproxy" {
                        "haproxy installed"
                    } else {
                        "kubernetes packages"
                    })
            );
        }
    }
}
