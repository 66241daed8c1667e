//! The inventory (inventory.toml): hosts with their role, address, zone and network, and the
//! settings shared by all of them. Parsed with serde, then validated as a whole: every problem
//! is reported at once, each naming the file, the host, the field and, where it can be found,
//! the line.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tasks::Secret;

pub const ROLES: &[&str] = &["haproxy", "k8s-master", "k8s-worker"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default)]
    pub ssh: SshDefaults,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub system: System,
    #[serde(default)]
    pub kubernetes: Kubernetes,
    #[serde(default)]
    pub haproxy: Haproxy,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostEntry>,
    /// Where it was read from (for messages and relative paths).
    #[serde(skip)]
    pub path: PathBuf,
}

/// How to reach hosts over ssh; each host may override port and user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshDefaults {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: u32,
    /// Accept the key of a host never seen before (never a changed one).
    pub accept_new_host_keys: bool,
    /// Prefer the curve25519 key exchange over OpenSSH's default post-quantum hybrid (faster
    /// connections; the hybrid is still offered after it). `false` keeps OpenSSH's order.
    pub fast_kex: bool,
}

impl Default for SshDefaults {
    fn default() -> Self {
        SshDefaults {
            user: "root".into(),
            port: 22,
            identity_file: None,
            known_hosts: None,
            connect_timeout: 10,
            accept_new_host_keys: false,
            fast_kex: true,
        }
    }
}

/// The admin user created for remote access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub name: String,
    /// SHA-512 crypt hash (`$6$...`), as `mkpasswd -m sha-512` or `openssl passwd -6` print it.
    pub password_hash: Secret,
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct System {
    pub locale: String,
    pub keymap: Option<String>,
    pub ntp: Vec<String>,
    pub dns: Vec<String>,
    /// Local CA certificates (PEM files on the controller, relative to the inventory).
    pub ca_files: Vec<PathBuf>,
    /// Run the full system update step.
    pub full_update: bool,
}

impl Default for System {
    fn default() -> Self {
        System {
            locale: "en_US.UTF-8".into(),
            keymap: None,
            ntp: Vec::new(),
            dns: Vec::new(),
            ca_files: Vec::new(),
            full_update: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    /// Where kubelet/kubeadm come from: `distro` (Photon's packages), `upstream` (pkgs.k8s.io
    /// repository), `present` (already installed, not managed).
    pub source: String,
    /// Minor version for the upstream repository (e.g. "1.30").
    pub version: String,
    /// Manage docker's daemon.json even where docker is not installed yet.
    pub docker: bool,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            source: "distro".into(),
            version: "1.30".into(),
            docker: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Haproxy {
    /// Add frontends for ports 80 and 443 to the workers of the balancer's zone.
    pub ingress: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub role: String,
    /// Where ssh connects (an IPv4 address or a DNS name).
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub zone: Option<String>,
    pub network: Option<Network>,
}

/// The static network of a host (systemd-networkd).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default = "default_interface")]
    pub interface: String,
    /// address/prefix, e.g. 192.168.10.57/24.
    pub address: String,
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    /// Apply the file now (restart systemd-networkd, as the very last step): this can cut the
    /// ssh session that applies it.
    #[serde(default)]
    pub apply: bool,
}

fn default_interface() -> String {
    "eth0".into()
}

/// One host of the inventory with the shared settings: what a playbook is given.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub host: &'a HostEntry,
    pub inventory: &'a Inventory,
}

impl Inventory {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Inventory, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| Problems {
            file: path.to_path_buf(),
            list: vec![Problem {
                host: None,
                field: String::new(),
                line: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Inventory::parse(&text, path)
    }

    /// Parses and validates `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, Problems> {
        let mut inv: Inventory = toml::from_str(text).map_err(|e| Problems {
            file: path.to_path_buf(),
            list: vec![Problem {
                host: None,
                field: String::new(),
                line: e.span().map(|s| line_at(text, s.start)),
                message: e.message().to_string(),
            }],
        })?;
        inv.path = path.to_path_buf();
        let mut list = inv.problems();
        for p in &mut list {
            p.line = locate(text, p.host.as_deref(), &p.field);
        }
        if list.is_empty() {
            Ok(inv)
        } else {
            Err(Problems {
                file: path.to_path_buf(),
                list,
            })
        }
    }

    pub fn target<'a>(&'a self, name: &'a str) -> Option<Target<'a>> {
        self.hosts.get_key_value(name).map(|(n, h)| Target {
            name: n,
            host: h,
            inventory: self,
        })
    }

    /// A path from the inventory, relative to the inventory's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |host: Option<&str>, field: &str, message: String| {
            out.push(Problem {
                host: host.map(str::to_string),
                field: field.to_string(),
                line: None,
                message,
            })
        };
        let mut seen_addr: HashMap<(String, u16), &str> = HashMap::new();
        let mut seen_net: HashMap<String, &str> = HashMap::new();
        for (name, h) in &self.hosts {
            let host = Some(name.as_str());
            if !is_rfc1123_label(name) {
                push(
                    host,
                    "",
                    format!(
                        "host name `{}` must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63, no leading/trailing '-'): it is also the hostname and the Kubernetes node name",
                        name.escape_debug()
                    ),
                );
            }
            if !ROLES.contains(&h.role.as_str()) {
                push(
                    host,
                    "role",
                    format!(
                        "unknown role `{}` (expected one of: {})",
                        h.role.escape_debug(),
                        ROLES.join(", ")
                    ),
                );
            }
            if !is_address(&h.address) {
                push(
                    host,
                    "address",
                    format!(
                        "`{}` is neither an IPv4 address nor a DNS name",
                        h.address.escape_debug()
                    ),
                );
            }
            let port = h.port.unwrap_or(self.ssh.port);
            if port == 0 {
                push(host, "port", "port 0 is not a port".into());
            }
            if let Some(other) = seen_addr.insert((h.address.clone(), port), name) {
                push(
                    host,
                    "address",
                    format!(
                        "address {}:{port} is also the address of {other}",
                        h.address
                    ),
                );
            }
            if let Some(user) = &h.user
                && !is_unix_name(user)
            {
                push(
                    host,
                    "user",
                    format!("`{}` is not a valid user name", user.escape_debug()),
                );
            }
            if let Some(zone) = &h.zone
                && !is_rfc1123_label(zone)
            {
                push(
                    host,
                    "zone",
                    format!(
                        "zone `{}` must be lowercase letters, digits and '-'",
                        zone.escape_debug()
                    ),
                );
            }
            if let Some(n) = &h.network {
                if !is_ifname(&n.interface) {
                    push(
                        host,
                        "network.interface",
                        format!("`{}` is not an interface name", n.interface.escape_debug()),
                    );
                }
                match parse_cidr(&n.address) {
                    Ok((ip, _)) => {
                        if let Some(other) = seen_net.insert(ip.to_string(), name) {
                            push(
                                host,
                                "network.address",
                                format!("address {ip} is also the address of {other}"),
                            );
                        }
                    }
                    Err(why) => push(
                        host,
                        "network.address",
                        format!("`{}`: {why}", n.address.escape_debug()),
                    ),
                }
                if let Some(gw) = &n.gateway
                    && gw.parse::<Ipv4Addr>().is_err()
                {
                    push(
                        host,
                        "network.gateway",
                        format!("`{}` is not an IPv4 address", gw.escape_debug()),
                    );
                }
                for d in &n.dns {
                    if d.parse::<Ipv4Addr>().is_err() {
                        push(
                            host,
                            "network.dns",
                            format!("`{}` is not an IPv4 address", d.escape_debug()),
                        );
                    }
                }
            }
        }
        if self.ssh.port == 0 {
            push(None, "ssh.port", "port 0 is not a port".into());
        }
        if !is_unix_name(&self.ssh.user) {
            push(
                None,
                "ssh.user",
                format!(
                    "`{}` is not a valid user name",
                    self.ssh.user.escape_debug()
                ),
            );
        }
        if let Some(a) = &self.admin {
            if !is_unix_name(&a.name) {
                push(
                    None,
                    "admin.name",
                    format!(
                        "`{}` is not a valid user name (lowercase, starts with a letter or _)",
                        a.name.escape_debug()
                    ),
                );
            }
            let h = a.password_hash.expose();
            if !is_sha512_crypt(h) {
                // Never echo the value: it may be a plaintext password.
                push(None, "admin.password_hash", "expected a SHA-512 crypt hash ($6$salt$hash, as `openssl passwd -6` prints it); this looks like something else, maybe a plaintext password (value not shown)".into());
            }
            for (i, k) in a.ssh_keys.iter().enumerate() {
                if !is_ssh_public_key(k) {
                    push(
                        None,
                        "admin.ssh_keys",
                        format!(
                            "key #{} is not an ssh public key line (type base64 [comment])",
                            i + 1
                        ),
                    );
                }
            }
        }
        if !is_locale(&self.system.locale) {
            push(
                None,
                "system.locale",
                format!(
                    "`{}` is not a locale name like fr_FR.UTF-8",
                    self.system.locale.escape_debug()
                ),
            );
        }
        if let Some(k) = &self.system.keymap
            && (k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)))
        {
            push(
                None,
                "system.keymap",
                format!("`{}` is not a keymap name", k.escape_debug()),
            );
        }
        for s in self.system.ntp.iter() {
            if !is_address(s) {
                push(
                    None,
                    "system.ntp",
                    format!(
                        "`{}` is neither an IPv4 address nor a DNS name",
                        s.escape_debug()
                    ),
                );
            }
        }
        for d in &self.system.dns {
            if d.parse::<Ipv4Addr>().is_err() {
                push(
                    None,
                    "system.dns",
                    format!("`{}` is not an IPv4 address", d.escape_debug()),
                );
            }
        }
        for f in &self.system.ca_files {
            let p = self.resolve(f);
            match std::fs::read_to_string(&p) {
                Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => {}
                Ok(_) => push(
                    None,
                    "system.ca_files",
                    format!("{} holds no PEM certificate", p.display()),
                ),
                Err(e) => push(None, "system.ca_files", format!("{}: {e}", p.display())),
            }
            let base = f
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            if !base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                push(
                    None,
                    "system.ca_files",
                    format!(
                        "file name `{}` may hold only letters, digits, '.', '_' and '-'",
                        base.escape_debug()
                    ),
                );
            }
        }
        if !["distro", "upstream", "present"].contains(&self.kubernetes.source.as_str()) {
            push(
                None,
                "kubernetes.source",
                format!(
                    "unknown source `{}` (expected distro, upstream or present)",
                    self.kubernetes.source.escape_debug()
                ),
            );
        }
        if !is_minor_version(&self.kubernetes.version) {
            push(
                None,
                "kubernetes.version",
                format!(
                    "`{}` is not a minor version like 1.30",
                    self.kubernetes.version.escape_debug()
                ),
            );
        }
        out
    }
}

/// Everything wrong with an inventory file.
#[derive(Debug)]
pub struct Problems {
    pub file: PathBuf,
    pub list: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub host: Option<String>,
    /// Dotted path of the field, relative to the host when there is one.
    pub field: String,
    /// 1-based line, when found.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.list.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.list {
            write!(f, "  {}", self.file.display())?;
            if let Some(l) = p.line {
                write!(f, ":{l}")?;
            }
            write!(f, ": ")?;
            if let Some(h) = &p.host {
                write!(f, "host {h}: ")?;
            }
            if !p.field.is_empty() {
                write!(f, "{}: ", p.field)?;
            }
            writeln!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where a field (or the closest enclosing table) is defined.
fn locate(text: &str, host: Option<&str>, field: &str) -> Option<usize> {
    let doc = spans::Document::parse(text)?;
    let mut keys: Vec<&str> = Vec::new();
    if let Some(h) = host {
        keys.extend(["hosts", h]);
    }
    keys.extend(field.split('.').filter(|s| !s.is_empty()));
    doc.span(&keys).map(|off| line_at(text, off))
}

pub mod spans {
    //! Key positions in a TOML text: for each dotted key path, the byte offset where it is
    //! defined (a `[table]` header or a `key =` line).
    pub struct Document {
        offsets: Vec<(Vec<String>, usize)>,
    }

    impl Document {
        pub fn parse(text: &str) -> Option<Document> {
            let mut offsets = Vec::new();
            let mut table: Vec<String> = Vec::new();
            let mut pos = 0;
            for line in text.split_inclusive('\n') {
                let t = line.trim();
                if let Some(h) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                    let h = h.trim_start_matches('[');
                    table = split_key(h);
                    offsets.push((table.clone(), pos));
                } else if let Some((k, _)) = t.split_once('=')
                    && !t.starts_with('#')
                {
                    let mut full = table.clone();
                    full.extend(split_key(k));
                    offsets.push((full, pos));
                }
                pos += line.len();
            }
            Some(Document { offsets })
        }

        /// The offset of the deepest defined prefix of `keys`.
        pub fn span(&self, keys: &[&str]) -> Option<usize> {
            for n in (1..=keys.len()).rev() {
                let want: Vec<String> = keys[..n].iter().map(|s| s.to_string()).collect();
                if let Some((_, off)) = self.offsets.iter().find(|(k, _)| *k == want) {
                    return Some(*off);
                }
            }
            None
        }
    }

    fn split_key(k: &str) -> Vec<String> {
        k.split('.')
            .map(|p| p.trim().trim_matches('"').trim_matches('\'').to_string())
            .collect()
    }
}

pub fn is_rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_address(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() {
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

/// `a.b.c.d/prefix`, prefix 1..=32, not the network's own address when prefix < 31.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or("expected address/prefix, like 192.168.10.57/24")?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or(format!("prefix `{prefix}` is not in 1..=32"))?;
    Ok((ip, prefix))
}
