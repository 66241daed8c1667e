//! `cargo xtask`: nodeprep's command line. The runner's commands (`run`, `verify`, `hosts`,
//! `playbooks`, `inventory check`) come from [`xtask::runner`] over the default registry (the
//! built-in roles and `playbooks/site/`); the dev commands (test image, tests, demo, bench)
//! from [`xtask::dev`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::{dev, runner};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
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

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Runner(runner::cli::Command),
    #[command(flatten)]
    Dev(dev::Command),
}

fn main() -> ExitCode {
    // Started by ssh as the askpass program of a run (see tasks::host::askpass).
    if let Some(code) = tasks::host::askpass::answer_if_asked() {
        return ExitCode::from(code);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return runner::usage_error(e),
    };
    runner::print::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Runner(c) => runner::dispatch(c, &playbooks::Registry::default()),
        Command::Dev(c) => dev::dispatch(c),
    };
    ExitCode::from(result.unwrap_or_else(|e| runner::error_code(&e)))
}
