//! `peerwarden classify`: offline labelling of packet captures (the classifier issue).

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `peerwarden classify`.
#[derive(clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "jsonl"])]
    format: String,
    /// Capture files (pcap or pcapng).
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = (&args.format, &args.pcaps);
    anyhow::bail!("classify is not built yet (see the deep classification issue)")
}
