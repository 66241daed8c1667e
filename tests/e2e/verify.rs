//! `cargo xtask verify` against containers: hosts broken on purpose (swap in fstab, a wrong
//! host name, a port taken, kubeadm's binaries missing, containerd and kubelet on different
//! cgroup drivers, a machine-id shared by two hosts) fail the matching checks, with the fix and
//! exit code 2; once fixed, they pass. The kernel's checks (modules, sysctls) and the clock's
//! synchronization belong to the machine running the containers: they are covered by the unit
//! tests on recorded hosts, and skipped here where a run must pass.

use std::path::Path;

use nodeprep_tests::{Lab, Testbed, lab, runner};
use serde_json::Value;
use tasks::OsFamily;

use crate::os;
use crate::worker::run_json_at;

const W1: &str = "prdk8swok501";
const W2: &str = "prdk8swok502";
const MASTER: &str = "prdk8smst501";

/// A worker's checks, in the order they run.
const WORKER_CHECKS: [&str; 16] = [
    "swap off",
    "module overlay",
    "module br_netfilter",
    "sysctl net.bridge.bridge-nf-call-iptables",
    "sysctl net.ipv4.ip_forward",
    "sysctl net.bridge.bridge-nf-call-ip6tables",
    "cgroup driver",
    "binaries",
    "runc shim",
    "kubelet node ip",
    "disk ids",
    "ports free",
    "hostname",
    "node name resolves",
    "clock synchronized",
    "clock skew",
];

/// Checks whose outcome depends on the machine that runs the containers.
const HOST_MACHINE_CHECKS: [&str; 6] = [
    "module overlay",
    "module br_netfilter",
    "sysctl net.bridge.bridge-nf-call-iptables",
    "sysctl net.ipv4.ip_forward",
    "sysctl net.bridge.bridge-nf-call-ip6tables",
    "clock synchronized",
];

/// (outcome, error or reason) of `check` on `host`.
fn result<'a>(events: &'a [Value], host: &str, check: &str) -> (&'a str, &'a str) {
    let e = events
        .iter()
        .find(|e| e["event"] == "step" && e["host"] == host && e["step"] == check)
        .unwrap_or_else(|| panic!("no check {check} on {host} in {events:#?}"));
    let detail = e["error"].as_str().or(e["reason"].as_str()).unwrap_or("");
    (e["outcome"].as_str().unwrap(), detail)
}

#[track_caller]
fn assert_ok(events: &[Value], host: &str, check: &str) {
    let (outcome, detail) = result(events, host, check);
    assert_eq!(outcome, "ok", "{host}: {check}: {detail}");
}

#[track_caller]
fn assert_failed(events: &[Value], host: &str, check: &str, says: &str) {
    let (outcome, detail) = result(events, host, check);
    assert_eq!(outcome, "failed", "{host}: {check}: {detail}");
    assert!(
        detail.contains(says),
        "{host}: {check}: {detail:?} lacks {says:?}"
    );
    assert!(
        detail.contains("\nfix: "),
        "{host}: {check}: no fix in {detail:?}"
    );
}

fn verify(inv: &Path, args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    run_json_at(inv, &all)
}

/// A TCP listener on `port`, as a transient unit `nodeprep-test-listener-PORT`.
fn listen(lab: &Lab, host: &str, port: u16) {
    lab.sh(
        host,
        &format!(
            "systemd-run --unit=nodeprep-test-listener-{port} systemd-socket-activate -l {port} -a --inetd true && \
             for i in $(seq 50); do ss -Hltn | grep -q ':{port} ' && exit 0; sleep 0.1; done; exit 1"
        ),
    )
    .unwrap();
}

#[test]
fn verify_fails_what_is_wrong_and_passes_once_fixed() {
    let lab = lab(&[
        (W1, "k8s-worker"),
        (W2, "k8s-worker"),
        (MASTER, "k8s-master"),
    ]);
    let inv = lab.write_inventory("").unwrap();

    // Break things: swap at boot and a wrong name on W1, kubelet's port taken on W2, and W2 a
    // clone of W1 (same machine-id).
    lab.sh(
        W1,
        "printf 'UUID=0a1b / ext4 defaults 0 1\\n/swapfile none swap sw 0 0\\n' > /etc/fstab && hostname wrong-name",
    )
    .unwrap();
    listen(&lab, W2, 10250);
    let id = lab.read_file(W1, "/etc/machine-id").unwrap();
    lab.sh(
        W2,
        &format!("printf '%s' '{}' > /etc/machine-id", id.trim()),
    )
    .unwrap();

    let (code, events) = verify(&inv, &["k8s-worker", "--role", "k8s-worker"]);
    assert_eq!(code, 2, "a failed check exits 2: {events:#?}");
    for host in [W1, W2] {
        // Every check is reported, each once; workers have no resource checks.
        for check in WORKER_CHECKS.iter().chain(&tasks::verify::FLEET_CHECKS) {
            result(&events, host, check);
        }
        let steps = events
            .iter()
            .filter(|e| e["event"] == "step" && e["host"] == host)
            .count();
        assert_eq!(steps, 20, "{host}: {events:#?}");
        // What a fresh lab container lacks: kubeadm's binaries, containerd's systemd driver.
        assert_failed(
            &events,
            host,
            "binaries",
            "not found: conntrack, socat, ebtables, ethtool, iptables",
        );
        assert_failed(
            &events,
            host,
            "cgroup driver",
            "containerd uses cgroupfs (no /etc/containerd/config.toml: containerd's default), kubelet systemd",
        );
        assert_failed(
            &events,
            host,
            "unique machine-id",
            &format!("/etc/machine-id {} is also", id.trim()),
        );
        // Nor the runc shim, kubelet's node IP, the name at the cluster address (docker's
        // /etc/hosts names the container at its address on the lab's network; the inventory
        // reaches it at 127.0.0.1).
        assert_failed(&events, host, "runc shim", "containerd-shim-runc-v2");
        assert_failed(&events, host, "kubelet node ip", "sets no --node-ip");
        assert_failed(
            &events,
            host,
            "node name resolves",
            "not to its cluster address 127.0.0.1",
        );
        // The disks belong to the machine running the containers.
        let (outcome, why) = result(&events, host, "disk ids");
        assert_eq!(outcome, "skipped", "{why}");
        assert_ok(&events, host, "unique hostname");
        assert_ok(&events, host, "unique address");
        assert_ok(&events, host, "clock skew");
        let (outcome, why) = result(&events, host, "unique product_uuid");
        assert_eq!(outcome, "skipped", "{why}");
        let recap = events
            .iter()
            .find(|e| e["event"] == "recap" && e["host"] == host)
            .unwrap();
        assert_eq!(recap["changed"], 0, "verify changes nothing");
    }
    assert_failed(
        &events,
        W1,
        "swap off",
        "no swap is active, but /etc/fstab turns on /swapfile at the next boot",
    );
    assert_ok(&events, W2, "swap off");
    assert_failed(
        &events,
        W1,
        "hostname",
        "the host is called \"wrong-name\", the inventory says \"prdk8swok501\"",
    );
    assert_ok(&events, W2, "hostname");
    assert_failed(
        &events,
        W2,
        "ports free",
        "in use: 10250 (by systemd-socket-)",
    );
    assert_ok(&events, W1, "ports free");

    // The same in text: the check, the reason, the fix.
    let out = runner(&inv)
        .args(["verify", "k8s-worker", "--host", W1, "--only", "swap off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{W1} | failed   swap off"))
            && text.contains("    no swap is active, but /etc/fstab turns on /swapfile")
            && text.contains("    fix: comment out the swap lines of /etc/fstab"),
        "{text}"
    );

    // Fix it all: nodeprep's own steps for containerd (its package holds the shim), its
    // config, kubelet's flags and the name, the rest by hand.
    lab.sh(
        W1,
        "sed -i 's|^/swapfile|# /swapfile|' /etc/fstab && hostname prdk8swok501",
    )
    .unwrap();
    lab.sh(
        W2,
        "systemctl stop nodeprep-test-listener-10250 && cat /proc/sys/kernel/random/uuid | tr -d '\\n-' > /etc/machine-id",
    )
    .unwrap();
    std::thread::scope(|s| {
        for host in [W1, W2] {
            let lab = &lab;
            s.spawn(move || {
                // kubeadm's binaries by the OS's package names: conntrack comes in Photon's
                // conntrack-tools (there is no package named conntrack there).
                let os = os::family(lab, host);
                let packages: &[&str] = match os {
                    OsFamily::Debian => &["conntrack", "socat", "ebtables", "ethtool", "iptables"],
                    OsFamily::Photon | OsFamily::Rhel => &[
                        "conntrack-tools",
                        "socat",
                        "ebtables",
                        "ethtool",
                        "iptables",
                    ],
                };
                lab.sh(host, &os::install_command(os, packages)).unwrap()
            });
        }
    });
    let (code, events) = run_json_at(
        &inv,
        &[
            "run",
            "k8s-worker",
            "--role",
            "k8s-worker",
            "--only",
            "containerd installed",
            "--only",
            "containerd config",
            "--only",
            "kubelet extra args",
            "--only",
            "name resolves",
        ],
    );
    assert_eq!(code, 0, "{events:#?}");

    let mut args = vec!["k8s-worker", "--role", "k8s-worker"];
    for check in HOST_MACHINE_CHECKS {
        args.extend(["--skip", check]);
    }
    let (code, events) = verify(&inv, &args);
    for host in [W1, W2] {
        for check in WORKER_CHECKS
            .iter()
            .chain(&tasks::verify::FLEET_CHECKS)
            .filter(|c| {
                !HOST_MACHINE_CHECKS.contains(c) && !["unique product_uuid", "disk ids"].contains(c)
            })
        {
            assert_ok(&events, host, check);
        }
        // Checks left out are not reported one by one: the recap counts them.
        assert!(
            !events.iter().any(|e| e["event"] == "step"
                && e["host"] == host
                && e["step"] == "clock synchronized"),
            "{events:#?}"
        );
        let recap = events
            .iter()
            .find(|e| e["event"] == "recap" && e["host"] == host)
            .unwrap();
        assert_eq!(recap["not_selected"], HOST_MACHINE_CHECKS.len(), "{recap}");
    }
    assert_eq!(code, 0, "every selected check passed: {events:#?}");

    // A master: resources and ports.
    let (code, events) = verify(
        &inv,
        &[
            "k8s-master",
            "--host",
            MASTER,
            "--only",
            "cpus",
            "--only",
            "memory",
            "--only",
            "ports free",
        ],
    );
    let cpus: u32 = lab.sh(MASTER, "nproc").unwrap().trim().parse().unwrap();
    if cpus >= 2 {
        assert_eq!(code, 0, "{events:#?}");
        assert_ok(&events, MASTER, "cpus");
    } else {
        assert_eq!(code, 2, "{events:#?}");
        assert_failed(
            &events,
            MASTER,
            "cpus",
            "a control-plane node needs at least 2",
        );
    }
    assert_ok(&events, MASTER, "memory");
    assert_ok(&events, MASTER, "ports free");

    // Bad input: a host of another role, a check that does not exist.
    for args in [
        vec!["verify", "k8s-master", "--host", W1],
        vec!["verify", "k8s-worker", "--host", W1, "--only", "swap"],
    ] {
        let out = runner(&inv).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}
