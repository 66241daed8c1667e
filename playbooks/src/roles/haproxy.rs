//! The load balancer: haproxy in front of the masters' API, and in front of the workers of
//! its zone for ingress when the inventory asks.

use tasks::firewall::{self, Ports};
use tasks::{Plan, Result, haproxy, verify};

use super::{K8sNode, NodeKind, Role, common, name_resolves, network};
use crate::inventory::{Inventory, Target};

/// A load balancer.
#[derive(Debug, Clone, Copy)]
pub struct Haproxy;

/// The frontend for the API.
pub const BALANCER_PORTS: &[Ports] = &[Ports::one(6443)];
/// The ingress frontends.
pub const INGRESS_PORTS: &[Ports] = &[Ports::one(80), Ports::one(443)];

/// The backends: masters, and the workers of the balancer's zone.
fn backends(t: &Target, role: &dyn Role, same_zone: bool) -> Vec<(String, String)> {
    t.inventory
        .hosts
        .iter()
        .filter(|(_, h)| h.role.is(role) && (!same_zone || h.zone == t.host.zone))
        .map(|(n, h)| (n.clone(), h.cluster_address().to_string()))
        .collect()
}

/// Ingress frontends are served when the inventory asks and the zone has workers.
pub fn ingress(t: &Target) -> bool {
    t.inventory.haproxy.ingress && !backends(t, &K8sNode(NodeKind::Worker), true).is_empty()
}

/// The workers' ports the ingress frontends send to (the ingress controller's NodePorts,
/// `haproxy.ingress_http_nodeport` and `ingress_https_nodeport`), when the inventory asks for
/// ingress: the workers open them.
pub fn ingress_nodeports(inv: &Inventory) -> Vec<Ports> {
    let h = &inv.haproxy;
    if h.ingress {
        vec![
            Ports::one(h.ingress_http_nodeport),
            Ports::one(h.ingress_https_nodeport),
        ]
    } else {
        Vec::new()
    }
}

/// The balancer's haproxy.cfg: the API over every master, ingress over the ingress NodePorts
/// of the workers of its zone.
pub fn config(t: &Target) -> String {
    let masters = backends(t, &K8sNode(NodeKind::Master), false);
    let workers = backends(t, &K8sNode(NodeKind::Worker), true);
    let m: Vec<(&str, &str)> = masters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let w: Vec<(&str, &str)> = workers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let nodeports = haproxy::Ingress {
        workers: &w,
        http_nodeport: t.inventory.haproxy.ingress_http_nodeport,
        https_nodeport: t.inventory.haproxy.ingress_https_nodeport,
    };
    haproxy::render_config(&m, ingress(t).then_some(&nodeports))
}

impl Role for Haproxy {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    fn about(&self) -> &'static str {
        "prepare a load balancer for the Kubernetes API (and ingress)"
    }

    fn ports(&self, t: &Target) -> Vec<Ports> {
        if ingress(t) {
            [BALANCER_PORTS, INGRESS_PORTS].concat()
        } else {
            BALANCER_PORTS.to_vec()
        }
    }

    fn verify<'a>(&self, t: Target<'a>) -> verify::Spec<'a> {
        verify::Spec {
            name: t.name,
            node: None,
            ports: self.ports(&t),
            // haproxy itself may hold its frontends already.
            allowed_holders: &["haproxy"],
            resources: None,
            cluster_address: Some(t.cluster_address()),
            ca_certs: super::common::verify_ca_certs(t),
        }
    }

    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
        common(t, p);
        name_resolves(t, p, false);
        let text = config(&t);
        let installed = p.step("haproxy installed", haproxy::READS, haproxy::installed);
        p.installs(installed, |_| Ok(vec![haproxy::PACKAGE.to_string()]));
        let config = p.step("haproxy config", haproxy::READS, move |cx| {
            haproxy::config(cx, &text)
        });
        p.step("haproxy enabled", haproxy::READS, haproxy::enabled);
        let rules = self.firewall(&t);
        p.step("firewall ports", firewall::READS, move |cx| {
            firewall::open(cx, &rules)
        });
        p.step("haproxy running", haproxy::READS, move |cx| {
            let changed = cx.changed(config);
            haproxy::running(cx, changed)
        });
        network(t, p)?;
        Ok(())
    }
}
