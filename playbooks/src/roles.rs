//! The built-in roles. Each is a plain function calling tasks in order, one named step each;
//! differences between operating systems live inside the tasks, never here. Handlers are plain
//! Rust: a step that restarts a service looks at the `Change` of the step that configured it.

use tasks::network::StaticNetwork;
use tasks::{Change, Ctx, Error, ErrorKind, Result};
use tasks::{
    ca, containerd, disks, docker, firewall, haproxy, hostname, kernel, kubelet, locale, pkg,
    timesync, update, users,
};

use crate::inventory::Target;
use crate::registry::Playbook;

pub static BUILTIN: &[Playbook] = &[
    Playbook {
        name: "haproxy",
        about: "prepare a load balancer for the Kubernetes API (and ingress)",
        role: Some("haproxy"),
        steps: &concat_steps::HAPROXY,
        files: &["/etc/haproxy/haproxy.cfg"],
        probe: probe_files,
        run: haproxy_role,
    },
    Playbook {
        name: "k8s-master",
        about: "prepare a Kubernetes control-plane node",
        role: Some("k8s-master"),
        steps: &concat_steps::K8S,
        files: K8S_FILES,
        probe: probe_files,
        run: k8s_node,
    },
    Playbook {
        name: "k8s-worker",
        about: "prepare a Kubernetes worker node",
        role: Some("k8s-worker"),
        steps: &concat_steps::K8S,
        files: K8S_FILES,
        probe: probe_files,
        run: k8s_node,
    },
];

const K8S_FILES: &[&str] = &[SYSCTL_FILE, MODULES_FILE];

/// Steps of every role, first.
pub const COMMON_STEPS: [&str; 13] = [
    "admin user",
    "admin ssh keys",
    "password expiry off",
    "locale packages",
    "locale generated",
    "locale set",
    "keymap set",
    "time service installed",
    "time servers",
    "time service enabled",
    "time service restarted",
    "ca certificates",
    "nfs client",
];

/// Kubernetes node steps (masters and workers).
pub const NODE_STEPS: [&str; 19] = [
    "hostname",
    "stable disk ids",
    "swap off",
    "swap disabled in fstab",
    "kernel modules persisted",
    "kernel modules loaded",
    "sysctl persisted",
    "sysctl applied",
    "kubernetes packages",
    "containerd installed",
    "containerd config",
    "containerd running",
    "crictl config",
    "docker daemon.json",
    "docker running",
    "kubelet extra args",
    "kubelet enabled",
    "firewall ports",
    "system updated",
];

pub const HAPROXY_STEPS: [&str; 6] = [
    "haproxy installed",
    "haproxy config",
    "haproxy enabled",
    "firewall ports",
    "haproxy running",
    "system updated",
];

/// Last of every role: applying the network can cut the session that applies it.
pub const NETWORK_STEPS: [&str; 2] = ["network file", "network applied"];

mod concat_steps {
    use super::*;

    const fn concat<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
        let mut out = [""; N];
        let mut i = 0;
        let mut p = 0;
        while p < parts.len() {
            let mut j = 0;
            while j < parts[p].len() {
                out[i] = parts[p][j];
                i += 1;
                j += 1;
            }
            p += 1;
        }
        assert!(i == N, "step count");
        out
    }

    pub const K8S: [&str; 34] = concat(&[&COMMON_STEPS, &NODE_STEPS, &NETWORK_STEPS]);
    pub const HAPROXY: [&str; 21] = concat(&[&COMMON_STEPS, &HAPROXY_STEPS, &NETWORK_STEPS]);
}

pub const SYSCTL_FILE: &str = "/etc/sysctl.d/99-kubernetes-cri.conf";
pub const SYSCTL: &[(&str, &str)] = &[
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];
pub const MODULES_FILE: &str = "/etc/modules-load.d/containerd.conf";
pub const MODULES: &[&str] = &["overlay", "br_netfilter"];

/// The files of the common steps that depend on the inventory: the admin's ssh keys (at the
/// usual home; another home costs one more round trip) and the CA certificates, in each OS
/// family's layout (the family is not known before the probe).
fn probe_files(t: &Target) -> Vec<String> {
    let mut files = Vec::new();
    if let Some(admin) = &t.inventory.admin {
        let dir = if admin.name == "root" {
            "/root/.ssh".to_string()
        } else {
            format!("/home/{}/.ssh", admin.name)
        };
        files.push(format!("{dir}/authorized_keys"));
        files.push(dir);
    }
    for f in &t.inventory.system.ca_files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(stem) = ca::stem(&name) {
            for os in [
                tasks::OsFamily::Photon,
                tasks::OsFamily::Debian,
                tasks::OsFamily::Rhel,
            ] {
                let l = ca::layout(os);
                files.push(format!("{}/{stem}.{}", l.dir, l.ext));
            }
        }
    }
    files
}

fn skip(why: &str) -> Result<Change> {
    Ok(Change::Skipped(why.to_string()))
}

/// The steps every role starts with: admin access, locale, time, CA, NFS client.
pub fn common(cx: &mut Ctx, t: &Target) -> Result<()> {
    let inv = t.inventory;
    let sys = &inv.system;
    match &inv.admin {
        Some(admin) => {
            let user = users::AdminUser {
                name: &admin.name,
                password_hash: &admin.password_hash,
                ssh_keys: &admin.ssh_keys,
            };
            let _ = cx.step("admin user", |cx| users::admin_user(cx, &user))?;
            let _ = cx.step("admin ssh keys", |cx| {
                users::authorized_keys(cx, &admin.name, &admin.ssh_keys)
            })?;
            let _ = cx.step("password expiry off", |cx| {
                Ok(users::no_password_expiry(cx, &admin.name)?
                    | users::no_password_expiry(cx, "root")?)
            })?;
        }
        None => {
            for step in ["admin user", "admin ssh keys"] {
                let _ = cx.step(step, |_| skip("no [admin] in the inventory"))?;
            }
            let _ = cx.step("password expiry off", |cx| {
                users::no_password_expiry(cx, "root")
            })?;
        }
    }
    let _ = cx.step("locale packages", |cx| {
        locale::locale_packages(cx, &sys.locale)
    })?;
    let _ = cx.step("locale generated", |cx| {
        locale::locale_generated(cx, &sys.locale)
    })?;
    let _ = cx.step("locale set", |cx| locale::locale_set(cx, &sys.locale))?;
    let _ = cx.step("keymap set", |cx| match &sys.keymap {
        Some(k) => locale::keymap_set(cx, k),
        None => skip("no system.keymap in the inventory"),
    })?;
    if sys.ntp.is_empty() {
        for step in [
            "time service installed",
            "time servers",
            "time service enabled",
            "time service restarted",
        ] {
            let _ = cx.step(step, |_| skip("no system.ntp servers in the inventory"))?;
        }
    } else {
        let _ = cx.step("time service installed", timesync::timesync_installed)?;
        let servers = cx.step("time servers", |cx| timesync::ntp_servers(cx, &sys.ntp))?;
        let _ = cx.step("time service enabled", timesync::timesync_enabled)?;
        let _ = cx.step("time service restarted", |cx| {
            timesync::timesync_restarted(cx, servers.changed())
        })?;
    }
    let certs = read_ca_files(t)?;
    let _ = cx.step("ca certificates", |cx| {
        if certs.is_empty() {
            return skip("no system.ca_files in the inventory");
        }
        let mut c = ca::ca_packages(cx)?;
        let files = ca::ca_files(cx, &certs)?;
        c |= ca::ca_trust_updated(cx, files.changed())?;
        Ok(c | files)
    })?;
    let _ = cx.step("nfs client", pkg::nfs_client)?;
    Ok(())
}

fn read_ca_files(t: &Target) -> Result<Vec<(String, String)>> {
    let inv = t.inventory;
    inv.system
        .ca_files
        .iter()
        .map(|f| {
            let path = inv.resolve(f);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                Error::new(
                    ErrorKind::Invalid,
                    format!(
                        "{}: system.ca_files: {}: {e}",
                        inv.path.display(),
                        path.display()
                    ),
                )
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, pem))
        })
        .collect()
}

fn full_update(cx: &mut Ctx, t: &Target) -> Result<()> {
    let _ = cx.step("system updated", |cx| {
        if t.inventory.system.full_update {
            update::full_update(cx)
        } else {
            skip("system.full_update = false")
        }
    })?;
    Ok(())
}

/// The static network, written always, applied only when the inventory asks, and last.
pub fn network(cx: &mut Ctx, t: &Target) -> Result<()> {
    let Some(n) = &t.host.network else {
        for step in NETWORK_STEPS {
            let _ = cx.step(step, |_| {
                skip("no network settings for this host in the inventory")
            })?;
        }
        return Ok(());
    };
    let dns = if n.dns.is_empty() {
        &t.inventory.system.dns
    } else {
        &n.dns
    };
    let net = StaticNetwork {
        interface: &n.interface,
        address_cidr: &n.address,
        gateway: n.gateway.as_deref(),
        dns,
    };
    let file = cx.step("network file", |cx| tasks::network::network_file(cx, &net))?;
    let _ = cx.step("network applied", |cx| {
        tasks::network::network_applied(cx, &net, file.changed(), n.apply)
    })?;
    Ok(())
}

/// k8s-master and k8s-worker.
fn k8s_node(cx: &mut Ctx, t: &Target) -> Result<()> {
    common(cx, t)?;
    let _ = cx.step("hostname", |cx| hostname::hostname(cx, t.name))?;
    // A check: a failure is reported (with the fix) but the preparation goes on.
    let _ = cx.step("stable disk ids", disks::stable_disk_ids).ok();
    kernel_prep(cx)?;
    let k = &t.inventory.kubernetes;
    let source = match k.source.as_str() {
        "upstream" => kubelet::Source::Upstream { minor: &k.version },
        "present" => kubelet::Source::Present,
        _ => kubelet::Source::Distro,
    };
    let _ = cx.step("kubernetes packages", |cx| kubelet::packages(cx, source))?;
    let _ = cx.step("containerd installed", containerd::installed)?;
    let config = cx.step("containerd config", containerd::config)?;
    let _ = cx.step("containerd running", |cx| {
        containerd::enabled_and_running(cx, config.changed())
    })?;
    let _ = cx.step("crictl config", containerd::crictl_config)?;
    let daemon = cx.step("docker daemon.json", |cx| {
        if k.docker || docker::is_installed(cx)? {
            docker::daemon_json(cx)
        } else {
            skip("docker is not installed")
        }
    })?;
    let _ = cx.step("docker running", |cx| {
        docker::enable_and_start(cx, daemon.changed())
    })?;
    let _ = cx.step("kubelet extra args", kubelet::extra_args)?;
    let _ = cx.step("kubelet enabled", kubelet::enabled)?;
    let ports = firewall::role_ports(&t.host.role, false);
    let _ = cx.step("firewall ports", |cx| firewall::ports_open(cx, &ports))?;
    full_update(cx, t)?;
    network(cx, t)
}

/// Swap off now and for good; overlay and br_netfilter loaded now and at boot; the three
/// sysctls persisted and live (after the modules: the bridge keys exist only once
/// br_netfilter is loaded).
pub fn kernel_prep(cx: &mut Ctx) -> Result<()> {
    let _ = cx.step("swap off", kernel::swap_off)?;
    let _ = cx.step("swap disabled in fstab", kernel::fstab_swap_disabled)?;
    let _ = cx.step("kernel modules persisted", |cx| {
        kernel::modules_file(cx, MODULES_FILE, MODULES)
    })?;
    let _ = cx.step("kernel modules loaded", |cx| {
        kernel::modules_loaded(cx, MODULES)
    })?;
    let persisted = cx.step("sysctl persisted", |cx| {
        kernel::sysctl_file(cx, SYSCTL_FILE, SYSCTL)
    })?;
    let _ = cx.step("sysctl applied", |cx| {
        kernel::sysctl_applied(cx, SYSCTL, persisted.changed())
    })?;
    Ok(())
}

/// The load balancer: haproxy in front of the masters' API (and the zone's workers for
/// ingress when the inventory asks).
fn haproxy_role(cx: &mut Ctx, t: &Target) -> Result<()> {
    common(cx, t)?;
    let inv = t.inventory;
    let cluster_ip = |h: &crate::HostEntry| -> String {
        h.network
            .as_ref()
            .and_then(|n| n.address.split('/').next().map(str::to_string))
            .unwrap_or_else(|| h.address.clone())
    };
    let masters: Vec<(String, String)> = inv
        .hosts
        .iter()
        .filter(|(_, h)| h.role == "k8s-master")
        .map(|(n, h)| (n.clone(), cluster_ip(h)))
        .collect();
    let workers: Vec<(String, String)> = inv
        .hosts
        .iter()
        .filter(|(_, h)| h.role == "k8s-worker" && h.zone == t.host.zone)
        .map(|(n, h)| (n.clone(), cluster_ip(h)))
        .collect();
    let m: Vec<(&str, &str)> = masters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let w: Vec<(&str, &str)> = workers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ingress = inv.haproxy.ingress && !w.is_empty();
    let text = haproxy::render_config(&m, if ingress { Some(&w) } else { None });
    let _ = cx.step("haproxy installed", haproxy::installed)?;
    let config = cx.step("haproxy config", |cx| haproxy::config(cx, &text))?;
    let _ = cx.step("haproxy enabled", haproxy::enabled)?;
    let ports = firewall::role_ports("haproxy", ingress);
    let _ = cx.step("firewall ports", |cx| firewall::ports_open(cx, &ports))?;
    let _ = cx.step("haproxy running", |cx| {
        haproxy::running(cx, config.changed())
    })?;
    full_update(cx, t)?;
    network(cx, t)
}
