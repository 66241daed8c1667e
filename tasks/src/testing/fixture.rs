//! Recorded hosts: a state as a host would report it (Photon OS 5.0 built from its real default
//! files, Debian 12, Rocky 9), fed to a [`Ctx`] over a [`Recorder`] that runs nothing.

use std::sync::Arc;

use super::Recorder;
use crate::ctx::{Ctx, Mode, Options};
use crate::facts::Facts;
use crate::state::{ActiveState, Enablement, FileState, State, UnitState};

/// A host's recorded state, built up fluently.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub facts: Facts,
    pub state: State,
}

/// Photon OS 5.0's real files: tasks/tests/data/photon, a copy of ../shared/photon, whose
/// README says where each comes from (the photon 5.0 branch, and the upstream sources its
/// specs build).
pub mod photon_files {
    /// `/usr/lib/os-release` (photon-release); `/etc/os-release` links to it.
    pub const OS_RELEASE: &str = include_str!("../../tests/data/photon/os-release");
    pub const PHOTON_RELEASE: &str = include_str!("../../tests/data/photon/photon-release");
    pub const LSB_RELEASE: &str = include_str!("../../tests/data/photon/lsb-release");
    /// `/etc/group`, `/etc/passwd`, `/etc/hosts` (filesystem).
    pub const GROUP: &str = include_str!("../../tests/data/photon/group");
    pub const PASSWD: &str = include_str!("../../tests/data/photon/passwd");
    pub const HOSTS: &str = include_str!("../../tests/data/photon/hosts");
    /// `/etc/ssh/sshd_config` (openssh-server, 0600).
    pub const SSHD_CONFIG: &str = include_str!("../../tests/data/photon/sshd_config");
    /// `/etc/sudoers` (sudo, 0440).
    pub const SUDOERS: &str = include_str!("../../tests/data/photon/sudoers");
    /// `/etc/cloud/cloud.cfg` (cloud-init).
    pub const CLOUD_CFG: &str = include_str!("../../tests/data/photon/cloud.cfg");
    /// `/etc/containerd/config.toml` (containerd).
    pub const CONTAINERD_CONFIG: &str =
        include_str!("../../tests/data/photon/containerd-config.toml");
    /// `/etc/sysctl.d/50-security-hardening.conf` (systemd).
    pub const SECURITY_HARDENING: &str =
        include_str!("../../tests/data/photon/50-security-hardening.conf");
    /// `/etc/systemd/scripts/ip4save`, `ip6save` and the script `iptables.service` runs
    /// (iptables).
    pub const IP4SAVE: &str = include_str!("../../tests/data/photon/ip4save");
    pub const IP6SAVE: &str = include_str!("../../tests/data/photon/ip6save");
    pub const IPTABLES_SCRIPT: &str = include_str!("../../tests/data/photon/iptables-script");
    /// `/etc/locale-gen.conf` (glibc).
    pub const LOCALE_GEN: &str = include_str!("../../tests/data/photon/locale-gen.conf");
    /// `/etc/systemd/network/99-dhcp-en.network` (systemd).
    pub const DHCP_NETWORK: &str = include_str!("../../tests/data/photon/99-dhcp-en.network");
    /// `/etc/tdnf/tdnf.conf` (tdnf).
    pub const TDNF_CONF: &str = include_str!("../../tests/data/photon/tdnf.conf");
    /// `/etc/yum.repos.d/*` (photon-repos): file name and text.
    pub const REPOS: [(&str, &str); 7] = [
        (
            "photon.repo",
            include_str!("../../tests/data/photon/photon.repo"),
        ),
        (
            "photon-updates.repo",
            include_str!("../../tests/data/photon/photon-updates.repo"),
        ),
        (
            "photon-release.repo",
            include_str!("../../tests/data/photon/photon-release.repo"),
        ),
        (
            "photon-extras.repo",
            include_str!("../../tests/data/photon/photon-extras.repo"),
        ),
        (
            "photon-debuginfo.repo",
            include_str!("../../tests/data/photon/photon-debuginfo.repo"),
        ),
        (
            "photon-srpms.repo",
            include_str!("../../tests/data/photon/photon-srpms.repo"),
        ),
        (
            "photon-iso.repo",
            include_str!("../../tests/data/photon/photon-iso.repo"),
        ),
    ];
    /// `/usr/lib/systemd/system-preset/*` (systemd, containerd, docker-engine): file name and
    /// text.
    pub const PRESETS: [(&str, &str); 3] = [
        (
            "10-defaults.preset",
            include_str!("../../tests/data/photon/10-defaults.preset"),
        ),
        (
            "50-containerd.preset",
            include_str!("../../tests/data/photon/50-containerd.preset"),
        ),
        (
            "50-docker.preset",
            include_str!("../../tests/data/photon/50-docker.preset"),
        ),
    ];
    /// `/usr/lib/systemd/system/*` of the packages a minimal install has (iptables,
    /// containerd, docker-engine): unit name and text.
    pub const UNITS: [(&str, &str); 3] = [
        (
            "iptables.service",
            include_str!("../../tests/data/photon/iptables.service"),
        ),
        (
            "containerd.service",
            include_str!("../../tests/data/photon/containerd.service"),
        ),
        (
            "docker.service",
            include_str!("../../tests/data/photon/docker.service"),
        ),
    ];
    /// The `Requires:` of the `minimal` metapackage, one name a line.
    pub const MINIMAL_PACKAGES: &str = include_str!("../../tests/data/photon/minimal-packages.txt");
    /// Where each file comes from, the packages' versions and what a minimal install holds.
    pub const README: &str = include_str!("../../tests/data/photon/README.md");
    /// kubernetes-kubeadm's kubelet unit and drop-in (not part of a minimal install).
    pub const KUBEADM_DROPIN: &str = include_str!("../../tests/data/photon/10-kubeadm.conf");
    pub const KUBELET_SERVICE: &str = include_str!("../../tests/data/photon/kubelet.service");
}

/// A fresh Photon OS 5.0 minimal install, derived from [`photon_files`].
mod photon_install {
    use super::photon_files::*;

    /// The host name the installer gives when none is asked for: `photon-%12x` of a random
    /// number (README, "/etc/hosts and other installer edits"). This one is such a name.
    pub const HOSTNAME: &str = "photon-3a9d61c07be2";

    /// The day of the install (days since 1970), which pwconv writes as every account's last
    /// password change. Any day: this one is 2024-10-04.
    const INSTALL_DAY: u32 = 20000;

    /// The rows of the first Markdown table under the README heading that starts with
    /// `heading`: cells trimmed, header and separator rows left out.
    fn table<'a>(heading: &str) -> Vec<Vec<&'a str>> {
        let mut lines = README.lines().skip_while(|l| !l.starts_with(heading));
        assert!(lines.next().is_some(), "README: no heading {heading:?}");
        lines
            .take_while(|l| !l.starts_with("## "))
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                l.trim()
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect()
            })
            .collect()
    }

    const VERSIONS: &str = "## Packages in the 5.0 branch specs";
    const MINIMAL: &str = "## Minimal install";

    /// Package name → `VERSION-RELEASE` with the dist tag, as rpm reports it (the README's
    /// table of the 5.0 specs; a meta package's `Requires` are its own spec's subpackages,
    /// of its version).
    fn versions() -> Vec<(String, String)> {
        let heading = README
            .lines()
            .find(|l| l.starts_with(VERSIONS))
            .expect("README: versions table");
        let dist = heading
            .split_once("dist tag `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(tag, _)| tag)
            .expect("README: dist tag");
        let mut out: Vec<(String, String)> = Vec::new();
        let mut subpackages: Vec<(String, String)> = Vec::new();
        for row in table(VERSIONS) {
            if let Some(also) = row[0].strip_prefix("(also)") {
                for pair in also.split(',') {
                    let (name, v) = pair.trim().split_once(' ').expect("README: name version");
                    out.push((name.into(), format!("{v}{dist}")));
                }
                continue;
            }
            let version = format!("{}{dist}", row[2]);
            if row[1].contains("meta")
                && let Some((_, requires)) = row[3].split_once("Requires ")
            {
                let requires = requires.split('.').next().unwrap_or("");
                for name in requires.split(" and ").flat_map(|n| n.split(", ")) {
                    subpackages.push((name.trim().into(), version.clone()));
                }
            }
            out.push((row[0].into(), version));
        }
        for (name, v) in subpackages {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, v));
            }
        }
        out
    }

    /// The packages the installer's "Photon Minimal" choice installs, as the README lists
    /// `packages_minimal.json`: `minimal` (whose `Requires` are [`MINIMAL_PACKAGES`]), the
    /// kernels, sudo and a few more.
    fn installer_choice() -> Vec<String> {
        let line = README
            .lines()
            .find(|l| l.contains("installs `common/data/packages_minimal.json`"))
            .expect("README: packages_minimal.json");
        let list = line.split_once("): ").expect("README: the list").1;
        let list = list.split(". ").next().unwrap_or("");
        list.split(", ")
            .map(|n| n.trim().trim_end_matches('.').trim_matches('`').to_string())
            .collect()
    }

    /// The packages a minimal install has: the installer's choice, the `Requires` of
    /// `minimal`, and what the README's minimal-install table says comes with them (a direct
    /// `Requires` or one pulled in by spec `Requires`, with the names it shows a package
    /// pulling in: `docker → docker-engine, ...`). Each with its version when the README
    /// gives one, else an empty version.
    pub fn packages() -> Vec<(String, String)> {
        let mut names: Vec<String> = installer_choice();
        names.extend(
            MINIMAL_PACKAGES
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
        for row in table(MINIMAL) {
            let name = row[0]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches(',');
            if !(row[1].starts_with("**yes**") || row[2].starts_with("**yes**")) {
                continue;
            }
            names.push(name.into());
            for pulled in row[2].split('→').skip(1) {
                let list = pulled.split('(').next().unwrap_or("");
                names.extend(
                    list.split(',')
                        .map(|n| n.trim().trim_matches('`').to_string())
                        .filter(|n| !n.is_empty()),
                );
            }
        }
        names.sort();
        names.dedup();
        let versions = versions();
        names
            .into_iter()
            .map(|n| {
                let v = versions
                    .iter()
                    .find(|(name, _)| *name == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (n, v)
            })
            .collect()
    }

    /// `/etc/shadow` as shadow's `%post` leaves it (`pwconv`: an entry per account of
    /// /etc/passwd, its password field copied, aging from login.defs: minimum 0, Photon's
    /// maximum 90, warning 7), then the installer's root password (README, "Users and
    /// groups"): here the SHA-512 crypt hash of `photon`.
    pub fn shadow() -> String {
        let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("rounds");
        let salt = "installer";
        let hash =
            sha_crypt::sha512_crypt_b64(b"photon", salt.as_bytes(), &params).expect("sha512 crypt");
        let root = format!("$6${salt}${hash}");
        PASSWD
            .lines()
            .filter_map(|l| l.split(':').next())
            .filter(|name| !name.is_empty())
            .map(|name| {
                let password = if name == "root" { root.as_str() } else { "x" };
                format!("{name}:{password}:{INSTALL_DAY}:0:90:7:::\n")
            })
            .collect()
    }

    /// `/etc/hosts` after the installer's edit (photon-os-installer's `m_updatehostname.py`,
    /// reproduced in the README): the line `127.0.0.1   localhost` and its line break become
    /// that line and `127.0.0.1   NAME`, with the same spacing and no line break, so the
    /// blank line after it ends the new line.
    pub fn hosts(hostname: &str) -> String {
        HOSTS
            .split_inclusive('\n')
            .map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["127.0.0.1", "localhost"] => {
                        let spacing = line["127.0.0.1".len()..]
                            .split("localhost")
                            .next()
                            .unwrap_or(" ");
                        format!("127.0.0.1{spacing}localhost\n127.0.0.1{spacing}{hostname}")
                    }
                    _ => line.to_string(),
                },
            )
            .collect()
    }

    /// The preset of `unit`: the first rule naming it in the preset files in the order of
    /// their names, else `enable` (no rule: systemd enables; README, "How iptables.service
    /// gets enabled").
    pub fn preset(unit: &str) -> &'static str {
        let mut presets = PRESETS;
        presets.sort_by_key(|(name, _)| *name);
        presets
            .iter()
            .flat_map(|(_, text)| text.lines())
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?, w.next()?))
            })
            .find(|(_, name)| *name == unit)
            .map_or("enable", |(verb, _)| verb)
    }

    /// The services a minimal install has: the unit files of its packages and the services
    /// the presets name to be enabled.
    pub fn services() -> Vec<&'static str> {
        let mut units: Vec<&str> = UNITS.iter().map(|(name, _)| *name).collect();
        for (_, text) in PRESETS {
            units.extend(text.lines().filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("enable"))
                    .then(|| w.next())
                    .flatten()
                    .filter(|u| u.ends_with(".service"))
            }));
        }
        units.sort();
        units.dedup();
        units
    }

    /// The value a sysctl file sets for `key`.
    pub fn sysctl<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim())
            .next_back()
    }
}

const SWAPS_NONE: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

impl Fixture {
    fn new(os_release: &str) -> Fixture {
        let facts = Facts::from_os_release(os_release).expect("fixture os-release");
        let mut f = Fixture {
            facts,
            state: State::default(),
        };
        f.state.packages = Some(Default::default());
        f.state.facts.os_release = Some(os_release.into());
        f = f
            .file("/etc/os-release", os_release, 0o644)
            .file("/proc/swaps", SWAPS_NONE, 0o444)
            .file("/proc/modules", "", 0o444)
            .file("/etc/fstab", "/dev/sda2 / ext4 defaults 1 1\n", 0o644)
            .file("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644)
            .file("/etc/group", "root:x:0:\n", 0o644)
            .file("/etc/shadow", "root:*:19000:0:90:7:::\n", 0o600)
            .file("/etc/hostname", "localhost\n", 0o644)
            .file("/proc/sys/net/ipv4/ip_forward", "0\n", 0o644)
            .absent("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .absent("/proc/sys/net/bridge/bridge-nf-call-ip6tables")
            .absent("/sys/module/br_netfilter")
            .dir("/sys/module/overlay");
        f.facts.hostname = "localhost".into();
        f
    }

    /// A Photon OS 5.0 host as its installer leaves it ("Photon Minimal"), its values from
    /// [`photon_files`]: its accounts (filesystem's passwd and group, the shadow pwconv and the
    /// installer make of them), sshd_config and sudoers, the installed packages with their
    /// versions (docker, containerd and cloud-init among them), the configuration files of
    /// those packages, and its services. Only the host name and the day of the install are
    /// the fixture's own (the installer picks them).
    ///
    /// The services as they stand after the first boot: each enabled or disabled by its
    /// preset; an enabled one active (wanted by multi-user.target, started at boot:
    /// iptables.service has loaded ip4save and ip6save), a disabled one inactive (nothing
    /// starts docker.service or containerd.service). The runtime files (/proc, /sys, fstab)
    /// are those of every fixture: no swap, overlay loaded, br_netfilter not; ip_forward as
    /// 50-security-hardening.conf sets it. Files the recorded Photon files do not hold are
    /// absent (systemd's timesyncd.conf, say).
    pub fn photon() -> Fixture {
        use photon_files::*;
        let hostname = photon_install::HOSTNAME;
        let ip_forward = photon_install::sysctl(SECURITY_HARDENING, "net.ipv4.ip_forward")
            .expect("50-security-hardening.conf sets net.ipv4.ip_forward");
        let mut f = Fixture::new(OS_RELEASE)
            .file("/usr/lib/os-release", OS_RELEASE, 0o644)
            .symlink("/etc/os-release", "/usr/lib/os-release")
            .file("/etc/photon-release", PHOTON_RELEASE, 0o644)
            .file("/etc/lsb-release", LSB_RELEASE, 0o644)
            .file("/etc/passwd", PASSWD, 0o644)
            .file("/etc/group", GROUP, 0o644)
            .file("/etc/shadow", &photon_install::shadow(), 0o400)
            .file("/etc/hostname", hostname, 0o644)
            .file("/etc/hosts", &photon_install::hosts(hostname), 0o644)
            .file("/etc/ssh/sshd_config", SSHD_CONFIG, 0o600)
            .file("/etc/sudoers", SUDOERS, 0o440)
            .file("/etc/cloud/cloud.cfg", CLOUD_CFG, 0o644)
            .file("/etc/containerd/config.toml", CONTAINERD_CONFIG, 0o644)
            .file(
                "/etc/sysctl.d/50-security-hardening.conf",
                SECURITY_HARDENING,
                0o644,
            )
            .file(
                "/proc/sys/net/ipv4/ip_forward",
                &format!("{ip_forward}\n"),
                0o644,
            )
            .file("/etc/systemd/scripts/ip4save", IP4SAVE, 0o644)
            .file("/etc/systemd/scripts/ip6save", IP6SAVE, 0o644)
            .file("/etc/systemd/scripts/iptables", IPTABLES_SCRIPT, 0o755)
            .file("/etc/locale-gen.conf", LOCALE_GEN, 0o644)
            .file(
                "/etc/systemd/network/99-dhcp-en.network",
                DHCP_NETWORK,
                0o644,
            )
            .file("/etc/tdnf/tdnf.conf", TDNF_CONF, 0o644);
        for (name, text) in REPOS {
            f = f.file(&format!("/etc/yum.repos.d/{name}"), text, 0o644);
        }
        for (name, text) in PRESETS {
            f = f.file(
                &format!("/usr/lib/systemd/system-preset/{name}"),
                text,
                0o644,
            );
        }
        for (name, text) in UNITS {
            f = f.file(&format!("/usr/lib/systemd/system/{name}"), text, 0o644);
        }
        let packages = photon_install::packages();
        let packages: Vec<(&str, &str)> = packages
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        f = f.packages(&packages);
        for unit in photon_install::services() {
            let (enablement, active) = match photon_install::preset(unit) {
                "enable" => ("enabled", "active"),
                _ => ("disabled", "inactive"),
            };
            f = f.unit(unit, enablement, active);
        }
        f.facts.hostname = hostname.into();
        f
    }

    /// A Debian 12 host.
    pub fn debian() -> Fixture {
        Fixture::new("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n")
            .file("/etc/group", "root:x:0:\nsudo:x:27:\nusers:x:100:\n", 0o644)
            .file("/etc/systemd/timesyncd.conf", "[Time]\n#NTP=\n#FallbackNTP=0.debian.pool.ntp.org\n", 0o644)
            .packages(&[("base-files", "12.4+deb12u8"), ("systemd", "252.33-1~deb12u1"), ("openssh-server", "1:9.2p1-2+deb12u5"), ("sudo", "1.9.13p3-1+deb12u1")])
            .unit("ssh.service", "enabled", "active")
    }

    /// A Rocky Linux 9 host (RHEL-like, dnf).
    pub fn rhel() -> Fixture {
        Fixture::new("NAME=\"Rocky Linux\"\nVERSION_ID=\"9.4\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n")
            .file("/etc/group", "root:x:0:\nwheel:x:10:\nusers:x:100:\n", 0o644)
            .packages(&[("rocky-release", "9.4-1.7.el9"), ("systemd", "252-32.el9_4"), ("openssh-server", "8.7p1-38.el9"), ("sudo", "1.9.5p2-10.el9_3")])
            .unit("sshd.service", "enabled", "active")
    }

    pub fn file(mut self, path: &str, content: &str, mode: u32) -> Fixture {
        let f = FileState {
            mode,
            owner: "root".into(),
            group: "root".into(),
            is_dir: false,
            content: content.as_bytes().to_vec(),
        };
        self.state.files.insert(path.into(), Some(f));
        self
    }

    pub fn dir(mut self, path: &str) -> Fixture {
        let f = FileState {
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
            is_dir: true,
            content: Vec::new(),
        };
        self.state.files.insert(path.into(), Some(f));
        self
    }

    /// `path` is a symlink to `target` (a file of the fixture): it reads as the target, and a
    /// directory listing shows where it points.
    pub fn symlink(mut self, path: &str, target: &str) -> Fixture {
        let f = self.state.files.get(target).cloned().flatten();
        self.state.files.insert(path.into(), f);
        self.state.links.insert(path.into(), target.into());
        self
    }

    pub fn absent(mut self, path: &str) -> Fixture {
        self.state.files.insert(path.into(), None);
        self
    }

    pub fn packages(mut self, pkgs: &[(&str, &str)]) -> Fixture {
        let p = self.state.packages.get_or_insert_with(Default::default);
        for (n, v) in pkgs {
            p.insert(n.to_string(), v.to_string());
        }
        self
    }

    /// The host without these packages (removed, or never installed).
    pub fn without_packages(mut self, names: &[&str]) -> Fixture {
        if let Some(p) = self.state.packages.as_mut() {
            for n in names {
                p.remove(*n);
            }
        }
        self
    }

    pub fn unit(mut self, name: &str, enablement: &str, active: &str) -> Fixture {
        self.state.units.insert(
            name.into(),
            UnitState {
                enablement: Enablement::parse(enablement),
                active: ActiveState::parse(active),
            },
        );
        self
    }

    pub fn programs(mut self, names: &[&str]) -> Fixture {
        for n in names {
            self.state.programs.insert(n.to_string(), true);
        }
        self
    }

    pub fn hostname(mut self, name: &str) -> Fixture {
        self.facts.hostname = name.into();
        self.file("/etc/hostname", &format!("{name}\n"), 0o644)
    }

    /// Every file of the host is in the fixture: a file it does not hold is absent, with no
    /// round trip to the recorder (whole-playbook plans).
    pub fn complete(mut self) -> Fixture {
        self.state.files_complete = true;
        self
    }

    pub fn in_container(mut self) -> Fixture {
        self.facts.container = Some("docker".into());
        self
    }

    /// A context in `mode` over this state, with a recorder that runs nothing.
    pub fn ctx(self, mode: Mode) -> (Ctx, Arc<Recorder>) {
        let rec = Arc::new(Recorder::new("fixture"));
        let opts = Options {
            mode,
            diff: true,
            ..Options::default()
        };
        (
            Ctx::with_state(Box::new(rec.clone()), self.facts, self.state, opts),
            rec,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::group_entry;

    fn text(f: &Fixture, path: &str) -> String {
        f.state.files[path].as_ref().unwrap().text()
    }

    /// The recorded Photon host is a minimal install as ../shared/photon describes it.
    #[test]
    fn photon_is_a_minimal_install() {
        let f = Fixture::photon();
        let group = text(&f, "/etc/group");
        assert_eq!(group_entry(&group, "wheel").unwrap().gid, "28");
        assert_eq!(group_entry(&group, "sudo").unwrap().gid, "27");
        assert!(group_entry(&group, "docker").is_none());
        assert!(text(&f, "/etc/ssh/sshd_config").contains("\nPermitRootLogin no\n"));
        assert!(text(&f, "/etc/sudoers").contains("\n%wheel ALL=(ALL) ALL \n"));
        assert_eq!(f.state.links["/etc/os-release"], "/usr/lib/os-release");
        assert_eq!(text(&f, "/proc/sys/net/ipv4/ip_forward"), "0\n");

        let pkgs = f.state.packages.as_ref().unwrap();
        // minimal's 41 Requires; the installer's 7 (minimal, linux, linux-esx, initramfs,
        // lvm2, less, sudo); 11 pulled in (containerd, containerd-extras, docker-engine,
        // docker-cli, tini, gawk, openssh-server, openssh-clients, shadow, kbd,
        // openssl-c_rehash).
        assert_eq!(photon_files::MINIMAL_PACKAGES.lines().count(), 41);
        for (name, version) in [
            ("docker", "27.3.1-5.ph5"),
            ("docker-engine", "27.3.1-5.ph5"),
            ("docker-cli", "27.3.1-5.ph5"),
            ("containerd", "1.6.21-13.ph5"),
            // docker-engine requires runc's shim, which only containerd-extras ships.
            ("containerd-extras", ""),
            ("cloud-init", "25.1-1.ph5"),
            ("iptables", "1.8.9-4.ph5"),
            ("openssh-server", "9.3p2-14.ph5"),
            ("sudo", "1.9.15p5-4.ph5"),
            ("shadow", "4.13-9.ph5"),
            ("kbd", "2.2.0-3.ph5"),
            ("openssl-c_rehash", "3.0.16-2.ph5"),
            ("minimal", "5.0-4.ph5"),
            ("tdnf", "3.5.11-1.ph5"),
            ("linux", ""),
            ("vim", ""),
        ] {
            assert_eq!(pkgs.get(name).map(String::as_str), Some(version), "{name}");
        }
        for absent in [
            "kubernetes",
            "kubernetes-kubeadm",
            "glibc-i18n",
            "nfs-utils",
            "haproxy",
        ] {
            assert!(!pkgs.contains_key(absent), "{absent}");
        }
        assert_eq!(pkgs.len(), 59);

        let unit = |name: &str| {
            let u = &f.state.units[name];
            (u.enablement.as_str(), u.active.as_str())
        };
        assert_eq!(unit("iptables.service"), ("enabled", "active"));
        assert_eq!(unit("docker.service"), ("disabled", "inactive"));
        assert_eq!(unit("containerd.service"), ("disabled", "inactive"));
        assert_eq!(unit("systemd-timesyncd.service"), ("enabled", "active"));
        assert_eq!(unit("systemd-networkd.service"), ("enabled", "active"));
        assert_eq!(f.state.units.len(), 8);
    }

    /// /etc/hosts as the README shows the installer's edit.
    #[test]
    fn photon_hosts_as_the_installer_leaves_it() {
        let readme = photon_files::README;
        let shown = readme
            .split_once("This result was reproduced")
            .and_then(|(_, rest)| rest.split_once("```\n"))
            .and_then(|(_, rest)| rest.split_once("  ```"))
            .map(|(block, _)| block)
            .unwrap();
        let shown: String = shown.lines().map(|l| format!("{}\n", l.trim())).collect();
        let hosts = photon_install::hosts("<hostname>");
        assert!(hosts.ends_with(&shown), "{hosts}\n---\n{shown}");
        assert!(
            photon_files::HOSTS.ends_with("localhost\n\n# End /etc/hosts (network card version)\n")
        );
        let f = Fixture::photon();
        assert_eq!(text(&f, "/etc/hostname"), photon_install::HOSTNAME);
        assert_eq!(f.facts.hostname, photon_install::HOSTNAME);
    }

    /// Every account has its shadow entry: no password but root's, Photon's maximum age.
    #[test]
    fn photon_shadow_as_pwconv_and_the_installer_leave_it() {
        let shadow = photon_install::shadow();
        let accounts: Vec<&str> = photon_files::PASSWD
            .lines()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        let entries: Vec<Vec<&str>> = shadow.lines().map(|l| l.split(':').collect()).collect();
        assert_eq!(entries.iter().map(|e| e[0]).collect::<Vec<_>>(), accounts);
        for e in &entries {
            assert_eq!(e.len(), 9, "{e:?}");
            assert_eq!(e[4], "90", "{e:?}");
            if e[0] == "root" {
                assert!(crate::users::is_sha512_crypt(e[1]), "{e:?}");
            } else {
                assert_eq!(e[1], "x", "{e:?}");
            }
        }
    }
}
