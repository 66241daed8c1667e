//! `cargo xtask`: nodeprep's runner. Parses the command line and dispatches; each subcommand
//! lives in its own module.

mod bench;
mod cli;
mod demo;
mod output;
mod run;
mod select;
mod test;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, InventoryCommand};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                run::EXIT_BAD_INPUT
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    output::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Hosts(args) => select::hosts(&args),
        Command::Playbooks => select::playbooks(),
        Command::Verify(args) => verify::verify(&args),
        Command::Inventory {
            command: InventoryCommand::Check(args),
        } => select::check(&args),
        Command::TestImage => test::image(),
        Command::Test(args) => test::test(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::Bench(args) => bench::bench(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(run::EXIT_BAD_INPUT)
        }
    }
}
