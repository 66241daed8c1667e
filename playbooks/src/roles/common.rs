//! The steps every role starts with (admin access, locale, time, CA certificates, NFS client,
//! then the full update, where the seed puts it: before the role's own packages) and ends with
//! (static network).

use tasks::network::{self, StaticNetwork};
use tasks::state::Probe;
use tasks::{Change, Error, ErrorKind, Plan, Reads, Result};
use tasks::{ca, locale, pkg, timesync, update, users};

use crate::inventory::Target;

fn skip(why: &str) -> Result<Change> {
    Ok(Change::Skipped(why.to_string()))
}

/// Admin access, locale, time, CA certificates, NFS client, full update.
pub fn common<'a>(t: Target<'a>, p: &mut Plan<'a>) {
    let inv = t.inventory;
    let sys = &inv.system;
    let admin = inv.admin.as_ref();
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
    p.step("locale packages", locale::READS, |cx| {
        locale::locale_packages(cx, &sys.locale)
    });
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
    p.step("time service installed", timesync::READS, |cx| {
        if ntp.is_empty() {
            return skip(NO_NTP);
        }
        timesync::timesync_installed(cx)
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
    p.reads(ca_files(t));
    p.step("ca certificates", ca::READS, move |cx| {
        let certs = read_ca_files(t)?;
        if certs.is_empty() {
            return skip("no system.ca_files in the inventory");
        }
        let mut c = ca::ca_packages(cx)?;
        let files = ca::ca_files(cx, &certs)?;
        c |= ca::ca_trust_updated(cx, files.changed())?;
        Ok(c | files)
    });
    p.step("nfs client", Reads::NONE, pkg::nfs_client);
    full_update(t, p);
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
    Probe::default().files(&files)
}

/// The CA certificates of the inventory, in each OS family's layout (the family is not known
/// before the probe).
fn ca_files(t: Target) -> Probe {
    let mut files = Vec::new();
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
    Probe::default().files(&files)
}

fn read_ca_files(t: Target) -> Result<Vec<(String, String)>> {
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

/// The static network, written always, applied only when the inventory asks, and last: it can
/// cut the session that applies it.
pub fn network<'a>(t: Target<'a>, p: &mut Plan<'a>) {
    const NO_NETWORK: &str = "no network settings for this host in the inventory";
    let net = t.host.network.as_ref().map(|n| {
        let dns = if n.dns.is_empty() {
            &t.inventory.system.dns
        } else {
            &n.dns
        };
        (
            StaticNetwork {
                interface: &n.interface,
                address_cidr: &n.address,
                gateway: n.gateway.as_deref(),
                dns,
            },
            n.apply,
        )
    });
    let file = p.step("network file", network::READS, move |cx| match &net {
        Some((net, _)) => network::network_file(cx, net),
        None => skip(NO_NETWORK),
    });
    p.step("network applied", network::READS, move |cx| match &net {
        Some((net, apply)) => {
            let changed = cx.changed(file);
            network::network_applied(cx, net, changed, *apply)
        }
        None => skip(NO_NETWORK),
    });
}
