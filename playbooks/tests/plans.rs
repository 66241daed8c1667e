//! Facts in, commands out: every role against recorded hosts (Photon OS 5.0 from its real
//! default files, Rocky 9, Debian 12). The exact plan of commands and files is asserted, then
//! the same role runs again on the state the plan leads to and must send no modifying command.

use std::path::Path;

use expect_test::{Expect, expect};
use playbooks::testing::converge_answering;
use playbooks::{Inventory, Registry};
use tasks::testing::Fixture;

fn inventory(extra: &str) -> Inventory {
    let text = include_str!("../../inventory.toml").to_string() + extra;
    Inventory::parse(&text, Path::new("inventory.toml")).unwrap()
}

/// The plan of `playbook` for `host` on `fixture`, checked by [`converge`]: the steps run are
/// the steps listed, a converged host gets nothing, nothing is read outside the probe.
fn plan(playbook: &str, host: &str, fixture: Fixture, inv: &Inventory) -> String {
    let registry = Registry::default();
    let pb = registry.find(playbook).unwrap();
    let target = inv.target(host).unwrap();
    // What Photon OS 5.0's repositories offer (`kubernetes.source = "distro"` checks the
    // version asked for against it).
    let recorded = [(
        "tdnf list --disableexcludes kubernetes",
        "kubernetes.x86_64    1.27.16-2.ph5    photon-updates\n",
    )];
    // What the converged host answers beyond its files: apt-mark's holds once the first run
    // held the upstream packages, `locale -a` once the locale was generated.
    converge_answering(
        pb,
        target,
        fixture,
        &recorded,
        &[
            ("apt-mark showhold", "kubeadm\nkubectl\nkubelet\n"),
            ("locale -a", "C\nC.utf8\nPOSIX\nfr_FR.utf8\n"),
        ],
    )
}

fn check(playbook: &str, host: &str, fixture: Fixture, inv: &Inventory, want: Expect) {
    want.assert_eq(&plan(playbook, host, fixture, inv));
}

#[test]
fn photon_k8s_worker() {
    let inv = inventory("");
    check(
        "k8s-worker",
        "prdk8swok511",
        Fixture::photon(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run tdnf install -y --quiet kbd glibc-i18n
        write /etc/locale-gen.conf 0644 root:root
        run locale-gen.sh
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl restart systemd-timesyncd.service
        run tdnf install -y --quiet nfs-utils
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8swok511
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
        run tdnf install -y --quiet --disableexcludes kubernetes kubernetes-kubeadm
        write /etc/tdnf/tdnf.conf 0644 root:root
        run tdnf install -y --quiet containerd
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/sysconfig/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/scripts/ip4save 0644 root:root
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

#[test]
fn photon_k8s_master() {
    let inv = inventory("");
    check(
        "k8s-master",
        "prdk8smst501",
        Fixture::photon(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run tdnf install -y --quiet kbd glibc-i18n
        write /etc/locale-gen.conf 0644 root:root
        run locale-gen.sh
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl restart systemd-timesyncd.service
        run tdnf install -y --quiet nfs-utils
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8smst501
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
        run tdnf install -y --quiet --disableexcludes kubernetes kubernetes-kubeadm
        write /etc/tdnf/tdnf.conf 0644 root:root
        run tdnf install -y --quiet containerd
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/sysconfig/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/scripts/ip4save 0644 root:root
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10259 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10257 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 2379:2380 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

#[test]
fn photon_haproxy() {
    let inv = inventory("");
    check(
        "haproxy",
        "prdinfhap511",
        Fixture::photon(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run tdnf install -y --quiet kbd glibc-i18n
        write /etc/locale-gen.conf 0644 root:root
        run locale-gen.sh
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl restart systemd-timesyncd.service
        run tdnf install -y --quiet nfs-utils
        run tdnf install -y --quiet haproxy
        write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
        run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        write /etc/haproxy/haproxy.cfg 0644 root:root
        run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        run systemctl enable haproxy.service
        write /etc/systemd/scripts/ip4save 0644 root:root
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 443 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 80 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        run systemctl start haproxy.service
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

#[test]
fn rhel_k8s_worker() {
    let mut inv = inventory("");
    inv.kubernetes.source = "upstream".into();
    inv.kubernetes.version = "1.30".into();
    check(
        "k8s-worker",
        "prdk8swok501",
        Fixture::rhel(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run dnf install -y --quiet glibc-langpack-fr kbd
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        run dnf install -y --quiet chrony
        write /etc/chrony.conf 0644 root:root
        run systemctl enable chronyd.service
        run systemctl start chronyd.service
        run systemctl restart chronyd.service
        run dnf install -y --quiet nfs-utils
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8swok501
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
        write /etc/yum.repos.d/kubernetes.repo 0644 root:root
        run dnf install -y --quiet --disableexcludes=kubernetes kubelet kubeadm kubectl
        run dnf install -y --quiet containerd
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/sysconfig/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

#[test]
fn rhel_haproxy() {
    let inv = inventory("");
    check(
        "haproxy",
        "prdinfhap501",
        Fixture::rhel(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run dnf install -y --quiet glibc-langpack-fr kbd
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        run dnf install -y --quiet chrony
        write /etc/chrony.conf 0644 root:root
        run systemctl enable chronyd.service
        run systemctl start chronyd.service
        run systemctl restart chronyd.service
        run dnf install -y --quiet nfs-utils
        run dnf install -y --quiet haproxy
        write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
        run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        write /etc/haproxy/haproxy.cfg 0644 root:root
        run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        run systemctl enable haproxy.service
        run systemctl start haproxy.service
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

#[test]
fn debian_k8s_worker() {
    let mut inv = inventory("");
    inv.kubernetes.source = "upstream".into();
    inv.kubernetes.version = "1.30".into();
    check(
        "k8s-worker",
        "prdk8swok502",
        Fixture::debian(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G sudo kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run apt-get update -q -o DPkg::Lock::Timeout=120
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 locales kbd
        write /etc/locale.gen 0644 root:root
        run locale-gen
        write /etc/default/locale 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 systemd-timesyncd
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl enable systemd-timesyncd.service
        run systemctl start systemd-timesyncd.service
        run systemctl restart systemd-timesyncd.service
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 nfs-common
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8swok502
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
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
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 containerd
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/default/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

/// Taking over a Debian host prepared by hand: containerd's, docker's and kubelet's files
/// written before their packages (the seed's containerd snippet, with no `version = 2`).
/// containerd's install keeps the file there (no conffile prompt), and each file is edited,
/// not replaced; a second run changes nothing.
#[test]
fn debian_k8s_worker_taken_over() {
    let mut inv = inventory("");
    inv.kubernetes.source = "present".into();
    inv.kubernetes.docker = true;
    let fixture = Fixture::debian()
        .file(
            "/etc/containerd/config.toml",
            "disabled_plugins = [\"\"]\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
            0o644,
        )
        .file(
            "/etc/docker/daemon.json",
            "{\"log-driver\": \"journald\", \"registry-mirrors\": [\"https://mirror.example.lan\"]}\n",
            0o644,
        )
        .file(
            "/etc/default/kubelet",
            "KUBELET_EXTRA_ARGS=\"--node-ip=10.0.5.58\"\n",
            0o644,
        )
        .packages(&[("kubelet", "1.30.4-1.1"), ("kubeadm", "1.30.4-1.1")]);
    check(
        "k8s-worker",
        "prdk8swok512",
        fixture,
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G sudo kubeadmin
        run chpasswd -e
        run install -d -m 0700 -o kubeadmin -g kubeadmin /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run apt-get update -q -o DPkg::Lock::Timeout=120
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 locales kbd
        write /etc/locale.gen 0644 root:root
        run locale-gen
        write /etc/default/locale 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 systemd-timesyncd
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl enable systemd-timesyncd.service
        run systemctl start systemd-timesyncd.service
        run systemctl restart systemd-timesyncd.service
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 nfs-common
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8swok512
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 containerd
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/docker/daemon.json 0644 root:root
        write /etc/default/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}
