//! Static network configuration for systemd-networkd:
//! /etc/systemd/network/10-static-en.network, mode 0644 whatever the umask (Photon's 0027 would
//! leave it unreadable for systemd-networkd, which runs as its own user).
//!
//! Steps: "network file" ([`network_file`]) then, last in the playbook, "network applied"
//! ([`network_applied`]), both only for a host whose network nodeprep manages (the inventory
//! asks for it). Applying a new address can cut the ssh session doing it, so it happens only
//! when the inventory asks (`network.apply = true`); otherwise the file waits for the next boot
//! and the step says so. cloud-init, where installed, would shadow the file: see
//! [`crate::cloudinit`].
//!
//! [`Cidr`] checks what a host can hold: the prefix in range, not an IPv4 network's own or
//! broadcast address, a gateway on the address's network.
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
use crate::reads::Reads;
use crate::state::{ActiveState, Enablement};
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

/// An address with its prefix length, as a static address is written: `192.168.10.57/24`,
/// `fd00::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The address as a number, with its width in bits.
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

impl Cidr {
    /// `ADDRESS/PREFIX`; the reason when it is not one a host can hold.
    pub fn parse(s: &str) -> std::result::Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or("expected address/prefix, like 192.168.10.57/24")?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let max = bits(addr).1;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|_| !prefix.starts_with('+'))
            .ok_or(format!("prefix `{prefix}` is not in 1..={max}"))?;
        Cidr::new(addr, prefix)
    }

    /// `addr` with `prefix`: the prefix in 1..=32 (IPv4) or 1..=128 (IPv6), and, on an IPv4
    /// network of more than two addresses, neither the network's own address nor its
    /// broadcast address.
    pub fn new(addr: IpAddr, prefix: u8) -> std::result::Result<Cidr, String> {
        let max = bits(addr).1;
        if !(1..=max).contains(&prefix) {
            return Err(format!("prefix `{prefix}` is not in 1..={max}"));
        }
        let c = Cidr { addr, prefix };
        if addr.is_ipv4() && prefix <= 30 {
            let (n, _) = bits(addr);
            if n == c.network() {
                return Err(format!(
                    "{addr} is the address of the network {c}, not a host's"
                ));
            }
            if n == c.broadcast() {
                return Err(format!(
                    "{addr} is the broadcast address of the network {}/{prefix}, not a host's",
                    c.network_addr()
                ));
            }
        }
        Ok(c)
    }

    /// The bits of the host part.
    fn host_mask(&self) -> u128 {
        let width = bits(self.addr).1;
        let host_bits = u32::from(width - self.prefix);
        1u128.checked_shl(host_bits).map_or(u128::MAX, |v| v - 1)
    }

    fn network(&self) -> u128 {
        bits(self.addr).0 & !self.host_mask()
    }

    fn broadcast(&self) -> u128 {
        self.network() | self.host_mask()
    }

    fn network_addr(&self) -> IpAddr {
        let n = self.network();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(n.into()),
        }
    }

    /// `ip` is on this address's network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip).0 & !self.host_mask() == self.network()
    }

    /// Why `gw` cannot be the gateway of a host holding this address, if it cannot: another
    /// IP version, the host's own address, outside the network (a /32 or /128 has no other
    /// address at all), or, on IPv4, the network's own or broadcast address. An IPv6
    /// link-local gateway (fe80::/10) is on every link.
    pub fn gateway_problem(&self, gw: IpAddr) -> Option<String> {
        let net = format!("{}/{}", self.network_addr(), self.prefix);
        if gw.is_ipv4() != self.addr.is_ipv4() {
            return Some(format!(
                "gateway {gw} and address {} are not of the same IP version",
                self.addr
            ));
        }
        if gw == self.addr {
            return Some(format!("gateway {gw} is the host's own address"));
        }
        if let IpAddr::V6(v6) = gw
            && v6.segments()[0] & 0xffc0 == 0xfe80
        {
            return None;
        }
        let max = bits(self.addr).1;
        if self.prefix == max {
            return Some(format!(
                "a /{max} address has no other address on its link: gateway {gw} cannot be reached (give the real prefix)"
            ));
        }
        if !self.contains(gw) {
            return Some(format!(
                "gateway {gw} is outside {net}, the network of {self}: the host could not reach it"
            ));
        }
        if gw.is_ipv4() && self.prefix <= 30 {
            if bits(gw).0 == self.network() {
                return Some(format!("gateway {gw} is the address of the network {net}"));
            }
            if bits(gw).0 == self.broadcast() {
                return Some(format!("gateway {gw} is the broadcast address of {net}"));
            }
        }
        None
    }
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
        let cidr = Cidr::parse(self.address_cidr).map_err(|why| {
            Error::invalid(format!("invalid address {:?}: {why}", self.address_cidr))
        })?;
        if let Some(gw) = self.gateway {
            let gw = ip("gateway", gw)?;
            if let Some(why) = cidr.gateway_problem(gw) {
                return Err(Error::invalid(why));
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
    let running = unit.active == ActiveState::Active;
    let enabled = matches!(
        unit.enablement,
        Enablement::Enabled
            | Enablement::EnabledRuntime
            | Enablement::Static
            | Enablement::Alias
            | Enablement::Indirect
    );
    if !changed && running && enabled {
        return Ok(Change::Unchanged);
    }
    if let Some(c) = &cx.facts().container {
        return Ok(Change::Skipped(format!(
            "inside a container ({c}) the network belongs to the container runtime: {NETWORK_FILE} left for a real host"
        )));
    }
    if !unit.enablement.is_found() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "systemd-networkd is not installed on this host (RHEL-like hosts use NetworkManager): configure the address with nmcli, or set network.apply = false",
        ));
    }
    let ifupdown = match cx.facts().os {
        OsFamily::Debian => true,
        OsFamily::Photon | OsFamily::Rhel => false,
    };
    if ifupdown {
        let interfaces = cx.file(IFUPDOWN)?.map(|f| f.text()).unwrap_or_default();
        if let Some(stanza) = ifupdown_stanza(&interfaces, net.interface) {
            return Err(Error::invalid(format!(
                "{} is configured by ifupdown in {IFUPDOWN} (`{stanza}`): remove that stanza before handing it to systemd-networkd, or set network.apply = false",
                net.interface
            )));
        }
    }
    if systemd::unit(cx, "NetworkManager.service")?.active == ActiveState::Active {
        return Err(Error::invalid(
            "NetworkManager is running on this host: it and systemd-networkd would both manage the interface; configure it with nmcli, or set network.apply = false",
        ));
    }
    let mut c = systemd::enabled(cx, NETWORKD)?;
    if running {
        cx.apply(&["networkctl", "reload"])?;
        cx.note_done_or_would(
            "systemd-networkd reloaded its configuration (networkctl reload)",
            "systemd-networkd would reload its configuration (networkctl reload)",
        );
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
    use crate::testing::{Fixture, actions as strings, assert_sent_nothing};
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
        let outside = StaticNetwork {
            gateway: Some("192.168.11.1"),
            ..ok
        };
        let err = outside.validate().unwrap_err();
        assert!(err.message().contains("outside 192.168.10.0/24"), "{err}");
    }

    /// A gateway must be on the address's network; the network's own address, its broadcast
    /// address and the host's own address are none; /31 (RFC 3021) and /32 have no network or
    /// broadcast address, and a /32 has no room for a gateway.
    #[test]
    fn gateways_inside_the_prefix() {
        let gw = |cidr: &str, gw: &str| {
            Cidr::parse(cidr)
                .unwrap()
                .gateway_problem(gw.parse().unwrap())
        };
        assert_eq!(gw("192.168.10.57/24", "192.168.10.1"), None);
        assert_eq!(gw("192.168.10.57/16", "192.168.200.1"), None);
        assert_eq!(gw("10.0.0.0/31", "10.0.0.1"), None);
        assert_eq!(gw("fd00::5/64", "fd00::1"), None);
        assert_eq!(gw("fd00::5/64", "fe80::1"), None, "link-local gateway");
        for (cidr, bad, why) in [
            (
                "192.168.10.57/24",
                "192.168.11.1",
                "outside 192.168.10.0/24",
            ),
            (
                "192.168.10.57/25",
                "192.168.10.129",
                "outside 192.168.10.0/25",
            ),
            ("192.168.10.57/24", "192.168.10.0", "address of the network"),
            ("192.168.10.57/24", "192.168.10.255", "broadcast"),
            ("192.168.10.57/24", "192.168.10.57", "own address"),
            ("10.0.0.0/31", "10.0.0.2", "outside 10.0.0.0/31"),
            ("192.168.10.57/32", "192.168.10.1", "no other address"),
            ("fd00::5/128", "fd00::1", "no other address"),
            ("fd00::5/64", "fd01::1", "outside fd00::/64"),
            ("192.168.10.57/24", "fd00::1", "same IP version"),
        ] {
            let got = gw(cidr, bad).unwrap_or_default();
            assert!(got.contains(why), "{cidr} via {bad}: {got:?}");
        }
    }

    #[test]
    fn addresses_a_host_can_hold() {
        for ok in [
            "192.168.10.57/24",
            "10.0.0.0/31",
            "10.0.0.1/31",
            "10.0.0.0/32",
            "fd00::/64",
            "fd00::5/128",
        ] {
            assert!(Cidr::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("192.168.10.0/24", "address of the network 192.168.10.0/24"),
            (
                "192.168.10.255/24",
                "broadcast address of the network 192.168.10.0/24",
            ),
            ("192.168.10.57/0", "prefix `0` is not in 1..=32"),
            ("192.168.10.57/33", "prefix `33` is not in 1..=32"),
            ("192.168.10.57/+24", "prefix `+24`"),
            ("fd00::5/129", "prefix `129` is not in 1..=128"),
            ("192.168.10.57", "expected address/prefix"),
        ] {
            let got = Cidr::parse(bad).unwrap_err();
            assert!(got.contains(why), "{bad}: {got}");
        }
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
        assert_sent_nothing(&rec);
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
