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

    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self
                .records
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Failed(_)))
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

/// The exit code of a run over these hosts: unreachable wins over failed.
pub fn exit_code(reports: &[HostReport]) -> u8 {
    if reports.iter().any(HostReport::unreachable) {
        EXIT_UNREACHABLE
    } else if reports.iter().any(HostReport::failed) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
