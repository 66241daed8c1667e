//! A job (a playbook, its targets, typed options) and running it: load the inventory, select
//! the hosts, make every host's plan, fan out, recap.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use playbooks::{Inventory, Playbook, Registry, Target};

use super::access::{self, AccessArgs};
use super::fanout::{self, RunOptions};
use super::identity;
use super::print::Printer;
use super::report::{EXIT_BAD_INPUT, HostReport, exit_code};
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
    /// Where the ssh and sudo passwords come from (none: keys and passwordless sudo).
    pub access: AccessArgs,
    /// Accept (and record) a host whose identity is new (see [`identity`]).
    pub accept_new_identity: bool,
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

/// The inventory when it exists, else one with every setting at its default (`--local`,
/// listings).
pub(crate) fn optional_inventory(path: Option<&std::path::Path>) -> Result<Inventory> {
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
) -> Result<Vec<Target<'i>>> {
    let selected = select::select(inv, sel)?;
    if let Some(role) = job.playbook.role() {
        let wrong: Vec<String> = selected
            .iter()
            .filter(|t| !t.host.role.is(role))
            .map(|t| format!("{} ({})", t.name, t.host.role))
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
    Ok(selected)
}

/// Every host's plan is made before any host is touched: a bad `[vars]` value is bad input,
/// not a failure on some hosts; and `--only`/`--skip` must name steps of those plans. The
/// plans are the run's, in the targets' order.
fn check_plans<'i>(job: &Job, targets: &[Target<'i>]) -> Result<Vec<tasks::Plan<'i>>> {
    let mut steps: Vec<String> = Vec::new();
    let mut plans = Vec::with_capacity(targets.len());
    for t in targets {
        let mut plan = tasks::Plan::new();
        job.playbook
            .plan(*t, &mut plan)
            .map_err(|e| anyhow!("{}", t.plan_error(e)))?;
        // A host with the steps of the hosts before it (as most are) has nothing new.
        if !plan.step_names().eq(steps.iter().map(String::as_str)) {
            for s in plan.step_names() {
                if !steps.iter().any(|known| known == s) {
                    steps.push(s.to_string());
                }
            }
        }
        plan.shrink_to_fit();
        plans.push(plan);
    }
    check_selection(job, &steps)?;
    Ok(plans)
}

fn check_selection(job: &Job, steps: &[String]) -> Result<()> {
    job.options
        .selection
        .validate(&format!("playbook {}", job.playbook.name()), steps)
        .map_err(|e| anyhow!("{e} (see `cargo xtask playbooks`)"))
}

/// Runs a job: every selected host, the recap; returns the exit code.
pub fn run(job: &Job) -> Result<u8> {
    // Steps named wrong are refused first, from the steps the playbook lists with the
    // inventory's defaults (when it can plan without the inventory's [vars]); each host's own
    // plan is checked again below.
    let defaults =
        Inventory::parse("", std::path::Path::new("inventory.toml")).map_err(|p| anyhow!("{p}"))?;
    if let Ok(steps) = playbooks::listed_steps(job.playbook, &defaults) {
        check_selection(job, &steps)?;
    }
    let check = job.options.mode == tasks::Mode::Check;
    let printer = Printer::new(job.json, job.options.diff || check);
    let planner = fanout::planner(|t, p| job.playbook.plan(t, p));
    let mut opts = job.options.clone();
    let reports = match &job.targets {
        Targets::Local { name } => {
            let path = select::inventory_path(job.inventory.as_deref());
            let inv = optional_inventory(Some(&path))?;
            let name = name.clone().unwrap_or_else(fanout::this_hostname);
            // The inventory's settings when it names this host, else the role's defaults.
            let fallback = playbooks::registry::stand_in(job.playbook);
            let t = inv.target(&name).unwrap_or(Target {
                name: &name,
                host: &fallback,
                inventory: &inv,
            });
            let plan = check_plans(job, &[t])?.pop().expect("one target, one plan");
            let user = std::env::var("USER").unwrap_or_else(|_| "this user".into());
            opts.identity = Some(identity_book(job, &path, path.exists())?);
            opts.credentials = credentials(job, &inv, &[&user], !fanout::is_root())?;
            let report = fanout::local(t, Ok(plan), &opts, &printer.sink());
            printer.host_done(&report);
            vec![report]
        }
        Targets::Inventory(sel) => {
            let inv = load_inventory(job.inventory.as_deref())?;
            let selected = targets(&inv, job, sel, &|hosts| {
                format!("refusing {hosts} (use --force to run it anyway)")
            })?;
            let plans = check_plans(job, &selected)?;
            let mut users: Vec<&str> = selected
                .iter()
                .map(|t| fanout::login_user(&inv, t))
                .collect();
            users.sort_unstable();
            users.dedup();
            let sudo = users.iter().any(|u| *u != "root");
            opts.identity = Some(identity_book(job, &inv.path, true)?);
            opts.credentials = credentials(job, &inv, &users, sudo)?;
            let done = |r: &HostReport| printer.host_done(r);
            fanout::over_ssh(
                &selected,
                &planner,
                Some(plans),
                &opts,
                &printer.sink(),
                &done,
            )
        }
    };
    printer.recap(&reports, check);
    Ok(exit_code(&reports, check))
}

/// The passwords the job asks for, read once (after the inventory was found valid, before any
/// connection). `users`: the login users; `sudo`: some of them go through sudo.
fn credentials(
    job: &Job,
    inv: &Inventory,
    users: &[&str],
    sudo: bool,
) -> Result<access::Credentials> {
    let ssh = job.access.ssh();
    if ssh.is_some() && matches!(job.targets, Targets::Local { .. }) {
        bail!(
            "--local runs without ssh: give sudo's password with --ask-become-pass, --become-password-file or --become-password-env"
        );
    }
    let become_pw = job.access.sudo();
    if become_pw.is_some() && !sudo {
        bail!("sudo's password was given, but every login user is root: nothing asks for it");
    }
    let creds = access::Credentials::read(ssh.as_ref(), become_pw.as_ref(), &users.join(", "))?;
    // A password read from the environment goes no further than this process.
    for source in [&ssh, &become_pw].into_iter().flatten() {
        if let access::Source::Env(var) = source {
            tasks::host::withhold_env(var);
        }
    }
    access::check_admin_password(inv, users, &creds)?;
    if let Some(warning) = access::unverified_key_warning(inv, &creds) {
        tracing::warn!("{warning}");
    }
    Ok(creds)
}

/// The identity check of a run over inventory `path` (`exists`: there is a file to keep the
/// record beside).
fn identity_book(
    job: &Job,
    path: &std::path::Path,
    exists: bool,
) -> Result<std::sync::Arc<identity::Book>> {
    let write = job.options.mode == tasks::Mode::Apply;
    let book = identity::Book::open(path, exists, job.accept_new_identity, write)?;
    Ok(std::sync::Arc::new(book))
}
