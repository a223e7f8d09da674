//! `peerwarden unload [--config FILE | --name NAME]`: removes an instance's pinned links
//! and maps (what a crashed or `keep_attached_on_stop` daemon leaves), detaching its
//! programs from the interfaces.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use peerwarden::{config::Config, probe::pins};

/// Arguments of `peerwarden unload`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["config", "name"])))]
pub struct Args {
    /// The daemon's configuration: its instance (`instance`, or the namespace and
    /// interfaces).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The instance name (a directory under /sys/fs/bpf/peerwarden).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = match (args.config, args.name) {
        (Some(path), _) => Config::load(&path)?.instance_name(),
        (None, Some(name)) => name,
        (None, None) => unreachable!("clap requires one of --config and --name"),
    };
    let dir = pins::PinDir::new(&name)?;
    // Not under a running daemon: it would keep its programs attached through the link
    // descriptors it holds, unpinned.
    let _lock = dir
        .lock()
        .context("stop its daemon first (SIGTERM detaches and unpins)")?;
    let removed = pins::unload(&name)
        .with_context(|| format!("unloading instance {name} ({})", dir.path().display()))?;
    if removed.is_empty() {
        println!(
            "instance {name}: nothing pinned at {}",
            dir.path().display()
        );
    } else {
        println!(
            "instance {name}: removed {} pins from {} ({})",
            removed.len(),
            dir.path().display(),
            removed.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
