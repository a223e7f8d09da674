//! Command-line interface: clap derive, one module per subcommand.

mod classify;
mod config;
mod lab;
mod policy;
mod run;
mod unload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Traffic classification and per-subscriber policy for ISP gateways.
#[derive(Parser)]
#[command(name = "peerwarden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run(run::Args),
    /// Remove an instance's pinned programs and maps (after a crash, or a daemon stopped
    /// with `keep_attached_on_stop`): detaches its programs.
    Unload(unload::Args),
    /// Label every flow of packet captures offline.
    Classify(classify::Args),
    /// Policy files.
    #[command(subcommand)]
    Policy(policy::Command),
    /// The daemon's configuration file.
    #[command(subcommand)]
    Config(config::Command),
    /// A demo gateway in network namespaces with real client traffic.
    #[command(subcommand)]
    Lab(lab::Command),
}

impl Cli {
    /// Runs the chosen subcommand; errors are printed as one line, exit status 1.
    pub fn run(self) -> ExitCode {
        init_tracing();
        let result = match self.command {
            Command::Run(args) => run::run(args),
            Command::Unload(args) => unload::run(args),
            Command::Classify(args) => classify::run(args),
            Command::Policy(cmd) => policy::run(cmd),
            Command::Config(cmd) => config::run(cmd),
            Command::Lab(cmd) => lab::run(cmd),
        };
        match result {
            Ok(code) => code,
            Err(err) => {
                // One line: the context chain joined, as operators read it in a terminal/log.
                eprintln!("peerwarden: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_env("PEERWARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
