//! The lab itself: containers boot, answer ssh through the lab's key and known_hosts, reach each
//! other on the private network, and are gone after drop.

use std::time::Duration;

use nodeprep_tests::{Testbed, lab};

fn run(program: &str, args: &[&str]) -> std::process::Output {
    duct::cmd(program, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

#[test]
fn lab_boots_answers_ssh_and_cleans_up() {
    let lab = lab(&[("node1", "k8s-control-plane"), ("node2", "k8s-worker")]);

    // A real login through each loopback port, with the lab's key and known_hosts only.
    for host in lab.hosts() {
        let out = lab
            .ssh(&host.name, "hostname", Duration::from_secs(30))
            .unwrap();
        assert!(
            out.status.success(),
            "ssh to {} failed: {}",
            host.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.name);
    }

    // Nodes reach each other on the private network (sshd's port, with bash's /dev/tcp).
    for (from, to) in [("node1", "node2"), ("node2", "node1")] {
        let probe = format!("exec 3<>/dev/tcp/{}/22 && head -c 4 <&3", lab.ip(to));
        let banner = lab.exec(from, &["bash", "-c", &probe]).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&banner.stdout),
            "SSH-",
            "{from} -> {to} ({}): {}",
            lab.ip(to),
            String::from_utf8_lossy(&banner.stderr)
        );
    }

    let inventory = std::fs::read_to_string(lab.write_inventory("").unwrap()).unwrap();
    assert!(
        inventory.contains(&format!(
            "[hosts.node2]\nrole = \"k8s-worker\"\naddress = \"127.0.0.1\"\nport = {}\n",
            lab.host("node2").ssh_port
        )),
        "{inventory}"
    );
    assert_eq!(
        lab.read_file("node1", "/etc/hostname")
            .as_deref()
            .map(str::trim),
        Some("node1")
    );
    assert!(lab.sh("node1", "exit 3").is_err());

    let containers: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| lab.container(&h.name).to_string())
        .collect();
    drop(lab);
    for container in containers {
        let out = run(
            "docker",
            &["ps", "-a", "-q", "--filter", &format!("name=^{container}$")],
        );
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "{container} still exists after drop");
    }
}
