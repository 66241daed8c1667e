//! The lab itself: containers boot, answer ssh through the lab's key and known_hosts, reach each
//! other on the private network, and are gone after drop.

use nodeprep_tests::lab;

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
    let identity = lab.identity_file();
    let known_hosts = format!("UserKnownHostsFile={}", lab.known_hosts().display());

    for node in lab.nodes() {
        let port = node.ssh_port.to_string();
        let out = run(
            "ssh",
            &[
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                &known_hosts,
                "-i",
                identity.to_str().unwrap(),
                "-p",
                &port,
                "root@127.0.0.1",
                "hostname",
            ],
        );
        assert!(
            out.status.success(),
            "ssh to {} failed: {}",
            node.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node.name);
    }

    // Nodes reach each other on the private network (sshd's port, with bash's /dev/tcp).
    let (n1, n2) = (lab.node("node1"), lab.node("node2"));
    for (from, to) in [(n1, n2), (n2, n1)] {
        let probe = format!("exec 3<>/dev/tcp/{}/22 && head -c 4 <&3", to.ip);
        let banner = lab.exec(&from.name, &["bash", "-c", &probe]).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&banner.stdout),
            "SSH-",
            "{} -> {} ({}): {}",
            from.name,
            to.name,
            to.ip,
            String::from_utf8_lossy(&banner.stderr)
        );
    }

    let inventory = std::fs::read_to_string(lab.write_inventory("").unwrap()).unwrap();
    assert!(
        inventory.contains(&format!(
            "[hosts.node2]\nrole = \"k8s-worker\"\naddress = \"127.0.0.1\"\nport = {}\n",
            n2.ssh_port
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

    let containers: Vec<String> = lab.nodes().iter().map(|n| n.container.clone()).collect();
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
