//! Read-only checks in the spirit of kubeadm's preflight: is this host ready for `kubeadm
//! init/join`, and does it carry the role's traffic? Each check has a name and ends in
//! [`Verdict::Pass`], [`Verdict::Fail`] (the reason and the fix) or [`Verdict::Skip`] (why it
//! cannot be told here).
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
mod ports;
mod resources;
mod runtime;

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::firewall;

pub use identity::{
    ClockSample, FLEET_CHECKS, Identity, MACHINE_ID, MAX_SKEW_SECS, PRODUCT_UUID, clock_sample,
    clock_skew, clock_synchronized, fleet_checks, global_addresses, hostname_matches, identity,
};
pub use kernel::{module_builtin, module_listed, module_loaded, swap_at_boot, swap_off, sysctl};
pub use ports::{KUBERNETES_HOLDERS, TCP, TCP6, holders, listening_ports, ports_free};
pub use resources::{MEMINFO, MIN_CPUS, MIN_MEMORY_MIB, cpus, mem_total_mib, memory};
pub use runtime::{
    BINARIES, KUBELET_CONFIG, binaries, cgroup_driver, containerd_driver, extra_args_driver,
    kubelet_config_driver, package_of,
};

/// The three sysctls of a Kubernetes node, and the value each must have.
pub const SYSCTLS: [(&str, &str); 3] = [
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];
pub const MODULES: [&str; 2] = ["overlay", "br_netfilter"];

/// Check names, in the order they run. Fleet checks come after every host's own.
pub const NODE_CHECKS: [&str; 12] = [
    "swap off",
    "module overlay",
    "module br_netfilter",
    "sysctl net.bridge.bridge-nf-call-iptables",
    "sysctl net.ipv4.ip_forward",
    "sysctl net.bridge.bridge-nf-call-ip6tables",
    "cgroup driver",
    "binaries",
    "ports free",
    "hostname",
    "clock synchronized",
    "clock skew",
];
/// Masters only.
pub const MASTER_CHECKS: [&str; 2] = ["cpus", "memory"];
/// Load balancers.
pub const BALANCER_CHECKS: [&str; 3] = ["ports free", "clock synchronized", "clock skew"];

/// Files the checks read beyond the default probe: read in the first round trip of a verify
/// run.
pub const FILES: &[&str] = &[MACHINE_ID, PRODUCT_UUID, MEMINFO, TCP, TCP6, KUBELET_CONFIG];

/// [`FILES`], for the state probe.
pub fn probe_files() -> Vec<String> {
    FILES.iter().map(|f| f.to_string()).collect()
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

/// What is verified on one host.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The inventory name: the host name it must have.
    pub name: &'a str,
    /// The inventory role: which checks apply, which ports must be free.
    pub role: &'a str,
    /// A load balancer with ingress frontends (ports 80 and 443 too).
    pub ingress: bool,
}

/// Every check of `spec.role` on this host, in order.
pub fn host_checks(cx: &mut Ctx, spec: &Spec<'_>) -> Result<Vec<Check>> {
    let ports = firewall::role_ports(spec.role, spec.ingress);
    let mut out = Vec::new();
    if spec.role == "haproxy" {
        out.push(ports_free(cx, &ports, &["haproxy"])?);
    } else {
        out.push(swap_off(cx)?);
        for m in MODULES {
            out.push(module_loaded(cx, m)?);
        }
        for (key, want) in SYSCTLS {
            out.push(sysctl(cx, key, want)?);
        }
        out.push(cgroup_driver(cx)?);
        out.push(binaries(cx)?);
        out.push(ports_free(cx, &ports, KUBERNETES_HOLDERS)?);
        if spec.role == "k8s-master" {
            out.push(cpus(cx)?);
            out.push(memory(cx)?);
        }
        out.push(hostname_matches(cx, spec.name)?);
    }
    out.push(clock_synchronized(cx)?);
    out.push(clock_skew(clock_sample(cx)?, MAX_SKEW_SECS));
    Ok(out)
}

/// What the tests of every concern share: a host every check passes on, and how to read a
/// check's failure.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::containerd;
    use crate::ctx::Mode;
    use crate::host::{Output, Recorder};
    use crate::kubelet;
    use crate::testing::{Fixture, photon_files};

    pub(crate) use super::SYSCTLS;

    pub(crate) fn ok(stdout: &str) -> Output {
        Output {
            status: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

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

    /// A Photon worker nodeprep prepared: every node check passes on it.
    pub(crate) fn ready_photon() -> Fixture {
        let containerd =
            containerd::edited_config(Some(photon_files::CONTAINERD_CONFIG), Some(1)).unwrap();
        Fixture::photon()
            .hostname("prdk8smst501")
            .file(containerd::CONFIG, &containerd, 0o644)
            .file(
                kubelet::SYSCONFIG,
                "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
                0o644,
            )
            .dir("/sys/module/br_netfilter")
            .file("/proc/sys/net/ipv4/ip_forward", "1\n", 0o644)
            .file("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n", 0o644)
            .file("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n", 0o644)
            .file(MEMINFO, "MemTotal:        4028440 kB\nMemFree: 1 kB\n", 0o444)
            .file(TCP, "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000\n", 0o444)
            .file(TCP6, "  sl  local_address rem_address   st\n", 0o444)
            .file(MACHINE_ID, "0123456789abcdef0123456789abcdef\n", 0o444)
            .file(PRODUCT_UUID, "4231A2B3-0000-0000-0000-000000000001\n", 0o400)
            .complete()
    }

    pub(crate) fn ready_ctx(mode: Mode) -> (Ctx, std::sync::Arc<Recorder>) {
        let mut f = ready_photon();
        f.state.facts.insert("nproc".into(), "4".into());
        let (cx, rec) = f.ctx(mode);
        rec.reply("timedatectl", ok("yes\n"));
        (cx, rec)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ok, ready_ctx};
    use super::identity::now;
    use super::*;
    use crate::ctx::Mode;

    const MASTER: Spec<'static> = Spec {
        name: "prdk8smst501",
        role: "k8s-master",
        ingress: false,
    };

    #[test]
    fn a_ready_master_passes_everything_read_only() {
        let (mut cx, rec) = ready_ctx(Mode::Apply);
        let now = now();
        rec.reply("date", ok(&format!("{now:.9}\n")));
        let checks = host_checks(&mut cx, &MASTER).unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        let mut want: Vec<&str> = NODE_CHECKS.to_vec();
        want.splice(9..9, MASTER_CHECKS);
        assert_eq!(names, want);
        for c in &checks {
            assert!(c.passed(), "{c:?}");
        }
        assert!(cx.actions().is_empty(), "verify modifies nothing");
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        assert_eq!(sent.len(), 3, "binaries, timedatectl, date: {sent:#?}");
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
        let spec = Spec {
            name: "prdinfhap501",
            role: "haproxy",
            ingress: true,
        };
        let checks = host_checks(&mut cx, &spec).unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, BALANCER_CHECKS);
    }
}
