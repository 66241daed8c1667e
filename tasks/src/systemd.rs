//! systemd units: enabled, started, restarted, reloaded, daemon-reload. States come from the
//! probe (`systemctl show` of the units tasks manage), read again after package installs.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::state::{self, UnitState};

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
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    let u = unit(cx, &unit_name)?;
    if matches!(
        u.enablement.as_str(),
        "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated"
    ) {
        return Ok(Change::Unchanged);
    }
    if u.enablement == "masked" {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("{unit_name} is masked; unmask it first (systemctl unmask {unit_name})"),
        ));
    }
    cx.apply(&["systemctl", "enable", &unit_name])?;
    cx.units_mut().entry(unit_name).or_default().enablement = "enabled".into();
    Ok(Change::Changed)
}

/// The unit is running.
pub fn started(cx: &mut Ctx, name: &str) -> Result<Change> {
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    if unit(cx, &unit_name)?.active == "active" {
        return Ok(Change::Unchanged);
    }
    cx.apply(&["systemctl", "start", &unit_name])?;
    set_active(cx, &unit_name, "active");
    Ok(Change::Changed)
}

/// The service is enabled at boot and running; a running one is restarted when
/// `config_changed` (a stopped one just starts with the new configuration). Inside a container
/// some daemons cannot run: a failed start there is a skip with the reason, not a failure.
pub fn enabled_and_running(cx: &mut Ctx, name: &str, config_changed: bool) -> Result<Change> {
    let unit_name = unit_name(name);
    let enabled = enabled(cx, &unit_name)?;
    let running = unit(cx, &unit_name)?.active == "active";
    let started = if !running {
        started(cx, &unit_name)
    } else if config_changed {
        restarted(cx, &unit_name)
    } else {
        Ok(Change::Unchanged)
    };
    match started {
        Ok(c) => Ok(enabled | c),
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
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    cx.apply(&["systemctl", "restart", &unit_name])?;
    set_active(cx, &unit_name, "active");
    Ok(Change::Changed)
}

/// Reloads the unit, or starts it when it is not running.
pub fn reloaded(cx: &mut Ctx, name: &str) -> Result<Change> {
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    cx.apply(&["systemctl", "reload-or-restart", &unit_name])?;
    set_active(cx, &unit_name, "active");
    Ok(Change::Changed)
}

fn set_active(cx: &mut Ctx, unit_name: &str, state: &str) {
    cx.units_mut()
        .entry(unit_name.to_string())
        .or_default()
        .active = state.into();
}

/// Whether the unit runs, asked now (`systemctl is-active`, one round trip): after a restart
/// whose start condition is unmet, systemd exits 0 and leaves the unit inactive. The answer
/// (`active`, `inactive`, `failed`...) is kept as the unit's state.
pub fn active_now(cx: &mut Ctx, name: &str) -> Result<String> {
    let unit_name = unit_name(name);
    let out = cx.query(&["systemctl", "is-active", &unit_name])?;
    let state = out.stdout_str().trim().to_string();
    set_active(cx, &unit_name, &state);
    Ok(state)
}

/// `systemctl daemon-reload` (a handler: call it when a unit file changed); unit states are
/// read again afterwards.
pub fn daemon_reload(cx: &mut Ctx) -> Result<Change> {
    require_systemd(cx)?;
    cx.apply(&["systemctl", "daemon-reload"])?;
    cx.units_changed();
    Ok(Change::Changed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_names() {
        assert_eq!(super::unit_name("containerd"), "containerd.service");
        assert_eq!(super::unit_name("docker.socket"), "docker.socket");
    }
}
