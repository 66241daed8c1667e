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

use super::problems::{Problem, locate};
use super::{Inventory, Target};

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

impl Target<'_> {
    /// A value of the host's vars that the playbook itself refuses (a port out of range, two
    /// settings that exclude each other): an error naming the file, the host and `field` (its
    /// path under `[vars]`, `syslog.server`), as a value of the wrong type is named. A plan
    /// returns it with `?` or `.into()`:
    ///
    /// ```
    /// # use std::path::Path;
    /// # use playbooks::Inventory;
    /// let inv = Inventory::parse(
    ///     "[vars.syslog]\nserver = \"\"\n\n[hosts.web1]\nrole = \"haproxy\"\naddress = \"10.0.0.1\"\n",
    ///     Path::new("inventory.toml"),
    /// )
    /// .unwrap();
    /// let t = inv.target("web1").unwrap();
    /// let e: tasks::Error = t.invalid_var("syslog.server", "empty: name the log server").into();
    /// assert_eq!(
    ///     e.to_string(),
    ///     "inventory.toml: host web1: vars.syslog.server: empty: name the log server"
    /// );
    /// ```
    pub fn invalid_var(&self, field: &str, message: impl std::fmt::Display) -> VarsError {
        VarsError {
            file: self.inventory.path.clone(),
            host: self.name.to_string(),
            field: if field.is_empty() {
                "vars".into()
            } else {
                format!("vars.{field}")
            },
            message: message.to_string(),
        }
    }

    /// `e`, an error out of a playbook's plan for this host, naming the inventory file and the
    /// host as [`Target::vars`]'s errors do, unless it names them already.
    pub fn plan_error(&self, e: tasks::Error) -> tasks::Error {
        let file = self.inventory.path.display();
        let host = format!("host {}: ", self.name);
        let message = e.message();
        if message.starts_with(&format!("{file}: {host}")) {
            return e;
        }
        let message = match message.strip_prefix(host.as_str()) {
            Some(rest) => format!("{file}: {host}{rest}"),
            None => format!("{file}: {host}{message}"),
        };
        tasks::Error::new(e.kind(), message)
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

/// The type a playbook reads its hosts' vars into, declared to the registry
/// ([`crate::Playbook::vars_type`], [`crate::FnPlaybook::reads_vars`]) so that `inventory
/// check` reads every host's vars into it before any run: a value the playbook would refuse at
/// `run` is refused there, with the file, the host and the field.
#[derive(Clone, Copy)]
pub struct VarsType {
    /// The Rust type's name, for messages.
    pub name: &'static str,
    /// The top-level keys of `[vars]` the type reads (a struct's fields); `None`: it may read
    /// any key (a map, a struct with a flattened field).
    pub keys: Option<&'static [&'static str]>,
    check: for<'t> fn(&Target<'t>) -> Result<(), VarsError>,
}

impl std::fmt::Debug for VarsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VarsType")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .finish()
    }
}

impl VarsType {
    /// The declaration of `T`: reading a host's vars into it is what [`Target::vars`] does.
    pub fn of<T: DeserializeOwned>() -> VarsType {
        fn check<T: DeserializeOwned>(t: &Target) -> Result<(), VarsError> {
            t.vars::<T>().map(drop)
        }
        VarsType {
            name: std::any::type_name::<T>(),
            keys: fields::<T>(),
            check: check::<T>,
        }
    }

    /// Reads `t`'s vars into the type; the error names the file, the host and the field.
    pub fn check(&self, t: &Target) -> Result<(), VarsError> {
        (self.check)(t)
    }
}

/// The fields of `T` when it is deserialized as a struct (what `#[derive(Deserialize)]` gives a
/// struct without flattened fields), found by asking it to deserialize itself from a
/// deserializer that only notes the field list it is handed and stops.
fn fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::{Deserializer, Visitor};

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field list read")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Stop {
            Stop
        }
    }

    struct Fields<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut found = None;
    let _ = T::deserialize(Fields(&mut found));
    found
}

/// What `inventory check` finds in the vars: the values some playbook's declared type refuses
/// (errors), and the keys no declared type reads (warnings).
#[derive(Debug, Default)]
pub struct VarsCheck {
    pub problems: Vec<Problem>,
    pub unused: Vec<Problem>,
}

/// Reads every host's vars into the declared type of every playbook meant for it (a playbook of
/// no role: every host; of a role: the hosts of that role), and lists the top-level keys of
/// `[vars]` and `[hosts.NAME.vars]` that no declared type reads. Playbooks that declare no
/// type are not checked. `text` is the inventory's text, for line numbers.
pub fn check_vars<'p>(
    inv: &Inventory,
    text: &str,
    playbooks: impl IntoIterator<Item = &'p dyn crate::Playbook>,
) -> VarsCheck {
    let declared: Vec<(&dyn crate::Playbook, VarsType)> = playbooks
        .into_iter()
        .filter_map(|p| p.vars_type().map(|v| (p, v)))
        .collect();
    let mut found = VarsCheck::default();
    for (name, host) in &inv.hosts {
        let t = inv.target(name).expect("a host of the inventory");
        let mut seen: Vec<String> = Vec::new();
        for (pb, vars) in &declared {
            if pb.role().is_some_and(|r| r.name() != host.role.name()) {
                continue;
            }
            if let Err(e) = vars.check(&t) {
                // Two playbooks reading the same table the same way refuse it once.
                let key = format!("{}: {}", e.field, e.message);
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let own = inv.host_vars.get(name.as_str());
                let keys = field_keys(&e.field);
                let at_host = own.is_some_and(|own| defined(own, &keys[1..]))
                    || !defined(&inv.vars, &keys[1..]);
                let line = if at_host {
                    locate(text, Some(name), &keys.join("."))
                } else {
                    locate(text, None, &keys.join("."))
                };
                found.problems.push(Problem {
                    host: Some(name.clone()),
                    field: e.field.clone(),
                    line,
                    message: format!("{} (playbook {} reads it)", e.message, pb.name()),
                });
            }
        }
    }
    let reads_any = declared.iter().any(|(_, v)| v.keys.is_none());
    let read = |key: &str| {
        reads_any
            || declared
                .iter()
                .any(|(_, v)| v.keys.is_some_and(|k| k.contains(&key)))
    };
    let unused = |host: Option<&str>, table: &toml::Table, out: &mut Vec<Problem>| {
        for key in table.keys().filter(|k| !read(k)) {
            let field = format!("vars.{key}");
            out.push(Problem {
                host: host.map(str::to_string),
                line: locate(text, host, &field),
                field,
                message: "no registered playbook declares it in its vars type: unused (a playbook that reads it declares its type with FnPlaybook::reads_vars or Playbook::vars_type)".into(),
            });
        }
    };
    unused(None, &inv.vars, &mut found.unused);
    for (name, own) in &inv.host_vars {
        unused(Some(name), own, &mut found.unused);
    }
    found
}

/// `vars.motd.lines[1]` → `["vars", "motd", "lines"]` (an array item is located at its array).
fn field_keys(field: &str) -> Vec<&str> {
    field
        .split('.')
        .map(|k| k.split('[').next().unwrap_or(k))
        .filter(|k| !k.is_empty())
        .collect()
}

/// Whether `table` defines the dotted path `keys`.
fn defined(table: &toml::Table, keys: &[&str]) -> bool {
    let Some((first, rest)) = keys.split_first() else {
        return true;
    };
    match table.get(*first) {
        Some(toml::Value::Table(t)) => defined(t, rest),
        Some(_) => rest.is_empty(),
        None => false,
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

#[cfg(test)]
mod check_tests {
    use std::path::Path;

    use indoc::indoc;
    use serde::Deserialize;
    use tasks::{Plan, Result};

    use super::super::{Inventory, Target};
    use super::{VarsType, check_vars};
    use crate::{FnPlaybook, Playbook, Registry};

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Exporter {
        node_exporter: Listen,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Listen {
        listen: String,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Anything {
        #[serde(flatten)]
        rest: toml::Table,
    }

    fn nothing<'a>(_: Target<'a>, _: &mut Plan<'a>) -> Result<()> {
        Ok(())
    }

    fn playbook(name: &'static str, role: Option<&'static str>) -> FnPlaybook {
        FnPlaybook {
            name,
            about: "",
            role: role.map(|r| crate::roles::find(r).unwrap()),
            plan: nothing,
        }
    }

    const TEXT: &str = indoc! {r#"
        [vars.node_exporter]
        listen = ":9100"

        [vars.team]
        name = "ops"

        [hosts.prdk8swok511]
        role = "k8s-worker"
        address = "192.168.5.57"

        [hosts.prdk8swok511.vars.node_exporter]
        listen = 42

        [hosts.prdinfhap501]
        role = "haproxy"
        address = "192.168.5.41"
        vars = { node_exporter = { listen = 9100 }, extra = 1 }
    "#};

    #[test]
    fn a_declared_type_knows_its_keys() {
        assert_eq!(
            VarsType::of::<Exporter>().keys,
            Some(&["node_exporter"][..])
        );
        assert_eq!(VarsType::of::<Anything>().keys, None);
        assert_eq!(VarsType::of::<toml::Table>().keys, None);
    }

    /// Each host's vars are read into the types of the playbooks meant for it, every problem
    /// named with the host, the field and the line; keys no type reads are listed apart.
    #[test]
    fn every_host_is_checked_against_the_playbooks_meant_for_it() {
        let inv = Inventory::parse(TEXT, Path::new("inventory.toml")).unwrap();
        let mut r = Registry::empty();
        r.add(playbook("exporter", Some("k8s-worker")).reads_vars::<Exporter>());
        r.add(playbook("undeclared", None));
        let found = check_vars(&inv, TEXT, r.all());
        let problems: Vec<String> = found
            .problems
            .iter()
            .map(|p| format!("{:?} {} {:?} {}", p.host, p.field, p.line, p.message))
            .collect();
        // The haproxy host's 9100 is not the k8s-worker playbook's business.
        assert_eq!(
            problems,
            [
                "Some(\"prdk8swok511\") vars.node_exporter.listen Some(12) invalid type: integer `42`, expected a string (playbook exporter reads it)"
            ]
        );
        let unused: Vec<String> = found
            .unused
            .iter()
            .map(|p| format!("{:?} {} {:?}", p.host, p.field, p.line))
            .collect();
        assert_eq!(
            unused,
            [
                "None vars.team Some(4)",
                "Some(\"prdinfhap501\") vars.extra Some(17)",
            ]
        );

        // The same playbook for any role reads the haproxy host's vars too.
        let mut r = Registry::empty();
        r.add(playbook("exporter", None).reads_vars::<Exporter>());
        let found = check_vars(&inv, TEXT, r.all());
        let hosts: Vec<_> = found.problems.iter().map(|p| p.host.clone()).collect();
        assert_eq!(
            hosts,
            [Some("prdinfhap501".into()), Some("prdk8swok511".into())]
        );
        assert_eq!(found.problems[0].line, Some(17));

        // A type that reads any key leaves none unused; no declared type checks nothing.
        let mut r = Registry::empty();
        r.add(playbook("anything", None).reads_vars::<Anything>());
        let found = check_vars(&inv, TEXT, r.all());
        assert!(found.problems.is_empty() && found.unused.is_empty());
        let r = Registry::empty();
        let found = check_vars(&inv, TEXT, r.all());
        assert!(found.problems.is_empty());
        assert_eq!(found.unused.len(), 5);
        // The declaration is the playbook's.
        let p = playbook("exporter", None).reads_vars::<Exporter>();
        assert_eq!(p.name(), "exporter");
        assert!(p.vars_type().unwrap().name.ends_with("Exporter"));
    }

    /// A playbook's own refusal names the file, the host and the field as serde's do; an error
    /// out of a plan gets the file and host unless it names them.
    #[test]
    fn a_playbooks_own_errors_name_file_host_and_field() {
        let inv = Inventory::parse(TEXT, Path::new("inventory.toml")).unwrap();
        let t = inv.target("prdk8swok511").unwrap();
        let own: tasks::Error = t
            .invalid_var("node_exporter.listen", "not host:port")
            .into();
        assert_eq!(own.kind(), tasks::ErrorKind::Invalid);
        let said = "inventory.toml: host prdk8swok511: vars.node_exporter.listen: not host:port";
        assert_eq!(own.to_string(), said);
        assert_eq!(t.plan_error(own).to_string(), said);
        let serde: tasks::Error = t.vars::<Exporter>().err().unwrap().into();
        let said = serde.to_string();
        assert_eq!(t.plan_error(serde).to_string(), said);
        let bare = t.plan_error(tasks::Error::invalid("no NTP server given"));
        assert_eq!(
            bare.to_string(),
            "inventory.toml: host prdk8swok511: no NTP server given"
        );
        assert_eq!(bare.kind(), tasks::ErrorKind::Invalid);
        let named = t.plan_error(tasks::Error::invalid("host prdk8swok511: refusing"));
        assert_eq!(
            named.to_string(),
            "inventory.toml: host prdk8swok511: refusing"
        );
    }
}
