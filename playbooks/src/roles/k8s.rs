//! Kubernetes nodes: control-plane masters and workers.

use tasks::firewall::{self, Chain, Ports, Rule};
use tasks::{Change, Plan, Reads, Result, StepReads, verify};
use tasks::{containerd, disks, docker, hostname, kernel, kubelet, proxy};

use super::{Role, common, ingress_nodeports, name_resolves, network};
use crate::inventory::sources::no_proxy;
use crate::inventory::{Source, Target, pod_network, service_network};

/// A master or a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Master,
    Worker,
}

/// A Kubernetes node of one kind.
#[derive(Debug, Clone, Copy)]
pub struct K8sNode(pub NodeKind);

/// Control plane: API server, etcd client and peer, kubelet, controller-manager, scheduler.
pub const MASTER_PORTS: &[Ports] = &[
    Ports::one(6443),
    Ports::range(2379, 2380),
    Ports::one(10250),
    Ports::one(10257),
    Ports::one(10259),
];

/// Workers: kubelet and the NodePort range.
pub const WORKER_PORTS: &[Ports] = &[Ports::one(10250), NODEPORTS];

/// Kubernetes' default NodePort range (kube-apiserver's `--service-node-port-range`): open
/// on workers for TCP and UDP services alike.
pub const NODEPORTS: Ports = Ports::range(30000, 32767);

pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-kubernetes-cri.conf";
pub const SYSCTLS: &[(&str, &str)] = &[
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];
pub const MODULES_FILE: &str = "/etc/modules-load.d/containerd.conf";
pub const MODULES: &[&str] = &["overlay", "br_netfilter"];

impl Role for K8sNode {
    fn name(&self) -> &'static str {
        match self.0 {
            NodeKind::Master => "k8s-master",
            NodeKind::Worker => "k8s-worker",
        }
    }

    fn about(&self) -> &'static str {
        match self.0 {
            NodeKind::Master => "prepare a Kubernetes control-plane node",
            NodeKind::Worker => "prepare a Kubernetes worker node",
        }
    }

    fn ports(&self, _: &Target) -> Vec<Ports> {
        match self.0 {
            NodeKind::Master => MASTER_PORTS.to_vec(),
            NodeKind::Worker => WORKER_PORTS.to_vec(),
        }
    }

    /// Its ports; on workers the NodePorts for UDP too, and the ingress controller's NodePorts
    /// the balancers send to; the CNI's rules and the inventory's extra rules; forwarding to
    /// and from the pods' and the services' networks.
    fn firewall(&self, t: &Target) -> Vec<Rule> {
        let inv = t.inventory;
        let k = &inv.kubernetes;
        let mut rules: Vec<Rule> = self.ports(t).into_iter().map(Rule::tcp).collect();
        if self.0 == NodeKind::Worker {
            rules.push(Rule::udp(NODEPORTS));
            rules.extend(ingress_nodeports(inv).into_iter().map(Rule::tcp));
        }
        rules.extend(k.cni.rules);
        rules.extend(k.extra_rules.iter().filter_map(|r| r.rule().ok()));
        for net in pod_network(inv).into_iter().chain([service_network(inv)]) {
            rules.extend([Rule::forward_from(net), Rule::forward_to(net)]);
        }
        rules
    }

    fn modules(&self) -> &'static [&'static str] {
        MODULES
    }

    fn sysctls(&self) -> &'static [(&'static str, &'static str)] {
        SYSCTLS
    }

    fn verify<'a>(&self, t: Target<'a>) -> verify::Spec<'a> {
        verify::Spec {
            name: t.name,
            node: Some(verify::Node {
                modules: self.modules(),
                sysctls: self.sysctls(),
            }),
            ports: self.ports(&t),
            allowed_holders: verify::KUBERNETES_HOLDERS,
            // kubeadm's preflight minimums for a control-plane node.
            resources: (self.0 == NodeKind::Master).then_some(verify::Resources {
                cpus: verify::MIN_CPUS,
                memory_mib: verify::MIN_MEMORY_MIB,
            }),
            cluster_address: Some(t.cluster_address()),
            ca_certs: super::common::verify_ca_certs(t),
        }
    }

    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
        common(t, p);
        p.step("hostname", hostname::READS, move |cx| {
            hostname::hostname(cx, t.name)
        });
        name_resolves(t, p, true);
        // A check: a failure is reported (with the fix) but the preparation goes on.
        p.check("stable disk ids", disks::READS, disks::stable_disk_ids);
        kernel_prep(p, self.modules(), self.sysctls());
        let k = &t.inventory.kubernetes;
        let source = match k.source {
            Source::Upstream => kubelet::Source::Upstream { minor: &k.version },
            Source::Present => kubelet::Source::Present,
            Source::Distro => kubelet::Source::Distro { minor: &k.version },
        };
        let kube = p.step("kubernetes packages", kubelet::READS, move |cx| {
            kubelet::packages(cx, source)
        });
        p.installs(kube, move |cx| kubelet::batched_packages(cx, source));
        let runtime = p.step(
            "containerd installed",
            containerd::READS,
            containerd::installed,
        );
        p.installs(runtime, containerd::packages);
        let config = p.step("containerd config", containerd::READS, containerd::config);
        // The proxy's NO_PROXY: the inventory's hosts, the cluster's networks, the operator's
        // extras (see `inventory::sources::no_proxy`).
        let no_proxy = move || {
            let inv = t.inventory;
            no_proxy(
                &t,
                pod_network(inv).map(|n| n.to_string()),
                service_network(inv).to_string(),
            )
        };
        let runtime_proxy = move |cx: &mut tasks::Ctx, drop_in: &str| {
            let hp = t.proxy();
            let list = no_proxy();
            let given = hp.as_ref().map(|hp| proxy::Proxy {
                http: hp.http,
                https: hp.https,
                no_proxy: &list,
            });
            proxy::runtime_proxy(cx, drop_in, given.as_ref())
        };
        let containerd_proxy = p.step("containerd proxy", proxy::READS, move |cx| {
            runtime_proxy(cx, proxy::CONTAINERD_DROP_IN)
        });
        p.step("containerd running", containerd::READS, move |cx| {
            let changed = cx.changed(config) || cx.changed(containerd_proxy);
            containerd::enabled_and_running(cx, changed)
        });
        p.step(
            "crictl config",
            containerd::READS,
            containerd::crictl_config,
        );
        let daemon = p.step("docker daemon.json", docker::READS, move |cx| {
            if k.docker || docker::is_installed(cx)? {
                docker::daemon_json(cx)
            } else {
                Ok(Change::Skipped("docker is not installed".into()))
            }
        });
        let docker_proxy = p.step("docker proxy", proxy::READS, move |cx| {
            if k.docker || docker::is_installed(cx)? {
                runtime_proxy(cx, proxy::DOCKER_DROP_IN)
            } else {
                Ok(Change::Skipped("docker is not installed".into()))
            }
        });
        p.step("docker running", docker::READS, move |cx| {
            let changed = cx.changed(daemon) || cx.changed(docker_proxy);
            docker::enable_and_start(cx, changed)
        });
        p.step("kubelet extra args", kubelet::READS, move |cx| {
            kubelet::extra_args(cx, t.cluster_address())
        });
        p.step("kubelet enabled", kubelet::READS, kubelet::enabled);
        let (forward, input): (Vec<Rule>, Vec<Rule>) = self
            .firewall(&t)
            .into_iter()
            .partition(|r| r.chain == Chain::Forward);
        p.step("firewall ports", firewall::READS, move |cx| {
            firewall::open(cx, &input)
        });
        // A step of its own: where the firewall cannot take them (firewalld), its outcome says so.
        p.step("firewall forward", firewall::READS, move |cx| {
            firewall::open(cx, &forward)
        });
        network(t, p)?;
        Ok(())
    }
}

/// Swap off now and for good; the modules loaded now and at boot; the sysctls persisted and
/// live (after the modules: the bridge keys exist only once br_netfilter is loaded).
pub fn kernel_prep<'a>(
    p: &mut Plan<'a>,
    modules: &'a [&'a str],
    sysctls: &'a [(&'a str, &'a str)],
) {
    // One probe shared by both steps.
    let live = StepReads::from(kernel::live_reads(modules, sysctls));
    p.step("swap off", kernel::READS, kernel::swap_off);
    p.step(
        "swap disabled in fstab",
        kernel::READS,
        kernel::fstab_swap_disabled,
    );
    p.step(
        "kernel modules persisted",
        [kernel::READS, Reads::files(&[MODULES_FILE])],
        move |cx| kernel::modules_file(cx, MODULES_FILE, modules),
    );
    p.step("kernel modules loaded", live.clone(), move |cx| {
        kernel::modules_loaded(cx, modules)
    });
    // Persisted, and winning at boot over every other sysctl file.
    let persisted = p.step(
        "sysctl persisted",
        [Reads::files(&[SYSCTL_FILE]), kernel::SYSCTL_READS],
        move |cx| kernel::sysctl_persisted(cx, SYSCTL_FILE, sysctls),
    );
    p.step("sysctl applied", live, move |cx| {
        let changed = cx.changed(persisted);
        kernel::sysctl_applied(cx, sysctls, changed)
    });
}
