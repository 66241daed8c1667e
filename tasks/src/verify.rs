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

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::firewall::{self, Ports};
use crate::{containerd, hostname, kernel, kubelet};

pub const MACHINE_ID: &str = "/etc/machine-id";
pub const PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";
pub const MEMINFO: &str = "/proc/meminfo";
pub const TCP: &str = "/proc/net/tcp";
pub const TCP6: &str = "/proc/net/tcp6";
/// Written by `kubeadm init/join`: kubelet's configuration, with its cgroup driver.
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// The three sysctls of a Kubernetes node, and the value each must have.
pub const SYSCTLS: [(&str, &str); 3] = [
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];
pub const MODULES: [&str; 2] = ["overlay", "br_netfilter"];
/// What kubelet and kubeadm need on PATH (kubeadm's preflight list).
pub const BINARIES: [&str; 8] = [
    "conntrack",
    "socat",
    "ebtables",
    "ethtool",
    "ip",
    "iptables",
    "nsenter",
    "mount",
];
/// kubeadm's minimums for a control-plane node.
pub const MIN_CPUS: u32 = 2;
pub const MIN_MEMORY_MIB: u64 = 1700;
/// Clock skew tolerated between a host and the controller.
pub const MAX_SKEW_SECS: f64 = 30.0;

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
pub const FLEET_CHECKS: [&str; 4] = [
    "unique hostname",
    "unique address",
    "unique machine-id",
    "unique product_uuid",
];

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

fn container_note(cx: &Ctx) -> String {
    match &cx.facts().container {
        Some(c) => format!(" (this host is a container ({c}): the kernel is its host's)"),
        None => String::new(),
    }
}

// ---- swap -----------------------------------------------------------------------------------

/// No swap is active, and /etc/fstab turns none on at boot (kubelet refuses to start with
/// swap on, unless configured for it).
pub fn swap_off(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = "swap off";
    let swaps = cx
        .file(kernel::SWAPS)?
        .map(|f| f.text())
        .unwrap_or_default();
    let active = kernel::active_swaps(&swaps);
    if !active.is_empty() {
        return Ok(Check::fail(
            NAME,
            format!("swap is on: {}{}", active.join(", "), container_note(cx)),
            "`swapoff -a`, and comment out the swap lines of /etc/fstab (the k8s roles' steps \
             \"swap off\" and \"swap disabled in fstab\" do both)",
        ));
    }
    let fstab = cx
        .file(kernel::FSTAB)?
        .map(|f| f.text())
        .unwrap_or_default();
    let at_boot: Vec<&str> = fstab
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && kernel::is_swap_entry(l))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if !at_boot.is_empty() {
        return Ok(Check::fail(
            NAME,
            format!(
                "no swap is active, but /etc/fstab turns on {} at the next boot",
                at_boot.join(", ")
            ),
            "comment out the swap lines of /etc/fstab (step \"swap disabled in fstab\")",
        ));
    }
    Ok(Check::pass(NAME))
}

// ---- kernel modules and sysctls -------------------------------------------------------------

/// `module` is loaded or built into the kernel.
pub fn module_loaded(cx: &mut Ctx, module: &str) -> Result<Check> {
    let name = format!("module {module}");
    if cx.file(&format!("/sys/module/{module}"))?.is_some() {
        return Ok(Check::pass(&name));
    }
    let listed = cx.file(kernel::MODULES)?.is_some_and(|f| {
        f.text()
            .lines()
            .any(|l| l.split(' ').next() == Some(module))
    });
    // br_netfilter's keys exist only once it is in the kernel, however it got there.
    let bridge_keys = module == "br_netfilter"
        && cx
            .file(&kernel::sysctl_path("net.bridge.bridge-nf-call-iptables"))?
            .is_some();
    if listed || bridge_keys {
        return Ok(Check::pass(&name));
    }
    let out = cx.query(&[
        "sh",
        "-c",
        "cat \"/lib/modules/$(uname -r)/modules.builtin\" 2>/dev/null",
    ])?;
    let builtin = out
        .stdout_str()
        .lines()
        .any(|l| l.rsplit('/').next() == Some(&format!("{module}.ko")));
    if builtin {
        return Ok(Check::pass(&name));
    }
    Ok(Check::fail(
        &name,
        format!("{module} is not loaded{}", container_note(cx)),
        format!(
            "`modprobe {module}`, and list it in /etc/modules-load.d/containerd.conf for the next boot \
             (steps \"kernel modules loaded\" and \"kernel modules persisted\")"
        ),
    ))
}

/// The live value of `key` is `want`.
pub fn sysctl(cx: &mut Ctx, key: &str, want: &str) -> Result<Check> {
    let name = format!("sysctl {key}");
    let live = cx
        .file(&kernel::sysctl_path(key))?
        .map(|f| f.text().trim().to_string());
    let hint = format!(
        "`{key} = {want}` in /etc/sysctl.d/99-kubernetes-cri.conf, then `sysctl --system` (steps \"sysctl \
         persisted\" and \"sysctl applied\"; a file sorting later may override it)"
    );
    Ok(match live {
        Some(v) if v == want => Check::pass(&name),
        Some(v) => Check::fail(
            &name,
            format!("{key} is {v}, want {want}{}", container_note(cx)),
            hint,
        ),
        None if key.starts_with("net.bridge.") => Check::fail(
            &name,
            format!(
                "{key} does not exist: br_netfilter is not loaded{}",
                container_note(cx)
            ),
            format!("`modprobe br_netfilter` first; then {hint}"),
        ),
        None => Check::fail(
            &name,
            format!("{key} does not exist{}", container_note(cx)),
            hint,
        ),
    })
}

// ---- cgroup driver --------------------------------------------------------------------------

/// The cgroup driver containerd runs runc with: `systemd` when `SystemdCgroup = true` in its
/// config (1.x and 2.x layouts), else `cgroupfs` (containerd's default). `Err`: unreadable.
pub fn containerd_driver(config: Option<&str>) -> std::result::Result<&'static str, String> {
    let Some(text) = config else {
        return Ok("cgroupfs");
    };
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", containerd::CONFIG))?;
    for plugin in ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"] {
        let value = doc
            .get("plugins")
            .and_then(|p| p.get(plugin))
            .and_then(|p| p.get("containerd"))
            .and_then(|p| p.get("runtimes"))
            .and_then(|p| p.get("runc"))
            .and_then(|p| p.get("options"))
            .and_then(|p| p.get("SystemdCgroup"))
            .and_then(|v| v.as_bool());
        if let Some(systemd) = value {
            return Ok(if systemd { "systemd" } else { "cgroupfs" });
        }
    }
    Ok("cgroupfs")
}

/// The `--cgroup-driver` of an active `KUBELET_EXTRA_ARGS=` line, if any.
pub fn extra_args_driver(text: &str) -> Option<String> {
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
        let Some(value) = t.strip_prefix("KUBELET_EXTRA_ARGS=") else {
            continue;
        };
        let words: Vec<&str> = value
            .trim()
            .trim_matches(['"', '\''])
            .split_whitespace()
            .collect();
        for (i, w) in words.iter().enumerate() {
            if let Some(v) = w.strip_prefix("--cgroup-driver=") {
                return Some(v.to_string());
            }
            if *w == "--cgroup-driver" {
                return words.get(i + 1).map(|v| v.to_string());
            }
        }
    }
    None
}

/// The `cgroupDriver:` of kubelet's config.yaml, if any.
pub fn kubelet_config_driver(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("cgroupDriver:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .next()
}

/// containerd and kubelet use the same cgroup driver.
pub fn cgroup_driver(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = "cgroup driver";
    let config = cx.file(containerd::CONFIG)?.map(|f| f.text());
    let runtime = match containerd_driver(config.as_deref()) {
        Ok(d) => d,
        Err(why) => {
            return Ok(Check::fail(
                NAME,
                why,
                "fix the file (`containerd config default` shows a valid one), then step \"containerd config\"",
            ));
        }
    };
    let args_file = kubelet::extra_args_file(cx.facts().os);
    let from_args = cx
        .file(args_file)?
        .and_then(|f| extra_args_driver(&f.text()));
    let from_config = cx
        .file(KUBELET_CONFIG)?
        .and_then(|f| kubelet_config_driver(&f.text()));
    let (kubelet_driver, source) = match (from_args, from_config) {
        (Some(d), _) => (d, format!("KUBELET_EXTRA_ARGS in {args_file}")),
        (None, Some(d)) => (d, KUBELET_CONFIG.to_string()),
        (None, None) => ("systemd".to_string(), "kubeadm's default".to_string()),
    };
    if kubelet_driver == runtime {
        return Ok(Check::pass(NAME));
    }
    let containerd_source = if config.is_some() {
        containerd::CONFIG.to_string()
    } else {
        format!("no {}: containerd's default", containerd::CONFIG)
    };
    Ok(Check::fail(
        NAME,
        format!(
            "containerd uses {runtime} ({containerd_source}), kubelet {kubelet_driver} ({source})"
        ),
        "use systemd for both: `SystemdCgroup = true` for runc in /etc/containerd/config.toml and a restart \
         of containerd (steps \"containerd config\", \"containerd running\"), `--cgroup-driver=systemd` in \
         KUBELET_EXTRA_ARGS (step \"kubelet extra args\")",
    ))
}

// ---- binaries -------------------------------------------------------------------------------

/// The package that provides `binary` on `os`.
pub fn package_of(os: OsFamily, binary: &str) -> &'static str {
    match (os, binary) {
        (OsFamily::Debian, "conntrack") => "conntrack",
        (_, "conntrack") => "conntrack-tools",
        (_, "socat") => "socat",
        (OsFamily::Rhel, "ebtables") => "iptables-nft",
        (_, "ebtables") => "ebtables",
        (_, "ethtool") => "ethtool",
        (OsFamily::Rhel, "ip") => "iproute",
        (_, "ip") => "iproute2",
        (OsFamily::Rhel, "iptables") => "iptables-nft",
        (_, "iptables") => "iptables",
        (OsFamily::Debian, "mount") => "mount",
        _ => "util-linux",
    }
}

/// What kubelet and kubeadm run is on PATH (sbin directories included).
pub fn binaries(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = "binaries";
    let script = format!(
        "PATH=\"$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; for b in {}; do command -v \"$b\" >/dev/null 2>&1 || echo \"$b\"; done",
        BINARIES.join(" ")
    );
    let out = cx.query(&["sh", "-c", &script])?;
    let missing: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .filter(|b| BINARIES.contains(b))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let os = cx.facts().os;
    let mut packages: Vec<&str> = missing.iter().map(|b| package_of(os, b)).collect();
    packages.dedup();
    let install = match os {
        OsFamily::Photon => "tdnf install",
        OsFamily::Debian => "apt-get install",
        OsFamily::Rhel => "dnf install",
    };
    Ok(Check::fail(
        NAME,
        format!("not found: {}", missing.join(", ")),
        format!("`{install} -y {}`", packages.join(" ")),
    ))
}

// ---- ports ----------------------------------------------------------------------------------

/// Processes of Kubernetes itself that may hold a node's ports (as `ss` shows names, cut at
/// 15 characters): a node already in a cluster passes.
pub const KUBERNETES_HOLDERS: &[&str] = &[
    "kube-apiserver",
    "etcd",
    "kubelet",
    "kube-controller",
    "kube-scheduler",
    "kube-proxy",
];

/// Local TCP ports in LISTEN state, from /proc/net/tcp or /proc/net/tcp6.
pub fn listening_ports(proc_net_tcp: &str) -> Vec<u16> {
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.get(3) != Some(&"0A") {
                return None;
            }
            let port = w.get(1)?.rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// Port → the names of the processes listening there, from `ss -Hltnp`.
pub fn holders(ss: &str) -> BTreeMap<u16, Vec<String>> {
    let mut out: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for line in ss.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = w
            .get(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let names: Vec<String> = line
            .split("((\"")
            .skip(1)
            .chain(line.split("),(\"").skip(1))
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect();
        let slot = out.entry(port).or_default();
        for n in names {
            if !slot.contains(&n) {
                slot.push(n);
            }
        }
    }
    out
}

/// Nothing listens on the role's ports, except processes named in `allowed` (haproxy on a
/// load balancer, Kubernetes itself on a node).
pub fn ports_free(cx: &mut Ctx, ports: &[Ports], allowed: &[&str]) -> Result<Check> {
    const NAME: &str = "ports free";
    if ports.is_empty() {
        return Ok(Check::skip(NAME, "no ports for this role"));
    }
    let mut listening = Vec::new();
    for path in [TCP, TCP6] {
        if let Some(f) = cx.file(path)? {
            listening.extend(listening_ports(&f.text()));
        }
    }
    listening.sort_unstable();
    listening.dedup();
    let taken: Vec<u16> = listening
        .into_iter()
        .filter(|p| ports.iter().any(|r| r.contains(&Ports::one(*p))))
        .collect();
    if taken.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let out = cx.query(&["ss", "-Hltnp"])?;
    let by_port = holders(&out.stdout_str());
    let mut busy = Vec::new();
    for p in taken {
        let names = by_port.get(&p).cloned().unwrap_or_default();
        if !names.is_empty() && names.iter().all(|n| allowed.contains(&n.as_str())) {
            continue;
        }
        if names.is_empty() {
            busy.push(format!("{p}"));
        } else {
            busy.push(format!("{p} (by {})", names.join(", ")));
        }
    }
    if busy.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let wanted: Vec<String> = ports.iter().map(Ports::to_string).collect();
    Ok(Check::fail(
        NAME,
        format!("in use: {}", busy.join(", ")),
        format!(
            "stop or move what listens there (`ss -ltnp` names it): this role needs TCP {}",
            wanted.join(", ")
        ),
    ))
}

// ---- resources ------------------------------------------------------------------------------

/// At least [`MIN_CPUS`] CPUs.
pub fn cpus(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = "cpus";
    let known = cx
        .state()
        .facts
        .get("nproc")
        .and_then(|v| v.trim().parse::<u32>().ok());
    let n = match known {
        Some(n) => n,
        None => match cx.query(&["nproc"])?.stdout_str().trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => return Ok(Check::skip(NAME, "`nproc` gave no number")),
        },
    };
    if n >= MIN_CPUS {
        Ok(Check::pass(NAME))
    } else {
        Ok(Check::fail(
            NAME,
            format!("{n} CPU, a control-plane node needs at least {MIN_CPUS}"),
            format!("give the VM {MIN_CPUS} vCPUs or more (kubeadm init refuses fewer)"),
        ))
    }
}

/// MemTotal of /proc/meminfo, in MiB.
pub fn mem_total_mib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// At least [`MIN_MEMORY_MIB`] of memory.
pub fn memory(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = "memory";
    let Some(mib) = cx.file(MEMINFO)?.and_then(|f| mem_total_mib(&f.text())) else {
        return Ok(Check::skip(NAME, "no MemTotal in /proc/meminfo"));
    };
    if mib >= MIN_MEMORY_MIB {
        Ok(Check::pass(NAME))
    } else {
        Ok(Check::fail(
            NAME,
            format!("{mib} MB, a control-plane node needs at least {MIN_MEMORY_MIB} MB"),
            format!(
                "give the VM {MIN_MEMORY_MIB} MB of memory or more (kubeadm init refuses less)"
            ),
        ))
    }
}

// ---- host name and clock --------------------------------------------------------------------

/// The host's name, now and after a reboot, is the inventory name (lowercase RFC 1123: it is
/// also the Kubernetes node name).
pub fn hostname_matches(cx: &mut Ctx, name: &str) -> Result<Check> {
    const NAME: &str = "hostname";
    let fix = format!("`hostnamectl set-hostname {name}` (step \"hostname\")");
    if let Err(e) = hostname::validate(name) {
        return Ok(Check::fail(
            NAME,
            e.message().to_string(),
            "rename the host in the inventory (it becomes the node name)",
        ));
    }
    let live = match cx.state().facts.get("hostname") {
        Some(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => cx.facts().hostname.clone(),
    };
    if live != name {
        return Ok(Check::fail(
            NAME,
            format!("the host is called {live:?}, the inventory says {name:?}"),
            fix,
        ));
    }
    let persisted = cx.file(hostname::HOSTNAME_FILE)?.map(|f| f.text());
    match persisted.as_deref().map(hostname::configured) {
        Some(Some(p)) if p != name => Ok(Check::fail(
            NAME,
            format!("/etc/hostname says {p:?}: the name changes at the next boot"),
            fix,
        )),
        _ => Ok(Check::pass(NAME)),
    }
}

/// The system clock is synchronized (`timedatectl show -p NTPSynchronized`).
pub fn clock_synchronized(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = "clock synchronized";
    let out = cx.query(&["timedatectl", "show", "-p", "NTPSynchronized", "--value"])?;
    let answer = out.stdout_str().trim().to_string();
    match answer.as_str() {
        "yes" => Ok(Check::pass(NAME)),
        "no" => Ok(Check::fail(
            NAME,
            "the clock is not synchronized (NTPSynchronized=no)",
            "run a time service with reachable servers (inventory `system.ntp`; steps \"time servers\" and \
             \"time service enabled\"), see `timedatectl timesync-status` or `chronyc sources`",
        )),
        _ => Ok(Check::skip(
            NAME,
            format!(
                "timedatectl gave no answer ({})",
                crate::error::tail(&out.stderr, 1)
            ),
        )),
    }
}

/// A reading of the host's clock between two readings of the controller's (seconds since the
/// epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    pub before: f64,
    pub host: f64,
    pub after: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Reads the host's clock (`date +%s.%N`), timed by the controller's; `None` when the reply is
/// not a time.
pub fn clock_sample(cx: &mut Ctx) -> Result<Option<ClockSample>> {
    let before = now();
    let out = cx.query(&["date", "+%s.%N"])?;
    let after = now();
    Ok(out
        .stdout_str()
        .trim()
        .parse::<f64>()
        .ok()
        .map(|host| ClockSample {
            before,
            host,
            after,
        }))
}

/// The host's clock is within `max` seconds of the controller's. The host was read somewhere
/// between `before` and `after`: the offset is taken from the midpoint, and half the round trip
/// is given to the host's benefit.
pub fn clock_skew(sample: Option<ClockSample>, max: f64) -> Check {
    const NAME: &str = "clock skew";
    let Some(s) = sample else {
        return Check::skip(NAME, "`date +%s.%N` gave no time");
    };
    let offset = s.host - (s.before + s.after) / 2.0;
    let slack = (s.after - s.before).max(0.0) / 2.0;
    if offset.abs() - slack <= max {
        return Check::pass(NAME);
    }
    let way = if offset > 0.0 { "ahead of" } else { "behind" };
    Check::fail(
        NAME,
        format!(
            "the clock is {:.1} s {way} the controller's (more than {max:.0} s; round trip {:.3} s)",
            offset.abs(),
            s.after - s.before
        ),
        "synchronize the clocks (NTP on every host and on this machine): certificates and etcd \
         leases break with skewed clocks",
    )
}

// ---- across hosts ---------------------------------------------------------------------------

/// What must differ from host to host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Inventory name.
    pub host: String,
    /// The kernel's host name.
    pub hostname: String,
    /// Global IPv4 addresses.
    pub addresses: Vec<String>,
    pub machine_id: Option<String>,
    pub product_uuid: Option<String>,
    /// The host is a container (its DMI product_uuid is the machine's).
    pub container: bool,
}

/// Global IPv4 addresses from `ip -4 -o addr show scope global`.
pub fn global_addresses(ip_addr: &str) -> Vec<String> {
    ip_addr
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "inet")?;
            Some(w.get(i + 1)?.split('/').next()?.to_string())
        })
        .collect()
}

/// Reads this host's identity (files from the probe, one query for the addresses).
pub fn identity(cx: &mut Ctx, host: &str) -> Result<Identity> {
    let read = |cx: &mut Ctx, path: &str| -> Result<Option<String>> {
        Ok(cx
            .file(path)?
            .map(|f| f.text().trim().to_string())
            .filter(|t| !t.is_empty()))
    };
    let machine_id = read(cx, MACHINE_ID)?;
    let product_uuid = read(cx, PRODUCT_UUID)?.map(|u| u.to_lowercase());
    let out = cx.query(&["ip", "-4", "-o", "addr", "show", "scope", "global"])?;
    let hostname = match cx.state().facts.get("hostname") {
        Some(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => cx.facts().hostname.clone(),
    };
    Ok(Identity {
        host: host.to_string(),
        hostname,
        addresses: global_addresses(&out.stdout_str()),
        machine_id,
        product_uuid,
        container: cx.facts().in_container(),
    })
}

/// For each host, a check over one value every host must have its own of.
fn unique(
    ids: &[Identity],
    name: &str,
    value: impl Fn(&Identity) -> std::result::Result<Vec<String>, String>,
    what: &str,
    hint: &str,
) -> Vec<(String, Check)> {
    let values: Vec<std::result::Result<Vec<String>, String>> = ids.iter().map(&value).collect();
    let mut owners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (id, v) in ids.iter().zip(&values) {
        if let Ok(vs) = v {
            for x in vs {
                let slot = owners.entry(x.clone()).or_default();
                if !slot.contains(&id.host.as_str()) {
                    slot.push(&id.host);
                }
            }
        }
    }
    ids.iter()
        .zip(values)
        .map(|(id, v)| {
            let check = match v {
                Err(skip) => Check::skip(name, skip),
                Ok(vs) => {
                    let mut shared: Vec<String> = Vec::new();
                    for x in &vs {
                        let others: Vec<&str> = owners[x]
                            .iter()
                            .copied()
                            .filter(|h| *h != id.host)
                            .collect();
                        if !others.is_empty() {
                            shared.push(format!("{what} {x} is also {}'s", others.join(", ")));
                        }
                    }
                    if shared.is_empty() {
                        Check::pass(name)
                    } else {
                        Check::fail(name, shared.join("; "), hint)
                    }
                }
            };
            (id.host.clone(), check)
        })
        .collect()
}

/// Checks across the hosts verified together: each host's name, addresses, /etc/machine-id
/// and DMI product_uuid are its own (cloned VMs share them; kubeadm and the CNI tell nodes
/// apart by them). Returns (host, check), hosts in the order given.
pub fn fleet_checks(ids: &[Identity]) -> Vec<(String, Check)> {
    let mut out = Vec::new();
    out.extend(unique(
        ids,
        "unique hostname",
        |id| Ok(vec![id.hostname.to_lowercase()]),
        "host name",
        "give every host its own name (the inventory name: step \"hostname\")",
    ));
    out.extend(unique(
        ids,
        "unique address",
        |id| {
            if id.addresses.is_empty() {
                Err("no global IPv4 address".into())
            } else {
                Ok(id.addresses.clone())
            }
        },
        "address",
        "give every host its own address (inventory `network.address`, step \"network file\")",
    ));
    out.extend(unique(
        ids,
        "unique machine-id",
        |id| match &id.machine_id {
            Some(m) => Ok(vec![m.clone()]),
            None => Err("/etc/machine-id is empty or absent".into()),
        },
        "/etc/machine-id",
        "a cloned VM: `rm -f /etc/machine-id && systemd-machine-id-setup`, then reboot",
    ));
    out.extend(unique(
        ids,
        "unique product_uuid",
        |id| match (&id.product_uuid, id.container) {
            (_, true) => Err("a container: the DMI product_uuid is its machine's".into()),
            (None, false) => Err(format!("no {PRODUCT_UUID} (no DMI on this machine)")),
            (Some(u), false) => Ok(vec![u.clone()]),
        },
        "product_uuid",
        "a cloned VM with its source's BIOS UUID: give it a new one (vSphere: `uuid.bios` in the VM's \
         advanced settings, or re-clone with a new UUID)",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, photon_files};

    fn ok(stdout: &str) -> Output {
        Output {
            status: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    fn reason(c: &Check) -> &str {
        match &c.verdict {
            Verdict::Fail { reason, .. } => reason,
            other => panic!("{} did not fail: {other:?}", c.name),
        }
    }

    fn hint(c: &Check) -> &str {
        match &c.verdict {
            Verdict::Fail { hint, .. } => hint,
            other => panic!("{} did not fail: {other:?}", c.name),
        }
    }

    /// A Photon worker nodeprep prepared: every node check passes on it.
    fn ready_photon() -> Fixture {
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

    fn ready_ctx(mode: Mode) -> (Ctx, std::sync::Arc<crate::host::Recorder>) {
        let mut f = ready_photon();
        f.state.facts.insert("nproc".into(), "4".into());
        let (cx, rec) = f.ctx(mode);
        rec.reply("timedatectl", ok("yes\n"));
        (cx, rec)
    }

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
    fn swap() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(swap_off(&mut cx).unwrap().passed());
        let (mut cx, _) = ready_photon()
            .file(
                kernel::SWAPS,
                "Filename Type Size Used Priority\n/dev/sda3 partition 2097148 0 -2\n",
                0o444,
            )
            .ctx(Mode::Check);
        let c = swap_off(&mut cx).unwrap();
        assert_eq!(reason(&c), "swap is on: /dev/sda3");
        assert!(hint(&c).contains("swapoff -a"));
        let (mut cx, _) = ready_photon()
            .file(
                kernel::FSTAB,
                "/dev/sda2 / ext4 defaults 1 1\n/dev/sda3 none swap sw 0 0\n# /swap.img none swap sw 0 0\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = swap_off(&mut cx).unwrap();
        assert_eq!(
            reason(&c),
            "no swap is active, but /etc/fstab turns on /dev/sda3 at the next boot"
        );
    }

    #[test]
    fn modules() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(module_loaded(&mut cx, "overlay").unwrap().passed());
        assert!(module_loaded(&mut cx, "br_netfilter").unwrap().passed());
        // Not in /sys/module, but its keys exist: built in.
        let (mut cx, _) = ready_photon()
            .absent("/sys/module/br_netfilter")
            .ctx(Mode::Check);
        assert!(module_loaded(&mut cx, "br_netfilter").unwrap().passed());
        // Listed in modules.builtin.
        let (mut cx, rec) = ready_photon()
            .absent("/sys/module/overlay")
            .ctx(Mode::Check);
        rec.reply(
            "sh -c",
            ok("kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\n"),
        );
        assert!(module_loaded(&mut cx, "overlay").unwrap().passed());
        // Photon as installed: br_netfilter not loaded.
        let (mut cx, _) = Fixture::photon().complete().ctx(Mode::Check);
        let c = module_loaded(&mut cx, "br_netfilter").unwrap();
        assert_eq!(reason(&c), "br_netfilter is not loaded");
        assert!(hint(&c).starts_with("`modprobe br_netfilter`"));
        let (mut cx, _) = Fixture::photon().complete().in_container().ctx(Mode::Check);
        let c = module_loaded(&mut cx, "br_netfilter").unwrap();
        assert!(
            reason(&c).contains("container (docker): the kernel is its host's"),
            "{c:?}"
        );
    }

    #[test]
    fn sysctls() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        for (k, v) in SYSCTLS {
            assert!(sysctl(&mut cx, k, v).unwrap().passed(), "{k}");
        }
        // Photon as installed: ip_forward = 0 (50-security-hardening.conf), no bridge keys.
        let (mut cx, _) = Fixture::photon().complete().ctx(Mode::Check);
        let c = sysctl(&mut cx, "net.ipv4.ip_forward", "1").unwrap();
        assert_eq!(c.name, "sysctl net.ipv4.ip_forward");
        assert_eq!(reason(&c), "net.ipv4.ip_forward is 0, want 1");
        let c = sysctl(&mut cx, "net.bridge.bridge-nf-call-iptables", "1").unwrap();
        assert_eq!(
            reason(&c),
            "net.bridge.bridge-nf-call-iptables does not exist: br_netfilter is not loaded"
        );
    }

    #[test]
    fn cgroup_drivers() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(cgroup_driver(&mut cx).unwrap().passed());
        // Photon as installed: containerd's config has no SystemdCgroup.
        let (mut cx, _) = Fixture::photon()
            .file(containerd::CONFIG, photon_files::CONTAINERD_CONFIG, 0o644)
            .complete()
            .ctx(Mode::Check);
        let c = cgroup_driver(&mut cx).unwrap();
        assert_eq!(
            reason(&c),
            "containerd uses cgroupfs (/etc/containerd/config.toml), kubelet systemd (kubeadm's default)"
        );
        // No containerd config, kubelet told cgroupfs: consistent.
        let (mut cx, _) = Fixture::debian()
            .file(
                kubelet::DEFAULT,
                "KUBELET_EXTRA_ARGS=\"--cgroup-driver cgroupfs --v=2\"\n",
                0o644,
            )
            .complete()
            .ctx(Mode::Check);
        assert!(cgroup_driver(&mut cx).unwrap().passed());
        // kubeadm's config.yaml says cgroupfs, containerd systemd.
        let (mut cx, _) = ready_photon()
            .absent(kubelet::SYSCONFIG)
            .file(
                KUBELET_CONFIG,
                "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = cgroup_driver(&mut cx).unwrap();
        assert!(
            reason(&c).ends_with("kubelet cgroupfs (/var/lib/kubelet/config.yaml)"),
            "{c:?}"
        );
        // containerd 2.x layout.
        let v3 = containerd::edited_config(None, Some(2)).unwrap();
        assert_eq!(containerd_driver(Some(&v3)), Ok("systemd"));
        assert!(containerd_driver(Some("[plugins")).is_err());
    }

    #[test]
    fn binaries_missing() {
        let (mut cx, rec) = Fixture::photon().complete().ctx(Mode::Check);
        rec.reply("sh -c", ok("conntrack\nsocat\nebtables\n"));
        let c = binaries(&mut cx).unwrap();
        assert_eq!(reason(&c), "not found: conntrack, socat, ebtables");
        assert_eq!(hint(&c), "`tdnf install -y conntrack-tools socat ebtables`");
        let (mut cx, rec) = Fixture::debian().complete().ctx(Mode::Check);
        rec.reply("sh -c", ok("conntrack\nnsenter\nmount\n"));
        let c = binaries(&mut cx).unwrap();
        assert_eq!(hint(&c), "`apt-get install -y conntrack util-linux mount`");
        let (mut cx, _) = Fixture::debian().complete().ctx(Mode::Check);
        assert!(binaries(&mut cx).unwrap().passed());
    }

    const TCP_WITH_10250: &str = "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A 0\n   1: 0100007F:280A 00000000:0000 0A 0\n   2: 0100007F:1A0B 0200007F:1A0C 01 0\n";

    #[test]
    fn ports() {
        assert_eq!(listening_ports(TCP_WITH_10250), [22, 10250]);
        let ss = "LISTEN 0 4096 127.0.0.1:10250 0.0.0.0:* users:((\"socat\",pid=7,fd=5))\nLISTEN 0 128 [::]:6443 [::]:* users:((\"kube-apiserver\",pid=9,fd=3),(\"kube-apiserver\",pid=9,fd=4))\n";
        let h = holders(ss);
        assert_eq!(h[&10250], ["socat"]);
        assert_eq!(h[&6443], ["kube-apiserver"]);

        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(
            ports_free(&mut cx, firewall::WORKER_PORTS, KUBERNETES_HOLDERS)
                .unwrap()
                .passed()
        );
        let (mut cx, rec) = ready_photon()
            .file(TCP6, TCP_WITH_10250, 0o444)
            .ctx(Mode::Check);
        rec.reply("ss -Hltnp", ok(ss));
        let c = ports_free(&mut cx, firewall::WORKER_PORTS, KUBERNETES_HOLDERS).unwrap();
        assert_eq!(reason(&c), "in use: 10250 (by socat)");
        assert!(hint(&c).contains("TCP 10250, 30000-32767"), "{c:?}");
        // Held by kubelet itself: a node already in a cluster.
        let (mut cx, rec) = ready_photon()
            .file(TCP, TCP_WITH_10250, 0o444)
            .ctx(Mode::Check);
        rec.reply(
            "ss -Hltnp",
            ok("LISTEN 0 4096 *:10250 *:* users:((\"kubelet\",pid=7,fd=5))\n"),
        );
        assert!(
            ports_free(&mut cx, firewall::WORKER_PORTS, KUBERNETES_HOLDERS)
                .unwrap()
                .passed()
        );
        // A load balancer: haproxy on 6443 is itself.
        let tcp_6443 =
            "  sl  local_address rem_address   st\n   0: 00000000:192B 00000000:0000 0A 0\n";
        let (mut cx, rec) = ready_photon().file(TCP, tcp_6443, 0o444).ctx(Mode::Check);
        rec.reply(
            "ss -Hltnp",
            ok("LISTEN 0 4096 0.0.0.0:6443 0.0.0.0:* users:((\"haproxy\",pid=70,fd=7))\n"),
        );
        assert!(
            ports_free(&mut cx, firewall::BALANCER_PORTS, &["haproxy"])
                .unwrap()
                .passed()
        );
        // ss unavailable: the holder is unknown, the port is still taken.
        let (mut cx, rec) = ready_photon().file(TCP, tcp_6443, 0o444).ctx(Mode::Check);
        rec.reply(
            "ss -Hltnp",
            Output {
                status: Some(127),
                ..Default::default()
            },
        );
        let c = ports_free(&mut cx, firewall::MASTER_PORTS, KUBERNETES_HOLDERS).unwrap();
        assert_eq!(reason(&c), "in use: 6443");
    }

    #[test]
    fn resources() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(cpus(&mut cx).unwrap().passed());
        assert!(memory(&mut cx).unwrap().passed());
        let mut f = ready_photon().file(MEMINFO, "MemTotal:        1015808 kB\n", 0o444);
        f.state.facts.insert("nproc".into(), "1".into());
        let (mut cx, _) = f.ctx(Mode::Check);
        assert_eq!(
            reason(&cpus(&mut cx).unwrap()),
            "1 CPU, a control-plane node needs at least 2"
        );
        assert_eq!(
            reason(&memory(&mut cx).unwrap()),
            "992 MB, a control-plane node needs at least 1700 MB"
        );
        // nproc not in the probe: asked.
        let (mut cx, rec) = ready_photon().ctx(Mode::Check);
        rec.reply("nproc", ok("8\n"));
        assert!(cpus(&mut cx).unwrap().passed());
    }

    #[test]
    fn host_names() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(hostname_matches(&mut cx, "prdk8smst501").unwrap().passed());
        let c = hostname_matches(&mut cx, "prdk8smst502").unwrap();
        assert_eq!(
            reason(&c),
            "the host is called \"prdk8smst501\", the inventory says \"prdk8smst502\""
        );
        assert_eq!(
            hint(&c),
            "`hostnamectl set-hostname prdk8smst502` (step \"hostname\")"
        );
        assert!(hostname_matches(&mut cx, "PRDK8SMST501").unwrap().failed());
        // Live name right, /etc/hostname not: wrong after a reboot.
        let (mut cx, _) = ready_photon()
            .file(hostname::HOSTNAME_FILE, "photon-5a1b2c\n", 0o644)
            .ctx(Mode::Check);
        let c = hostname_matches(&mut cx, "prdk8smst501").unwrap();
        assert!(
            reason(&c).starts_with("/etc/hostname says \"photon-5a1b2c\""),
            "{c:?}"
        );
    }

    #[test]
    fn clock() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(clock_synchronized(&mut cx).unwrap().passed());
        let (mut cx, rec) = ready_photon().ctx(Mode::Check);
        rec.reply("timedatectl", ok("no\n"));
        assert!(clock_synchronized(&mut cx).unwrap().failed());
        let (mut cx, rec) = ready_photon().ctx(Mode::Check);
        rec.reply(
            "timedatectl",
            Output {
                status: Some(1),
                stdout: vec![],
                stderr: b"System has not been booted with systemd\n".to_vec(),
            },
        );
        let c = clock_synchronized(&mut cx).unwrap();
        assert!(
            matches!(&c.verdict, Verdict::Skip(r) if r.contains("not been booted")),
            "{c:?}"
        );

        let s = |before: f64, host: f64, after: f64| {
            Some(ClockSample {
                before,
                host,
                after,
            })
        };
        assert!(clock_skew(s(1000.0, 1000.2, 1000.4), 30.0).passed());
        assert!(clock_skew(s(1000.0, 1029.0, 1000.0), 30.0).passed());
        let c = clock_skew(s(1000.0, 1045.5, 1001.0), 30.0);
        assert_eq!(
            reason(&c),
            "the clock is 45.0 s ahead of the controller's (more than 30 s; round trip 1.000 s)"
        );
        // 31 s behind, but a 4 s round trip leaves 2 s of doubt each way: within; 33 s is not.
        assert!(clock_skew(s(1000.0, 971.0, 1004.0), 30.0).passed());
        assert!(clock_skew(s(1000.0, 969.0, 1004.0), 30.0).failed());
        assert!(matches!(clock_skew(None, 30.0).verdict, Verdict::Skip(_)));
        // Through a host: a clock an hour off.
        let (mut cx, rec) = ready_photon().ctx(Mode::Check);
        rec.reply("date", ok(&format!("{:.9}\n", now() - 3600.0)));
        let c = clock_skew(clock_sample(&mut cx).unwrap(), MAX_SKEW_SECS);
        assert!(reason(&c).contains("s behind the controller's"), "{c:?}");
    }

    fn id(host: &str, addr: &str, machine: &str, uuid: Option<&str>) -> Identity {
        Identity {
            host: host.into(),
            hostname: host.into(),
            addresses: vec![addr.into()],
            machine_id: Some(machine.into()),
            product_uuid: uuid.map(str::to_string),
            container: false,
        }
    }

    fn fleet_fails(ids: &[Identity]) -> Vec<String> {
        fleet_checks(ids)
            .into_iter()
            .filter(|(_, c)| c.failed())
            .map(|(h, c)| format!("{h}: {}: {}", c.name, reason(&c)))
            .collect()
    }

    #[test]
    fn fleet() {
        let good = [
            id("a", "10.0.0.1", "m1", Some("u1")),
            id("b", "10.0.0.2", "m2", Some("u2")),
        ];
        let checks = fleet_checks(&good);
        assert_eq!(checks.len(), 8);
        assert!(checks.iter().all(|(_, c)| c.passed()), "{checks:#?}");
        // A clone: same machine-id and product_uuid, and the same host name.
        let mut clone = id("c", "10.0.0.3", "m1", Some("u1"));
        clone.hostname = "A".into();
        let ids = [good[0].clone(), good[1].clone(), clone];
        assert_eq!(
            fleet_fails(&ids),
            [
                "a: unique hostname: host name a is also c's",
                "c: unique hostname: host name a is also a's",
                "a: unique machine-id: /etc/machine-id m1 is also c's",
                "c: unique machine-id: /etc/machine-id m1 is also a's",
                "a: unique product_uuid: product_uuid u1 is also c's",
                "c: unique product_uuid: product_uuid u1 is also a's",
            ]
        );
        // The seed's typo: two hosts on one address.
        let ids = [good[0].clone(), id("b", "10.0.0.1", "m2", Some("u2"))];
        assert_eq!(
            fleet_fails(&ids),
            [
                "a: unique address: address 10.0.0.1 is also b's",
                "b: unique address: address 10.0.0.1 is also a's",
            ]
        );
        // Containers share their machine's product_uuid: not told; no DMI: not told either.
        let mut c1 = id("a", "10.0.0.1", "m1", Some("u1"));
        c1.container = true;
        let ids = [c1, id("b", "10.0.0.2", "m2", None)];
        let skipped: Vec<String> = fleet_checks(&ids)
            .into_iter()
            .filter_map(|(h, c)| match c.verdict {
                Verdict::Skip(r) => Some(format!("{h}: {}: {r}", c.name)),
                _ => None,
            })
            .collect();
        assert_eq!(
            skipped,
            [
                "a: unique product_uuid: a container: the DMI product_uuid is its machine's",
                "b: unique product_uuid: no /sys/class/dmi/id/product_uuid (no DMI on this machine)",
            ]
        );
    }

    #[test]
    fn identity_read() {
        let (mut cx, rec) = ready_photon().ctx(Mode::Check);
        rec.reply(
            "ip -4",
            ok("2: eth0    inet 192.168.10.56/24 brd 192.168.10.255 scope global eth0\\       valid_lft forever\n"),
        );
        let got = identity(&mut cx, "prdk8smst501").unwrap();
        assert_eq!(
            got,
            Identity {
                host: "prdk8smst501".into(),
                hostname: "prdk8smst501".into(),
                addresses: vec!["192.168.10.56".into()],
                machine_id: Some("0123456789abcdef0123456789abcdef".into()),
                product_uuid: Some("4231a2b3-0000-0000-0000-000000000001".into()),
                container: false,
            }
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
