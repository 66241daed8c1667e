//! systemd units: enabled, started, restarted, reloaded, daemon-reload. States come from the
//! probe's `systemctl list-unit-files` and `list-units`, refreshed after package installs.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::state::UnitState;

/// `name` with `.service` appended when it has no unit suffix.
pub fn unit_name(name: &str) -> String {
    const SUFFIXES: [&str; 8] = [".service", ".socket", ".timer", ".target", ".mount", ".path", ".slice", ".scope"];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) { name.to_string() } else { format!("{name}.service") }
}

/// The unit's state as systemd reports it (empty fields: unknown unit).
pub fn unit(cx: &mut Ctx, name: &str) -> Result<UnitState> {
    if cx.state().facts.get("units-stale").is_some_and(|v| v == "yes") && !cx.check_mode() {
        refresh(cx)?;
    }
    Ok(cx.state().units.get(&unit_name(name)).cloned().unwrap_or_default())
}

fn refresh(cx: &mut Ctx) -> Result<()> {
    let out = cx.query(&[
        "sh",
        "-c",
        "systemctl list-unit-files --no-legend --no-pager --plain; echo @@units; systemctl list-units --all --no-legend --no-pager --plain",
    ])?;
    let text = out.stdout_str();
    let (files, units) = text.split_once("@@units").unwrap_or((&text, ""));
    let state = cx.state_mut();
    state.units.clear();
    for line in files.lines() {
        let mut it = line.split_whitespace();
        if let (Some(u), Some(en)) = (it.next(), it.next()) {
            state.units.entry(u.to_string()).or_default().enablement = en.to_string();
        }
    }
    for line in units.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 3 {
            state.units.entry(w[0].to_string()).or_default().active = w[2].to_string();
        }
    }
    state.facts.remove("units-stale");
    Ok(())
}

fn require_systemd(cx: &Ctx) -> Result<()> {
    if cx.facts().systemd {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Unsupported, "systemd is not running on this host (PID 1 is something else)"))
    }
}

/// The unit is enabled at boot.
pub fn enabled(cx: &mut Ctx, name: &str) -> Result<Change> {
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    let u = unit(cx, &unit_name)?;
    if matches!(u.enablement.as_str(), "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated") {
        return Ok(Change::Unchanged);
    }
    if u.enablement == "masked" {
        return Err(Error::new(ErrorKind::Invalid, format!("{unit_name} is masked; unmask it first (systemctl unmask {unit_name})")));
    }
    cx.apply(&["systemctl", "enable", &unit_name])?;
    cx.state_mut().units.entry(unit_name).or_default().enablement = "enabled".into();
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
    cx.state_mut().units.entry(unit_name).or_default().active = "active".into();
    Ok(Change::Changed)
}

/// Restarts the unit (a handler: call it when its configuration changed).
pub fn restarted(cx: &mut Ctx, name: &str) -> Result<Change> {
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    cx.apply(&["systemctl", "restart", &unit_name])?;
    cx.state_mut().units.entry(unit_name).or_default().active = "active".into();
    Ok(Change::Changed)
}

/// Reloads the unit, or starts it when it is not running.
pub fn reloaded(cx: &mut Ctx, name: &str) -> Result<Change> {
    require_systemd(cx)?;
    let unit_name = unit_name(name);
    cx.apply(&["systemctl", "reload-or-restart", &unit_name])?;
    cx.state_mut().units.entry(unit_name).or_default().active = "active".into();
    Ok(Change::Changed)
}

/// `systemctl daemon-reload` (a handler: call it when a unit file changed).
pub fn daemon_reload(cx: &mut Ctx) -> Result<Change> {
    require_systemd(cx)?;
    cx.apply(&["systemctl", "daemon-reload"])?;
    cx.state_mut().facts.insert("units-stale".into(), "yes".into());
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
