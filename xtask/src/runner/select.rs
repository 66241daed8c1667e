//! The inventory a run reads, and the hosts a selection names.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use globset::Glob;
use playbooks::{Inventory, Target};

/// Which hosts of the inventory: by name, role, zone, all, narrowed by a name pattern.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub hosts: Vec<String>,
    pub role: Option<String>,
    pub zone: Option<String>,
    pub all: bool,
    /// A glob on host names (`*`, `?`, `[...]`), e.g. `prdk8swok5*`.
    pub limit: Option<String>,
}

impl Selector {
    /// Nothing named: `hosts` lists every host, `run` refuses.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.role.is_none()
            && self.zone.is_none()
            && !self.all
            && self.limit.is_none()
    }
}

/// The path given, else $NODEPREP_INVENTORY, else ./inventory.toml.
pub fn inventory_path(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("NODEPREP_INVENTORY") {
        return PathBuf::from(p);
    }
    PathBuf::from("inventory.toml")
}

/// The hosts a selection names, in inventory order. Errors name what did not match.
pub fn select<'a>(inv: &'a Inventory, s: &Selector) -> Result<Vec<Target<'a>>> {
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
    let role = match &s.role {
        Some(name) => Some(
            playbooks::roles::find(name)
                .map(playbooks::inventory::RoleRef::from)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown role `{name}` (expected one of: {})",
                        playbooks::roles::names().join(", ")
                    )
                })?,
        ),
        None => None,
    };
    if s.is_empty() {
        bail!(
            "no hosts selected: name some with --host NAME, --role ROLE, --zone ZONE, --limit PATTERN or --all"
        );
    }
    let limit = match &s.limit {
        Some(pat) => Some(
            Glob::new(pat)
                .map_err(|e| anyhow::anyhow!("--limit `{pat}`: {e}"))?
                .compile_matcher(),
        ),
        None => None,
    };
    let only_limit = s.hosts.is_empty() && s.role.is_none() && s.zone.is_none();
    let picked: Vec<Target> = inv
        .hosts
        .iter()
        .filter(|(name, h)| {
            let named = s.all
                || only_limit
                || s.hosts.iter().any(|x| x == *name)
                || role.is_some_and(|r| r == h.role)
                || s.zone.as_ref().is_some_and(|z| Some(z) == h.zone.as_ref());
            named && limit.as_ref().is_none_or(|m| m.is_match(name.as_str()))
        })
        .map(|(name, host)| Target {
            name,
            host,
            inventory: inv,
        })
        .collect();
    if picked.is_empty() {
        bail!("the selection matches no host of {file}");
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let text = include_str!("../../../inventory.toml");
        Inventory::parse(text, Path::new("inventory.toml")).unwrap()
    }

    fn pick(s: Selector) -> Vec<String> {
        let inv = inv();
        select(&inv, &s)
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    #[test]
    fn globs() {
        let limit = |p: &str| Selector {
            limit: Some(p.into()),
            ..Selector::default()
        };
        assert!(pick(limit("prdk8swok5*")).contains(&"prdk8swok511".to_string()));
        assert!(pick(limit("*hap5?1")).contains(&"prdinfhap511".to_string()));
        assert!(
            !pick(limit("prdk8smst*"))
                .iter()
                .any(|n| n.starts_with("prdk8swok"))
        );
        let inv = inv();
        assert!(select(&inv, &limit("[")).is_err());
    }
}
