//! Taking over a host prepared by hand: containerd's, docker's and kubelet's files written
//! before nodeprep ran, containerd's before its package (Debian's containerd ships
//! /etc/containerd/config.toml as a conffile, so dpkg would stop at its prompt). The real
//! runner, over ssh, on a fresh lab container: the install goes through, each file is edited
//! (a key nodeprep does not manage survives, and the old file is backed up), and a second run
//! changes nothing. Also Debian's /etc/sysctl.conf edited by hand: it gives way to nodeprep's
//! sysctl file. The package database and kubelet's file are the host's OS's (dpkg and
//! /etc/default/kubelet on Debian, rpm and /etc/sysconfig/kubelet on Photon).

use nodeprep_tests::{Testbed, lab, outcome, snapshot, worker_only};
use serde_json::Value;
use tasks::kubelet;

use crate::os;
use crate::worker::run_json_with;

const HOST: &str = "prdk8swok512";

/// The steps of k8s-worker that own these files.
const STEPS: [&str; 7] = [
    "containerd installed",
    "containerd config",
    "containerd running",
    "crictl config",
    "docker daemon.json",
    "docker running",
    "kubelet extra args",
];

/// Kubernetes binaries are not installed by these steps; docker's daemon.json is managed
/// although docker is not installed.
const SETTINGS: &str = "[kubernetes]\nsource = \"present\"\ndocker = true\n";

/// The seed's snippet (version 2's tables, no `version = 2`), with a setting of the
/// operator's own.
const CONTAINERD: &str = r#"disabled_plugins = [""]

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.9"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
"#;
const DAEMON_JSON: &str =
    "{\"log-driver\": \"journald\", \"registry-mirrors\": [\"https://mirror.example.lan\"]}\n";
/// The operator's kubelet flags: a node IP that is an address of the host (its address on the
/// lab's network, a second interface as far as the inventory knows), which nodeprep keeps.
fn kubelet_args(node_ip: &str) -> String {
    format!("KUBELET_EXTRA_ARGS=\"--node-ip={node_ip}\"\n")
}

fn run(lab: &nodeprep_tests::Lab) -> (i32, Vec<Value>) {
    let mut args = vec!["run", "k8s-worker", "--host", HOST];
    for s in STEPS {
        args.extend(["--only", s]);
    }
    run_json_with(lab, SETTINGS, &args)
}

#[test]
fn hand_written_files_taken_over() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let os = os::family(&lab, HOST);
    let kubelet_file = kubelet::extra_args_file(os);
    let node_ip = lab.ip(HOST).to_string();
    let kubelet_text = kubelet_args(&node_ip);
    for (path, text) in [
        ("/etc/containerd/config.toml", CONTAINERD),
        ("/etc/docker/daemon.json", DAEMON_JSON),
        (kubelet_file, kubelet_text.as_str()),
    ] {
        let dir = path.rsplit_once('/').unwrap().0;
        lab.sh(
            HOST,
            &format!("mkdir -p {dir} && printf '%s' '{text}' > {path}"),
        )
        .unwrap();
    }
    assert!(
        !os::installed(&lab, HOST, "containerd"),
        "containerd must not be installed before the run"
    );

    let (code, events) = run(&lab);
    assert_eq!(code, 0, "{events:#?}");
    for step in [
        "containerd installed",
        "containerd config",
        "docker daemon.json",
        "kubelet extra args",
    ] {
        assert_eq!(outcome(&events, step), "changed", "{step}: {events:#?}");
    }
    // Installed and configured. On Debian dpkg kept the hand-written file, the package's copy
    // beside it (rpm's `.rpmnew` is the package's own choice: not asked of Photon's).
    assert!(os::installed(&lab, HOST, "containerd"), "containerd");
    if os.uses_apt() {
        assert_eq!(
            lab.sh(HOST, "dpkg-query -W -f '${db:Status-Abbrev}' containerd")
                .unwrap(),
            "ii "
        );
        assert!(
            lab.read_file(HOST, "/etc/containerd/config.toml.dpkg-dist")
                .is_some(),
            "the package's config.toml was not set aside"
        );
    }

    // Edited, not replaced: the operator's settings are there, nodeprep's too.
    let config = lab.read_file(HOST, "/etc/containerd/config.toml").unwrap();
    for line in [
        "disabled_plugins = [\"\"]",
        "version = 2",
        "sandbox_image = \"registry.k8s.io/pause:3.9\"",
        "runtime_type = \"io.containerd.runc.v2\"",
        "SystemdCgroup = true",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} missing from:\n{config}"
        );
    }
    let daemon: Value =
        serde_json::from_str(&lab.read_file(HOST, "/etc/docker/daemon.json").unwrap()).unwrap();
    assert_eq!(
        daemon["registry-mirrors"],
        serde_json::json!(["https://mirror.example.lan"])
    );
    assert_eq!(daemon["log-driver"], "json-file");
    assert_eq!(
        daemon["exec-opts"],
        serde_json::json!(["native.cgroupdriver=systemd"])
    );
    assert_eq!(
        lab.read_file(HOST, kubelet_file).unwrap(),
        format!("KUBELET_EXTRA_ARGS=\"--node-ip={node_ip} --cgroup-driver=systemd\"\n")
    );
    // The hand-written versions were kept as backups.
    let backups = lab
        .sh(
            HOST,
            &format!(
                "cd /var/backups/nodeprep && ls etc/containerd etc/docker {}",
                kubelet_file
                    .trim_start_matches('/')
                    .rsplit_once('/')
                    .unwrap()
                    .0
            ),
        )
        .unwrap();
    for name in ["config.toml.", "daemon.json.", "kubelet."] {
        assert!(backups.contains(name), "no backup of {name}*: {backups}");
    }
    let kept = lab
        .sh(
            HOST,
            "cat /var/backups/nodeprep/etc/containerd/config.toml.*",
        )
        .unwrap();
    assert_eq!(kept, CONTAINERD);

    // A second run changes nothing, by the recap and on the host.
    let inv = lab.write_inventory(SETTINGS).unwrap();
    let before = snapshot(&lab, &inv, "k8s-worker", HOST);
    let (code, events) = run(&lab);
    assert_eq!(code, 0, "{events:#?}");
    let recap = events
        .iter()
        .find(|e| e["event"] == "recap" && e["host"] == HOST)
        .unwrap_or_else(|| panic!("no recap in {events:#?}"));
    assert_eq!(
        recap["changed"], 0,
        "second run changed something: {events:#?}"
    );
    assert_eq!(recap["failed"], 0);
    before.assert_same(&snapshot(&lab, &inv, "k8s-worker", HOST), "second run");
}

/// The detail of step or check `name` in a run's events (its error, or the reason of a skip).
fn detail<'a>(events: &'a [Value], name: &str) -> &'a str {
    events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == name)
        .and_then(|e| e["error"].as_str().or(e["reason"].as_str()))
        .unwrap_or("")
}

/// Debian's /etc/sysctl.conf edited by hand to `net.ipv4.ip_forward=0`: read at boot through
/// the /etc/sysctl.d/99-sysctl.conf link, which sorts after 99-kubernetes-cri.conf, so it would
/// win. `verify` names it; the sysctl step comments the line out in /etc/sysctl.conf (backed
/// up, the link left a link); then `verify` no longer finds it winning, and a second run
/// changes nothing.
#[test]
fn sysctl_conf_written_by_hand_gives_way() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    lab.sh(HOST, "echo 'net.ipv4.ip_forward=0' >> /etc/sysctl.conf")
        .unwrap();
    let inv = lab.write_inventory(SETTINGS).unwrap();
    // Debian reads /etc/sysctl.conf at boot through a link in /etc/sysctl.d; whatever the OS
    // has there is left as it was.
    let link = "readlink /etc/sysctl.d/99-sysctl.conf || true";
    let link_before = lab.sh(HOST, link).unwrap();
    let check = "sysctl net.ipv4.ip_forward";
    let verify = || {
        crate::worker::run_json_at(
            &inv,
            &["verify", "k8s-worker", "--host", HOST, "--only", check],
        )
    };
    let (_, events) = verify();
    assert!(
        detail(&events, check).contains("/etc/sysctl.conf sets 0"),
        "{events:#?}"
    );

    let persisted =
        || crate::worker::run_json_at(&inv, &worker_only("run", HOST, &["sysctl persisted"]));
    let (code, events) = persisted();
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "sysctl persisted"), "changed");
    let conf = lab.read_file(HOST, "/etc/sysctl.conf").unwrap();
    assert!(
        conf.ends_with(
            "# nodeprep: the next line overrode `net.ipv4.ip_forward = 1` of \
             /etc/sysctl.d/99-kubernetes-cri.conf, which Kubernetes needs\n#net.ipv4.ip_forward=0\n"
        ),
        "{conf}"
    );
    assert_eq!(lab.sh(HOST, link).unwrap(), link_before);
    if os::family(&lab, HOST).uses_apt() {
        assert_eq!(link_before, "../sysctl.conf\n");
    }
    assert!(
        lab.sh(HOST, "ls /var/backups/nodeprep/etc/")
            .unwrap()
            .contains("sysctl.conf."),
        "no backup of /etc/sysctl.conf"
    );

    // The live value is the machine's (a container): whatever it is, the file that wins at
    // boot is nodeprep's now.
    let (_, events) = verify();
    let after = detail(&events, check);
    assert!(!after.contains("/etc/sysctl.conf"), "{after}");

    let (code, events) = persisted();
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "sysctl persisted"), "ok", "{events:#?}");
}
