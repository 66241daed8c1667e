//! Facts in, commands out: every role against recorded hosts (Photon OS 5.0 from its real
//! default files, Rocky 9, Debian 12). The exact plan of commands and files is asserted, then
//! the same role runs again on the state the plan leads to and must send no modifying command.

use std::path::Path;

use expect_test::{Expect, expect};
use playbooks::inventory::Source;
use playbooks::testing::converge_answering;
use playbooks::{Inventory, Registry};
use tasks::testing::Fixture;

/// The example inventory with its placeholders confirmed (a run refuses to write them: see
/// `placeholders_refuse_the_plan`), so the plans are those of an operator who checked them.
fn inventory(extra: &str) -> Inventory {
    let text = include_str!("../../inventory.toml").to_string() + extra;
    let mut inv = Inventory::parse(&text, Path::new("inventory.toml")).unwrap();
    assert!(!inv.placeholders.is_empty());
    inv.placeholders.clear();
    inv
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
        write /etc/yum.repos.d/photon.repo 0644 root:root
        write /etc/yum.repos.d/photon-updates.repo 0644 root:root
        write /etc/yum.repos.d/photon-release.repo 0644 root:root
        write /etc/yum.repos.d/photon-extras.repo 0644 root:root
        write /etc/yum.repos.d/photon-debuginfo.repo 0644 root:root
        write /etc/yum.repos.d/photon-srpms.repo 0644 root:root
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run tdnf install -y --quiet glibc-i18n
        write /etc/locale-gen.conf 0644 root:root
        run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl restart systemd-timesyncd.service
        run tdnf install -y --quiet nfs-utils
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8swok511
        write /etc/hosts 0644 root:root
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
        run tdnf install -y --quiet --disableexcludes kubernetes kubernetes-kubeadm
        write /etc/tdnf/tdnf.conf 0644 root:root
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/docker/daemon.json 0644 root:root
        run systemctl enable docker.service
        run systemctl start docker.service
        write /etc/sysconfig/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
        run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
        write /etc/systemd/scripts/ip4save 0644 root:root
        run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 5473 -j ACCEPT
        run iptables -w 10 -I INPUT -p udp -m udp --dport 4789 -j ACCEPT
        run iptables -w 10 -I INPUT -p 4 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 179 -j ACCEPT
        run iptables -w 10 -I INPUT -p udp -m udp --dport 30000:32767 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
        write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
        run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
        write /etc/systemd/scripts/ip4save 0644 root:root
        run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
        run iptables -w 10 -A FORWARD -s 10.244.0.0/16 -j ACCEPT
        run iptables -w 10 -A FORWARD -d 10.244.0.0/16 -j ACCEPT
        run iptables -w 10 -A FORWARD -s 10.96.0.0/12 -j ACCEPT
        run iptables -w 10 -A FORWARD -d 10.96.0.0/12 -j ACCEPT
        write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg 0644 root:root
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
        write /etc/yum.repos.d/photon.repo 0644 root:root
        write /etc/yum.repos.d/photon-updates.repo 0644 root:root
        write /etc/yum.repos.d/photon-release.repo 0644 root:root
        write /etc/yum.repos.d/photon-extras.repo 0644 root:root
        write /etc/yum.repos.d/photon-debuginfo.repo 0644 root:root
        write /etc/yum.repos.d/photon-srpms.repo 0644 root:root
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run tdnf install -y --quiet glibc-i18n
        write /etc/locale-gen.conf 0644 root:root
        run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl restart systemd-timesyncd.service
        run tdnf install -y --quiet nfs-utils
        write /etc/hostname 0644 root:root
        run hostnamectl set-hostname prdk8smst501
        write /etc/hosts 0644 root:root
        write /etc/modules-load.d/containerd.conf 0644 root:root
        run modprobe br_netfilter
        write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
        run sysctl --system
        run tdnf install -y --quiet --disableexcludes kubernetes kubernetes-kubeadm
        write /etc/tdnf/tdnf.conf 0644 root:root
        write /etc/containerd/config.toml 0644 root:root
        run systemctl enable containerd.service
        run systemctl start containerd.service
        write /etc/crictl.yaml 0644 root:root
        write /etc/docker/daemon.json 0644 root:root
        run systemctl enable docker.service
        run systemctl start docker.service
        write /etc/sysconfig/kubelet 0644 root:root
        run systemctl enable kubelet.service
        write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
        run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
        write /etc/systemd/scripts/ip4save 0644 root:root
        run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 5473 -j ACCEPT
        run iptables -w 10 -I INPUT -p udp -m udp --dport 4789 -j ACCEPT
        run iptables -w 10 -I INPUT -p 4 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 179 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10259 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10257 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 10250 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 2379:2380 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
        run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
        write /etc/systemd/scripts/ip4save 0644 root:root
        run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
        run iptables -w 10 -A FORWARD -s 10.244.0.0/16 -j ACCEPT
        run iptables -w 10 -A FORWARD -d 10.244.0.0/16 -j ACCEPT
        run iptables -w 10 -A FORWARD -s 10.96.0.0/12 -j ACCEPT
        run iptables -w 10 -A FORWARD -d 10.96.0.0/12 -j ACCEPT
        write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg 0644 root:root
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
        write /etc/yum.repos.d/photon.repo 0644 root:root
        write /etc/yum.repos.d/photon-updates.repo 0644 root:root
        write /etc/yum.repos.d/photon-release.repo 0644 root:root
        write /etc/yum.repos.d/photon-extras.repo 0644 root:root
        write /etc/yum.repos.d/photon-debuginfo.repo 0644 root:root
        write /etc/yum.repos.d/photon-srpms.repo 0644 root:root
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run tdnf install -y --quiet glibc-i18n
        write /etc/locale-gen.conf 0644 root:root
        run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8
        write /etc/locale.conf 0644 root:root
        write /etc/vconsole.conf 0644 root:root
        write /etc/systemd/timesyncd.conf 0644 root:root
        run systemctl restart systemd-timesyncd.service
        run tdnf install -y --quiet nfs-utils
        write /etc/hosts 0644 root:root
        run tdnf install -y --quiet haproxy
        write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
        run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        write /etc/haproxy/haproxy.cfg 0644 root:root
        run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        run systemctl enable haproxy.service
        write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
        run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
        write /etc/systemd/scripts/ip4save 0644 root:root
        run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 443 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 80 -j ACCEPT
        run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
        run systemctl start haproxy.service
        write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg 0644 root:root
        write /etc/systemd/network/10-static-en.network 0644 root:root
    "#]],
    );
}

#[test]
fn rhel_k8s_worker() {
    let mut inv = inventory("");
    inv.kubernetes.source = Source::Upstream;
    inv.kubernetes.version = "1.30".into();
    check(
        "k8s-worker",
        "prdk8swok501",
        Fixture::rhel(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G wheel kubeadmin
        run chpasswd -e
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
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
        write /etc/hosts 0644 root:root
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
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
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
        write /etc/hosts 0644 root:root
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
    inv.kubernetes.source = Source::Upstream;
    inv.kubernetes.version = "1.30".into();
    check(
        "k8s-worker",
        "prdk8swok502",
        Fixture::debian(),
        &inv,
        expect![[r#"
        run useradd -m -s /bin/bash -U -G sudo kubeadmin
        run chpasswd -e
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run apt-get update -q -o DPkg::Lock::Timeout=120
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 locales kbd
        write /etc/locale.gen 0644 root:root
        run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8
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
        write /etc/hosts 0644 root:root
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

/// Rocky with firewalld running: the worker's ports and the CNI's protocol go to the runtime
/// and the permanent configuration of the default zone; the FORWARD rules have no firewalld
/// equivalent (the step is skipped with the reason: see tasks' firewall tests).
#[test]
fn rhel_k8s_worker_firewalld() {
    let mut inv = inventory("");
    inv.kubernetes.source = Source::Upstream;
    let plan = plan(
        "k8s-worker",
        "prdk8swok501",
        Fixture::rhel().unit("firewalld.service", "enabled", "active"),
        &inv,
    );
    let firewall: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("firewall-cmd") || l.contains("iptables"))
        .collect();
    expect![[r#"
        [
            "run firewall-cmd --add-port=10250/tcp --add-port=30000-32767/tcp --add-port=30000-32767/udp --add-port=179/tcp --add-protocol=ipencap --add-port=4789/udp --add-port=5473/tcp",
            "run firewall-cmd --permanent --add-port=10250/tcp --add-port=30000-32767/tcp --add-port=30000-32767/udp --add-port=179/tcp --add-protocol=ipencap --add-port=4789/udp --add-port=5473/tcp",
        ]
    "#]]
    .assert_debug_eq(&firewall);
}

/// `admin.passwordless_sudo = true`: after the admin's own steps, the sudoers drop-in,
/// checked by visudo before it goes live. Photon's /etc/sudoers includes /etc/sudoers.d
/// (`@includedir`, sudo 1.9.15p5).
#[test]
fn photon_haproxy_admin_passwordless_sudo() {
    let text = include_str!("../../inventory.toml").replacen(
        "\nssh_keys = [",
        "\npasswordless_sudo = true\nssh_keys = [",
        1,
    );
    let mut inv = Inventory::parse(&text, Path::new("inventory.toml")).unwrap();
    inv.placeholders.clear();
    assert!(inv.admin.as_ref().unwrap().passwordless_sudo);
    check(
        "haproxy",
        "prdinfhap511",
        Fixture::photon(),
        &inv,
        expect![[r#"
            write /etc/yum.repos.d/photon.repo 0644 root:root
            write /etc/yum.repos.d/photon-updates.repo 0644 root:root
            write /etc/yum.repos.d/photon-release.repo 0644 root:root
            write /etc/yum.repos.d/photon-extras.repo 0644 root:root
            write /etc/yum.repos.d/photon-debuginfo.repo 0644 root:root
            write /etc/yum.repos.d/photon-srpms.repo 0644 root:root
            run useradd -m -s /bin/bash -U -G wheel kubeadmin
            run chpasswd -e
            run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
            write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
            run chage -I -1 -m 0 -M 99999 -E -1 kubeadmin
            run chage -I -1 -m 0 -M 99999 -E -1 root
            write /etc/sudoers.d/.nodeprep-kubeadmin.candidate 0440 root:root
            run visudo -c -f /etc/sudoers.d/.nodeprep-kubeadmin.candidate
            write /etc/sudoers.d/nodeprep-kubeadmin 0440 root:root
            run rm -f /etc/sudoers.d/.nodeprep-kubeadmin.candidate
            run tdnf install -y --quiet glibc-i18n
            write /etc/locale-gen.conf 0644 root:root
            run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8
            write /etc/locale.conf 0644 root:root
            write /etc/vconsole.conf 0644 root:root
            write /etc/systemd/timesyncd.conf 0644 root:root
            run systemctl restart systemd-timesyncd.service
            run tdnf install -y --quiet nfs-utils
            write /etc/hosts 0644 root:root
            run tdnf install -y --quiet haproxy
            write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
            run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            write /etc/haproxy/haproxy.cfg 0644 root:root
            run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            run systemctl enable haproxy.service
            write /etc/systemd/scripts/ip4save.nodeprep-candidate 0600 root:root
            run iptables-restore -w 10 --test /etc/systemd/scripts/ip4save.nodeprep-candidate
            write /etc/systemd/scripts/ip4save 0644 root:root
            run rm -f /etc/systemd/scripts/ip4save.nodeprep-candidate
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 443 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 80 -j ACCEPT
            run iptables -w 10 -I INPUT -p tcp -m tcp --dport 6443 -j ACCEPT
            run systemctl start haproxy.service
            write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg 0644 root:root
            write /etc/systemd/network/10-static-en.network 0644 root:root
        "#]],
    );
}

/// The example as written: every role's plan is refused, before any host is touched, naming
/// each placeholder it would write (file, line, host, field), or the placeholder address it
/// would connect to; with the network left alone (`write = false`), only that address is.
#[test]
fn placeholders_refuse_the_plan() {
    let text = include_str!("../../inventory.toml");
    let mut inv = Inventory::parse(text, Path::new("inventory.toml")).unwrap();
    let registry = Registry::default();
    let refusal = |inv: &Inventory, host: &str| {
        let t = inv.target(host).unwrap();
        let pb = registry.find(t.host.role.name()).unwrap();
        let mut p = tasks::Plan::new();
        pb.plan(t, &mut p).err().map(|e| e.to_string())
    };
    for host in inv.hosts.keys() {
        let err = refusal(&inv, host).unwrap_or_else(|| panic!("{host}: planned"));
        let line = |field: &str| {
            let p = inv.placeholder(Some(host), field).unwrap();
            format!(
                "inventory.toml:{}: host {host}: {field}: placeholder",
                p.line.unwrap()
            )
        };
        for field in ["network.prefix", "network.gateway"] {
            assert!(err.contains(&line(field)), "{host}: {err}");
        }
        assert!(err.contains("system.dns: placeholder"), "{host}: {err}");
    }
    let err = refusal(&inv, "prdinfhap511").unwrap();
    assert!(
        err.contains(
            "host prdinfhap511: address: placeholder \"192.168.5.45\" (ssh would connect to it)"
        ),
        "{err}"
    );
    // The network left as it is: nothing of it is written, the placeholders are not used.
    for n in inv.hosts.values_mut().filter_map(|h| h.network.as_mut()) {
        n.write = false;
    }
    assert_eq!(refusal(&inv, "prdk8swok501"), None);
    let err = refusal(&inv, "prdinfhap511").unwrap();
    assert!(
        err.contains("host prdinfhap511: address: placeholder"),
        "{err}"
    );
    assert!(!err.contains("network."), "{err}");
    // Listing the steps writes nothing: placeholders do not stop it.
    let inv = Inventory::parse(text, Path::new("inventory.toml")).unwrap();
    let pb = registry.find("haproxy").unwrap();
    assert!(
        playbooks::registry::listed_steps(pb, &inv)
            .unwrap()
            .contains(&"network file".to_string())
    );
}

/// The network part of a plan: its actions.
fn network_actions(plan: &str) -> Vec<&str> {
    plan.lines()
        .map(str::trim)
        .filter(|l| l.contains("/etc/systemd/network/") || l.contains("/etc/cloud/"))
        .collect()
}

/// A Photon minimal install carries cloud-init (minimal-packages.txt) with its cloud.cfg;
/// here cloud-init also left its own file for eth0 (a datasource gave it a network). Where the
/// inventory gives nodeprep the network: the drop-in turns cloud-init's network configuration
/// off, its file is removed, then the static file is written; the converged host gets nothing,
/// and nothing is read outside the probe.
#[test]
fn photon_cloud_init_kept_off_the_static_network() {
    let inv = inventory("");
    let photon = || {
        Fixture::photon().file(
            "/etc/systemd/network/10-cloud-init-eth0.network",
            "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n",
            0o644,
        )
    };
    assert_eq!(
        network_actions(&plan("k8s-worker", "prdk8swok511", photon(), &inv)),
        [
            "write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg 0644 root:root",
            "remove /etc/systemd/network/10-cloud-init-eth0.network",
            "write /etc/systemd/network/10-static-en.network 0644 root:root",
        ]
    );
    assert_eq!(
        network_actions(&plan("haproxy", "prdinfhap501", photon(), &inv)).len(),
        3
    );
}

/// A network table alone writes nothing: the static file and cloud-init are left as they are
/// unless `network.write = true`.
#[test]
fn network_written_only_when_asked() {
    let photon = || {
        Fixture::photon().file(
            "/etc/systemd/network/10-cloud-init-eth0.network",
            "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n",
            0o644,
        )
    };
    let mut inv = inventory("");
    inv.hosts
        .get_mut("prdk8swok511")
        .unwrap()
        .network
        .as_mut()
        .unwrap()
        .write = false;
    assert!(network_actions(&plan("k8s-worker", "prdk8swok511", photon(), &inv)).is_empty());
    // Its steps say why.
    let t = inv.target("prdk8swok511").unwrap();
    let pb = Registry::default();
    let pb = pb.find("k8s-worker").unwrap();
    let (mut cx, _rec) = photon().complete().ctx(tasks::Mode::Check);
    let mut p = tasks::Plan::new();
    pb.plan(t, &mut p).unwrap();
    let network_steps = tasks::Selection::new(
        &["cloud-init network off,cloud-init network file removed,network file,network applied"],
        &[],
    );
    let _ = p.run(&mut cx, &network_steps);
    for step in [
        "cloud-init network off",
        "cloud-init network file removed",
        "network file",
        "network applied",
    ] {
        let r = cx.records().iter().find(|r| r.name == step).unwrap();
        assert_eq!(
            r.outcome,
            tasks::Outcome::Skipped(
                "network.write is not set: nodeprep leaves this host's network as it is".into()
            ),
            "{step}"
        );
    }
    // Asked: written.
    let inv = inventory("");
    assert_eq!(
        network_actions(&plan("k8s-worker", "prdk8swok511", photon(), &inv)).len(),
        3
    );
}

/// Taking over a Debian host prepared by hand: containerd's, docker's and kubelet's files
/// written before their packages (the seed's containerd snippet, with no `version = 2`).
/// containerd's install keeps the file there (no conffile prompt), and each file is edited,
/// not replaced; a second run changes nothing.
#[test]
fn debian_k8s_worker_taken_over() {
    let mut inv = inventory("");
    inv.kubernetes.source = Source::Present;
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
        run runuser -u kubeadmin -- mkdir -m 0700 -- /home/kubeadmin/.ssh
        write /home/kubeadmin/.ssh/authorized_keys 0600 kubeadmin:kubeadmin
        run chage -I -1 -m 0 -M 99999 -E -1 root
        run apt-get update -q -o DPkg::Lock::Timeout=120
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 locales kbd
        write /etc/locale.gen 0644 root:root
        run localedef -i fr_FR -c -f UTF-8 -A /usr/share/locale/locale.alias fr_FR.UTF-8
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
        write /etc/hosts 0644 root:root
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

/// apt's lists found fresh by the probe (refreshed 10 minutes ago, under the default hour of
/// `system.package_lists_max_age`): no `apt-get update` before the first install; the one
/// after the Kubernetes repository is added stays, whatever the lists' age.
#[test]
fn debian_k8s_worker_fresh_lists() {
    let mut inv = inventory("");
    inv.kubernetes.source = Source::Upstream;
    inv.kubernetes.version = "1.30".into();
    let mut fixture = Fixture::debian();
    fixture.state.package_lists = Some(tasks::state::PackageLists {
        age_secs: 600,
        indexes: 3,
    });
    let updates = |plan: &str| -> Vec<usize> {
        plan.lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("run apt-get update"))
            .map(|(i, _)| i)
            .collect()
    };
    let fresh = plan("k8s-worker", "prdk8swok502", fixture.clone(), &inv);
    let list_written = fresh
        .lines()
        .position(|l| l == "write /etc/apt/sources.list.d/kubernetes.list 0644 root:root")
        .unwrap();
    assert_eq!(updates(&fresh), [list_written + 1], "{fresh}");
    // A maximum age of 0: refreshed before the first install as well.
    inv.system.package_lists_max_age = 0;
    let stale = plan("k8s-worker", "prdk8swok502", fixture, &inv);
    assert_eq!(updates(&stale).len(), 2, "{stale}");
    assert!(
        stale
            .lines()
            .nth(updates(&stale)[0] + 1)
            .unwrap()
            .ends_with(" locales kbd"),
        "{stale}"
    );
}

/// The first run in apply mode on a recorded host: the packages that check mode shows each
/// step installing on its own go, all of them, in one install command before the first step;
/// each step then reports its own (`changed`, `installed: ...`) and installs nothing again.
#[test]
fn first_run_installs_in_one_transaction() {
    let registry = Registry::default();
    for (role, host, fixture, os) in [
        (
            "k8s-worker",
            "prdk8swok512",
            Fixture::debian().packages(&[("kubelet", "1.30.4-1.1"), ("kubeadm", "1.30.4-1.1")]),
            tasks::OsFamily::Debian,
        ),
        (
            "haproxy",
            "prdinfhap511",
            Fixture::photon(),
            tasks::OsFamily::Photon,
        ),
        (
            "k8s-master",
            "prdk8smst501",
            Fixture::rhel(),
            tasks::OsFamily::Rhel,
        ),
    ] {
        let mut inv = inventory("");
        inv.kubernetes.source = Source::Present;
        let pb = registry.find(role).unwrap();
        let t = inv.target(host).unwrap();
        let install = format!("{} ", tasks::pkg::install_argv(os).join(" "));

        // Check mode: what each step would install.
        let (mut cx, _rec) = fixture.clone().complete().ctx(tasks::Mode::Check);
        let mut p = tasks::Plan::new();
        pb.plan(t, &mut p).unwrap();
        assert!(p.run(&mut cx, &tasks::Selection::default()).error.is_none());
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        for r in cx.records() {
            let names: Vec<String> = r
                .actions
                .iter()
                .filter_map(|a| {
                    a.to_string()
                        .strip_prefix(&format!("run {install}"))
                        .map(str::to_string)
                })
                .flat_map(|names| names.split(' ').map(str::to_string).collect::<Vec<_>>())
                .collect();
            if !names.is_empty() {
                steps.push((r.name.clone(), names));
            }
        }
        assert!(steps.len() >= 3, "{role}: {steps:?}");
        let all: Vec<String> = steps.iter().flat_map(|(_, n)| n.clone()).collect();

        // Apply mode, those steps: one transaction.
        let (mut cx, rec) = fixture.complete().ctx(tasks::Mode::Apply);
        let mut after: String = cx
            .state()
            .packages
            .as_ref()
            .unwrap()
            .keys()
            .map(|n| format!("{n} 1\n"))
            .collect();
        after.extend(all.iter().map(|n| format!("{n} 1\n")));
        rec.reply(
            "sh -c 'if command -v rpm",
            tasks::Output {
                status: Some(0),
                stdout: after.into_bytes(),
                stderr: vec![],
            },
        );
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        let mut p = tasks::Plan::new();
        pb.plan(t, &mut p).unwrap();
        let ran = p.run(&mut cx, &tasks::Selection::new(&names, &[]));
        assert!(ran.error.is_none(), "{role}: {:?}", ran.error);
        let installs: Vec<String> = rec
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains(" install "))
            .collect();
        assert_eq!(installs, [format!("{install}{}", all.join(" "))], "{role}");
        for (step, names) in &steps {
            let r = cx.records().iter().find(|r| &r.name == step).unwrap();
            assert_eq!(r.outcome.label(), "changed", "{role}: {step}");
            assert_eq!(
                r.diffs,
                [format!("installed: {}\n", names.join(" "))],
                "{role}: {step}"
            );
            assert!(r.actions.is_empty(), "{role}: {step}: {:?}", r.actions);
        }
    }
}

/// The Photon traits a source read found (tests/data/photon/README.md "More facts"): a worker
/// without docker-engine gets runc's shim (`containerd-extras`); the installer's
/// `127.0.0.1   <old name>` line becomes the node's name at its cluster address (nsswitch has
/// `hosts: files dns`, no myhostname); kubelet is told that address (`--node-ip`).
#[test]
fn photon_node_named_at_its_cluster_address_with_runc_shim() {
    let inv = inventory("");
    let registry = Registry::default();
    let pb = registry.find("k8s-worker").unwrap();
    let t = inv.target("prdk8swok511").unwrap();
    let (mut cx, _rec) = Fixture::photon()
        .without_packages(&["docker", "docker-engine", "containerd-extras"])
        .complete()
        .ctx(tasks::Mode::Check);
    let mut p = tasks::Plan::new();
    pb.plan(t, &mut p).unwrap();
    let names = [
        "containerd installed",
        "name resolves",
        "kubelet extra args",
    ];
    let ran = p.run(&mut cx, &tasks::Selection::new(&names, &[]));
    assert!(ran.error.is_none(), "{:?}", ran.error);
    let mut out = String::new();
    for r in cx.records() {
        out.push_str(&format!("{} {}\n", r.outcome.label(), r.name));
        for d in &r.diffs {
            out.push_str(d);
        }
    }
    expect![[r#"
        changed name resolves
        --- /etc/hosts (before)
        +++ /etc/hosts (after)
        @@ -3,5 +3,5 @@
         ::1         ipv6-localhost ipv6-loopback
         127.0.0.1   localhost.localdomain
         127.0.0.1   localhost
        -127.0.0.1   photon-3a9d61c07be2
        +192.168.5.57   prdk8swok511
         # End /etc/hosts (network card version)
        changed containerd installed
        would install: containerd-extras
        changed kubelet extra args
        --- /dev/null
        +++ /etc/sysconfig/kubelet (after)
        @@ -0,0 +1 @@
        +KUBELET_EXTRA_ARGS="--cgroup-driver=systemd --node-ip=192.168.5.57"
    "#]]
    .assert_eq(&out);
}

/// `[proxy]` and `[packages]` at every level: the top level for every host, the DMZ zone's
/// proxy for its hosts, a host's own `no_proxy`.
const SOURCES: &str = r#"
[proxy]
http = "http://ops:s3cret@proxy.corp.lan:3128"
no_proxy = [".corp.lan"]

[packages]
photon = "https://mirror.corp.lan/photon-remote"
rhel = "https://mirror.corp.lan/rocky-remote"
gpgcheck = true

[zones.dmz.proxy]
http = "http://ops:s3cret@dmzproxy.corp.lan:3128"

[hosts.prdk8swok511.proxy]
no_proxy = [".corp.lan", "10.20.0.0/16"]
"#;

/// The lines the tables add to the Photon worker's plan: the repo files at the mirror, tdnf's
/// proxy (0600: the URL holds credentials), containerd's and docker's drop-ins with systemd
/// reloaded; each file's content, credentials never in a diff.
#[test]
fn photon_k8s_worker_through_proxy_and_mirror() {
    let inv = inventory(SOURCES);
    let t = inv.target("prdk8swok511").unwrap();
    // Host beats zone beats top level, key by key.
    let p = t.proxy().unwrap();
    assert_eq!(
        p.http.unwrap().expose(),
        "http://ops:s3cret@dmzproxy.corp.lan:3128"
    );
    assert_eq!(p.no_proxy, [".corp.lan", "10.20.0.0/16"]);
    assert_eq!(
        inv.target("prdk8swok501")
            .unwrap()
            .proxy()
            .unwrap()
            .http
            .unwrap()
            .expose(),
        "http://ops:s3cret@proxy.corp.lan:3128"
    );
    let plan = plan("k8s-worker", "prdk8swok511", Fixture::photon(), &inv);
    let added: Vec<&str> = plan
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.contains("yum.repos.d")
                || l.contains("tdnf.conf")
                || l.contains("http-proxy.conf")
                || l.contains("daemon-reload")
        })
        .collect();
    expect![[r#"
        [
            "write /etc/yum.repos.d/photon.repo 0644 root:root",
            "write /etc/yum.repos.d/photon-updates.repo 0644 root:root",
            "write /etc/yum.repos.d/photon-release.repo 0644 root:root",
            "write /etc/yum.repos.d/photon-extras.repo 0644 root:root",
            "write /etc/yum.repos.d/photon-debuginfo.repo 0644 root:root",
            "write /etc/yum.repos.d/photon-srpms.repo 0644 root:root",
            "write /etc/tdnf/tdnf.conf 0600 root:root",
            "write /etc/tdnf/tdnf.conf 0600 root:root",
            "write /etc/systemd/system/containerd.service.d/http-proxy.conf 0600 root:root",
            "run systemctl daemon-reload",
            "write /etc/systemd/system/docker.service.d/http-proxy.conf 0600 root:root",
            "run systemctl daemon-reload",
        ]
    "#]]
    .assert_debug_eq(&added);
    // The whole plan, as without the tables but for those lines.
    let without = self::plan(
        "k8s-worker",
        "prdk8swok511",
        Fixture::photon(),
        &inventory(""),
    );
    let rest: Vec<&str> = plan
        .lines()
        .filter(|l| !added.contains(&l.trim()))
        .collect();
    let before: Vec<&str> = without
        .lines()
        .filter(|l| !l.contains("yum.repos.d") && !l.contains("tdnf.conf"))
        .collect();
    assert_eq!(rest, before);
}

/// NO_PROXY: every host's name, address and cluster address, the pods' and services'
/// networks, the fixed names, then the host's extras.
#[test]
fn no_proxy_is_computed_from_the_inventory() {
    let inv = inventory(SOURCES);
    let t = inv.target("prdk8swok511").unwrap();
    let list = playbooks::inventory::sources::no_proxy(
        &t,
        Some("10.244.0.0/16".into()),
        "10.96.0.0/12".into(),
    );
    let mut want: Vec<String> = Vec::new();
    for (name, h) in &inv.hosts {
        let ht = inv.target(name).unwrap();
        for s in [name.as_str(), h.address.as_str(), ht.cluster_address()] {
            if !want.iter().any(|w| w == s) {
                want.push(s.into());
            }
        }
    }
    want.extend(
        [
            "10.244.0.0/16",
            "10.96.0.0/12",
            "localhost",
            "127.0.0.1",
            ".svc",
            ".cluster.local",
            ".corp.lan",
            "10.20.0.0/16",
        ]
        .map(String::from),
    );
    assert_eq!(list, want.join(","));
    assert!(list.starts_with("prdinfhap501,"), "{list}");
}

/// Rocky 9's BaseOS repository, as rocky-release ships it (abridged to one section).
const ROCKY_REPO: &str = "[baseos]
name=Rocky Linux $releasever - BaseOS
mirrorlist=https://mirrors.rockylinux.org/mirrorlist?arch=$basearch&repo=BaseOS-$releasever$rltype
#baseurl=http://dl.rockylinux.org/$contentdir/$releasever/BaseOS/$basearch/os/
gpgcheck=1
enabled=1
countme=1
metadata_expire=6h
gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-Rocky-9
";

/// The lines the tables add to the RHEL-like worker's plan: the distribution's repo file at
/// the mirror (before the first package transaction), dnf's proxy, containerd's drop-in.
#[test]
fn rhel_k8s_worker_through_proxy_and_mirror() {
    let mut inv = inventory(SOURCES);
    inv.kubernetes.source = playbooks::inventory::Source::Upstream;
    inv.kubernetes.version = "1.30".into();
    let fixture = || Fixture::rhel().file("/etc/yum.repos.d/rocky.repo", ROCKY_REPO, 0o644);
    let plan = plan("k8s-worker", "prdk8swok501", fixture(), &inv);
    let first: Vec<&str> = plan.lines().map(str::trim).take(3).collect();
    assert_eq!(
        first,
        [
            "write /etc/yum.repos.d/rocky.repo 0644 root:root",
            "write /etc/dnf/dnf.conf 0600 root:root",
            "run useradd -m -s /bin/bash -U -G wheel kubeadmin",
        ],
        "{plan}"
    );
    let lines: Vec<&str> = plan.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| {
            *l == "write /etc/systemd/system/containerd.service.d/http-proxy.conf 0600 root:root"
        })
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(lines[at + 1], "run systemctl daemon-reload", "{plan}");
    // The file itself.
    let repo = tasks::repos::rhel_repo(
        ROCKY_REPO,
        "https://mirror.corp.lan/rocky-remote",
        &tasks::repos::Mirrors {
            gpgcheck: Some(true),
            ..Default::default()
        },
    );
    assert!(
        repo.contains("\n#mirrorlist=https://mirrors.rockylinux.org/"),
        "{repo}"
    );
    assert!(repo.contains("\nbaseurl=https://mirror.corp.lan/rocky-remote/$contentdir/$releasever/BaseOS/$basearch/os/\n"), "{repo}");
    // Without the tables, the repo file is left alone.
    let plain = self::plan("k8s-worker", "prdk8swok501", fixture(), &{
        let mut i = inventory("");
        i.kubernetes.source = playbooks::inventory::Source::Upstream;
        i
    });
    assert!(
        !plain.contains("rocky.repo") && !plain.contains("dnf.conf"),
        "{plain}"
    );
}

/// A Photon host without the tables whose repositories already moved (photon-repos' own
/// scriptlet ran): exactly the plan of a fresh host without the repository step's lines.
#[test]
fn photon_without_tables_changes_only_by_the_repository_step() {
    let inv = inventory("");
    let mut migrated = Fixture::photon();
    for (name, text) in tasks::testing::photon_files::REPOS {
        migrated = migrated.file(
            &format!("/etc/yum.repos.d/{name}"),
            &text.replace(
                "baseurl=https://packages.vmware.com/",
                "baseurl=https://packages-prod.broadcom.com/",
            ),
            0o644,
        );
    }
    let fresh = plan("k8s-worker", "prdk8swok511", Fixture::photon(), &inv);
    let moved = plan("k8s-worker", "prdk8swok511", migrated, &inv);
    let repo_lines: Vec<&str> = fresh
        .lines()
        .filter(|l| l.contains("/etc/yum.repos.d/"))
        .collect();
    assert_eq!(repo_lines.len(), 6, "{fresh}");
    let rest: Vec<&str> = fresh
        .lines()
        .filter(|l| !l.contains("/etc/yum.repos.d/"))
        .collect();
    assert_eq!(moved.lines().collect::<Vec<_>>(), rest);
}

/// `system.ca_files` on Photon: the certificate in /etc/ssl/certs and the bundle applications
/// read (`/etc/pki/tls/certs/ca-bundle.crt`, ca-certificates-pki) rebuilt by
/// `rehash_ca_certificates.sh`; on a host whose file is in place but whose bundle lacks it,
/// the rebuild alone, with the reason in the diff.
#[test]
fn photon_ca_bundle_holds_the_operators_ca() {
    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0FSb290\n-----END CERTIFICATE-----\n";
    const OTHER: &str = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0B\n-----END CERTIFICATE-----\n";
    let dir = std::env::temp_dir().join(format!("nodeprep-plans-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("corp-root.pem");
    std::fs::write(&pem, PEM).unwrap();
    let text = include_str!("../../inventory.toml").replacen(
        "ca_files = []",
        &format!("ca_files = [\"{}\"]", pem.display()),
        1,
    );
    assert_ne!(text, include_str!("../../inventory.toml"));
    let mut inv = Inventory::parse(&text, Path::new("inventory.toml")).unwrap();
    inv.placeholders.clear();
    let ca_lines = |plan: &str| -> Vec<String> {
        plan.lines()
            .filter(|l| l.contains("/etc/ssl/certs") || l.contains("ca_certificates"))
            .map(str::to_string)
            .collect()
    };
    let fresh = plan(
        "k8s-worker",
        "prdk8swok511",
        Fixture::photon().file(tasks::ca::PKI_BUNDLE, OTHER, 0o644),
        &inv,
    );
    expect![[r#"
        [
            "write /etc/ssl/certs/corp-root.pem 0644 root:root",
            "run rehash_ca_certificates.sh",
        ]
    "#]]
    .assert_debug_eq(&ca_lines(&fresh));

    // The file in place, the bundle rebuilt without it: the rebuild, and why.
    let registry = Registry::default();
    let pb = registry.find("k8s-worker").unwrap();
    let t = inv.target("prdk8swok511").unwrap();
    let (mut cx, _rec) = Fixture::photon()
        .file("/etc/ssl/certs/corp-root.pem", PEM, 0o644)
        .file(tasks::ca::PKI_BUNDLE, OTHER, 0o644)
        .complete()
        .ctx(tasks::Mode::Check);
    let mut p = tasks::Plan::new();
    pb.plan(t, &mut p).unwrap();
    let ran = p.run(&mut cx, &tasks::Selection::new(&["ca certificates"], &[]));
    assert!(ran.error.is_none(), "{:?}", ran.error);
    let r = &cx.records()[0];
    assert_eq!(r.outcome.label(), "changed");
    expect![[r#"
        /etc/pki/tls/certs/ca-bundle.crt lacks corp-root.pem
        would rebuild the trust store (rehash_ca_certificates.sh)
    "#]]
    .assert_eq(&r.diffs.concat());
    assert!(
        cx.actions()
            .iter()
            .any(|a| a.to_string() == "run rehash_ca_certificates.sh")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
