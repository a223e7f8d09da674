//! `peerwarden classify`: offline labelling of packet captures with the deep classifier.

use std::{
    io::{self, BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use peerwarden_classifier::{EngineConfig, FlowRecord, classify_capture_partial, summarize};

/// Arguments of `peerwarden classify`.
#[derive(clap::Args)]
pub struct Args {
    /// Output format: `jsonl` prints one flow per line, `table` a per-label summary.
    #[arg(long, default_value = "table", value_parser = ["table", "jsonl"])]
    format: String,
    /// Capture files (pcap or pcapng).
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut failed = false;
    let mut all: Vec<FlowRecord> = Vec::new();
    for path in &args.pcaps {
        let outcome = classify_capture_partial(path, EngineConfig::default(), &[]);
        if args.format == "jsonl" {
            for f in &outcome.flows {
                writeln!(out, "{}", f.to_json()).context("writing to stdout")?;
            }
        } else {
            all.extend(outcome.flows);
        }
        if let Some(e) = outcome.error {
            // Flows read before the error were printed; say where the file went bad and go on.
            out.flush().context("writing to stdout")?;
            eprintln!("peerwarden: {}: {e}", path.display());
            failed = true;
        }
    }
    if args.format == "table" {
        write_table(&mut out, &all).context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn write_table(out: &mut impl Write, flows: &[FlowRecord]) -> io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<6} {:>8} {:>10} {:>14}",
        "label", "class", "flows", "packets", "bytes"
    )?;
    let (mut f, mut p, mut b) = (0, 0, 0);
    for (name, class, t) in summarize(flows) {
        writeln!(
            out,
            "{name:<24} {class:<6} {:>8} {:>10} {:>14}",
            t.flows, t.packets, t.bytes
        )?;
        (f, p, b) = (f + t.flows, p + t.packets, b + t.bytes);
    }
    writeln!(out, "{:<24} {:<6} {f:>8} {p:>10} {b:>14}", "total", "")
}
