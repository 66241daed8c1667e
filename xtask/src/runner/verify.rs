//! `verify`: the read-only checks of the playbook's role over the selected hosts, through the
//! same fan-out and printer as `run` (one line per check, `--json` events, the recap), then
//! the checks across those hosts. Each check is recorded as a step: `ok` passed, `failed` (the
//! reason, then `fix:` and the hint), `skipped` (why). Exit code 2 when a check failed, 3 when
//! a host was unreachable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use playbooks::Role;
use tasks::verify::{self, Identity};
use tasks::{Event, Outcome, Record};

use super::fanout;
use super::job::{Job, Targets, load_inventory, targets};
use super::print::Printer;
use super::report::exit_code;

/// Every check name a role's hosts can get, for `--only` / `--skip`: the role's checks (as
/// its spec declares them, ingress frontends included), then the checks across hosts.
fn check_names(role: &'static dyn Role) -> Vec<String> {
    let mut names = playbooks::roles::check_names(role);
    names.extend(verify::FLEET_CHECKS.map(String::from));
    names
}

pub fn verify(job: &Job) -> Result<u8> {
    let role = job.playbook.role().ok_or_else(|| {
        anyhow!(
            "playbook {} is meant for no role: verify runs a role's checks (use the role's playbook)",
            job.playbook.name()
        )
    })?;
    let known = check_names(role);
    let sel = &job.options.selection;
    for name in sel.only.iter().chain(&sel.skip) {
        if !known.contains(name) {
            return Err(anyhow!("no check `{name}` (known: {})", known.join(", ")));
        }
    }
    let Targets::Inventory(selector) = &job.targets else {
        return Err(anyhow!("verify checks hosts of the inventory (no --local)"));
    };
    let inv = load_inventory(job.inventory.as_deref())?;
    let selected = targets(&inv, job, selector, &|hosts| {
        format!("{hosts} of another role (verify them with their own playbook)")
    })?;
    let printer = Printer::new(job.json, false);
    // The identity each host reports, for the checks across hosts.
    let identities: Arc<Mutex<Vec<Identity>>> = Arc::default();
    let planner = fanout::planner(|t, p| {
        verify::declare(role.verify(t), p);
        let ids = identities.clone();
        p.finally(move |cx| {
            let id = verify::identity(cx, t.name)?;
            ids.lock().unwrap().push(id);
            Ok(())
        });
        Ok(())
    });
    let mut reports = fanout::over_ssh(
        &selected,
        &planner,
        None,
        &job.options,
        &printer.sink(),
        &|r| printer.host_done(r),
    );

    // Across the hosts that answered, in inventory order.
    let mut ids = std::mem::take(&mut *identities.lock().unwrap());
    ids.sort_by_key(|id| selected.iter().position(|t| t.name == id.host));
    let sink = printer.sink();
    for (host, check) in verify::fleet_checks(&ids) {
        let Some(report) = reports.iter_mut().find(|r| r.host == host) else {
            continue;
        };
        if !sel.selects(&check.name) {
            report.not_selected += 1;
            continue;
        }
        let name = check.name.clone();
        let outcome = match check.into_result() {
            Ok(tasks::Change::Skipped(why)) => Outcome::Skipped(why),
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let record = Record {
            name,
            outcome,
            duration: Duration::ZERO,
            diffs: Vec::new(),
            actions: Vec::new(),
        };
        sink(&Event::StepFinished {
            host: host.clone(),
            record: record.clone(),
        });
        report.records.push(record);
    }
    printer.recap(&reports, false);
    Ok(exit_code(&reports, false))
}
