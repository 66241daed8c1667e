//! Read-only checks in the spirit of kubeadm's preflight: is this host ready for `kubeadm
//! init/join`, and does it carry the role's traffic? Each check has a name and ends in
//! [`Verdict::Pass`], [`Verdict::Fail`] (the reason and the fix) or [`Verdict::Skip`] (why it
//! cannot be told here).
//!
//! Nothing here knows the roles: the caller describes what a host must be in a [`Spec`] (a
//! Kubernetes node and its modules and sysctls, the ports it serves, the resources it needs),
//! and [`host_checks`] runs what that describes.
//!
//! Host checks read the state cache (the probe already holds most of what they need) and run
//! only read-only queries ([`Ctx::query`]); nothing here modifies a host. Checks across hosts
//! ([`fleet_checks`]: unique names, addresses, machine-id, product_uuid) are pure functions
//! over each host's [`Identity`].
//!
//! Inside a container the kernel (modules, sysctls, swap) belongs to the container's host:
//! those checks report what they read, and say it is a container.
//!
//! By concern: `kernel` (swap, modules, sysctls), `runtime` (cgroup driver, binaries), `ports`
//! (ports free), `resources` (CPUs, memory), `identity` (host name, clock, checks across
//! hosts). In each, the parsers (pure functions over text) come apart from the checks that read
//! the host; everything is re-exported here.

mod identity;
mod kernel;
mod node;
mod ports;
mod resources;
mod runtime;

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::firewall::Ports;
use crate::plan::Plan;
use crate::reads::Reads;
use crate::state::Probe;

pub use identity::{
    ClockSample, FLEET_CHECKS, Identity, MACHINE_ID, MAX_SKEW_SECS, PRODUCT_UUID, clock_sample,
    clock_skew, clock_synchronized, fleet_checks, global_addresses, hostname_matches, identity,
};
pub use kernel::{module_builtin, module_listed, module_loaded, swap_at_boot, swap_off, sysctl};
pub use node::{ca_bundle, disk_ids, name_resolves, node_ip, runc_shim, runtime_types};
pub use ports::{KUBERNETES_HOLDERS, TCP, TCP6, holders, listening_ports, ports_free};
pub use resources::{MEMINFO, MIN_CPUS, MIN_MEMORY_MIB, cpus, mem_total_mib, memory};
pub use runtime::{
    BINARIES, KUBELET_CONFIG, binaries, cgroup_driver, containerd_driver, extra_args_driver,
    kubelet_config_driver, package_of,
};

/// Files the checks read of their own.
pub const FILES: &[&str] = &[MACHINE_ID, PRODUCT_UUID, MEMINFO, TCP, TCP6, KUBELET_CONFIG];

/// What the checks read: their own files, and those of the tasks whose results they judge
/// (fstab and swaps, every sysctl file, containerd's and kubelet's configuration, the host
/// name, /etc/hosts, the disks). The CA bundles are read only when there are CAs to find in
/// them ([`declare`]).
pub const READS: [Reads; 8] = [
    Reads::files(FILES),
    crate::kernel::READS,
    crate::kernel::SYSCTL_READS,
    crate::containerd::READS,
    crate::kubelet::READS,
    crate::hostname::READS,
    crate::hosts::READS,
    crate::disks::READS,
];

/// Declares the checks `spec` describes as steps of `p`, in order: each is a check (a failure
/// is recorded and the next ones still run), named as [`check_names`] names it, reading what
/// [`READS`] and the node's live kernel state list.
pub fn declare<'a>(spec: Spec<'a>, p: &mut Plan<'a>) {
    let mut reads = Probe::from(READS);
    if let Some(node) = &spec.node {
        reads = reads.merge(&crate::kernel::live_reads(node.modules, node.sysctls));
    }
    if !spec.ca_certs.is_empty() {
        let mut bundles: Vec<&str> = crate::facts::OsFamily::ALL
            .into_iter()
            .map(|os| crate::ca::layout(os).bundle)
            .collect();
        bundles.dedup();
        reads = reads.merge(&Probe::default().files(&bundles));
    }
    // One probe shared by every check.
    let reads = crate::plan::StepReads::from(reads);
    let names = check_names(&spec);
    let spec = std::sync::Arc::new(spec);
    for (i, name) in names.iter().enumerate() {
        let spec = spec.clone();
        p.check(name, reads.clone(), move |cx| {
            plan(&spec)[i].run(cx)?.into_result()
        });
    }
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// What is wrong, and how to fix it.
    Fail {
        reason: String,
        hint: String,
    },
    /// Cannot be told on this host, and why.
    Skip(String),
}

/// One named check and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
}

impl Check {
    pub fn pass(name: &str) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Pass,
        }
    }

    pub fn fail(name: &str, reason: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Fail {
                reason: reason.into(),
                hint: hint.into(),
            },
        }
    }

    pub fn skip(name: &str, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Skip(reason.into()),
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Fail { .. })
    }

    /// As the result of a step: pass is ok, skip is skipped, fail is an error whose message is
    /// the reason, then `fix: ` and the hint on a line of its own.
    pub fn into_result(self) -> Result<Change> {
        match self.verdict {
            Verdict::Pass => Ok(Change::Unchanged),
            Verdict::Skip(why) => Ok(Change::Skipped(why)),
            Verdict::Fail { reason, hint } => Err(Error::new(
                ErrorKind::Invalid,
                format!("{reason}\nfix: {hint}"),
            )),
        }
    }
}

/// What is verified on one host: the caller, who knows the host's role, fills it in.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The inventory name: the host name a node must have.
    pub name: &'a str,
    /// A Kubernetes node: swap, its modules and sysctls, cgroup driver, binaries and host name
    /// are checked. `None` for a load balancer.
    pub node: Option<Node<'a>>,
    /// The ports the host serves: they must be free, or held by [`allowed_holders`](Self::allowed_holders).
    pub ports: Vec<Ports>,
    /// The processes that may already hold those ports (Kubernetes' own on a node in a
    /// cluster, [`KUBERNETES_HOLDERS`]; haproxy on a load balancer).
    pub allowed_holders: &'a [&'a str],
    /// The CPUs and memory the host needs, if checked (a control-plane node).
    pub resources: Option<Resources>,
    /// The address the host's name must resolve to (its cluster address), if checked.
    pub cluster_address: Option<&'a str>,
    /// The CA certificates (name, PEM) the bundle applications read must hold.
    pub ca_certs: Vec<(String, String)>,
}

/// What a Kubernetes node's kernel must have.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// Loaded or built in.
    pub modules: &'a [&'a str],
    /// Each key's live value.
    pub sysctls: &'a [(&'a str, &'a str)],
}

/// The least a host must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u32,
    pub memory_mib: u64,
}

/// One check of a host before it runs: what [`host_checks`] runs and [`check_names`] names.
#[derive(Debug, Clone, Copy)]
enum HostCheck<'s> {
    SwapOff,
    Module(&'s str),
    Sysctl(&'s str, &'s str),
    CgroupDriver,
    Binaries,
    RuncShim,
    NodeIp,
    DiskIds,
    PortsFree(&'s [Ports], &'s [&'s str]),
    Cpus(u32),
    Memory(u64),
    Hostname(&'s str),
    NameResolves(&'s str, &'s str),
    CaBundle(&'s [(String, String)]),
    ClockSynchronized,
    ClockSkew,
}

impl HostCheck<'_> {
    fn name(self) -> String {
        match self {
            HostCheck::SwapOff => kernel::name::SWAP_OFF.into(),
            HostCheck::Module(module) => kernel::name::module(module),
            HostCheck::Sysctl(key, _) => kernel::name::sysctl(key),
            HostCheck::CgroupDriver => runtime::name::CGROUP_DRIVER.into(),
            HostCheck::Binaries => runtime::name::BINARIES.into(),
            HostCheck::RuncShim => node::name::RUNC_SHIM.into(),
            HostCheck::NodeIp => node::name::NODE_IP.into(),
            HostCheck::DiskIds => node::name::DISK_IDS.into(),
            HostCheck::PortsFree(..) => ports::name::PORTS_FREE.into(),
            HostCheck::Cpus(_) => resources::name::CPUS.into(),
            HostCheck::Memory(_) => resources::name::MEMORY.into(),
            HostCheck::Hostname(_) => identity::name::HOSTNAME.into(),
            HostCheck::NameResolves(..) => node::name::NAME_RESOLVES.into(),
            HostCheck::CaBundle(_) => node::name::CA_BUNDLE.into(),
            HostCheck::ClockSynchronized => identity::name::CLOCK_SYNCHRONIZED.into(),
            HostCheck::ClockSkew => identity::name::CLOCK_SKEW.into(),
        }
    }

    fn run(self, cx: &mut Ctx) -> Result<Check> {
        match self {
            HostCheck::SwapOff => swap_off(cx),
            HostCheck::Module(module) => module_loaded(cx, module),
            HostCheck::Sysctl(key, want) => sysctl(cx, key, want),
            HostCheck::CgroupDriver => cgroup_driver(cx),
            HostCheck::Binaries => binaries(cx),
            HostCheck::RuncShim => runc_shim(cx),
            HostCheck::NodeIp => node_ip(cx),
            HostCheck::DiskIds => disk_ids(cx),
            HostCheck::PortsFree(ports, allowed) => ports_free(cx, ports, allowed),
            HostCheck::Cpus(min) => cpus(cx, min),
            HostCheck::Memory(min_mib) => memory(cx, min_mib),
            HostCheck::Hostname(name) => hostname_matches(cx, name),
            HostCheck::NameResolves(name, address) => name_resolves(cx, name, address),
            HostCheck::CaBundle(certs) => ca_bundle(cx, certs),
            HostCheck::ClockSynchronized => clock_synchronized(cx),
            HostCheck::ClockSkew => Ok(clock_skew(clock_sample(cx)?, MAX_SKEW_SECS)),
        }
    }
}

/// The checks `spec` describes, in the order they run: a node's kernel and runtime (the runc
/// shim, kubelet's node IP, the disks' ids), the ports, the resources, a node's host name, the
/// name resolving to the cluster address, the CA bundle, the clock.
fn plan<'s>(spec: &'s Spec<'_>) -> Vec<HostCheck<'s>> {
    let mut out = Vec::new();
    if let Some(node) = &spec.node {
        out.push(HostCheck::SwapOff);
        out.extend(node.modules.iter().map(|m| HostCheck::Module(m)));
        out.extend(node.sysctls.iter().map(|(k, v)| HostCheck::Sysctl(k, v)));
        out.push(HostCheck::CgroupDriver);
        out.push(HostCheck::Binaries);
        out.push(HostCheck::RuncShim);
        out.push(HostCheck::NodeIp);
        out.push(HostCheck::DiskIds);
    }
    out.push(HostCheck::PortsFree(&spec.ports, spec.allowed_holders));
    if let Some(r) = spec.resources {
        out.push(HostCheck::Cpus(r.cpus));
        out.push(HostCheck::Memory(r.memory_mib));
    }
    if spec.node.is_some() {
        out.push(HostCheck::Hostname(spec.name));
    }
    if let Some(address) = spec.cluster_address {
        out.push(HostCheck::NameResolves(spec.name, address));
    }
    if !spec.ca_certs.is_empty() {
        out.push(HostCheck::CaBundle(&spec.ca_certs));
    }
    out.push(HostCheck::ClockSynchronized);
    out.push(HostCheck::ClockSkew);
    out
}

/// Every check `spec` describes, run on this host, in order.
pub fn host_checks(cx: &mut Ctx, spec: &Spec<'_>) -> Result<Vec<Check>> {
    plan(spec).into_iter().map(|c| c.run(cx)).collect()
}

/// The names of the checks [`host_checks`] runs for `spec`, in the same order, without
/// running them (for `--only` / `--skip`).
pub fn check_names(spec: &Spec<'_>) -> Vec<String> {
    plan(spec).into_iter().map(HostCheck::name).collect()
}

/// What the tests of every concern share: a host every check passes on, and how to read a
/// check's failure.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::containerd;
    use crate::ctx::Mode;
    use crate::kubelet;
    pub(crate) use crate::testing::ok;
    use crate::testing::{Fixture, Recorder, photon_files};

    /// A Kubernetes node's modules and sysctls, as the k8s roles set them.
    pub(crate) const MODULES: [&str; 2] = ["overlay", "br_netfilter"];
    pub(crate) const SYSCTLS: [(&str, &str); 3] = [
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ];
    pub(crate) const NODE: Node<'static> = Node {
        modules: &MODULES,
        sysctls: &SYSCTLS,
    };

    pub(crate) fn reason(c: &Check) -> &str {
        match &c.verdict {
            Verdict::Fail { reason, .. } => reason,
            other => panic!("{} did not fail: {other:?}", c.name),
        }
    }

    pub(crate) fn hint(c: &Check) -> &str {
        match &c.verdict {
            Verdict::Fail { hint, .. } => hint,
            other => panic!("{} did not fail: {other:?}", c.name),
        }
    }

    /// The cluster address of [`ready_photon`], and the CA its bundle holds.
    pub(crate) const ADDRESS: &str = "10.1.2.11";
    pub(crate) const CA_PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0FSb290\n-----END CERTIFICATE-----\n";

    /// A Photon worker nodeprep prepared: every node check passes on it (its name resolves to
    /// its cluster address [`ADDRESS`], kubelet's node IP is that address, its one disk has a
    /// stable id, its bundle holds [`CA_PEM`]).
    pub(crate) fn ready_photon() -> Fixture {
        let containerd =
            containerd::edited_config(Some(photon_files::CONTAINERD_CONFIG), Some(1)).unwrap();
        let mut f = Fixture::photon()
            .hostname("prdk8smst501")
            .file(containerd::CONFIG, &containerd, 0o644)
            .file(
                "/etc/sysctl.d/99-kubernetes-cri.conf",
                &crate::kernel::render_sysctl(&SYSCTLS),
                0o644,
            )
            .file(
                kubelet::SYSCONFIG,
                &format!("KUBELET_EXTRA_ARGS=--cgroup-driver=systemd --node-ip={ADDRESS}\n"),
                0o644,
            )
            .file(
                crate::hosts::HOSTS,
                &crate::hosts::with_host(
                    photon_files::HOSTS,
                    "prdk8smst501",
                    ADDRESS,
                    "",
                ),
                0o644,
            )
            .file(crate::ca::PKI_BUNDLE, CA_PEM, 0o644)
            .dir("/sys/module/br_netfilter")
            .file("/proc/sys/net/ipv4/ip_forward", "1\n", 0o644)
            .file("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n", 0o644)
            .file("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n", 0o644)
            .file(MEMINFO, "MemTotal:        4028440 kB\nMemFree: 1 kB\n", 0o444)
            .file(TCP, "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000\n", 0o444)
            .file(TCP6, "  sl  local_address rem_address   st\n", 0o444)
            .file(MACHINE_ID, "0123456789abcdef0123456789abcdef\n", 0o444)
            .file(PRODUCT_UUID, "4231A2B3-0000-0000-0000-000000000001\n", 0o400)
            .complete();
        f.state.facts.addresses = vec![ADDRESS.parse().unwrap()];
        f.state.answers.insert(
            crate::disks::LIST.iter().map(|s| s.to_string()).collect(),
            "disk sda\nid scsi-36000c29a1b2c3d4e5f sda\nid wwn-0x6000c29a1b2c3d4e5f sda\n".into(),
        );
        f
    }

    pub(crate) fn ready_ctx(mode: Mode) -> (Ctx, std::sync::Arc<Recorder>) {
        let mut f = ready_photon();
        f.state.facts.nproc = Some(4);
        let (cx, rec) = f.ctx(mode);
        rec.reply("timedatectl", ok("yes\n"));
        (cx, rec)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ADDRESS, CA_PEM, NODE, ok, ready_ctx};
    use super::identity::now;
    use super::*;
    use crate::ctx::Mode;
    use crate::firewall;

    /// Check names, in the order they run: a node's, a master's own (before "hostname"), a
    /// load balancer's.
    const NODE_CHECKS: [&str; 17] = [
        "swap off",
        "module overlay",
        "module br_netfilter",
        "sysctl net.bridge.bridge-nf-call-iptables",
        "sysctl net.ipv4.ip_forward",
        "sysctl net.bridge.bridge-nf-call-ip6tables",
        "cgroup driver",
        "binaries",
        "runc shim",
        "kubelet node ip",
        "disk ids",
        "ports free",
        "hostname",
        "node name resolves",
        "ca bundle",
        "clock synchronized",
        "clock skew",
    ];
    const MASTER_CHECKS: [&str; 2] = ["cpus", "memory"];
    const BALANCER_CHECKS: [&str; 4] = [
        "ports free",
        "node name resolves",
        "clock synchronized",
        "clock skew",
    ];

    /// A control-plane node, as the k8s-master role describes it.
    fn master() -> Spec<'static> {
        Spec {
            name: "prdk8smst501",
            node: Some(NODE),
            ports: firewall::sample::MASTER_PORTS.to_vec(),
            allowed_holders: KUBERNETES_HOLDERS,
            resources: Some(Resources {
                cpus: MIN_CPUS,
                memory_mib: MIN_MEMORY_MIB,
            }),
            cluster_address: Some(ADDRESS),
            ca_certs: vec![("corp-root.crt".into(), CA_PEM.into())],
        }
    }

    /// A worker node, as the k8s-worker role describes it.
    fn worker() -> Spec<'static> {
        Spec {
            name: "prdk8smst501",
            node: Some(NODE),
            ports: firewall::sample::WORKER_PORTS.to_vec(),
            allowed_holders: KUBERNETES_HOLDERS,
            resources: None,
            cluster_address: Some(ADDRESS),
            ca_certs: vec![("corp-root.crt".into(), CA_PEM.into())],
        }
    }

    /// A load balancer with ingress frontends, as the haproxy role describes it.
    fn balancer(name: &str) -> Spec<'_> {
        Spec {
            name,
            node: None,
            ports: [
                firewall::sample::BALANCER_PORTS,
                firewall::sample::INGRESS_PORTS,
            ]
            .concat(),
            allowed_holders: &["haproxy"],
            resources: None,
            cluster_address: Some(ADDRESS),
            ca_certs: Vec::new(),
        }
    }

    #[test]
    fn a_ready_master_passes_everything_read_only() {
        let (mut cx, rec) = ready_ctx(Mode::Apply);
        let now = now();
        rec.reply("date", ok(&format!("{now:.9}\n")));
        let checks = host_checks(&mut cx, &master()).unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        let mut want: Vec<&str> = NODE_CHECKS.to_vec();
        want.splice(12..12, MASTER_CHECKS);
        assert_eq!(names, want);
        for c in &checks {
            assert!(c.passed(), "{c:?}");
        }
        assert!(cx.actions().is_empty(), "verify modifies nothing");
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(
            sent.len(),
            4,
            "binaries, runc shim, timedatectl, date: {sent:#?}"
        );
    }

    #[test]
    fn check_as_step_result() {
        assert_eq!(Check::pass("x").into_result().unwrap(), Change::Unchanged);
        assert_eq!(
            Check::skip("x", "why").into_result().unwrap(),
            Change::Skipped("why".into())
        );
        let e = Check::fail("x", "broken", "mend it")
            .into_result()
            .unwrap_err();
        assert_eq!(e.to_string(), "broken\nfix: mend it");
    }

    #[test]
    fn balancer_checks() {
        let (mut cx, rec) = ready_ctx(Mode::Check);
        rec.reply("date", ok(&format!("{:.9}\n", now())));
        let spec = balancer("prdinfhap501");
        let checks = host_checks(&mut cx, &spec).unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, BALANCER_CHECKS);
    }

    #[test]
    fn names_are_those_of_the_checks_run() {
        for spec in [master(), worker(), balancer("prdinfhap501")] {
            let (mut cx, rec) = ready_ctx(Mode::Check);
            rec.reply("date", ok(&format!("{:.9}\n", now())));
            let run: Vec<String> = host_checks(&mut cx, &spec)
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect();
            assert_eq!(check_names(&spec), run);
        }
        let mut want: Vec<&str> = NODE_CHECKS.to_vec();
        want.splice(12..12, MASTER_CHECKS);
        assert_eq!(check_names(&master()), want);
        assert_eq!(check_names(&worker()), NODE_CHECKS);
        assert_eq!(check_names(&balancer("prdinfhap501")), BALANCER_CHECKS);
        // No ports: the check is still there, and says why it has nothing to tell.
        let (mut cx, rec) = ready_ctx(Mode::Check);
        rec.reply("date", ok(&format!("{:.9}\n", now())));
        let spec = Spec {
            ports: Vec::new(),
            ..worker()
        };
        let checks = host_checks(&mut cx, &spec).unwrap();
        assert_eq!(
            checks[11],
            Check::skip("ports free", "no ports for this role")
        );
    }
}
