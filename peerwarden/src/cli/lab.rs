//! `peerwarden lab up|traffic|down`.

use std::process::ExitCode;

/// Lab subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create the namespaces and start the daemon in the gateway.
    Up,
    /// Run real client traffic through the gateway.
    Traffic,
    /// Remove everything the lab made.
    Down,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let _ = cmd;
    anyhow::bail!("lab is not built yet")
}
