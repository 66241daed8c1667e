//! The kernel side of a Kubernetes node: swap, sysctl settings, kernel modules. Each comes as a
//! persistent part (a file, applied at boot) and a live part (applied now). Inside a container
//! the kernel belongs to the container's host: the live part is skipped with that reason.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file::{self, Perm};
use crate::reads::Reads;

pub const FSTAB: &str = "/etc/fstab";
pub const SWAPS: &str = "/proc/swaps";
pub const MODULES: &str = "/proc/modules";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[FSTAB, SWAPS, MODULES]);

/// The directories sysctl settings are read from, in systemd-sysctl's order of precedence
/// (sysctl.d(5)): files of all of them are applied sorted by file name, a name in an earlier
/// directory masking the same name in a later one. `/lib/sysctl.d` is procps' addition
/// (the same directory as `/usr/lib/sysctl.d` on merged-/usr systems).
pub const SYSCTL_DIRS: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
/// Read last by `sysctl --system` (procps), after every sysctl.d file; at boot systemd reads it
/// only through a link in a sysctl.d directory (Debian's `/etc/sysctl.d/99-sysctl.conf`).
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";
/// What judging the value that wins at boot reads: every sysctl file.
pub const SYSCTL_READS: Reads = Reads::files(&[SYSCTL_CONF]).dirs(&SYSCTL_DIRS);

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
    cx.note_done_or_would(
        format!("swap turned off: {}", active.join(", ")),
        format!("would turn swap off: {}", active.join(", ")),
    );
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
    crate::state::Probe {
        files: files.into_iter().collect(),
        ..Default::default()
    }
}

pub fn sysctl_path(key: &str) -> String {
    let mut path = String::with_capacity(10 + key.len());
    path.push_str("/proc/sys/");
    for (i, part) in key.split('.').enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(part);
    }
    path
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
        cx.note_done_or_would(
            "sysctl --system: the settings applied again (a sysctl file changed)",
            "sysctl --system: the settings would be applied again (a sysctl file changed)",
        );
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

/// One active `key = value` line of a sysctl file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlLine {
    /// The file, as read (a sysctl.d entry, or /etc/sysctl.conf).
    pub path: String,
    /// The key in dotted form.
    pub key: String,
    pub value: String,
}

/// A key in the dotted form: `net/ipv4/ip_forward` → `net.ipv4.ip_forward` (when the first
/// separator is a slash, dots are part of names and the two swap, as systemd reads it).
/// `None` for a glob (`net.ipv4.conf.*.rp_filter`), which names no single key here.
pub fn sysctl_key(key: &str) -> Option<String> {
    let key = key.trim();
    if key.is_empty() || key.contains(['*', '?', '[']) {
        return None;
    }
    let slash_first = key
        .find('/')
        .is_some_and(|i| key.find('.').is_none_or(|d| i < d));
    Some(if slash_first {
        key.chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect()
    } else {
        key.to_string()
    })
}

/// `net.ipv4.conf.all.forwarding` and `net.ipv4.ip_forward` are one kernel setting.
fn same_key(a: &str, b: &str) -> bool {
    const FORWARD: [&str; 2] = ["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"];
    a == b || (FORWARD.contains(&a) && FORWARD.contains(&b))
}

fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// The active settings of a sysctl file, in order: `key = value` lines; `#` and `;` start
/// comments; a leading `-` (ignore a failure) is dropped; globs are left out.
pub fn parse_sysctl(path: &str, text: &str) -> Vec<SysctlLine> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            Some(SysctlLine {
                path: path.to_string(),
                key: sysctl_key(k.trim().trim_start_matches('-'))?,
                value: v.trim().to_string(),
            })
        })
        .collect()
}

/// The sysctl files in the order they are applied: the `*.conf` files of [`SYSCTL_DIRS`]
/// sorted by name (a name in an earlier directory masking it in later ones), then
/// /etc/sysctl.conf.
pub fn sysctl_files(cx: &mut Ctx) -> Result<Vec<String>> {
    let mut by_name: std::collections::BTreeMap<String, String> = Default::default();
    for dir in SYSCTL_DIRS {
        for name in cx.dir(dir)?.unwrap_or_default() {
            if name.ends_with(".conf") && !name.starts_with('.') {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| format!("{dir}/{name}"));
            }
        }
    }
    let mut files: Vec<String> = by_name.into_values().collect();
    files.push(SYSCTL_CONF.to_string());
    Ok(files)
}

/// Every active setting of every sysctl file, in the order they are applied: for a key, the
/// last one wins.
pub fn sysctl_lines(cx: &mut Ctx) -> Result<Vec<SysctlLine>> {
    let mut out = Vec::new();
    for path in sysctl_files(cx)? {
        if let Some(f) = cx.file(&path)?.filter(|f| !f.is_dir) {
            out.extend(parse_sysctl(&path, &f.text()));
        }
    }
    Ok(out)
}

/// The setting of `key` that wins (the last one applied), if any file sets it.
pub fn sysctl_winner<'a>(lines: &'a [SysctlLine], key: &str) -> Option<&'a SysctlLine> {
    lines.iter().rev().find(|l| same_key(&l.key, key))
}

/// The sysctl step: `settings` persisted in `path` (a file of /etc/sysctl.d) and winning at
/// boot over every other sysctl file (see [`sysctl_not_overridden`]).
pub fn sysctl_persisted(cx: &mut Ctx, path: &str, settings: &[(&str, &str)]) -> Result<Change> {
    let c = sysctl_file(cx, path, settings)?;
    Ok(c | sysctl_not_overridden(cx, path, settings)?)
}

/// No sysctl file applied after `ours` sets one of `settings` to another value. Such a line
/// (Debian's /etc/sysctl.conf, read through `/etc/sysctl.d/99-sysctl.conf`, sorts after
/// `99-kubernetes-cri.conf`; `sysctl --system` reads /etc/sysctl.conf last of all) is commented
/// out, with a note, in that file when it lives under /etc (backed up like every replaced
/// file). A file of /run or /usr (a package's or a runtime one, which must not be edited) is
/// masked the way systemd documents: a copy of the same name in /etc/sysctl.d, its conflicting
/// lines commented out. Renaming our file to sort last would not do: /etc/sysctl.conf comes
/// after every name, and the operator's other settings in the winning file stay as they are.
pub fn sysctl_not_overridden(
    cx: &mut Ctx,
    ours: &str,
    settings: &[(&str, &str)],
) -> Result<Change> {
    let lines = sysctl_lines(cx)?;
    // Walking back from the last setting of each key to ours: every file on the way sets it
    // wrong and must give way.
    let mut losers: Vec<String> = Vec::new();
    for (key, want) in settings {
        for l in lines.iter().rev().filter(|l| same_key(&l.key, key)) {
            if l.path == ours || same_value(&l.value, want) {
                break;
            }
            if !losers.contains(&l.path) {
                losers.push(l.path.clone());
            }
        }
    }
    let mut change = Change::Unchanged;
    let mut done: Vec<String> = Vec::new();
    for path in losers {
        let real = cx.link_target(&path).unwrap_or(&path).to_string();
        let target = if real.starts_with("/etc/") {
            real.clone()
        } else {
            let name = path.rsplit('/').next().unwrap_or(&path);
            format!("{}/{name}", SYSCTL_DIRS[0])
        };
        if done.contains(&target) {
            continue;
        }
        done.push(target.clone());
        if target == real {
            change |= file::edit(cx, &target, None, |old| {
                Ok(overrides_disabled(old.unwrap_or(""), settings, ours))
            })?;
        } else {
            let vendor = cx.file(&real)?.map(|f| f.text()).unwrap_or_default();
            let text = format!(
                "# A copy of {real} that masks it (a file of the same name in /etc/sysctl.d \
                 wins),\n# written by nodeprep: its lines overriding {ours} are commented out.\n{}",
                overrides_disabled(&vendor, settings, ours)
            );
            change |= file::content(cx, &target, &text, Perm::CONFIG)?;
        }
    }
    Ok(change)
}

/// The text with every active line that sets one of `settings` to another value commented
/// out, after a note naming the file that holds the setting.
pub fn overrides_disabled(text: &str, settings: &[(&str, &str)], ours: &str) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let wrong = parse_sysctl("", bare).first().and_then(|l| {
            settings
                .iter()
                .find(|(k, v)| same_key(&l.key, k) && !same_value(&l.value, v))
        });
        match wrong {
            Some((k, v)) => {
                out.push_str(&format!(
                    "# nodeprep: the next line overrode `{k} = {v}` of {ours}, which Kubernetes needs\n#"
                ));
                out.push_str(line);
            }
            None => out.push_str(line),
        }
    }
    out
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
    cx.note_done_or_would(
        format!("loaded (modprobe): {}", missing.join(" ")),
        format!("would load (modprobe): {}", missing.join(" ")),
    );
    Ok(Change::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, plan};
    use expect_test::expect;

    const OURS: &str = "/etc/sysctl.d/99-kubernetes-cri.conf";
    const K8S: [(&str, &str); 3] = [
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ];

    fn text(cx: &mut Ctx, path: &str) -> String {
        cx.file(path).unwrap().map(|f| f.text()).unwrap_or_default()
    }

    #[test]
    fn sysctl_files_parsed() {
        let lines = parse_sysctl(
            "/x.conf",
            "# c\n; c\n-net.ipv4.ip_forward = 1 \nnet/ipv4/conf/eth0.100/forwarding=0\nnet.ipv4.conf.*.rp_filter = 2\nbad line\nkernel.printk = 4  4 1 7\n",
        );
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.eth0/100.forwarding", "0"),
                ("kernel.printk", "4  4 1 7"),
            ]
        );
        assert!(same_key(
            "net.ipv4.conf.all.forwarding",
            "net.ipv4.ip_forward"
        ));
        assert!(same_value("4  4 1 7", "4 4 1 7"));
    }

    /// The order sysctl files are applied in: by name across directories, an /etc name masking
    /// the same name elsewhere, /etc/sysctl.conf last.
    #[test]
    fn sysctl_order() {
        let (mut cx, _) = Fixture::debian()
            .file(
                "/usr/lib/sysctl.d/50-pid-max.conf",
                "kernel.pid_max = 4194304\n",
                0o644,
            )
            .file(
                "/usr/lib/sysctl.d/99-b.conf",
                "net.ipv4.ip_forward = 0\n",
                0o644,
            )
            .file(
                "/lib/sysctl.d/99-b.conf",
                "net.ipv4.ip_forward = 0\n",
                0o644,
            )
            .file("/run/sysctl.d/10-a.conf", "", 0o644)
            .file("/etc/sysctl.d/99-b.conf", "", 0o644)
            .file(
                "/etc/sysctl.d/README.sysctl",
                "net.ipv4.ip_forward = 0\n",
                0o644,
            )
            .file(SYSCTL_CONF, "#net.ipv4.ip_forward=1\n", 0o644)
            .complete()
            .ctx(Mode::Check);
        assert_eq!(
            sysctl_files(&mut cx).unwrap(),
            [
                "/run/sysctl.d/10-a.conf",
                "/usr/lib/sysctl.d/50-pid-max.conf",
                "/etc/sysctl.d/99-b.conf",
                "/etc/sysctl.conf"
            ]
        );
        let lines = sysctl_lines(&mut cx).unwrap();
        assert_eq!(sysctl_winner(&lines, "net.ipv4.ip_forward"), None);
        assert_eq!(
            sysctl_winner(&lines, "kernel.pid_max").map(|l| l.path.as_str()),
            Some("/usr/lib/sysctl.d/50-pid-max.conf")
        );
    }

    /// Debian with `net.ipv4.ip_forward=0` in /etc/sysctl.conf (also read as
    /// /etc/sysctl.d/99-sysctl.conf, which sorts after 99-kubernetes-cri.conf): the line is
    /// commented out in /etc/sysctl.conf itself, the link left alone; a second run changes
    /// nothing.
    #[test]
    fn debian_sysctl_conf_loses() {
        let conf = "# /etc/sysctl.conf - Configuration file for setting system variables\n#net.ipv4.ip_forward=1\nnet.ipv4.ip_forward=0\nkernel.printk = 3 4 1 3\n";
        let (mut cx, _) = Fixture::debian()
            .file(SYSCTL_CONF, conf, 0o644)
            .symlink("/etc/sysctl.d/99-sysctl.conf", SYSCTL_CONF)
            .file(
                "/usr/lib/sysctl.d/50-pid-max.conf",
                "kernel.pid_max = 4194304\n",
                0o644,
            )
            .complete()
            .ctx(Mode::Apply);
        assert!(sysctl_persisted(&mut cx, OURS, &K8S).unwrap().changed());
        expect![[r#"
            write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
            write /etc/sysctl.conf 0644 root:root
        "#]]
        .assert_eq(&plan(&cx));
        expect![[r#"
            # /etc/sysctl.conf - Configuration file for setting system variables
            #net.ipv4.ip_forward=1
            # nodeprep: the next line overrode `net.ipv4.ip_forward = 1` of /etc/sysctl.d/99-kubernetes-cri.conf, which Kubernetes needs
            #net.ipv4.ip_forward=0
            kernel.printk = 3 4 1 3
        "#]]
        .assert_eq(&text(&mut cx, SYSCTL_CONF));
        // The cache follows the write: the link now reads the edited file.
        assert_eq!(
            text(&mut cx, "/etc/sysctl.d/99-sysctl.conf"),
            text(&mut cx, SYSCTL_CONF)
        );
        assert_eq!(
            sysctl_persisted(&mut cx, OURS, &K8S).unwrap(),
            Change::Unchanged
        );
        let mut again = Fixture::debian()
            .file(SYSCTL_CONF, &text(&mut cx, SYSCTL_CONF), 0o644)
            .symlink("/etc/sysctl.d/99-sysctl.conf", SYSCTL_CONF)
            .file(OURS, &render_sysctl(&K8S), 0o644)
            .complete()
            .ctx(Mode::Apply)
            .0;
        assert_eq!(
            sysctl_persisted(&mut again, OURS, &K8S).unwrap(),
            Change::Unchanged
        );
        assert!(again.actions().is_empty());
        let lines = sysctl_lines(&mut again).unwrap();
        assert_eq!(
            sysctl_winner(&lines, "net.ipv4.ip_forward").map(|l| l.path.as_str()),
            Some(OURS)
        );
    }

    /// A package's file (or a runtime one) is never edited: a copy of the same name in
    /// /etc/sysctl.d masks it, its conflicting line commented out, the rest kept. A file sorting
    /// before ours, or setting the right value, is left alone.
    #[test]
    fn vendor_file_masked() {
        let (mut cx, _) = Fixture::photon()
            .file(
                "/usr/lib/sysctl.d/99-zz-tuning.conf",
                "net.core.somaxconn = 4096\nnet.bridge.bridge-nf-call-iptables = 0\n",
                0o644,
            )
            .file(
                "/run/sysctl.d/99-zzz-right.conf",
                "net.ipv4.ip_forward = 1\n",
                0o644,
            )
            .complete()
            .ctx(Mode::Check);
        assert!(sysctl_persisted(&mut cx, OURS, &K8S).unwrap().changed());
        expect![[r#"
            write /etc/sysctl.d/99-kubernetes-cri.conf 0644 root:root
            write /etc/sysctl.d/99-zz-tuning.conf 0644 root:root
        "#]]
        .assert_eq(&plan(&cx));
        expect![[r#"
            # A copy of /usr/lib/sysctl.d/99-zz-tuning.conf that masks it (a file of the same name in /etc/sysctl.d wins),
            # written by nodeprep: its lines overriding /etc/sysctl.d/99-kubernetes-cri.conf are commented out.
            net.core.somaxconn = 4096
            # nodeprep: the next line overrode `net.bridge.bridge-nf-call-iptables = 1` of /etc/sysctl.d/99-kubernetes-cri.conf, which Kubernetes needs
            #net.bridge.bridge-nf-call-iptables = 0
        "#]]
        .assert_eq(&text(&mut cx, "/etc/sysctl.d/99-zz-tuning.conf"));
        // Photon's 50-security-hardening.conf (ip_forward = 0) sorts before ours: untouched.
        assert!(
            text(&mut cx, "/etc/sysctl.d/50-security-hardening.conf")
                .contains("\nnet.ipv4.ip_forward = 0\n")
        );
        let lines = sysctl_lines(&mut cx).unwrap();
        for (k, v) in K8S {
            assert_eq!(
                sysctl_winner(&lines, k).map(|l| l.value.as_str()),
                Some(v),
                "{k}"
            );
        }
    }

    #[test]
    fn swaps_parsed() {
        let s = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t1048572\t\t0\t\t-2\n/dev/dm-1 partition 2 0 -3\n";
        assert_eq!(active_swaps(s), vec!["/swapfile", "/dev/dm-1"]);
        assert!(active_swaps("Filename Type Size Used Priority\n").is_empty());
    }

    /// Live kernel changes say what they did (in check mode, what they would do): the modules
    /// loaded, the values moved.
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
        assert_eq!(
            cx.records()[0].diffs,
            ["would load (modprobe): br_netfilter\n"]
        );
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
        for key in ["vm", "a..b", ".x", "x.", ""] {
            assert_eq!(
                sysctl_path(key),
                format!("/proc/sys/{}", key.replace('.', "/"))
            );
        }
    }
}
