//! Recorded hosts for facts-in/commands-out tests: a state as a host would report it (Photon
//! OS 5.0 built from its real default files, Debian 12, Rocky 9), fed to a [`Ctx`] over a
//! [`Recorder`] that runs nothing. Tests then assert the plan: `ctx.actions()`.

use std::sync::Arc;

use crate::ctx::{Ctx, Mode, Options};
use crate::facts::Facts;
use crate::host::Recorder;
use crate::state::{FileState, State, UnitState};

/// A host's recorded state, built up fluently.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub facts: Facts,
    pub state: State,
}

/// Photon OS 5.0's real default files (tasks/tests/data/photon, from the photon 5.0 branch).
pub mod photon_files {
    pub const OS_RELEASE: &str = include_str!("../tests/data/photon/os-release");
    pub const CONTAINERD_CONFIG: &str = include_str!("../tests/data/photon/containerd-config.toml");
    pub const SECURITY_HARDENING: &str =
        include_str!("../tests/data/photon/50-security-hardening.conf");
    pub const IP4SAVE: &str = include_str!("../tests/data/photon/ip4save");
    pub const IP6SAVE: &str = include_str!("../tests/data/photon/ip6save");
    pub const LOCALE_GEN: &str = include_str!("../tests/data/photon/locale-gen.conf");
    pub const DHCP_NETWORK: &str = include_str!("../tests/data/photon/99-dhcp-en.network");
    pub const KUBEADM_DROPIN: &str = include_str!("../tests/data/photon/10-kubeadm.conf");
    pub const TDNF_CONF: &str = include_str!("../tests/data/photon/tdnf.conf");
    pub const KUBELET_SERVICE: &str = include_str!("../tests/data/photon/kubelet.service");
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
        f.state.facts.insert("os-release".into(), os_release.into());
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

    /// A Photon OS 5.0 host as installed ("Photon minimal"), from its real default files.
    pub fn photon() -> Fixture {
        use photon_files::*;
        Fixture::new(OS_RELEASE)
            .file(
                "/etc/group",
                "root:x:0:\nwheel:x:10:\nusers:x:100:\n",
                0o644,
            )
            .file("/etc/locale-gen.conf", LOCALE_GEN, 0o644)
            .file(
                "/etc/sysctl.d/50-security-hardening.conf",
                SECURITY_HARDENING,
                0o644,
            )
            .file("/etc/systemd/scripts/ip4save", IP4SAVE, 0o644)
            .file("/etc/systemd/scripts/ip6save", IP6SAVE, 0o644)
            .file(
                "/etc/systemd/network/99-dhcp-en.network",
                DHCP_NETWORK,
                0o644,
            )
            .file("/etc/tdnf/tdnf.conf", TDNF_CONF, 0o644)
            .file(
                "/etc/systemd/timesyncd.conf",
                "[Time]\n#NTP=\n#FallbackNTP=\n",
                0o644,
            )
            .packages(&[
                ("photon-release", "5.0-6.ph5"),
                ("tdnf", "3.5.11-1.ph5"),
                ("systemd", "253.19-10.ph5"),
                ("glibc", "2.36-16.ph5"),
                ("openssl", "3.0.16-2.ph5"),
                ("openssh-server", "9.3p2-14.ph5"),
                ("iptables", "1.8.9-4.ph5"),
                ("shadow", "4.13-5.ph5"),
                ("sudo", "1.9.15p5-1.ph5"),
            ])
            .unit("systemd-networkd.service", "enabled", "active")
            .unit("systemd-timesyncd.service", "enabled", "active")
            .unit("iptables.service", "enabled", "active")
            .unit("sshd.service", "enabled", "active")
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

    pub fn unit(mut self, name: &str, enablement: &str, active: &str) -> Fixture {
        self.state.units.insert(
            name.into(),
            UnitState {
                enablement: enablement.into(),
                active: active.into(),
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

/// The plan a context recorded: its modifying actions, one per line (`run ...`, `write ...`).
/// What facts-in/commands-out tests assert.
pub fn plan(cx: &Ctx) -> String {
    cx.actions().iter().map(|a| format!("{a}\n")).collect()
}

/// The same plan, one action a string.
pub fn actions(cx: &Ctx) -> Vec<String> {
    cx.actions().iter().map(|a| a.to_string()).collect()
}
