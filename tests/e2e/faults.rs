//! Faults, each on its own host of one run: authentication refused, a changed host key, sudo
//! asking for a password, a command missing, a package manager failing. Each is reported on
//! its host with what to do, the healthy host finishes, and once the faults are fixed a re-run
//! converges. Also: a full disk leaves the old file whole, and a runner killed at any moment
//! leaves no partial file.

use std::time::Duration;

use nodeprep_tests::{Lab, Testbed, lab, recap, runner_bin};
use serde_json::Value;
use tasks::OsFamily;
use xtask::dev::testbed::known_hosts_line;

use crate::os;
use crate::worker::run_json_at;

const OK: &str = "okhost";
const BAD_AUTH: &str = "badauth";
const SUDO_PASSWORD: &str = "sudopass";
const NEW_KEY: &str = "newkey";
const NO_CHAGE: &str = "nochage";
const BAD_PKG: &str = "badpkg";
/// The SHA-512 crypt hash of deploy's password `not-a-secret` (set with `chpasswd -e`, which
/// neither needs nor runs the host's password-quality rules).
const DEPLOY_HASH: &str = "$6$nodeprepfaults$jpbp6szrcYQ/voU5eYG4mXCuV2Fs8LOEZBiXErFurL5HYjdOGyDZ1K/1k.bkGPYgzfLHnQoWTsHv873UH49Nm.";

/// Breaks the host's package manager (its repositories point at a closed loopback port), and
/// the command that puts it back. Each OS keeps them in its own files: apt's sources.list on
/// Debian, tdnf's .repo files on Photon (which may skip an unavailable repository unless told
/// not to).
fn break_packages(os: OsFamily) -> (&'static str, &'static str) {
    match os {
        OsFamily::Debian => (
            "cp /etc/apt/sources.list /root/sources.list.good && echo 'deb http://127.0.0.1:9/debian bookworm main' > /etc/apt/sources.list",
            "cp /root/sources.list.good /etc/apt/sources.list",
        ),
        OsFamily::Photon | OsFamily::Rhel => (
            "mkdir /root/repos.good && cp /etc/yum.repos.d/*.repo /root/repos.good/ && sed -i -e 's|^baseurl=.*|baseurl=http://127.0.0.1:9/photon|' -e 's|^skip_if_unavailable=.*|skip_if_unavailable=0|' /etc/yum.repos.d/*.repo",
            "cp /root/repos.good/*.repo /etc/yum.repos.d/",
        ),
    }
}
const STEPS: &[&str] = &["password expiry off", "nfs client", "sysctl persisted"];

fn args() -> Vec<&'static str> {
    let mut a = vec!["run", "k8s-worker", "--all"];
    for s in STEPS {
        a.extend(["--only", s]);
    }
    a
}

/// The lab inventory with `user = USER` for some hosts.
fn inventory(lab: &Lab, users: &[(&str, &str)]) -> std::path::PathBuf {
    let path = lab.write_inventory("").unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (host, user) in users {
        let header = format!("[hosts.{host}]\n");
        text = text.replace(&header, &format!("{header}user = \"{user}\"\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn host_error<'a>(events: &'a [Value], host: &str) -> &'a str {
    events
        .iter()
        .find(|e| e["host"] == host && (e["event"] == "host_error"))
        .and_then(|e| e["error"].as_str())
        .unwrap_or_else(|| panic!("no error for {host}: {events:#?}"))
}

#[test]
fn faults_are_reported_per_host_and_a_rerun_converges() {
    let hosts: Vec<(&str, &str)> = [OK, BAD_AUTH, SUDO_PASSWORD, NEW_KEY, NO_CHAGE, BAD_PKG]
        .iter()
        .map(|h| (*h, "k8s-worker"))
        .collect();
    let lab = lab(&hosts);
    // badauth: a user with no authorized key. sudopass: a user whose sudo asks a password.
    // (`useradd -U`: a group of the user's own, which Photon's login.defs would not make.)
    lab.sh(BAD_AUTH, "useradd -m -U stranger").unwrap();
    lab.sh(
        SUDO_PASSWORD,
        &format!("useradd -m -U -s /bin/sh deploy && echo 'deploy:{DEPLOY_HASH}' | chpasswd -e && install -d -m 700 -o deploy -g deploy ~deploy/.ssh \
         && install -m 600 -o deploy -g deploy /root/.ssh/authorized_keys ~deploy/.ssh/ && echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy"),
    )
    .unwrap();
    lab.sh(
        NO_CHAGE,
        "chage -M 90 root && mv /usr/bin/chage /usr/bin/chage.away",
    )
    .unwrap();
    let pkg_os = os::family(&lab, BAD_PKG);
    let (break_pkg, fix_pkg) = break_packages(pkg_os);
    lab.sh(BAD_PKG, break_pkg).unwrap();
    let inv = inventory(&lab, &[(BAD_AUTH, "stranger"), (SUDO_PASSWORD, "deploy")]);
    // newkey: the host key on record is another host's.
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    let port = lab.host(NEW_KEY).ssh_port;
    let other = lab
        .sh(
            OK,
            "ssh-keygen -q -t ed25519 -N '' -f /tmp/k >/dev/null && cat /tmp/k.pub",
        )
        .unwrap();
    let forged: String = known
        .lines()
        .map(|l| {
            if l.starts_with(&format!("[127.0.0.1]:{port} ")) {
                known_hosts_line(port, &other).trim_end().to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(lab.known_hosts(), forged).unwrap();

    let (code, events) = run_json_at(&inv, &args());
    assert_eq!(code, 3, "some host unreachable: {events:#?}");
    let r = recap(&events, OK);
    assert_eq!(
        (r["failed"].as_u64(), r["unreachable"].as_bool()),
        (Some(0), Some(false)),
        "{r}"
    );
    assert!(host_error(&events, BAD_AUTH).contains("ssh authentication refused"));
    let sudo = host_error(&events, SUDO_PASSWORD);
    assert!(
        sudo.contains("asks deploy for a password") && sudo.contains("NOPASSWD"),
        "{sudo}"
    );
    let key = host_error(&events, NEW_KEY);
    assert!(
        key.contains("host key") && key.contains("has changed") && key.contains("ssh-keygen -R"),
        "{key}"
    );
    let chage = host_error(&events, NO_CHAGE);
    assert!(chage.contains("chage") && chage.contains("127"), "{chage}");
    // The failing command is the OS's package manager: apt-get or tdnf.
    assert!(
        host_error(&events, BAD_PKG).contains(pkg_os.package_manager()),
        "{events:#?}"
    );
    for h in [BAD_AUTH, SUDO_PASSWORD, NEW_KEY] {
        assert_eq!(recap(&events, h)["unreachable"], true, "{h}");
    }
    for h in [NO_CHAGE, BAD_PKG] {
        assert_eq!(recap(&events, h)["failed"], 1, "{h}: {events:#?}");
    }
    // The password never reached the output.
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("not-a-secret") && !all.contains("nodeprepfaults"));
    // Nor does it when the run is given it and sudo takes it: deploy's run goes through, and
    // neither its output nor its command log (-vv) holds it.
    let out = nodeprep_tests::runner(&inv)
        .args(["run", "k8s-worker", "--host", SUDO_PASSWORD])
        .args(STEPS.iter().flat_map(|s| ["--only", s]))
        .args(["--password-env", "NP_TEST_DEPLOY_PW", "-vv"])
        .env("NP_TEST_DEPLOY_PW", "not-a-secret")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("DEBUG sent"), "no command log: {stderr}");
    assert!(
        !stdout.contains("not-a-secret") && !stderr.contains("not-a-secret"),
        "the password leaked into the output"
    );

    // Fix everything, the way the messages say.
    std::fs::write(lab.known_hosts(), &known).unwrap();
    lab.sh(BAD_AUTH, "install -d -m 700 -o stranger -g stranger ~stranger/.ssh && install -m 600 -o stranger -g stranger /root/.ssh/authorized_keys ~stranger/.ssh/ && echo 'stranger ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/stranger").unwrap();
    lab.sh(
        SUDO_PASSWORD,
        "echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy",
    )
    .unwrap();
    lab.sh(NO_CHAGE, "mv /usr/bin/chage.away /usr/bin/chage")
        .unwrap();
    lab.sh(BAD_PKG, fix_pkg).unwrap();
    let (code, events) = run_json_at(&inv, &args());
    assert_eq!(code, 0, "after the fixes: {events:#?}");
    let taken = || -> Vec<nodeprep_tests::Snapshot> {
        hosts
            .iter()
            .map(|(h, _)| nodeprep_tests::snapshot(&lab, &inv, "k8s-worker", h))
            .collect()
    };
    let before = taken();
    let (code, events) = run_json_at(&inv, &args());
    assert_eq!(code, 0);
    for (h, _) in &hosts {
        assert_eq!(
            recap(&events, h)["changed"],
            0,
            "{h} still changes: {events:#?}"
        );
    }
    for (b, a) in before.iter().zip(taken()) {
        b.assert_same(&a, "second run");
    }
}

#[test]
fn a_full_disk_leaves_the_old_file_whole() {
    let lab = lab(&[("fullhost", "k8s-worker")]);
    lab.sh("fullhost", "mkdir -p /mnt/small && mount -t tmpfs -o size=512k tmpfs /mnt/small && printf 'old\\n' > /mnt/small/app.conf && (dd if=/dev/zero of=/mnt/small/fill bs=4k 2>/dev/null || true)").unwrap();
    let host = tasks::host::Ssh::new(lab.ssh_config("fullhost")).unwrap();
    let mut cx = tasks::Ctx::connect(Box::new(host), tasks::Options::default()).unwrap();
    let big = "x".repeat(200_000);
    let err = tasks::file::content(
        &mut cx,
        "/mnt/small/app.conf",
        &big,
        tasks::file::Perm::CONFIG,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("fullhost") && err.to_string().contains("No space left"),
        "{err}"
    );
    assert_eq!(
        lab.read_file("fullhost", "/mnt/small/app.conf").unwrap(),
        "old\n"
    );
    assert_eq!(
        lab.sh("fullhost", "ls -a /mnt/small | grep -c nodeprep || true")
            .unwrap()
            .trim(),
        "0",
        "temporary file left"
    );
    // Space freed: the next attempt lands.
    lab.sh("fullhost", "rm /mnt/small/fill").unwrap();
    drop(cx);
    let mut cx = tasks::Ctx::connect(
        Box::new(tasks::host::Ssh::new(lab.ssh_config("fullhost")).unwrap()),
        tasks::Options::default(),
    )
    .unwrap();
    assert!(
        tasks::file::content(
            &mut cx,
            "/mnt/small/app.conf",
            &big,
            tasks::file::Perm::CONFIG
        )
        .unwrap()
        .changed()
    );
    assert_eq!(
        lab.read_file("fullhost", "/mnt/small/app.conf")
            .unwrap()
            .len(),
        200_000
    );
}

/// Where a kill left the host, read at once after it (before the host side settles): a
/// temporary file beside a target (a write under way), part of the run's files written and part
/// not, none, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    MidWrite,
    BetweenWrites,
    BeforeAnyWrite,
    AfterTheWrites,
}

/// A command on the host made slow by a wrapper earlier on PATH (`/usr/local/bin`): the write
/// script's `sync` of its temporary file (see `tasks::ctx::write`) then takes a second, during
/// which the temporary file stands beside its target. The product runs as it always does.
const SLOW_SYNC: &str = "printf '#!/bin/sh\\nsleep 1\\nexec /bin/sync \"$@\"\\n' > /usr/local/bin/sync && chmod 755 /usr/local/bin/sync";

/// The host's write scripts still running (a killed runner's last command finishing there):
/// a process with an argument `nodeprep-write` (the pattern written so that it does not match
/// this command itself).
fn writes_running(lab: &Lab, host: &str) -> bool {
    lab.sh(
        host,
        "for p in /proc/[0-9]*; do tr '\\0\\n' '  ' < $p/cmdline 2>/dev/null; echo; done | grep -c 'nodeprep[-]write' || true",
    )
    .unwrap()
    .trim()
        != "0"
}

#[test]
fn a_runner_killed_at_any_moment_leaves_no_partial_file() {
    use std::io::BufRead;
    use std::sync::mpsc;

    let lab = lab(&[("killhost", "k8s-worker")]);
    let inv = lab.write_inventory("").unwrap();
    let kernel = [
        "swap disabled in fstab",
        "kernel modules persisted",
        "sysctl persisted",
    ];
    let mut argv: Vec<String> = ["run", "k8s-worker", "--host", "killhost", "--inventory"]
        .map(String::from)
        .to_vec();
    argv.push(inv.display().to_string());
    for s in kernel {
        argv.extend(["--only".into(), s.into()]);
    }
    argv.push("--json".into());
    let sysctl = "/etc/sysctl.d/99-kubernetes-cri.conf";
    let modules = "/etc/modules-load.d/containerd.conf";
    lab.sh("killhost", SLOW_SYNC).unwrap();
    // Kills timed from the run's start, and from the event of a step that wrote (the next
    // step's write then under way): the moment after it, and a few later.
    let mut rounds: Vec<(Option<&str>, u64)> =
        [0u64, 150, 400].into_iter().map(|ms| (None, ms)).collect();
    for step in ["swap disabled in fstab", "kernel modules persisted"] {
        for ms in [0u64, 100, 300, 700] {
            rounds.push((Some(step), ms));
        }
    }
    let mut landed = Vec::new();
    for (i, (after_step, delay_ms)) in rounds.into_iter().enumerate() {
        // Start from scratch each time so that there is something to write.
        lab.sh("killhost", &format!("rm -f {sysctl} {modules}"))
            .unwrap();
        let child = std::sync::Arc::new(
            duct::cmd(runner_bin(), &argv)
                .env("NO_COLOR", "1")
                .stderr_null()
                .unchecked()
                .reader()
                .unwrap(),
        );
        let (tx, rx) = mpsc::channel::<Value>();
        let reader = std::thread::spawn({
            let child = child.clone();
            move || {
                for line in std::io::BufReader::new(&*child).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str(&line) {
                        let _ = tx.send(v);
                    }
                }
            }
        });
        if let Some(step) = after_step {
            let seen = loop {
                match rx.recv_timeout(Duration::from_secs(120)) {
                    Ok(e) if e["event"] == "step" && e["step"] == step => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            };
            assert!(seen, "round {i}: no event of step {step:?}");
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        // The host as the kill left it, read at once.
        let temps = lab.sh("killhost", "ls -a /etc/sysctl.d /etc/modules-load.d 2>/dev/null | grep -c '^.nodeprep' || true").unwrap();
        let written = [modules, sysctl].map(|p| {
            lab.sh("killhost", &format!("test -e {p} && echo yes || true"))
                .unwrap()
                .trim()
                == "yes"
        });
        let where_ = if temps.trim() != "0" {
            Landed::MidWrite
        } else if written == [true, true] {
            Landed::AfterTheWrites
        } else if written == [false, false] {
            Landed::BeforeAnyWrite
        } else {
            Landed::BetweenWrites
        };
        eprintln!(
            "round {i}: killed {delay_ms} ms after {} (runner {}): {where_:?}, written {modules} {}, {sysctl} {}",
            after_step.unwrap_or("the start"),
            if finished { "had finished" } else { "running" },
            written[0],
            written[1],
        );
        landed.push(where_);
        drop(rx);
        reader.join().unwrap();
        // Once the host's side of the killed run is over: whole files or none, and no
        // temporary file.
        let start = std::time::Instant::now();
        while writes_running(&lab, "killhost") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "round {i}: a write still running"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        for (path, must_hold) in [
            (sysctl, "net.bridge.bridge-nf-call-ip6tables = 1\n"),
            (modules, "br_netfilter\n"),
        ] {
            if let Some(text) = lab.read_file("killhost", path) {
                assert!(
                    text.ends_with(must_hold),
                    "round {i}: partial {path}:\n{text}"
                );
            }
        }
        let temps = lab.sh("killhost", "ls -a /etc /etc/sysctl.d /etc/modules-load.d 2>/dev/null | grep -c '^.nodeprep' || true").unwrap();
        assert_eq!(temps.trim(), "0", "round {i}: temporary file left");
    }
    // Some kills landed in the middle of the run's changes, not only before or after them.
    let mid_write = landed.iter().filter(|l| **l == Landed::MidWrite).count();
    eprintln!("kills: {landed:?}; {mid_write} mid-write");
    assert!(mid_write >= 2, "no kill landed mid-write: {landed:?}");

    // Whatever the kills left, a run converges and the next changes nothing.
    lab.sh("killhost", "rm /usr/local/bin/sync").unwrap();
    let args: Vec<&str> = argv
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--json")
        .collect();
    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    let r = events.iter().find(|e| e["event"] == "recap").unwrap();
    assert_eq!(r["changed"], 0, "{events:#?}");
}

#[test]
fn a_host_held_by_another_runner_is_busy() {
    let lab = lab(&[("lockhost", "k8s-worker")]);
    let inv = lab.write_inventory("").unwrap();
    lab.sh("lockhost", "mkdir /run/nodeprep.lock && echo 'nodeprep run by ops@othermachine (pid 4242, started at unix time 1)' > /run/nodeprep.lock/holder").unwrap();
    let args = [
        "run",
        "k8s-worker",
        "--host",
        "lockhost",
        "--only",
        "sysctl persisted",
    ];
    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 2, "{events:#?}");
    let err = host_error(&events, "lockhost");
    assert!(
        err.contains("busy") && err.contains("ops@othermachine (pid 4242"),
        "{err}"
    );
    assert!(
        lab.read_file("lockhost", "/etc/sysctl.d/99-kubernetes-cri.conf")
            .is_none(),
        "a busy host was touched"
    );
    // A check run reads only: it takes no lock and goes through (with its change pending).
    let (code, _) = run_json_at(&inv, &[&args[..], &["--check"]].concat());
    assert_eq!(code, i32::from(xtask::runner::EXIT_CHANGES_PENDING));
    // The other run is over: its lock goes, ours is taken and released.
    lab.sh("lockhost", "rm -rf /run/nodeprep.lock").unwrap();
    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    assert!(
        lab.sh("lockhost", "test ! -e /run/nodeprep.lock && echo released")
            .unwrap()
            .contains("released")
    );
}
