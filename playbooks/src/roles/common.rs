//! The steps every role starts with (admin access and its sudo, locale, time, CA certificates,
//! NFS client, then the full update, where the seed puts it: before the role's own packages)
//! and ends with (network: cloud-init kept off it, the static file, applied).

use std::time::Duration;

use tasks::network::{self, StaticNetwork};
use tasks::state::Probe;
use tasks::{Change, Error, ErrorKind, Plan, Reads, Result, StepRef};
use tasks::{ca, cloudinit, hosts, locale, pkg, proxy, repos, sudoers, timesync, update, users};

use crate::inventory::{Network, Placeholder, Target};

fn skip(why: &str) -> Result<Change> {
    Ok(Change::Skipped(why.to_string()))
}

/// Admin access (and, when the inventory asks, sudo without a password), locale, time, CA
/// certificates, NFS client, full update. The packages of these steps are declared for the
/// run's one transaction ([`Plan::installs`]), and apt's lists are refreshed only when older
/// than `system.package_lists_max_age`.
pub fn common<'a>(t: Target<'a>, p: &mut Plan<'a>) {
    let inv = t.inventory;
    let sys = &inv.system;
    let admin = inv.admin.as_ref();
    p.package_lists_max_age(Duration::from_secs(sys.package_lists_max_age));
    // Where packages come from, before the run's one package transaction; with a proxy or a
    // mirror, the CA certificates too (the mirror's or the proxy's certificate may be signed
    // by the operator's CA).
    let sources = package_sources(t, p);
    let early_ca = (t.proxy().is_some() || t.mirrors().any()) && !sys.ca_files.is_empty();
    if early_ca {
        let ca = ca_certificates(t, p);
        p.packages_after(ca);
    } else {
        p.packages_after(sources);
    }
    p.reads(admin_files(t));
    p.step("admin user", users::READS, move |cx| match admin {
        Some(a) => users::admin_user(
            cx,
            &users::AdminUser {
                name: &a.name,
                password_hash: &a.password_hash,
                ssh_keys: &a.ssh_keys,
            },
        ),
        None => skip("no [admin] in the inventory"),
    });
    p.step("admin ssh keys", users::READS, move |cx| match admin {
        Some(a) => users::authorized_keys(cx, &a.name, &a.ssh_keys),
        None => skip("no [admin] in the inventory"),
    });
    p.step("password expiry off", users::READS, move |cx| match admin {
        Some(a) => {
            Ok(users::no_password_expiry(cx, &a.name)? | users::no_password_expiry(cx, "root")?)
        }
        None => users::no_password_expiry(cx, "root"),
    });
    p.reads(sudoers_files(t));
    p.step(
        "admin passwordless sudo",
        sudoers::READS,
        move |cx| match admin {
            Some(a) if a.passwordless_sudo => sudoers::passwordless(cx, &a.name),
            Some(_) => skip("admin.passwordless_sudo is not set"),
            None => skip("no [admin] in the inventory"),
        },
    );
    let packages = p.step("locale packages", locale::READS, |cx| {
        locale::locale_packages(cx, &sys.locale)
    });
    p.installs(packages, |cx| locale::packages(cx, &sys.locale));
    p.reads(files_read(locale::source_files(&sys.locale)));
    p.step("locale generated", locale::READS, |cx| {
        locale::locale_generated(cx, &sys.locale)
    });
    p.step("locale set", locale::READS, |cx| {
        locale::locale_set(cx, &sys.locale)
    });
    p.step("keymap set", locale::READS, |cx| match &sys.keymap {
        Some(k) => locale::keymap_set(cx, k),
        None => skip("no system.keymap in the inventory"),
    });
    const NO_NTP: &str = "no system.ntp servers in the inventory";
    let ntp = &sys.ntp;
    let installed = p.step("time service installed", timesync::READS, |cx| {
        if ntp.is_empty() {
            return skip(NO_NTP);
        }
        timesync::timesync_installed(cx)
    });
    p.installs(installed, |cx| {
        if ntp.is_empty() {
            return Ok(Vec::new());
        }
        timesync::packages(cx)
    });
    let servers = p.step("time servers", timesync::READS, |cx| {
        if ntp.is_empty() {
            return skip(NO_NTP);
        }
        timesync::ntp_servers(cx, ntp)
    });
    p.step("time service enabled", timesync::READS, |cx| {
        if ntp.is_empty() {
            return skip(NO_NTP);
        }
        timesync::timesync_enabled(cx)
    });
    p.step("time service restarted", timesync::READS, move |cx| {
        if ntp.is_empty() {
            return skip(NO_NTP);
        }
        let changed = cx.changed(servers);
        timesync::timesync_restarted(cx, changed)
    });
    if !early_ca {
        let certificates = ca_certificates(t, p);
        p.installs(certificates, move |cx| {
            if sys.ca_files.is_empty() {
                return Ok(Vec::new());
            }
            ca::packages(cx)
        });
    }
    let nfs = p.step("nfs client", Reads::NONE, pkg::nfs_client);
    p.installs(nfs, |cx| {
        Ok(vec![pkg::nfs_client_package(cx.facts().os).to_string()])
    });
    full_update(t, p);
}

/// The CA certificates of the inventory installed and trusted.
fn ca_certificates<'a>(t: Target<'a>, p: &mut Plan<'a>) -> StepRef {
    p.reads(ca_files(t));
    p.step("ca certificates", ca::READS, move |cx| {
        let certs = read_ca_files(t)?;
        if certs.is_empty() {
            return skip("no system.ca_files in the inventory");
        }
        let mut c = ca::ca_packages(cx)?;
        let files = ca::ca_files(cx, &certs)?;
        c |= ca::ca_bundle_rebuilt(cx, &certs, files.changed())?;
        Ok(c | files)
    })
}

/// The package repositories (Photon's moved off the vendor's retired host, or every
/// family's at the mirror `[packages]` names) and the package manager's proxy (`[proxy]`).
/// Returns the last of these steps.
pub fn package_sources<'a>(t: Target<'a>, p: &mut Plan<'a>) -> StepRef {
    p.step("package repositories", repos::READS, move |cx| {
        let m = t.mirrors();
        let key = match m.gpgkey {
            Some(k) => {
                let path = t.inventory.resolve(k);
                Some(std::fs::read_to_string(&path).map_err(|e| {
                    Error::invalid(format!(
                        "{}: packages.gpgkey: {}: {e}",
                        t.inventory.path.display(),
                        path.display()
                    ))
                })?)
            }
            None => None,
        };
        let mirrors = repos::Mirrors {
            photon: m.photon,
            debian: m.debian,
            debian_security: m.debian_security,
            rhel: m.rhel,
            gpgcheck: m.gpgcheck,
            gpgkey: key.as_deref(),
        };
        repos::repositories(cx, &mirrors)
    });
    p.step("package proxy", proxy::READS, move |cx| {
        let hp = t.proxy();
        let given = hp.as_ref().map(|hp| proxy::Proxy {
            http: hp.http,
            https: hp.https,
            no_proxy: "",
        });
        proxy::package_proxy(cx, given.as_ref())
    })
}

/// A probe of these files (taken, not copied).
fn files_read(files: Vec<String>) -> Probe {
    Probe {
        files: files.into_iter().collect(),
        ..Probe::default()
    }
}

/// The admin's ssh directory and keys, at the usual home (another home costs one more round
/// trip).
fn admin_files(t: Target) -> Probe {
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
    files_read(files)
}

/// The admin's sudoers drop-in, when the inventory asks for one.
fn sudoers_files(t: Target) -> Probe {
    let files: Vec<String> = t
        .inventory
        .admin
        .iter()
        .filter(|a| a.passwordless_sudo)
        .map(|a| sudoers::drop_in(&a.name))
        .collect();
    files_read(files)
}

/// The CA certificates of the inventory, in each OS family's layout (the family is not known
/// before the probe), and the bundles that must hold them.
fn ca_files(t: Target) -> Probe {
    let mut files = Vec::new();
    if !t.inventory.system.ca_files.is_empty() {
        for os in tasks::OsFamily::ALL {
            let bundle = ca::layout(os).bundle.to_string();
            if !files.contains(&bundle) {
                files.push(bundle);
            }
        }
    }
    for f in &t.inventory.system.ca_files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(stem) = ca::stem(&name) {
            for os in tasks::OsFamily::ALL {
                let l = ca::layout(os);
                files.push(format!("{}/{stem}.{}", l.dir, l.ext));
            }
        }
    }
    files_read(files)
}

pub(crate) fn read_ca_files(t: Target) -> Result<Vec<(String, String)>> {
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

/// The full system update, when the inventory asks for it: the last of the common steps, so
/// the role's packages come from the updated system, and the packages nodeprep holds (kubelet,
/// kubeadm, kubectl) are already held on a re-run.
pub fn full_update<'a>(t: Target<'a>, p: &mut Plan<'a>) {
    p.step("system updated", update::READS, move |cx| {
        if t.inventory.system.full_update {
            update::full_update(cx)
        } else {
            skip("system.full_update = false")
        }
    });
}

/// The host's name resolves to its cluster address in `/etc/hosts` (every role: kubeadm's
/// preflight and kubelet on a node, vCenter and the operator on every host). `renamed`: the
/// plan sets the host name, so the line naming the old one (Photon's installer line) is
/// the one replaced.
/// The CA certificates `verify` finds in the host's bundle (none when a file cannot be read:
/// `inventory check` and every run report that already).
pub(crate) fn verify_ca_certs(t: Target) -> Vec<(String, String)> {
    read_ca_files(t).unwrap_or_default()
}

pub fn name_resolves<'a>(t: Target<'a>, p: &mut Plan<'a>, renamed: bool) {
    p.step("name resolves", hosts::READS, move |cx| {
        hosts::name_resolves(cx, t.name, t.cluster_address(), renamed)
    });
}

/// Why the network steps have nothing to do for a host.
fn unmanaged(t: Target) -> &'static str {
    match &t.host.network {
        None => "no network table for this host in the inventory",
        Some(_) => "network.write is not set: nodeprep leaves this host's network as it is",
    }
}

/// The static file's settings; its name servers are the host's own, else the shared ones.
fn static_net<'b>(t: Target<'b>, n: &'b Network, cidr: &'b str) -> StaticNetwork<'b> {
    StaticNetwork {
        interface: &n.interface,
        address_cidr: cidr,
        gateway: n.gateway.as_deref(),
        dns: if n.dns.is_empty() {
            &t.inventory.system.dns
        } else {
            &n.dns
        },
    }
}

/// The host's network, when the inventory gives nodeprep charge of it (`network.write`):
/// cloud-init kept off the interface, the static file written, then applied only when the
/// inventory asks, and last: it can cut the session that applies it. A placeholder the plan
/// would write (or a placeholder address to reach the host at) refuses the plan, before any
/// host is touched.
pub fn network<'a>(t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
    refuse_placeholders(t)?;
    let managed = t.host.network.as_ref().filter(|n| n.write);
    if let Some(n) = managed {
        p.reads(files_read(vec![cloudinit::network_file(&n.interface)]));
    }
    p.step(
        "cloud-init network off",
        cloudinit::READS,
        move |cx| match managed {
            Some(_) => cloudinit::network_config_disabled(cx),
            None => skip(unmanaged(t)),
        },
    );
    p.step(
        "cloud-init network file removed",
        Reads::NONE,
        move |cx| match managed {
            Some(n) => cloudinit::network_file_removed(cx, &n.interface),
            None => skip(unmanaged(t)),
        },
    );
    let file = p.step("network file", network::READS, move |cx| match managed {
        Some(n) => network::network_file(cx, &static_net(t, n, &n.cidr())),
        None => skip(unmanaged(t)),
    });
    p.step("network applied", network::READS, move |cx| match managed {
        Some(n) => {
            let changed = cx.changed(file);
            network::network_applied(cx, &static_net(t, n, &n.cidr()), changed, n.apply)
        }
        None => skip(unmanaged(t)),
    });
    Ok(())
}

/// What a plan does with a value of the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// ssh connects to it.
    Connect,
    /// The static network file holds it.
    NetworkFile,
}

/// The values of the inventory a plan for `t` would use and that are placeholders: the
/// address ssh connects to and, when nodeprep writes the host's network, every value of the
/// static file (the shared name servers when the host has none of its own).
fn placeholders_used<'a>(t: Target<'a>) -> Vec<(&'a Placeholder, Use)> {
    let inv = t.inventory;
    let host = Some(t.name);
    let mut used: Vec<(&Placeholder, Use)> = inv
        .placeholder(host, "address")
        .map(|p| (p, Use::Connect))
        .into_iter()
        .collect();
    if let Some(n) = t.host.network.as_ref().filter(|n| n.write) {
        let mut file = |p: Option<&'a Placeholder>| used.extend(p.map(|p| (p, Use::NetworkFile)));
        for field in [
            "network.interface",
            "network.address",
            "network.prefix",
            "network.gateway",
        ] {
            file(inv.placeholder(host, field));
        }
        if n.dns.is_empty() {
            file(inv.placeholder(None, "system.dns"));
        } else {
            file(inv.placeholder(host, "network.dns"));
        }
    }
    used
}

/// A plan using placeholders is refused, each named with its file, line, host and field.
fn refuse_placeholders(t: Target) -> Result<()> {
    let used = placeholders_used(t);
    if used.is_empty() {
        return Ok(());
    }
    let file = &t.inventory.path;
    let list: Vec<String> = used
        .iter()
        .map(|(p, u)| {
            let what = match u {
                Use::Connect => "ssh would connect to it",
                Use::NetworkFile => "the static network file would hold it",
            };
            format!("  {}: placeholder {} ({what})", p.located(file), p.value)
        })
        .collect();
    let mut fix =
        "confirm each: write the value alone, without `{ placeholder = ... }`".to_string();
    if used.iter().any(|(_, u)| *u == Use::NetworkFile) {
        fix.push_str("; or set network.write = false to leave this host's network as it is");
    }
    Err(Error::invalid(format!(
        "host {}: refusing values the inventory marks as placeholders:\n{}\n{fix}",
        t.name,
        list.join("\n")
    )))
}
