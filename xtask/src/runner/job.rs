//! A job (a playbook, its targets, typed options) and running it: load the inventory, select
//! the hosts, make every host's plan, fan out, recap.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use playbooks::{Inventory, Playbook, Registry};

use super::fanout::{self, RunOptions};
use super::print::Printer;
use super::report::{EXIT_BAD_INPUT, exit_code};
use super::select::{self, Selector};

/// Which hosts a job runs on.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Hosts of the inventory, over ssh.
    Inventory(Selector),
    /// This machine, without ssh, as inventory host `name` (default: this machine's name).
    Local { name: Option<String> },
}

/// A playbook, the hosts it runs on, and how.
pub struct Job<'r> {
    pub playbook: &'r dyn Playbook,
    /// The inventory file (default: $NODEPREP_INVENTORY, else ./inventory.toml).
    pub inventory: Option<PathBuf>,
    pub targets: Targets,
    pub options: RunOptions,
    /// Run a role's playbook on hosts of another role.
    pub force: bool,
    /// JSON-lines events instead of text.
    pub json: bool,
}

/// An error whose message was already printed, with the exit code it calls for.
#[derive(Debug)]
pub struct Reported(pub u8);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// The playbook named `name`, or an error listing the known ones.
pub fn find_playbook<'r>(registry: &'r Registry, name: &str) -> Result<&'r dyn Playbook> {
    registry.find(name).ok_or_else(|| {
        anyhow!(
            "no playbook `{name}` (known: {})",
            registry.names().join(", ")
        )
    })
}

/// Loads the inventory, printing every problem (bad input).
pub fn load_inventory(path: Option<&std::path::Path>) -> Result<Inventory> {
    let path = select::inventory_path(path);
    Inventory::load(&path).map_err(|problems| {
        eprint!("error: invalid inventory {problems}");
        Reported(EXIT_BAD_INPUT).into()
    })
}

/// The inventory for `--local`: optional (its settings are used when it exists).
fn local_inventory(path: Option<&std::path::Path>) -> Result<Inventory> {
    let path = select::inventory_path(path);
    if path.exists() {
        load_inventory(Some(&path))
    } else {
        Inventory::parse("", &path).map_err(|p| anyhow!("{p}"))
    }
}

/// The hosts of the job's selection; refuses hosts of another role than the playbook's unless
/// forced (`refused` words the refusal from the list of them).
pub(crate) fn targets<'i>(
    inv: &'i Inventory,
    job: &Job,
    sel: &Selector,
    refused: &dyn Fn(&str) -> String,
) -> Result<Vec<&'i str>> {
    let names = select::select(inv, sel)?;
    if let Some(role) = job.playbook.role() {
        let wrong: Vec<String> = names
            .iter()
            .filter(|n| inv.hosts[**n].role != role.name())
            .map(|n| format!("{n} ({})", inv.hosts[*n].role))
            .collect();
        if !wrong.is_empty() && !job.force {
            bail!(
                "playbook {} is for role {}; {}",
                job.playbook.name(),
                role.name(),
                refused(&wrong.join(", "))
            );
        }
    }
    Ok(names)
}

/// Runs a job: every selected host, the recap; returns the exit code.
pub fn run(job: &Job) -> Result<u8> {
    let steps = playbooks::steps(job.playbook).map_err(|e| anyhow!("{e}"))?;
    job.options
        .selection
        .validate(&format!("playbook {}", job.playbook.name()), &steps)
        .map_err(|e| anyhow!("{e} (see `cargo xtask playbooks`)"))?;
    let check = job.options.mode == tasks::Mode::Check;
    let printer = Printer::new(job.json, job.options.diff || check);
    let planner = fanout::planner(|t, p| job.playbook.plan(t, p));
    let reports = match &job.targets {
        Targets::Local { name } => {
            let inv = local_inventory(job.inventory.as_deref())?;
            let name = name.clone().unwrap_or_else(fanout::this_hostname);
            let role = job.playbook.role().map(|r| r.name());
            let report = fanout::local(&inv, &name, role, &planner, &job.options, &printer.sink());
            printer.host_done(&report);
            vec![report]
        }
        Targets::Inventory(sel) => {
            let inv = load_inventory(job.inventory.as_deref())?;
            let names = targets(&inv, job, sel, &|hosts| {
                format!("refusing {hosts} (use --force to run it anyway)")
            })?;
            // Every host's plan is made before any host is touched: a bad `[vars]` value is
            // bad input, not a failure on some hosts.
            for name in &names {
                let t = inv.target(name).expect("selected");
                planner(t, &mut tasks::Plan::new()).map_err(|e| anyhow!("{e}"))?;
            }
            fanout::over_ssh(
                &inv,
                &names,
                &planner,
                &job.options,
                &printer.sink(),
                &|r| printer.host_done(r),
            )
        }
    };
    printer.recap(&reports, check);
    Ok(exit_code(&reports))
}
