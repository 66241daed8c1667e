//! What a host looks like to a playbook, taken before and after a run that must change
//! nothing: every file and directory the playbook's plan declares it reads (hash, mode, owner;
//! the files the steps write are among them, since a step reads what it writes), each unit it
//! reads (its `InvocationID`, `ActiveEnterTimestamp` and `MainPID`: a restart or a reload that
//! re-executes changes them; of a unit not active, which systemd itself may be restarting in a
//! loop, only its state), the installed packages, and the firewall's live rules. The list of
//! files and units comes from the product's own declaration (`Plan::probe`), not a list kept
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tasks::{Facts, OsFamily, Plan, Selection};

use crate::Testbed;

/// A host's state as a playbook sees it: one entry per file, directory, unit, the package list
/// and the firewall rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    host: String,
    entries: BTreeMap<String, String>,
}

impl Snapshot {
    /// The entries that differ from `after`'s, one line each (`before` → `after`).
    pub fn changes(&self, after: &Snapshot) -> Vec<String> {
        let keys: BTreeSet<&String> = self.entries.keys().chain(after.entries.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let (b, a) = (self.entries.get(k), after.entries.get(k));
                (b != a).then(|| format!("{k}:\n  before: {b:?}\n  after:  {a:?}"))
            })
            .collect()
    }

    /// Panics, naming every difference, unless `after` is the same host state.
    pub fn assert_same(&self, after: &Snapshot, what: &str) {
        let changes = self.changes(after);
        assert!(
            changes.is_empty(),
            "{what}: {} changed on the host although the run reported no change:\n{}",
            self.host,
            changes.join("\n")
        );
    }

    /// The entry for a file, directory or unit (`file PATH`, `unit NAME`), if taken.
    pub fn entry(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The names of the entries taken.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// The OS family of `host`, from its /etc/os-release read as the runner reads it.
pub fn os_family(bed: &dyn Testbed, host: &str) -> OsFamily {
    let text = bed
        .read_file(host, "/etc/os-release")
        .unwrap_or_else(|| panic!("{host}: no /etc/os-release"));
    Facts::from_os_release(&text)
        .unwrap_or_else(|e| panic!("{host}: {e}"))
        .os
}

/// A shell command listing every installed package with its version, sorted.
pub fn package_list(os: OsFamily) -> &'static str {
    match os {
        OsFamily::Debian => "dpkg-query -W | sort",
        OsFamily::Photon | OsFamily::Rhel => "rpm -qa | sort",
    }
}

/// What playbook `playbook` reads on `host` of the inventory at `inventory`, all its steps:
/// the probe its plan declares.
pub fn declared_reads(inventory: &Path, playbook: &str, host: &str) -> tasks::state::Probe {
    let registry = playbooks::Registry::default();
    let pb = registry
        .find(playbook)
        .unwrap_or_else(|| panic!("no playbook {playbook:?}"));
    let inv = playbooks::Inventory::load(inventory)
        .unwrap_or_else(|e| panic!("{}: {e}", inventory.display()));
    let target = inv
        .target(host)
        .unwrap_or_else(|| panic!("no host {host} in {}", inventory.display()));
    let mut plan = Plan::new();
    pb.plan(target, &mut plan)
        .unwrap_or_else(|e| panic!("planning {playbook} for {host}: {e}"));
    plan.probe(&Selection::new::<&str>(&[], &[]))
}

/// Live kernel state under /proc that is not the host's settings (counts, addresses): left out.
/// The sysctls (/proc/sys) are kept.
fn live(path: &str) -> bool {
    path.starts_with("/proc/") && !path.starts_with("/proc/sys/")
}

/// For each argument: `PATH absent`, or `PATH MODE OWNER:GROUP TYPE [SHA256]` (a hash for
/// regular files). Arguments `-d DIR` list DIR's entries first (the probe reads every regular
/// file of a directory it lists).
const STAT_SCRIPT: &str = r#"
one() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        line=$(stat -c '%n %a %U:%G %F' "$1")
        if [ -f "$1" ] && [ ! -L "$1" ]; then
            line="$line $(sha256sum < "$1" | cut -c1-64)"
        fi
        echo "$line"
    else
        echo "$1 absent"
    fi
}
while [ $# -gt 0 ]; do
    if [ "$1" = -d ]; then
        shift
        one "$1"
        if [ -d "$1" ]; then
            for f in "$1"/* "$1"/.[!.]*; do
                if [ -e "$f" ] || [ -L "$f" ]; then one "$f"; fi
            done
        fi
    else
        one "$1"
    fi
    shift
done
"#;

/// The snapshot of `host` for playbook `playbook` (see the module's doc), its files and units
/// from the plan the inventory at `inventory` gives that host.
pub fn snapshot(bed: &dyn Testbed, inventory: &Path, playbook: &str, host: &str) -> Snapshot {
    snapshot_of(bed, host, inventory, playbook, host)
}

/// [`snapshot`] of testbed host `machine`, which the inventory calls `host`.
pub fn snapshot_of(
    bed: &dyn Testbed,
    machine: &str,
    inventory: &Path,
    playbook: &str,
    host: &str,
) -> Snapshot {
    let probe = declared_reads(inventory, playbook, host);
    let host = machine;
    let mut entries = BTreeMap::new();

    let mut argv: Vec<&str> = vec!["sh", "-c", STAT_SCRIPT, "sh"];
    for f in probe.files.iter().filter(|f| !live(f)) {
        argv.push(f);
    }
    for d in &probe.dirs {
        argv.extend(["-d", d]);
    }
    let out = bed
        .exec(host, &argv)
        .unwrap_or_else(|e| panic!("{host}: stat: {e:#}"));
    assert!(
        out.status.success(),
        "{host}: stat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (path, rest) = line.split_once(' ').unwrap_or((line, ""));
        entries.insert(format!("file {path}"), rest.to_string());
    }

    if !probe.units.is_empty() {
        let mut argv = vec![
            "systemctl",
            "show",
            "-p",
            "InvocationID",
            "-p",
            "ActiveEnterTimestamp",
            "-p",
            "MainPID",
            "-p",
            "ActiveState",
        ];
        argv.extend(probe.units.iter().map(String::as_str));
        let out = bed
            .exec(host, &argv)
            .unwrap_or_else(|e| panic!("{host}: systemctl show: {e:#}"));
        // One block per unit, in the order asked, separated by an empty line.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let blocks: Vec<&str> = text.split("\n\n").map(str::trim).collect();
        for (i, unit) in probe.units.iter().enumerate() {
            let mut props: Vec<&str> = blocks.get(i).map_or(Vec::new(), |b| b.lines().collect());
            props.sort_unstable();
            // A unit not steadily active (failing and restarted by systemd itself, or
            // stopped) gets new invocations of its own: only its state is compared.
            if !props.contains(&"ActiveState=active") {
                props.retain(|p| p.starts_with("ActiveState="));
            }
            entries.insert(format!("unit {unit}"), props.join(" "));
        }
    }

    let packages = package_list(os_family(bed, host));
    entries.insert(
        "packages".into(),
        bed.sh(host, packages)
            .unwrap_or_else(|e| panic!("{host}: packages: {e:#}")),
    );
    entries.insert(
        "firewall".into(),
        bed.sh(
            host,
            "if command -v iptables >/dev/null; then iptables -S 2>&1; fi; \
             if command -v nft >/dev/null; then nft list ruleset 2>&1; fi; true",
        )
        .unwrap_or_else(|e| panic!("{host}: firewall: {e:#}")),
    );
    Snapshot {
        host: host.to_string(),
        entries,
    }
}
