//! The kernel side of a Kubernetes node: swap, sysctl settings, kernel modules. Each comes as a
//! persistent part (a file, applied at boot) and a live part (applied now). Inside a container
//! the kernel belongs to the container's host: the live part is skipped with that reason.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file::{self, Perm};
use crate::plan::Reads;

pub const FSTAB: &str = "/etc/fstab";
pub const SWAPS: &str = "/proc/swaps";
pub const MODULES: &str = "/proc/modules";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[FSTAB, SWAPS, MODULES]);

fn container_reason(cx: &Ctx, what: &str) -> Option<String> {
    cx.facts().container.as_ref().map(|c| {
        format!("inside a container ({c}) the kernel belongs to the container's host: {what}")
    })
}

/// Active swap areas, from /proc/swaps.
pub fn active_swaps(swaps: &str) -> Vec<String> {
    swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| p.replace("\\040", " "))
        .collect()
}

/// No swap is active: `swapoff` each active area.
pub fn swap_off(cx: &mut Ctx) -> Result<Change> {
    let swaps = cx.file(SWAPS)?.map(|f| f.text()).unwrap_or_default();
    let active = active_swaps(&swaps);
    if active.is_empty() {
        return Ok(Change::Unchanged);
    }
    if let Some(reason) = container_reason(cx, &format!("cannot turn off {}", active.join(", "))) {
        return Ok(Change::Skipped(reason));
    }
    for area in &active {
        cx.apply(&["swapoff", area])?;
    }
    cx.known(SWAPS, "Filename\tType\tSize\tUsed\tPriority\n");
    cx.note_change(format!("swap turned off: {}", active.join(", ")));
    Ok(Change::Changed)
}

/// No active swap line in /etc/fstab (they are commented out, not deleted).
pub fn fstab_swap_disabled(cx: &mut Ctx) -> Result<Change> {
    file::lines_commented(cx, FSTAB, is_swap_entry)
}

/// An fstab entry of type swap.
pub fn is_swap_entry(line: &str) -> bool {
    line.split_whitespace().nth(2) == Some("swap")
}

/// The live kernel state of these modules and sysctl keys (`/sys/module/M`,
/// `/proc/sys/...`): what the module and sysctl steps compare against.
pub fn live_reads(modules: &[&str], sysctls: &[(&str, &str)]) -> crate::state::Probe {
    let mut files: Vec<String> = modules.iter().map(|m| format!("/sys/module/{m}")).collect();
    files.extend(sysctls.iter().map(|(k, _)| sysctl_path(k)));
    crate::state::Probe::default().files(&files)
}

pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Renders a sysctl.d file.
pub fn render_sysctl(settings: &[(&str, &str)]) -> String {
    let mut s = String::from("# Managed by nodeprep.\n");
    for (k, v) in settings {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// The settings are persisted in `path` (a file of /etc/sysctl.d).
pub fn sysctl_file(cx: &mut Ctx, path: &str, settings: &[(&str, &str)]) -> Result<Change> {
    file::content(cx, path, &render_sysctl(settings), Perm::CONFIG)
}

/// The live kernel has the settings: `sysctl --system` when any differs (or `force`, when a
/// sysctl file just changed). Keys that do not exist yet (a module not loaded) count as
/// different.
pub fn sysctl_applied(cx: &mut Ctx, settings: &[(&str, &str)], force: bool) -> Result<Change> {
    let mut differ = Vec::new();
    let mut moves = Vec::new();
    for (k, v) in settings {
        let live = cx
            .file(&sysctl_path(k))?
            .map(|f| f.text().trim().to_string());
        if live.as_deref() != Some(*v) {
            let live = live.unwrap_or_else(|| "(absent)".into());
            moves.push(format!("{k} {live} -> {v}"));
            differ.push(format!("{k}={live}"));
        }
    }
    if differ.is_empty() && (!force || cx.facts().in_container()) {
        // In a container the live values are the host's: when they are right already, a
        // changed file has nothing to apply here.
        return Ok(Change::Unchanged);
    }
    if let Some(reason) = container_reason(
        cx,
        &format!("live values left as they are ({})", differ.join(", ")),
    ) {
        return Ok(Change::Skipped(reason));
    }
    cx.apply(&["sysctl", "--system"])?;
    for (k, v) in settings {
        cx.known(&sysctl_path(k), &format!("{v}\n"));
    }
    if moves.is_empty() {
        cx.note_change("sysctl --system: the settings applied again (a sysctl file changed)");
    } else {
        cx.note_change(format!(
            "live sysctl (sysctl --system): {}",
            moves.join(", ")
        ));
    }
    if differ.is_empty() {
        Ok(Change::Changed)
    } else {
        verify_sysctl(cx, settings)
    }
}

/// After `sysctl --system`, read the keys back: a later file overriding ours would leave them
/// wrong, and that must fail loudly.
fn verify_sysctl(cx: &mut Ctx, settings: &[(&str, &str)]) -> Result<Change> {
    if cx.check_mode() {
        return Ok(Change::Changed);
    }
    let paths: Vec<String> = settings.iter().map(|(k, _)| sysctl_path(k)).collect();
    let mut argv = vec!["cat"];
    argv.extend(paths.iter().map(String::as_str));
    let out = cx.query(&argv)?;
    let text = out.stdout_str();
    let got: Vec<&str> = text.lines().collect();
    let wrong: Vec<String> = settings
        .iter()
        .enumerate()
        .filter(|(i, (_, v))| got.get(*i).map(|g| g.trim()) != Some(*v))
        .map(|(i, (k, v))| {
            format!(
                "{k} is {} (want {v})",
                got.get(i).copied().unwrap_or("absent")
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(Change::Changed)
    } else {
        Err(Error::new(
            ErrorKind::Command,
            format!(
                "after `sysctl --system`: {}; a later file in /etc/sysctl.d or /run/sysctl.d overrides it",
                wrong.join(", ")
            ),
        ))
    }
}

/// The modules are listed in `path` (a file of /etc/modules-load.d), loaded at boot.
pub fn modules_file(cx: &mut Ctx, path: &str, modules: &[&str]) -> Result<Change> {
    let mut s = String::from("# Managed by nodeprep.\n");
    for m in modules {
        s.push_str(m);
        s.push('\n');
    }
    file::content(cx, path, &s, Perm::CONFIG)
}

/// The modules are loaded now (or built in): `modprobe` those that are not.
pub fn modules_loaded(cx: &mut Ctx, modules: &[&str]) -> Result<Change> {
    let mut missing = Vec::new();
    for m in modules {
        let loaded = cx.file(&format!("/sys/module/{m}"))?.is_some();
        if !loaded {
            missing.push(*m);
        }
    }
    if missing.is_empty() {
        return Ok(Change::Unchanged);
    }
    if let Some(reason) = container_reason(cx, &format!("cannot load {}", missing.join(", "))) {
        return Ok(Change::Skipped(reason));
    }
    for m in &missing {
        cx.apply(&["modprobe", m])?;
        cx.known_dir(&format!("/sys/module/{m}"), 0o755, "root", "root");
    }
    cx.note_change(format!("loaded (modprobe): {}", missing.join(" ")));
    Ok(Change::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_parsed() {
        let s = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t1048572\t\t0\t\t-2\n/dev/dm-1 partition 2 0 -3\n";
        assert_eq!(active_swaps(s), vec!["/swapfile", "/dev/dm-1"]);
        assert!(active_swaps("Filename Type Size Used Priority\n").is_empty());
    }

    /// Live kernel changes say what they did: the modules loaded, the values moved.
    #[test]
    fn live_changes_are_said() {
        use crate::ctx::Mode;
        use crate::testing::Fixture;
        let (mut cx, _rec) = Fixture::photon().ctx(Mode::Check);
        let c = cx
            .step("modules loaded", |cx| {
                modules_loaded(cx, &["overlay", "br_netfilter"])
            })
            .unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(cx.records()[0].diffs, ["loaded (modprobe): br_netfilter\n"]);
        let c = cx
            .step("sysctl applied", |cx| {
                sysctl_applied(cx, &[("net.ipv4.ip_forward", "1")], false)
            })
            .unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(
            cx.records()[1].diffs,
            ["live sysctl (sysctl --system): net.ipv4.ip_forward 0 -> 1\n"]
        );
    }

    #[test]
    fn sysctl_rendered() {
        assert_eq!(
            render_sysctl(&[("net.ipv4.ip_forward", "1")]),
            "# Managed by nodeprep.\nnet.ipv4.ip_forward = 1\n"
        );
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
    }
}
