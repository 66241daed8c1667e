//! First contact and host identity, end to end.
//!
//! A lab container hardened at run time like a fresh Photon OS (root refused by sshd, an admin
//! in the sudo group whose sudo asks its password, password login on): a first run as that
//! admin with the password converges and installs the passwordless sudo drop-in; a key-only
//! re-run changes nothing; the password is nowhere in the output, the logs or the target's
//! journal. Then identity: a container reached under another host's inventory name is refused
//! (exit 6) and untouched, accepted once with `--accept-new-identity`, recognised after; and
//! `--local --host X` refuses to prepare a machine that is not X.

use std::path::{Path, PathBuf};

use nodeprep_tests::{Lab, Testbed, lab, outcome, recap, runner, runner_bin};
use serde_json::Value;

use crate::worker::run_json_at;

const ADMIN_HOST: &str = "prdk8swok541";
pub(crate) const ADMIN: &str = "kubeadmin";
/// Distinctive, so that any copy of it in any output is found.
pub(crate) const PASSWORD: &str = "Np-first-contact-7f3a91";

/// Cheap common steps, the sudoers drop-in, then two file writes of k8s-worker (after the
/// drop-in went live: sudo stops asking mid-run).
const STEPS: &[&str] = &[
    "admin user",
    "admin ssh keys",
    "password expiry off",
    "admin passwordless sudo",
    "sysctl persisted",
    "kernel modules persisted",
];

pub(crate) fn only(steps: &[&'static str]) -> Vec<&'static str> {
    steps.iter().flat_map(|s| ["--only", *s]).collect()
}

pub(crate) fn host_error<'a>(events: &'a [Value], host: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "host_error" && e["host"] == host)
        .unwrap_or_else(|| panic!("no host_error for {host} in {events:#?}"))
}

/// What a fresh Photon OS does that the lab image does not (../shared/photon: sshd_config has
/// `PermitRootLogin no`, sudoers `%wheel ALL=(ALL) ALL`; password login is sshd's default):
/// root refused by sshd, the admin made at the console ([`console_admin`]). Returns the
/// admin's hash, as /etc/shadow holds it, for the inventory.
fn harden(lab: &Lab, host: &str) -> String {
    let hash = console_admin(lab, host);
    lab.sh(
        host,
        "set -e
printf 'PermitRootLogin no\\nPasswordAuthentication yes\\nKbdInteractiveAuthentication yes\\n' > /etc/ssh/sshd_config.d/05-hardened.conf
systemctl reload ssh.service",
    )
    .unwrap();
    // A reload re-executes sshd, which resets the connections it meets meanwhile: wait until
    // it answers again, refusing root (the new settings in force).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = ssh(lab, host, "root", "true");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() && err.contains("Permission denied") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshd did not come back refusing root after its reload: {err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    hash
}

/// The admin made on the console of a fresh install: in the OS's sudo group (`sudo` on Debian,
/// `wheel` on Photon, by the host's os-release; the same rule: its own password asked) with a
/// password and no key; no sudoers rule says NOPASSWD. Returns the admin's hash, as
/// /etc/shadow holds it.
pub(crate) fn console_admin(lab: &Lab, host: &str) -> String {
    let group = nodeprep_tests::os_family(lab, host).sudo_group();
    lab.sh(
        host,
        &format!(
            "set -e
useradd -m -s /bin/bash -G {group} {ADMIN}
echo '{ADMIN}:{PASSWORD}' | chpasswd -c SHA512
! grep -rs NOPASSWD /etc/sudoers /etc/sudoers.d"
        ),
    )
    .unwrap();
    lab.sh(host, &format!("getent shadow {ADMIN} | cut -d: -f2"))
        .unwrap()
        .trim()
        .to_string()
}

/// ssh into the lab node with the lab key, `BatchMode=yes` (a key or nothing).
pub(crate) fn ssh(lab: &Lab, host: &str, user: &str, command: &str) -> std::process::Output {
    let port = lab.host(host).ssh_port.to_string();
    let key = lab.identity_file().display().to_string();
    let known = format!("UserKnownHostsFile={}", lab.known_hosts().display());
    duct::cmd(
        "ssh",
        [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &known,
            "-i",
            &key,
            "-p",
            &port,
            &format!("{user}@127.0.0.1"),
            command,
        ],
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .unwrap()
}

/// Runs the runner; returns exit code, stdout, stderr.
pub(crate) fn run(inv: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = runner(inv);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn first_contact_with_a_password_then_keys_only() {
    let lab = lab(&[(ADMIN_HOST, "k8s-worker")]);
    let hash = harden(&lab, ADMIN_HOST);
    // Root is refused now: the first run cannot use the lab's root key.
    assert!(!ssh(&lab, ADMIN_HOST, "root", "true").status.success());
    // Nor the admin by key (none yet), nor its sudo without a password.
    assert!(!ssh(&lab, ADMIN_HOST, ADMIN, "true").status.success());

    let pubkey = std::fs::read_to_string(lab.dir().join("id_ed25519.pub")).unwrap();
    let settings = format!(
        "[admin]\nname = \"{ADMIN}\"\npassword_hash = \"{hash}\"\nssh_keys = [\"{}\"]\npasswordless_sudo = true\n",
        pubkey.trim()
    );
    let inv = lab.write_inventory(&settings).unwrap();
    let text = std::fs::read_to_string(&inv).unwrap();
    let header = format!("[hosts.{ADMIN_HOST}]\n");
    std::fs::write(
        &inv,
        text.replace(&header, &format!("{header}user = \"{ADMIN}\"\n")),
    )
    .unwrap();
    let password_file = lab.dir().join("admin.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let pw_arg = password_file.display().to_string();
    let mut seen = String::new();

    // Without a password: refused at the ssh door, and the message says what to do.
    let base = ["run", "k8s-worker", "--host", ADMIN_HOST];
    let (code, out, err) = run(&inv, &[&base[..], &only(STEPS), &["--json"]].concat(), &[]);
    assert_eq!(code, 3, "{out}\n{err}");
    let e = host_error(&events(&out), ADMIN_HOST)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains("ssh authentication refused") && e.contains("--ask-pass"),
        "{e}"
    );

    // First run: the password from a file, for ssh and sudo alike.
    let (code, out, err) = run(
        &inv,
        &[
            &base[..],
            &only(STEPS),
            &["--password-file", &pw_arg, "--json", "--diff", "-vv"],
        ]
        .concat(),
        &[("RUST_LOG", "trace")],
    );
    seen.push_str(&out);
    seen.push_str(&err);
    assert_eq!(code, 0, "{out}\n{err}");
    let first = events(&out);
    assert_eq!(
        outcome(&first, "admin user"),
        "ok",
        "the hash is the password's"
    );
    assert_eq!(outcome(&first, "admin ssh keys"), "changed");
    assert_eq!(outcome(&first, "admin passwordless sudo"), "changed");
    assert_eq!(outcome(&first, "sysctl persisted"), "changed");
    assert_eq!(outcome(&first, "kernel modules persisted"), "changed");
    assert_eq!(recap(&first, ADMIN_HOST)["failed"], 0);
    // Files written through sudo -S arrived whole (stdin after the password line).
    let keys = lab
        .read_file(ADMIN_HOST, &format!("/home/{ADMIN}/.ssh/authorized_keys"))
        .unwrap();
    assert!(keys.contains(pubkey.trim()), "{keys}");
    assert!(
        lab.read_file(ADMIN_HOST, "/etc/sysctl.d/99-kubernetes-cri.conf")
            .unwrap()
            .contains("net.ipv4.ip_forward = 1")
    );
    let drop_in = format!("/etc/sudoers.d/nodeprep-{ADMIN}");
    assert_eq!(
        lab.read_file(ADMIN_HOST, &drop_in).unwrap(),
        format!(
            "# Managed by nodeprep (inventory: admin.passwordless_sudo = true).\n{ADMIN} ALL=(ALL) NOPASSWD: ALL\n"
        )
    );
    assert_eq!(
        lab.sh(
            ADMIN_HOST,
            &format!("stat -c '%a %U:%G' {drop_in}; ls -A /etc/sudoers.d")
        )
        .unwrap(),
        format!("440 root:root\nREADME\nnodeprep-{ADMIN}\n"),
        "mode 0440 and no candidate left behind"
    );

    // Key only, no password anywhere: sudo -n works, and the re-run changes nothing.
    let direct = ssh(&lab, ADMIN_HOST, ADMIN, "sudo -n true && echo root-ok");
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        "root-ok\n",
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    // --fresh: a new login, by key (the password run's connection is not reused).
    let before = nodeprep_tests::snapshot(&lab, &inv, "k8s-worker", ADMIN_HOST);
    let (code, out, err) = run(
        &inv,
        &[&base[..], &only(STEPS), &["--json", "--fresh"]].concat(),
        &[],
    );
    seen.push_str(&out);
    seen.push_str(&err);
    assert_eq!(code, 0, "{out}\n{err}");
    let again = events(&out);
    assert_eq!(recap(&again, ADMIN_HOST)["changed"], 0, "{again:#?}");
    assert_eq!(recap(&again, ADMIN_HOST)["failed"], 0);
    before.assert_same(
        &nodeprep_tests::snapshot(&lab, &inv, "k8s-worker", ADMIN_HOST),
        "second run",
    );

    // A password still given once sudo asks none: taken in stride (sudo -n), in text and -vv.
    let (code, out, err) = run(
        &inv,
        &[
            &base[..],
            &only(STEPS),
            &[
                "--password-env",
                "NP_TEST_ADMIN_PW",
                "--check",
                "--diff",
                "-vv",
            ],
        ]
        .concat(),
        &[("NP_TEST_ADMIN_PW", PASSWORD), ("RUST_LOG", "trace")],
    );
    seen.push_str(&out);
    seen.push_str(&err);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("RECAP (check mode"), "{out}");

    // The password is nowhere: not in what the runner printed or logged (the command log at
    // -vv included), not on the target (sudo logs each command line to the journal), not in
    // any file the run left beside the inventory.
    assert!(
        seen.contains("DEBUG sent visudo -c -f"),
        "no -vv command log: {seen}"
    );
    assert!(
        !seen.contains(PASSWORD),
        "the password leaked into the output"
    );
    let journal = lab
        .sh(
            ADMIN_HOST,
            "journalctl --no-pager -o cat 2>/dev/null || true",
        )
        .unwrap();
    assert!(
        journal.contains("COMMAND="),
        "sudo's log lines are missing: {journal}"
    );
    assert!(
        !journal.contains(PASSWORD),
        "the password is in the target's journal"
    );
    let files = lab
        .sh(
            ADMIN_HOST,
            &format!(
                "grep -rIl -- '{PASSWORD}' /etc /home /root /tmp /var/log /run 2>/dev/null || true"
            ),
        )
        .unwrap();
    assert_eq!(files, "", "the password was written to files on the target");
    for entry in std::fs::read_dir(lab.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path != password_file && path.is_file() {
            let text = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(PASSWORD),
                "{} holds the password",
                path.display()
            );
        }
    }
}

const REACHED: &str = "prdk8swok543";
const NAMED: &str = "prdk8swok542";
const WORKER_STEPS: &[&str] = &["sysctl persisted", "kernel modules persisted"];

/// An inventory naming `name` the host at `node`'s ssh port, in `file` of the lab's folder,
/// with a network table of `network` address when given.
fn inventory_naming(
    lab: &Lab,
    node: &str,
    name: &str,
    file: &str,
    network: Option<&str>,
) -> PathBuf {
    let path = lab.dir().join(file);
    let mut text = format!(
        "[ssh]\nuser = \"root\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\n[hosts.{name}]\nrole = \"k8s-worker\"\naddress = \"127.0.0.1\"\nport = {}\n",
        lab.identity_file().display(),
        lab.known_hosts().display(),
        lab.host(node).ssh_port
    );
    if let Some(address) = network {
        // The ssh address (loopback) is a separate management address.
        text.push_str(&format!(
            "management_address = true\nnetwork = {{ address = \"{address}/16\" }}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn snapshot(lab: &Lab, host: &str) -> String {
    lab.sh(
        host,
        "find /etc /var/backups -xdev -type f -print0 | sort -z | xargs -0 sha256sum; \
         if [ -e /run/nodeprep.lock ]; then echo locked; else echo unlocked; fi",
    )
    .unwrap()
}

#[test]
fn a_host_that_is_not_the_inventorys_is_refused_until_accepted() {
    let lab = lab(&[(REACHED, "k8s-worker")]);
    let inv = inventory_naming(&lab, REACHED, NAMED, "identity.toml", None);
    let record = lab.dir().join("identity.identities.toml");
    let mut args = vec!["run", "k8s-worker", "--host", NAMED];
    args.extend(only(WORKER_STEPS));

    let before = snapshot(&lab, REACHED);
    for extra in [&[][..], &["--check"]] {
        let (code, events) = run_json_at(&inv, &[&args[..], extra].concat());
        assert_eq!(code, 6, "{events:#?}");
        let e = host_error(&events, NAMED);
        assert_eq!(e["kind"], "identity");
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains(&format!("Its host name is \"{REACHED}\", not \"{NAMED}\""))
                && msg.contains("none is recorded")
                && msg.contains("--accept-new-identity"),
            "{msg}"
        );
        assert!(
            !events.iter().any(|e| e["event"] == "step"),
            "a step ran: {events:#?}"
        );
        assert_eq!(recap(&events, NAMED)["refused"], true);
    }
    assert_eq!(
        snapshot(&lab, REACHED),
        before,
        "the refused host was touched"
    );
    assert!(!record.exists(), "a refused host was recorded");

    // The same in text.
    let (code, out, _) = run(&inv, &args, &[]);
    assert_eq!(code, 6);
    assert!(out.contains(&format!("{NAMED} | REFUSED")), "{out}");

    // The address the inventory gives the host (its network table) is the machine's: proven,
    // whatever the name. A check run: nothing recorded. Another network address: refused.
    let ip = lab.ip(REACHED).to_string();
    let by_address = inventory_naming(&lab, REACHED, NAMED, "by-address.toml", Some(&ip));
    let (code, events) = run_json_at(&by_address, &[&args[..], &["--check"]].concat());
    assert_eq!(code, 5, "proven, and changes pending: {events:#?}");
    assert_eq!(outcome(&events, "sysctl persisted"), "changed");
    let elsewhere = inventory_naming(&lab, REACHED, NAMED, "elsewhere.toml", Some("192.0.2.7"));
    let (code, events) = run_json_at(&elsewhere, &[&args[..], &["--check"]].concat());
    assert_eq!(code, 6, "{events:#?}");
    let msg = host_error(&events, NAMED)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("is 192.0.2.7"), "{msg}");

    // Accepted once: recorded, and the run goes on.
    let (code, events) = run_json_at(&inv, &[&args[..], &["--accept-new-identity"]].concat());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(outcome(&events, "sysctl persisted"), "changed");
    let id = lab.read_file(REACHED, "/etc/machine-id").unwrap();
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains(&format!(
            "[hosts.{NAMED}]\nmachine_id = \"{}\"\n",
            id.trim()
        )),
        "{text}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "progress"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("new identity accepted")),
        "{events:#?}"
    );

    // Recognised by its machine-id from now on.
    let before = nodeprep_tests::snapshot_of(&lab, REACHED, &inv, "k8s-worker", NAMED);
    let (code, events) = run_json_at(&inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(recap(&events, NAMED)["changed"], 0);
    before.assert_same(
        &nodeprep_tests::snapshot_of(&lab, REACHED, &inv, "k8s-worker", NAMED),
        "second run",
    );

    // Another name for the same machine is still refused.
    let other = inventory_naming(&lab, REACHED, "prdk8swok544", "other.toml", None);
    let (code, _) = run_json_at(
        &other,
        &[
            "run",
            "k8s-worker",
            "--host",
            "prdk8swok544",
            "--only",
            "sysctl persisted",
        ],
    );
    assert_eq!(code, 6);
}

/// `--local --host X` on a machine that is not X: refused, nothing written; under its own
/// name it runs.
#[test]
fn local_mode_checks_this_machine_is_the_host_named() {
    let lab = lab(&[(REACHED, "k8s-worker")]);
    let container = lab.container(REACHED);
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
    let local = |host: Option<&str>| {
        let mut argv = vec!["nodeprep", "run", "k8s-worker", "--local"];
        if let Some(h) = host {
            argv.extend(["--host", h]);
        }
        argv.extend(["--only", "sysctl persisted"]);
        lab.exec(REACHED, &argv).unwrap()
    };
    let out = local(Some(NAMED));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    assert!(
        stdout.contains(&format!("{NAMED} | REFUSED"))
            && stdout.contains(&format!("\"{REACHED}\"")),
        "{stdout}"
    );
    assert!(
        lab.read_file(REACHED, "/etc/sysctl.d/99-kubernetes-cri.conf")
            .is_none(),
        "the refused run wrote a file"
    );
    let out = local(Some(REACHED));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        lab.read_file(REACHED, "/etc/sysctl.d/99-kubernetes-cri.conf")
            .is_some()
    );
}

/// A machine refused by identity never receives sudo's password: the admin logs in by key,
/// sudo asks its password, and a wrapper in front of sudo logs every call and what sudo is
/// given on stdin. The refused run calls sudo not once (its identity was read as the login
/// user); once the machine is accepted, the wrapper sees the password go to sudo (it would
/// have seen it before the identity check, had the probe carried it).
#[test]
fn a_host_refused_by_identity_never_receives_the_sudo_password() {
    let lab = lab(&[(REACHED, "k8s-worker")]);
    console_admin(&lab, REACHED);
    let pubkey = std::fs::read_to_string(lab.dir().join("id_ed25519.pub")).unwrap();
    lab.sh(
        REACHED,
        &format!(
            "set -e
install -d -m 700 -o {ADMIN} -g {ADMIN} /home/{ADMIN}/.ssh
echo '{}' > /home/{ADMIN}/.ssh/authorized_keys
chown {ADMIN}: /home/{ADMIN}/.ssh/authorized_keys
install -m 600 -o {ADMIN} /dev/null /var/log/sudo-calls.log
cat > /usr/local/bin/sudo <<'W'
#!/bin/sh
log=/var/log/sudo-calls.log
printf 'sudo %s\\n' \"$*\" >> $log
case \" $* \" in *' -S '*) tee -a $log | /usr/bin/sudo \"$@\"; exit $? ;; esac
exec /usr/bin/sudo \"$@\"
W
chmod 755 /usr/local/bin/sudo",
            pubkey.trim()
        ),
    )
    .unwrap();
    let direct = ssh(&lab, REACHED, ADMIN, "command -v sudo; sudo -n true");
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout).trim(),
        "/usr/local/bin/sudo",
        "the wrapper comes first on the admin's PATH"
    );
    assert!(!direct.status.success(), "sudo asks the admin's password");
    lab.sh(REACHED, ": > /var/log/sudo-calls.log").unwrap();

    let inv = inventory_naming(&lab, REACHED, NAMED, "sudo-identity.toml", None);
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        text.replace("user = \"root\"", &format!("user = \"{ADMIN}\"")),
    )
    .unwrap();
    let password_file = lab.dir().join("sudo-identity.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let pw = password_file.display().to_string();
    let mut args = vec![
        "run",
        "k8s-worker",
        "--host",
        NAMED,
        "--become-password-file",
        &pw,
    ];
    args.extend(only(WORKER_STEPS));

    let before = snapshot(&lab, REACHED);
    for extra in [&[][..], &["--check"]] {
        let (code, events) = run_json_at(&inv, &[&args[..], extra].concat());
        assert_eq!(code, 6, "{events:#?}");
        assert_eq!(host_error(&events, NAMED)["kind"], "identity");
        let log = lab.read_file(REACHED, "/var/log/sudo-calls.log").unwrap();
        assert!(
            !log.contains(PASSWORD),
            "the refused host received sudo's password: {log}"
        );
        assert_eq!(log, "", "sudo ran on the refused host");
    }
    assert_eq!(
        snapshot(&lab, REACHED),
        before,
        "the refused host was touched"
    );

    // Accepted: now, and only now, sudo gets the password (the wrapper sees it).
    let (code, events) = run_json_at(
        &inv,
        &[&args[..], &["--check", "--accept-new-identity"]].concat(),
    );
    assert_eq!(code, 5, "changes pending: {events:#?}");
    let log = lab.read_file(REACHED, "/var/log/sudo-calls.log").unwrap();
    assert!(log.contains(PASSWORD), "the wrapper saw no password: {log}");
}
