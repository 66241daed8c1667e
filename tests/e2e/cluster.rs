//! The three roles on a mini-cluster of systemd containers of the chosen base (1 haproxy, 1
//! master, 2 workers), prepared over ssh by the real runner with packages really installed
//! (apt on Debian, tdnf from Photon's repositories on Photon): check mode first (nothing may
//! change, and the exit code says changes are pending), then the real run, the state on every
//! host, and a second run that changes nothing. Where the state is the OS's own (package
//! names, file layout, the sudo group), the host's facts say which.

use nodeprep_tests::{Lab, Snapshot, Testbed, lab};
use serde_json::Value;
use tasks::{OsFamily, kubelet, locale};
use xtask::runner::EXIT_CHANGES_PENDING;

use crate::os;
use crate::worker::run_json_at;

const HOSTS: &[(&str, &str)] = &[
    ("prdinfhap501", "haproxy"),
    ("prdk8smst501", "k8s-master"),
    ("prdk8swok501", "k8s-worker"),
    ("prdk8swok502", "k8s-worker"),
];

/// Each role's playbook on its hosts, all at once; the events of every run.
fn run_roles(lab: &Lab, extra: &[&str]) -> Vec<(i32, Vec<Value>)> {
    let inv = lab.write_inventory(xtask::dev::lab::LAB_SETTINGS).unwrap();
    let inv = inv.as_path();
    std::thread::scope(|s| {
        let handles: Vec<_> = ["haproxy", "k8s-master", "k8s-worker"]
            .into_iter()
            .map(|role| {
                s.spawn(move || {
                    let mut args = vec!["run", role, "--role", role];
                    args.extend_from_slice(extra);
                    run_json_at(inv, &args)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn snapshot(lab: &Lab, host: &str) -> String {
    let packages = os::package_list(os::family(lab, host));
    lab.sh(host, &format!("find /etc /home /usr/local/share/ca-certificates -xdev -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum; {packages}; stat -c '%n %a %U' /etc/* | sort"))
        .unwrap()
}

#[test]
fn mini_cluster_converges_and_is_idempotent() {
    let lab = lab(HOSTS);
    xtask::dev::lab::install_kube_standins(&lab).unwrap();

    // Check mode on fresh hosts: nothing modified, and changes pending.
    let before: Vec<String> = HOSTS.iter().map(|(n, _)| snapshot(&lab, n)).collect();
    for (code, events) in run_roles(&lab, &["--check"]) {
        assert_eq!(code, i32::from(EXIT_CHANGES_PENDING), "{events:#?}");
    }
    let after: Vec<String> = HOSTS.iter().map(|(n, _)| snapshot(&lab, n)).collect();
    for (i, (name, _)) in HOSTS.iter().enumerate() {
        assert!(before[i] == after[i], "check mode modified {name}");
    }

    // The real run.
    for (code, events) in run_roles(&lab, &[]) {
        assert_eq!(code, 0, "{events:#?}");
    }
    for (name, role) in HOSTS {
        let sh = |script: &str| {
            lab.sh(name, script)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"))
        };
        let os = os::family(&lab, name);
        // The sudo group is the OS's: `sudo` on Debian, `wheel` on Photon.
        let sudo = os.sudo_group();
        assert!(
            sh("id -nG kubeadmin").split_whitespace().any(|g| g == sudo),
            "{name}: kubeadmin not in {sudo}"
        );
        assert!(
            sh("getent shadow kubeadmin").starts_with("kubeadmin:$6$nodeprepdemo$"),
            "{name}: password hash"
        );
        assert!(sh("cat /home/kubeadmin/.ssh/authorized_keys").contains("ops@example.lan"));
        assert_eq!(
            sh("chage -l root | grep -i 'maximum number'")
                .trim()
                .rsplit(' ')
                .next(),
            Some("99999")
        );
        // The generator's list and the system locale file are the OS's (see tasks::locale):
        // /etc/locale.gen and /etc/default/locale on Debian, /etc/locale-gen.conf and
        // /etc/locale.conf on Photon.
        let (generated, system) = match os {
            OsFamily::Debian => (locale::LOCALE_GEN, locale::DEFAULT_LOCALE),
            OsFamily::Photon | OsFamily::Rhel => (locale::LOCALE_GEN_CONF, locale::LOCALE_CONF),
        };
        assert!(
            sh(&format!("cat {generated}"))
                .lines()
                .any(|l| l.split_whitespace().eq(["fr_FR.UTF-8", "UTF-8"])),
            "{name}: fr_FR.UTF-8 not listed in {generated}"
        );
        assert!(
            sh("locale -a").to_lowercase().contains("fr_fr.utf8"),
            "{name}: locale not generated"
        );
        assert!(sh(&format!("cat {system}")).contains("LANG=fr_FR.UTF-8"));
        assert!(
            sh("cat /etc/systemd/timesyncd.conf")
                .lines()
                .any(|l| l == "NTP=ntp1.example.lan ntp2.example.lan")
        );
        // The NFS client and the locale packages by the OS's names (tasks::pkg, tasks::locale).
        let packages: &[&str] = match os {
            OsFamily::Debian => &["nfs-common", "locales", "kbd"],
            OsFamily::Photon | OsFamily::Rhel => &["nfs-utils", "glibc-i18n", "kbd"],
        };
        for p in packages {
            assert!(os::installed(&lab, name, p), "{name}: {p}");
        }
        if role.starts_with("k8s-") {
            assert!(
                os::installed(&lab, name, "containerd"),
                "{name}: containerd"
            );
            let cfg = sh("cat /etc/containerd/config.toml");
            assert!(cfg.contains("SystemdCgroup = true"), "{name}: {cfg}");
            assert_eq!(sh("systemctl is-enabled containerd").trim(), "enabled");
            assert!(sh("cat /etc/crictl.yaml").contains("unix:///run/containerd/containerd.sock"));
            // /etc/default/kubelet on Debian, /etc/sysconfig/kubelet on Photon.
            let extra_args = kubelet::extra_args_file(os);
            assert!(sh(&format!("cat {extra_args}")).contains("--cgroup-driver=systemd"));
            assert_eq!(sh("systemctl is-enabled kubelet").trim(), "enabled");
            assert!(
                sh("cat /etc/sysctl.d/99-kubernetes-cri.conf").contains("net.ipv4.ip_forward = 1")
            );
            assert!(sh("cat /etc/modules-load.d/containerd.conf").contains("br_netfilter"));
        } else {
            let cfg = sh("cat /etc/haproxy/haproxy.cfg");
            assert!(
                cfg.contains("6443") && cfg.contains("prdk8smst501"),
                "{name}: {cfg}"
            );
            assert_eq!(sh("systemctl is-enabled haproxy").trim(), "enabled");
            assert_eq!(sh("systemctl is-active haproxy").trim(), "active");
        }
    }

    // Second run: nothing changes anywhere, by the recap and on the hosts.
    let inv = lab.write_inventory(xtask::dev::lab::LAB_SETTINGS).unwrap();
    let taken = || -> Vec<Snapshot> {
        HOSTS
            .iter()
            .map(|(n, role)| nodeprep_tests::snapshot(&lab, &inv, role, n))
            .collect()
    };
    let before = taken();
    for (code, events) in run_roles(&lab, &[]) {
        assert_eq!(code, 0, "{events:#?}");
        for recap in events.iter().filter(|e| e["event"] == "recap") {
            assert_eq!(
                recap["changed"], 0,
                "second run changed something: {events:#?}"
            );
        }
    }
    for (b, a) in before.iter().zip(taken()) {
        b.assert_same(&a, "second run");
    }
}
