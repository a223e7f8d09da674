//! `peerwarden policy check FILE...`: validate policy files; errors carry line and column.

use std::{path::PathBuf, process::ExitCode};

/// Policy subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate policy files; every error is printed as FILE:LINE:COL: message (hint).
    Check {
        /// Policy files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Check { files } = cmd;
    let mut failed = false;
    for path in files {
        match peerwarden_policies::load_file(&path) {
            Ok(policy) => println!(
                "{}: ok ({}, {})",
                path.display(),
                count(policy.subscribers().len(), "subscriber"),
                count(policy.plans().len(), "plan")
            ),
            Err(errors) => {
                eprintln!("{errors}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `1 plan`, `2 plans`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
