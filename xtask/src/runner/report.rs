//! What a run found on each host, and the exit code of the whole run.

use std::time::Duration;

use tasks::{ErrorKind, Outcome, Record};

/// Every host done, every step ok, changed or skipped.
pub const EXIT_OK: u8 = 0;
/// Bad input: command line, inventory, unknown playbook, host or step; nothing was touched.
pub const EXIT_BAD_INPUT: u8 = 1;
/// A step failed on at least one host (or a host was busy with another run).
pub const EXIT_FAILED: u8 = 2;
/// At least one host could not be reached (whatever happened on the others).
pub const EXIT_UNREACHABLE: u8 = 3;
/// At least one machine reached was refused as not the inventory's host (name, addresses and
/// recorded machine-id all differ); nothing was changed on it. Wins over every other failure:
/// the inventory points somewhere it should not.
pub const EXIT_IDENTITY: u8 = 6;
/// A check run (`run --check`) found changes pending on at least one host, and nothing failed
/// and every host was reached: drift, as `terraform plan -detailed-exitcode` reports it.
/// (4 is the dev tools' "a prerequisite cannot be had", see `crate::dev::EXIT_PREREQUISITE`.)
pub const EXIT_CHANGES_PENDING: u8 = 5;

/// What happened on one host.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub host: String,
    /// The steps that ran, in order (steps left out by `--only`/`--skip` are not here).
    pub records: Vec<Record>,
    /// Steps of the plan left out by `--only`/`--skip`.
    pub not_selected: usize,
    /// Set when the host could not be reached, or the run stopped on an error.
    pub error: Option<(ErrorKind, String)>,
    pub duration: Duration,
    pub commands: u32,
    /// Time spent waiting on the host (commands and transport); the rest is nodeprep's own.
    pub remote: Duration,
    /// Files read after the first round trip because no step declared them.
    pub misses: Vec<String>,
    /// Why the host must be rebooted for the run's changes to take effect (a newer kernel).
    pub reboot_required: Option<String>,
}

impl HostReport {
    /// A host that ended before any step ran.
    pub fn early(host: &str, kind: ErrorKind, error: String, duration: Duration) -> HostReport {
        HostReport {
            host: host.to_string(),
            records: Vec::new(),
            not_selected: 0,
            error: Some((kind, error)),
            duration,
            commands: 0,
            remote: Duration::ZERO,
            misses: Vec::new(),
            reboot_required: None,
        }
    }

    pub fn unreachable(&self) -> bool {
        matches!(self.error, Some((ErrorKind::Unreachable, _)))
    }

    /// The machine reached is not the inventory's host: refused before any step.
    pub fn refused(&self) -> bool {
        matches!(self.error, Some((ErrorKind::Identity, _)))
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self
                .records
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    /// Some step changed the host, or in check mode would have.
    pub fn changed(&self) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Changed))
    }

    pub fn count(&self, label: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.outcome.label() == label)
            .count()
    }

    /// Failed steps, plus one for an error outside any step (other than unreachable).
    pub fn failures(&self) -> usize {
        let failed = self.count("failed");
        failed + usize::from(self.error.is_some() && !self.unreachable() && failed == 0)
    }
}

/// The exit code of a run over these hosts: a refused identity wins over unreachable, which
/// wins over failed, which wins over changes pending (reported only for a check run: an
/// applying run that changed hosts did its job).
pub fn exit_code(reports: &[HostReport], check: bool) -> u8 {
    if reports.iter().any(HostReport::refused) {
        EXIT_IDENTITY
    } else if reports.iter().any(HostReport::unreachable) {
        EXIT_UNREACHABLE
    } else if reports.iter().any(HostReport::failed) {
        EXIT_FAILED
    } else if check && reports.iter().any(HostReport::changed) {
        EXIT_CHANGES_PENDING
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: Option<ErrorKind>) -> HostReport {
        let mut r = HostReport::early("h", ErrorKind::Other, String::new(), Duration::ZERO);
        r.error = kind.map(|k| (k, "why".to_string()));
        r
    }

    fn host(outcomes: &[Outcome], error: Option<ErrorKind>) -> HostReport {
        let mut r = HostReport::early("h", ErrorKind::Unreachable, String::new(), Duration::ZERO);
        r.error = error.map(|k| (k, "boom".to_string()));
        r.records = outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| Record {
                name: format!("step {i}"),
                outcome: o.clone(),
                duration: Duration::ZERO,
                diffs: Vec::new(),
                actions: Vec::new(),
            })
            .collect();
        r
    }

    #[test]
    fn a_refused_identity_wins() {
        let ok = report(None);
        let failed = report(Some(ErrorKind::Command));
        let unreachable = report(Some(ErrorKind::Unreachable));
        let refused = report(Some(ErrorKind::Identity));
        assert_eq!(exit_code(std::slice::from_ref(&ok), false), EXIT_OK);
        assert_eq!(exit_code(&[ok.clone(), failed.clone()], false), EXIT_FAILED);
        assert_eq!(
            exit_code(&[failed.clone(), unreachable.clone()], false),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            exit_code(&[failed, unreachable, refused.clone(), ok], true),
            EXIT_IDENTITY
        );
        assert_eq!(refused.failures(), 1);
    }

    #[test]
    fn drift_is_its_own_code_in_check_runs_only() {
        let clean = host(&[Outcome::Ok, Outcome::Skipped("n/a".into())], None);
        let drift = host(&[Outcome::Ok, Outcome::Changed], None);
        let failed = host(&[Outcome::Failed("no".into())], None);
        let broken = host(&[Outcome::Ok], Some(ErrorKind::Command));
        let gone = host(&[], Some(ErrorKind::Unreachable));

        assert_eq!(exit_code(std::slice::from_ref(&clean), true), EXIT_OK);
        assert_eq!(
            exit_code(&[clean.clone(), drift.clone()], true),
            EXIT_CHANGES_PENDING
        );
        // An applying run that changed something succeeded.
        assert_eq!(exit_code(&[clean.clone(), drift.clone()], false), EXIT_OK);
        // Failures and unreachable hosts win over drift, unreachable over failures.
        assert_eq!(
            exit_code(&[drift.clone(), failed.clone()], true),
            EXIT_FAILED
        );
        assert_eq!(exit_code(&[drift.clone(), broken], true), EXIT_FAILED);
        assert_eq!(
            exit_code(&[drift.clone(), gone.clone()], true),
            EXIT_UNREACHABLE
        );
        assert_eq!(exit_code(&[failed, gone, drift], true), EXIT_UNREACHABLE);
        assert_eq!(exit_code(&[], true), EXIT_OK);
    }

    /// What only an operator outside the host can fix is a warning: no failure, no drift.
    #[test]
    fn operator_outcomes_are_neither_failure_nor_drift() {
        let waiting = host(
            &[Outcome::Ok, Outcome::Operator("govc vm.change".into())],
            None,
        );
        assert_eq!(waiting.count("operator"), 1);
        assert_eq!(waiting.failures(), 0);
        assert_eq!(exit_code(std::slice::from_ref(&waiting), false), EXIT_OK);
        assert_eq!(exit_code(std::slice::from_ref(&waiting), true), EXIT_OK);
    }

    /// A Kubernetes worker on a VMware VM without `disk.EnableUUID` (a recorded Photon OS host
    /// whose SCSI disk has no `scsi-36000c29…`/`wwn-0x6000c29…` id; a lab container cannot
    /// show one: its disks are the machine's, and the step skips them): the run's step ends as
    /// a warning with the govc fix and the run exits 0, a check run too (no drift); `verify`
    /// fails on it (exit 2).
    #[cfg(feature = "simulate")]
    #[test]
    fn a_node_without_disk_enable_uuid_warns_then_fails_verify() {
        use playbooks::{Inventory, Registry};
        use tasks::testing::Fixture;
        use tasks::{Mode, Plan, Selection, disks, verify};

        let mut inv = Inventory::parse(
            include_str!("../../../inventory.toml"),
            std::path::Path::new("inventory.toml"),
        )
        .unwrap();
        inv.placeholders.clear();
        let t = inv.target("prdk8swok511").unwrap();
        let registry = Registry::default();
        let pb = registry.find("k8s-worker").unwrap();
        let vmware = || {
            let mut f = Fixture::photon()
                .file(disks::SYS_VENDOR, "VMware, Inc.\n", 0o444)
                .complete();
            f.state.answers.insert(
                disks::LIST.iter().map(|s| s.to_string()).collect(),
                "disk sda\nid wwn-0x5000c500a1b2c3d4 sda\n".into(),
            );
            f
        };
        let report = |cx: &tasks::Ctx| {
            let mut r = HostReport::early(t.name, ErrorKind::Other, String::new(), Duration::ZERO);
            r.error = None;
            r.records = cx.records().to_vec();
            r
        };

        for (mode, check) in [(Mode::Apply, false), (Mode::Check, true)] {
            let (mut cx, _rec) = vmware().ctx(mode);
            let mut p = Plan::new();
            pb.plan(t, &mut p).unwrap();
            let ran = p.run(&mut cx, &Selection::new(&["stable disk ids"], &[]));
            assert!(ran.error.is_none(), "{:?}", ran.error);
            let r = report(&cx);
            assert_eq!(r.count("operator"), 1, "{:?}", r.records);
            match &r.records[0].outcome {
                Outcome::Operator(e) => assert!(
                    e.contains("disk.EnableUUID") && e.contains("govc vm.change"),
                    "{e}"
                ),
                other => panic!("{other:?}"),
            }
            assert_eq!(exit_code(std::slice::from_ref(&r), check), EXIT_OK);
        }

        let (mut cx, _rec) = vmware().ctx(Mode::Check);
        let mut p = Plan::new();
        verify::declare(pb.role().unwrap().verify(t), &mut p);
        let ran = p.run(&mut cx, &Selection::new(&["disk ids"], &[]));
        assert!(ran.error.is_none(), "{:?}", ran.error);
        let r = report(&cx);
        assert_eq!(r.count("failed"), 1, "{:?}", r.records);
        assert_eq!(exit_code(std::slice::from_ref(&r), false), EXIT_FAILED);
    }
}
