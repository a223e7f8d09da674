//! `peerwarden policy check FILE`.

use std::{path::PathBuf, process::ExitCode};

/// Policy subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a policy file; errors carry line and column.
    Check {
        /// The policy file (YAML).
        file: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { file } => {
            let _ = file;
            anyhow::bail!("policy check is not built yet (see the policy issue)")
        }
    }
}
