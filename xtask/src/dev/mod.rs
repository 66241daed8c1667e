//! The development tools: the systemd + sshd test image, lab containers, the VM, and the
//! `test-image`, `test`, `demo` and `bench` commands. They drive the runner like a user does
//! (the runner binary, or [`crate::runner`]'s jobs); the runner never imports them.

pub mod apt_cache;
pub mod bench;
pub mod demo;
pub mod image;
pub mod lab;
pub mod offline;
pub mod prereq;
pub mod test;
pub mod testbed;
pub mod vm;

use anyhow::Result;
use clap::{Args, Subcommand};

use image::Base;

/// A prerequisite of a dev command cannot be had on this machine (the Photon base image cannot
/// be pulled): one line says what was tried, why it failed and what to do. Distinct from the
/// runner's codes (0 ok, 1 bad input, 2 failed, 3 unreachable, 5 changes pending).
pub const EXIT_PREREQUISITE: u8 = 4;

/// The dev commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build (or reuse) the systemd + sshd test image (or the hardened one) and print its tag.
    TestImage(ImageArgs),
    /// Build the test image and run every test with cargo-nextest.
    Test(TestArgs),
    /// Start lab containers named after the example inventory's hosts and prepare them all.
    Demo(DemoArgs),
    /// Time the first and the no-op runs of k8s-worker against fresh lab containers, and the
    /// runner's own cost over simulated converged hosts.
    Bench(BenchArgs),
}

#[derive(Args, Clone, Debug)]
pub struct ImageArgs {
    /// The OS of the lab containers [env: NODEPREP_BASE; default: debian]
    #[arg(long, value_enum)]
    pub base: Option<Base>,
    /// The hardened image instead (Debian with a fresh Photon's sshd, sudo, firewall and
    /// cloud-init traits: see xtask/src/dev/image/hardened.rs).
    #[arg(long, conflicts_with = "base")]
    pub hardened: bool,
    /// The network services image instead (tinyproxy and apt-cacher-ng for labs without a
    /// way out: see xtask/src/dev/image/netsvc.rs).
    #[arg(long, conflicts_with = "hardened")]
    pub netsvc: bool,
}

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// The OS of the lab containers the tests start [env: NODEPREP_BASE; default: debian]
    #[arg(long, value_enum)]
    pub base: Option<Base>,
    /// Lab containers fetch Debian's packages straight from the archive, not through the
    /// apt cache container (`nodeprep-test-apt-cache`, apt-cacher-ng, kept between runs).
    #[arg(long)]
    pub no_apt_cache: bool,
    /// Extra arguments for cargo nextest (e.g. a filter).
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// The OS of the lab containers [env: NODEPREP_BASE; default: debian]
    #[arg(long, value_enum)]
    pub base: Option<Base>,
    /// Write JSON-lines events on stdout instead of text (as `run --json`).
    #[arg(long)]
    pub json: bool,
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
    let result = match command {
        Command::TestImage(args) => test::image(&args),
        Command::Test(args) => test::test(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::Bench(args) => bench::bench(&args),
    };
    result.or_else(|e| match e.downcast_ref::<image::Unavailable>() {
        Some(missing) => {
            eprintln!("error: {missing}");
            Ok(EXIT_PREREQUISITE)
        }
        None => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use crate::runner::{
        EXIT_BAD_INPUT, EXIT_CHANGES_PENDING, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE,
    };

    #[test]
    fn exit_codes_are_distinct() {
        let mut codes = vec![
            EXIT_OK,
            EXIT_BAD_INPUT,
            EXIT_FAILED,
            EXIT_UNREACHABLE,
            super::EXIT_PREREQUISITE,
            EXIT_CHANGES_PENDING,
        ];
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
    }
}
