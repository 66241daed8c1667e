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

/// Every command has a time limit: 5 minutes, 30 for package transactions, by default; a
/// limit of 0 or of more than a day is refused.
#[test]
fn command_time_limits_have_defaults_and_bounds() {
    let inv = Inventory::parse("", Path::new("inventory.toml")).unwrap();
    assert_eq!(
        (inv.ssh.command_timeout, inv.ssh.package_timeout),
        (300, 1800)
    );
    let inv = Inventory::parse(
        "[ssh]\ncommand_timeout = 5\npackage_timeout = 60\n",
        Path::new("inventory.toml"),
    )
    .unwrap();
    assert_eq!((inv.ssh.command_timeout, inv.ssh.package_timeout), (5, 60));
    let out = problems("[ssh]\ncommand_timeout = 0\npackage_timeout = 86401\n");
    assert!(
        out.contains("ssh.command_timeout: 0 seconds: a time limit is 1 second to a day")
            && out.contains("ssh.package_timeout: 86401 seconds"),
        "{out}"
    );
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
        inventory.toml: 30 problems
          inventory.toml:21: host B-ad: host name `B-ad` must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63, no leading/trailing '-'): it is also the hostname and the Kubernetes node name
          inventory.toml:22: host B-ad: role: unknown role `boss` (expected one of: haproxy, k8s-master, k8s-worker)
          inventory.toml:23: host B-ad: address: `1.2.3` is neither an IP address (IPv4 or IPv6) nor a DNS name
          inventory.toml:24: host B-ad: port: port 0 is not a port
          inventory.toml:25: host B-ad: user: `X` is not a valid user name
          inventory.toml:26: host B-ad: zone: zone `L A N` must be lowercase letters, digits and '-'
          inventory.toml:27: host B-ad: network.interface: `a-very-long-interface-name` is not an interface name
          inventory.toml:27: host B-ad: network.address: `1.2.3.4`: expected address/prefix, like 192.168.10.57/24, or the prefix in network.prefix
          inventory.toml:27: host B-ad: network.gateway: `gw` is not an IP address
          inventory.toml:27: host B-ad: network.dns: `d` is not an IP address
          inventory.toml:37: host b: address: address 10.0.0.1 (port 22) is also the address of a
          inventory.toml:39: host b: network.address: `10.0.0.1/33`: prefix `33` is not in 1..=32
          inventory.toml:41: host c: port: port 0 is not a port
          inventory.toml:44: host c: network.address: address 10.0.0.1 is also the address of a
          inventory.toml:44: host c: network.address: 10.0.0.1 is not the host's address 10.0.0.2: the static file would give the host an address other than the one it is reached at. If `address` is a separate management address, say so with management_address = true
          inventory.toml:3: ssh.port: port 0 is not a port
          inventory.toml:2: ssh.user: `Root` is not a valid user name
          inventory.toml:6: admin.name: `9admin` is not a valid user name (lowercase, starts with a letter or _)
          inventory.toml:7: admin.password_hash: expected a SHA-512 crypt hash ($6$salt$hash, as `openssl passwd -6` prints it); this looks like something else, maybe a plaintext password (value not shown)
          inventory.toml:8: admin.ssh_keys: key #1 is not an ssh public key line (type base64 [comment])
          inventory.toml:11: system.locale: `fr FR` is not a locale name like fr_FR.UTF-8
          inventory.toml:12: system.keymap: `f r` is not a keymap name
          inventory.toml:13: system.ntp: `1.2.3.999` is neither an IP address (IPv4 or IPv6) nor a DNS name
          inventory.toml:13: system.ntp: `-bad` is neither an IP address (IPv4 or IPv6) nor a DNS name
          inventory.toml:14: system.dns: `x` is not an IP address
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

/// One host `h` (address 192.168.10.57) with `network` as its network table, and `extra` in
/// its host table.
fn with_network(extra: &str, network: &str) -> String {
    format!(
        "[hosts.h]\nrole = \"k8s-worker\"\naddress = \"192.168.10.57\"\n{extra}\n[hosts.h.network]\n{network}"
    )
}

/// Each network problem is refused with the file, the host, the field and the line of the
/// field.
#[test]
fn network_problems_name_file_host_field_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (host table extra, network table, expected line, expected message fragment)
        (
            "",
            "write = true\naddress = \"192.168.10.57/24\"\ngateway = \"192.168.11.1\"\n",
            "inventory.toml:8: host h: network.gateway: gateway 192.168.11.1 is outside 192.168.10.0/24, the network of 192.168.10.57/24",
            "could not reach it",
        ),
        (
            "",
            "write = true\naddress = \"192.168.10.57/32\"\ngateway = \"192.168.10.1\"\n",
            "inventory.toml:8: host h: network.gateway: a /32 address has no other address on its link",
            "",
        ),
        (
            "",
            "address = \"192.168.10.57/24\"\ngateway = \"192.168.10.255\"\n",
            "inventory.toml:7: host h: network.gateway: gateway 192.168.10.255 is the broadcast address of 192.168.10.0/24",
            "",
        ),
        (
            "",
            "write = true\naddress = \"192.168.10.58/24\"\n",
            "inventory.toml:7: host h: network.address: 192.168.10.58 is not the host's address 192.168.10.57",
            "management_address = true",
        ),
        (
            "",
            "address = \"192.168.10.57/33\"\n",
            "inventory.toml:6: host h: network.address: `192.168.10.57/33`: prefix `33` is not in 1..=32",
            "",
        ),
        (
            "",
            "address = \"192.168.10.57/0\"\n",
            "inventory.toml:6: host h: network.address: `192.168.10.57/0`: prefix `0` is not in 1..=32",
            "",
        ),
        (
            "",
            "address = \"192.168.10.57\"\nprefix = 40\n",
            "inventory.toml:7: host h: network.prefix: prefix `40` is not in 1..=32",
            "",
        ),
        (
            "",
            "address = \"192.168.10.57/24\"\nprefix = 24\n",
            "inventory.toml:7: host h: network.prefix: the prefix is given twice",
            "",
        ),
        (
            "",
            "address = \"192.168.10.57\"\n",
            "inventory.toml:6: host h: network.address: `192.168.10.57`: expected address/prefix",
            "",
        ),
        (
            "",
            "address = \"192.168.10.57/24\"\napply = true\n",
            "inventory.toml:7: host h: network.apply: apply = true applies the static network file, which nodeprep writes only with network.write = true",
            "",
        ),
        (
            "management_address = true\n",
            "address = \"192.168.10.57/24\"\n",
            "inventory.toml:4: host h: management_address: `address` 192.168.10.57 is the cluster address",
            "",
        ),
    ];
    for (extra, network, line, fragment) in cases {
        let out = problems(&with_network(extra, network));
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(line)),
            "expected a line starting {line:?} in:\n{out}"
        );
        assert!(out.contains(fragment), "expected {fragment:?} in:\n{out}");
        assert_eq!(out.lines().count(), 2, "one problem expected:\n{out}");
    }
    // A management address with no cluster address to be apart from.
    let out = problems(
        "[hosts.h]\nrole = \"k8s-worker\"\naddress = \"10.0.0.57\"\nmanagement_address = true\n",
    );
    assert!(
        out.contains("inventory.toml:4: host h: management_address: management_address = true says `address` is not the host's cluster address, but no network.address gives that one"),
        "{out}"
    );
}

/// What is accepted: an IPv6 host address, a gateway inside the prefix (/24, /31 point to
/// point, IPv6 with a link-local gateway), the prefix apart, a management address apart from
/// the cluster address.
#[test]
fn network_values_accepted() {
    let ok = |text: &str| {
        Inventory::parse(text, Path::new("inventory.toml"))
            .unwrap_or_else(|p| panic!("{text}\n{p}"))
    };
    let inv = ok("[hosts.h]\nrole = \"k8s-worker\"\naddress = \"fd00:10::57\"\nport = 2222\n");
    assert_eq!(inv.hosts["h"].address, "fd00:10::57");
    ok(&with_network(
        "",
        "write = true\naddress = \"192.168.10.57/24\"\ngateway = \"192.168.10.1\"\n",
    ));
    ok(&with_network(
        "",
        "write = true\naddress = \"192.168.10.57\"\nprefix = 31\ngateway = \"192.168.10.56\"\n",
    ));
    let inv = ok(&with_network(
        "management_address = true\n",
        "write = true\napply = true\naddress = \"172.16.0.57/16\"\ngateway = \"172.16.0.1\"\ndns = [\"172.16.0.10\", \"fd00::53\"]\n",
    ));
    assert!(inv.hosts["h"].management_address);
    assert_eq!(
        inv.hosts["h"].network.as_ref().unwrap().cidr(),
        "172.16.0.57/16"
    );
    ok(
        "[hosts.h]\nrole = \"k8s-worker\"\naddress = \"fd00:10::57\"\n\n[hosts.h.network]\nwrite = true\naddress = \"fd00:10::57/64\"\ngateway = \"fe80::1\"\n",
    );
    // A DNS name cannot be compared offline with the network address.
    ok(
        "[hosts.h]\nrole = \"k8s-worker\"\naddress = \"node1.example.lan\"\n\n[hosts.h.network]\naddress = \"192.168.10.57/24\"\n",
    );
}

#[test]
fn ipv6_host_addresses() {
    for bad in ["[fd00::57]", "fd00::57::1", "fd00::57%eth0"] {
        let text = format!("[hosts.h]\nrole = \"k8s-worker\"\naddress = \"{bad}\"\n");
        let out = problems(&text);
        assert!(
            out.contains("inventory.toml:3: host h: address:"),
            "{bad}: {out}"
        );
    }
    // One address written two ways is one address.
    let out = problems(
        "[hosts.a]\nrole = \"k8s-worker\"\naddress = \"fd00::57\"\n\n[hosts.b]\nrole = \"k8s-worker\"\naddress = \"fd00:0::57\"\n",
    );
    assert!(
        out.contains("host b: address: address fd00:0::57 (port 22) is also the address of a"),
        "{out}"
    );
}

#[test]
fn utf8_locale_spelled_otherwise_is_refused() {
    for (written, right) in [
        ("fr_FR.UTF8", "fr_FR.UTF-8"),
        ("fr_FR.utf8", "fr_FR.UTF-8"),
        ("de_DE.utf-8@euro", "de_DE.UTF-8@euro"),
    ] {
        let out = problems(&format!("[system]\nlocale = \"{written}\"\n"));
        assert!(
            out.contains(&format!("inventory.toml:2: system.locale: `{written}`: the UTF-8 codeset is written UTF-8, as in {right}")),
            "{out}"
        );
    }
    for ok in [
        "fr_FR.UTF-8",
        "C.UTF-8",
        "en_US",
        "fr_FR.ISO-8859-1",
        "de_DE.UTF-8@euro",
    ] {
        Inventory::parse(
            &format!("[system]\nlocale = \"{ok}\"\n"),
            Path::new("inventory.toml"),
        )
        .unwrap_or_else(|p| panic!("{ok}: {p}"));
    }
}

/// The example marks the values the seed does not give: every host's prefix and gateway, the
/// name server, and the DMZ balancer's address. Each is found with its line.
#[test]
fn the_example_marks_what_the_seed_does_not_give() {
    let text = example();
    let inv = Inventory::parse(text, Path::new("inventory.toml")).unwrap();
    let mut fields: Vec<String> = inv
        .placeholders
        .iter()
        .map(|p| match &p.host {
            Some(h) => format!("{h} {}", p.field),
            None => p.field.clone(),
        })
        .collect();
    fields.sort();
    let mut want = vec![
        "prdinfhap511 address".to_string(),
        "prdinfhap511 network.address".to_string(),
        "system.dns".to_string(),
    ];
    for h in inv.hosts.keys() {
        want.push(format!("{h} network.gateway"));
        want.push(format!("{h} network.prefix"));
    }
    want.sort();
    assert_eq!(fields, want);
    for p in &inv.placeholders {
        let line = text.lines().nth(p.line.unwrap() - 1).unwrap();
        let key = p.field.rsplit('.').next().unwrap();
        assert!(
            line.starts_with(&format!("{key} = {{ placeholder = ")),
            "{p:?}: line {line:?}"
        );
    }
    let gw = inv
        .placeholder(Some("prdk8swok501"), "network.gateway")
        .unwrap();
    assert_eq!(gw.value, "\"192.168.10.1\"");
    assert_eq!(
        gw.located(Path::new("inventory.toml")),
        format!(
            "inventory.toml:{}: host prdk8swok501: network.gateway",
            gw.line.unwrap()
        )
    );
    // The values themselves are the plain values.
    assert_eq!(inv.hosts["prdinfhap511"].address, "192.168.5.45");
    assert_eq!(inv.system.dns, ["192.168.10.10"]);
}

/// A placeholder is validated like the value it holds, and only the fields that take one do.
#[test]
fn placeholders_are_values_like_any_other() {
    let out = problems(&with_network(
        "",
        "address = \"192.168.10.57/24\"\ngateway = { placeholder = \"192.168.11.1\" }\n",
    ));
    assert!(
        out.contains("inventory.toml:7: host h: network.gateway: gateway 192.168.11.1 is outside"),
        "{out}"
    );
    let out = problems("[system]\nlocale = { placeholder = \"fr_FR.UTF-8\" }\n");
    assert!(out.contains("inventory.toml:2"), "{out}");
    assert!(out.contains("expected a string"), "{out}");
    let out = problems(&with_network(
        "",
        "address = \"192.168.10.57/24\"\ngateway = { placeholder = \"192.168.10.1\", note = \"x\" }\n",
    ));
    assert!(out.contains("inventory.toml:7"), "{out}");
    let inv = Inventory::parse(
        &with_network(
            "",
            "address = \"192.168.10.57\"\nprefix = { placeholder = 24 }\n",
        ),
        Path::new("inventory.toml"),
    )
    .unwrap();
    assert_eq!(
        inv.hosts["h"].network.as_ref().unwrap().cidr(),
        "192.168.10.57/24"
    );
    assert_eq!(inv.placeholders.len(), 1);
    assert_eq!(inv.placeholders[0].line, Some(7));
}

/// `system.package_lists_max_age`: seconds, an hour unless given; a negative age is refused,
/// naming its line.
#[test]
fn package_lists_max_age_in_seconds() {
    let inv = Inventory::parse(example(), Path::new("inventory.toml")).unwrap();
    assert_eq!(inv.system.package_lists_max_age, 3600);
    let text = example().replacen(
        "full_update = false",
        "full_update = false\npackage_lists_max_age = 86400",
        1,
    );
    let inv = Inventory::parse(&text, Path::new("inventory.toml")).unwrap();
    assert_eq!(inv.system.package_lists_max_age, 86400);
    let text = example().replacen(
        "full_update = false",
        "full_update = false\npackage_lists_max_age = -1",
        1,
    );
    let out = problems(&text);
    let at = text
        .lines()
        .position(|l| l == "package_lists_max_age = -1")
        .unwrap();
    assert!(
        out.contains(&format!(
            "inventory.toml:{}: invalid value: integer `-1`",
            at + 1
        )),
        "{out}"
    );
}

/// `[proxy]` and `[packages]` at every level: each problem with the file, the line, the host
/// and the field; credentials never shown.
#[test]
fn proxy_and_packages_problems_name_host_and_field() {
    let text = r#"[proxy]
http = "proxy.lan:3128"
no_proxy = ["ok.lan", "not a host"]

[packages]
debian = "ftp://mirror.lan/debian"
mirrorr = "x"

[zones.dmz.proxy]
https = "http://ops:s3cret@:8080"

[zones.nowhere.packages]
photon = "https://mirror.lan"

[hosts.h]
role = "k8s-worker"
address = "192.168.10.57"
zone = "dmz"

[hosts.h.proxy]
htp = "http://p:1"
http = "http://ops:s3cret@p:0"
"#;
    let out = problems(text);
    expect![[r#"
        inventory.toml: 8 problems
          inventory.toml:21: host h: proxy.htp: unknown key `htp` (expected http, https or no_proxy)
          inventory.toml:22: host h: proxy.http: `http://<redacted>@p:0` port `0` is not a port
          inventory.toml:10: zones.dmz.proxy.https: `http://<redacted>@:8080` has no host
          inventory.toml: zones.nowhere: no host is in zone `nowhere`
          inventory.toml:2: proxy.http: `proxy.lan:3128` has no scheme: write it as http://HOST:PORT
          inventory.toml:3: proxy.no_proxy: `not a host` is not a host name, a domain (.corp.lan), an IP address or a network (CIDR)
          inventory.toml:7: packages.mirrorr: unknown key `mirrorr` (expected photon, debian, debian_security, rhel, gpgcheck or gpgkey)
          inventory.toml:6: packages.debian: `ftp://mirror.lan/debian` scheme `ftp` is not http or https
    "#]]
    .assert_eq(&out);
    assert!(!out.contains("s3cret"), "{out}");
}
