//! The development tools: the systemd + sshd test image, lab containers, the VM, and the
//! `test-image`, `test`, `demo` and `bench` commands. They drive the runner like a user does
//! (the runner binary, or [`crate::runner`]'s jobs); the runner never imports them.

pub mod bench;
pub mod demo;
pub mod image;
pub mod lab;
pub mod prereq;
pub mod test;
pub mod testbed;
pub mod vm;

use anyhow::Result;
use clap::{Args, Subcommand};

/// The dev commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build (or reuse) the systemd + sshd test image and print its tag.
    TestImage,
    /// Build the test image and run every test with cargo-nextest.
    Test(TestArgs),
    /// Start lab containers named after the example inventory's hosts and prepare them all.
    Demo(DemoArgs),
    /// Time the first and the no-op runs of k8s-worker against fresh lab containers, and the
    /// runner's own cost over simulated converged hosts.
    Bench(BenchArgs),
}

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// Extra arguments for cargo nextest (e.g. a filter).
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Leave the containers running afterwards (they are removed by default).
    #[arg(long)]
    pub keep: bool,
    /// Also run everything a second time, to show that nothing changes.
    #[arg(long)]
    pub twice: bool,
}

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Lab containers: host counts to measure (repeatable). 1 and 8 when neither --hosts nor
    /// --simulated is given.
    #[arg(long = "hosts", value_name = "N")]
    pub hosts: Vec<usize>,
    /// Simulated hosts, converged, no containers: host counts to measure (repeatable).
    #[arg(long = "simulated", value_name = "N")]
    pub simulated: Vec<usize>,
    /// Round trip of a simulated host (ms).
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub rtt_ms: u64,
    /// Hosts at once in the simulated runs (the runner's --forks).
    #[arg(long, default_value_t = 100)]
    pub forks: usize,
    /// No-op re-runs per lab host count (each as the binary and through cargo xtask), and runs
    /// per simulated host count.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print JSON lines instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn dispatch(command: Command) -> Result<u8> {
    match command {
        Command::TestImage => test::image(),
        Command::Test(args) => test::test(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::Bench(args) => bench::bench(&args),
    }
}
