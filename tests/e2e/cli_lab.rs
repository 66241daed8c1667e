//! Runner paths that need a host: text output with diffs, --skip, -v logging, and --local (the
//! runner binary copied into a container and run there, no ssh).

use nodeprep_tests::{lab, runner, runner_bin};

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
        .args([
            "--only",
            "sysctl persisted",
            "--only",
            "swap off",
            "--skip",
            "swap off",
        ])
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
    // Steps left out by --only/--skip do not run and are one line of the recap.
    assert!(!stdout.contains("swap off"), "{stdout}");
    assert!(
        stdout.contains("steps of the playbook not selected (--only/--skip)"),
        "{stdout}"
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
    let container = &lab.node(HOST).container;
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
