//! The admin's `passwordless_sudo` setting: accepted for an admin with keys, refused (with file,
//! field and line) where it would mean nothing or make a password login the only way in.

use std::path::Path;

use playbooks::Inventory;

const HASH: &str = "$6$nodeprepdemo$wk44XuU7o9MhcvILKmVk55VnCYVIH.At4AbdPsvCzM6R6zZGO6xjQv0aPOQDJVwWGFwJ9hh32qddZeWox1cQx/";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOyiXo8ZDrrZ8ngq0ORx3MAF5HnbFe9Q/89EcrI9vvO0 ops@example.lan";

fn admin(name: &str, keys: &[&str], extra: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[admin]\nname = \"{name}\"\npassword_hash = \"{HASH}\"\nssh_keys = [{}]\n{extra}",
        keys.join(", ")
    )
}

fn parse(text: &str) -> Result<Inventory, String> {
    Inventory::parse(text, Path::new("inventory.toml")).map_err(|p| p.to_string())
}

#[test]
fn off_unless_asked() {
    let inv = parse(&admin("kubeadmin", &[KEY], "")).unwrap();
    assert!(!inv.admin.unwrap().passwordless_sudo);
    let inv = parse(&admin("kubeadmin", &[KEY], "passwordless_sudo = false\n")).unwrap();
    assert!(!inv.admin.unwrap().passwordless_sudo);
}

#[test]
fn accepted_for_an_admin_with_keys() {
    let inv = parse(&admin("kubeadmin", &[KEY], "passwordless_sudo = true\n")).unwrap();
    assert!(inv.admin.unwrap().passwordless_sudo);
}

#[test]
fn refused_where_it_means_nothing_or_weakens_access() {
    assert_eq!(
        parse(&admin("root", &[KEY], "passwordless_sudo = true\n")).unwrap_err(),
        "inventory.toml: 1 problem\n  inventory.toml:5: admin.passwordless_sudo: root needs no sudo rule: set it for an admin other than root, or remove it\n"
    );
    let e = parse(&admin("kubeadmin", &[], "passwordless_sudo = true\n")).unwrap_err();
    assert!(
        e.contains("inventory.toml:5: admin.passwordless_sudo: needs admin.ssh_keys"),
        "{e}"
    );
    let e = parse(&admin("kubeadmin", &[KEY], "passwordless_sudo = \"yes\"\n")).unwrap_err();
    assert!(e.contains("inventory.toml:5") && e.contains("bool"), "{e}");
    // The sudoers tag's name is not the field's.
    let e = parse(&admin("kubeadmin", &[KEY], "sudo_nopasswd = true\n")).unwrap_err();
    assert!(e.contains("unknown field `sudo_nopasswd`"), "{e}");
}
