//! systemd units: enabled, started, restarted, reloaded, daemon-reload. States come from the
//! probe (`systemctl show` of the units tasks manage), read again after package installs.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::state::{self, ActiveState, Enablement, UnitState};

/// `name` with `.service` appended when it has no unit suffix.
pub fn unit_name(name: &str) -> String {
    const SUFFIXES: [&str; 8] = [
        ".service", ".socket", ".timer", ".target", ".mount", ".path", ".slice", ".scope",
    ];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// The unit's state as systemd reports it (empty enablement: no such unit). Read from the
/// probe; after a package install or a daemon-reload, read again (one round trip per unit).
pub fn unit(cx: &mut Ctx, name: &str) -> Result<UnitState> {
    let name = unit_name(name);
    if cx.take_units_stale() {
        cx.units_mut().clear();
    }
    if let Some(u) = cx.state().units.get(&name) {
        return Ok(u.clone());
    }
    cx.note_miss(format!("unit {name}"));
    let out = cx.query(&["sh", "-c", &state::units_show_command(&[&name])])?;
    let read = state::parse_units_show(&out.stdout_str());
    let u = read
        .into_iter()
        .find(|(id, _)| *id == name)
        .map(|(_, u)| u)
        .unwrap_or_default();
    cx.units_mut().insert(name, u.clone());
    Ok(u)
}

fn require_systemd(cx: &Ctx) -> Result<()> {
    if cx.facts().systemd {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Unsupported,
            "systemd is not running on this host (PID 1 is something else)",
        ))
    }
}

/// The unit is enabled at boot.
pub fn enabled(cx: &mut Ctx, name: &str) -> Result<Change> {
    let unit_name = unit_name(name);
    let done = enable(cx, &unit_name)?;
    if done {
        cx.note_done_or_would(
            format!("enabled {unit_name}"),
            format!("would enable {unit_name}"),
        );
    }
    Ok(Change::from_bool(done))
}

/// `systemctl enable` unless the unit is enabled already; whether it ran.
fn enable(cx: &mut Ctx, unit_name: &str) -> Result<bool> {
    require_systemd(cx)?;
    let u = unit(cx, unit_name)?;
    if matches!(
        u.enablement,
        Enablement::Enabled
            | Enablement::EnabledRuntime
            | Enablement::Static
            | Enablement::Alias
            | Enablement::Indirect
            | Enablement::Generated
    ) {
        return Ok(false);
    }
    if u.enablement == Enablement::Masked {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("{unit_name} is masked; unmask it first (systemctl unmask {unit_name})"),
        ));
    }
    cx.apply(&["systemctl", "enable", unit_name])?;
    cx.units_mut()
        .entry(unit_name.to_string())
        .or_default()
        .enablement = Enablement::Enabled;
    Ok(true)
}

/// The unit is running.
pub fn started(cx: &mut Ctx, name: &str) -> Result<Change> {
    let unit_name = unit_name(name);
    let done = start(cx, &unit_name)?;
    if done {
        cx.note_done_or_would(
            format!("started {unit_name}"),
            format!("would start {unit_name}"),
        );
    }
    Ok(Change::from_bool(done))
}

/// `systemctl start` unless the unit is active; whether it ran.
fn start(cx: &mut Ctx, unit_name: &str) -> Result<bool> {
    require_systemd(cx)?;
    if unit(cx, unit_name)?.active == ActiveState::Active {
        return Ok(false);
    }
    cx.apply(&["systemctl", "start", unit_name])?;
    set_active(cx, unit_name, ActiveState::Active);
    Ok(true)
}

fn set_active(cx: &mut Ctx, unit_name: &str, state: ActiveState) {
    cx.units_mut()
        .entry(unit_name.to_string())
        .or_default()
        .active = state;
}

/// The service is enabled at boot and running; a running one is restarted when
/// `config_changed` (a stopped one just starts with the new configuration). Inside a container
/// some daemons cannot run: a failed start there is a skip with the reason, not a failure.
pub fn enabled_and_running(cx: &mut Ctx, name: &str, config_changed: bool) -> Result<Change> {
    let unit_name = unit_name(name);
    let enabled = enable(cx, &unit_name)?;
    let running = unit(cx, &unit_name)?.active == ActiveState::Active;
    let started = if !running {
        start(cx, &unit_name).map(|done| done.then_some(("started", "start")))
    } else if config_changed {
        restart(cx, &unit_name).map(|()| Some(("restarted", "restart")))
    } else {
        Ok(None)
    };
    // What was done, and what a check run would do.
    let mut done: Vec<(&str, &str)> = Vec::new();
    if enabled {
        done.push(("enabled", "enable"));
    }
    if let Ok(Some(what)) = &started {
        done.push(*what);
    }
    if !done.is_empty() {
        let did: Vec<&str> = done.iter().map(|(did, _)| *did).collect();
        let would: Vec<&str> = done.iter().map(|(_, would)| *would).collect();
        cx.note_done_or_would(
            format!("{} {unit_name}", did.join(" and ")),
            format!("would {} {unit_name}", would.join(" and ")),
        );
    }
    match started {
        Ok(s) => Ok(Change::from_bool(enabled || s.is_some())),
        Err(e) if cx.facts().in_container() && e.kind() == ErrorKind::Command => {
            Ok(Change::Skipped(format!(
                "{unit_name} cannot run inside this container ({}): {}",
                cx.facts().container.clone().unwrap_or_default(),
                e.message()
            )))
        }
        Err(e) => Err(e),
    }
}

/// Restarts the unit (a handler: call it when its configuration changed).
pub fn restarted(cx: &mut Ctx, name: &str) -> Result<Change> {
    let unit_name = unit_name(name);
    restart(cx, &unit_name)?;
    cx.note_done_or_would(
        format!("restarted {unit_name}"),
        format!("would restart {unit_name}"),
    );
    Ok(Change::Changed)
}

fn restart(cx: &mut Ctx, unit_name: &str) -> Result<()> {
    require_systemd(cx)?;
    cx.apply(&["systemctl", "restart", unit_name])?;
    set_active(cx, unit_name, ActiveState::Active);
    Ok(())
}

/// Reloads the unit, or starts it when it is not running.
pub fn reloaded(cx: &mut Ctx, name: &str) -> Result<Change> {
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    cx.apply(&["systemctl", "reload-or-restart", &unit_name])?;
    set_active(cx, &unit_name, ActiveState::Active);
    cx.note_done_or_would(
        format!("reloaded {unit_name}"),
        format!("would reload {unit_name}"),
    );
    Ok(Change::Changed)
}

/// Whether the unit runs, asked now (`systemctl is-active`, one round trip): after a restart
/// whose start condition is unmet, systemd exits 0 and leaves the unit inactive. The answer
/// (`active`, `inactive`, `failed`...) is kept as the unit's state.
pub fn active_now(cx: &mut Ctx, name: &str) -> Result<ActiveState> {
    let unit_name = unit_name(name);
    let out = cx.query(&["systemctl", "is-active", &unit_name])?;
    let state = ActiveState::parse(&out.stdout_str());
    set_active(cx, &unit_name, state.clone());
    Ok(state)
}

/// `systemctl daemon-reload` (a handler: call it when a unit file changed); unit states are
/// read again afterwards.
pub fn daemon_reload(cx: &mut Ctx) -> Result<Change> {
    require_systemd(cx)?;
    cx.apply(&["systemctl", "daemon-reload"])?;
    cx.units_changed();
    cx.note_done_or_would(
        "systemd reloaded its unit files (daemon-reload)",
        "systemd would reload its unit files (daemon-reload)",
    );
    Ok(Change::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, plan};

    /// Each change says what it did in one line: enabled and started together, restarted after
    /// a configuration change; nothing when the unit is as wanted.
    #[test]
    fn changes_are_said() {
        let (mut cx, _rec) = Fixture::photon()
            .unit("containerd.service", "disabled", "inactive")
            .ctx(Mode::Apply);
        let c = cx
            .step("containerd running", |cx| {
                enabled_and_running(cx, "containerd", false)
            })
            .unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(
            cx.records()[0].diffs,
            ["enabled and started containerd.service\n"]
        );
        let c = cx
            .step("again", |cx| enabled_and_running(cx, "containerd", true))
            .unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(cx.records()[1].diffs, ["restarted containerd.service\n"]);
        let c = cx
            .step("as wanted", |cx| {
                enabled_and_running(cx, "containerd", false)
            })
            .unwrap();
        assert_eq!(c, Change::Unchanged);
        assert!(cx.records()[2].diffs.is_empty());
        assert_eq!(
            plan(&cx),
            "run systemctl enable containerd.service\n\
             run systemctl start containerd.service\n\
             run systemctl restart containerd.service\n"
        );
    }

    /// In check mode nothing is enabled, started or restarted: each line says what would be,
    /// and what a progress line says of an install is what would be installed.
    #[test]
    fn check_mode_says_what_would_happen() {
        let f = Fixture::photon()
            .unit("containerd.service", "disabled", "inactive")
            .unit("kubelet.service", "enabled", "active");
        let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = progress.clone();
        let rec = std::sync::Arc::new(crate::testing::Recorder::new("fixture"));
        let opts = crate::ctx::Options {
            mode: Mode::Check,
            sink: Some(std::sync::Arc::new(move |e: &crate::ctx::Event| {
                if let crate::ctx::Event::Progress { message, .. } = e {
                    seen.lock().unwrap().push(message.clone());
                }
            })),
            ..crate::ctx::Options::default()
        };
        let mut cx = Ctx::with_state(Box::new(rec.clone()), f.facts, f.state, opts);
        let changes = [
            cx.step("containerd running", |cx| {
                enabled_and_running(cx, "containerd", false)
            }),
            cx.step("kubelet restarted", |cx| restarted(cx, "kubelet")),
            cx.step("kubelet running", |cx| {
                enabled_and_running(cx, "kubelet", true)
            }),
            cx.step("reload", |cx| reloaded(cx, "kubelet")),
            cx.step("packages", |cx| crate::pkg::installed(cx, &["glibc-i18n"])),
        ];
        for c in changes {
            assert_eq!(c.unwrap(), Change::Changed);
        }
        let said: Vec<&str> = cx
            .records()
            .iter()
            .flat_map(|r| r.diffs.iter().map(String::as_str))
            .collect();
        assert_eq!(
            said,
            [
                "would enable and start containerd.service\n",
                "would restart kubelet.service\n",
                "would restart kubelet.service\n",
                "would reload kubelet.service\n",
                "would install: glibc-i18n\n",
            ]
        );
        assert_eq!(*progress.lock().unwrap(), ["would install glibc-i18n"]);
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
    }

    #[test]
    fn unit_names() {
        assert_eq!(super::unit_name("containerd"), "containerd.service");
        assert_eq!(super::unit_name("docker.socket"), "docker.socket");
    }
}
