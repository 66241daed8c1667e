//! Hostile hosts: what a user with a login on a managed host (here the admin, who owns its home
//! directory) or a broken host can leave for the next run. Links in the user's own `~/.ssh`
//! to root's files, a device or a pipe where a file is expected, a reply without end, a
//! command that never returns: the run refuses or acts as the user, ends that host in bounded
//! time with an error naming the cause, keeps its memory bounded, and never shows root's
//! files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nodeprep_tests::{Lab, Testbed, lab, runner_bin};

const HOST: &str = "prdk8swok521";
const OTHER: &str = "prdk8swok522";
const ADMIN: &str = "kubeadmin";
const HASH: &str = "$6$nodeprepdemo$wk44XuU7o9MhcvILKmVk55VnCYVIH.At4AbdPsvCzM6R6zZGO6xjQv0aPOQDJVwWGFwJ9hh32qddZeWox1cQx/";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOyiXo8ZDrrZ8ngq0ORx3MAF5HnbFe9Q/89EcrI9vvO0 ops@example.lan";

/// A marker in /etc/shadow (a locked account's "hash"): no output may ever hold it.
const SHADOW_MARK: &str = "SHADOWTEXTNEVERSHOWN";

/// The admin in the inventory; `ssh` lines added to its `[ssh]` table.
fn inventory(lab: &Lab, ssh: &str) -> PathBuf {
    let path = lab
        .write_inventory(&format!(
            "[admin]\nname = \"{ADMIN}\"\npassword_hash = \"{HASH}\"\nssh_keys = [\"{KEY}\"]\n"
        ))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("[ssh]\n", &format!("[ssh]\n{ssh}"), 1)).unwrap();
    path
}

/// The admin account as the user left it: made at the console, its home its own, and a marker
/// account in /etc/shadow.
fn admin_with_home(lab: &Lab, host: &str) {
    lab.sh(
        host,
        &format!(
            "set -e; useradd -m -s /bin/bash {ADMIN}; useradd -M marker; usermod -p {SHADOW_MARK} marker"
        ),
    )
    .unwrap();
}

/// What a run left: its exit code, stdout and stderr together, its wall time and the peak
/// resident memory of the runner (VmHWM, polled while it ran).
struct Ran {
    code: Option<i32>,
    output: String,
    took: Duration,
    peak_kib: u64,
}

/// Runs the runner with `args`, killed (and the test failed) after `limit`.
fn run_bounded(inventory: &Path, args: &[&str], limit: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    // A test spawns the runner it measures (the Host layer is the runner's own spawner).
    #[allow(clippy::disallowed_methods)]
    let mut child = std::process::Command::new(runner_bin())
        .env("NODEPREP_INVENTORY", inventory)
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the run was still going after {limit:?}: killed\nstdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()),
        String::from_utf8_lossy(&std::fs::read(&err_path).unwrap())
    );
    Ran {
        code: status.code(),
        output,
        took: start.elapsed(),
        peak_kib,
    }
}

/// The admin keys step, in text with diffs and in JSON with diffs, check and apply.
const KEYS_RUNS: &[&[&str]] = &[
    &["--check", "--diff"],
    &["--json", "--check", "--diff"],
    &["--diff", "-v"],
    &["--json", "--diff"],
];

fn keys_run(inventory: &Path, extra: &[&str]) -> Ran {
    let mut args = vec![
        "run",
        "k8s-worker",
        "--host",
        HOST,
        "--only",
        "admin ssh keys",
    ];
    args.extend(extra);
    run_bounded(inventory, &args, Duration::from_secs(120))
}

/// What `stat` and a listing say of `path` (a directory: its entries too).
fn snapshot(lab: &Lab, path: &str) -> String {
    lab.sh(
        HOST,
        &format!("stat -c '%F %a %U:%G %s %Y' {path}; ls -la --time-style=+%s {path}/ 2>/dev/null | sha256sum; [ -f {path} ] && sha256sum {path} || true"),
    )
    .unwrap()
}

/// `~admin/.ssh` a link to a directory of root's (/etc/systemd/system, where a unit file is
/// root): the run refuses, naming the path, and the directory keeps its owner, mode and
/// contents. (Before: the run chowned /etc/systemd/system to the admin.)
#[test]
fn ssh_dir_linked_to_a_root_directory() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    admin_with_home(&lab, HOST);
    lab.sh(
        HOST,
        &format!("runuser -u {ADMIN} -- ln -s /etc/systemd/system /home/{ADMIN}/.ssh"),
    )
    .unwrap();
    let before = snapshot(&lab, "/etc/systemd/system");
    let inv = inventory(&lab, "");
    for extra in KEYS_RUNS {
        let ran = keys_run(&inv, extra);
        assert_eq!(ran.code, Some(2), "{extra:?}: {}", ran.output);
        assert!(
            ran.output
                .contains(&format!("/home/{ADMIN}/.ssh is a symbolic link")),
            "{extra:?}: {}",
            ran.output
        );
        assert_eq!(snapshot(&lab, "/etc/systemd/system"), before, "{extra:?}");
    }
    assert!(
        lab.sh(HOST, "ls /etc/systemd/system/authorized_keys 2>&1 || true")
            .unwrap()
            .contains("No such file")
    );
}

/// `~admin/.ssh/authorized_keys` a link to /etc/shadow: refused; shadow unchanged, and none
/// of its text in any output, text or JSON, with diffs. (Before: the diff showed every hash,
/// and the link was replaced by an admin-owned copy of shadow.)
#[test]
fn authorized_keys_linked_to_shadow() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    admin_with_home(&lab, HOST);
    lab.sh(
        HOST,
        &format!(
            "runuser -u {ADMIN} -- sh -c 'mkdir -m 700 ~/.ssh && ln -s /etc/shadow ~/.ssh/authorized_keys'"
        ),
    )
    .unwrap();
    let before = snapshot(&lab, "/etc/shadow");
    assert!(
        lab.sh(HOST, "cat /etc/shadow")
            .unwrap()
            .contains(SHADOW_MARK)
    );
    let inv = inventory(&lab, "");
    for extra in KEYS_RUNS {
        let ran = keys_run(&inv, extra);
        assert_eq!(ran.code, Some(2), "{extra:?}: {}", ran.output);
        assert!(
            !ran.output.contains(SHADOW_MARK) && !ran.output.contains("root:*:"),
            "{extra:?}: shadow's text in the output:\n{}",
            ran.output
        );
        assert!(
            ran.output.contains(&format!(
                "/home/{ADMIN}/.ssh/authorized_keys is a symbolic link"
            )),
            "{extra:?}: {}",
            ran.output
        );
        assert_eq!(snapshot(&lab, "/etc/shadow"), before, "{extra:?}");
    }
    assert_eq!(
        lab.sh(
            HOST,
            &format!("readlink /home/{ADMIN}/.ssh/authorized_keys")
        )
        .unwrap(),
        "/etc/shadow\n",
        "the link is left as the user made it"
    );
}

/// A device or a pipe where `authorized_keys` is expected: the run ends that host in bounded
/// time and memory with an error naming the path. (Before: a link to /dev/zero was read without
/// end, exhausting the runner's memory; a FIFO held the run for ever, check mode included.)
#[test]
fn authorized_keys_a_device_or_a_pipe() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    admin_with_home(&lab, HOST);
    let inv = inventory(&lab, "");
    for (make, what) in [
        ("ln -s /dev/zero ~/.ssh/authorized_keys", "a symbolic link"),
        ("mkfifo ~/.ssh/authorized_keys", "a fifo"),
    ] {
        lab.sh(
            HOST,
            &format!(
                "runuser -u {ADMIN} -- sh -c 'rm -rf ~/.ssh && mkdir -m 700 ~/.ssh && {make}'"
            ),
        )
        .unwrap();
        for extra in [&["--check"][..], &[]] {
            let ran = keys_run(&inv, extra);
            assert_eq!(ran.code, Some(2), "{make} {extra:?}: {}", ran.output);
            assert!(
                ran.output
                    .contains(&format!("/home/{ADMIN}/.ssh/authorized_keys is {what}")),
                "{make} {extra:?}: {}",
                ran.output
            );
            assert!(ran.took < Duration::from_secs(60), "{make}: {:?}", ran.took);
            assert!(
                ran.peak_kib < 200 * 1024,
                "{make}: peak {} KiB",
                ran.peak_kib
            );
        }
    }
}

/// A host that answers the probe with a gigabyte (its `base64` made endless): the reply is
/// refused past the output cap, the runner's memory stays under 200 MB, and the error says
/// why. (Before: the whole reply was kept in memory, several times over.)
#[test]
fn a_reply_without_end_is_refused_with_bounded_memory() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    lab.sh(
        HOST,
        "set -e; b=$(command -v base64); mv $b $b.real; printf '#!/bin/sh\\ncat >/dev/null; head -c 1073741824 /dev/zero | tr \"\\\\0\" A\\n' > $b; chmod 755 $b",
    )
    .unwrap();
    let inv = inventory(&lab, "");
    let ran = run_bounded(
        &inv,
        &[
            "run",
            "k8s-worker",
            "--host",
            HOST,
            "--check",
            "--only",
            "sysctl persisted",
        ],
        Duration::from_secs(180),
    );
    assert!(ran.peak_kib < 200 * 1024, "peak {} KiB", ran.peak_kib);
    assert_eq!(ran.code, Some(2), "{}", ran.output);
    assert!(ran.output.contains("passed 32 MiB"), "{}", ran.output);
}

/// A command that never returns (the probe's `base64` made to hang) on one host: the time
/// limit the inventory gives fires and ends that host with an error naming it; the other host
/// goes on. (Before: the run waited for ever.)
#[test]
fn a_command_that_never_returns_meets_the_time_limit() {
    let lab = lab(&[(HOST, "k8s-worker"), (OTHER, "k8s-worker")]);
    lab.sh(
        HOST,
        "set -e; b=$(command -v base64); mv $b $b.real; printf '#!/bin/sh\\nexec sleep 100000\\n' > $b; chmod 755 $b",
    )
    .unwrap();
    let inv = inventory(&lab, "command_timeout = 5\n");
    let ran = run_bounded(
        &inv,
        &[
            "run",
            "k8s-worker",
            "--all",
            "--check",
            "--only",
            "sysctl persisted",
            "--json",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(ran.code, Some(2), "{}", ran.output);
    assert!(
        ran.took < Duration::from_secs(60),
        "took {:?}: {}",
        ran.took,
        ran.output
    );
    let events: Vec<serde_json::Value> = ran
        .output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let error = events
        .iter()
        .find(|e| e["event"] == "host_error" && e["host"] == HOST)
        .unwrap_or_else(|| panic!("no error for {HOST}: {}", ran.output));
    assert!(
        error.to_string().contains("no answer within 5 s"),
        "{error}"
    );
    let other = events
        .iter()
        .find(|e| e["event"] == "recap" && e["host"] == OTHER)
        .unwrap_or_else(|| panic!("no recap for {OTHER}: {}", ran.output));
    assert_eq!(other["failed"], 0, "{other}");
}

/// Escape sequences in a file's text reach the terminal escaped in a text `--diff`: a user's
/// `authorized_keys` holding a terminal title sequence and a screen clear.
#[test]
fn escape_sequences_in_a_diff_are_printed_harmlessly() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    admin_with_home(&lab, HOST);
    lab.sh(
        HOST,
        &format!(
            "runuser -u {ADMIN} -- sh -c 'mkdir -m 700 ~/.ssh && printf \"# \\033]0;owned\\007\\033[2J\\n\" > ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys'"
        ),
    )
    .unwrap();
    let inv = inventory(&lab, "");
    let ran = keys_run(&inv, &["--check", "--diff"]);
    assert_eq!(ran.code, Some(5), "{}", ran.output);
    assert!(ran.output.contains("owned"), "{}", ran.output);
    assert!(
        !ran.output.contains('\u{1b}') && !ran.output.contains('\u{7}'),
        "raw control characters in the text output: {:?}",
        ran.output
    );
}
