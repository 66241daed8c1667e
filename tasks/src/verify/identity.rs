//! Who a host is and what time it has: its name, its clock, and what must differ from host to
//! host (checked across the hosts verified together, over each one's [`Identity`]).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ctx::Ctx;
use crate::error::Result;
use crate::hostname;

use super::Check;

pub const MACHINE_ID: &str = "/etc/machine-id";
pub const PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";
/// Clock skew tolerated between a host and the controller.
pub const MAX_SKEW_SECS: f64 = 30.0;
/// The checks across hosts, in the order [`fleet_checks`] runs them.
pub const FLEET_CHECKS: [&str; 4] = [
    "unique hostname",
    "unique address",
    "unique machine-id",
    "unique product_uuid",
];

/// Check names.
pub(super) mod name {
    pub const HOSTNAME: &str = "hostname";
    pub const CLOCK_SYNCHRONIZED: &str = "clock synchronized";
    pub const CLOCK_SKEW: &str = "clock skew";
}

/// A reading of the host's clock between two readings of the controller's (seconds since the
/// epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    pub before: f64,
    pub host: f64,
    pub after: f64,
}

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

// ---- parsers --------------------------------------------------------------------------------

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

// ---- reading the host -----------------------------------------------------------------------

/// The kernel's host name, as the probe read it (and as the run changed it).
fn live_hostname(cx: &Ctx) -> String {
    cx.facts().hostname.clone()
}

/// The host's name, now and after a reboot, is the inventory name (lowercase RFC 1123: it is
/// also the Kubernetes node name).
pub fn hostname_matches(cx: &mut Ctx, name: &str) -> Result<Check> {
    const NAME: &str = name::HOSTNAME;
    let fix = format!("`hostnamectl set-hostname {name}` (step \"hostname\")");
    if let Err(e) = hostname::validate(name) {
        return Ok(Check::fail(
            NAME,
            e.message().to_string(),
            "rename the host in the inventory (it becomes the node name)",
        ));
    }
    let live = live_hostname(cx);
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
    const NAME: &str = name::CLOCK_SYNCHRONIZED;
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

/// The controller's clock, in seconds since the epoch.
pub(super) fn now() -> f64 {
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
    Ok(Identity {
        host: host.to_string(),
        hostname: live_hostname(cx),
        addresses: global_addresses(&out.stdout_str()),
        machine_id,
        product_uuid,
        container: cx.facts().in_container(),
    })
}

// ---- verdicts over what was read ------------------------------------------------------------

/// The host's clock is within `max` seconds of the controller's. The host was read somewhere
/// between `before` and `after`: the offset is taken from the midpoint, and half the round trip
/// is given to the host's benefit.
pub fn clock_skew(sample: Option<ClockSample>, max: f64) -> Check {
    const NAME: &str = name::CLOCK_SKEW;
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
    let [hostname, address, machine_id, product_uuid] = FLEET_CHECKS;
    let mut out = Vec::new();
    out.extend(unique(
        ids,
        hostname,
        |id| Ok(vec![id.hostname.to_lowercase()]),
        "host name",
        "give every host its own name (the inventory name: step \"hostname\")",
    ));
    out.extend(unique(
        ids,
        address,
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
        machine_id,
        |id| match &id.machine_id {
            Some(m) => Ok(vec![m.clone()]),
            None => Err("/etc/machine-id is empty or absent".into()),
        },
        "/etc/machine-id",
        "a cloned VM: `rm -f /etc/machine-id && systemd-machine-id-setup`, then reboot",
    ));
    out.extend(unique(
        ids,
        product_uuid,
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
    use crate::verify::Verdict;
    use crate::verify::fixtures::{hint, ok, ready_ctx, ready_photon, reason};

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
}
