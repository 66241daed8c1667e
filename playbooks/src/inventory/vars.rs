//! The operators' own settings: `[vars]` for every host, `[hosts.NAME.vars]` for one. A host
//! sees the shared table with its own merged over it, and a playbook reads that into its own
//! type:
//!
//! ```
//! # use std::path::Path;
//! # use playbooks::Inventory;
//! #[derive(serde::Deserialize)]
//! struct Motd {
//!     greeting: String,
//!     #[serde(default)]
//!     footer: Option<String>,
//! }
//!
//! let inv = Inventory::parse(
//!     r#"
//!     [vars]
//!     greeting = "Welcome"
//!
//!     [hosts.web1]
//!     role = "haproxy"
//!     address = "10.0.0.1"
//!     vars = { greeting = "Keep out" }
//!     "#,
//!     Path::new("inventory.toml"),
//! )
//! .unwrap();
//! let motd: Motd = inv.target("web1").unwrap().vars().unwrap();
//! assert_eq!(motd.greeting, "Keep out");
//! assert_eq!(motd.footer, None);
//! ```

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use super::Target;

impl Target<'_> {
    /// The host's vars: the inventory's `[vars]` with the host's `[hosts.NAME.vars]` merged
    /// over it: a key of the host's replaces the shared one, except that two tables under the
    /// same key are merged the same way, key by key (arrays are replaced, not concatenated).
    /// Empty when the inventory has neither.
    pub fn var_table(&self) -> toml::Table {
        let mut table = self.inventory.vars.clone();
        if let Some(own) = self.inventory.host_vars.get(self.name) {
            merge(&mut table, own);
        }
        table
    }

    /// The host's vars ([`Target::var_table`]) read into the playbook's own type. The error
    /// names the inventory file, the host and the key that did not fit.
    pub fn vars<T: DeserializeOwned>(&self) -> Result<T, VarsError> {
        let value = toml::Value::Table(self.var_table());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            VarsError {
                file: self.inventory.path.clone(),
                host: self.name.to_string(),
                field: if path == "." {
                    "vars".into()
                } else {
                    format!("vars.{path}")
                },
                message: e.into_inner().message().to_string(),
            }
        })
    }
}

/// Merges `over` into `base`: a key of `over` replaces the same key of `base`, except that
/// where both hold a table the two tables are merged the same way. Arrays are replaced, not
/// concatenated.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A host's vars do not fit the type a playbook reads them into.
#[derive(Debug, Clone)]
pub struct VarsError {
    /// The inventory file.
    pub file: PathBuf,
    /// The host whose vars were read.
    pub host: String,
    /// The dotted path of the key that did not fit, from `vars` (`vars.motd.greeting`), or
    /// `vars` itself (a missing key is reported on the table that lacks it).
    pub field: String,
    /// What is wrong with it, as serde says it.
    pub message: String,
}

impl std::fmt::Display for VarsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: host {}: {}: {}",
            self.file.display(),
            self.host,
            self.field,
            self.message
        )
    }
}

impl std::error::Error for VarsError {}

/// So that a playbook can write `let v: MyVars = t.vars()?;` (an invalid-input error whose
/// message already names the file and the host).
impl From<VarsError> for tasks::Error {
    fn from(e: VarsError) -> tasks::Error {
        tasks::Error::invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use indoc::indoc;
    use serde::Deserialize;

    use super::super::{Inventory, Target};

    const HOSTS: &str = indoc! {r#"
        [hosts.prdk8swok511]
        role = "k8s-worker"
        address = "192.168.5.57"

        [hosts.prdk8swok512]
        role = "k8s-worker"
        address = "192.168.5.58"
    "#};

    fn inventory(text: &str) -> Inventory {
        Inventory::parse(text, Path::new("inventory.toml")).unwrap_or_else(|p| panic!("{p}"))
    }

    fn target<'a>(inv: &'a Inventory, name: &'a str) -> Target<'a> {
        inv.target(name).unwrap()
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Motd {
        greeting: String,
        #[serde(default)]
        lines: Vec<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Vars {
        motd: Motd,
        #[serde(default)]
        team: Option<String>,
    }

    #[test]
    fn global_vars_reach_every_host() {
        let inv = inventory(&format!(
            "[vars]\nteam = \"ops\"\nmotd = {{ greeting = \"hello\" }}\n\n{HOSTS}"
        ));
        for name in ["prdk8swok511", "prdk8swok512"] {
            let v: Vars = target(&inv, name).vars().unwrap();
            assert_eq!(
                v,
                Vars {
                    motd: Motd {
                        greeting: "hello".into(),
                        lines: vec![],
                    },
                    team: Some("ops".into()),
                }
            );
        }
        assert!(inv.host_vars.is_empty());
    }

    #[test]
    fn a_host_overrides_a_global_key() {
        let text = indoc! {r#"
            [vars]
            team = "ops"
            zone_note = "shared"

            [hosts.prdk8swok511]
            role = "k8s-worker"
            address = "192.168.5.57"

            [hosts.prdk8swok511.vars]
            team = "dmz-ops"
            own = 1

            [hosts.prdk8swok512]
            role = "k8s-worker"
            address = "192.168.5.58"
            vars = { team = 7 }
        "#};
        let inv = inventory(text);
        let t = target(&inv, "prdk8swok511").var_table();
        assert_eq!(
            t.to_string(),
            "own = 1\nteam = \"dmz-ops\"\nzone_note = \"shared\"\n"
        );
        // A top-level key is replaced whatever its type.
        let t = target(&inv, "prdk8swok512").var_table();
        assert_eq!(t["team"].as_integer(), Some(7));
        assert_eq!(t["zone_note"].as_str(), Some("shared"));
        // The shared table itself is untouched.
        assert_eq!(inv.vars["team"].as_str(), Some("ops"));
    }

    #[test]
    fn nested_tables_merge_key_by_key() {
        let text = indoc! {r#"
            [vars.motd]
            greeting = "hello"
            lines = ["a", "b"]
            colors = { fg = "white", bg = "black" }

            [hosts.prdk8swok511]
            role = "k8s-worker"
            address = "192.168.5.57"

            [hosts.prdk8swok511.vars.motd]
            lines = ["c"]
            colors = { bg = "red" }
        "#};
        let inv = inventory(text);
        let t = target(&inv, "prdk8swok511").var_table();
        let motd = t["motd"].as_table().unwrap();
        assert_eq!(motd["greeting"].as_str(), Some("hello"));
        // Arrays are replaced, not concatenated.
        assert_eq!(motd["lines"].as_array().unwrap().len(), 1);
        assert_eq!(motd["colors"]["fg"].as_str(), Some("white"));
        assert_eq!(motd["colors"]["bg"].as_str(), Some("red"));
        let v: Vars = target(&inv, "prdk8swok511").vars().unwrap();
        assert_eq!(v.motd.greeting, "hello");
        assert_eq!(v.motd.lines, ["c"]);
    }

    #[test]
    fn a_type_error_names_file_host_and_field() {
        let text = format!(
            "[vars.motd]\ngreeting = \"hello\"\n\n{HOSTS}\n[hosts.prdk8swok511.vars.motd]\ngreeting = 42\n"
        );
        let inv = inventory(&text);
        let err = target(&inv, "prdk8swok511").vars::<Vars>().unwrap_err();
        assert_eq!(err.file, Path::new("inventory.toml"));
        assert_eq!(err.host, "prdk8swok511");
        assert_eq!(err.field, "vars.motd.greeting");
        assert_eq!(
            err.to_string(),
            "inventory.toml: host prdk8swok511: vars.motd.greeting: invalid type: integer `42`, expected a string"
        );
        // The other host has the shared value, which fits.
        assert!(target(&inv, "prdk8swok512").vars::<Vars>().is_ok());
        // A playbook can `?` it into the task layer's error.
        let e: tasks::Error = err.into();
        assert_eq!(e.kind(), tasks::ErrorKind::Invalid);
        assert!(e.message().contains("vars.motd.greeting"), "{e}");
    }

    #[test]
    fn missing_keys_and_array_items_are_named() {
        let text = format!("[vars]\nmotd = {{ lines = [\"a\", 2] }}\n\n{HOSTS}");
        let inv = inventory(&text);
        let t = target(&inv, "prdk8swok512");
        let err = t.vars::<Vars>().unwrap_err();
        assert_eq!(err.field, "vars.motd.lines[1]", "{err}");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            owner: String,
        }
        let err = t.vars::<Needs>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "inventory.toml: host prdk8swok512: vars: missing field `owner`"
        );
    }

    #[test]
    fn no_vars_is_an_empty_table_and_defaults_apply() {
        let inv = inventory(HOSTS);
        let t = target(&inv, "prdk8swok511");
        assert!(t.var_table().is_empty());
        #[derive(Debug, Default, PartialEq, Deserialize)]
        #[serde(default)]
        struct Optional {
            greeting: String,
            port: Option<u16>,
            motd: Option<Motd>,
        }
        assert_eq!(t.vars::<Optional>().unwrap(), Optional::default());
        // A target built outside the inventory (`--local` on an unnamed host) gets the
        // shared vars only.
        let inv = inventory(&format!("[vars]\ngreeting = \"hi\"\n\n{HOSTS}"));
        let host = inv.hosts["prdk8swok511"].clone();
        let local = Target {
            name: "somewhere-else",
            host: &host,
            inventory: &inv,
        };
        assert_eq!(local.vars::<Optional>().unwrap().greeting, "hi");
    }

    #[test]
    fn vars_must_be_tables_and_other_unknown_keys_are_still_refused() {
        let cases = [
            ("vars = 3\n", "invalid type: integer `3`, expected a map"),
            ("[varz]\na = 1\n", "unknown field `varz`"),
            (
                "[hosts.a]\nrole = \"haproxy\"\naddress = \"10.0.0.1\"\nvarz = { a = 1 }\n",
                "unknown field `varz`",
            ),
            (
                "[hosts.a]\nrole = \"haproxy\"\naddress = \"10.0.0.1\"\nvars = [1]\n",
                "expected a map",
            ),
            ("[system]\nvars = { a = 1 }\n", "unknown field `vars`"),
        ];
        for (text, want) in cases {
            let err = Inventory::parse(text, Path::new("inventory.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: expected {want:?} in:\n{err}");
            assert!(
                err.contains("inventory.toml:"),
                "{text:?}: no line in:\n{err}"
            );
        }
    }
}
