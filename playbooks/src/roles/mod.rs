//! The built-in roles. A role is a type that owns everything nodeprep knows about it: the
//! ports its hosts serve (opened in the host firewall, checked free by `verify`), the kernel
//! modules and sysctls it needs, its steps, and its `verify` checks. Nothing else in the code
//! matches on role names: the inventory, the runner and the tasks ask the role.
//!
//! Adding a role: a file here with a type implementing [`Role`], and one line in [`ALL`].

mod common;
mod haproxy;
mod k8s;

use tasks::firewall::Ports;
use tasks::verify;
use tasks::{Plan, Result};

use crate::inventory::Target;

pub use common::{common, full_update, network};
pub use haproxy::Haproxy;
pub use k8s::{K8sNode, NodeKind};

/// Everything nodeprep knows about one inventory role.
pub trait Role: Send + Sync {
    /// The name the inventory's `role` field uses.
    fn name(&self) -> &'static str;
    /// One line for `cargo xtask playbooks`.
    fn about(&self) -> &'static str;
    /// The TCP ports this host serves: opened in its firewall, free before kubeadm runs.
    fn ports(&self, t: &Target) -> Vec<Ports>;
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

/// The names of the roles, for messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|r| r.name()).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::Inventory;

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

    /// The full update runs where the seed puts it: right after the NFS client, before the
    /// role's own packages (and long before the network, the last step).
    #[test]
    fn full_update_before_the_roles_packages() {
        let text = include_str!("../../../inventory.toml");
        let inv = Inventory::parse(text, Path::new("inventory.toml")).unwrap();
        for (role, host, first_own) in [
            ("k8s-master", "prdk8smst501", "hostname"),
            ("k8s-worker", "prdk8swok511", "hostname"),
            ("haproxy", "prdinfhap511", "haproxy installed"),
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
