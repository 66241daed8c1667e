//! Runner paths that need a host: text output with diffs, --skip, -v logging, and --local (the
//! runner binary copied into a container and run there, no ssh).

use nodeprep_tests::{Testbed, lab, runner, runner_bin};

const HOST: &str = "prdk8swok502";

#[test]
fn text_output_check_diff_skip_and_verbose() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let inv = lab.write_inventory("").unwrap();
    let out = runner(&inv)
        .args([
            "-v",
            "run",
            "k8s-worker",
            "--host",
            HOST,
            "--check",
            "--diff",
        ])
        // A comma list and a repeat name the same kind of thing.
        .args(["--only", "sysctl persisted,swap off", "--skip", "swap off"])
        .assert()
        .code(i32::from(xtask::runner::EXIT_CHANGES_PENDING))
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("{HOST} | changed  sysctl persisted")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{HOST} |   +net.ipv4.ip_forward = 1")),
        "diff missing:\n{stdout}"
    );
    // Steps left out are not printed one by one, nor counted as skipped: one line says how
    // many (the k8s-worker playbook has 34 steps, one ran).
    assert!(
        !stdout.contains("swap off") && !stdout.contains("admin user"),
        "{stdout}"
    );
    // The k8s-worker playbook's steps, as `playbooks` lists them; one of them ran.
    let listing = runner(&inv).arg("playbooks").output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    let steps = listing
        .lines()
        .skip_while(|l| !l.starts_with("k8s-worker "))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .count();
    assert!(steps > 30, "{listing}");
    assert!(
        stdout.contains(&format!(
            "{} steps of the playbook not selected (--only/--skip)",
            steps - 1
        )),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with(HOST)
            && l.split_whitespace().collect::<Vec<_>>().get(1..5)
                == Some(&["0", "1", "0", "0"][..])),
        "recap: ok 0, changed 1, failed 0, skipped 0:\n{stdout}"
    );
    assert!(
        stdout.contains("RECAP (check mode: nothing was changed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nchanges pending on 1 of 1 host"),
        "{stdout}"
    );
    assert!(
        stderr.contains("step started"),
        "-v shows no log:\n{stderr}"
    );
    assert!(
        lab.read_file(HOST, "/etc/sysctl.d/99-kubernetes-cri.conf")
            .is_none(),
        "check mode wrote the file"
    );
}

#[test]
fn local_mode_runs_on_this_machine_without_ssh() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let container = lab.container(HOST);
    duct::cmd(
        "docker",
        [
            "cp",
            &runner_bin().display().to_string(),
            &format!("{container}:/usr/local/bin/nodeprep"),
        ],
    )
    .run()
    .unwrap();
    // No inventory on that machine: --local works without one.
    let run = |extra: &[&str]| {
        let mut argv = vec![
            "nodeprep",
            "run",
            "k8s-worker",
            "--local",
            "--only",
            "sysctl persisted",
            "--only",
            "kernel modules persisted",
        ];
        argv.extend_from_slice(extra);
        lab.exec(HOST, &argv).unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{HOST} | changed  sysctl persisted")),
        "{stdout}"
    );
    assert!(
        lab.read_file(HOST, "/etc/modules-load.d/containerd.conf")
            .unwrap()
            .contains("br_netfilter")
    );
    let again = run(&["--json"]);
    let recap = String::from_utf8_lossy(&again.stdout)
        .lines()
        .find(|l| l.contains("\"recap\""))
        .unwrap()
        .to_string();
    assert!(recap.contains("\"changed\":0"), "{recap}");
    assert!(recap.contains("\"failed\":0"), "{recap}");
}
