//! nodeprep's runner, as a library: inventory loading and host selection, the fan-out over
//! hosts, the per-host report and its exit code, and the printers (text, JSON). It is driven
//! by a [`Job`] (a playbook, its targets, typed options), not by the command line: `run` and
//! `verify` share it, and so does a crate of the operator's own ([`main`] gives it the whole
//! command line over its own [`Registry`]). It holds no global state.
//!
//! Who imports whom (no loops): `cli` → this module → `fanout`, `verify`, `select`, `print`
//! → `report`. The dev tools (`crate::dev`) use the runner; the runner never uses them.

pub mod cli;
pub mod fanout;
pub mod print;
pub mod report;
pub mod select;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use playbooks::{Inventory, Playbook, Registry};

pub use fanout::RunOptions;
pub use print::Printer;
pub use report::{
    EXIT_BAD_INPUT, EXIT_CHANGES_PENDING, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, HostReport,
    exit_code,
};
pub use select::Selector;

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
fn targets<'i>(
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
    Ok(exit_code(&reports, check))
}

/// Runs one of the runner's commands.
pub fn dispatch(command: cli::Command, registry: &Registry) -> Result<u8> {
    use cli::{Command, InventoryCommand};
    match command {
        Command::Run(args) => run(&args.job(registry)?),
        Command::Verify(args) => verify::verify(&args.job(registry)?),
        Command::Playbooks => {
            print::playbooks(registry);
            Ok(EXIT_OK)
        }
        Command::Hosts(args) => {
            let inv = load_inventory(args.inv.inventory.as_deref())?;
            let sel = args.selector();
            let names: Vec<&str> = if sel.is_empty() {
                inv.hosts.keys().map(String::as_str).collect()
            } else {
                select::select(&inv, &sel)?
            };
            print::hosts(&inv, &names);
            Ok(EXIT_OK)
        }
        Command::Inventory {
            command: InventoryCommand::Check(args),
        } => {
            let inv = load_inventory(args.inventory.as_deref())?;
            print::inventory_ok(&inv);
            Ok(EXIT_OK)
        }
    }
}

/// The exit code for an error out of [`dispatch`], printing it unless it was printed already.
pub fn error_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Reported>() {
        Some(Reported(code)) => *code,
        None => {
            eprintln!("error: {e:#}");
            EXIT_BAD_INPUT
        }
    }
}

/// The runner's command line, for a crate of the operator's own:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     let mut registry = playbooks::Registry::default();
///     // registry.add(my_playbook);
///     xtask::runner::main(registry)
/// }
/// ```
pub fn main(registry: Registry) -> ExitCode {
    use clap::Parser;
    #[derive(Parser)]
    #[command(
        name = "nodeprep",
        about = "nodeprep: prepare Linux servers for Kubernetes",
        version
    )]
    struct Cli {
        /// More log output (-v info, -vv debug); RUST_LOG works too.
        #[arg(short, long, action = clap::ArgAction::Count, global = true)]
        verbose: u8,
        #[command(subcommand)]
        command: cli::Command,
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    print::init_logging(cli.verbose);
    ExitCode::from(dispatch(cli.command, &registry).unwrap_or_else(|e| error_code(&e)))
}

/// clap's own error: usage problems are bad input, `--help` and `--version` are not.
pub fn usage_error(e: clap::Error) -> ExitCode {
    let code = if e.use_stderr() {
        EXIT_BAD_INPUT
    } else {
        EXIT_OK
    };
    let _ = e.print();
    ExitCode::from(code)
}
