//! Inventory loading and host selection: `hosts`, `playbooks`, `inventory check`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use playbooks::Inventory;

use crate::cli::{InventoryArgs, SelectArgs};
use crate::run::{EXIT_BAD_INPUT, EXIT_OK};

/// `--inventory`, else $NODEPREP_INVENTORY, else ./inventory.toml.
pub fn inventory_path(args: &InventoryArgs) -> PathBuf {
    if let Some(p) = &args.inventory {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("NODEPREP_INVENTORY") {
        return PathBuf::from(p);
    }
    PathBuf::from("inventory.toml")
}

/// Loads and validates, printing every problem. Nothing connects anywhere before this passed.
pub fn load(args: &InventoryArgs) -> Result<Inventory, u8> {
    let path = inventory_path(args);
    load_path(&path)
}

pub fn load_path(path: &Path) -> Result<Inventory, u8> {
    Inventory::load(path).map_err(|problems| {
        eprint!("error: invalid inventory {problems}");
        EXIT_BAD_INPUT
    })
}

/// The hosts a selection names, in inventory order. Errors name what did not match.
pub fn select<'a>(inv: &'a Inventory, s: &SelectArgs) -> Result<Vec<&'a str>> {
    let file = inv.path.display();
    for h in &s.hosts {
        if !inv.hosts.contains_key(h) {
            let close: Vec<&str> = inv
                .hosts
                .keys()
                .filter(|k| k.contains(h.as_str()) || h.contains(k.as_str()))
                .map(String::as_str)
                .collect();
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", close.join(", "))
            };
            bail!("no host `{h}` in {file}{hint}");
        }
    }
    if let Some(role) = &s.role
        && !playbooks::inventory::ROLES.contains(&role.as_str())
    {
        bail!(
            "unknown role `{role}` (expected one of: {})",
            playbooks::inventory::ROLES.join(", ")
        );
    }
    if s.hosts.is_empty() && s.role.is_none() && s.zone.is_none() && !s.all && s.limit.is_none() {
        bail!(
            "no hosts selected: name some with --host NAME, --role ROLE, --zone ZONE, --limit PATTERN or --all"
        );
    }
    let picked: Vec<&str> = inv
        .hosts
        .iter()
        .filter(|(name, h)| {
            let named = s.all
                || s.hosts.iter().any(|x| x == *name)
                || s.role.as_ref().is_some_and(|r| *r == h.role)
                || s.zone.as_ref().is_some_and(|z| Some(z) == h.zone.as_ref())
                || (s.hosts.is_empty() && s.role.is_none() && s.zone.is_none());
            named && s.limit.as_ref().is_none_or(|pat| glob(pat, name))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if picked.is_empty() {
        bail!("the selection matches no host of {file}");
    }
    Ok(picked)
}

/// `*` and `?` globbing.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

pub fn hosts(args: &SelectArgs) -> Result<u8> {
    let inv = match load(&args.inv) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let everything =
        args.hosts.is_empty() && args.role.is_none() && args.zone.is_none() && args.limit.is_none();
    let names: Vec<&str> = if everything {
        inv.hosts.keys().map(String::as_str).collect()
    } else {
        select(&inv, args)?
    };
    println!(
        "{:<16} {:<11} {:<6} {:<22} NETWORK",
        "HOST", "ROLE", "ZONE", "SSH"
    );
    for name in names {
        let h = &inv.hosts[name];
        let ssh = format!(
            "{}@{}:{}",
            h.user.as_deref().unwrap_or(&inv.ssh.user),
            h.address,
            h.port.unwrap_or(inv.ssh.port)
        );
        let net = h
            .network
            .as_ref()
            .map(|n| format!("{} {}", n.interface, n.address))
            .unwrap_or_else(|| "-".into());
        println!(
            "{name:<16} {:<11} {:<6} {ssh:<22} {net}",
            h.role,
            h.zone.as_deref().unwrap_or("-")
        );
    }
    Ok(EXIT_OK)
}

pub fn playbooks() -> Result<u8> {
    for p in playbooks::all() {
        println!(
            "{}  ({}{})",
            p.name,
            p.about,
            p.role.map(|r| format!("; role {r}")).unwrap_or_default()
        );
        for (i, s) in p.steps.iter().enumerate() {
            println!("  {:>2}. {s}", i + 1);
        }
    }
    Ok(EXIT_OK)
}

pub fn check(args: &InventoryArgs) -> Result<u8> {
    match load(args) {
        Ok(inv) => {
            println!("{}: ok, {} hosts", inv.path.display(), inv.hosts.len());
            Ok(EXIT_OK)
        }
        Err(code) => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(super::glob("prdk8swok5*", "prdk8swok511"));
        assert!(super::glob("*hap5?1", "prdinfhap511"));
        assert!(!super::glob("prdk8smst*", "prdk8swok501"));
    }
}
