//! Static network configuration for systemd-networkd:
//! /etc/systemd/network/10-static-en.network, mode 0644 whatever the umask (Photon's 0027 would
//! leave it unreadable for systemd-networkd, which runs as its own user).
//!
//! Steps: "network file" ([`network_file`]) then, last in the playbook, "network applied"
//! ([`network_applied`]). Applying a new address can cut the ssh session doing it, so it
//! happens only when the inventory asks (`network.apply = true`); otherwise the file waits for
//! the next boot and the step says so.
//!
//! networkd uses the first `.network` file, in lexical order, that matches an interface: `10-`
//! sorts before Photon's `99-dhcp-en.network` (`Name=e*`, DHCP), which then no longer applies
//! to that interface.
//!
//! Other network managers: Debian installs use ifupdown (/etc/network/interfaces) and leave
//! systemd-networkd disabled; RHEL uses NetworkManager and has no systemd-networkd. Applying
//! is refused, with the reason, when ifupdown configures the interface in
//! /etc/network/interfaces or NetworkManager runs: two managers on one interface fight over it.
//! (Stanzas in /etc/network/interfaces.d are not inspected.) `DNS=` reaches /etc/resolv.conf
//! only through systemd-resolved (enabled on Photon).

use std::net::IpAddr;

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::file::{self, Perm};
use crate::plan::Reads;
use crate::systemd;

pub const NETWORK_FILE: &str = "/etc/systemd/network/10-static-en.network";
/// ifupdown's configuration (Debian).
pub const IFUPDOWN: &str = "/etc/network/interfaces";
const NETWORKD: &str = "systemd-networkd.service";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads =
    Reads::files(&[NETWORK_FILE, IFUPDOWN]).units(&["systemd-networkd.service"]);

/// A host's static address settings (from the inventory).
#[derive(Debug, Clone, Copy)]
pub struct StaticNetwork<'a> {
    /// `eth0`.
    pub interface: &'a str,
    /// `192.168.10.57/24`.
    pub address_cidr: &'a str,
    pub gateway: Option<&'a str>,
    pub dns: &'a [String],
}

fn ip(what: &str, s: &str) -> Result<IpAddr> {
    s.parse().map_err(|_| {
        Error::invalid(format!(
            "invalid {what} {s:?}: expected an IPv4 or IPv6 address"
        ))
    })
}

impl StaticNetwork<'_> {
    pub fn validate(&self) -> Result<()> {
        let i = self.interface;
        if i.is_empty()
            || i.len() > 15
            || !i
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(Error::invalid(format!(
                "invalid interface name {i:?}: expected a name such as eth0 or ens192"
            )));
        }
        let (addr, prefix) = self.address_cidr.split_once('/').ok_or_else(|| {
            Error::invalid(format!(
                "invalid address {:?}: expected ADDRESS/PREFIX such as 192.168.10.57/24",
                self.address_cidr
            ))
        })?;
        let addr = ip("address", addr)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if !prefix.parse::<u8>().is_ok_and(|p| (1..=max).contains(&p)) || prefix.starts_with('+') {
            return Err(Error::invalid(format!(
                "invalid prefix length in {:?}: expected 1 to {max}",
                self.address_cidr
            )));
        }
        if let Some(gw) = self.gateway {
            let gw = ip("gateway", gw)?;
            if gw.is_ipv4() != addr.is_ipv4() {
                return Err(Error::invalid(format!(
                    "gateway {gw} and address {addr} are not of the same IP version"
                )));
            }
        }
        for d in self.dns {
            ip("DNS server", d)?;
        }
        Ok(())
    }
}

/// The .network file.
pub fn render(net: &StaticNetwork) -> Result<String> {
    net.validate()?;
    let mut s = format!(
        "# Managed by nodeprep.\n[Match]\nName={}\n\n[Network]\nAddress={}\n",
        net.interface, net.address_cidr
    );
    if let Some(gw) = net.gateway {
        s.push_str(&format!("Gateway={gw}\n"));
    }
    for d in net.dns {
        s.push_str(&format!("DNS={d}\n"));
    }
    Ok(s)
}

/// Step "network file": /etc/systemd/network/10-static-en.network, 0644 root:root. Changed
/// when written: pass that to [`network_applied`].
pub fn network_file(cx: &mut Ctx, net: &StaticNetwork) -> Result<Change> {
    let text = render(net)?;
    file::content(cx, NETWORK_FILE, &text, Perm::CONFIG)
}

/// The reason applying is left out when the inventory does not ask for it.
pub const NOT_APPLIED: &str = "not applied: set network.apply = true for this host to apply it now (applying can cut the ssh session); it takes effect at the next boot";

/// Step "network applied" (run it last). `changed`: the file just changed; `apply`: the
/// inventory asks for the live change. When asked and there is something to do (the file
/// changed, or networkd is not running): systemd-networkd enabled, then started, or, when it
/// already runs, `networkctl reload` (which reconfigures the interfaces whose file changed).
/// When not asked: skipped with [`NOT_APPLIED`] if the file changed, else unchanged.
pub fn network_applied(
    cx: &mut Ctx,
    net: &StaticNetwork,
    changed: bool,
    apply: bool,
) -> Result<Change> {
    if !apply {
        return Ok(if changed {
            Change::Skipped(NOT_APPLIED.into())
        } else {
            Change::Unchanged
        });
    }
    net.validate()?;
    let unit = systemd::unit(cx, NETWORKD)?;
    let running = unit.active == "active";
    let enabled = matches!(
        unit.enablement.as_str(),
        "enabled" | "enabled-runtime" | "static" | "alias" | "indirect"
    );
    if !changed && running && enabled {
        return Ok(Change::Unchanged);
    }
    if let Some(c) = &cx.facts().container {
        return Ok(Change::Skipped(format!(
            "inside a container ({c}) the network belongs to the container runtime: {NETWORK_FILE} left for a real host"
        )));
    }
    if unit.enablement.is_empty() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "systemd-networkd is not installed on this host (RHEL-like hosts use NetworkManager): configure the address with nmcli, or set network.apply = false",
        ));
    }
    if cx.facts().os == OsFamily::Debian {
        let interfaces = cx.file(IFUPDOWN)?.map(|f| f.text()).unwrap_or_default();
        if let Some(stanza) = ifupdown_stanza(&interfaces, net.interface) {
            return Err(Error::invalid(format!(
                "{} is configured by ifupdown in {IFUPDOWN} (`{stanza}`): remove that stanza before handing it to systemd-networkd, or set network.apply = false",
                net.interface
            )));
        }
    }
    if systemd::unit(cx, "NetworkManager.service")?.active == "active" {
        return Err(Error::invalid(
            "NetworkManager is running on this host: it and systemd-networkd would both manage the interface; configure it with nmcli, or set network.apply = false",
        ));
    }
    let mut c = systemd::enabled(cx, NETWORKD)?;
    if running {
        cx.apply(&["networkctl", "reload"])?;
        cx.note_change("systemd-networkd reloaded its configuration (networkctl reload)");
        c = Change::Changed;
    } else {
        c |= systemd::started(cx, NETWORKD)?;
    }
    Ok(c)
}

/// The `iface NAME ...` line of /etc/network/interfaces that configures `interface` (a
/// `manual` stanza configures nothing), if any.
pub fn ifupdown_stanza(text: &str, interface: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() >= 4 && w[0] == "iface" && w[1] == interface && w[3] != "manual")
            .then(|| w.join(" "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, actions as strings};
    use expect_test::expect;

    fn dns() -> Vec<String> {
        vec!["192.168.10.2".into(), "192.168.10.3".into()]
    }

    fn net(dns: &[String]) -> StaticNetwork<'_> {
        StaticNetwork {
            interface: "eth0",
            address_cidr: "192.168.10.57/24",
            gateway: Some("192.168.10.1"),
            dns,
        }
    }

    #[test]
    fn rendered() {
        let d = dns();
        expect![[r#"
            # Managed by nodeprep.
            [Match]
            Name=eth0

            [Network]
            Address=192.168.10.57/24
            Gateway=192.168.10.1
            DNS=192.168.10.2
            DNS=192.168.10.3
        "#]]
        .assert_eq(&render(&net(&d)).unwrap());
        let bare = StaticNetwork {
            interface: "ens192",
            address_cidr: "fd00::5/64",
            gateway: None,
            dns: &[],
        };
        assert_eq!(
            render(&bare).unwrap(),
            "# Managed by nodeprep.\n[Match]\nName=ens192\n\n[Network]\nAddress=fd00::5/64\n"
        );
    }

    #[test]
    fn validated() {
        let d = dns();
        let ok = net(&d);
        for bad in [
            StaticNetwork {
                address_cidr: "192.168.10.57",
                ..ok
            },
            StaticNetwork {
                address_cidr: "192.168.10.57/33",
                ..ok
            },
            StaticNetwork {
                address_cidr: "192.168.10.300/24",
                ..ok
            },
            StaticNetwork {
                interface: "eth0\nDHCP=yes",
                ..ok
            },
            StaticNetwork {
                interface: "",
                ..ok
            },
            StaticNetwork {
                gateway: Some("fd00::1"),
                ..ok
            },
            StaticNetwork {
                gateway: Some("gw"),
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let bad_dns = ["8.8.8.8\nDNS=1.1.1.1".to_string()];
        assert!(net(&bad_dns).validate().is_err());
    }

    #[test]
    fn photon_applied_on_request() {
        let d = dns();
        let (mut cx, _rec) = Fixture::photon().absent(NETWORK_FILE).ctx(Mode::Apply);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        assert_eq!(
            network_applied(&mut cx, &net(&d), c.changed(), true).unwrap(),
            Change::Changed
        );
        assert_eq!(
            strings(&cx),
            [
                "write /etc/systemd/network/10-static-en.network 0644 root:root",
                "run networkctl reload"
            ]
        );
    }

    #[test]
    fn photon_not_requested() {
        let d = dns();
        let (mut cx, _rec) = Fixture::photon().absent(NETWORK_FILE).ctx(Mode::Apply);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        assert_eq!(
            network_applied(&mut cx, &net(&d), c.changed(), false).unwrap(),
            Change::Skipped(NOT_APPLIED.into())
        );
        assert_eq!(
            strings(&cx),
            ["write /etc/systemd/network/10-static-en.network 0644 root:root"]
        );
        // Next run: the file is there, nothing pending.
        let c = network_file(&mut cx, &net(&d)).unwrap();
        assert_eq!(
            network_applied(&mut cx, &net(&d), c.changed(), false).unwrap(),
            Change::Unchanged
        );
    }

    #[test]
    fn photon_no_change() {
        let d = dns();
        let text = render(&net(&d)).unwrap();
        let (mut cx, rec) = Fixture::photon()
            .file(NETWORK_FILE, &text, 0o644)
            .ctx(Mode::Apply);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert_eq!(
            network_applied(&mut cx, &net(&d), c.changed(), true).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty());
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn umask_mode_fixed() {
        let d = dns();
        let text = render(&net(&d)).unwrap();
        let (mut cx, _rec) = Fixture::photon()
            .file(NETWORK_FILE, &text, 0o640)
            .ctx(Mode::Apply);
        assert_eq!(network_file(&mut cx, &net(&d)).unwrap(), Change::Changed);
        assert_eq!(
            strings(&cx),
            ["run chmod 0644 /etc/systemd/network/10-static-en.network"]
        );
    }

    #[test]
    fn debian_networkd_started_check_mode() {
        let d = dns();
        let (mut cx, rec) = Fixture::debian()
            .absent(NETWORK_FILE)
            .file(
                IFUPDOWN,
                "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet manual\n",
                0o644,
            )
            .unit("systemd-networkd.service", "disabled", "inactive")
            .unit("NetworkManager.service", "", "")
            .ctx(Mode::Check);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        assert_eq!(
            network_applied(&mut cx, &net(&d), c.changed(), true).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "write /etc/systemd/network/10-static-en.network 0644 root:root",
                "run systemctl enable systemd-networkd.service",
                "run systemctl start systemd-networkd.service",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert!(
            rec.commands().is_empty(),
            "check mode ran {:?}",
            rec.commands()
        );
    }

    #[test]
    fn debian_ifupdown_refused() {
        let d = dns();
        let (mut cx, _rec) = Fixture::debian()
            .absent(NETWORK_FILE)
            .file(
                IFUPDOWN,
                "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n",
                0o644,
            )
            .unit("systemd-networkd.service", "disabled", "inactive")
            .ctx(Mode::Apply);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        let err = network_applied(&mut cx, &net(&d), c.changed(), true).unwrap_err();
        assert!(err.message().contains("`iface eth0 inet dhcp`"), "{err}");
        assert_eq!(
            strings(&cx),
            ["write /etc/systemd/network/10-static-en.network 0644 root:root"]
        );
    }

    #[test]
    fn container_skipped() {
        let d = dns();
        let (mut cx, _rec) = Fixture::photon()
            .absent(NETWORK_FILE)
            .in_container()
            .ctx(Mode::Apply);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        let applied = network_applied(&mut cx, &net(&d), c.changed(), true).unwrap();
        assert!(
            matches!(&applied, Change::Skipped(r) if r.contains("container runtime")),
            "{applied:?}"
        );
        assert_eq!(cx.actions().len(), 1);
    }

    #[test]
    fn rhel_without_networkd_refused() {
        let d = dns();
        let (mut cx, _rec) = Fixture::rhel()
            .absent(NETWORK_FILE)
            .unit("systemd-networkd.service", "", "")
            .ctx(Mode::Apply);
        let c = network_file(&mut cx, &net(&d)).unwrap();
        let err = network_applied(&mut cx, &net(&d), c.changed(), true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}
