//! `peerwarden run --config FILE`: the gateway daemon.

use std::{path::PathBuf, process::ExitCode};

use peerwarden::{config::Config, daemon};

/// Arguments of `peerwarden run`.
#[derive(clap::Args)]
pub struct Args {
    /// The daemon's configuration (YAML).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    daemon::run(config)?;
    Ok(ExitCode::SUCCESS)
}
