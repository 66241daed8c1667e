//! The inventory as the runner sees it: the example is valid, and every problem of a broken one
//! is reported at once, in a fixed order, with its file, host, field and line.

use std::path::Path;

use expect_test::expect;
use indoc::indoc;
use playbooks::Inventory;

fn example() -> &'static str {
    include_str!("../../inventory.toml")
}

fn problems(text: &str) -> String {
    Inventory::parse(text, Path::new("inventory.toml"))
        .expect_err("the inventory should be invalid")
        .to_string()
}

#[test]
fn the_example_is_valid() {
    let inv = Inventory::parse(example(), Path::new("inventory.toml")).unwrap();
    assert_eq!(inv.hosts.len(), 7);
    assert_eq!(inv.hosts["prdk8swok511"].address, "192.168.5.57");
    assert_eq!(inv.system.locale, "fr_FR.UTF-8");
    let vars = inv.target("prdk8swok511").unwrap().var_table();
    assert!(vars["motd"]["notice"].is_str(), "{vars}");
}

#[test]
fn an_empty_inventory_is_valid() {
    let inv = Inventory::parse("", Path::new("inventory.toml")).unwrap();
    assert!(inv.hosts.is_empty());
    assert_eq!(inv.ssh.port, 22);
}

#[test]
fn every_problem_is_reported_in_order() {
    let text = indoc! {r#"
        [ssh]
        user = "Root"
        port = 0

        [admin]
        name = "9admin"
        password_hash = "hunter2"
        ssh_keys = ["nope"]

        [system]
        locale = "fr FR"
        keymap = "f r"
        ntp = ["1.2.3.999", "-bad"]
        dns = ["x"]
        ca_files = ["missing.pem", "bad name.pem"]

        [kubernetes]
        source = "snap"
        version = "1.30.1"

        [hosts.B-ad]
        role = "boss"
        address = "1.2.3"
        port = 0
        user = "X"
        zone = "L A N"
        network = { interface = "a-very-long-interface-name", address = "1.2.3.4", gateway = "gw", dns = ["d"] }

        [hosts.a]
        role = "k8s-worker"
        address = "10.0.0.1"
        port = 22
        network = { address = "10.0.0.1/24" }

        [hosts.b]
        role = "k8s-worker"
        address = "10.0.0.1"
        port = 22
        network = { address = "10.0.0.1/33" }

        [hosts.c]
        role = "k8s-worker"
        address = "10.0.0.2"
        network = { address = "10.0.0.1/24" }
    "#};
    let out = problems(text);
    assert!(!out.contains("hunter2"), "a secret leaked:\n{out}");
    expect![[r#"
        inventory.toml: 29 problems
          inventory.toml:21: host B-ad: host name `B-ad` must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63, no leading/trailing '-'): it is also the hostname and the Kubernetes node name
          inventory.toml:22: host B-ad: role: unknown role `boss` (expected one of: haproxy, k8s-master, k8s-worker)
          inventory.toml:23: host B-ad: address: `1.2.3` is neither an IPv4 address nor a DNS name
          inventory.toml:24: host B-ad: port: port 0 is not a port
          inventory.toml:25: host B-ad: user: `X` is not a valid user name
          inventory.toml:26: host B-ad: zone: zone `L A N` must be lowercase letters, digits and '-'
          inventory.toml:27: host B-ad: network.interface: `a-very-long-interface-name` is not an interface name
          inventory.toml:27: host B-ad: network.address: `1.2.3.4`: expected address/prefix, like 192.168.10.57/24
          inventory.toml:27: host B-ad: network.gateway: `gw` is not an IPv4 address
          inventory.toml:27: host B-ad: network.dns: `d` is not an IPv4 address
          inventory.toml:37: host b: address: address 10.0.0.1:22 is also the address of a
          inventory.toml:39: host b: network.address: `10.0.0.1/33`: prefix `33` is not in 1..=32
          inventory.toml:41: host c: port: port 0 is not a port
          inventory.toml:44: host c: network.address: address 10.0.0.1 is also the address of a
          inventory.toml:3: ssh.port: port 0 is not a port
          inventory.toml:2: ssh.user: `Root` is not a valid user name
          inventory.toml:6: admin.name: `9admin` is not a valid user name (lowercase, starts with a letter or _)
          inventory.toml:7: admin.password_hash: expected a SHA-512 crypt hash ($6$salt$hash, as `openssl passwd -6` prints it); this looks like something else, maybe a plaintext password (value not shown)
          inventory.toml:8: admin.ssh_keys: key #1 is not an ssh public key line (type base64 [comment])
          inventory.toml:11: system.locale: `fr FR` is not a locale name like fr_FR.UTF-8
          inventory.toml:12: system.keymap: `f r` is not a keymap name
          inventory.toml:13: system.ntp: `1.2.3.999` is neither an IPv4 address nor a DNS name
          inventory.toml:13: system.ntp: `-bad` is neither an IPv4 address nor a DNS name
          inventory.toml:14: system.dns: `x` is not an IPv4 address
          inventory.toml:15: system.ca_files: missing.pem: No such file or directory (os error 2)
          inventory.toml:15: system.ca_files: bad name.pem: No such file or directory (os error 2)
          inventory.toml:15: system.ca_files: file name `bad name.pem` may hold only letters, digits, '.', '_' and '-'
          inventory.toml:18: kubernetes.source: unknown source `snap` (expected distro, upstream or present)
          inventory.toml:19: kubernetes.version: `1.30.1` is not a minor version like 1.30
    "#]]
    .assert_eq(&out);
}

#[test]
fn a_parse_error_names_the_line() {
    let text = example().replacen("keymap = \"fr\"", "keymap = \"fr\"\nkeymapp = \"fr\"", 1);
    let out = problems(&text);
    assert!(out.contains("unknown field `keymapp`"), "{out}");
    let line = out.lines().nth(1).unwrap();
    assert!(line.starts_with("  inventory.toml:"), "{out}");
    let n: usize = line["  inventory.toml:".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(text.lines().nth(n - 1), Some("keymapp = \"fr\""), "{out}");
}
