//! End to end on the hardened image (`xtask::dev::image::hardened`): containers that boot like
//! a fresh Photon OS 5.0 minimal install in what does not depend on tdnf (sshd refusing root,
//! sudo asking the admin's password, default-DROP iptables rules restored at boot with only
//! ssh open, cloud-init's network file shadowing the static one). The admin is made at the
//! console (`docker exec`), as the README's first-contact steps do on a Photon VM.
//!
//! - First contact: a run as the admin with its password converges k8s-worker (the sudoers
//!   drop-in, the firewall rules, cloud-init kept off the network), then a key-only run with a
//!   new login changes nothing.
//! - Traffic between two containers on the lab's network: a datagram to the CNI's VXLAN port
//!   and a connection to a NodePort are dropped before the "firewall ports" step and arrive
//!   after it, and still after the firewall service restores its rules.
//! - Identity: a container reached under another host's name is refused, untouched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nodeprep_tests::{Lab, Testbed, hardened_lab, outcome, recap};
use serde_json::Value;

use crate::access::{ADMIN, PASSWORD, console_admin, events, host_error, only, run, ssh};

/// The CNI the inventories name, and the UDP port its nodes exchange VXLAN on (flannel's
/// VXLAN backend: 8472; `playbooks::roles::k8s::CNIS`).
const CNI: &str = "flannel";
const VXLAN_PORT: u16 = 8472;
/// A port of Kubernetes' NodePort range (30000-32767), no ingress NodePort of the inventory's.
const NODEPORT: u16 = 31080;

/// The file the image's cloud-init network configuration was rendered to.
const CLOUD_INIT_FILE: &str = "/etc/systemd/network/10-cloud-init-eth0.network";

/// `[ssh]` logs in as the admin; `extra` follows the hosts (see [`Testbed::write_inventory`]).
fn admin_inventory(lab: &Lab, extra: &str) -> PathBuf {
    let inv = lab.write_inventory(extra).unwrap();
    let text = std::fs::read_to_string(&inv).unwrap();
    let text = text.replacen(
        "[ssh]\nuser = \"root\"\n",
        &format!("[ssh]\nuser = \"{ADMIN}\"\n"),
        1,
    );
    assert!(text.contains(&format!("user = \"{ADMIN}\"")), "{text}");
    std::fs::write(&inv, text).unwrap();
    inv
}

/// The admin's password in a file beside the inventory; its path as an argument.
fn password_file(lab: &Lab) -> String {
    let path = lab.dir().join("admin.password");
    std::fs::write(&path, format!("{PASSWORD}\n")).unwrap();
    path.display().to_string()
}

fn kubernetes() -> String {
    format!("[kubernetes]\nsource = \"present\"\ncni = \"{CNI}\"\n")
}

/// What the image carries, as the container booted it: root refused by sshd, Photon's rules
/// live (INPUT and FORWARD dropped, ssh accepted), cloud-init's configuration and its network
/// file.
fn assert_fresh(lab: &Lab, host: &str) {
    let sh = |script: &str| lab.sh(host, script).unwrap();
    assert!(
        sh("sshd -T").lines().any(|l| l == "permitrootlogin no"),
        "sshd takes root"
    );
    assert!(
        !ssh(lab, host, "root", "true").status.success(),
        "root logged in"
    );
    assert_eq!(
        sh("systemctl is-active netfilter-persistent").trim(),
        "active"
    );
    let input = sh("iptables -S INPUT");
    assert!(
        input.starts_with("-P INPUT DROP\n") && input.contains("--dport 22 -j ACCEPT"),
        "{input}"
    );
    assert!(!input.contains(&format!("--dport {VXLAN_PORT}")), "{input}");
    assert!(sh("iptables -S FORWARD").starts_with("-P FORWARD DROP\n"));
    assert!(lab.read_file(host, "/etc/cloud/cloud.cfg").is_some());
    assert!(
        lab.read_file(host, CLOUD_INIT_FILE)
            .is_some_and(|f| f.contains("Name=eth0")),
        "{CLOUD_INIT_FILE}"
    );
}

/// The address and prefix (`172.18.0.2/16`) and the default gateway of `host` on the lab's
/// network, as the container has them.
fn lab_network(lab: &Lab, host: &str) -> (String, String) {
    let cidr = lab
        .sh(host, "ip -4 -o addr show dev eth0 | awk '{print $4}'")
        .unwrap()
        .trim()
        .to_string();
    let gateway = lab
        .sh(host, "ip -4 route show default | awk '{print $3}'")
        .unwrap()
        .trim()
        .to_string();
    assert!(
        cidr.starts_with(&format!("{}/", lab.ip(host))) && !gateway.is_empty(),
        "{cidr} via {gateway}"
    );
    (cidr, gateway)
}

const HOST: &str = "prdk8swok551";

#[test]
fn first_contact_by_password_converges_then_keys_only_changes_nothing() {
    let lab = hardened_lab(&[(HOST, "k8s-worker")]);
    xtask::dev::lab::install_kube_standins(&lab).unwrap();
    assert_fresh(&lab, HOST);
    let hash = console_admin(&lab, HOST);
    assert!(
        !ssh(&lab, HOST, ADMIN, "true").status.success(),
        "the admin has no key yet"
    );

    // nodeprep writes the host's network: cloud-init is kept off it.
    let (cidr, gateway) = lab_network(&lab, HOST);
    let pubkey = std::fs::read_to_string(lab.dir().join("id_ed25519.pub")).unwrap();
    let settings = format!(
        "management_address = true\n\n\
         [hosts.{HOST}.network]\nwrite = true\ninterface = \"eth0\"\naddress = \"{cidr}\"\ngateway = \"{gateway}\"\n\n\
         [admin]\nname = \"{ADMIN}\"\npassword_hash = \"{hash}\"\nssh_keys = [\"{}\"]\npasswordless_sudo = true\n\n{}",
        pubkey.trim(),
        kubernetes()
    );
    let inv = admin_inventory(&lab, &settings);
    let base = ["run", "k8s-worker", "--host", HOST, "--json"];

    // First contact: the password, for ssh and sudo.
    let pw = password_file(&lab);
    let (code, out, err) = run(
        &inv,
        &[&base[..], &["--password-file", &pw, "-vv"]].concat(),
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    // The run that had the password (for ssh and sudo) holds it nowhere in its output or its
    // command log.
    assert!(err.contains("DEBUG sent"), "no command log: {err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    let first = events(&out);
    assert_eq!(recap(&first, HOST)["failed"], 0, "{first:#?}");
    for step in [
        "admin ssh keys",
        "admin passwordless sudo",
        "firewall ports",
        "firewall forward",
        "cloud-init network off",
        "cloud-init network file removed",
        "network file",
    ] {
        assert_eq!(outcome(&first, step), "changed", "{step}: {first:#?}");
    }

    // The firewall: Photon's rules file edited, its DROP policies kept, the rules live too.
    let rules = lab.read_file(HOST, "/etc/iptables/rules.v4").unwrap();
    for line in [
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
        &format!("-A INPUT -p udp -m udp --dport {VXLAN_PORT} -j ACCEPT"),
        "-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT",
        "-A FORWARD -s 10.244.0.0/16 -j ACCEPT",
    ] {
        assert!(rules.lines().any(|l| l == line), "{line} not in:\n{rules}");
    }
    let live = lab
        .sh(HOST, "iptables -S INPUT; iptables -S FORWARD")
        .unwrap();
    assert!(
        live.contains(&format!("--dport {VXLAN_PORT} -j ACCEPT"))
            && live.contains("-A FORWARD -d 10.244.0.0/16 -j ACCEPT"),
        "{live}"
    );
    // cloud-init: its network configuration off, its file gone (kept in the backups), the
    // static file in its place.
    assert!(
        lab.read_file(HOST, "/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg")
            .unwrap()
            .contains("network: {config: disabled}")
    );
    assert!(lab.read_file(HOST, CLOUD_INIT_FILE).is_none());
    assert!(
        lab.sh(
            HOST,
            "find /var/backups/nodeprep -name '10-cloud-init-eth0.network*'"
        )
        .unwrap()
        .contains("10-cloud-init-eth0.network"),
        "no backup of {CLOUD_INIT_FILE}"
    );
    assert!(
        lab.read_file(HOST, "/etc/systemd/network/10-static-en.network")
            .unwrap()
            .contains(&format!("Address={cidr}\nGateway={gateway}\n"))
    );

    // From now on: the key, sudo -n, no password anywhere; a new login (--fresh), no change.
    let direct = ssh(&lab, HOST, ADMIN, "sudo -n true && echo root-ok");
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        "root-ok\n",
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    let before = nodeprep_tests::snapshot(&lab, &inv, "k8s-worker", HOST);
    let (code, out, err) = run(&inv, &[&base[..], &["--fresh"]].concat(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let again = events(&out);
    assert_eq!(recap(&again, HOST)["changed"], 0, "{again:#?}");
    assert_eq!(recap(&again, HOST)["failed"], 0, "{again:#?}");
    before.assert_same(
        &nodeprep_tests::snapshot(&lab, &inv, "k8s-worker", HOST),
        "second run",
    );
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
}

const WORKER: &str = "prdk8swok552";
const PEER: &str = "prdk8swok553";

/// How long a datagram or a line may take to show up on the worker.
const ARRIVAL: Duration = Duration::from_secs(3);

/// On the worker: socat receiving datagrams on the VXLAN port and connections on the NodePort,
/// each appending what it gets to a file; both listening before this returns.
fn listen(lab: &Lab) {
    lab.sh(
        WORKER,
        &format!(
            "set -e
systemd-run --quiet --unit np-vxlan socat -u UDP-RECV:{VXLAN_PORT} OPEN:/tmp/vxlan.log,creat,append
systemd-run --quiet --unit np-nodeport socat -u TCP-LISTEN:{NODEPORT},fork,reuseaddr OPEN:/tmp/nodeport.log,creat,append
for i in $(seq 50); do
    if ss -Hlnu 'sport = :{VXLAN_PORT}' | grep -q . && ss -Hlnt 'sport = :{NODEPORT}' | grep -q .; then
        exit 0
    fi
    sleep 0.1
done
echo 'socat is not listening' >&2
exit 1"
        ),
    )
    .unwrap();
}

/// Whether `tag` shows up in the worker's `log` within [`ARRIVAL`].
fn arrived(lab: &Lab, log: &str, tag: &str) -> bool {
    let started = Instant::now();
    loop {
        if lab
            .read_file(WORKER, log)
            .is_some_and(|text| text.lines().any(|l| l == tag))
        {
            return true;
        }
        if started.elapsed() > ARRIVAL {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What reached the worker's listeners from `from` at `to`: whether the datagram arrived, and
/// how the connection went: `Ok(())` when its line arrived, else `timeout`'s exit code (124:
/// the connection hung, its SYN dropped) or the connecting shell's (1: refused).
fn probe(lab: &Lab, from: &str, to: &str, tag: &str) -> (bool, Result<(), i32>) {
    let udp = format!("{tag}-udp");
    lab.sh(
        from,
        &format!("printf '%s\\n' {udp} | socat -u - UDP-SENDTO:{to}:{VXLAN_PORT}"),
    )
    .unwrap();
    let udp_arrived = arrived(lab, "/tmp/vxlan.log", &udp);
    let tcp = format!("{tag}-tcp");
    let code = lab
        .sh(
            from,
            &format!(
                "timeout {} bash -c 'printf \"%s\\n\" {tcp} > /dev/tcp/{to}/{NODEPORT}'; echo $?",
                ARRIVAL.as_secs()
            ),
        )
        .unwrap();
    let code: i32 = code.trim().parse().unwrap();
    let tcp_result = match code {
        0 if arrived(lab, "/tmp/nodeport.log", &tcp) => Ok(()),
        0 => Err(0),
        other => Err(other),
    };
    (udp_arrived, tcp_result)
}

#[test]
fn vxlan_and_nodeport_traffic_pass_only_after_the_firewall_step() {
    let lab = hardened_lab(&[(WORKER, "k8s-worker"), (PEER, "k8s-worker")]);
    let hash = console_admin(&lab, WORKER);
    listen(&lab);
    let worker_ip = lab.ip(WORKER).to_string();

    // The listeners answer on the worker itself (loopback is accepted)...
    let (udp, tcp) = probe(&lab, WORKER, "127.0.0.1", "loopback");
    assert!(udp && tcp.is_ok(), "listeners: udp {udp}, tcp {tcp:?}");
    // ...and nothing from the peer gets through: dropped, not refused.
    let (udp, tcp) = probe(&lab, PEER, &worker_ip, "before");
    assert!(
        !udp,
        "the datagram to {VXLAN_PORT} arrived before the firewall step"
    );
    assert_eq!(
        tcp,
        Err(124),
        "the connection to {NODEPORT} was not dropped"
    );

    // The worker's firewall step, as the admin with its password.
    let inv = admin_inventory(
        &lab,
        &format!(
            "[admin]\nname = \"{ADMIN}\"\npassword_hash = \"{hash}\"\n\n{}",
            kubernetes()
        ),
    );
    let pw = password_file(&lab);
    let args = [
        &["run", "k8s-worker", "--host", WORKER, "--json"][..],
        &only(&["firewall ports"]),
        &["--password-file", &pw],
    ]
    .concat();
    let (code, out, err) = run(&inv, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(outcome(&events(&out), "firewall ports"), "changed", "{out}");

    let (udp, tcp) = probe(&lab, PEER, &worker_ip, "after");
    assert!(
        udp,
        "the datagram to {VXLAN_PORT} did not arrive after the firewall step"
    );
    assert_eq!(
        tcp,
        Ok(()),
        "the connection to {NODEPORT} after the firewall step"
    );

    // The same once the firewall service has restored the saved rules (as at boot).
    lab.sh(WORKER, "systemctl restart netfilter-persistent")
        .unwrap();
    let (udp, tcp) = probe(&lab, PEER, &worker_ip, "restored");
    assert!(
        udp && tcp.is_ok(),
        "after a restore: udp {udp}, tcp {tcp:?}"
    );
}

const REACHED: &str = "prdk8swok554";
const NAMED: &str = "prdk8swok555";

/// Every file under /etc and the live rules: what a refused run must leave as it was.
fn snapshot(lab: &Lab, host: &str) -> String {
    lab.sh(
        host,
        "find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum; iptables -S",
    )
    .unwrap()
}

/// The inventory names the container `NAMED`, at its ssh port.
fn naming_inventory(lab: &Lab, hash: &str) -> PathBuf {
    let inv = admin_inventory(
        lab,
        &format!(
            "[admin]\nname = \"{ADMIN}\"\npassword_hash = \"{hash}\"\n\n{}",
            kubernetes()
        ),
    );
    let text = std::fs::read_to_string(&inv).unwrap();
    let text = text.replace(&format!("[hosts.{REACHED}]"), &format!("[hosts.{NAMED}]"));
    let path = inv.with_file_name("named.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_container_reached_under_another_hosts_name_is_refused() {
    let lab = hardened_lab(&[(REACHED, "k8s-worker")]);
    let hash = console_admin(&lab, REACHED);
    let inv: &Path = &naming_inventory(&lab, &hash);
    let pw = password_file(&lab);
    let before = snapshot(&lab, REACHED);

    let args = [
        &["run", "k8s-worker", "--host", NAMED, "--json"][..],
        &only(&["firewall ports", "sysctl persisted"]),
        &["--password-file", &pw],
    ]
    .concat();
    let (code, out, err) = run(inv, &args, &[]);
    assert_eq!(code, 6, "{out}\n{err}");
    let events: Vec<Value> = events(&out);
    let e = host_error(&events, NAMED);
    assert_eq!(e["kind"], "identity", "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("Its host name is \"{REACHED}\", not \"{NAMED}\"")),
        "{msg}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "step"),
        "a step ran: {events:#?}"
    );
    assert_eq!(
        snapshot(&lab, REACHED),
        before,
        "the refused host was touched"
    );
}

const CALICO_NODE: &str = "prdk8swok556";

/// Calico on a host whose `/etc/protocols` names protocol 4 as IANA does (`ipv4`, as Photon's
/// iana-etc file; the image's, see `xtask::dev::image::hardened::PROTOCOL_4`): iptables lists
/// the IP-in-IP rule by that name, the firewall reads it back as protocol 4, so the second run
/// changes nothing and `run --check` finds no drift.
#[test]
fn calico_converges_where_protocol_4_is_named_ipv4() {
    let lab = hardened_lab(&[(CALICO_NODE, "k8s-worker")]);
    xtask::dev::lab::install_kube_standins(&lab).unwrap();
    let protocols = lab.read_file(CALICO_NODE, "/etc/protocols").unwrap();
    assert!(
        protocols.lines().any(|l| l.starts_with("ipv4\t4\t"))
            && !protocols.lines().any(|l| l.starts_with("ipencap")),
        "the image's /etc/protocols:\n{protocols}"
    );
    let hash = console_admin(&lab, CALICO_NODE);
    let inv = admin_inventory(
        &lab,
        &format!(
            "[admin]\nname = \"{ADMIN}\"\npassword_hash = \"{hash}\"\n\n\
             [kubernetes]\nsource = \"present\"\ncni = \"calico\"\n"
        ),
    );
    let pw = password_file(&lab);
    let base = [
        "run",
        "k8s-worker",
        "--host",
        CALICO_NODE,
        "--json",
        "--password-file",
        &pw,
    ];

    let (code, out, err) = run(&inv, &base, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let first = events(&out);
    assert_eq!(outcome(&first, "firewall ports"), "changed", "{first:#?}");
    // iptables names protocol 4 through the host's file: the rule it lists is `-p ipv4`.
    let live = lab.sh(CALICO_NODE, "iptables -S INPUT").unwrap();
    assert!(
        live.lines().any(|l| l == "-A INPUT -p ipv4 -j ACCEPT"),
        "{live}"
    );
    let saved = lab
        .read_file(CALICO_NODE, "/etc/iptables/rules.v4")
        .unwrap();
    assert!(
        saved.lines().any(|l| l == "-A INPUT -p 4 -j ACCEPT"),
        "{saved}"
    );

    let (code, out, err) = run(&inv, &base, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let again = events(&out);
    assert_eq!(recap(&again, CALICO_NODE)["changed"], 0, "{again:#?}");
    let live_again = lab.sh(CALICO_NODE, "iptables -S INPUT").unwrap();
    assert_eq!(live_again, live, "a rule was added again");

    let (code, out, err) = run(&inv, &[&base[..], &["--check"]].concat(), &[]);
    assert_eq!(code, 0, "run --check: {out}\n{err}");
}
