//! The runner's command line (clap): `run`, `verify`, `hosts`, `playbooks`, `inventory check`.
//! Each command becomes a [`Job`] (a playbook, its targets, typed options) or a listing;
//! [`main`] is the whole command line for an operator's own crate.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use playbooks::Registry;
use tasks::{Mode, Selection};

use std::process::ExitCode;

use super::access::AccessArgs;
use super::fanout::RunOptions;
use super::job::{self, Job, Reported, Targets};
use super::report::{EXIT_BAD_INPUT, EXIT_OK};
use super::select::{self, Selector};
use super::{print, verify};

/// The runner's commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a playbook against hosts of the inventory (or this machine with --local).
    Run(Box<RunArgs>),
    /// List the inventory's hosts (optionally a selection).
    Hosts(SelectArgs),
    /// List the playbooks and their steps.
    Playbooks(InventoryArgs),
    /// Read-only checks before `kubeadm init/join` (swap, modules, sysctls, cgroup driver,
    /// binaries, ports, resources, host name, clock; unique names, addresses, machine-id and
    /// product_uuid across the hosts), each with the fix when it fails.
    Verify(VerifyArgs),
    /// Inventory commands.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum InventoryCommand {
    /// Validate the inventory and report every problem.
    Check(InventoryArgs),
}

#[derive(Args, Clone, Debug)]
pub struct InventoryArgs {
    /// The inventory file [env: NODEPREP_INVENTORY; default: ./inventory.toml]
    #[arg(long, short = 'i')]
    pub inventory: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct SelectArgs {
    #[command(flatten)]
    pub inv: InventoryArgs,
    /// A host by name (repeatable).
    #[arg(long = "host", short = 'H')]
    pub hosts: Vec<String>,
    /// Every host of a role.
    #[arg(long)]
    pub role: Option<String>,
    /// Every host of a zone.
    #[arg(long)]
    pub zone: Option<String>,
    /// Every host of the inventory.
    #[arg(long)]
    pub all: bool,
    /// Only hosts whose name matches this glob (`*`, `?`, `[...]`), e.g. 'prdk8swok5*'.
    #[arg(long)]
    pub limit: Option<String>,
}

impl SelectArgs {
    pub fn selector(&self) -> Selector {
        Selector {
            hosts: self.hosts.clone(),
            role: self.role.clone(),
            zone: self.zone.clone(),
            all: self.all,
            limit: self.limit.clone(),
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// The playbook to run (see `cargo xtask playbooks`).
    pub playbook: String,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Run on this machine, without ssh.
    #[arg(long)]
    pub local: bool,
    /// Change nothing; report what would change.
    #[arg(long)]
    pub check: bool,
    /// Show the unified diff of every file that changes (or would).
    #[arg(long)]
    pub diff: bool,
    /// Write JSON-lines events on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Hosts prepared at once.
    #[arg(long, default_value_t = 16)]
    pub forks: usize,
    /// Run only these steps (repeatable, or a comma list).
    #[arg(long)]
    pub only: Vec<String>,
    /// Skip these steps (repeatable, or a comma list).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Run the playbook on hosts of another role.
    #[arg(long)]
    pub force: bool,
    /// Do not keep copies of replaced files under /var/backups/nodeprep on the hosts.
    #[arg(long)]
    pub no_backup: bool,
    /// Log in anew on every host: close the connection a run within `ssh.persist` seconds
    /// left open (the host key is checked again).
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Accept a host whose name, addresses and recorded machine-id all differ from the
    /// inventory's (reinstalled, renamed, reached through a forwarded port), and record its
    /// machine-id so that later runs recognise it.
    #[arg(long)]
    pub accept_new_identity: bool,
    /// Connect to nothing: each host is simulated, converged by the playbook, answering after
    /// this round trip (ms). For `cargo xtask bench --simulated`.
    #[arg(long, hide = true, value_name = "MS")]
    pub simulate_rtt_ms: Option<u64>,
}

#[derive(Args, Clone, Debug)]
pub struct VerifyArgs {
    /// The playbook whose hosts are checked (its role picks the checks).
    pub playbook: String,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Write JSON-lines events on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Hosts checked at once.
    #[arg(long, default_value_t = 16)]
    pub forks: usize,
    /// Run only these checks (repeatable, or a comma list).
    #[arg(long)]
    pub only: Vec<String>,
    /// Skip these checks (repeatable, or a comma list).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Log in anew on every host (see `run --fresh`).
    #[arg(long)]
    pub fresh: bool,
}

fn forks(n: usize) -> Result<usize> {
    if n == 0 {
        bail!("--forks must be at least 1");
    }
    Ok(n)
}

impl RunArgs {
    /// The job this command line asks for.
    pub fn job<'r>(&self, registry: &'r Registry) -> Result<Job<'r>> {
        let playbook = job::find_playbook(registry, &self.playbook)?;
        let targets = if self.local {
            // This machine is one host: the name it goes by in the inventory, if any.
            let name = match self.select.hosts.as_slice() {
                [] => None,
                [name] => Some(name.clone()),
                more => bail!(
                    "--local runs on this machine alone: give at most one --host (the name it has in the inventory), not {} ({})",
                    more.len(),
                    more.join(", ")
                ),
            };
            Targets::Local { name }
        } else {
            Targets::Inventory(self.select.selector())
        };
        Ok(Job {
            playbook,
            inventory: self.select.inv.inventory.clone(),
            targets,
            options: RunOptions {
                mode: if self.check { Mode::Check } else { Mode::Apply },
                diff: self.diff,
                backup: !self.no_backup,
                forks: forks(self.forks)?,
                selection: Selection::new(&self.only, &self.skip),
                fresh: self.fresh,
                simulate: self.simulate_rtt_ms.map(std::time::Duration::from_millis),
                ..RunOptions::default()
            },
            force: self.force,
            json: self.json,
            access: self.access.clone(),
            accept_new_identity: self.accept_new_identity,
        })
    }
}

impl VerifyArgs {
    pub fn job<'r>(&self, registry: &'r Registry) -> Result<Job<'r>> {
        Ok(Job {
            playbook: job::find_playbook(registry, &self.playbook)?,
            inventory: self.select.inv.inventory.clone(),
            targets: Targets::Inventory(self.select.selector()),
            options: RunOptions {
                mode: Mode::Check,
                diff: false,
                backup: false,
                forks: forks(self.forks)?,
                selection: Selection::new(&self.only, &self.skip),
                fresh: self.fresh,
                ..RunOptions::default()
            },
            force: false,
            json: self.json,
            access: AccessArgs::default(),
            accept_new_identity: false,
        })
    }
}

/// Runs one of the runner's commands.
pub fn dispatch(command: Command, registry: &Registry) -> Result<u8> {
    match command {
        Command::Run(args) => job::run(&args.job(registry)?),
        Command::Verify(args) => verify::verify(&args.job(registry)?),
        Command::Playbooks(args) => {
            // The inventory's settings when there is one: a playbook may read its `[vars]`.
            let inv = job::optional_inventory(args.inventory.as_deref())?;
            print::playbooks(registry, &inv);
            Ok(EXIT_OK)
        }
        Command::Hosts(args) => {
            let inv = job::load_inventory(args.inv.inventory.as_deref())?;
            let sel = args.selector();
            let targets = if sel.is_empty() {
                inv.targets().collect()
            } else {
                select::select(&inv, &sel)?
            };
            print::hosts(&inv, &targets);
            Ok(EXIT_OK)
        }
        Command::Inventory {
            command: InventoryCommand::Check(args),
        } => {
            let inv = job::load_inventory(args.inventory.as_deref())?;
            // Every host's vars read into the types the playbooks meant for it declare.
            let text = std::fs::read_to_string(&inv.path).unwrap_or_default();
            let vars = playbooks::inventory::check_vars(&inv, &text, registry.all());
            if !vars.problems.is_empty() {
                let problems = playbooks::inventory::Problems {
                    file: inv.path.clone(),
                    list: vars.problems,
                };
                eprint!("error: invalid inventory {problems}");
                print::vars_unused(&inv, &vars.unused);
                return Err(Reported(EXIT_BAD_INPUT).into());
            }
            print::inventory_ok(&inv);
            print::vars_unused(&inv, &vars.unused);
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

/// The runner's command line, for a crate of the operator's own: parses the arguments, runs
/// the command over `registry` and **exits the process** with the command's exit code (see the
/// README's exit codes), so that the code cannot be lost, whether `main` returns `()` or
/// `ExitCode`:
///
/// ```no_run
/// fn main() {
///     let mut registry = playbooks::Registry::default();
///     // registry.add(my_playbook);
///     xtask::runner::main(registry)
/// }
/// ```
///
/// Everything the command printed is written out before the process exits.
#[allow(clippy::needless_doctest_main)] // the example is a crate's whole `main`
pub fn main(registry: Registry) -> ! {
    let code = command_line(&registry);
    drop(registry);
    std::process::exit(i32::from(code))
}

/// [`main`] without the exit: the exit code the command line over `registry` calls for.
fn command_line(registry: &Registry) -> u8 {
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
        command: Command,
    }
    // Started by ssh as the askpass program of a run (see tasks::host::askpass).
    if let Some(code) = tasks::host::askpass::answer_if_asked() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_code(e),
    };
    print::init_logging(cli.verbose);
    dispatch(cli.command, registry).unwrap_or_else(|e| error_code(&e))
}

/// clap's own error: usage problems are bad input, `--help` and `--version` are not.
pub fn usage_error(e: clap::Error) -> ExitCode {
    ExitCode::from(usage_code(e))
}

fn usage_code(e: clap::Error) -> u8 {
    let code = if e.use_stderr() {
        EXIT_BAD_INPUT
    } else {
        EXIT_OK
    };
    let _ = e.print();
    code
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        run: RunArgs,
    }

    fn job_of(args: &[&str]) -> Result<Targets> {
        let registry = Registry::default();
        let run = Run::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .unwrap()
            .run;
        run.job(&registry).map(|j| j.targets)
    }

    /// `--local` is this machine: one `--host` names it in the inventory, two are refused
    /// (bad input, exit code 1) before anything runs.
    #[test]
    fn local_takes_at_most_one_host() {
        assert!(matches!(
            job_of(&["k8s-worker", "--local"]),
            Ok(Targets::Local { name: None })
        ));
        assert!(matches!(
            job_of(&["k8s-worker", "--local", "--host", "prdk8swok501"]),
            Ok(Targets::Local { name: Some(n) }) if n == "prdk8swok501"
        ));
        let e = job_of(&[
            "k8s-worker",
            "--local",
            "--host",
            "prdk8swok501",
            "-H",
            "prdk8swok511",
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--local runs on this machine alone: give at most one --host (the name it has in the inventory), not 2 (prdk8swok501, prdk8swok511)"
        );
        assert_eq!(error_code(&e), EXIT_BAD_INPUT);
        assert_eq!(EXIT_BAD_INPUT, 1);
    }

    #[derive(Parser)]
    struct Verify {
        #[command(flatten)]
        verify: VerifyArgs,
    }

    /// `verify` checks hosts with no identity check before its probe (a wrong host is its
    /// `hostname` check's failure), which is safe only because it has no secret to give: no
    /// password flag is taken, and its job carries none. A password added to `verify` must
    /// come with `run`'s identity check first (see `fanout::RunOptions::identity`).
    #[test]
    fn verify_sends_no_password_to_any_host() {
        let parse = |extra: &[&str]| {
            Verify::try_parse_from(["verify", "k8s-worker", "--all"].iter().chain(extra))
                .map(|v| v.verify)
        };
        for flags in [
            &["--ask-pass"][..],
            &["--password-file", "pw"],
            &["--password-env", "PW"],
            &["--ask-become-pass"],
            &["--become-password-file", "pw"],
            &["--become-password-env", "PW"],
        ] {
            let e = parse(flags)
                .err()
                .unwrap_or_else(|| panic!("{flags:?} taken"));
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{flags:?}"
            );
        }
        let registry = Registry::default();
        let job = parse(&[]).unwrap().job(&registry).unwrap();
        assert!(job.access.ssh().is_none() && job.access.sudo().is_none());
        let creds = &job.options.credentials;
        assert!(creds.ssh.is_none() && creds.sudo.is_none());
        assert_eq!(job.options.mode, Mode::Check);
        assert!(!job.accept_new_identity);
    }
}
