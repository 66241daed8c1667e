//! k8s-worker end to end: the real runner over ssh against a systemd container.

use nodeprep_tests::{Lab, Testbed, lab, outcome, recap, runner, snapshot};
use serde_json::Value;

const HOST: &str = "prdk8swok511";
const FSTAB: &str = "UUID=0a1b / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n";

fn prepared_lab() -> Lab {
    let lab = lab(&[(HOST, "k8s-worker")]);
    lab.sh(
        HOST,
        &format!("printf '{}' > /etc/fstab", FSTAB.replace('\n', "\\n")),
    )
    .unwrap();
    lab
}

/// Runs the runner with `args` (+ --json) on the testbed's inventory and returns its exit code
/// and events.
pub fn run_json(bed: &dyn Testbed, args: &[&str]) -> (i32, Vec<Value>) {
    run_json_with(bed, "", args)
}

/// As [`run_json`], with `settings` added to the testbed's inventory.
pub fn run_json_with(bed: &dyn Testbed, settings: &str, args: &[&str]) -> (i32, Vec<Value>) {
    let inv = bed.write_inventory(settings).unwrap();
    run_json_at(&inv, args)
}

/// Runs the runner on the inventory at `inv`.
pub fn run_json_at(inv: &std::path::Path, args: &[&str]) -> (i32, Vec<Value>) {
    let out = runner(inv).args(args).arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}): {l}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect();
    (out.status.code().unwrap_or(-1), events)
}

/// The kernel steps of k8s-worker (the rest of the role is covered by the cluster test).
pub const KERNEL_STEPS: [&str; 6] = [
    "swap off",
    "swap disabled in fstab",
    "kernel modules persisted",
    "kernel modules loaded",
    "sysctl persisted",
    "sysctl applied",
];

fn kernel_run(lab: &Lab, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["run", "k8s-worker", "--host", HOST];
    for s in KERNEL_STEPS {
        args.extend(["--only", s]);
    }
    args.extend_from_slice(extra);
    run_json(lab, &args)
}

#[test]
fn k8s_worker_converges_and_is_idempotent() {
    let lab = prepared_lab();
    let (code, events) = kernel_run(&lab, &[]);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "swap disabled in fstab"), "changed");
    assert_eq!(outcome(&events, "sysctl persisted"), "changed");
    assert_eq!(outcome(&events, "kernel modules persisted"), "changed");

    let fstab = lab.read_file(HOST, "/etc/fstab").unwrap();
    assert_eq!(
        fstab,
        "UUID=0a1b / ext4 errors=remount-ro 0 1\n# /swapfile none swap sw 0 0\n"
    );
    let sysctl = lab
        .read_file(HOST, "/etc/sysctl.d/99-kubernetes-cri.conf")
        .unwrap();
    for line in [
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.ipv4.ip_forward = 1",
        "net.bridge.bridge-nf-call-ip6tables = 1",
    ] {
        assert!(
            sysctl.lines().any(|l| l == line),
            "{line} missing from:\n{sysctl}"
        );
    }
    let modules = lab
        .read_file(HOST, "/etc/modules-load.d/containerd.conf")
        .unwrap();
    let listed: Vec<&str> = modules.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(listed, ["overlay", "br_netfilter"]);
    let perms = lab.sh(HOST, "stat -c '%a %U:%G' /etc/sysctl.d/99-kubernetes-cri.conf /etc/modules-load.d/containerd.conf /etc/fstab").unwrap();
    assert_eq!(perms, "644 root:root\n644 root:root\n644 root:root\n");
    // No temporary file left beside the targets.
    let leftovers = lab
        .sh(
            HOST,
            "ls -a /etc /etc/sysctl.d /etc/modules-load.d | grep -c '^.nodeprep' || true",
        )
        .unwrap();
    assert_eq!(leftovers.trim(), "0");
    // The replaced fstab was backed up.
    let backups = lab.sh(HOST, "ls /var/backups/nodeprep/etc/").unwrap();
    assert!(backups.starts_with("fstab."), "{backups}");

    let inv = lab.write_inventory("").unwrap();
    let before = snapshot(&lab, &inv, "k8s-worker", HOST);
    let (code, events) = kernel_run(&lab, &[]);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(
        recap(&events, HOST)["changed"],
        0,
        "second run changed something: {events:#?}"
    );
    assert_eq!(recap(&events, HOST)["failed"], 0);
    before.assert_same(&snapshot(&lab, &inv, "k8s-worker", HOST), "second run");

    // Changed behind nodeprep's back between two runs: seen (the probe reads the files each
    // run, nothing is remembered across runs) and put back.
    lab.sh(HOST, "echo 'net.ipv4.ip_forward = 0' >> /etc/sysctl.d/99-kubernetes-cri.conf && chmod 600 /etc/modules-load.d/containerd.conf").unwrap();
    let (code, events) = kernel_run(&lab, &[]);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "sysctl persisted"), "changed");
    assert_eq!(outcome(&events, "kernel modules persisted"), "changed");
    assert_eq!(
        lab.read_file(HOST, "/etc/sysctl.d/99-kubernetes-cri.conf")
            .unwrap(),
        sysctl
    );
    assert_eq!(
        lab.sh(HOST, "stat -c %a /etc/modules-load.d/containerd.conf")
            .unwrap(),
        "644\n"
    );
}

#[test]
fn k8s_worker_check_mode_touches_nothing() {
    let lab = prepared_lab();
    let snapshot = "find /etc /var/backups -xdev -type f -print0 | sort -z | xargs -0 sha256sum; stat -c '%n %a %U' /etc/sysctl.d /etc/modules-load.d";
    let before = lab.sh(HOST, snapshot).unwrap();
    let (code, events) = kernel_run(&lab, &["--check", "--diff"]);
    // A check run with changes pending says so in its exit code.
    assert_eq!(
        code,
        i32::from(xtask::runner::EXIT_CHANGES_PENDING),
        "{events:#?}"
    );
    assert_eq!(outcome(&events, "swap disabled in fstab"), "changed");
    assert_eq!(outcome(&events, "sysctl persisted"), "changed");
    let fstab_diff = events
        .iter()
        .find(|e| e["step"] == "swap disabled in fstab")
        .unwrap()["diff"]
        .as_str()
        .unwrap();
    assert!(
        fstab_diff.contains("-/swapfile none swap sw 0 0\n+# /swapfile none swap sw 0 0"),
        "{fstab_diff}"
    );
    let after = lab.sh(HOST, snapshot).unwrap();
    assert_eq!(before, after, "check mode modified the host");
}

/// The package-manager installs a `-vv` log says were sent.
fn package_installs(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" sent "))
        .filter(|l| {
            ["apt-get install", "tdnf install", "dnf install"]
                .iter()
                .any(|m| l.contains(m))
        })
        .collect()
}

/// A first run of the whole role on a fresh host: every package the role installs goes in one
/// package-manager command before the first step (at `-vv`, one `sent ... install` line), the
/// steps report their own packages as installed, the locale asked for is built, and a second
/// run changes nothing.
#[test]
fn k8s_worker_first_run_installs_in_one_transaction() {
    let lab = prepared_lab();
    xtask::dev::lab::install_kube_standins(&lab).unwrap();
    let inv = lab.write_inventory(xtask::dev::lab::LAB_SETTINGS).unwrap();
    let out = runner(&inv)
        .args([
            "run",
            "k8s-worker",
            "--host",
            HOST,
            "--json",
            "--diff",
            "-vv",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let installs = package_installs(&stderr);
    assert_eq!(installs.len(), 1, "{installs:#?}\n{stderr}");
    // The one command names the packages of several steps.
    assert!(
        installs[0].contains(" containerd")
            && (installs[0].contains(" nfs-common") || installs[0].contains(" nfs-utils")),
        "{}",
        installs[0]
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for step in ["locale packages", "nfs client", "containerd installed"] {
        assert_eq!(outcome(&events, step), "changed", "{step}");
        let diff = events
            .iter()
            .find(|e| e["event"] == "step" && e["step"] == step)
            .and_then(|e| e["diff"].as_str())
            .unwrap_or_default();
        assert!(diff.starts_with("installed: "), "{step}: {diff:?}");
    }
    let available = lab.sh(HOST, "locale -a").unwrap();
    assert!(available.lines().any(|l| l == "fr_FR.utf8"), "{available}");

    let before = snapshot(&lab, &inv, "k8s-worker", HOST);
    let (code, events) = run_json_at(&inv, &["run", "k8s-worker", "--host", HOST]);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(
        recap(&events, HOST)["changed"],
        0,
        "second run changed something: {events:#?}"
    );
    before.assert_same(&snapshot(&lab, &inv, "k8s-worker", HOST), "second run");

    // The NFS client removed by hand: put back by the next run, in one install, without an
    // `apt-get update` on Debian (the first run refreshed the lists minutes ago, under the
    // default hour of system.package_lists_max_age).
    let os = crate::os::family(&lab, HOST);
    let nfs = tasks::pkg::nfs_client_package(os);
    let remove = match os {
        tasks::OsFamily::Debian => {
            format!("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {nfs} >/dev/null")
        }
        tasks::OsFamily::Photon => format!("tdnf remove -y -q {nfs} >/dev/null"),
        tasks::OsFamily::Rhel => format!("dnf remove -y -q {nfs} >/dev/null"),
    };
    lab.sh(HOST, &remove).unwrap();
    let out = runner(&inv)
        .args(["run", "k8s-worker", "--host", HOST, "--json", "-vv"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let sent: Vec<&str> = stderr.lines().filter(|l| l.contains(" sent ")).collect();
    assert!(
        !sent.iter().any(|l| l.contains("apt-get update")),
        "{sent:#?}"
    );
    let installs = package_installs(&stderr);
    assert_eq!(installs.len(), 1, "{sent:#?}");
    assert!(installs[0].contains(&format!(" {nfs} ")), "{}", installs[0]);
    assert!(crate::os::installed(&lab, HOST, nfs));
}
