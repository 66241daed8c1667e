//! Where packages come from: an HTTP proxy (`[proxy]`) and mirrors (`[packages]`), each
//! settable for every host (the top-level tables), per zone (`[zones.NAME.proxy]`,
//! `[zones.NAME.packages]`) and per host (`[hosts.NAME.proxy]`, `[hosts.NAME.packages]`).
//!
//! Precedence, key by key: a host's own table beats its zone's, which beats the top-level one
//! (a host may set only `no_proxy` and take `http` from its zone). A proxy URL may hold
//! credentials (`http://user:password@proxy.lan:3128`): it is a [`Secret`], shown only
//! without them ([`redacted_url`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tasks::Secret;

use super::Target;

/// `[proxy]`: the proxy packages and container images are fetched through.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProxyTable {
    /// For `http://` URLs (`http://proxy.lan:3128`).
    pub http: Option<Secret>,
    /// For `https://` URLs; usually the same proxy as `http`.
    pub https: Option<Secret>,
    /// More hosts, domains (`.corp.lan`) and networks (CIDR) reached without the proxy, after
    /// the ones nodeprep computes for the container runtimes (README: "Hosts without the
    /// internet").
    pub no_proxy: Option<Vec<String>>,
    /// Keys nodeprep does not know (refused by validation, with the host and the field).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// `[packages]`: mirrors standing for the distributions' own package hosts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PackagesTable {
    /// Photon OS: stands for `https://packages.vmware.com` (and its successor) in Photon's
    /// repo files (`https://mirror.lan/photon-remote`).
    pub photon: Option<String>,
    /// Debian/Ubuntu: stands for the archive's host (`http://deb.debian.org`) in apt's sources.
    pub debian: Option<String>,
    /// Debian's security archive (`http://security.debian.org`), when it has its own mirror.
    pub debian_security: Option<String>,
    /// RHEL-like: stands for the host in the distribution's repo files' `baseurl`.
    pub rhel: Option<String>,
    /// rpm families: `gpgcheck` of the rewritten repositories (default: as they were).
    pub gpgcheck: Option<bool>,
    /// The key the mirror signs with, when it re-signs (a file on the controller, relative to
    /// the inventory).
    pub gpgkey: Option<PathBuf>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}

/// A zone's or a host's tables (`[zones.NAME]`, or a host's own `proxy` and `packages`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    pub proxy: Option<ProxyTable>,
    pub packages: Option<PackagesTable>,
}

/// The proxy a host uses, each key from the most specific table that sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostProxy<'a> {
    pub http: Option<&'a Secret>,
    pub https: Option<&'a Secret>,
    /// The operator's extras only (see [`no_proxy`] for the whole list).
    pub no_proxy: &'a [String],
}

/// The mirrors a host uses, each key from the most specific table that sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMirrors<'a> {
    pub photon: Option<&'a str>,
    pub debian: Option<&'a str>,
    pub debian_security: Option<&'a str>,
    pub rhel: Option<&'a str>,
    pub gpgcheck: Option<bool>,
    pub gpgkey: Option<&'a Path>,
}

impl HostMirrors<'_> {
    pub fn any(&self) -> bool {
        self.photon.is_some()
            || self.debian.is_some()
            || self.debian_security.is_some()
            || self.rhel.is_some()
    }
}

/// The first of `values` that is set.
fn first<T>(values: impl IntoIterator<Item = Option<T>>) -> Option<T> {
    values.into_iter().flatten().next()
}

impl<'a> Target<'a> {
    /// The tables that apply to this host, most specific first: its own, its zone's, the
    /// top-level ones.
    fn sources(&self) -> [Option<&'a Sources>; 3] {
        let inv = self.inventory;
        [
            inv.host_sources.get(self.name),
            self.host.zone.as_ref().and_then(|z| inv.zones.get(z)),
            Some(&inv.sources),
        ]
    }

    /// The proxy of this host (host beats zone beats top level, key by key); `None` when no
    /// table gives `http` or `https`.
    pub fn proxy(&self) -> Option<HostProxy<'a>> {
        let tables: Vec<&'a ProxyTable> = self
            .sources()
            .into_iter()
            .flatten()
            .filter_map(|s| s.proxy.as_ref())
            .collect();
        let p = HostProxy {
            http: first(tables.iter().map(|t| t.http.as_ref())),
            https: first(tables.iter().map(|t| t.https.as_ref())),
            no_proxy: first(tables.iter().map(|t| t.no_proxy.as_deref())).unwrap_or(&[]),
        };
        (p.http.is_some() || p.https.is_some()).then_some(p)
    }

    /// The mirrors of this host (host beats zone beats top level, key by key).
    pub fn mirrors(&self) -> HostMirrors<'a> {
        let tables: Vec<&'a PackagesTable> = self
            .sources()
            .into_iter()
            .flatten()
            .filter_map(|s| s.packages.as_ref())
            .collect();
        HostMirrors {
            photon: first(tables.iter().map(|t| t.photon.as_deref())),
            debian: first(tables.iter().map(|t| t.debian.as_deref())),
            debian_security: first(tables.iter().map(|t| t.debian_security.as_deref())),
            rhel: first(tables.iter().map(|t| t.rhel.as_deref())),
            gpgcheck: first(tables.iter().map(|t| t.gpgcheck)),
            gpgkey: first(tables.iter().map(|t| t.gpgkey.as_deref())),
        }
    }
}

/// The `NO_PROXY` of the container runtimes on `t`: every host's name, address and cluster
/// address (the balancers are hosts of the inventory too), the pods' and the services'
/// networks, `localhost`, `127.0.0.1`, `.svc`, `.cluster.local`, then the operator's extras;
/// each entry once, in that order.
pub fn no_proxy(t: &Target, pod_cidr: Option<String>, service_cidr: String) -> String {
    let inv = t.inventory;
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    for name in inv.hosts.keys() {
        let h = inv.target(name).expect("a host of the inventory");
        add(name);
        add(&h.host.address);
        add(h.cluster_address());
    }
    for net in pod_cidr.iter().chain(std::iter::once(&service_cidr)) {
        add(net);
    }
    for s in ["localhost", "127.0.0.1", ".svc", ".cluster.local"] {
        add(s);
    }
    if let Some(p) = t.proxy() {
        for e in p.no_proxy {
            add(e);
        }
    }
    out.join(",")
}

/// The parts of an `http(s)://[user[:password]@]host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    pub scheme: &'a str,
    pub userinfo: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: &'a str,
}

/// Parses `s` as an `http://` or `https://` URL; the error says what is wrong, never the
/// credentials.
pub fn parse_url(s: &str) -> Result<Url<'_>, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("has no scheme: write it as http://HOST:PORT".into());
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "scheme `{}` is not http or https",
            scheme.escape_debug()
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err("an IPv6 host must be closed by `]`".into());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{}` is not an IPv6 address", h.escape_debug()));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err("unexpected text after the IPv6 host".into()),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !hostport.starts_with('[') && !is_host_name(host) && host.parse::<IpAddr>().is_err() {
        return Err(format!(
            "host `{}` is neither an IP address nor a DNS name",
            host.escape_debug()
        ));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("port `{}` is not a port", p.escape_debug())),
        },
    };
    if path.contains(char::is_whitespace) {
        return Err("the path holds a space".into());
    }
    Ok(Url {
        scheme,
        userinfo,
        host,
        port,
        path,
    })
}

/// A URL as it may be shown: credentials replaced by `<redacted>`.
pub fn redacted_url(s: &str) -> String {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://<redacted>@{host}{}", &rest[end..]),
                None => s.to_string(),
            }
        }
        None => match s.rsplit_once('@') {
            Some((_, host)) => format!("<redacted>@{host}"),
            None => s.to_string(),
        },
    }
}

/// A DNS name (labels of letters, digits and '-').
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A `no_proxy` entry: a host name, a domain (`.corp.lan`), an IP address or a network (CIDR).
pub fn is_no_proxy_entry(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    if let Some((addr, prefix)) = s.split_once('/') {
        let max = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        return prefix.parse::<u8>().is_ok_and(|p| p <= max);
    }
    is_host_name(s.strip_prefix('.').unwrap_or(s))
}

/// The problems of one set of tables; `host`: the host they belong to, `prefix`: the dotted
/// path of the tables (`""` for a host's or the top level's, `zones.dmz.`).
pub(super) fn problems(
    inv: &super::Inventory,
    s: &Sources,
    prefix: &str,
    mut push: impl FnMut(String, String),
) {
    if let Some(p) = &s.proxy {
        for key in p.unknown.keys() {
            push(
                format!("{prefix}proxy.{key}"),
                format!(
                    "unknown key `{}` (expected http, https or no_proxy)",
                    key.escape_debug()
                ),
            );
        }
        for (key, v) in [("http", &p.http), ("https", &p.https)] {
            if let Some(v) = v
                && let Err(e) = parse_url(v.expose())
            {
                push(
                    format!("{prefix}proxy.{key}"),
                    format!("`{}` {e}", redacted_url(v.expose()).escape_debug()),
                );
            }
        }
        for e in p.no_proxy.iter().flatten() {
            if !is_no_proxy_entry(e) {
                push(
                    format!("{prefix}proxy.no_proxy"),
                    format!(
                        "`{}` is not a host name, a domain (.corp.lan), an IP address or a network (CIDR)",
                        e.escape_debug()
                    ),
                );
            }
        }
    }
    if let Some(p) = &s.packages {
        for key in p.unknown.keys() {
            push(
                format!("{prefix}packages.{key}"),
                format!(
                    "unknown key `{}` (expected photon, debian, debian_security, rhel, gpgcheck or gpgkey)",
                    key.escape_debug()
                ),
            );
        }
        for (key, v) in [
            ("photon", &p.photon),
            ("debian", &p.debian),
            ("debian_security", &p.debian_security),
            ("rhel", &p.rhel),
        ] {
            if let Some(v) = v {
                match parse_url(v) {
                    Err(e) => push(
                        format!("{prefix}packages.{key}"),
                        format!("`{}` {e}", redacted_url(v).escape_debug()),
                    ),
                    Ok(u) if u.userinfo.is_some() => push(
                        format!("{prefix}packages.{key}"),
                        "a mirror URL holds no credentials (they would land in world-readable repository files)".into(),
                    ),
                    Ok(_) => {}
                }
            }
        }
        if let Some(k) = &p.gpgkey {
            let path = inv.resolve(k);
            match std::fs::read_to_string(&path) {
                Ok(t) if t.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => {}
                Ok(_) => push(
                    format!("{prefix}packages.gpgkey"),
                    format!("{} holds no ASCII-armored PGP public key", path.display()),
                ),
                Err(e) => push(
                    format!("{prefix}packages.gpgkey"),
                    format!("{}: {e}", path.display()),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://u:p@proxy.lan:3128").unwrap();
        assert_eq!(
            (u.scheme, u.userinfo, u.host, u.port, u.path),
            ("http", Some("u:p"), "proxy.lan", Some(3128), "")
        );
        assert_eq!(
            parse_url("https://[fd00::1]:8080/x").unwrap().host,
            "fd00::1"
        );
        assert!(
            parse_url("proxy.lan:3128")
                .unwrap_err()
                .contains("no scheme")
        );
        assert!(parse_url("ftp://p").unwrap_err().contains("not http"));
        assert!(parse_url("http://p:0").unwrap_err().contains("not a port"));
        assert!(parse_url("http://:8080").unwrap_err().contains("no host"));
        assert!(parse_url("http://a b").unwrap_err().contains("neither"));
        assert_eq!(
            redacted_url("http://u:secret@p:1/x"),
            "http://<redacted>@p:1/x"
        );
        assert_eq!(redacted_url("http://p:1"), "http://p:1");
    }

    #[test]
    fn no_proxy_entries() {
        for ok in ["corp.lan", ".corp.lan", "10.0.0.0/8", "fd00::1", "host-1"] {
            assert!(is_no_proxy_entry(ok), "{ok}");
        }
        for bad in ["http://x", "a b", "10.0.0.0/33", "*", ""] {
            assert!(!is_no_proxy_entry(bad), "{bad}");
        }
    }
}
