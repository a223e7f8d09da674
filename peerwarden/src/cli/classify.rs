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

#[cfg(test)]
mod tests {
    use peerwarden_classifier::{FlowKey, Verdict};
    use peerwarden_common::{Confidence, Label};

    use super::*;

    fn rec(label: Label, service: Option<&str>, packets: u64) -> FlowRecord {
        FlowRecord {
            key: FlowKey {
                proto: 6,
                src: "100.64.1.10:40000".parse().expect("addr"),
                dst: "198.51.100.7:443".parse().expect("addr"),
            },
            verdict: Verdict {
                label,
                service: service.map(str::to_owned),
                confidence: Confidence::Payload,
            },
            packets: [packets, 1],
            bytes: [100 * packets, 60],
            first_ns: 0,
            last_ns: 0,
        }
    }

    #[test]
    fn table_sums_per_printed_label() {
        let flows = [
            rec(Label::VideoService, Some("youtube"), 3),
            rec(Label::VideoService, Some("youtube"), 1),
            rec(Label::Bittorrent, None, 5),
            rec(Label::Tls, None, 2),
        ];
        let mut out = Vec::new();
        write_table(&mut out, &flows).expect("written");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("bittorrent ") && lines[1].contains(" p2p "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("video.youtube") && lines[2].ends_with("520"),
            "{text}"
        );
        assert!(lines[3].starts_with("tls "), "{text}");
        assert!(
            lines[4].starts_with("total") && lines[4].contains(" 4 "),
            "{text}"
        );
    }
}
