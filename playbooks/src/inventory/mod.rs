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
//! Values not known yet are written as placeholders (`gateway = { placeholder = "10.0.0.1" }`,
//! see [`placeholders`]): valid, listed as warnings, never written onto a host.
//!
//! The model and its loading are here (`Inventory::load` and `parse`, with the built-in roles'
//! names, in `crate::roles`); the checks are in `validate`, the report in `problems`
//! and the key positions it gives line numbers from in [`spans`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tasks::Secret;
use tasks::firewall::Net;
use tasks::network::Cidr;

pub mod cluster;
pub mod placeholders;
mod problems;
pub mod sources;
pub mod spans;
mod validate;
mod vars;

pub use cluster::{CNIS, Cni, ExtraRule, cni, pod_network, service_network};

pub use placeholders::Placeholder;
pub use problems::{Problem, Problems};
pub use sources::{HostMirrors, HostProxy, PackagesTable, ProxyTable, Sources};
pub use validate::{is_rfc1123_label, is_sha512_crypt, parse_cidr};
pub use vars::{VarsCheck, VarsError, VarsType, check_vars};

use placeholders::marked;

/// A host's role, as the inventory's `role` field names it, checked against the roles the
/// inventory was loaded for (see [`Inventory::parse_for`]). Two are equal when they name the
/// same role; shown by its name. `crate::roles` gives it the role's behaviour.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RoleRef(pub(crate) &'static str);

impl RoleRef {
    /// The role of `roles` named `name`.
    pub fn named(name: &str, roles: &[&'static str]) -> Option<RoleRef> {
        roles.iter().find(|r| **r == name).map(|r| RoleRef(r))
    }

    /// The role's name.
    pub fn name(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Debug for RoleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoleRef({:?})", self.0)
    }
}

impl std::fmt::Display for RoleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.0)
    }
}
use problems::{line_at, locate};

#[derive(Debug, Clone)]
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
    /// The top-level `[proxy]` and `[packages]` (see [`sources`]).
    pub sources: Sources,
    /// `[zones.NAME]`: a zone's `proxy` and `packages`.
    pub zones: BTreeMap<String, Sources>,
    /// Each host's own `proxy` and `packages`, for the hosts that have some.
    pub host_sources: BTreeMap<String, Sources>,
    /// The values written as placeholders: hosts in name order, then the shared settings.
    pub placeholders: Vec<Placeholder>,
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
    kubernetes: RawKubernetes,
    #[serde(default)]
    haproxy: Haproxy,
    #[serde(default)]
    vars: toml::Table,
    #[serde(default)]
    proxy: Option<ProxyTable>,
    #[serde(default)]
    packages: Option<PackagesTable>,
    #[serde(default)]
    zones: BTreeMap<String, Sources>,
    #[serde(default)]
    hosts: BTreeMap<String, RawHost>,
}

/// A `[hosts.NAME]` table: [`HostEntry`] and the host's `vars`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    role: String,
    #[serde(deserialize_with = "marked")]
    address: String,
    #[serde(default)]
    management_address: bool,
    port: Option<u16>,
    user: Option<String>,
    zone: Option<String>,
    network: Option<Network>,
    #[serde(default)]
    vars: Option<toml::Table>,
    #[serde(default)]
    proxy: Option<ProxyTable>,
    #[serde(default)]
    packages: Option<PackagesTable>,
}

/// `[kubernetes]` as written: [`Kubernetes`] with its names and networks as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKubernetes {
    source: String,
    version: String,
    docker: bool,
    cni: String,
    pod_cidr: Option<String>,
    service_cidr: String,
    extra_rules: Vec<ExtraRule>,
}

impl Default for RawKubernetes {
    fn default() -> Self {
        RawKubernetes {
            source: "distro".into(),
            version: "1.30".into(),
            docker: false,
            cni: "none".into(),
            pod_cidr: None,
            // kubeadm's default serviceSubnet.
            service_cidr: "10.96.0.0/12".into(),
            extra_rules: Vec::new(),
        }
    }
}

/// What did not resolve when the file's names and networks were read into types: problems
/// that validation reports in their place among the others. Meanwhile the model holds a
/// stand-in value there; an inventory with problems is never handed out.
type Unresolved = Vec<Problem>;

impl RawKubernetes {
    fn resolve(self, unresolved: &mut Unresolved) -> Kubernetes {
        let mut problem = |field: &str, message: String| {
            unresolved.push(Problem {
                host: None,
                field: field.into(),
                line: None,
                message,
            })
        };
        let source = Source::named(&self.source).unwrap_or_else(|| {
            problem(
                "kubernetes.source",
                format!(
                    "unknown source `{}` (expected distro, upstream or present)",
                    self.source.escape_debug()
                ),
            );
            Source::Distro
        });
        let cni = cluster::cni(&self.cni).unwrap_or_else(|| {
            problem(
                "kubernetes.cni",
                format!(
                    "unknown CNI `{}` (expected one of: {}; for another, `none` and its rules in kubernetes.extra_rules)",
                    self.cni.escape_debug(),
                    cluster::CNIS
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            cluster::cni("none").expect("the CNI `none`")
        });
        let mut network = |field: &str, text: &str| match Net::parse(text) {
            Ok(net) => Some(net),
            Err(why) => {
                problem(field, cluster::ipv4_network(text, &why));
                None
            }
        };
        let pod_cidr = self
            .pod_cidr
            .and_then(|text| network("kubernetes.pod_cidr", &text));
        let service_cidr = network("kubernetes.service_cidr", &self.service_cidr)
            .unwrap_or(Net::new(10, 96, 0, 0, 12));
        Kubernetes {
            source,
            version: self.version,
            docker: self.docker,
            cni,
            pod_cidr,
            service_cidr,
            extra_rules: self.extra_rules,
        }
    }
}

impl RawInventory {
    /// The model, names resolved to types and networks parsed, and what did not resolve.
    fn resolve(self, roles: &[&'static str]) -> (Inventory, Unresolved) {
        let mut unresolved = Vec::new();
        let mut hosts = BTreeMap::new();
        let mut host_vars = BTreeMap::new();
        let mut host_sources = BTreeMap::new();
        for (name, h) in self.hosts {
            if h.proxy.is_some() || h.packages.is_some() {
                host_sources.insert(
                    name.clone(),
                    Sources {
                        proxy: h.proxy,
                        packages: h.packages,
                    },
                );
            }
            if let Some(vars) = h.vars {
                host_vars.insert(name.clone(), vars);
            }
            let role = RoleRef::named(&h.role, roles).unwrap_or_else(|| {
                unresolved.push(Problem {
                    host: Some(name.clone()),
                    field: "role".into(),
                    line: None,
                    message: format!(
                        "unknown role `{}` (expected one of: {})",
                        h.role.escape_debug(),
                        roles.join(", ")
                    ),
                });
                RoleRef(roles.first().copied().unwrap_or_default())
            });
            let mut network = h.network;
            if let Some(n) = &mut network {
                match validate::read_cidr(n) {
                    Ok(cidr) => n.parsed = Some(cidr),
                    Err((field, message)) => unresolved.push(Problem {
                        host: Some(name.clone()),
                        field: field.into(),
                        line: None,
                        message,
                    }),
                }
            }
            let entry = HostEntry {
                role,
                address: h.address,
                management_address: h.management_address,
                port: h.port,
                user: h.user,
                zone: h.zone,
                network,
            };
            hosts.insert(name, entry);
        }
        let kubernetes = self.kubernetes.resolve(&mut unresolved);
        let inv = Inventory {
            ssh: self.ssh,
            admin: self.admin,
            system: self.system,
            kubernetes,
            haproxy: self.haproxy,
            hosts,
            vars: self.vars,
            host_vars,
            sources: Sources {
                proxy: self.proxy,
                packages: self.packages,
            },
            zones: self.zones,
            host_sources,
            placeholders: Vec::new(),
            path: PathBuf::new(),
        };
        (inv, unresolved)
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
    /// Seconds each host's connection stays open after a run, for the next run to reuse
    /// (skipping the login); 0 closes it at the end of every run. A reused connection was
    /// checked against the host key when it was made, not again.
    pub persist: u32,
    /// Seconds a command sent to a host may run before it is stopped and the host's run ends
    /// there (the probe included); package transactions have `package_timeout`.
    pub command_timeout: u32,
    /// Seconds a package transaction or package list refresh may run (downloads, maybe
    /// through a proxy).
    pub package_timeout: u32,
}

/// How long a connection is kept by default: a re-run within a minute (the usual check, fix,
/// run again) skips the login, about 0.14 s per host of a no-op run's 0.2 s (README's Speed),
/// and a connection is not left open for long.
pub const DEFAULT_PERSIST_SECS: u32 = 60;

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
            persist: DEFAULT_PERSIST_SECS,
            command_timeout: 5 * 60,
            package_timeout: 30 * 60,
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
    /// Let the admin use sudo without a password: a drop-in `/etc/sudoers.d/nodeprep-NAME`
    /// (`NAME ALL=(ALL) NOPASSWD: ALL`, checked with `visudo` before it goes live). What a
    /// fresh Photon OS needs after a first run with the password (its sudoers asks the
    /// password of `wheel`), so that later runs log in with a key and use `sudo -n`.
    #[serde(default)]
    pub passwordless_sudo: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct System {
    pub locale: String,
    pub keymap: Option<String>,
    pub ntp: Vec<String>,
    /// The name servers of every host whose network nodeprep writes, unless its own
    /// `network.dns` gives others.
    #[serde(deserialize_with = "marked")]
    pub dns: Vec<String>,
    /// Local CA certificates (PEM files on the controller, relative to the inventory).
    pub ca_files: Vec<PathBuf>,
    /// Run the full system update step.
    pub full_update: bool,
    /// apt's package lists are refreshed (`apt-get update`) before an install only when older
    /// than this many seconds, or absent, or a repository was added in the run, or an install
    /// cannot find a package (Ansible's `cache_valid_time`). 0: before every run's first
    /// install. tdnf and dnf keep their own metadata expiry.
    pub package_lists_max_age: u64,
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
            package_lists_max_age: tasks::pkg::PACKAGE_LISTS_MAX_AGE.as_secs(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Kubernetes {
    /// Where kubelet/kubeadm come from.
    pub source: Source,
    /// Minor version (e.g. "1.30"): of the upstream repository, or of the distribution's
    /// packages, which its repositories must offer (Photon OS 5.0: "1.27").
    pub version: String,
    /// Manage docker's daemon.json even where docker is not installed yet.
    pub docker: bool,
    /// The pod network add-on, one of [`cluster::CNIS`]: `calico`, `flannel`, `cilium` (the
    /// ports and protocols its nodes exchange are opened on every node) or `none` (only
    /// `extra_rules`).
    pub cni: &'static Cni,
    /// The pods' network, as given to `kubeadm init --pod-network-cidr` (forwarded to and from
    /// on every node). Default: the CNI's own (calico 192.168.0.0/16, flannel 10.244.0.0/16,
    /// cilium 10.0.0.0/8; none: no pod network rule).
    pub pod_cidr: Option<Net>,
    /// The services' network (kubeadm's `serviceSubnet`, default 10.96.0.0/12), forwarded to
    /// and from on every node.
    pub service_cidr: Net,
    /// More incoming rules for every node, for what the CNI setting does not cover.
    pub extra_rules: Vec<ExtraRule>,
}

/// Where kubelet and kubeadm come from (`kubernetes.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `distro`: the distribution's own packages (Photon OS).
    Distro,
    /// `upstream`: the Kubernetes project's repository, pkgs.k8s.io.
    Upstream,
    /// `present`: already installed, not managed.
    Present,
}

impl Source {
    /// The source the inventory names `name`.
    pub fn named(name: &str) -> Option<Source> {
        match name {
            "distro" => Some(Source::Distro),
            "upstream" => Some(Source::Upstream),
            "present" => Some(Source::Present),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Haproxy {
    /// Add frontends for ports 80 and 443, balanced over the ingress NodePorts of the workers
    /// of the balancer's zone.
    pub ingress: bool,
    /// The NodePort of the ingress controller's HTTP port: where :80 goes on the workers.
    pub ingress_http_nodeport: u16,
    /// The NodePort of the ingress controller's HTTPS port: where :443 goes on the workers.
    pub ingress_https_nodeport: u16,
}

impl Default for Haproxy {
    fn default() -> Self {
        Haproxy {
            ingress: false,
            ingress_http_nodeport: 30080,
            ingress_https_nodeport: 30443,
        }
    }
}

/// A host as written under `[hosts.NAME]`, its role resolved; its `vars` are kept in
/// [`Inventory::host_vars`].
#[derive(Debug, Clone)]
pub struct HostEntry {
    pub role: RoleRef,
    /// Where ssh connects: an IPv4 or IPv6 address, or a DNS name. It is also the host's own
    /// address, which `network.address` must then be, unless `management_address` says
    /// otherwise.
    pub address: String,
    /// `address` is a management address, apart from the host's cluster address
    /// (`network.address`, which the static file gives the host and the balancers reach):
    /// ssh connects to the one, the network file holds the other.
    pub management_address: bool,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub zone: Option<String>,
    pub network: Option<Network>,
}

impl HostEntry {
    /// A host of `role` with no settings of its own, at 127.0.0.1: this machine, or a host
    /// that plans stand for.
    pub fn stand_in(role: RoleRef) -> HostEntry {
        HostEntry {
            role,
            address: "127.0.0.1".into(),
            management_address: false,
            port: None,
            user: None,
            zone: None,
            network: None,
        }
    }
}

/// The network of a host: its cluster address and, when nodeprep writes it, its static
/// network file (systemd-networkd).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// nodeprep manages this host's network: it writes the static file
    /// (/etc/systemd/network/10-static-en.network) and keeps cloud-init from configuring the
    /// interface. Without it the table only tells the host's cluster address.
    #[serde(default)]
    pub write: bool,
    /// Apply the file now (restart systemd-networkd, as the very last step): this can cut the
    /// ssh session that applies it. Needs `write`.
    #[serde(default)]
    pub apply: bool,
    #[serde(default = "default_interface", deserialize_with = "marked")]
    pub interface: String,
    /// The host's cluster address, with its prefix (`192.168.10.57/24`) or without it when
    /// `prefix` gives it.
    #[serde(deserialize_with = "marked")]
    pub address: String,
    /// The prefix length, when `address` is written without it.
    #[serde(default, deserialize_with = "marked")]
    pub prefix: Option<u8>,
    /// `address` and `prefix` read at load. `None` only in an inventory that validation
    /// refuses (it says why), never in one handed out.
    #[serde(skip)]
    pub parsed: Option<Cidr>,
    #[serde(default, deserialize_with = "marked")]
    pub gateway: Option<String>,
    /// Name servers (else the shared `system.dns`).
    #[serde(default, deserialize_with = "marked")]
    pub dns: Vec<String>,
}

impl Network {
    /// The address without its prefix.
    pub fn ip(&self) -> &str {
        self.address.split('/').next().unwrap_or_default()
    }

    /// `address/prefix`, as the static file holds it.
    pub fn cidr(&self) -> String {
        match self.prefix {
            Some(p) if !self.address.contains('/') => format!("{}/{p}", self.address),
            _ => self.address.clone(),
        }
    }
}

impl HostEntry {
    /// The host's cluster address, the one definition every part of nodeprep uses (the
    /// balancers' backends, the node's name in /etc/hosts, kubelet's `--node-ip`, the identity
    /// check, NO_PROXY): `network.address` (without its prefix) when the host has a network
    /// table, else `address` (with `management_address`, `network.address` is required).
    pub fn cluster_address(&self) -> &str {
        match &self.network {
            Some(n) => n.ip(),
            None => &self.address,
        }
    }
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

impl<'a> Target<'a> {
    /// This host's cluster address ([`HostEntry::cluster_address`]).
    pub fn cluster_address(&self) -> &'a str {
        self.host.cluster_address()
    }
}

impl Inventory {
    /// Reads and validates a file whose hosts may have the roles named `roles`.
    /// [`Inventory::load`] gives it the built-in roles' names (in `crate::roles`, which
    /// depends on the inventory, not the other way round).
    pub fn load_for(path: &Path, roles: &[&'static str]) -> Result<Inventory, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| Problems {
            file: path.to_path_buf(),
            list: vec![Problem {
                host: None,
                field: String::new(),
                line: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Inventory::parse_for(&text, path, roles)
    }

    /// Parses and validates `text`, read from `path`, whose hosts may have the roles named
    /// `roles` ([`Inventory::parse`]: the built-in ones).
    pub fn parse_for(
        text: &str,
        path: &Path,
        roles: &[&'static str],
    ) -> Result<Inventory, Problems> {
        let raw: RawInventory = toml::from_str(text).map_err(|e| Problems {
            file: path.to_path_buf(),
            list: vec![Problem {
                host: None,
                field: String::new(),
                line: e.span().map(|s| line_at(text, s.start)),
                message: e.message().to_string(),
            }],
        })?;
        let (mut inv, unresolved) = raw.resolve(roles);
        inv.path = path.to_path_buf();
        if let Ok(doc) = text.parse::<toml::Table>() {
            inv.placeholders = placeholders::collect(&doc);
            for p in &mut inv.placeholders {
                p.line = locate(text, p.host.as_deref(), &p.field);
            }
        }
        let mut list = inv.problems(unresolved);
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

    /// The placeholder at `field` of `host` (`None`: a shared setting), if that value is one.
    pub fn placeholder(&self, host: Option<&str>, field: &str) -> Option<&Placeholder> {
        self.placeholders
            .iter()
            .find(|p| p.host.as_deref() == host && p.field == field)
    }

    pub fn target<'a>(&'a self, name: &'a str) -> Option<Target<'a>> {
        self.hosts.get_key_value(name).map(|(n, h)| Target {
            name: n,
            host: h,
            inventory: self,
        })
    }

    /// Every host, in name order.
    pub fn targets(&self) -> impl Iterator<Item = Target<'_>> {
        self.hosts.iter().map(|(name, host)| Target {
            name,
            host,
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
