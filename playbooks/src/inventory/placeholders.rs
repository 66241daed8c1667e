//! Placeholders: values the inventory holds only to be replaced, written
//! `gateway = { placeholder = "192.168.10.1" }`. A placeholder is a valid value (it is
//! validated like any other), listed by `inventory check` as a warning, and never written onto
//! a host: a plan that would write one is refused before any host is touched. Confirming it is
//! writing the value alone: `gateway = "192.168.10.1"`.
//!
//! The fields that take a placeholder are those of [`MARKABLE`]; elsewhere `{ placeholder = ... }`
//! is refused as a value of the wrong type.

use std::path::Path;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};

/// The key that marks a value as a placeholder.
pub const KEY: &str = "placeholder";

/// The fields that take a placeholder: a host's (under `[hosts.NAME]`) and shared ones.
pub const MARKABLE: &[(Scope, &str)] = &[
    (Scope::Host, "address"),
    (Scope::Host, "network.interface"),
    (Scope::Host, "network.address"),
    (Scope::Host, "network.prefix"),
    (Scope::Host, "network.gateway"),
    (Scope::Host, "network.dns"),
    (Scope::Shared, "system.dns"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Host,
    Shared,
}

/// A value the inventory marks as a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The host whose field it is; `None` for a shared setting.
    pub host: Option<String>,
    /// Dotted path of the field, relative to the host when there is one.
    pub field: String,
    /// The value as written (TOML).
    pub value: String,
    /// 1-based line, when found.
    pub line: Option<usize>,
}

impl Placeholder {
    /// `FILE:LINE: host NAME: FIELD` (as problems are located).
    pub fn located(&self, file: &Path) -> String {
        let mut s = file.display().to_string();
        if let Some(l) = self.line {
            s.push_str(&format!(":{l}"));
        }
        if let Some(h) = &self.host {
            s.push_str(&format!(": host {h}"));
        }
        s.push_str(&format!(": {}", self.field));
        s
    }
}

/// `serde(deserialize_with)` for the fields of [`MARKABLE`]: the value itself, or a table
/// `{ placeholder = VALUE }` holding it.
pub fn marked<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = toml::Value::deserialize(d)?;
    let v = match v {
        toml::Value::Table(mut t) if t.len() == 1 && t.contains_key(KEY) => {
            t.remove(KEY).expect("just checked")
        }
        v => v,
    };
    T::deserialize(v).map_err(|e| D::Error::custom(e.message()))
}

/// The placeholders of a document that parsed as an inventory, hosts in name order, then the
/// shared settings; lines are left to the caller.
pub fn collect(doc: &toml::Table) -> Vec<Placeholder> {
    let mut out = Vec::new();
    let mut look = |host: Option<&str>, table: &toml::Table, field: &str| {
        let mut v = Some(table);
        let mut keys = field.split('.').peekable();
        while let Some(k) = keys.next() {
            let Some(t) = v else { return };
            let Some(value) = t.get(k) else { return };
            if keys.peek().is_some() {
                v = value.as_table();
                continue;
            }
            if let Some(inner) = value
                .as_table()
                .filter(|t| t.len() == 1)
                .and_then(|t| t.get(KEY))
            {
                out.push(Placeholder {
                    host: host.map(str::to_string),
                    field: field.to_string(),
                    value: inner.to_string(),
                    line: None,
                });
            }
        }
    };
    if let Some(hosts) = doc.get("hosts").and_then(|h| h.as_table()) {
        for (name, host) in hosts {
            let Some(host) = host.as_table() else {
                continue;
            };
            for (scope, field) in MARKABLE {
                if *scope == Scope::Host {
                    look(Some(name), host, field);
                }
            }
        }
    }
    for (scope, field) in MARKABLE {
        if *scope == Scope::Shared {
            look(None, doc, field);
        }
    }
    out
}
