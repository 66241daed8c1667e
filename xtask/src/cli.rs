//! The command line, with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "nodeprep: prepare Linux servers for Kubernetes",
    version
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG works too.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a playbook against hosts of the inventory (or this machine with --local).
    Run(RunArgs),
    /// List the inventory's hosts (optionally a selection).
    Hosts(SelectArgs),
    /// List the playbooks and their steps.
    Playbooks,
    /// Read-only checks before `kubeadm init/join` (swap, modules, sysctls, cgroup driver,
    /// binaries, ports, resources, host name, clock; unique names, addresses, machine-id and
    /// product_uuid across the hosts), each with the fix when it fails.
    Verify(VerifyArgs),
    /// Inventory commands.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Build (or reuse) the systemd + sshd test image and print its tag.
    TestImage,
    /// Build the test image and run every test with cargo-nextest.
    Test(TestArgs),
    /// Start lab containers named after the example inventory's hosts and prepare them all.
    Demo(DemoArgs),
    /// Time the first and the no-op runs of k8s-worker against fresh lab containers.
    Bench(BenchArgs),
}

#[derive(Subcommand)]
pub enum InventoryCommand {
    /// Validate the inventory and report every problem.
    Check(InventoryArgs),
}

#[derive(Args, Clone)]
pub struct InventoryArgs {
    /// The inventory file [env: NODEPREP_INVENTORY; default: ./inventory.toml]
    #[arg(long, short = 'i')]
    pub inventory: Option<PathBuf>,
}

#[derive(Args, Clone)]
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
    /// Only hosts whose name matches this glob (`*` and `?`), e.g. 'prdk8swok5*'.
    #[arg(long)]
    pub limit: Option<String>,
}

#[derive(Args, Clone)]
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
    /// Run only these steps (repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// Skip these steps (repeatable).
    #[arg(long)]
    pub skip: Vec<String>,
    /// Run the playbook on hosts of another role.
    #[arg(long)]
    pub force: bool,
    /// Do not keep copies of replaced files under /var/backups/nodeprep on the hosts.
    #[arg(long)]
    pub no_backup: bool,
}

#[derive(Args, Clone)]
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
    /// Run only these checks (repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// Skip these checks (repeatable).
    #[arg(long)]
    pub skip: Vec<String>,
}

#[derive(Args, Clone)]
pub struct TestArgs {
    /// Extra arguments for cargo nextest (e.g. a filter).
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Leave the containers running afterwards (they are removed by default).
    #[arg(long)]
    pub keep: bool,
    /// Also run everything a second time, to show that nothing changes.
    #[arg(long)]
    pub twice: bool,
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Host counts to measure (repeatable).
    #[arg(long = "hosts", default_values_t = [1, 8])]
    pub hosts: Vec<usize>,
    /// No-op re-runs per host count.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}
