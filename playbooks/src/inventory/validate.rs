//! Validation of a parsed inventory: one function per concern (hosts and their network, ssh,
//! admin user, system settings, Kubernetes), each adding what it finds to one list, so that
//! every problem is reported at once. Then the syntax predicates they use.

use std::collections::HashMap;
use std::net::IpAddr;

use tasks::network::Cidr;

use super::problems::{Problem, take};
use super::{Admin, HostEntry, Inventory, Kubernetes, Network, SshDefaults, System};

impl Inventory {
    /// Every problem of the inventory, hosts first (in name order), then the shared settings;
    /// `unresolved`, what did not resolve at load, each in its place among them. Lines are
    /// left to the caller, who has the text.
    pub(super) fn problems(&self, unresolved: Vec<Problem>) -> Vec<Problem> {
        let mut out = Found {
            list: Vec::new(),
            unresolved,
        };
        hosts(self, &mut out);
        ssh(&self.ssh, &mut out);
        if let Some(a) = &self.admin {
            admin(a, &mut out);
        }
        system(self, &self.system, &mut out);
        kubernetes(&self.kubernetes, &mut out);
        sources(self, &mut out);
        out.list
            .extend(super::cluster::problems(self, &mut out.unresolved));
        out.list.append(&mut out.unresolved);
        out.list
    }
}

/// The problems found so far, and those of the loading not reported yet.
struct Found {
    list: Vec<Problem>,
    unresolved: Vec<Problem>,
}

impl Found {
    /// The value at `field` of `host` did not resolve at load: its problem goes here.
    fn unresolved(&mut self, host: Option<&str>, field: &str) {
        let taken = take(&mut self.unresolved, host, field);
        self.list.extend(taken);
    }

    fn push(&mut self, host: Option<&str>, field: &str, message: String) {
        self.list.push(Problem {
            host: host.map(str::to_string),
            field: field.to_string(),
            line: None,
            message,
        });
    }

    /// A problem of the shared settings (no host).
    fn shared(&mut self, field: &str, message: String) {
        self.push(None, field, message);
    }
}

/// Each host on its own, and addresses shared by two hosts.
fn hosts(inv: &Inventory, out: &mut Found) {
    let mut seen_addr: HashMap<(String, u16), &str> = HashMap::new();
    let mut seen_net: HashMap<String, &str> = HashMap::new();
    for (name, h) in &inv.hosts {
        host(name, h, inv.ssh.port, &mut seen_addr, out);
        match &h.network {
            Some(n) => network(name, h, n, &mut seen_net, out),
            None if h.management_address => out.push(
                Some(name),
                "management_address",
                "management_address = true says `address` is not the host's cluster address, but no network.address gives that one".into(),
            ),
            None => {}
        }
    }
}

/// A host's name, role, address, ssh port and user, zone. `ssh_port` is the
/// shared port; `seen` maps the ssh address and port of the hosts before it to their names.
fn host<'a>(
    name: &'a str,
    h: &HostEntry,
    ssh_port: u16,
    seen: &mut HashMap<(String, u16), &'a str>,
    out: &mut Found,
) {
    let host = Some(name);
    if !is_rfc1123_label(name) {
        out.push(
            host,
            "",
            format!(
                "host name `{}` must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63, no leading/trailing '-'): it is also the hostname and the Kubernetes node name",
                name.escape_debug()
            ),
        );
    }
    out.unresolved(host, "role");
    if h.address.starts_with('[') && h.address.ends_with(']') {
        out.push(
            host,
            "address",
            format!(
                "`{}`: write an IPv6 address without brackets (the port is `port`)",
                h.address.escape_debug()
            ),
        );
    } else if !is_address(&h.address) {
        out.push(
            host,
            "address",
            format!(
                "`{}` is neither an IP address (IPv4 or IPv6) nor a DNS name",
                h.address.escape_debug()
            ),
        );
    }
    let port = h.port.unwrap_or(ssh_port);
    if port == 0 {
        out.push(host, "port", "port 0 is not a port".into());
    }
    // One address written two ways (fd00::1, fd00:0::1) is one address.
    let canonical = h
        .address
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| h.address.to_ascii_lowercase());
    if let Some(other) = seen.insert((canonical, port), name) {
        out.push(
            host,
            "address",
            format!(
                "address {} (port {port}) is also the address of {other}",
                h.address
            ),
        );
    }
    if let Some(user) = &h.user
        && !is_unix_name(user)
    {
        out.push(
            host,
            "user",
            format!("`{}` is not a valid user name", user.escape_debug()),
        );
    }
    if let Some(zone) = &h.zone
        && !is_rfc1123_label(zone)
    {
        out.push(
            host,
            "zone",
            format!(
                "zone `{}` must be lowercase letters, digits and '-'",
                zone.escape_debug()
            ),
        );
    }
}

/// A host's network: its interface, its cluster address (which is the host's `address`
/// unless that one is a separate management address), the prefix, the gateway on that
/// network, name servers; `apply` only with `write`. `seen` maps the cluster addresses of the
/// hosts before it to their names.
fn network<'a>(
    name: &'a str,
    h: &HostEntry,
    n: &Network,
    seen: &mut HashMap<String, &'a str>,
    out: &mut Found,
) {
    let host = Some(name);
    if !is_ifname(&n.interface) {
        out.push(
            host,
            "network.interface",
            format!("`{}` is not an interface name", n.interface.escape_debug()),
        );
    }
    if n.apply && !n.write {
        out.push(
            host,
            "network.apply",
            "apply = true applies the static network file, which nodeprep writes only with network.write = true".into(),
        );
    }
    // Read at load; what did not read is reported here.
    out.unresolved(host, "network.prefix");
    out.unresolved(host, "network.address");
    let cidr = n.parsed;
    if let Some(cidr) = cidr {
        same_host(name, h, cidr.addr, seen, out);
    }
    if let Some(gw) = &n.gateway {
        match gw.parse::<IpAddr>() {
            Ok(gw) => {
                if let Some(why) = cidr.and_then(|c| c.gateway_problem(gw)) {
                    out.push(host, "network.gateway", why);
                }
            }
            Err(_) => out.push(
                host,
                "network.gateway",
                format!("`{}` is not an IP address", gw.escape_debug()),
            ),
        }
    }
    for d in &n.dns {
        if d.parse::<IpAddr>().is_err() {
            out.push(
                host,
                "network.dns",
                format!("`{}` is not an IP address", d.escape_debug()),
            );
        }
    }
}

/// The cluster address `ip` is no other host's, and is the host's `address` unless that is a
/// separate management address.
fn same_host<'a>(
    name: &'a str,
    h: &HostEntry,
    ip: IpAddr,
    seen: &mut HashMap<String, &'a str>,
    out: &mut Found,
) {
    let host = Some(name);
    if let Some(other) = seen.insert(ip.to_string(), name) {
        out.push(
            host,
            "network.address",
            format!("address {ip} is also the address of {other}"),
        );
    }
    match h.address.parse::<IpAddr>() {
        Ok(reached) if reached != ip && !h.management_address => out.push(
            host,
            "network.address",
            format!(
                "{ip} is not the host's address {reached}: the static file would give the host an address other than the one it is reached at. If `address` is a separate management address, say so with management_address = true"
            ),
        ),
        Ok(reached) if reached == ip && h.management_address => out.push(
            host,
            "management_address",
            format!(
                "`address` {reached} is the cluster address network.address, not a separate management address: remove management_address"
            ),
        ),
        // A DNS name: nothing to compare offline.
        _ => {}
    }
}

/// The address and prefix of a host's network, from `address` (`a/p`) or `address` and
/// `prefix`; else the field at fault and why.
pub(super) fn read_cidr(n: &Network) -> Result<Cidr, (&'static str, String)> {
    let written = n.address.escape_debug();
    if n.address.contains('/') {
        if n.prefix.is_some() {
            return Err((
                "network.prefix",
                format!(
                    "the prefix is given twice, in network.address (`{written}`) and in network.prefix: keep one"
                ),
            ));
        }
        return Cidr::parse(&n.address)
            .map_err(|why| ("network.address", format!("`{written}`: {why}")));
    }
    let Ok(ip) = n.address.parse::<IpAddr>() else {
        return Err((
            "network.address",
            format!("`{written}` is not an IPv4 or IPv6 address"),
        ));
    };
    let Some(prefix) = n.prefix else {
        return Err((
            "network.address",
            format!(
                "`{written}`: expected address/prefix, like 192.168.10.57/24, or the prefix in network.prefix"
            ),
        ));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if !(1..=max).contains(&prefix) {
        return Err((
            "network.prefix",
            format!("prefix `{prefix}` is not in 1..={max}"),
        ));
    }
    Cidr::new(ip, prefix).map_err(|why| ("network.address", format!("`{written}`: {why}")))
}

fn ssh(s: &SshDefaults, out: &mut Found) {
    if s.port == 0 {
        out.shared("ssh.port", "port 0 is not a port".into());
    }
    if !is_unix_name(&s.user) {
        out.shared(
            "ssh.user",
            format!("`{}` is not a valid user name", s.user.escape_debug()),
        );
    }
    // A day at most: a kept connection is a logged-in session on the host.
    if s.persist > 86_400 {
        out.shared(
            "ssh.persist",
            format!(
                "{} seconds is more than a day; keep connections for minutes (0: close them after each run)",
                s.persist
            ),
        );
    }
    for (field, secs) in [
        ("ssh.command_timeout", s.command_timeout),
        ("ssh.package_timeout", s.package_timeout),
    ] {
        if secs == 0 || secs > 86_400 {
            out.shared(
                field,
                format!("{secs} seconds: a time limit is 1 second to a day (86400)"),
            );
        }
    }
}

fn admin(a: &Admin, out: &mut Found) {
    if !is_unix_name(&a.name) {
        out.shared(
            "admin.name",
            format!(
                "`{}` is not a valid user name (lowercase, starts with a letter or _)",
                a.name.escape_debug()
            ),
        );
    }
    if !is_sha512_crypt(a.password_hash.expose()) {
        // Never echo the value: it may be a plaintext password.
        out.shared("admin.password_hash", "expected a SHA-512 crypt hash ($6$salt$hash, as `openssl passwd -6` prints it); this looks like something else, maybe a plaintext password (value not shown)".into());
    }
    if a.passwordless_sudo {
        if a.name == "root" {
            out.shared(
                "admin.passwordless_sudo",
                "root needs no sudo rule: set it for an admin other than root, or remove it".into(),
            );
        } else if a.ssh_keys.is_empty() {
            out.shared(
                "admin.passwordless_sudo",
                "needs admin.ssh_keys: passwordless sudo is for key-only logins, and without a key the admin logs in with its password anyway".into(),
            );
        }
    }
    for (i, k) in a.ssh_keys.iter().enumerate() {
        if !is_ssh_public_key(k) {
            out.shared(
                "admin.ssh_keys",
                format!(
                    "key #{} is not an ssh public key line (type base64 [comment])",
                    i + 1
                ),
            );
        }
    }
}

/// Locale, keymap, time and name servers, CA files (`inv` resolves their paths).
fn system(inv: &Inventory, s: &System, out: &mut Found) {
    if !is_locale(&s.locale) {
        out.shared(
            "system.locale",
            format!(
                "`{}` is not a locale name like fr_FR.UTF-8",
                s.locale.escape_debug()
            ),
        );
    } else if let Some(right) = utf8_spelled_right(&s.locale) {
        out.shared(
            "system.locale",
            format!(
                "`{}`: the UTF-8 codeset is written UTF-8, as in {right} (the name locale-gen and localectl are given)",
                s.locale.escape_debug()
            ),
        );
    }
    if let Some(k) = &s.keymap
        && !is_keymap(k)
    {
        out.shared(
            "system.keymap",
            format!("`{}` is not a keymap name", k.escape_debug()),
        );
    }
    for n in &s.ntp {
        if !is_address(n) {
            out.shared(
                "system.ntp",
                format!(
                    "`{}` is neither an IP address (IPv4 or IPv6) nor a DNS name",
                    n.escape_debug()
                ),
            );
        }
    }
    for d in &s.dns {
        if d.parse::<IpAddr>().is_err() {
            out.shared(
                "system.dns",
                format!("`{}` is not an IP address", d.escape_debug()),
            );
        }
    }
    for f in &s.ca_files {
        ca_file(inv, f, out);
    }
}

/// A CA file must hold a PEM certificate and have a name safe to install under.
fn ca_file(inv: &Inventory, f: &std::path::Path, out: &mut Found) {
    let p = inv.resolve(f);
    match std::fs::read_to_string(&p) {
        Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => {}
        Ok(_) => out.shared(
            "system.ca_files",
            format!("{} holds no PEM certificate", p.display()),
        ),
        Err(e) => out.shared("system.ca_files", format!("{}: {e}", p.display())),
    }
    let base = f
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if !base
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        out.shared(
            "system.ca_files",
            format!(
                "file name `{}` may hold only letters, digits, '.', '_' and '-'",
                base.escape_debug()
            ),
        );
    }
}

fn kubernetes(k: &Kubernetes, out: &mut Found) {
    out.unresolved(None, "kubernetes.source");
    if !is_minor_version(&k.version) {
        out.shared(
            "kubernetes.version",
            format!(
                "`{}` is not a minor version like 1.30",
                k.version.escape_debug()
            ),
        );
    }
}

/// `[proxy]` and `[packages]` at every level (see [`super::sources`]); a zone table no host
/// is in.
fn sources(inv: &Inventory, out: &mut Found) {
    for (name, s) in &inv.host_sources {
        super::sources::problems(inv, s, "", |field, m| out.push(Some(name), &field, m));
    }
    for (zone, s) in &inv.zones {
        let prefix = format!("zones.{zone}.");
        super::sources::problems(inv, s, &prefix, |field, m| out.shared(&field, m));
        if !inv.hosts.values().any(|h| h.zone.as_deref() == Some(zone)) {
            out.shared(
                &format!("zones.{zone}"),
                format!("no host is in zone `{}`", zone.escape_debug()),
            );
        }
    }
    super::sources::problems(inv, &inv.sources, "", |field, m| out.shared(&field, m));
}

pub fn is_rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An IPv4 or IPv6 address (bare, as ssh takes it with its port apart), or a DNS name.
fn is_address(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false; // looks like an IPv4 address but is not one
    }
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
}

fn is_unix_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && s.len() <= 32
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.*".contains(&c))
}

fn is_locale(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-@".contains(&c))
}

/// The locale with its codeset written `UTF-8` when it names UTF-8 some other way (`UTF8`,
/// `utf8`, `utf-8`); `None` when it is written right or names another codeset.
fn utf8_spelled_right(locale: &str) -> Option<String> {
    let (lang, rest) = locale.split_once('.')?;
    let (codeset, modifier) = match rest.split_once('@') {
        Some((c, m)) => (c, Some(m)),
        None => (rest, None),
    };
    let plain: String = codeset
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    if plain != "utf8" || codeset == "UTF-8" {
        return None;
    }
    Some(match modifier {
        Some(m) => format!("{lang}.UTF-8@{m}"),
        None => format!("{lang}.UTF-8"),
    })
}

fn is_keymap(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

fn is_minor_version(s: &str) -> bool {
    let mut it = s.split('.');
    matches!((it.next(), it.next(), it.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()))
}

/// `$6$[rounds=N$]salt$hash` with crypt's alphabet.
pub fn is_sha512_crypt(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("$6$") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('$').collect();
    let (salt, hash) = match parts.as_slice() {
        [r, salt, hash] if r.starts_with("rounds=") => (*salt, *hash),
        [salt, hash] => (*salt, *hash),
        _ => return false,
    };
    let crypt = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'/';
    !salt.is_empty()
        && salt.len() <= 16
        && salt.bytes().all(crypt)
        && hash.len() == 86
        && hash.bytes().all(crypt)
}

fn is_ssh_public_key(k: &str) -> bool {
    let mut it = k.split_whitespace();
    let (Some(kind), Some(data)) = (it.next(), it.next()) else {
        return false;
    };
    !k.contains('\n')
        && (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && data.len() > 16
        && data
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
}

/// `address/prefix` as a host can hold it (see [`Cidr::parse`]).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    Cidr::parse(s).map(|c| (c.addr, c.prefix))
}
