//! Writes the fuzz targets' seed corpora from captures: `seeds OUT_DIR CAPTURE...`.
//!
//! For each capture, read with the project's own reader and decoder:
//! - `capture/`: the file itself, if it is at most 64 KiB (larger ones slow every run);
//! - `frames/`: its first 48 frames in the `frames` target's format (a link-type pick byte,
//!   then each frame behind a 2-byte length);
//! - `fingerprints/`: each distinct TCP/UDP payload head (first 256 bytes) of its first
//!   packets per flow, up to 64 a capture;
//! - `tls_sni/`: payloads that open a TLS record, and the bare handshake inside;
//! - `quic_initial/`: the first UDP datagrams of flows that look like QUIC, 2-byte-length
//!   framed as the `quic_initial` target reads them;
//! - `dns_answer/`: UDP payloads to or from port 53, and TCP ones (length-prefixed already).
//! - `swarms/`: the same payload heads as `fingerprints/` (first 1,504 bytes, a sample's),
//!   behind the transport byte the `swarms` target reads (0 TCP, 1 UDP).
//!
//! Built without sanitizers (`cargo run --example seeds`), by scripts/fuzz.sh.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use peerwarden_classifier::{
    CaptureReader,
    packet::{self, UDP},
    protocols::{quic, tls},
};

#[path = "../fuzz_targets/link_types.rs"]
mod link_types;
use link_types::LINK_TYPES as LINK_PICK;

struct Out {
    root: PathBuf,
    seen: HashSet<u64>,
    written: HashMap<&'static str, usize>,
}

impl Out {
    fn put(&mut self, target: &'static str, bytes: &[u8]) {
        // FNV-1a names the file and drops duplicates.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in target.bytes().chain(bytes.iter().copied()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        if bytes.is_empty() || !self.seen.insert(h) {
            return;
        }
        let dir = self.root.join(target);
        if let Err(e) =
            fs::create_dir_all(&dir).and_then(|()| fs::write(dir.join(format!("{h:016x}")), bytes))
        {
            eprintln!("seeds: writing {}: {e}", dir.display());
            std::process::exit(1);
        }
        *self.written.entry(target).or_default() += 1;
    }
}

fn one(out: &mut Out, path: &Path) {
    let Ok(file) = fs::read(path) else {
        return;
    };
    if file.len() <= 64 * 1024 {
        out.put("capture", &file);
    }
    let Ok(mut reader) = CaptureReader::open(path) else {
        return;
    };
    let mut frames: Vec<u8> = Vec::new();
    let mut per_flow: HashMap<(u16, u16), usize> = HashMap::new();
    let mut quic_flows: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
    let (mut n, mut payloads, mut dns_seeds) = (0usize, 0usize, 0usize);
    while let Ok(Some(f)) = reader.next_frame() {
        n += 1;
        if n > 2000 {
            break;
        }
        if n <= 48 {
            if frames.is_empty() {
                let pick = LINK_PICK
                    .iter()
                    .position(|&l| l == f.link_type)
                    .unwrap_or(0);
                frames.push(pick as u8);
            }
            let len = f.data.len().min(u16::MAX as usize);
            frames.extend_from_slice(&(len as u16).to_be_bytes());
            frames.extend_from_slice(&f.data[..len]);
        }
        let Ok(d) = packet::decode(f.link_type, f.data) else {
            continue;
        };
        let p = d.payload;
        let flow = (d.sport.min(d.dport), d.sport.max(d.dport));
        let count = per_flow.entry(flow).or_default();
        *count += 1;
        if !p.is_empty() && *count <= 4 && payloads < 64 {
            payloads += 1;
            out.put("fingerprints", &p[..p.len().min(256)]);
            let transport = u8::from(d.proto == UDP);
            let head = &p[..p.len().min(1504)];
            out.put("swarms", &[&[transport], head].concat());
        }
        if tls::is_handshake_record(p) {
            out.put("tls_sni", p);
            let len = u16::from_be_bytes([p[3], p[4]]) as usize;
            out.put("tls_sni", &p[5..p.len().min(5 + len)]);
        }
        if (d.sport == 53 || d.dport == 53) && !p.is_empty() && dns_seeds < 64 {
            dns_seeds += 1;
            out.put("dns_answer", p);
        }
        if d.proto == UDP && quic::looks_like(p) {
            let run = quic_flows.entry(flow).or_default();
            if run.len() < 8 * 1400 {
                run.extend_from_slice(&(p.len() as u16).to_be_bytes());
                run.extend_from_slice(p);
            }
        }
    }
    if frames.len() > 1 {
        out.put("frames", &frames);
    }
    for run in quic_flows.values() {
        out.put("quic_initial", run);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((root, captures)) = args.split_first() else {
        eprintln!("usage: seeds OUT_DIR CAPTURE...");
        std::process::exit(2);
    };
    let mut out = Out {
        root: PathBuf::from(root),
        seen: HashSet::new(),
        written: HashMap::new(),
    };
    for c in captures {
        one(&mut out, Path::new(c));
    }
    let mut counts: Vec<_> = out.written.into_iter().collect();
    counts.sort();
    println!("seeds from {} captures: {counts:?}", captures.len());
}
