//! IP protocol names as a host knows them: its own `/etc/protocols`. iptables, nft and
//! firewall-cmd print and take protocol names through the host's file (`getprotobynumber`,
//! `getprotobyname`), and the files differ: Debian's netbase names protocol 4 `ipencap`,
//! Photon OS's (iana-etc, generated from IANA's registry: vmware/photon
//! `SPECS/iana-etc/iana-etc.spec`, see tests/data/photon/README.md) takes IANA's keyword
//! `IPv4`, lowercased (`ipv4`). A rule read back from a host is therefore compared by number,
//! its names read through that host's file; names the file does not hold fall back to
//! [`super::rule::PROTOCOLS`].

use super::Proto;
use crate::ctx::Ctx;
use crate::error::Result;

/// The host's protocol table.
pub const ETC_PROTOCOLS: &str = "/etc/protocols";

/// Names (keywords and aliases, lowercased) and their numbers, as one host's `/etc/protocols`
/// gives them; empty when the host has none (the built-in names then apply alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protocols {
    names: Vec<(String, u8)>,
}

impl Protocols {
    /// The built-in names only (no host file known).
    pub fn builtin() -> Protocols {
        Protocols::default()
    }

    /// An `/etc/protocols` text: `name number [aliases...] [# comment]` per line. Lines that
    /// do not have that form are ignored, as glibc ignores them.
    pub fn parse(text: &str) -> Protocols {
        let mut names = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u8>() else {
                continue;
            };
            for n in std::iter::once(name).chain(words) {
                names.push((n.to_ascii_lowercase(), number));
            }
        }
        Protocols { names }
    }

    /// The number a name (case-insensitive) or a number (`4`) means on this host.
    pub fn number(&self, text: &str) -> Option<u8> {
        let text = text.trim().to_ascii_lowercase();
        if let Ok(n) = text.parse::<u8>() {
            return Some(n);
        }
        // glibc returns the first line that names it.
        self.names
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, n)| *n)
            .or_else(|| super::rule::builtin_number(&text))
    }

    /// `tcp`, `udp`, another protocol by this host's name or by number; `None` for anything
    /// else (`0` and `all` mean every protocol, not one).
    pub fn proto(&self, text: &str) -> Option<Proto> {
        Proto::from_number(self.number(text)?)
    }

    /// The name this host gives protocol `n` (its file's first line for `n`), else the
    /// built-in one.
    pub fn name(&self, n: u8) -> Option<String> {
        self.names
            .iter()
            .find(|(_, num)| *num == n)
            .map(|(name, _)| name.clone())
            .or_else(|| Proto::from_number(n)?.name().map(str::to_string))
    }
}

/// The host's own protocol table (read by the probe: [`ETC_PROTOCOLS`] is in the firewall's
/// reads); the built-in names alone where the host has no such file.
pub fn host_protocols(cx: &mut Ctx) -> Result<Protocols> {
    Ok(match cx.file(ETC_PROTOCOLS)? {
        Some(f) if !f.is_dir => Protocols::parse(&String::from_utf8_lossy(&f.content)),
        _ => Protocols::builtin(),
    })
}

// Sample files for the tests of the firewall modules.

#[cfg(test)]
/// Debian's netbase 6.4 `/etc/protocols`, a copy of this machine's (tests/data/debian).
pub(crate) const NETBASE: &str = include_str!("../../tests/data/debian/protocols");

#[cfg(test)]
/// A file as iana-etc writes it from IANA's registry (Photon OS: vmware/photon
/// `SPECS/iana-etc/iana-etc.spec`): the keyword lowercased, IANA's spelling as alias.
/// Protocol 4's keyword is IANA's `IPv4`.
pub(crate) const IANA: &str = "# See also: protocols(5)\nhopopt\t0\tHOPOPT\t# IPv6 Hop-by-Hop Option\nicmp\t1\tICMP\t# Internet Control Message\nigmp\t2\tIGMP\t# Internet Group Management\nggp\t3\tGGP\t# Gateway-to-Gateway\nipv4\t4\tIPv4\t# IPv4 encapsulation\nst\t5\tST\t# Stream\ntcp\t6\tTCP\t# Transmission Control\nudp\t17\tUDP\t# User Datagram\ngre\t47\tGRE\t# Generic Routing Encapsulation\nipip\t94\tIPIP\t# IP-within-IP Encapsulation Protocol\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_4_by_the_hosts_name() {
        let netbase = Protocols::parse(NETBASE);
        assert_eq!(netbase.number("ipencap"), Some(4));
        assert_eq!(netbase.number("IP-ENCAP"), Some(4));
        assert_eq!(netbase.name(4).as_deref(), Some("ipencap"));
        let iana = Protocols::parse(IANA);
        assert_eq!(iana.number("ipv4"), Some(4));
        assert_eq!(iana.number("IPv4"), Some(4));
        assert_eq!(iana.proto("ipv4"), Some(Proto::Ip(4)));
        assert_eq!(iana.name(4).as_deref(), Some("ipv4"));
        // Both files: ipip is 94, not Linux's IPIP; numbers are numbers.
        assert_eq!(iana.number("ipip"), Some(94));
        assert_eq!(netbase.number("ipip"), Some(94));
        assert_eq!(iana.proto("4"), Some(Proto::Ip(4)));
        assert_eq!(iana.proto("tcp"), Some(Proto::Tcp));
        assert_eq!(netbase.proto("0"), None);
        assert_eq!(iana.proto("nonesuch"), None);
        // A host without the file: the built-in names.
        assert_eq!(Protocols::builtin().proto("ipencap"), Some(Proto::Ip(4)));
    }
}
