//! The inventory (inventory.toml): hosts with their role, address, zone and network, and the
//! settings shared by all of them. Parsed with serde, then validated as a whole: every problem
//! is reported at once, each naming the file, the host, the field and, where it can be found,
//! the line.
//!
//! Besides the settings nodeprep knows, operators keep their own under `[vars]` (shared) and
//! `[hosts.NAME.vars]` (one host's, merged over the shared ones): any TOML, read by their
//! playbooks into their own types with [`Target::vars`]. Unknown keys anywhere else are
//! refused.
//!
//! The model and its loading are here; the checks are in `validate`, the report in `problems`
//! and the key positions it gives line numbers from in [`spans`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tasks::Secret;

mod problems;
pub mod spans;
mod validate;
mod vars;

pub use problems::{Problem, Problems};
pub use validate::{is_rfc1123_label, is_sha512_crypt, parse_cidr};
pub use vars::VarsError;

use problems::{line_at, locate};

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawInventory")]
pub struct Inventory {
    pub ssh: SshDefaults,
    pub admin: Option<Admin>,
    pub system: System,
    pub kubernetes: Kubernetes,
    pub haproxy: Haproxy,
    pub hosts: BTreeMap<String, HostEntry>,
    /// The operators' own settings shared by every host (`[vars]`), as written.
    pub vars: toml::Table,
    /// Each host's own settings (`[hosts.NAME.vars]`), as written, for the hosts that have
    /// some. [`Target::var_table`] merges them over [`Inventory::vars`].
    pub host_vars: BTreeMap<String, toml::Table>,
    /// Where it was read from (for messages and relative paths).
    pub path: PathBuf,
}

/// The file's shape: [`Inventory`] with each host's `vars` still inside its table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    ssh: SshDefaults,
    #[serde(default)]
    admin: Option<Admin>,
    #[serde(default)]
    system: System,
    #[serde(default)]
    kubernetes: Kubernetes,
    #[serde(default)]
    haproxy: Haproxy,
    #[serde(default)]
    vars: toml::Table,
    #[serde(default)]
    hosts: BTreeMap<String, RawHost>,
}

/// A `[hosts.NAME]` table: [`HostEntry`] and the host's `vars`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    role: String,
    address: String,
    port: Option<u16>,
    user: Option<String>,
    zone: Option<String>,
    network: Option<Network>,
    #[serde(default)]
    vars: Option<toml::Table>,
}

impl From<RawInventory> for Inventory {
    fn from(raw: RawInventory) -> Inventory {
        let mut hosts = BTreeMap::new();
        let mut host_vars = BTreeMap::new();
        for (name, h) in raw.hosts {
            if let Some(vars) = h.vars {
                host_vars.insert(name.clone(), vars);
            }
            let entry = HostEntry {
                role: h.role,
                address: h.address,
                port: h.port,
                user: h.user,
                zone: h.zone,
                network: h.network,
            };
            hosts.insert(name, entry);
        }
        Inventory {
            ssh: raw.ssh,
            admin: raw.admin,
            system: raw.system,
            kubernetes: raw.kubernetes,
            haproxy: raw.haproxy,
            hosts,
            vars: raw.vars,
            host_vars,
            path: PathBuf::new(),
        }
    }
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
    /// Minor version (e.g. "1.30"): of the upstream repository, or of the distribution's
    /// packages, which its repositories must offer (Photon OS 5.0: "1.27").
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

/// A host as written under `[hosts.NAME]`; its `vars` are kept in [`Inventory::host_vars`].
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
}
