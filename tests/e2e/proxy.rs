//! Hosts without the internet: a worker on a docker network with no route out gets its packages
//! through a real proxy (tinyproxy) or a real caching mirror (apt-cacher-ng) that one container
//! on that network and on the outside runs (`xtask::dev::offline`).

use nodeprep_tests::{Offline, Testbed, offline_lab, outcome, recap, worker_only};
use serde_json::Value;

use crate::worker::run_json_with;

const HOST: &str = "dmzk8swok601";

/// What the package tables change on a k8s-worker, and the packages they let it install.
const STEPS: [&str; 6] = [
    "package repositories",
    "package proxy",
    "containerd installed",
    "containerd config",
    "containerd proxy",
    "containerd running",
];

const CLUSTER: &str = r#"
[kubernetes]
source = "present"
pod_cidr = "10.244.0.0/16"
service_cidr = "10.96.0.0/12"
"#;

/// The operator's extra NO_PROXY entries.
const EXTRAS: [&str; 2] = ["registry.example.lan", ".corp.example.lan"];

fn run(lab: &Offline, settings: &str) -> (i32, Vec<Value>) {
    let args = worker_only("run", HOST, &STEPS);
    run_json_with(lab, &format!("{CLUSTER}\n{settings}"), &args)
}

/// A second run with the same settings succeeds and changes nothing.
fn assert_converged(lab: &Offline, settings: &str) {
    let (code, events) = run(lab, settings);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(
        recap(&events, HOST)["changed"],
        0,
        "second run changed something: {events:#?}"
    );
}

fn proxy_table(url: &str) -> String {
    let extras: Vec<String> = EXTRAS.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[proxy]\nhttp = \"{url}\"\nno_proxy = [{}]\n",
        extras.join(", ")
    )
}

/// The lab's worker has no way out (docker may still give it a default route, to a gateway
/// that forwards nothing): Debian's archive, which the services container reaches, is out of
/// its reach.
fn assert_no_way_out(lab: &Offline) {
    let archive = lab
        .netsvc_sh("getent ahostsv4 deb.debian.org | head -n1 | cut -d' ' -f1")
        .unwrap();
    let archive = archive.trim();
    assert!(
        !archive.is_empty(),
        "the services container resolves nothing"
    );
    let connect = format!(
        "timeout 5 bash -c 'exec 3<>/dev/tcp/{archive}/80' && echo reached || echo unreachable"
    );
    assert_eq!(lab.netsvc_sh(&connect).unwrap().trim(), "reached");
    assert_eq!(
        lab.sh(HOST, &connect).unwrap().trim(),
        "unreachable",
        "the worker reaches Debian's archive ({archive}) without the proxy"
    );
}

fn dpkg_installed(lab: &Offline, name: &str) -> bool {
    lab.sh(
        HOST,
        &format!("dpkg-query -W -f '${{Status}}' {name} 2>/dev/null || true"),
    )
    .unwrap()
    .trim()
        == "install ok installed"
}

/// NO_PROXY as the inventory makes it (README: "Hosts without the internet"): every host's
/// name, address and cluster address, the pods' and services' networks, the loopback names,
/// the cluster's domains, then the operator's extras; each once.
fn expected_no_proxy() -> String {
    let mut out: Vec<&str> = Vec::new();
    for e in [
        HOST,
        "127.0.0.1",
        "10.244.0.0/16",
        "10.96.0.0/12",
        "localhost",
        "127.0.0.1",
        ".svc",
        ".cluster.local",
    ]
    .into_iter()
    .chain(EXTRAS)
    {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out.join(",")
}

#[test]
fn through_the_proxy_converges_and_is_idempotent() {
    let lab = offline_lab(&[(HOST, "k8s-worker")]);
    assert_no_way_out(&lab);
    let proxy = lab.proxy_url();
    let settings = proxy_table(&proxy);

    let (code, events) = run(&lab, &settings);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "package proxy"), "changed");
    assert_eq!(outcome(&events, "containerd installed"), "changed");
    assert_eq!(outcome(&events, "containerd proxy"), "changed");
    assert!(dpkg_installed(&lab, "containerd"));

    let apt = lab
        .read_file(HOST, "/etc/apt/apt.conf.d/90nodeprep-proxy")
        .unwrap();
    assert!(
        apt.contains(&format!("Acquire::http::Proxy \"{proxy}\";")),
        "{apt}"
    );

    // The proxy's own log shows the packages it fetched for the worker.
    let log = lab
        .netsvc_sh(&format!("cat {}", xtask::dev::offline::PROXY_LOG))
        .unwrap();
    let fetched: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("GET http://deb.debian.org/") && l.contains(".deb"))
        .collect();
    assert!(
        fetched.iter().any(|l| l.contains("/containerd_")),
        "containerd's package not in the proxy's log:\n{log}"
    );

    // containerd's drop-in: the proxy, and NO_PROXY computed from the inventory.
    let drop_in = lab
        .read_file(
            HOST,
            "/etc/systemd/system/containerd.service.d/http-proxy.conf",
        )
        .unwrap();
    let env: Vec<&str> = drop_in
        .lines()
        .filter(|l| l.starts_with("Environment="))
        .collect();
    assert_eq!(
        env,
        [
            format!("Environment=\"HTTP_PROXY={proxy}\""),
            format!("Environment=\"HTTPS_PROXY={proxy}\""),
            format!("Environment=\"NO_PROXY={}\"", expected_no_proxy()),
        ],
        "{drop_in}"
    );
    // The running containerd has it.
    let shown = lab
        .sh(HOST, "systemctl show -p Environment containerd.service")
        .unwrap();
    assert!(shown.contains(&format!("HTTP_PROXY={proxy}")), "{shown}");

    assert_converged(&lab, &settings);
}

#[test]
fn through_the_mirror_converges() {
    let lab = offline_lab(&[(HOST, "k8s-worker")]);
    assert_no_way_out(&lab);
    let mirror = lab.mirror_url();
    // apt-cacher-ng takes the upstream host as the first part of the path.
    let settings = format!(
        "[packages]\ndebian = \"{mirror}/deb.debian.org\"\ndebian_security = \"{mirror}/security.debian.org\"\n"
    );

    let (code, events) = run(&lab, &settings);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "package repositories"), "changed");
    assert_eq!(outcome(&events, "containerd installed"), "changed");
    assert!(dpkg_installed(&lab, "containerd"));
    let sources = lab.read_file(HOST, "/etc/apt/sources.list").unwrap();
    assert_eq!(
        sources,
        format!(
            "deb {mirror}/deb.debian.org/debian bookworm main\n\
             deb {mirror}/deb.debian.org/debian bookworm-updates main\n\
             deb {mirror}/security.debian.org/debian-security bookworm-security main\n"
        )
    );
    // No proxy: no proxy files.
    assert!(
        lab.read_file(HOST, "/etc/apt/apt.conf.d/90nodeprep-proxy")
            .is_none()
    );
    assert!(
        lab.read_file(
            HOST,
            "/etc/systemd/system/containerd.service.d/http-proxy.conf"
        )
        .is_none()
    );
    // The mirror served the package.
    let log = lab
        .netsvc_sh(&format!("cat {}", xtask::dev::offline::MIRROR_LOG))
        .unwrap();
    assert!(
        log.lines().any(|l| l.contains("/containerd_")),
        "containerd's package not in the mirror's log:\n{log}"
    );

    assert_converged(&lab, &settings);
}

#[test]
fn a_wrong_proxy_fails_the_package_step_and_leaves_nothing_half_done() {
    let lab = offline_lab(&[(HOST, "k8s-worker")]);
    // The services container, on a port where nothing listens.
    let wrong = format!("http://{}:9", lab.netsvc_ip());
    let (code, events) = run(&lab, &proxy_table(&wrong));
    assert_ne!(code, 0, "{events:#?}");
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        text.contains(&format!(
            "host {HOST} fetches its packages through the proxy {wrong}"
        )),
        "the error names neither the proxy nor the host: {events:#?}"
    );
    // The package step failed, with the proxy named; the steps before it did their part.
    assert_eq!(
        outcome(&events, "containerd installed"),
        "failed",
        "{events:#?}"
    );
    let error = events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == "containerd installed")
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains(&wrong), "{error}");
    assert_eq!(outcome(&events, "package proxy"), "changed");

    // Nothing half-done: no package installed or half-configured, the files nodeprep wrote
    // are whole and say what the inventory said, no temporary file beside them.
    assert!(!dpkg_installed(&lab, "containerd"));
    let audit = lab.sh(HOST, "dpkg --audit").unwrap();
    assert_eq!(audit.trim(), "", "dpkg --audit:\n{audit}");
    let apt = lab.read_file(HOST, "/etc/apt/apt.conf.d/90nodeprep-proxy");
    if let Some(apt) = &apt {
        assert!(
            apt.contains(&format!("Acquire::http::Proxy \"{wrong}\";")),
            "{apt}"
        );
    }
    let leftovers = lab
        .sh(
            HOST,
            "ls -a /etc/apt/apt.conf.d /etc/systemd/system /etc/systemd/system/containerd.service.d 2>/dev/null | grep -c '^.nodeprep' || true",
        )
        .unwrap();
    assert_eq!(leftovers.trim(), "0");
    let lists = lab
        .sh(HOST, "apt-get check >/dev/null && echo consistent")
        .unwrap();
    assert_eq!(lists.trim(), "consistent");

    // The right proxy: the next run converges.
    let proxy = lab.proxy_url();
    let (code, events) = run(&lab, &proxy_table(&proxy));
    assert_eq!(code, 0, "{events:#?}");
    assert!(dpkg_installed(&lab, "containerd"));
    let apt = lab
        .read_file(HOST, "/etc/apt/apt.conf.d/90nodeprep-proxy")
        .unwrap();
    assert!(
        apt.contains(&format!("Acquire::http::Proxy \"{proxy}\";")) && !apt.contains(&wrong),
        "{apt}"
    );
}
