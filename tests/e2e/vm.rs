//! k8s-worker on a real kernel: the real runner over ssh against a QEMU VM (software emulation),
//! for the steps a container cannot really perform: swapoff of a live swap file, modprobe of
//! overlay and br_netfilter, `sysctl --system` on the bridge keys, a static address applied by
//! systemd-networkd. Then the VM reboots and the same must hold from the persisted files alone;
//! a second run changes nothing.

use std::time::Instant;

use nodeprep_tests::{Testbed, Vm, outcome, recap, vm};
use serde_json::Value;

use crate::worker::{KERNEL_STEPS, run_json_with};

const HOST: &str = "prdk8swok521";

/// The kernel steps of k8s-worker, then the network (the rest of the role is covered by the
/// container tests).
fn steps() -> impl Iterator<Item = &'static str> {
    KERNEL_STEPS
        .into_iter()
        .chain(["network file", "network applied"])
}

/// QEMU's user-mode network gives the guest 10.0.2.15/24 via 10.0.2.2 over DHCP, and forwards
/// ssh to exactly that address: the static configuration asks for the same, so the session
/// survives, and the test tells them apart by how the address is held (no lease lifetime,
/// the static file in use). ssh reaches the guest through that forward on loopback: a
/// management address, apart from the address the file gives.
const NETWORK: &str = "management_address = true

[hosts.prdk8swok521.network]
write = true
interface = \"eth0\"
address = \"10.0.2.15/24\"
gateway = \"10.0.2.2\"
apply = true
";

const NETWORK_FILE: &str = "# Managed by nodeprep.
[Match]
Name=eth0

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
";

/// Runs the steps on the VM, with the network settings in its inventory.
fn run(vm: &Vm) -> Vec<Value> {
    let mut args = vec!["run", "k8s-worker", "--host", HOST];
    for s in steps() {
        args.extend(["--only", s]);
    }
    let started = Instant::now();
    let (code, events) = run_json_with(vm, NETWORK, &args);
    eprintln!("runner: exit {code} after {:.1?}", started.elapsed());
    if code != 0 {
        panic!(
            "{}",
            vm.fail(HOST, format!("runner exited {code}: {events:#?}"))
        );
    }
    events
}

fn sh(vm: &Vm, script: &str) -> String {
    vm.sh(HOST, script).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Asserts `cond` with the VM's console tail in the message.
fn check(vm: &Vm, cond: bool, what: String) {
    if !cond {
        panic!("{}", vm.fail(HOST, what));
    }
}

/// The VM as booted from the image: swap on, modules out, forwarding off, address by DHCP.
/// Without this, the assertions after the run would prove nothing.
fn assert_fresh(vm: &Vm) {
    let swaps = sh(vm, "tail -n +2 /proc/swaps");
    check(
        vm,
        swaps.starts_with("/swapfile "),
        format!("fresh VM: swap file not active: {swaps:?}"),
    );
    let modules = sh(
        vm,
        "for m in overlay br_netfilter; do test -d /sys/module/$m && echo $m; done; true",
    );
    check(
        vm,
        modules.is_empty(),
        format!("fresh VM: already loaded: {modules}"),
    );
    let forward = sh(vm, "sysctl -n net.ipv4.ip_forward");
    check(
        vm,
        forward.trim() == "0",
        format!("fresh VM: ip_forward {forward}"),
    );
    let addr = sh(vm, "ip -4 -o addr show dev eth0");
    check(
        vm,
        addr.contains("inet 10.0.2.15/24") && addr.contains("dynamic"),
        format!("fresh VM: no DHCP address: {addr}"),
    );
}

/// What the preparation is for, read from the live kernel.
fn assert_live(vm: &Vm, when: &str) {
    let swaps = sh(vm, "cat /proc/swaps");
    check(
        vm,
        swaps.lines().count() == 1 && swaps.starts_with("Filename"),
        format!("{when}: swap still active:\n{swaps}"),
    );
    let modules = sh(
        vm,
        "for m in overlay br_netfilter; do test -d /sys/module/$m && echo $m; done; true",
    );
    check(
        vm,
        modules == "overlay\nbr_netfilter\n",
        format!("{when}: loaded modules: {modules:?}"),
    );
    let sysctls = sh(
        vm,
        "sysctl -n net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward",
    );
    check(
        vm,
        sysctls == "1\n1\n1\n",
        format!("{when}: sysctls (iptables, ip6tables, ip_forward): {sysctls:?}"),
    );
    let addr = sh(vm, "ip -4 -o addr show dev eth0");
    check(
        vm,
        addr.contains("inet 10.0.2.15/24") && !addr.contains("dynamic"),
        format!("{when}: static address not on eth0: {addr}"),
    );
    let route = sh(vm, "ip -4 route show default");
    check(
        vm,
        route.contains("default via 10.0.2.2 dev eth0"),
        format!("{when}: default route: {route}"),
    );
    let status = sh(vm, "networkctl status eth0 --no-pager");
    check(
        vm,
        status.contains("/etc/systemd/network/10-static-en.network"),
        format!("{when}: eth0 not configured from the static file:\n{status}"),
    );
}

/// The files the state after a reboot comes from.
fn assert_persisted(vm: &Vm) {
    let fstab = sh(vm, "cat /etc/fstab");
    check(
        vm,
        fstab == "/dev/vda / ext4 rw,errors=remount-ro 0 1\n# /swapfile none swap sw 0 0\n",
        format!("fstab:\n{fstab}"),
    );
    let modules = sh(vm, "grep -v '^#' /etc/modules-load.d/containerd.conf");
    check(
        vm,
        modules == "overlay\nbr_netfilter\n",
        format!("modules-load.d: {modules:?}"),
    );
    let sysctl = sh(vm, "cat /etc/sysctl.d/99-kubernetes-cri.conf");
    for line in [
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.ipv4.ip_forward = 1",
        "net.bridge.bridge-nf-call-ip6tables = 1",
    ] {
        check(
            vm,
            sysctl.lines().any(|l| l == line),
            format!("{line} missing from sysctl.d:\n{sysctl}"),
        );
    }
    let network = sh(vm, "cat /etc/systemd/network/10-static-en.network");
    check(
        vm,
        network == NETWORK_FILE,
        format!("network file:\n{network}"),
    );
    let enabled = sh(vm, "systemctl is-enabled systemd-networkd.service");
    check(
        vm,
        enabled.trim() == "enabled",
        format!("systemd-networkd: {enabled}"),
    );
}

#[test]
fn k8s_worker_kernel_and_network_survive_a_reboot() {
    let started = Instant::now();
    let vm = vm(HOST, "k8s-worker");
    assert_fresh(&vm);

    let events = run(&vm);
    for step in steps() {
        check(
            &vm,
            outcome(&events, step) == "changed",
            format!("first run: {step} not changed: {events:#?}"),
        );
    }
    check(
        &vm,
        recap(&events, HOST)["failed"] == 0,
        format!("first run failed: {events:#?}"),
    );
    assert_live(&vm, "after the run");
    assert_persisted(&vm);

    vm.reboot().unwrap_or_else(|e| panic!("{e:#}"));
    assert_live(&vm, "after a reboot");
    assert_persisted(&vm);
    // At boot, from the files nodeprep wrote: modules by systemd-modules-load, then the sysctls
    // by systemd-sysctl (ordered after it, so the bridge keys exist).
    let loaded = sh(
        &vm,
        "journalctl -b -o cat --no-pager | grep 'Inserted module' || true; \
         systemctl show -p ActiveState -p ExecMainStatus systemd-modules-load.service",
    );
    // The journal may miss messages logged before journald starts under a loaded machine;
    // then the unit's own success, with the modules live (asserted above), tells the same.
    let by_journal = loaded.contains("br_netfilter") && loaded.contains("overlay");
    let by_unit = loaded.contains("ActiveState=active") && loaded.contains("ExecMainStatus=0");
    check(
        &vm,
        by_journal || by_unit,
        format!("modules not loaded by systemd-modules-load at boot:\n{loaded}"),
    );
    let failed = sh(&vm, "systemctl --failed --plain --no-legend --no-pager");
    check(
        &vm,
        failed.trim().is_empty(),
        format!("failed units after the reboot:\n{failed}"),
    );

    let inv = vm.write_inventory(NETWORK).unwrap();
    let before = nodeprep_tests::snapshot(&vm, &inv, "k8s-worker", HOST);
    let events = run(&vm);
    check(
        &vm,
        recap(&events, HOST)["changed"] == 0 && recap(&events, HOST)["failed"] == 0,
        format!("second run after the reboot changed something: {events:#?}"),
    );
    let changes = before.changes(&nodeprep_tests::snapshot(&vm, &inv, "k8s-worker", HOST));
    check(
        &vm,
        changes.is_empty(),
        format!(
            "second run after the reboot changed the host:\n{}",
            changes.join("\n")
        ),
    );
    assert_live(&vm, "after the second run");
    eprintln!("vm test done after {:.1?}", started.elapsed());
}
