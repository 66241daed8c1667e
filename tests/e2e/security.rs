//! Secrets and injection. The admin's password hash never appears in output, JSON events or
//! logs at any verbosity, nor on a command line on the target (commands there are wrapped to
//! log their arguments). Inventory values carrying shell syntax are refused; arguments that
//! do reach a host are quoted so that no unintended command runs.

use nodeprep_tests::{Testbed, lab, runner, worker_only, workspace_dir};

const HOST: &str = "prdk8swok512";
const HASH: &str = "$6$nodeprepdemo$wk44XuU7o9MhcvILKmVk55VnCYVIH.At4AbdPsvCzM6R6zZGO6xjQv0aPOQDJVwWGFwJ9hh32qddZeWox1cQx/";

#[test]
fn the_password_hash_never_leaves_stdin() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    // Every command that handles users logs its arguments before running.
    lab.sh(
        HOST,
        "for c in useradd usermod chpasswd chage passwd; do p=$(command -v $c) || continue; mv $p $p.real; \
         printf '#!/bin/sh\\necho \"%s $*\" >> /var/log/argv.log\\nexec %s.real \"$@\"\\n' $c $p > $p; chmod 755 $p; done",
    )
    .unwrap();
    let settings = format!(
        "[admin]\nname = \"kubeadmin\"\npassword_hash = \"{HASH}\"\nssh_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOyiXo8ZDrrZ8ngq0ORx3MAF5HnbFe9Q/89EcrI9vvO0 ops@example.lan\"]\n"
    );
    let inv = lab.write_inventory(&settings).unwrap();
    let steps = [
        "--only",
        "admin user",
        "--only",
        "admin ssh keys",
        "--only",
        "password expiry off",
    ];
    let mut seen = String::new();
    // The first check run finds the account to make (changes pending: exit 5); the real run
    // makes it; after it, nothing is left to change.
    let pending = i32::from(xtask::runner::EXIT_CHANGES_PENDING);
    for (extra, code) in [
        (&["--check", "--diff", "-vv"][..], pending),
        (&["--diff", "-vv"], 0),
        (&["--json", "--diff", "-vv"], 0),
        (&["--json", "--check", "--diff"], 0),
    ] {
        let out = runner(&inv)
            .env("RUST_LOG", "trace")
            .args(["run", "k8s-worker", "--host", HOST])
            .args(steps)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        seen.contains("kubeadmin"),
        "the runs did not show the user:\n{seen}"
    );
    for secret in [HASH, "wk44XuU7o9MhcvILKmVk55", "$6$nodeprepdemo"] {
        assert!(!seen.contains(secret), "{secret} leaked into the output");
    }
    let argv_log = lab.read_file(HOST, "/var/log/argv.log").unwrap();
    assert!(
        argv_log.contains("chpasswd -e"),
        "the password was not set through chpasswd:\n{argv_log}"
    );
    assert!(
        !argv_log.contains("nodeprepdemo"),
        "the hash was on a command line:\n{argv_log}"
    );
    assert!(
        lab.sh(HOST, "getent shadow kubeadmin")
            .unwrap()
            .contains(HASH)
    );
}

#[test]
fn inventory_values_with_shell_syntax_are_refused() {
    let example = std::fs::read_to_string(workspace_dir().join("inventory.toml")).unwrap();
    let nasty = [
        "a;reboot",
        "$(reboot)",
        "`reboot`",
        "a b",
        "x\\ny",
        "x'y",
        "x|y",
        "x&&y",
    ];
    let fields: &[(&str, &str, &str)] = &[
        ("admin name", "name = \"kubeadmin\"", "name = \"{}\""),
        ("locale", "locale = \"fr_FR.UTF-8\"", "locale = \"{}\""),
        ("keymap", "keymap = \"fr\"", "keymap = \"{}\""),
        (
            "ntp server",
            "ntp = [\"dc01.example.lan\"]",
            "ntp = [\"{}\"]",
        ),
        ("ssh user", "user = \"root\"", "user = \"{}\""),
        (
            "host address",
            "address = \"192.168.10.45\"",
            "address = \"{}\"",
        ),
        (
            "interface",
            "interface = \"eth0\"\naddress = \"192.168.10.45\"",
            "interface = \"{}\"\naddress = \"192.168.10.45\"",
        ),
        ("zone", "zone = \"lan\"", "zone = \"{}\""),
        (
            "kubernetes version",
            "version = \"1.27\"",
            "version = \"{}\"",
        ),
    ];
    let mut cases = 0;
    for (what, from, to) in fields {
        for value in nasty {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("inventory.toml");
            std::fs::write(&path, example.replacen(from, &to.replace("{}", value), 1)).unwrap();
            let out = runner(&path).args(["inventory", "check"]).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what} = {value:?} was accepted"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, fields.len() * nasty.len());
}

#[test]
fn arguments_reaching_a_host_are_quoted() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let mut cx = tasks::Ctx::connect(
        Box::new(tasks::host::Ssh::new(lab.ssh_config(HOST)).unwrap()),
        tasks::Options::default(),
    )
    .unwrap();
    let words = [
        "a;touch /tmp/p1",
        "$(touch /tmp/p2)",
        "`touch /tmp/p3`",
        "x\ntouch /tmp/p4",
        "'; touch /tmp/p5; '",
        "\"$(touch /tmp/p6)\"",
        "&& touch /tmp/p7",
    ];
    let mut argv = vec!["printf", "%s\\n"];
    argv.extend(words);
    let out = cx.apply(&argv).unwrap().unwrap();
    assert_eq!(
        out.stdout_str(),
        words.iter().map(|w| format!("{w}\n")).collect::<String>()
    );
    // A file whose name is shell syntax is written under exactly that name.
    let path = "/tmp/odd $(touch p8); name`touch p9`";
    let _ = tasks::file::content(&mut cx, path, "x\n", tasks::file::Perm::CONFIG).unwrap();
    assert_eq!(lab.read_file(HOST, path).unwrap(), "x\n");
    let ran = lab
        .sh(HOST, "ls /tmp /root | grep -c '^p[0-9]$' || true")
        .unwrap();
    assert_eq!(ran.trim(), "0", "an injected command ran");
}

/// A file on the host holding terminal escape sequences (clear the screen, retitle the
/// window, ring the bell, rewrite the line): its diff reaches the text output escaped
/// (`\x1b[2J` as text, no raw ESC, BEL or CR anywhere in stdout), line breaks kept; the JSON
/// output carries the same bytes, escaped by JSON.
#[test]
fn escape_sequences_in_a_file_diff_are_printed_harmlessly() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let inv = lab.write_inventory("").unwrap();
    let path = "/etc/sysctl.d/99-kubernetes-cri.conf";
    lab.sh(
        HOST,
        &format!("printf 'net.ipv4.ip_forward = 0\\033[2J\\033]0;pwned\\007\\n# \\033[31mred\\rover\\n' > {path}"),
    )
    .unwrap();
    let mut args = worker_only("run", HOST, &["sysctl persisted"]);
    args.extend(["--check", "--diff"]);
    let out = runner(&inv).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(i32::from(xtask::runner::EXIT_CHANGES_PENDING)),
        "{stdout}"
    );
    for raw in ['\x1b', '\x07', '\r'] {
        assert!(
            !stdout.contains(raw),
            "a raw {raw:?} reached the terminal: {stdout:?}"
        );
    }
    assert!(
        stdout.contains("-net.ipv4.ip_forward = 0\\x1b[2J\\x1b]0;pwned\\x07")
            && stdout.contains("-# \\x1b[31mred\\r"),
        "{stdout}"
    );
    assert!(stdout.contains("+net."), "{stdout}");

    let out = runner(&inv).args(&args).arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert!(stdout.contains("\\u001b[2J"), "{stdout}");
}
