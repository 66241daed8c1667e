//! Docker, where a host has it: `/etc/docker/daemon.json` with the systemd cgroup driver (the
//! one kubelet and containerd use), json-file logs capped at 100m, overlay2; and the service
//! enabled and running (Photon's preset ships it disabled).

use serde_json::{Value, json};

use crate::ctx::{Change, Ctx};
use crate::error::Result;
use crate::reads::Reads;
use crate::{file, pkg, systemd};

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const SERVICE: &str = "docker.service";

/// Package names that install the docker daemon: Photon (`docker` meta package,
/// `docker-engine`), Debian (`docker.io`), Docker's upstream repositories (`docker-ce`),
/// Fedora (`moby-engine`).
pub const PACKAGES: [&str; 5] = [
    "docker",
    "docker-engine",
    "docker.io",
    "docker-ce",
    "moby-engine",
];

const CGROUP_DRIVER: &str = "native.cgroupdriver=systemd";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[DAEMON_JSON]).units(&["docker.service"]);

/// Docker's daemon is installed (under any of its package names).
pub fn is_installed(cx: &mut Ctx) -> Result<bool> {
    for name in PACKAGES {
        if pkg::is_installed(cx, name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The settings merged into `/etc/docker/daemon.json`; keys the file has and these do not name
/// are kept, and so are other `exec-opts` entries (only the cgroup driver one is replaced).
/// Written whether or not docker is installed yet, so a later install starts right. Changed
/// means docker must be restarted.
pub fn daemon_json(cx: &mut Ctx) -> Result<Change> {
    file::edit(cx, DAEMON_JSON, None, |old| {
        let current: Option<Value> = old
            .filter(|t| !t.trim().is_empty())
            .and_then(|t| serde_json::from_str(t).ok());
        file::merged_json(old, &patch(current.as_ref()))
    })
}

/// The patch for a daemon.json that holds `current`.
pub fn patch(current: Option<&Value>) -> Value {
    let mut exec_opts: Vec<Value> = current
        .and_then(|c| c.get("exec-opts"))
        .and_then(Value::as_array)
        .map(|opts| {
            opts.iter()
                .filter(|o| {
                    !o.as_str()
                        .is_some_and(|s| s.trim_start().starts_with("native.cgroupdriver"))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Keep the driver where it was when only its value changes: no reordering churn.
    let at = current
        .and_then(|c| c.get("exec-opts"))
        .and_then(Value::as_array)
        .and_then(|opts| {
            opts.iter().position(|o| {
                o.as_str()
                    .is_some_and(|s| s.trim_start().starts_with("native.cgroupdriver"))
            })
        })
        .unwrap_or(exec_opts.len())
        .min(exec_opts.len());
    exec_opts.insert(at, json!(CGROUP_DRIVER));
    json!({
        "exec-opts": exec_opts,
        "log-driver": "json-file",
        "log-opts": {"max-size": "100m"},
        "storage-driver": "overlay2",
    })
}

/// Where docker is installed: enabled at boot and running; restarted when `daemon_changed`
/// (daemon.json changed in this run) and it was already running. Where it is not installed:
/// skipped. Inside a container dockerd usually cannot run: a failed start there is a skip.
pub fn enable_and_start(cx: &mut Ctx, daemon_changed: bool) -> Result<Change> {
    if !is_installed(cx)? {
        return Ok(Change::Skipped("docker is not installed".into()));
    }
    systemd::enabled_and_running(cx, SERVICE, daemon_changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, assert_sent_nothing, plan};
    use expect_test::expect;

    fn text(cx: &Ctx) -> String {
        cx.state().files[DAEMON_JSON]
            .as_ref()
            .expect("daemon.json present")
            .text()
    }

    #[test]
    fn photon_fresh() {
        // Photon: docker-engine 27.3.1, no daemon.json, service disabled by preset.
        let (mut cx, _rec) = Fixture::photon()
            .packages(&[
                ("docker", "27.3.1-5.ph5"),
                ("docker-engine", "27.3.1-5.ph5"),
                ("docker-cli", "27.3.1-5.ph5"),
            ])
            .absent(DAEMON_JSON)
            .unit(SERVICE, "disabled", "inactive")
            .ctx(Mode::Apply);
        assert!(is_installed(&mut cx).unwrap());
        let changed = daemon_json(&mut cx).unwrap();
        assert_eq!(
            enable_and_start(&mut cx, changed.changed()).unwrap(),
            Change::Changed
        );
        expect![[r#"
            {
              "exec-opts": [
                "native.cgroupdriver=systemd"
              ],
              "log-driver": "json-file",
              "log-opts": {
                "max-size": "100m"
              },
              "storage-driver": "overlay2"
            }
        "#]]
        .assert_eq(&text(&cx));
        expect![[r#"
            write /etc/docker/daemon.json 0644 root:root
            run systemctl enable docker.service
            run systemctl start docker.service
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn merged_into_existing() {
        let old = r#"{"exec-opts": ["native.umask=normal", "native.cgroupdriver=cgroupfs"], "log-opts": {"max-file": "5"}, "insecure-registries": ["reg.lan:5000"]}"#;
        let (mut cx, _rec) = Fixture::debian()
            .packages(&[("docker.io", "20.10.24+dfsg1-1+b3")])
            .file(DAEMON_JSON, old, 0o600)
            .unit(SERVICE, "enabled", "active")
            .ctx(Mode::Apply);
        let changed = daemon_json(&mut cx).unwrap();
        assert_eq!(
            enable_and_start(&mut cx, changed.changed()).unwrap(),
            Change::Changed
        );
        expect![[r#"
            {
              "exec-opts": [
                "native.umask=normal",
                "native.cgroupdriver=systemd"
              ],
              "log-opts": {
                "max-file": "5",
                "max-size": "100m"
              },
              "insecure-registries": [
                "reg.lan:5000"
              ],
              "log-driver": "json-file",
              "storage-driver": "overlay2"
            }
        "#]]
        .assert_eq(&text(&cx));
        expect![[r#"
            write /etc/docker/daemon.json 0600 root:root
            run systemctl restart docker.service
        "#]]
        .assert_eq(&plan(&cx));
    }

    #[test]
    fn bad_json_refused() {
        let (mut cx, _rec) = Fixture::rhel()
            .file(DAEMON_JSON, "{\"debug\": tru", 0o644)
            .ctx(Mode::Apply);
        let e = daemon_json(&mut cx).unwrap_err();
        assert!(
            e.to_string()
                .contains("/etc/docker/daemon.json: not valid JSON"),
            "{e}"
        );
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn absent_docker_skipped() {
        let (mut cx, _rec) = Fixture::rhel().ctx(Mode::Apply);
        assert!(!is_installed(&mut cx).unwrap());
        assert_eq!(
            enable_and_start(&mut cx, true).unwrap(),
            Change::Skipped("docker is not installed".into())
        );
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn no_change() {
        // Formatted by the operator, same meaning: left alone.
        let done = r#"{"storage-driver":"overlay2","log-driver":"json-file","log-opts":{"max-size":"100m"},"exec-opts":["native.cgroupdriver=systemd"],"debug":false}"#;
        let (mut cx, rec) = Fixture::photon()
            .packages(&[("docker", "27.3.1-5.ph5")])
            .file(DAEMON_JSON, done, 0o644)
            .unit(SERVICE, "enabled", "active")
            .ctx(Mode::Apply);
        let changed = daemon_json(&mut cx).unwrap();
        assert_eq!(changed, Change::Unchanged);
        assert_eq!(
            enable_and_start(&mut cx, changed.changed()).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty(), "{:?}", cx.actions());
        assert_sent_nothing(&rec);
    }

    #[test]
    fn check_mode_plans_only() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("docker.io", "20.10.24+dfsg1-1+b3")])
            .file(DAEMON_JSON, "{}\n", 0o644)
            .unit(SERVICE, "enabled", "active")
            .ctx(Mode::Check);
        let changed = daemon_json(&mut cx).unwrap();
        assert!(changed.changed());
        assert!(
            enable_and_start(&mut cx, changed.changed())
                .unwrap()
                .changed()
        );
        expect![[r#"
            write /etc/docker/daemon.json 0644 root:root
            run systemctl restart docker.service
        "#]]
        .assert_eq(&plan(&cx));
        assert_sent_nothing(&rec);
    }
}
