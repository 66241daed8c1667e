//! The runner's command line: every path that ends before any connection, and each error.
//! Inventories here point at loopback only; invalid ones are only ever checked, never run.

use std::path::{Path, PathBuf};

use nodeprep_tests::{runner, workspace_dir};
use predicates::prelude::*;

fn example() -> String {
    std::fs::read_to_string(workspace_dir().join("inventory.toml")).unwrap()
}

/// The example inventory with every host reached at a distinct loopback port nothing listens
/// on (a management address: its network keeps its cluster address), and its placeholders
/// confirmed unless `keep_placeholders`.
fn loopback_example(dir: &Path, keep_placeholders: bool) -> PathBuf {
    let mut text = String::new();
    let mut port = 1;
    let mut in_host_table = false;
    for line in example().lines() {
        if line.starts_with('[') {
            in_host_table = line.starts_with("[hosts.") && !line.ends_with(".network]");
        }
        let line = if keep_placeholders {
            line.to_string()
        } else {
            confirmed(line)
        };
        if in_host_table && line.starts_with("address = ") {
            text.push_str(&format!(
                "address = \"127.0.0.1\"\nport = {port}\nmanagement_address = true\n"
            ));
            port += 1;
        } else {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `key = { placeholder = VALUE }` written `key = VALUE`.
fn confirmed(line: &str) -> String {
    match line.split_once(" = { placeholder = ") {
        Some((key, rest)) if !line.starts_with('#') => {
            format!("{key} = {}", rest.strip_suffix(" }").unwrap())
        }
        _ => line.to_string(),
    }
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The example is valid; the values the seed does not give are listed as warnings, each with
/// its line, host and field.
#[test]
fn example_inventory_is_valid() {
    let out = runner(&workspace_dir().join("inventory.toml"))
        .args(["inventory", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok, 7 hosts"))
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let text = example();
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 17, "{out}");
    for w in &warnings {
        // warning: FILE:LINE: ...: placeholder VALUE: ...
        let n: usize = w.split(':').nth(2).unwrap().trim().parse().unwrap();
        assert!(
            text.lines()
                .nth(n - 1)
                .unwrap()
                .contains("{ placeholder = "),
            "{w}"
        );
    }
    for expected in [
        "host prdinfhap511: address: placeholder \"192.168.5.45\"",
        "host prdk8swok501: network.prefix: placeholder 24",
        "host prdk8swok512: network.gateway: placeholder \"192.168.5.1\"",
        "system.dns: placeholder [\"192.168.10.10\"]",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
}

#[test]
fn hosts_and_selection() {
    let inv = workspace_dir().join("inventory.toml");
    let out = runner(&inv)
        .args(["hosts", "--role", "k8s-worker"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "prdk8swok501",
            "prdk8swok502",
            "prdk8swok511",
            "prdk8swok512"
        ]
    );
    let out = runner(&inv)
        .args(["hosts", "--zone", "dmz", "--limit", "prdk8s*"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["prdk8swok511", "prdk8swok512"]);
}

#[test]
fn playbooks_are_listed_with_steps() {
    runner(Path::new("/nonexistent"))
        .arg("playbooks")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("k8s-worker")
                .and(predicate::str::contains("sysctl persisted"))
                .and(predicate::str::contains("motd")),
        );
}

/// Each case: a change to the example inventory and what the error must say.
#[test]
fn invalid_inventories_are_reported_with_file_host_field_and_line() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        // (what, replace this, with this, expected fragments)
        (
            "the seed's duplicate address",
            "address = { placeholder = \"192.168.5.45\" }",
            "address = \"192.168.5.57\"",
            &[
                "host prdk8swok511",
                "address",
                "also the address of prdinfhap511",
            ],
        ),
        (
            "uppercase host name",
            "[hosts.prdk8swok512]\nrole = \"k8s-worker\"\nzone = \"dmz\"\naddress = \"192.168.5.58\"\n\n[hosts.prdk8swok512.network]",
            "[hosts.PRDk8swok512]\nrole = \"k8s-worker\"\nzone = \"dmz\"\naddress = \"192.168.5.58\"\n\n[hosts.PRDk8swok512.network]",
            &["host PRDk8swok512", "lowercase RFC 1123"],
        ),
        (
            "unknown role",
            "role = \"k8s-master\"",
            "role = \"k8s-boss\"",
            &["host prdk8smst501", "role", "unknown role `k8s-boss`"],
        ),
        (
            "bad prefix",
            "address = \"192.168.10.57\"\nprefix = { placeholder = 24 }",
            "address = \"192.168.10.57\"\nprefix = 33",
            &["host prdk8swok501", "network.prefix", "prefix `33`"],
        ),
        (
            "gateway outside the prefix",
            "prefix = { placeholder = 24 }\ngateway = { placeholder = \"192.168.10.1\" }\n\n[hosts.prdk8swok502]",
            "prefix = 24\ngateway = \"192.168.11.1\"\n\n[hosts.prdk8swok502]",
            &[
                "host prdk8swok501",
                "network.gateway",
                "outside 192.168.10.0/24",
            ],
        ),
        (
            "network address not the host's",
            "address = \"192.168.5.58\"\nprefix",
            "address = \"192.168.5.59\"\nprefix",
            &[
                "host prdk8swok512",
                "network.address",
                "management_address = true",
            ],
        ),
        (
            "locale written UTF8",
            "locale = \"fr_FR.UTF-8\"",
            "locale = \"fr_FR.UTF8\"",
            &["system.locale", "fr_FR.UTF-8"],
        ),
        (
            "bad address",
            "address = \"192.168.10.58\"",
            "address = \"192.168.10.358\"",
            &["host prdk8swok502", "address", "192.168.10.358"],
        ),
        (
            "plaintext password",
            "password_hash = \"$6$nodeprepdemo$",
            "password_hash = \"hunter2-not-a-hash\" #",
            &["admin.password_hash", "SHA-512 crypt"],
        ),
        (
            "missing CA file",
            "ca_files = []",
            "ca_files = [\"certs/missing-root.pem\"]",
            &["system.ca_files", "missing-root.pem"],
        ),
        (
            "unknown key",
            "keymap = \"fr\"",
            "keymap = \"fr\"\nkeymapp = \"fr\"",
            &["unknown field `keymapp`"],
        ),
        (
            "bad kubernetes source",
            "source = \"distro\"",
            "source = \"snap\"",
            &["kubernetes.source", "unknown source `snap`"],
        ),
        (
            "unknown CNI",
            "cni = \"calico\"",
            "cni = \"weave\"",
            &["kubernetes.cni", "unknown CNI `weave`"],
        ),
        (
            "pod network holding the hosts",
            "pod_cidr = \"10.244.0.0/16\"",
            "pod_cidr = \"192.168.0.0/16\"",
            &["kubernetes.pod_cidr", "contains the address of host"],
        ),
        (
            "ingress NodePort outside the range",
            "ingress_http_nodeport = 30080",
            "ingress_http_nodeport = 80",
            &[
                "haproxy.ingress_http_nodeport",
                "NodePort range 30000-32767",
            ],
        ),
        (
            "gateway not an address",
            "gateway = { placeholder = \"192.168.10.1\" }\n\n[hosts.prdk8smst501]",
            "gateway = \"gw\"\n\n[hosts.prdk8smst501]",
            &["host prdinfhap501", "network.gateway"],
        ),
    ];
    for (what, from, to, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let text = example();
        assert!(
            text.contains(from),
            "{what}: the example no longer holds {from:?}"
        );
        let path = write(dir.path(), &text.replacen(from, to, 1));
        let (_, stderr) = inventory_check(&path, 1);
        assert!(
            stderr.contains(&path.display().to_string()),
            "{what}: file not named:\n{stderr}"
        );
        for e in *expected {
            assert!(stderr.contains(e), "{what}: expected {e:?} in:\n{stderr}");
        }
        assert!(
            !stderr.contains("hunter2"),
            "{what}: a secret leaked:\n{stderr}"
        );
        if !what.starts_with("unknown key")
            && !what.starts_with("missing CA")
            && !what.starts_with("plaintext")
        {
            let line_given = stderr.lines().any(|l| {
                l.contains(&format!("{}:", path.display()))
                    && l.split(':')
                        .nth(1)
                        .is_some_and(|n| n.trim().parse::<u32>().is_ok())
            });
            assert!(line_given, "{what}: no line number in:\n{stderr}");
        }
    }
}

#[test]
fn several_problems_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = example()
        .replacen("role = \"k8s-master\"", "role = \"boss\"", 1)
        .replacen(
            "address = \"192.168.10.57\"\nprefix = { placeholder = 24 }",
            "address = \"192.168.10.57\"",
            1,
        );
    let path = write(dir.path(), &text);
    runner(&path)
        .args(["inventory", "check"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("2 problems")
                .and(predicate::str::contains("boss"))
                .and(predicate::str::contains("address/prefix")),
        );
}

#[test]
fn run_errors_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let inv = loopback_example(dir.path(), false);
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "k8s-wrker", "--host", "prdk8swok511"],
            "no playbook `k8s-wrker`",
        ),
        (
            &["run", "k8s-worker", "--host", "prdk8swok599"],
            "no host `prdk8swok599`",
        ),
        (
            &["run", "k8s-worker", "--host", "prdinfhap501"],
            "refusing prdinfhap501 (haproxy)",
        ),
        (&["run", "k8s-worker"], "no hosts selected"),
        (
            &["run", "k8s-worker", "--role", "k8s-boss"],
            "unknown role `k8s-boss`",
        ),
        (
            &["run", "k8s-worker", "--zone", "nowhere"],
            "matches no host",
        ),
        (
            &["run", "k8s-worker", "--all", "--forks", "0"],
            "--forks must be at least 1",
        ),
        (
            &["run", "k8s-worker", "--all", "--only", "swap offf"],
            "no step `swap offf`",
        ),
        (
            &["run", "k8s-worker", "--all", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            &[
                "run",
                "k8s-worker",
                "--local",
                "--check",
                "--host",
                "prdk8swok501",
                "--host",
                "prdk8swok511",
            ],
            "--local runs on this machine alone: give at most one --host",
        ),
    ];
    for (args, expected) in cases {
        runner(&inv)
            .args(*args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(*expected));
    }
}

#[test]
fn unreachable_hosts_are_reported_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let inv = loopback_example(dir.path(), false);
    let out = runner(&inv)
        .args([
            "run",
            "k8s-worker",
            "--host",
            "prdk8swok511",
            "--host",
            "prdk8swok512",
        ])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("prdk8swok511 | UNREACHABLE")
            && stdout.contains("prdk8swok512 | UNREACHABLE"),
        "{stdout}"
    );
    assert!(stdout.contains("RECAP"), "{stdout}");
}

/// A run that would write a placeholder onto a host is refused before any connection, each
/// placeholder named with its file, line, host and field.
#[test]
fn run_refuses_placeholders_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let inv = loopback_example(dir.path(), true);
    let out = runner(&inv)
        .args(["run", "k8s-worker", "--host", "prdk8swok501", "--check"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "host prdk8swok501: network.prefix: placeholder 24",
        "host prdk8swok501: network.gateway: placeholder \"192.168.10.1\"",
        "system.dns: placeholder",
    ] {
        assert!(
            stderr.contains(&format!("{}:", inv.display())) && stderr.contains(expected),
            "{expected:?} not in:\n{stderr}"
        );
    }
    assert!(!stdout.contains("UNREACHABLE"), "{stdout}");
}

/// The line (1-based) of the `n`th line of `text` that is exactly `line`.
/// `inventory check` of the inventory at `path`, which must exit with `code`: its stdout and
/// stderr.
fn inventory_check(path: &Path, code: i32) -> (String, String) {
    let out = runner(path)
        .args(["inventory", "check"])
        .assert()
        .code(code)
        .get_output()
        .clone();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (text(&out.stdout), text(&out.stderr))
}

fn line_of(text: &str, line: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| *l == line)
        .nth(n)
        .unwrap_or_else(|| panic!("{line:?} not in the inventory"))
        .0
        + 1
}

/// `inventory check` reads every host's vars into the type each playbook meant for it declares
/// (motd declares its own): values of the wrong type are refused with exit 1, every one at
/// once, each naming the file, the line, the host and the field; a key no playbook declares is
/// a warning.
#[test]
fn inventory_check_refuses_vars_of_the_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    let text = example()
        + "\n[hosts.prdk8swok511.vars.motd]\nnotice = 42\n\
           \n[hosts.prdk8swok512.vars]\nnode_exporter = { listen = 42 }\nmotd = { notice = [\"a\"] }\n";
    let path = write(dir.path(), &text);
    let (stdout, stderr) = inventory_check(&path, 1);
    let file = path.display();
    assert!(stderr.contains("2 problems"), "{stderr}");
    let expected = [
        format!(
            "{file}:{}: host prdk8swok511: vars.motd.notice: invalid type: integer `42`, expected a string (playbook motd reads it)",
            line_of(&text, "notice = 42", 0)
        ),
        format!(
            "{file}:{}: host prdk8swok512: vars.motd.notice: invalid type: sequence, expected a string (playbook motd reads it)",
            line_of(&text, "motd = { notice = [\"a\"] }", 0)
        ),
    ];
    for e in &expected {
        assert!(stderr.contains(e.as_str()), "{e:?} not in:\n{stderr}");
    }
    // The hosts whose vars fit are not named.
    assert!(!stderr.contains("prdk8swok501"), "{stderr}");
    let unused = format!(
        "warning: {file}:{}: host prdk8swok512: vars.node_exporter: no registered playbook declares it",
        line_of(&text, "node_exporter = { listen = 42 }", 0)
    );
    assert!(stdout.contains(&unused), "{unused:?} not in:\n{stdout}");
    assert!(!stdout.contains(": ok,"), "{stdout}");

    // A shared value of the wrong type: every host that reads it, at the shared line.
    let text = example().replace(
        "notice = \"Authorised use only.\"",
        "notice = { text = \"Authorised use only.\" }",
    );
    let path = write(dir.path(), &text);
    let (_, stderr) = inventory_check(&path, 1);
    let line = line_of(&text, "notice = { text = \"Authorised use only.\" }", 0);
    assert!(stderr.contains("7 problems"), "{stderr}");
    for host in ["prdk8swok511", "prdinfhap501"] {
        let e = format!("{file}:{line}: host {host}: vars.motd.notice: invalid type: map");
        assert!(stderr.contains(&e), "{e:?} not in:\n{stderr}");
    }
}

/// Keys no playbook declares are warnings, not errors: the inventory is valid.
#[test]
fn inventory_check_lists_unused_vars_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = example() + "\n[vars.node_exporter]\nlisten = \":9100\"\n";
    let path = write(dir.path(), &text);
    let (stdout, _) = inventory_check(&path, 0);
    assert!(stdout.contains("ok, 7 hosts"), "{stdout}");
    let unused: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("no registered playbook declares it"))
        .collect();
    assert_eq!(
        unused,
        [format!(
            "warning: {}:{}: vars.node_exporter: no registered playbook declares it in its vars type: unused (a playbook that reads it declares its type with FnPlaybook::reads_vars or Playbook::vars_type)",
            path.display(),
            line_of(&text, "[vars.node_exporter]", 0)
        )],
        "{stdout}"
    );
}
