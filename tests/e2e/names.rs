//! The node's name and kubelet's node IP, in the lab as on a fresh Photon OS install.
//!
//! Docker writes each container's `/etc/hosts` itself (a bind mount naming the container at
//! its address on the lab's network), which would make the name resolve before nodeprep does
//! anything. The test makes it faithful first: the container is given the installer's random
//! name (`hostname photon-…`) and, written in place over docker's mount, the `/etc/hosts` a
//! Photon installer leaves: the filesystem package's file with the installer's line
//! `127.0.0.1   <old name>` (tests/data/photon/README.md, "/etc/hosts and other installer
//! edits"), and Photon's `/etc/nsswitch.conf` (`hosts: files dns`, no `myhostname`). Docker's
//! embedded DNS server (`/etc/resolv.conf`, also docker's mount) answers for the containers of
//! the lab's network by name, as a corporate DNS server may or may not: the test points
//! `/etc/resolv.conf` at no server, so the node's name resolves to nothing until nodeprep
//! names it in `/etc/hosts`, as on a Photon host whose DNS does not know it. The host has a
//! network table
//! (`management_address`), so its cluster address is its address on the lab's network, not the
//! 127.0.0.1 the lab reaches it at.
//!
//! A run of "hostname" (skipped in a container, whose name is the runtime's), "name resolves"
//! and "kubelet extra args" replaces the installer's line with `<cluster address>   <name>` (the rest of the file as it was), and sets
//! kubelet's `--node-ip` to that address; `getent hosts` resolves the name to it, `verify`'s
//! "node name resolves" and "kubelet node ip" pass, and a second run changes nothing.

use nodeprep_tests::{Testbed, lab, outcome, recap, runner, worker_only};

use crate::worker::run_json_at;

const HOST: &str = "prdk8swok558";
const OLD: &str = "photon-3a9d61c07be2";

/// Photon OS 5.0's `/etc/hosts` (filesystem package).
const PHOTON_HOSTS: &str = include_str!("../../tasks/tests/data/photon/hosts");
/// Photon OS 5.0's `/etc/nsswitch.conf` (glibc).
const PHOTON_NSSWITCH: &str = include_str!("../../tasks/tests/data/photon/nsswitch.conf");

#[test]
fn node_name_resolves_to_its_cluster_address_and_kubelet_uses_it() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let ip = lab.ip(HOST).to_string();
    let cidr = lab
        .sh(HOST, "ip -4 -o addr show dev eth0 | awk '{print $4}'")
        .unwrap()
        .trim()
        .to_string();
    assert!(cidr.starts_with(&format!("{ip}/")), "{cidr}");

    // As the installer left it: its line for the old name, the old name live.
    let installed = PHOTON_HOSTS.replacen(
        "127.0.0.1   localhost\n",
        &format!("127.0.0.1   localhost\n127.0.0.1   {OLD}"),
        1,
    );
    assert_ne!(installed, PHOTON_HOSTS);
    lab.sh(
        HOST,
        &format!(
            "hostname {OLD} && cat > /etc/hosts <<'EOF'\n{installed}EOF\n\
             cat > /etc/nsswitch.conf <<'EOF'\n{PHOTON_NSSWITCH}EOF\n\
             echo '# no name server: docker'\\''s would name the lab'\\''s containers' > /etc/resolv.conf"
        ),
    )
    .unwrap();
    assert_eq!(lab.read_file(HOST, "/etc/hosts").unwrap(), installed);
    assert!(
        lab.sh(HOST, &format!("getent hosts {HOST} || echo none"))
            .unwrap()
            .trim()
            == "none",
        "the name resolves before the run"
    );

    let inv = lab
        .write_inventory(&format!(
            "[hosts.{HOST}.network]\naddress = \"{cidr}\"\n\n[kubernetes]\nsource = \"present\"\n"
        ))
        .unwrap();
    let text = std::fs::read_to_string(&inv).unwrap().replacen(
        &format!("[hosts.{HOST}]\n"),
        &format!("[hosts.{HOST}]\nmanagement_address = true\n"),
        1,
    );
    std::fs::write(&inv, text).unwrap();
    let args = worker_only(
        "run",
        HOST,
        &["hostname", "name resolves", "kubelet extra args"],
    );
    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    // In a container the host name is the runtime's: the step says so and the old name stays
    // live, as the probe read it (on a VM "hostname" renames the host, after the probe read
    // the old name, so "name resolves" sees the same).
    assert_eq!(outcome(&events, "hostname"), "skipped", "{events:#?}");
    for step in ["name resolves", "kubelet extra args"] {
        assert_eq!(outcome(&events, step), "changed", "{step}: {events:#?}");
    }

    // The installer's line became the name at the cluster address; nothing else moved.
    let hosts = lab.read_file(HOST, "/etc/hosts").unwrap();
    assert_eq!(
        hosts,
        installed.replacen(&format!("127.0.0.1   {OLD}"), &format!("{ip}   {HOST}"), 1)
    );
    let resolved = lab.sh(HOST, &format!("getent hosts {HOST}")).unwrap();
    assert_eq!(
        resolved.split_whitespace().next(),
        Some(ip.as_str()),
        "{resolved}"
    );
    let flags = lab.read_file(HOST, "/etc/default/kubelet").unwrap();
    assert!(flags.contains(&format!("--node-ip={ip}")), "{flags}");
    assert!(
        lab.sh(HOST, "ip -o addr")
            .unwrap()
            .contains(&format!(" {ip}/")),
        "the node IP is an address of the host"
    );

    let out = runner(&inv)
        .args(worker_only(
            "verify",
            HOST,
            &["node name resolves", "kubelet node ip"],
        ))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(recap(&events, HOST)["changed"], 0, "{events:#?}");
}
