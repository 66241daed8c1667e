//! kubelet and kubeadm: the packages (the distribution's, the Kubernetes project's repository
//! pkgs.k8s.io, or whatever is already there), the systemd cgroup driver in
//! `KUBELET_EXTRA_ARGS`, and the service enabled (kubeadm starts it when the node joins).

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::file::{self, Perm};
use crate::host::Cmd;
use crate::reads::Reads;
use crate::{pkg, systemd};

pub const SERVICE: &str = "kubelet.service";
/// Read by kubeadm's drop-in on Photon and RHEL (`EnvironmentFile=-/etc/sysconfig/kubelet`).
pub const SYSCONFIG: &str = "/etc/sysconfig/kubelet";
/// Read by kubeadm's drop-in on Debian (`EnvironmentFile=-/etc/default/kubelet`).
pub const DEFAULT: &str = "/etc/default/kubelet";
pub const APT_KEYRING: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";
pub const APT_LIST: &str = "/etc/apt/sources.list.d/kubernetes.list";
pub const YUM_REPO: &str = "/etc/yum.repos.d/kubernetes.repo";
/// tdnf's configuration (Photon): where packages are held (`excludepkgs` in `[main]`).
pub const TDNF_CONF: &str = "/etc/tdnf/tdnf.conf";
/// Photon's own packages: kubelet and kubectl are in `kubernetes`, kubeadm in
/// `kubernetes-kubeadm` (both built from one spec, one version).
pub const PHOTON_PACKAGES: [&str; 2] = ["kubernetes", "kubernetes-kubeadm"];
/// The packages the upstream repository provides.
pub const UPSTREAM_PACKAGES: [&str; 3] = ["kubelet", "kubeadm", "kubectl"];

const CGROUP_FLAG: &str = "--cgroup-driver";
const CGROUP_DRIVER: &str = "--cgroup-driver=systemd";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[
    SYSCONFIG,
    DEFAULT,
    APT_KEYRING,
    APT_LIST,
    YUM_REPO,
    TDNF_CONF,
])
.units(&["kubelet.service"])
.programs(&["kubelet", "kubeadm"]);

/// Where kubelet and kubeadm come from: the inventory setting `kubernetes.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// The distribution's packages: `kubernetes` and `kubernetes-kubeadm` on Photon OS, of
    /// this minor version (`"1.27"`: what Photon OS 5.0 ships), which the repositories must
    /// offer.
    Distro { minor: &'a str },
    /// The Kubernetes project's repository for one minor version (`"1.30"`).
    Upstream { minor: &'a str },
    /// Installed by other means: only checked.
    Present,
}

/// kubelet and kubeadm are installed from `source`.
pub fn packages(cx: &mut Ctx, source: Source<'_>) -> Result<Change> {
    let os = cx.facts().os;
    match source {
        Source::Present => present(cx),
        Source::Distro { minor } => match os {
            OsFamily::Photon => photon_distro(cx, &minor_version(minor)?),
            OsFamily::Debian | OsFamily::Rhel => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} has no kubelet/kubeadm packages of its own: set the inventory setting `kubernetes.source` to \
                     \"upstream\" (the pkgs.k8s.io repository) or \"present\" (installed by other means)",
                    distro_name(cx)
                ),
            )),
        },
        Source::Upstream { minor } => {
            let minor = minor_version(minor)?;
            match os {
                OsFamily::Debian => upstream_apt(cx, &minor),
                OsFamily::Rhel | OsFamily::Photon => upstream_rpm(cx, &minor),
            }
        }
    }
}

fn distro_name(cx: &Ctx) -> String {
    let f = cx.facts();
    if f.pretty_name.is_empty() {
        format!("{} {}", f.id, f.version_id)
    } else {
        f.pretty_name.clone()
    }
}

/// `"1.30"` or `"v1.30"` → `"1.30"`; anything else is refused.
pub fn minor_version(minor: &str) -> Result<String> {
    let m = minor.trim().trim_start_matches('v');
    let ok = m.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    if ok {
        Ok(m.to_string())
    } else {
        Err(Error::invalid(format!(
            "`{}` is not a Kubernetes minor version like 1.30 (inventory setting `kubernetes.version`)",
            minor.escape_debug()
        )))
    }
}

/// The repository URL of one minor version, for `deb` or `rpm`.
pub fn repo_url(minor: &str, kind: &str) -> String {
    format!("https://pkgs.k8s.io/core:/stable:/v{minor}/{kind}/")
}

/// `/etc/apt/sources.list.d/kubernetes.list`.
pub fn render_apt_list(minor: &str) -> String {
    format!(
        "# Kubernetes {minor} packages (pkgs.k8s.io), written by nodeprep.\ndeb [signed-by={APT_KEYRING}] {} /\n",
        repo_url(minor, "deb")
    )
}

/// `/etc/yum.repos.d/kubernetes.repo`. On RHEL the packages are excluded from ordinary
/// transactions (a system update never moves kubelet ahead of the control plane); installs
/// lift the exclusion explicitly. tdnf (Photon) gets the repository without it: tdnf lifts
/// excludes only as a whole (`--disableexcludes`, no repository argument), and the packages
/// are held in tdnf.conf instead ([`tdnf_held`]).
pub fn render_yum_repo(minor: &str, exclude: bool) -> String {
    let url = repo_url(minor, "rpm");
    let mut s = format!(
        "# Kubernetes {minor} packages (pkgs.k8s.io), written by nodeprep.\n[kubernetes]\nname=Kubernetes\nbaseurl={url}\n\
         enabled=1\ngpgcheck=1\ngpgkey={url}repodata/repomd.xml.key\n"
    );
    if exclude {
        s.push_str("exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n");
    }
    s
}

/// Fetches the repository's signing key into the keyring: downloaded to a temporary file
/// first (a failed download never leaves an empty keyring), dearmored, renamed into place.
/// `sh -c KEY_SCRIPT nodeprep-keyring URL KEYRING`.
const KEY_SCRIPT: &str = r#"set -eu
d=$(dirname -- "$2")
install -d -m 0755 -- "$d"
t=$(mktemp -- "$d/.nodeprep.XXXXXX")
trap 'rm -f -- "$t" "$t.asc"' EXIT INT TERM HUP
curl -fsSL --retry 3 -o "$t.asc" -- "$1"
gpg --batch --yes --dearmor -o "$t" < "$t.asc"
chmod 0644 -- "$t"
mv -f -- "$t" "$2"
"#;

/// What fetching the upstream repository's signing key needs on Debian (curl, gpg, the CAs).
pub const APT_KEY_TOOLS: [&str; 3] = ["ca-certificates", "curl", "gpg"];

/// The packages [`packages`] installs from `source` that need nothing done before them, for
/// the plan's one transaction: on Debian with the upstream repository, the tools that fetch
/// its key. kubelet, kubeadm and kubectl themselves are not among them: the upstream ones come
/// from the repository the step adds first; Photon's are checked against the version asked
/// for, installed (pinned to it when the repositories offer a newer minor) after the full
/// update and held at once, where an install before the update would let it move them.
pub fn batched_packages(cx: &mut Ctx, source: Source<'_>) -> Result<Vec<String>> {
    Ok(match source {
        Source::Upstream { .. } => match cx.facts().os {
            OsFamily::Debian => APT_KEY_TOOLS.iter().map(|n| n.to_string()).collect(),
            OsFamily::Photon | OsFamily::Rhel => Vec::new(),
        },
        Source::Distro { .. } | Source::Present => Vec::new(),
    })
}

fn upstream_apt(cx: &mut Ctx, minor: &str) -> Result<Change> {
    let mut change = pkg::installed(cx, &APT_KEY_TOOLS)?;
    let mut sources_changed = false;
    if cx.file(APT_KEYRING)?.is_none() {
        cx.progress_doing_or_would(
            format!("fetching the signing key of {}", repo_url(minor, "deb")),
            format!("would fetch the signing key of {}", repo_url(minor, "deb")),
        );
        let key_url = format!("{}Release.key", repo_url(minor, "deb"));
        cx.apply_creating(
            &[
                "sh",
                "-c",
                KEY_SCRIPT,
                "nodeprep-keyring",
                &key_url,
                APT_KEYRING,
            ],
            APT_KEYRING,
        )?;
        cx.note_done_or_would(
            format!("signing key fetched into {APT_KEYRING}"),
            format!("would fetch the signing key into {APT_KEYRING}"),
        );
        sources_changed = true;
        change = Change::Changed;
    }
    let list = file::content(cx, APT_LIST, &render_apt_list(minor), Perm::CONFIG)?;
    if sources_changed || list.changed() {
        // The package lists must be read again, now with this repository.
        pkg::apt_lists_changed(cx);
    }
    change |= list;
    change |= pkg::installed(cx, &UPSTREAM_PACKAGES)?;
    change |= held(cx, &UPSTREAM_PACKAGES)?;
    Ok(change)
}

/// The packages are held (`apt-mark hold`): an upgrade of the system leaves them alone;
/// kubeadm's upgrade procedure moves them.
pub fn held(cx: &mut Ctx, names: &[&str]) -> Result<Change> {
    let out = cx.query(&["apt-mark", "showhold"])?;
    if !out.success() {
        return Err(crate::host::command_failed(
            &Cmd::new(&["apt-mark", "showhold"]),
            &out,
        ));
    }
    let holds = out.stdout_str();
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !holds.lines().any(|l| l.trim() == *n))
        .collect();
    if missing.is_empty() {
        return Ok(Change::Unchanged);
    }
    let mut argv = vec!["apt-mark", "hold"];
    argv.extend(&missing);
    cx.apply(&argv)?;
    cx.note_done_or_would(
        format!("held (apt-mark hold): {}", missing.join(" ")),
        format!("would hold (apt-mark hold): {}", missing.join(" ")),
    );
    Ok(Change::Changed)
}

fn upstream_rpm(cx: &mut Ctx, minor: &str) -> Result<Change> {
    let os = cx.facts().os;
    let mut change = upstream_rpm_installed(cx, minor)?;
    match os {
        OsFamily::Photon => change |= tdnf_held(cx, &UPSTREAM_PACKAGES)?,
        // dnf: excluded in the repository file itself (see upstream_rpm_installed).
        OsFamily::Rhel | OsFamily::Debian => {}
    }
    Ok(change)
}

fn upstream_rpm_installed(cx: &mut Ctx, minor: &str) -> Result<Change> {
    let os = cx.facts().os;
    // dnf honours `exclude=` in the repository file; tdnf is held in tdnf.conf instead.
    let exclude = match os {
        OsFamily::Rhel => true,
        OsFamily::Photon | OsFamily::Debian => false,
    };
    let mut change = file::content(cx, YUM_REPO, &render_yum_repo(minor, exclude), Perm::CONFIG)?;
    // tdnf: the packages are held in tdnf.conf (see tdnf_held), which an install must lift.
    let flags: &[&str] = if exclude {
        &["--disableexcludes=kubernetes"]
    } else {
        &["--disableexcludes"]
    };
    change |= pkg::installed_with(cx, &UPSTREAM_PACKAGES, flags)?;
    Ok(change)
}

/// Photon's own packages, of the inventory's minor version. Installed ones must be of it (a
/// minor is moved by kubeadm's upgrade procedure, not here); missing ones are installed only
/// when the repositories offer it (asked read-only, in check mode too), else the run stops
/// with the versions they offer. Then held against updates ([`tdnf_held`]).
fn photon_distro(cx: &mut Ctx, minor: &str) -> Result<Change> {
    let have = cx.packages()?.clone();
    for name in PHOTON_PACKAGES {
        // An empty version: planned in check mode, not installed.
        if let Some(v) = have.get(name).filter(|v| !v.is_empty())
            && minor_of(v).as_deref() != Some(minor)
        {
            return Err(Error::invalid(format!(
                "{name} {v} is installed, but the inventory setting `kubernetes.version` is \"{minor}\": set \
                 it to \"{}\" (a minor version is changed by kubeadm's upgrade procedure, not by nodeprep)",
                minor_of(v).unwrap_or_default()
            )));
        }
    }
    let missing: Vec<&str> = PHOTON_PACKAGES
        .iter()
        .copied()
        .filter(|n| !have.contains_key(*n))
        .collect();
    let mut change = Change::Unchanged;
    if !missing.is_empty() {
        let offered = offered_versions(cx, PHOTON_PACKAGES[0])?;
        let Some(version) = newest_of_minor(&offered, minor) else {
            return Err(Error::invalid(format!(
                "the inventory setting `kubernetes.version` is \"{minor}\", but the repositories of {} offer \
                 kubernetes {}: set `kubernetes.version` to one of these minors, or `kubernetes.source` to \
                 \"upstream\" (the pkgs.k8s.io repository)",
                distro_name(cx),
                if offered.is_empty() {
                    "in no version".to_string()
                } else {
                    offered.join(", ")
                }
            )));
        };
        // tdnf installs the newest version offered: named as is when that is the minor asked
        // for, else pinned to the newest of that minor.
        let newest_is_it = offered
            .iter()
            .max_by(|a, b| pkg::version_cmp(a, b))
            .is_some_and(|v| *v == version);
        let specs: Vec<String> = missing
            .iter()
            .map(|n| {
                if newest_is_it {
                    n.to_string()
                } else {
                    format!("{n}-{version}")
                }
            })
            .collect();
        cx.progress_doing_or_would(
            format!("installing {}", specs.join(" ")),
            format!("would install {}", specs.join(" ")),
        );
        let mut argv = pkg::install_argv(OsFamily::Photon);
        argv.push("--disableexcludes");
        argv.extend(specs.iter().map(String::as_str));
        pkg::run(cx, &argv)?;
        cx.after_install(&missing)?;
        change = Change::Changed;
    }
    Ok(change | tdnf_held(cx, &PHOTON_PACKAGES)?)
}

/// `1.27.16-2.ph5` (or `1:1.27.16-2`) → `1.27`.
pub fn minor_of(version: &str) -> Option<String> {
    let v = version.split_once(':').map_or(version, |(_, rest)| rest);
    let mut parts = v.split(['.', '-']);
    let (major, minor) = (parts.next()?, parts.next()?);
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
    (numeric(major) && numeric(minor)).then(|| format!("{major}.{minor}"))
}

/// The versions of `name` the repositories offer (and the installed one), as
/// `tdnf list --disableexcludes NAME` shows them (`name.arch  version-release  repo`), asked
/// read-only; none when tdnf finds no such package.
pub fn offered_versions(cx: &mut Ctx, name: &str) -> Result<Vec<String>> {
    let argv = ["tdnf", "list", "--disableexcludes", name];
    let out = cx.query(&argv)?;
    let versions = parse_tdnf_list(&out.stdout_str(), name);
    if !out.success() && versions.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No matching packages")
            || out.stdout_str().contains("No matching packages")
        {
            return Ok(Vec::new());
        }
        return Err(pkg::failure(&argv, &out));
    }
    Ok(versions)
}

/// The versions of `name` in `tdnf list` output, each once, in the order listed.
pub fn parse_tdnf_list(text: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let named = w
            .first()
            .and_then(|p| p.rsplit_once('.'))
            .is_some_and(|(n, _)| n == name);
        if w.len() == 3
            && named
            && w[1].starts_with(|c: char| c.is_ascii_digit())
            && !out.iter().any(|v| v == w[1])
        {
            out.push(w[1].to_string());
        }
    }
    out
}

/// The newest of `versions` whose minor is `minor`.
pub fn newest_of_minor(versions: &[String], minor: &str) -> Option<String> {
    versions
        .iter()
        .filter(|v| minor_of(v).as_deref() == Some(minor))
        .max_by(|a, b| pkg::version_cmp(a, b))
        .cloned()
}

/// The packages are held on Photon: listed in `excludepkgs` of `[main]` in /etc/tdnf/tdnf.conf
/// (tdnf 3.5 has no versionlock), so `tdnf update` and `tdnf distro-sync` leave them alone;
/// kubeadm's upgrade procedure moves them (`--disableexcludes`). The file is edited in place:
/// names already there are kept, the rest of the file too.
pub fn tdnf_held(cx: &mut Ctx, names: &[&str]) -> Result<Change> {
    if cx.file(TDNF_CONF)?.is_none() {
        return Err(Error::invalid(format!(
            "{TDNF_CONF} is missing: tdnf is not set up as Photon OS ships it; nodeprep holds packages there"
        )));
    }
    file::edit(cx, TDNF_CONF, None, |old| {
        with_excluded(old.unwrap_or(""), names)
    })
}

/// tdnf.conf with `names` in the `excludepkgs` of `[main]` (space-separated, as tdnf 3.5 reads
/// it): added to an existing line, else a line added at the end of the section.
pub fn with_excluded(text: &str, names: &[&str]) -> Result<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let section = |l: &str| {
        let t = l.trim();
        (t.starts_with('[') && t.ends_with(']')).then(|| t[1..t.len() - 1].trim().to_string())
    };
    let Some(main) = lines
        .iter()
        .position(|l| section(l).as_deref() == Some("main"))
    else {
        return Err(Error::invalid(
            "no [main] section: not a tdnf configuration",
        ));
    };
    let end = lines[main + 1..]
        .iter()
        .position(|l| section(l).is_some())
        .map_or(lines.len(), |i| main + 1 + i);
    let key_line = (main + 1..end).find(|&i| {
        let t = lines[i].trim_start();
        !t.starts_with('#')
            && t.split_once('=')
                .is_some_and(|(k, _)| k.trim() == "excludepkgs")
    });
    match key_line {
        Some(i) => {
            let (key, value) = lines[i].split_once('=').expect("found by its `=`");
            let mut have: Vec<String> = value.split_whitespace().map(str::to_string).collect();
            let missing: Vec<&&str> = names
                .iter()
                .filter(|n| !have.iter().any(|h| h == **n))
                .collect();
            if missing.is_empty() {
                return Ok(text.to_string());
            }
            have.extend(missing.iter().map(|n| n.to_string()));
            lines[i] = format!("{key}={}", have.join(" "));
        }
        None => {
            // After the section's last setting, before blank lines and the next section.
            let at = (main + 1..end)
                .rev()
                .find(|&i| !lines[i].trim().is_empty())
                .map_or(main + 1, |i| i + 1);
            lines.insert(at, format!("excludepkgs={}", names.join(" ")));
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// `kubernetes.source = "present"`: kubelet and kubeadm must be there already (as packages or
/// programs on PATH); nothing is installed.
fn present(cx: &mut Ctx) -> Result<Change> {
    let have = cx.packages()?;
    let has = |names: &[&str]| names.iter().any(|n| have.contains_key(*n));
    let mut missing: Vec<&str> = Vec::new();
    if !has(&["kubelet", "kubernetes"]) {
        missing.push("kubelet");
    }
    if !has(&["kubeadm", "kubernetes-kubeadm"]) {
        missing.push("kubeadm");
    }
    if missing.is_empty() {
        return Ok(Change::Unchanged);
    }
    // On PATH, as the probe saw it: no question to ask.
    if missing
        .iter()
        .all(|m| cx.state().programs.get(*m) == Some(&true))
    {
        return Ok(Change::Unchanged);
    }
    // Not packaged: maybe installed as plain binaries.
    let mut script = String::from("PATH=$PATH:/usr/local/bin:/usr/bin:/opt/bin; ");
    for m in &missing {
        script.push_str(&format!("command -v {m} >/dev/null 2>&1 || echo {m}; "));
    }
    let out = cx.query(&["sh", "-c", script.trim_end()])?;
    let still: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if still.is_empty() {
        return Ok(Change::Unchanged);
    }
    Err(Error::invalid(format!(
        "{} not found (no package, not on PATH), but the inventory setting `kubernetes.source = \"present\"` says \
         kubelet and kubeadm are installed already: install them, or set `kubernetes.source` to \"distro\" \
         (Photon OS) or \"upstream\" (pkgs.k8s.io)",
        still.join(" and ")
    )))
}

/// The file kubeadm's kubelet drop-in reads `KUBELET_EXTRA_ARGS` from, per OS family.
pub fn extra_args_file(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Photon | OsFamily::Rhel => SYSCONFIG,
        OsFamily::Debian => DEFAULT,
    }
}

/// `KUBELET_EXTRA_ARGS` holds `--cgroup-driver=systemd` (the driver containerd and docker are
/// set to) and `--node-ip` (the host's cluster address `node_ip`, unless the operator's own
/// `--node-ip` names addresses of this host: kubelet would otherwise guess, and a node with a
/// second interface may guess wrong); other flags and other lines of the file are kept.
/// Changed means kubelet must be restarted if it runs.
pub fn extra_args(cx: &mut Ctx, node_ip: &str) -> Result<Change> {
    let path = extra_args_file(cx.facts().os);
    let addresses = host_addresses(cx);
    file::edit(cx, path, None, |old| {
        Ok(with_node_ip(
            &with_cgroup_driver(old.unwrap_or("")),
            node_ip,
            &addresses,
        ))
    })
}

/// The host's addresses, as the probe read them (none when it did not).
pub fn host_addresses(cx: &Ctx) -> Vec<std::net::IpAddr> {
    cx.state().facts.addresses.clone()
}

const NODE_IP_FLAG: &str = "--node-ip";

/// The `--node-ip` value of the flags file's `KUBELET_EXTRA_ARGS`, if any.
pub fn node_ip_of(text: &str) -> Option<String> {
    text.lines()
        .filter_map(extra_args_value)
        .filter_map(|(_, v)| {
            let v = v.trim().trim_matches(['"', '\'']);
            let words: Vec<&str> = v.split_whitespace().collect();
            words.iter().enumerate().find_map(|(i, w)| {
                if *w == NODE_IP_FLAG {
                    words.get(i + 1).map(|s| s.to_string())
                } else {
                    w.strip_prefix("--node-ip=").map(str::to_string)
                }
            })
        })
        .next_back()
}

/// Every address of a `--node-ip` value (comma-separated for dual stack) is one of `addresses`.
pub fn names_host_addresses(value: &str, addresses: &[std::net::IpAddr]) -> bool {
    !value.is_empty()
        && value.split(',').all(|a| {
            a.trim()
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| addresses.contains(&ip))
        })
}

/// The text with every active `KUBELET_EXTRA_ARGS=` line carrying `--node-ip=node_ip`: an
/// existing `--node-ip` naming addresses of this host (`addresses`) is kept, another is
/// replaced in place; a line without one gets it appended.
pub fn with_node_ip(text: &str, node_ip: &str, addresses: &[std::net::IpAddr]) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let eol = &line[body.len()..];
        let Some((prefix, value)) = extra_args_value(body) else {
            out.push_str(line);
            continue;
        };
        let v = value.trim();
        let (quote, inner) = match v.chars().next() {
            Some(q @ ('"' | '\'')) if v.len() >= 2 && v.ends_with(q) => {
                (Some(q), &v[1..v.len() - 1])
            }
            _ => (None, v),
        };
        let words: Vec<&str> = inner.split_whitespace().collect();
        let mut flags: Vec<String> = Vec::with_capacity(words.len() + 1);
        let mut set = false;
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let current = if w == NODE_IP_FLAG {
                i += 1;
                Some(words.get(i).copied().unwrap_or(""))
            } else {
                w.strip_prefix("--node-ip=")
            };
            match current {
                Some(value) if !set => {
                    set = true;
                    if names_host_addresses(value, addresses) {
                        flags.push(format!("{NODE_IP_FLAG}={value}"));
                    } else {
                        flags.push(format!("{NODE_IP_FLAG}={node_ip}"));
                    }
                }
                Some(_) => {}
                None => flags.push(w.to_string()),
            }
            i += 1;
        }
        if !set {
            flags.push(format!("{NODE_IP_FLAG}={node_ip}"));
        }
        let joined = flags.join(" ");
        let value = match quote {
            Some(q) => format!("{q}{joined}{q}"),
            None if flags.len() > 1 => format!("\"{joined}\""),
            None => joined,
        };
        // Unchanged words keep the line as it was.
        if value == v {
            out.push_str(line);
        } else {
            out.push_str(prefix);
            out.push_str(&value);
            out.push_str(eol);
        }
    }
    out
}

/// The text with every active `KUBELET_EXTRA_ARGS=` line carrying the systemd cgroup driver
/// (an existing `--cgroup-driver` flag replaced in place, else appended), or such a line added.
pub fn with_cgroup_driver(text: &str) -> String {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 48);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let eol = &line[body.len()..];
        match extra_args_value(body) {
            Some((prefix, value)) => {
                found = true;
                out.push_str(prefix);
                out.push_str(&fixed_value(value));
                out.push_str(eol);
            }
            None => out.push_str(line),
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("KUBELET_EXTRA_ARGS={CGROUP_DRIVER}\n"));
    }
    out
}

/// For an active `[export ]KUBELET_EXTRA_ARGS=value` line: (everything up to `=`, value).
fn extra_args_value(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    let rest = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
    let value = rest.strip_prefix("KUBELET_EXTRA_ARGS=")?;
    Some((&line[..line.len() - value.len()], value))
}

/// The value with the cgroup driver flag set, its quoting kept (quoted when it becomes several
/// words).
fn fixed_value(value: &str) -> String {
    let v = value.trim();
    let (quote, inner) = match v.chars().next() {
        Some(q @ ('"' | '\'')) if v.len() >= 2 && v.ends_with(q) => (Some(q), &v[1..v.len() - 1]),
        _ => (None, v),
    };
    let words: Vec<&str> = inner.split_whitespace().collect();
    let mut flags: Vec<String> = Vec::with_capacity(words.len() + 1);
    let mut set = false;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let is_flag = w == CGROUP_FLAG || w.starts_with(&format!("{CGROUP_FLAG}="));
        if is_flag {
            if !set {
                flags.push(CGROUP_DRIVER.to_string());
                set = true;
            }
            if w == CGROUP_FLAG {
                i += 1; // `--cgroup-driver systemd`: its value goes too
            }
        } else {
            flags.push(w.to_string());
        }
        i += 1;
    }
    if !set {
        flags.push(CGROUP_DRIVER.to_string());
    }
    let joined = flags.join(" ");
    match quote {
        Some(q) => format!("{q}{joined}{q}"),
        None if flags.len() > 1 => format!("\"{joined}\""),
        None => joined,
    }
}

/// kubelet is enabled at boot. Not started: until `kubeadm init/join` writes its config it
/// would only crash-loop; kubeadm starts it.
pub fn enabled(cx: &mut Ctx) -> Result<Change> {
    systemd::enabled(cx, SERVICE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, ok, photon_files, plan};
    use expect_test::expect;

    fn text(cx: &Ctx, path: &str) -> String {
        cx.state().files[path]
            .as_ref()
            .expect("file present")
            .text()
    }

    /// `tdnf list --disableexcludes kubernetes` on Photon OS 5.0: one minor, 1.27.
    const PHOTON_OFFERS: &str = "kubernetes.x86_64     1.27.16-2.ph5     photon-updates\n";

    #[test]
    fn photon_distro() {
        // Photon: kubeadm's drop-in reads /etc/sysconfig/kubelet, which no package ships.
        let (mut cx, rec) = Fixture::photon().absent(SYSCONFIG).ctx(Mode::Apply);
        rec.reply("tdnf list", ok(PHOTON_OFFERS));
        assert!(
            packages(&mut cx, Source::Distro { minor: "1.27" })
                .unwrap()
                .changed()
        );
        // The kubeadm package's %post enabled the unit.
        cx.state_mut().units.insert(
            SERVICE.into(),
            crate::state::UnitState {
                enablement: crate::state::Enablement::Enabled,
                active: crate::state::ActiveState::Inactive,
            },
        );
        let _ = cx.take_units_stale();
        assert!(extra_args(&mut cx, "10.1.2.11").unwrap().changed());
        assert_eq!(enabled(&mut cx).unwrap(), Change::Unchanged);
        expect![[r#"
            run tdnf install -y --quiet --disableexcludes kubernetes kubernetes-kubeadm
            write /etc/tdnf/tdnf.conf 0644 root:root
            write /etc/sysconfig/kubelet 0644 root:root
        "#]]
        .assert_eq(&plan(&cx));
        assert_eq!(
            text(&cx, SYSCONFIG),
            "KUBELET_EXTRA_ARGS=\"--cgroup-driver=systemd --node-ip=10.1.2.11\"\n"
        );
        expect![[r#"
            [main]
            gpgcheck=1
            installonly_limit=3
            clean_requirements_on_remove=0
            repodir=/etc/yum.repos.d
            cachedir=/var/cache/tdnf
            excludepkgs=kubernetes kubernetes-kubeadm
        "#]]
        .assert_eq(&text(&cx, TDNF_CONF));
    }

    /// `distro` with a minor the repositories do not offer: refused with what they offer,
    /// nothing touched, in check mode too.
    #[test]
    fn photon_distro_version_checked() {
        for mode in [Mode::Check, Mode::Apply] {
            let (mut cx, rec) = Fixture::photon().ctx(mode);
            rec.reply("tdnf list", ok(PHOTON_OFFERS));
            let e = packages(&mut cx, Source::Distro { minor: "1.30" }).unwrap_err();
            assert_eq!(
                e.message(),
                "the inventory setting `kubernetes.version` is \"1.30\", but the repositories of VMware Photon OS/Linux \
                 offer kubernetes 1.27.16-2.ph5: set `kubernetes.version` to one of these minors, or \
                 `kubernetes.source` to \"upstream\" (the pkgs.k8s.io repository)",
            );
            assert!(cx.actions().is_empty());
            let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
            assert_eq!(sent, ["tdnf list --disableexcludes kubernetes"]);
        }
        // Installed already, of another minor: refused without asking.
        let (mut cx, rec) = Fixture::photon()
            .packages(&[("kubernetes", "1.27.16-2.ph5")])
            .ctx(Mode::Apply);
        let e = packages(&mut cx, Source::Distro { minor: "1.30" }).unwrap_err();
        assert!(
            e.message().starts_with(
                "kubernetes 1.27.16-2.ph5 is installed, but the inventory setting `kubernetes.version` is \"1.30\": set it to \"1.27\""
            ),
            "{e}"
        );
        assert!(rec.commands().is_empty());
        // No such package at all.
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        rec.reply(
            "tdnf list",
            crate::Output {
                status: Some(1),
                stderr: b"Error(1011) : No matching packages\n".to_vec(),
                ..Default::default()
            },
        );
        let e = packages(&mut cx, Source::Distro { minor: "1.27" }).unwrap_err();
        assert!(
            e.message().contains("offer kubernetes in no version"),
            "{e}"
        );
        // The repositories unreachable: tdnf's own words.
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        rec.reply(
            "tdnf list",
            crate::Output {
                status: Some(1),
                stderr: b"Error(1200) : Curl error: Couldn't resolve host name\n".to_vec(),
                ..Default::default()
            },
        );
        let e = packages(&mut cx, Source::Distro { minor: "1.27" }).unwrap_err();
        assert!(e.message().contains("Curl error"), "{e}");
    }

    /// Several minors offered and the one asked for is not the newest: pinned.
    #[test]
    fn photon_distro_pins_an_older_minor() {
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Check);
        rec.reply(
            "tdnf list",
            ok("Refreshing metadata for: 'VMware Photon Linux 5.0 (x86_64) Updates'\nkubernetes.x86_64  1.27.13-1.ph5  photon-updates\nkubernetes.x86_64  1.28.4-1.ph5  photon-updates\nkubernetes.x86_64  1.27.16-2.ph5  photon-updates\n"),
        );
        assert!(
            packages(&mut cx, Source::Distro { minor: "1.27" })
                .unwrap()
                .changed()
        );
        assert_eq!(
            plan(&cx).lines().next().unwrap(),
            "run tdnf install -y --quiet --disableexcludes kubernetes-1.27.16-2.ph5 kubernetes-kubeadm-1.27.16-2.ph5"
        );
    }

    /// The upstream repository on Photon: no repository exclude (tdnf has none to lift per
    /// repository), the packages held in tdnf.conf instead, the install lifting it.
    #[test]
    fn photon_upstream() {
        let (mut cx, _rec) = Fixture::photon().absent(YUM_REPO).ctx(Mode::Check);
        assert!(
            packages(&mut cx, Source::Upstream { minor: "1.30" })
                .unwrap()
                .changed()
        );
        expect![[r#"
            write /etc/yum.repos.d/kubernetes.repo 0644 root:root
            run tdnf install -y --quiet --disableexcludes kubelet kubeadm kubectl
            write /etc/tdnf/tdnf.conf 0644 root:root
        "#]]
        .assert_eq(&plan(&cx));
        assert!(!text(&cx, YUM_REPO).contains("exclude="));
        assert!(text(&cx, TDNF_CONF).ends_with("\nexcludepkgs=kubelet kubeadm kubectl\n"));
    }

    #[test]
    fn tdnf_holds() {
        let conf = "[main]\ngpgcheck=1\nexcludepkgs=foo kubernetes\n\n[other]\nx=1\n";
        assert_eq!(
            with_excluded(conf, &PHOTON_PACKAGES).unwrap(),
            "[main]\ngpgcheck=1\nexcludepkgs=foo kubernetes kubernetes-kubeadm\n\n[other]\nx=1\n"
        );
        let once = with_excluded("[main]\ngpgcheck=1\n\n[x]\n", &UPSTREAM_PACKAGES).unwrap();
        assert_eq!(
            once,
            "[main]\ngpgcheck=1\nexcludepkgs=kubelet kubeadm kubectl\n\n[x]\n"
        );
        assert_eq!(with_excluded(&once, &UPSTREAM_PACKAGES).unwrap(), once);
        // A commented line is not a setting.
        assert_eq!(
            with_excluded("[main]\n#excludepkgs=a\n", &["b"]).unwrap(),
            "[main]\n#excludepkgs=a\nexcludepkgs=b\n"
        );
        assert!(with_excluded("gpgcheck=1\n", &["b"]).is_err());
        // Missing tdnf.conf: refused, not invented.
        let (mut cx, _) = Fixture::photon().absent(TDNF_CONF).ctx(Mode::Check);
        let e = tdnf_held(&mut cx, &PHOTON_PACKAGES).unwrap_err();
        assert!(
            e.message().contains("/etc/tdnf/tdnf.conf is missing"),
            "{e}"
        );
    }

    #[test]
    fn versions() {
        assert_eq!(minor_of("1.27.16-2.ph5").as_deref(), Some("1.27"));
        assert_eq!(minor_of("1:1.30.4-1.1").as_deref(), Some("1.30"));
        assert_eq!(minor_of("x"), None);
        use std::cmp::Ordering::*;
        assert_eq!(pkg::version_cmp("1.27.16-2.ph5", "1.27.9-1.ph5"), Greater);
        assert_eq!(pkg::version_cmp("1.27.16-2.ph5", "1.27.16-10.ph5"), Less);
        assert_eq!(pkg::version_cmp("1.27.16-2.ph5", "1.27.16-2.ph5"), Equal);
        assert_eq!(
            parse_tdnf_list(
                "Loaded plugin: tdnfrepogpgcheck\nkubernetes.x86_64 1.27.16-2.ph5 @System\nkubernetes.x86_64 1.27.16-2.ph5 photon-updates\nkubernetes-kubeadm.x86_64 1.27.16-2.ph5 photon-updates\n",
                "kubernetes"
            ),
            ["1.27.16-2.ph5"]
        );
    }

    #[test]
    fn debian_upstream() {
        let (mut cx, rec) = Fixture::debian()
            .absent(APT_KEYRING)
            .absent(APT_LIST)
            .absent(DEFAULT)
            .ctx(Mode::Apply);
        rec.reply(
            "apt-mark showhold",
            crate::Output {
                status: Some(0),
                ..Default::default()
            },
        );
        assert!(
            packages(&mut cx, Source::Upstream { minor: "1.30" })
                .unwrap()
                .changed()
        );
        assert!(extra_args(&mut cx, "10.1.2.11").unwrap().changed());
        expect![[r#"
            run apt-get update -q -o DPkg::Lock::Timeout=120
            run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 ca-certificates curl gpg
            run sh -c 'set -eu
            d=$(dirname -- "$2")
            install -d -m 0755 -- "$d"
            t=$(mktemp -- "$d/.nodeprep.XXXXXX")
            trap '\''rm -f -- "$t" "$t.asc"'\'' EXIT INT TERM HUP
            curl -fsSL --retry 3 -o "$t.asc" -- "$1"
            gpg --batch --yes --dearmor -o "$t" < "$t.asc"
            chmod 0644 -- "$t"
            mv -f -- "$t" "$2"
            ' nodeprep-keyring https://pkgs.k8s.io/core:/stable:/v1.30/deb/Release.key /etc/apt/keyrings/kubernetes-apt-keyring.gpg
            write /etc/apt/sources.list.d/kubernetes.list 0644 root:root
            run apt-get update -q -o DPkg::Lock::Timeout=120
            run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 kubelet kubeadm kubectl
            run apt-mark hold kubelet kubeadm kubectl
            write /etc/default/kubelet 0644 root:root
        "#]]
        .assert_eq(&plan(&cx));
        expect![[r#"
            # Kubernetes 1.30 packages (pkgs.k8s.io), written by nodeprep.
            deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.30/deb/ /
        "#]]
        .assert_eq(&text(&cx, APT_LIST));
    }

    #[test]
    fn rhel_upstream() {
        let (mut cx, _rec) = Fixture::rhel().absent(YUM_REPO).ctx(Mode::Apply);
        assert!(
            packages(&mut cx, Source::Upstream { minor: "v1.31" })
                .unwrap()
                .changed()
        );
        expect![[r#"
            write /etc/yum.repos.d/kubernetes.repo 0644 root:root
            run dnf install -y --quiet --disableexcludes=kubernetes kubelet kubeadm kubectl
        "#]]
        .assert_eq(&plan(&cx));
        expect![[r#"
            # Kubernetes 1.31 packages (pkgs.k8s.io), written by nodeprep.
            [kubernetes]
            name=Kubernetes
            baseurl=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/
            enabled=1
            gpgcheck=1
            gpgkey=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/repodata/repomd.xml.key
            exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni
        "#]]
        .assert_eq(&text(&cx, YUM_REPO));
        assert!(
            cx.state().packages.is_none(),
            "versions are read again after the install"
        );
    }

    #[test]
    fn bad_sources_refused() {
        let (mut cx, _rec) = Fixture::debian().ctx(Mode::Apply);
        let e = packages(&mut cx, Source::Distro { minor: "1.30" }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(
            e.message()
                .contains("Debian GNU/Linux 12 (bookworm) has no kubelet/kubeadm packages"),
            "{e}"
        );
        assert!(e.message().contains("`kubernetes.source`"), "{e}");
        let e = packages(&mut cx, Source::Upstream { minor: "1.30.2" }).unwrap_err();
        assert!(e.message().contains("`kubernetes.version`"), "{e}");
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn present_checked() {
        // Packaged: no question asked.
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("kubelet", "1.30.4-1.1"), ("kubeadm", "1.30.4-1.1")])
            .ctx(Mode::Apply);
        assert_eq!(
            packages(&mut cx, Source::Present).unwrap(),
            Change::Unchanged
        );
        assert!(rec.commands().is_empty());
        // Plain binaries on PATH: the host says nothing is missing.
        let (mut cx, rec) = Fixture::debian().ctx(Mode::Check);
        assert_eq!(
            packages(&mut cx, Source::Present).unwrap(),
            Change::Unchanged
        );
        expect![[r#"
            [
                sh -c 'PATH=$PATH:/usr/local/bin:/usr/bin:/opt/bin; command -v kubelet >/dev/null 2>&1 || echo kubelet; command -v kubeadm >/dev/null 2>&1 || echo kubeadm;',
            ]
        "#]]
        .assert_debug_eq(&rec.commands());
        // Missing: a clear error naming the setting.
        let (mut cx, rec) = Fixture::rhel()
            .packages(&[("kubelet", "1.30.4-150500.1.1")])
            .ctx(Mode::Apply);
        rec.reply(
            "sh -c",
            crate::Output {
                status: Some(0),
                stdout: b"kubeadm\n".to_vec(),
                ..Default::default()
            },
        );
        let e = packages(&mut cx, Source::Present).unwrap_err();
        assert!(e.message().starts_with("kubeadm not found (no package, not on PATH), but the inventory setting `kubernetes.source = \"present\"`"), "{e}");
    }

    #[test]
    fn cgroup_driver_lines() {
        assert_eq!(
            with_cgroup_driver(""),
            "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n"
        );
        assert_eq!(
            with_cgroup_driver("KUBELET_EXTRA_ARGS=\n"),
            "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n"
        );
        let sysconfig = "# kubelet flags\nKUBELET_EXTRA_ARGS=\"--node-ip=10.0.0.5 --cgroup-driver=cgroupfs --v=2\"\nOTHER=1";
        expect![[r##"
            # kubelet flags
            KUBELET_EXTRA_ARGS="--node-ip=10.0.0.5 --cgroup-driver=systemd --v=2"
            OTHER=1"##]]
        .assert_eq(&with_cgroup_driver(sysconfig));
        assert_eq!(
            with_cgroup_driver(
                "export KUBELET_EXTRA_ARGS='--cgroup-driver cgroupfs --max-pods=200'\n"
            ),
            "export KUBELET_EXTRA_ARGS='--cgroup-driver=systemd --max-pods=200'\n"
        );
        assert_eq!(
            with_cgroup_driver("KUBELET_EXTRA_ARGS=--node-ip=10.0.0.5\n"),
            "KUBELET_EXTRA_ARGS=\"--node-ip=10.0.0.5 --cgroup-driver=systemd\"\n"
        );
        // Commented lines are not settings.
        assert_eq!(
            with_cgroup_driver("#KUBELET_EXTRA_ARGS=--v=4\n"),
            "#KUBELET_EXTRA_ARGS=--v=4\nKUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n"
        );
        let once = with_cgroup_driver(sysconfig);
        assert_eq!(with_cgroup_driver(&once), once);
    }

    #[test]
    fn node_ip_lines() {
        let here: Vec<std::net::IpAddr> =
            vec!["10.1.2.11".parse().unwrap(), "192.0.2.7".parse().unwrap()];
        assert_eq!(
            with_node_ip(
                "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
                "10.1.2.11",
                &here
            ),
            "KUBELET_EXTRA_ARGS=\"--cgroup-driver=systemd --node-ip=10.1.2.11\"\n"
        );
        // The operator's own, naming an address of this host, is kept (its place too).
        let own = "KUBELET_EXTRA_ARGS=\"--node-ip=192.0.2.7 --cgroup-driver=systemd\"\n";
        assert_eq!(with_node_ip(own, "10.1.2.11", &here), own);
        // One naming no address of this host is replaced, in place.
        let stale = "KUBELET_EXTRA_ARGS='--node-ip 10.9.9.9 --v=2'\n";
        assert_eq!(
            with_node_ip(stale, "10.1.2.11", &here),
            "KUBELET_EXTRA_ARGS='--node-ip=10.1.2.11 --v=2'\n"
        );
        assert_eq!(node_ip_of(stale).as_deref(), Some("10.9.9.9"));
        assert!(names_host_addresses("10.1.2.11", &here));
        assert!(!names_host_addresses("10.1.2.11,fd00::1", &here));
        let once = with_node_ip(stale, "10.1.2.11", &here);
        assert_eq!(with_node_ip(&once, "10.1.2.11", &here), once);
    }

    #[test]
    fn no_change() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[
                ("kubelet", "1.30.4-1.1"),
                ("kubeadm", "1.30.4-1.1"),
                ("kubectl", "1.30.4-1.1"),
                ("curl", "7.88.1-10+deb12u8"),
                ("gpg", "2.2.40-1.1"),
                ("ca-certificates", "20230311"),
            ])
            .file(APT_KEYRING, "\u{99}\u{1}key", 0o644)
            .file(APT_LIST, &render_apt_list("1.30"), 0o644)
            .file(
                DEFAULT,
                "KUBELET_EXTRA_ARGS=\"--cgroup-driver=systemd --node-ip=10.1.2.11\"\n",
                0o644,
            )
            .unit(SERVICE, "enabled", "activating")
            .ctx(Mode::Apply);
        rec.reply(
            "apt-mark showhold",
            crate::Output {
                status: Some(0),
                stdout: b"kubeadm\nkubectl\nkubelet\n".to_vec(),
                ..Default::default()
            },
        );
        let mut c = packages(&mut cx, Source::Upstream { minor: "1.30" }).unwrap();
        c |= extra_args(&mut cx, "10.1.2.11").unwrap();
        c |= enabled(&mut cx).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert!(cx.actions().is_empty(), "{:?}", cx.actions());
        // One read-only question: the holds.
        assert_eq!(rec.commands().len(), 1);

        let (mut cx, rec) = Fixture::photon()
            .packages(&[
                ("kubernetes", "1.27.16-2.ph5"),
                ("kubernetes-kubeadm", "1.27.16-2.ph5"),
            ])
            .file(
                SYSCONFIG,
                "KUBELET_EXTRA_ARGS=\"--cgroup-driver=systemd --node-ip=10.1.2.11\"\n",
                0o644,
            )
            .file(
                TDNF_CONF,
                &with_excluded(photon_files::TDNF_CONF, &PHOTON_PACKAGES).unwrap(),
                0o644,
            )
            .unit(SERVICE, "enabled", "inactive")
            .ctx(Mode::Apply);
        let c = packages(&mut cx, Source::Distro { minor: "1.27" }).unwrap()
            | extra_args(&mut cx, "10.1.2.11").unwrap()
            | enabled(&mut cx).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert!(cx.actions().is_empty() && rec.commands().is_empty());
    }

    #[test]
    fn check_mode_plans_only() {
        let (mut cx, rec) = Fixture::rhel()
            .absent(YUM_REPO)
            .file(SYSCONFIG, "KUBELET_EXTRA_ARGS=\n", 0o644)
            .unit(SERVICE, "disabled", "inactive")
            .ctx(Mode::Check);
        assert!(
            packages(&mut cx, Source::Upstream { minor: "1.30" })
                .unwrap()
                .changed()
        );
        assert!(extra_args(&mut cx, "10.1.2.11").unwrap().changed());
        assert!(enabled(&mut cx).unwrap().changed());
        expect![[r#"
            write /etc/yum.repos.d/kubernetes.repo 0644 root:root
            run dnf install -y --quiet --disableexcludes=kubernetes kubelet kubeadm kubectl
            write /etc/sysconfig/kubelet 0644 root:root
            run systemctl enable kubelet.service
        "#]]
        .assert_eq(&plan(&cx));
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
        assert_eq!(
            pkg::version(&mut cx, "kubelet").unwrap().as_deref(),
            Some(""),
            "planned installs count as done"
        );
    }
}
