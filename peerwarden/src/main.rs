//! The `peerwarden` command: one binary, one subcommand per file under `cli/`.

mod cli;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    cli::Cli::parse().run()
}
