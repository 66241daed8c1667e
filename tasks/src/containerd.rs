//! containerd as the Kubernetes container runtime: the package, `/etc/containerd/config.toml`
//! (CRI plugin enabled, runc with the systemd cgroup driver), the service (Photon ships it
//! disabled by a preset), and `/etc/crictl.yaml`.
//!
//! The config is edited structurally (toml_edit): everything the edit does not touch, comments
//! included, stays as it was. Which table holds the runc options depends on the config schema:
//! `version = 2` (containerd 1.x, also read by 2.x) uses `plugins."io.containerd.grpc.v1.cri"`,
//! `version = 3` (containerd 2.x) uses `plugins.'io.containerd.cri.v1.runtime'`.

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file::{self, Perm};
use crate::reads::Reads;
use crate::{pkg, systemd};

pub const CONFIG: &str = "/etc/containerd/config.toml";
pub const CRICTL: &str = "/etc/crictl.yaml";
pub const SOCKET: &str = "unix:///run/containerd/containerd.sock";
pub const SERVICE: &str = "containerd.service";

/// Package names that provide containerd: the distributions' and Docker's upstream one.
pub const PACKAGES: [&str; 2] = ["containerd", "containerd.io"];

/// Plugin ids of the CRI plugin (1.x and 2.x): none of them may be disabled.
const CRI_PLUGINS: [&str; 5] = [
    "cri",
    "io.containerd.grpc.v1.cri",
    "io.containerd.cri.v1.runtime",
    "io.containerd.cri.v1.images",
    "io.containerd.cri.v1",
];

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[CONFIG, CRICTL]).units(&[SERVICE]);

/// The runtime containerd's config names for runc (`runtime_type`), and the shim binary
/// containerd runs for it: `io.containerd.runc.v2` is `containerd-shim-runc-v2` on PATH
/// (containerd resolves a runtime type `io.containerd.X.vN` to `containerd-shim-X-vN`).
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// The shim binary for a runtime type (`io.containerd.runc.v2` → `containerd-shim-runc-v2`).
pub fn shim_binary(runtime_type: &str) -> Option<String> {
    let rest = runtime_type.strip_prefix("io.containerd.")?;
    let (name, version) = rest.rsplit_once('.')?;
    Some(format!("containerd-shim-{name}-{version}"))
}

/// The packages of the runtime on `os`: Photon ships runc's shim (`containerd-shim-runc-v2`)
/// apart, in `containerd-extras` (vmware/photon `SPECS/containerd/containerd.spec` on 5.0 @
/// 448381b3, `%files extras`: see tests/data/photon/README.md); a minimal install has it only
/// because docker-engine requires `/usr/bin/containerd-shim-runc-v2`.
fn runtime_packages(os: crate::facts::OsFamily) -> &'static [&'static str] {
    match os {
        crate::facts::OsFamily::Photon => &["containerd", "containerd-extras"],
        crate::facts::OsFamily::Debian | crate::facts::OsFamily::Rhel => &["containerd"],
    }
}

/// containerd's packages this host lacks, for the plan's one transaction: `containerd` (and on
/// Photon `containerd-extras`, which holds runc's shim), unless Docker's `containerd.io` is
/// installed (installing the other would conflict with it; it holds the shim).
pub fn packages(cx: &mut Ctx) -> Result<Vec<String>> {
    if pkg::is_installed(cx, "containerd.io")? {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in runtime_packages(cx.facts().os) {
        if !pkg::is_installed(cx, name)? {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// containerd is installed with runc's shim: package `containerd` (with `containerd-extras` on
/// Photon; an installed `containerd.io`, Docker's package, counts too: installing the other
/// would conflict with it).
pub fn installed(cx: &mut Ctx) -> Result<Change> {
    if pkg::is_installed(cx, "containerd.io")? {
        return Ok(Change::Unchanged);
    }
    let names = runtime_packages(cx.facts().os);
    pkg::installed(cx, names)
}

/// The installed containerd's major version, from its package version (`1.6.21-13.ph5`,
/// `1.7.24~ds1-1`, `1:2.0.4-1`); `None` when not installed or not known yet.
pub fn package_major(cx: &mut Ctx) -> Result<Option<u32>> {
    for name in ["containerd.io", "containerd"] {
        if let Some(major) = pkg::version(cx, name)?.as_deref().and_then(major_of) {
            return Ok(Some(major));
        }
    }
    Ok(None)
}

/// The leading number of a package version, epoch removed.
pub fn major_of(version: &str) -> Option<u32> {
    let v = version.split_once(':').map_or(version, |(_, rest)| rest);
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `/etc/containerd/config.toml` lets kubelet use containerd: the CRI plugin is not disabled,
/// runc runs with `SystemdCgroup = true` (the cgroup driver kubelet uses). An absent file is
/// created with just that. Changed means containerd must be restarted.
pub fn config(cx: &mut Ctx) -> Result<Change> {
    let major = package_major(cx)?;
    file::edit(cx, CONFIG, None, |old| edited_config(old, major))
}

/// The config after the edit. `major`: the installed containerd's major version, if known; it
/// picks the schema of a new file (and catches a `version = 3` file that containerd 1.x
/// cannot read). An existing file keeps its schema: containerd 2.x reads `version = 2` files.
pub fn edited_config(old: Option<&str>, major: Option<u32>) -> Result<String> {
    let text = match old {
        Some(t) if !t.trim().is_empty() => t.to_string(),
        _ => format!(
            "# containerd configuration, written by nodeprep: the CRI plugin for kubelet, runc with\n\
             # the systemd cgroup driver. Everything else keeps containerd's defaults.\n\
             version = {}\n",
            if major.is_some_and(|m| m >= 2) { 3 } else { 2 }
        ),
    };
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| Error::new(ErrorKind::Invalid, format!("not valid TOML: {e}")))?;
    let schema = schema(&mut doc, major)?;

    if let Some(arr) = doc.get_mut("disabled_plugins").and_then(Item::as_array_mut) {
        let before = arr.len();
        arr.retain(|v| !v.as_str().is_some_and(|s| CRI_PLUGINS.contains(&s)));
        if arr.len() != before {
            arr.fmt();
        }
    }

    let plugin = if schema == 3 {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    let runc = table_at(
        doc.as_table_mut(),
        &["plugins", plugin, "containerd", "runtimes", "runc"],
    )?;
    // A runc table without runtime_type replaces containerd's default entry, leaving the
    // runtime type empty and CRI unusable: name it.
    if runc.get("runtime_type").is_none_or(Item::is_none) {
        runc.insert("runtime_type", toml_edit::value(RUNC_RUNTIME));
    }
    let options = table_at(runc, &["options"])?;
    set_bool(options, "SystemdCgroup", true);
    Ok(doc.to_string())
}

/// The config schema version the file is (or becomes) written in.
fn schema(doc: &mut DocumentMut, major: Option<u32>) -> Result<i64> {
    match doc.get("version").map(|v| v.as_integer()) {
        Some(Some(3)) if major == Some(1) => Err(Error::invalid(
            "`version = 3` is the containerd 2.x format, but the installed containerd is 1.x, which reads \
             versions 1 and 2 only; write the file in version 2 or install containerd 2.x",
        )),
        Some(Some(v @ (2 | 3))) => Ok(v),
        // Version 2's layout (plugins by their full ids) without its `version = 2` line, as the
        // seed's own snippet is: containerd 1.x would read it as version 1 and ignore the CRI
        // settings. Written as version 2, it means what it says.
        Some(Some(1)) | None
            if doc.contains_key("plugins")
                && !ignored_as_version_1(doc).is_empty()
                && short_plugin_ids(doc).is_empty() =>
        {
            match doc.get_mut("version").and_then(Item::as_value_mut) {
                Some(v) => {
                    let decor = v.decor().clone();
                    *v = Value::from(2);
                    *v.decor_mut() = decor;
                }
                None => {
                    doc.insert("version", toml_edit::value(2));
                }
            }
            Ok(2)
        }
        Some(Some(1)) | None if doc.contains_key("plugins") => Err(Error::invalid(
            "the file is in containerd's version 1 format (no `version = 2`); nodeprep edits versions 2 and 3 \
             only: migrate it (`containerd config migrate` with containerd 2.x, or rewrite it from \
             `containerd config default`) and run again",
        )),
        Some(Some(1)) | None => {
            let v = if major.is_some_and(|m| m >= 2) { 3 } else { 2 };
            doc.insert("version", toml_edit::value(v));
            Ok(v)
        }
        Some(other) => Err(Error::invalid(format!(
            "unknown config `version = {}`; containerd knows versions 1, 2 and 3",
            other.map_or_else(|| "(not an integer)".to_string(), |v| v.to_string())
        ))),
    }
}

/// The plugin tables a file names by their full ids (`io.containerd.grpc.v1.cri`) while it is
/// a version 1 file (no `version`, or `version = 1`): containerd 1.x looks plugins up by their
/// short ids (`cri`) in version 1 and ignores these tables, settings and all.
pub fn ignored_as_version_1(doc: &DocumentMut) -> Vec<String> {
    if !matches!(
        doc.get("version").map(Item::as_integer),
        None | Some(Some(1))
    ) {
        return Vec::new();
    }
    plugin_ids(doc)
        .into_iter()
        .filter(|k| k.contains('.'))
        .collect()
}

/// The plugin tables named by short ids (`cri`, `linux`): version 1's layout.
fn short_plugin_ids(doc: &DocumentMut) -> Vec<String> {
    plugin_ids(doc)
        .into_iter()
        .filter(|k| !k.contains('.'))
        .collect()
}

fn plugin_ids(doc: &DocumentMut) -> Vec<String> {
    doc.get("plugins")
        .and_then(Item::as_table_like)
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

/// The table at `path` under `root`, created (as implicit tables) where missing. Inline and
/// dotted tables count as tables.
fn table_at<'a>(root: &'a mut dyn TableLike, path: &[&str]) -> Result<&'a mut dyn TableLike> {
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        if cur.get(key).is_none_or(Item::is_none) {
            let mut t = Table::new();
            t.set_implicit(true);
            cur.insert(key, Item::Table(t));
        }
        let item = cur.get_mut(key).expect("just inserted");
        cur = item.as_table_like_mut().ok_or_else(|| {
            Error::invalid(format!(
                "`{}` is a value where a table is expected",
                path[..=i].join(".")
            ))
        })?;
    }
    Ok(cur)
}

/// `key = value` in `table`, keeping the key's formatting and comments when it exists.
fn set_bool(table: &mut dyn TableLike, key: &str, value: bool) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(v) if v.as_bool() == Some(value) => {}
        Some(v) => {
            let decor = v.decor().clone();
            *v = Value::from(value);
            *v.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(value));
        }
    }
}

/// The service is enabled at boot and running. `config_changed`: the configuration changed in
/// this run, so a running containerd is restarted (a stopped one just starts with it). Inside
/// a container containerd may be unable to run: a failed start there is a skip, not a failure.
pub fn enabled_and_running(cx: &mut Ctx, config_changed: bool) -> Result<Change> {
    systemd::enabled_and_running(cx, SERVICE, config_changed)
}

/// Restarts containerd (a handler, for when something else it reads changed).
pub fn restarted(cx: &mut Ctx) -> Result<Change> {
    systemd::restarted(cx, SERVICE)
}

/// `/etc/crictl.yaml` points crictl at containerd (runtime and image endpoints, a 10 s
/// timeout); other settings in the file are kept.
pub fn crictl_config(cx: &mut Ctx) -> Result<Change> {
    let wanted = [
        ("runtime-endpoint", SOCKET),
        ("image-endpoint", SOCKET),
        ("timeout", "10"),
    ];
    file::edit(cx, CRICTL, Some(Perm::CONFIG), |old| {
        Ok(with_yaml_keys(old.unwrap_or(""), &wanted))
    })
}

/// Top-level `key: value` lines of a flat YAML file set; other lines kept, missing keys
/// appended.
pub fn with_yaml_keys(text: &str, wanted: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (key, value) in wanted {
        let line = format!("{key}: {value}");
        let prefix = format!("{key}:");
        let mut found = false;
        lines.retain_mut(|l| {
            if !l.starts_with(&prefix) {
                return true;
            }
            if found {
                return false; // a duplicate key: YAML would reject it
            }
            found = true;
            l.clone_from(&line);
            true
        });
        if !found {
            lines.push(line);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, photon_files, plan};
    use expect_test::expect;

    fn text(cx: &Ctx, path: &str) -> String {
        cx.state().files[path]
            .as_ref()
            .expect("file present")
            .text()
    }

    #[test]
    fn photon_config_edited() {
        let out = edited_config(Some(photon_files::CONTAINERD_CONFIG), Some(1)).unwrap();
        expect![[r#"
            #disabled_plugins = ["cri"]

            #root = "/var/lib/containerd"
            #state = "/run/containerd"
            #subreaper = true
            #oom_score = 0
            version = 2

            #[grpc]
            #  address = "/run/containerd/containerd.sock"
            #  uid = 0
            #  gid = 0

            [plugins."io.containerd.grpc.v1.cri"]
            enable_selinux = true

            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
            runtime_type = "io.containerd.runc.v2"

            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true

            #[debug]
            #  address = "/run/containerd/debug.sock"
            #  uid = 0
            #  gid = 0
            #  level = "info"
        "#]]
        .assert_eq(&out);
        assert_eq!(
            edited_config(Some(&out), Some(1)).unwrap(),
            out,
            "a second edit changes nothing"
        );
    }

    #[test]
    fn new_files_per_major() {
        expect![[r#"
            # containerd configuration, written by nodeprep: the CRI plugin for kubelet, runc with
            # the systemd cgroup driver. Everything else keeps containerd's defaults.
            version = 2

            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
            runtime_type = "io.containerd.runc.v2"

            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
        "#]]
        .assert_eq(&edited_config(None, Some(1)).unwrap());
        expect![[r#"
            # containerd configuration, written by nodeprep: the CRI plugin for kubelet, runc with
            # the systemd cgroup driver. Everything else keeps containerd's defaults.
            version = 3

            [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
            runtime_type = "io.containerd.runc.v2"

            [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
            SystemdCgroup = true
        "#]]
        .assert_eq(&edited_config(Some(""), Some(2)).unwrap());
        assert!(
            edited_config(None, None).unwrap().contains("version = 2\n"),
            "unknown version: the format both read"
        );
    }

    #[test]
    fn default_dump_fixed_in_place() {
        let dump = r#"disabled_plugins = ["cri", "io.containerd.internal.v1.tracing"]
version = 2

[plugins]

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = ""
      # the cgroup driver
      SystemdCgroup = false # cgroupfs
"#;
        expect![[r#"
            disabled_plugins = ["io.containerd.internal.v1.tracing"]
            version = 2

            [plugins]

              [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
                runtime_type = "io.containerd.runc.v2"

                [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                  BinaryName = ""
                  # the cgroup driver
                  SystemdCgroup = true # cgroupfs
        "#]]
        .assert_eq(&edited_config(Some(dump), Some(1)).unwrap());
    }

    #[test]
    fn version_3_and_inline_tables() {
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\noptions = { SystemdCgroup = false, BinaryName = '' }\n";
        expect![[r#"
            version = 3
            [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
            options = { SystemdCgroup = true, BinaryName = '' }
            runtime_type = "io.containerd.runc.v2"
        "#]]
        .assert_eq(&edited_config(Some(v3), Some(2)).unwrap());
        // containerd 2.x reads version 2 files: they keep their schema.
        let v2 = edited_config(Some("version = 2\n"), Some(2)).unwrap();
        assert!(
            v2.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]"),
            "{v2}"
        );
    }

    #[test]
    fn unusable_files_refused() {
        let e = edited_config(Some("version = 3\n"), Some(1)).unwrap_err();
        assert!(
            e.message().contains("the installed containerd is 1.x"),
            "{e}"
        );
        let e = edited_config(Some("[plugins.cri]\nsystemd_cgroup = true\n"), Some(1)).unwrap_err();
        assert!(e.message().contains("version 1 format"), "{e}");
        let e = edited_config(
            Some("version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = 3\n"),
            Some(1),
        )
        .unwrap_err();
        assert!(
            e.message()
                .contains("`plugins.io.containerd.grpc.v1.cri` is a value"),
            "{e}"
        );
        // A file without a version nor plugins is version 1 in name only: it gets one.
        assert!(
            edited_config(Some("root = \"/data\"\n"), Some(1))
                .unwrap()
                .starts_with("root = \"/data\"\nversion = 2\n")
        );
    }

    /// The seed's snippet: version 2's tables without `version = 2` (containerd 1.x would ignore
    /// them): the line is added, nothing else moves. A version 1 file in its own layout is still
    /// refused (above).
    #[test]
    fn seed_snippet_gets_its_version() {
        let seed = "disabled_plugins = [\"\"]\n\n#root = \"/var/lib/containerd\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
        let out = edited_config(Some(seed), Some(1)).unwrap();
        expect![[r#"
            disabled_plugins = [""]
            version = 2

            #root = "/var/lib/containerd"

            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
            runtime_type = "io.containerd.runc.v2"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
        "#]]
        .assert_eq(&out);
        assert_eq!(edited_config(Some(&out), Some(1)).unwrap(), out);
        let said = format!("version = 1 # old\n{seed}");
        assert!(
            edited_config(Some(&said), Some(1))
                .unwrap()
                .starts_with("version = 2 # old\n")
        );
    }

    #[test]
    fn major_versions() {
        assert_eq!(major_of("1.6.21-13.ph5"), Some(1));
        assert_eq!(major_of("1.7.24~ds1-1"), Some(1));
        assert_eq!(major_of("1:2.0.4-1"), Some(2));
        assert_eq!(major_of(""), None);
    }

    #[test]
    fn photon_plan() {
        let (mut cx, _rec) = Fixture::photon()
            .file(CONFIG, photon_files::CONTAINERD_CONFIG, 0o644)
            .packages(&[("containerd", "1.6.21-13.ph5")])
            .unit(SERVICE, "disabled", "inactive")
            .absent(CRICTL)
            .ctx(Mode::Apply);
        assert_eq!(installed(&mut cx).unwrap(), Change::Unchanged);
        let changed = config(&mut cx).unwrap();
        assert!(changed.changed());
        assert_eq!(crictl_config(&mut cx).unwrap(), Change::Changed);
        assert_eq!(
            enabled_and_running(&mut cx, changed.changed()).unwrap(),
            Change::Changed
        );
        expect![[r#"
            write /etc/containerd/config.toml 0644 root:root
            write /etc/crictl.yaml 0644 root:root
            run systemctl enable containerd.service
            run systemctl start containerd.service
        "#]]
        .assert_eq(&plan(&cx));
        expect![[r#"
            runtime-endpoint: unix:///run/containerd/containerd.sock
            image-endpoint: unix:///run/containerd/containerd.sock
            timeout: 10
        "#]]
        .assert_eq(&text(&cx, CRICTL));
        assert!(text(&cx, CONFIG).contains("SystemdCgroup = true"));
    }

    /// Without docker-engine nothing brings runc's shim on Photon: `containerd-extras` is
    /// installed with containerd (containerd.spec `%files extras`, tests/data/photon/README.md).
    #[test]
    fn photon_without_docker_gets_the_shim() {
        let (mut cx, _rec) = Fixture::photon()
            .without_packages(&["docker", "docker-engine", "containerd-extras"])
            .ctx(Mode::Apply);
        assert_eq!(packages(&mut cx).unwrap(), ["containerd-extras"]);
        assert_eq!(installed(&mut cx).unwrap(), Change::Changed);
        expect![[r#"
            run tdnf install -y --quiet containerd-extras
        "#]]
        .assert_eq(&plan(&cx));
        // The minimal install (docker-engine requires the shim) has it already.
        let (mut cx, _rec) = Fixture::photon().ctx(Mode::Apply);
        assert!(packages(&mut cx).unwrap().is_empty());
        assert_eq!(
            shim_binary(RUNC_RUNTIME).as_deref(),
            Some("containerd-shim-runc-v2")
        );
    }

    #[test]
    fn debian_install_and_restart() {
        let (mut cx, _rec) = Fixture::debian()
            .absent(CONFIG)
            .file(CRICTL, "debug: true\ntimeout: 2\n", 0o644)
            .ctx(Mode::Apply);
        assert_eq!(installed(&mut cx).unwrap(), Change::Changed);
        // After the install the version is read again; pretend the host answered.
        cx.state_mut().packages =
            Some([("containerd".to_string(), "1.6.20~ds1-1+b1".to_string())].into());
        cx.state_mut().units.insert(
            SERVICE.into(),
            crate::state::UnitState {
                enablement: crate::state::Enablement::Enabled,
                active: crate::state::ActiveState::Active,
            },
        );
        let _ = cx.take_units_stale();
        assert!(config(&mut cx).unwrap().changed());
        assert!(text(&cx, CONFIG).contains("version = 2\n"));
        assert!(crictl_config(&mut cx).unwrap().changed());
        assert_eq!(
            text(&cx, CRICTL),
            format!(
                "debug: true\ntimeout: 10\nruntime-endpoint: {SOCKET}\nimage-endpoint: {SOCKET}\n"
            )
        );
        assert_eq!(enabled_and_running(&mut cx, true).unwrap(), Change::Changed);
        expect![[r#"
            run apt-get update -q -o DPkg::Lock::Timeout=120
            run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 containerd
            write /etc/containerd/config.toml 0644 root:root
            write /etc/crictl.yaml 0644 root:root
            run systemctl restart containerd.service
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn rhel_upstream_package_counts() {
        let (mut cx, _rec) = Fixture::rhel()
            .packages(&[("containerd.io", "2.0.5-1.el9")])
            .absent(CONFIG)
            .ctx(Mode::Apply);
        assert_eq!(installed(&mut cx).unwrap(), Change::Unchanged);
        assert!(config(&mut cx).unwrap().changed());
        assert!(text(&cx, CONFIG).contains("version = 3\n"));
    }

    #[test]
    fn no_change() {
        let done = edited_config(Some(photon_files::CONTAINERD_CONFIG), Some(1)).unwrap();
        let crictl = format!("runtime-endpoint: {SOCKET}\nimage-endpoint: {SOCKET}\ntimeout: 10\n");
        let (mut cx, rec) = Fixture::photon()
            .file(CONFIG, &done, 0o644)
            .file(CRICTL, &crictl, 0o644)
            .packages(&[("containerd", "1.6.21-13.ph5")])
            .unit(SERVICE, "enabled", "active")
            .ctx(Mode::Apply);
        let mut c = installed(&mut cx).unwrap();
        let cfg = config(&mut cx).unwrap();
        c |= cfg.clone();
        c |= crictl_config(&mut cx).unwrap();
        c |= enabled_and_running(&mut cx, cfg.changed()).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert!(cx.actions().is_empty(), "{:?}", cx.actions());
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
    }

    /// A Photon host whose containerd was removed (with docker, which requires it), its
    /// config file left.
    #[test]
    fn check_mode_plans_only() {
        let (mut cx, rec) = Fixture::photon()
            .without_packages(&["containerd", "docker-engine", "docker"])
            .file(CONFIG, photon_files::CONTAINERD_CONFIG, 0o644)
            .ctx(Mode::Check);
        assert!(installed(&mut cx).unwrap().changed());
        let cfg = config(&mut cx).unwrap();
        assert!(cfg.changed());
        assert!(
            enabled_and_running(&mut cx, cfg.changed())
                .unwrap()
                .changed()
        );
        expect![[r#"
            run tdnf install -y --quiet containerd
            write /etc/containerd/config.toml 0644 root:root
            run systemctl enable containerd.service
            run systemctl start containerd.service
        "#]]
        .assert_eq(&plan(&cx));
        // Only reads reach the host (the unit's state, unknown before the install).
        assert!(
            rec.commands()
                .iter()
                .all(|c| c.display().starts_with("sh -c 'systemctl show")),
            "{:?}",
            rec.commands()
        );
    }

    #[test]
    fn container_start_failure_is_a_skip() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("containerd", "1.6.20~ds1-1+b1")])
            .unit(SERVICE, "enabled", "failed")
            .in_container()
            .ctx(Mode::Apply);
        rec.reply(
            "systemctl start",
            crate::Output {
                status: Some(1),
                stderr: b"Job failed".to_vec(),
                ..Default::default()
            },
        );
        let c = enabled_and_running(&mut cx, false).unwrap();
        assert!(
            matches!(&c, Change::Skipped(why) if why.contains("inside this container (docker)")),
            "{c:?}"
        );
    }
}
