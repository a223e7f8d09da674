//! `peerwarden run --config FILE`: the gateway daemon.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `peerwarden run`.
#[derive(clap::Args)]
pub struct Args {
    /// The daemon's configuration (YAML).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = args.config;
    anyhow::bail!("not yet")
}
