//! Time synchronisation against the site's NTP servers.
//!
//! Photon and Debian use systemd-timesyncd: `NTP=` in the `[Time]` section of
//! /etc/systemd/timesyncd.conf (Debian 12 ships timesyncd as its own package, installed when
//! missing). RHEL-like hosts have no timesyncd; there chronyd gets `server NAME iburst` lines in
//! /etc/chrony.conf.
//!
//! The roles' steps: "time service installed" ([`timesync_installed`]), "time servers"
//! ([`ntp_servers`]), "time service enabled" ([`timesync_enabled`]) and the handler "time
//! service restarted" ([`timesync_restarted`], when "time servers" changed). Inside a container both daemons are
//! condition-skipped by systemd (timesyncd: `ConditionVirtualization=!container`; chronyd:
//! `ConditionCapability=CAP_SYS_TIME`): `systemctl restart` then exits 0 and leaves the unit
//! inactive, so the live part is reported skipped, never as a change that happened.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::file;
use crate::pkg;
use crate::reads::Reads;
use crate::state::ActiveState;
use crate::systemd;

pub const TIMESYNCD_CONF: &str = "/etc/systemd/timesyncd.conf";
pub const CHRONY_CONF: &str = "/etc/chrony.conf";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[TIMESYNCD_CONF, CHRONY_CONF])
    .units(&["systemd-timesyncd.service", "chronyd.service"]);

/// The daemon that synchronises the clock on this OS family.
pub fn service(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Photon | OsFamily::Debian => "systemd-timesyncd.service",
        OsFamily::Rhel => "chronyd.service",
    }
}

/// Packages that provide another time daemon on Debian; installing systemd-timesyncd would
/// remove them (they conflict through `time-daemon`).
const DEBIAN_TIME_DAEMONS: [&str; 4] = ["chrony", "ntp", "ntpsec", "openntpd"];

/// The time daemon's package this host lacks, for the plan's one transaction: `chrony` on RHEL,
/// `systemd-timesyncd` on Debian unless another time daemon is installed (then
/// [`timesync_installed`] refuses, and nothing is installed); none on Photon, whose systemd
/// carries timesyncd.
pub fn packages(cx: &mut Ctx) -> Result<Vec<String>> {
    Ok(match cx.facts().os {
        OsFamily::Photon => Vec::new(),
        OsFamily::Rhel => vec!["chrony".into()],
        OsFamily::Debian => {
            if other_time_daemons(cx)?.is_empty() {
                vec!["systemd-timesyncd".into()]
            } else {
                Vec::new()
            }
        }
    })
}

/// The other time daemons installed on a Debian host without systemd-timesyncd.
fn other_time_daemons(cx: &mut Ctx) -> Result<Vec<&'static str>> {
    if pkg::is_installed(cx, "systemd-timesyncd")? {
        return Ok(Vec::new());
    }
    let mut other = Vec::new();
    for p in DEBIAN_TIME_DAEMONS {
        if pkg::is_installed(cx, p)? {
            other.push(p);
        }
    }
    Ok(other)
}

/// The time daemon is installed: `systemd-timesyncd` on Debian (refused, with the reason, when
/// another time daemon is installed: apt would remove it), `chrony` on RHEL. Photon's systemd
/// carries timesyncd.
pub fn timesync_installed(cx: &mut Ctx) -> Result<Change> {
    match cx.facts().os {
        OsFamily::Photon => Ok(Change::Unchanged),
        OsFamily::Rhel => pkg::installed(cx, &["chrony"]),
        OsFamily::Debian => {
            let other = other_time_daemons(cx)?;
            if !other.is_empty() {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{} is installed and synchronises the clock; installing systemd-timesyncd would remove it. \
                         Remove it first (apt-get purge {}) or leave this step out",
                        other.join(", "),
                        other.join(" ")
                    ),
                ));
            }
            let new = !pkg::is_installed(cx, "systemd-timesyncd")?;
            let c = pkg::installed(cx, &["systemd-timesyncd"])?;
            if new && !cx.check_mode() {
                // The package ships the configuration file the probe saw absent (installed
                // by the run's one transaction, the host was read again after it).
                cx.forget(&[TIMESYNCD_CONF]);
            }
            Ok(c)
        }
    }
}

/// A server name or address: no spaces, nothing a configuration line could be broken with.
pub fn validate_servers(servers: &[String]) -> Result<()> {
    if servers.is_empty() {
        return Err(Error::invalid("no NTP server given"));
    }
    for s in servers {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
            && !s.starts_with('-');
        if !ok {
            return Err(Error::invalid(format!(
                "invalid NTP server {s:?}: expected a host name or an address"
            )));
        }
    }
    Ok(())
}

/// Step "time servers": the daemon is installed ([`timesync_installed`]) and uses `servers`
/// (`NTP=a b` in timesyncd.conf; `server a iburst` lines in chrony.conf). Changed when the
/// configuration changed: the caller then runs [`timesync_restarted`].
pub fn ntp_servers(cx: &mut Ctx, servers: &[String]) -> Result<Change> {
    validate_servers(servers)?;
    let installed = timesync_installed(cx)?;
    let config = match cx.facts().os {
        OsFamily::Photon | OsFamily::Debian => {
            file::ini_key(cx, TIMESYNCD_CONF, "Time", "NTP", &servers.join(" "), None)?
        }
        OsFamily::Rhel => file::edit(cx, CHRONY_CONF, None, |old| {
            Ok(with_chrony_servers(old.unwrap_or(""), servers))
        })?,
    };
    Ok(installed | config)
}

/// chrony.conf with exactly `servers` as `server NAME iburst` lines: other active `server` and
/// `pool` lines are commented out (kept for reference), ours go where the first one was (or at
/// the end). Everything else is kept.
pub fn with_chrony_servers(text: &str, servers: &[String]) -> String {
    let ours: Vec<String> = servers
        .iter()
        .map(|s| format!("server {s} iburst"))
        .collect();
    let source = |l: &str| matches!(l.split_whitespace().next(), Some("server" | "pool"));
    let active: Vec<&str> = text
        .lines()
        .filter(|l| source(l.trim_start()))
        .map(str::trim)
        .collect();
    if active == ours.iter().map(String::as_str).collect::<Vec<_>>() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut placed = false;
    for line in text.split_inclusive('\n') {
        if source(line.trim_start()) {
            if !placed {
                for o in &ours {
                    out.push_str(o);
                    out.push('\n');
                }
                placed = true;
            }
            if !ours.iter().any(|o| o == line.trim()) {
                out.push_str("# ");
                out.push_str(line);
            }
        } else {
            out.push_str(line);
        }
    }
    if !placed {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for o in &ours {
            out.push_str(o);
            out.push('\n');
        }
    }
    out
}

fn container_reason(cx: &Ctx) -> Option<String> {
    let unit = service(cx.facts().os);
    cx.facts().container.as_ref().map(|c| {
        format!("inside a container ({c}) the clock belongs to the container's host: systemd does not start {unit} there")
    })
}

/// Step "time service enabled": the daemon is enabled at boot and running. Inside a container it
/// is only enabled (it cannot run there: reported skipped when it is not running).
pub fn timesync_enabled(cx: &mut Ctx) -> Result<Change> {
    let unit = service(cx.facts().os);
    if !systemd::unit(cx, unit)?.enablement.is_found() && !cx.check_mode() {
        // (In check mode the install planned by "time service installed" did not happen.)
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{unit} is not installed on this host: the \"time service installed\" step installs it, run it first (not --skip it)"
            ),
        ));
    }
    let enabled = systemd::enabled(cx, unit)?;
    if let Some(reason) = container_reason(cx) {
        if systemd::unit(cx, unit)?.active == ActiveState::Active {
            return Ok(enabled);
        }
        return Ok(enabled | Change::Skipped(reason));
    }
    Ok(enabled | systemd::started(cx, unit)?)
}

/// Handler: restarts the daemon when its configuration `changed`, then checks that it runs (a
/// restart whose start condition is unmet exits 0 and leaves the unit inactive: reported
/// skipped, with the reason).
pub fn timesync_restarted(cx: &mut Ctx, changed: bool) -> Result<Change> {
    if !changed {
        return Ok(Change::Unchanged);
    }
    if let Some(reason) = container_reason(cx) {
        return Ok(Change::Skipped(reason));
    }
    let unit = service(cx.facts().os);
    let c = systemd::restarted(cx, unit)?;
    if cx.check_mode() {
        return Ok(c);
    }
    let state = systemd::active_now(cx, unit)?;
    if state == ActiveState::Active {
        return Ok(c);
    }
    Ok(Change::Skipped(format!(
        "{unit} is {} after its restart: a start condition of the unit is not met (see `systemctl status {unit}`)",
        if state == ActiveState::Unknown {
            "not running"
        } else {
            state.as_str()
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, actions as strings, assert_sent_nothing};
    use expect_test::expect;

    fn servers() -> Vec<String> {
        vec!["ntp1.lan".into(), "192.168.10.1".into()]
    }

    fn active() -> Output {
        Output {
            status: Some(0),
            stdout: b"active\n".to_vec(),
            stderr: Vec::new(),
        }
    }

    const CHRONY: &str = "# Use public servers from the pool.ntp.org project.\npool 2.rocky.pool.ntp.org iburst\n\n# Record the rate\ndriftfile /var/lib/chrony/drift\n";

    #[test]
    fn chrony_rendered() {
        let out = with_chrony_servers(CHRONY, &servers());
        expect![[r#"
            # Use public servers from the pool.ntp.org project.
            server ntp1.lan iburst
            server 192.168.10.1 iburst
            # pool 2.rocky.pool.ntp.org iburst

            # Record the rate
            driftfile /var/lib/chrony/drift
        "#]]
        .assert_eq(&out);
        assert_eq!(with_chrony_servers(&out, &servers()), out);
        assert_eq!(
            with_chrony_servers("driftfile x", &servers()[..1]),
            "driftfile x\nserver ntp1.lan iburst\n"
        );
    }

    #[test]
    fn servers_validated() {
        assert!(validate_servers(&servers()).is_ok());
        assert!(validate_servers(&[]).is_err());
        assert!(validate_servers(&["a b".into()]).is_err());
        assert!(validate_servers(&["x\nFallbackNTP=evil".into()]).is_err());
    }

    /// A timesyncd.conf with every key commented out, as systemd ships it (the file is not
    /// among the recorded Photon files).
    #[test]
    fn photon_plan_and_handler() {
        let (mut cx, rec) = Fixture::photon()
            .file(TIMESYNCD_CONF, "[Time]\n#NTP=\n#FallbackNTP=\n", 0o644)
            .ctx(Mode::Apply);
        rec.reply("systemctl is-active", active());
        let c = ntp_servers(&mut cx, &servers()).unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(timesync_enabled(&mut cx).unwrap(), Change::Unchanged);
        assert_eq!(
            timesync_restarted(&mut cx, c.changed()).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "write /etc/systemd/timesyncd.conf 0644 root:root",
                "run systemctl restart systemd-timesyncd.service",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        let conf = cx.file(TIMESYNCD_CONF).unwrap().unwrap().text();
        expect![[r#"
            [Time]
            #NTP=
            NTP=ntp1.lan 192.168.10.1
            #FallbackNTP=
        "#]]
        .assert_eq(&conf);
    }

    #[test]
    fn photon_no_change() {
        let (mut cx, rec) = Fixture::photon()
            .file(
                TIMESYNCD_CONF,
                "[Time]\n#NTP=\nNTP=ntp1.lan 192.168.10.1\n#FallbackNTP=\n",
                0o644,
            )
            .ctx(Mode::Apply);
        let c = ntp_servers(&mut cx, &servers()).unwrap();
        assert_eq!(c, Change::Unchanged);
        assert_eq!(timesync_enabled(&mut cx).unwrap(), Change::Unchanged);
        assert_eq!(
            timesync_restarted(&mut cx, c.changed()).unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty());
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn debian_installs_timesyncd_check_mode() {
        let (mut cx, rec) = Fixture::debian().absent(TIMESYNCD_CONF).ctx(Mode::Check);
        let c = ntp_servers(&mut cx, &servers()).unwrap();
        assert_eq!(
            timesync_restarted(&mut cx, c.changed()).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "run apt-get update -q -o DPkg::Lock::Timeout=120",
                "run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=120 systemd-timesyncd",
                "write /etc/systemd/timesyncd.conf 0644 root:root",
                "run systemctl restart systemd-timesyncd.service",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert_sent_nothing(&rec);
    }

    #[test]
    fn debian_with_chrony_refused() {
        let (mut cx, _rec) = Fixture::debian()
            .packages(&[("chrony", "4.3-2+deb12u1")])
            .ctx(Mode::Apply);
        let err = ntp_servers(&mut cx, &servers()).unwrap_err();
        assert!(err.message().contains("chrony is installed"), "{err}");
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn rhel_uses_chrony() {
        let (mut cx, rec) = Fixture::rhel()
            .packages(&[("chrony", "4.5-1.el9")])
            .file(CHRONY_CONF, CHRONY, 0o644)
            .unit("chronyd.service", "enabled", "active")
            .ctx(Mode::Apply);
        rec.reply("systemctl is-active", active());
        let c = ntp_servers(&mut cx, &servers()).unwrap();
        assert_eq!(timesync_enabled(&mut cx).unwrap(), Change::Unchanged);
        assert_eq!(
            timesync_restarted(&mut cx, c.changed()).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "write /etc/chrony.conf 0644 root:root",
                "run systemctl restart chronyd.service",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
    }

    #[test]
    fn container_skips_the_live_part() {
        let (mut cx, _rec) = Fixture::debian()
            .packages(&[("systemd-timesyncd", "252.33-1~deb12u1")])
            .unit("systemd-timesyncd.service", "enabled", "inactive")
            .in_container()
            .ctx(Mode::Apply);
        let c = ntp_servers(&mut cx, &servers()).unwrap();
        assert!(c.changed());
        assert!(
            matches!(timesync_enabled(&mut cx).unwrap(), Change::Skipped(r) if r.contains("container"))
        );
        assert!(
            matches!(timesync_restarted(&mut cx, true).unwrap(), Change::Skipped(r) if r.contains("container"))
        );
        let plan = strings(&cx);
        assert_eq!(plan, ["write /etc/systemd/timesyncd.conf 0644 root:root"]);
    }

    #[test]
    fn not_installed_is_a_clear_error() {
        let (mut cx, _rec) = Fixture::debian()
            .unit("systemd-timesyncd.service", "", "")
            .ctx(Mode::Apply);
        let err = timesync_enabled(&mut cx).unwrap_err();
        assert!(err.message().contains("not installed"), "{err}");
        assert!(cx.actions().is_empty());
        let (mut cx, _rec) = Fixture::debian()
            .unit("systemd-timesyncd.service", "", "")
            .ctx(Mode::Check);
        assert_eq!(timesync_enabled(&mut cx).unwrap(), Change::Changed);
    }

    #[test]
    fn unmet_condition_reported() {
        // Not detected as a container, yet systemd skips the unit: restart exits 0, the unit
        // stays inactive.
        let (mut cx, rec) = Fixture::photon().ctx(Mode::Apply);
        rec.reply(
            "systemctl is-active",
            Output {
                status: Some(3),
                stdout: b"inactive\n".to_vec(),
                stderr: Vec::new(),
            },
        );
        let c = timesync_restarted(&mut cx, true).unwrap();
        assert!(
            matches!(&c, Change::Skipped(r) if r.contains("is inactive after its restart")),
            "{c:?}"
        );
    }
}
