//! Scores the classifier on the lab's real-client captures, whose ground truth is known by
//! construction (issue 3): `tests/fixtures/lab/<scenario>.pcap` beside
//! `<scenario>.truth.csv`, made by `lab/capture/run.sh <scenario>` (libtorrent with forced
//! encryption, over uTP only, through lab DHT nodes only; HLS and DASH played by ffmpeg from
//! nginx; RTMP through nginx-rtmp; DNS, HTTP, TLS and iperf3 in the background of each) and
//! cut by `lab/capture/trim.py` to each flow's first 34 payload packets (`edonkey-obfuscated`:
//! aMule clients whose Kad is obfuscated, and some of whose TCP is, cut to 8, under 200
//! kB); and `iptv.pcap`,
//! recorded by `tests/tests/labs/iptv_lab.rs` (ffmpeg's MPEG-TS over UDP and RTP, unicast
//! and multicast, beside iperf3 UDP in TS-sized datagrams), cut to 24.
//!
//! A truth row says "every flow of this protocol to or from this endpoint is p2p, video or
//! other"; the first row matching a flow decides. Scored as `score.rs` scores the corpus:
//! over all the captures' flows together, p2p recall at least 0.99, video recall at least
//! 0.95, false positives (p2p or video among the other flows) at most 0.1 %; and at least
//! 95 % of the encrypted BitTorrent flows and 90 % of the obfuscated Kad flows labelled p2p. Each capture's figures are printed
//! too; one capture alone holds too few flows for a 0.99 bar (one miss in 56 is 0.982).
//! A flow that no row explains fails the test: the capture would hold traffic its scenario
//! did not plan.
//!
//! Every flow given the wrong class must be listed in [`REVIEWED_MISSES`] with its reason,
//! and a listed flow that is right now fails the test too (remove it), as
//! `tests/disagreements.csv` works for the corpus. The truth is not corrected by the list:
//! it is right by construction, so the thresholds count the misses.
//!
//! `tests/tests/lab_captures.rs` (the integration crate, as root) regenerates the captures
//! with the real clients and scores them with the same rules.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use peerwarden_classifier::{EngineConfig, FlowKey, FlowRecord, classify_capture_partial};
use peerwarden_common::Class;

const MIN_P2P_RECALL: f64 = 0.99;
const MIN_VIDEO_RECALL: f64 = 0.95;
const MAX_FP_RATE: f64 = 0.001;
const MIN_ENCRYPTED_P2P: f64 = 0.95;
const ENCRYPTED: &str = "bittorrent.encrypted";
const MIN_OBFUSCATED_KAD: f64 = 0.90;
const OBFUSCATED_KAD: &str = "edonkey.kad";

/// What each capture must hold at least, so a thin re-recording cannot pass unnoticed:
/// (scenario, kind of traffic, flows).
const EXPECTED: &[(&str, &str, u64)] = &[
    ("bt-encrypted", ENCRYPTED, 20),
    ("bt-encrypted", "bittorrent.tracker", 10),
    ("bt-utp", "bittorrent.utp", 20),
    ("bt-dht", "bittorrent.dht", 20),
    ("bt-dht", "bittorrent", 20),
    ("hls", "hls", 8),
    ("dash", "dash", 8),
    ("rtmp", "rtmp", 4),
    ("background", "dns", 10),
    ("background", "http", 8),
    ("background", "tls", 3),
    ("background", "iperf3", 3),
    ("iptv", "iptv", 4),
    ("iptv", "iperf3", 2),
    ("iptv", "rtcp", 1),
    ("edonkey-obfuscated", OBFUSCATED_KAD, 8),
    ("edonkey-obfuscated", "edonkey", 8),
    ("edonkey-obfuscated", "edonkey.downloader", 4),
    ("edonkey-obfuscated", "dns", 10),
];

/// Flows the classifier gets wrong, reviewed: (capture, `proto src -> dst`, why).
// Empty since bittorrent::structured_start's single-byte and alphanumeric rules were
// narrowed: they had rejected about 2 % of MSE connections at random (one of this capture's).
const REVIEWED_MISSES: &[(&str, &str, &str)] = &[];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab")
}

/// The captures, sorted by name.
fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/lab readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

struct Row {
    proto: u8,
    endpoint: SocketAddr,
    class: &'static str,
    what: String,
}

/// `proto,host,port,class,what` after a header line; `#` lines are comments.
fn truth(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (every capture needs its truth)", path.display()));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').collect();
        let [proto, host, port, class, what] = f[..] else {
            panic!("{at}: {} fields, 5 wanted", f.len());
        };
        let proto = match proto {
            "tcp" => 6,
            "udp" => 17,
            p => panic!("{at}: protocol {p:?}"),
        };
        let ip: IpAddr = host
            .parse()
            .unwrap_or_else(|_| panic!("{at}: address {host:?}"));
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("{at}: port {port:?}"));
        let class = match class {
            "p2p" => "p2p",
            "video" => "video",
            "other" => "other",
            c => panic!("{at}: class {c:?}"),
        };
        rows.push(Row {
            proto,
            endpoint: SocketAddr::new(ip, port),
            class,
            what: what.to_string(),
        });
    }
    rows
}

fn lookup<'a>(rows: &'a [Row], key: &FlowKey) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.proto == key.proto && (r.endpoint == key.src || r.endpoint == key.dst))
}

/// The class the score counts: web and other are both "other".
fn ours(f: &FlowRecord) -> &'static str {
    match f.verdict.class() {
        Class::P2p => "p2p",
        Class::Video => "video",
        Class::Web | Class::Other => "other",
    }
}

#[derive(Clone, Copy, Default)]
struct Ratio(u64, u64);

impl Ratio {
    fn add(&mut self, hit: bool) {
        self.0 += u64::from(hit);
        self.1 += 1;
    }
    fn value(self) -> f64 {
        if self.1 == 0 {
            1.0
        } else {
            self.0 as f64 / self.1 as f64
        }
    }
    fn merge(&mut self, o: Ratio) {
        self.0 += o.0;
        self.1 += o.1;
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4} ({}/{})", self.value(), self.0, self.1)
    }
}

#[derive(Default)]
struct Score {
    p2p: Ratio,
    video: Ratio,
    fp: Ratio,
    kinds: BTreeMap<String, Ratio>,
}

impl Score {
    fn merge(&mut self, o: &Score) {
        self.p2p.merge(o.p2p);
        self.video.merge(o.video);
        self.fp.merge(o.fp);
        for (k, r) in &o.kinds {
            self.kinds.entry(k.clone()).or_default().merge(*r);
        }
    }

    fn line(&self) -> String {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, r)| format!("{k} {}/{}", r.0, r.1))
            .collect();
        format!(
            "p2p recall {}, video recall {}, false positives {}; {}",
            self.p2p,
            self.video,
            self.fp,
            kinds.join(", ")
        )
    }

    fn failures(&self, what: &str) -> Vec<String> {
        let mut v = Vec::new();
        if self.p2p.value() < MIN_P2P_RECALL {
            v.push(format!("{what}: p2p recall {}", self.p2p));
        }
        if self.video.value() < MIN_VIDEO_RECALL {
            v.push(format!("{what}: video recall {}", self.video));
        }
        if self.fp.value() > MAX_FP_RATE {
            v.push(format!("{what}: false positives {}", self.fp));
        }
        if let Some(r) = self.kinds.get(ENCRYPTED)
            && r.value() < MIN_ENCRYPTED_P2P
        {
            v.push(format!("{what}: {ENCRYPTED} labelled p2p {r}"));
        }
        if let Some(r) = self.kinds.get(OBFUSCATED_KAD)
            && r.value() < MIN_OBFUSCATED_KAD
        {
            v.push(format!("{what}: {OBFUSCATED_KAD} labelled p2p {r}"));
        }
        v
    }
}

#[test]
fn real_client_captures_meet_the_corpus_thresholds() {
    let files = captures();
    assert!(
        files.len() >= 9,
        "expected the nine lab captures in {}, found {}",
        fixtures().display(),
        files.len()
    );
    let mut problems = Vec::new();
    let mut total = Score::default();
    let mut per_capture = BTreeMap::new();
    let mut seen_flows = Vec::new();
    for pcap in &files {
        let name = pcap
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let rows = truth(&pcap.with_extension("truth.csv"));
        let out = classify_capture_partial(pcap, EngineConfig::default(), &[]);
        if let Some(e) = &out.error {
            problems.push(format!("{name}: {e}"));
        }
        let mut s = Score::default();
        for f in &out.flows {
            let proto = if f.key.proto == 6 { "tcp" } else { "udp" };
            let flow = format!("{proto} {} -> {}", f.key.src, f.key.dst);
            let shown = format!("{flow} {}", f.verdict);
            let Some(row) = lookup(&rows, &f.key) else {
                problems.push(format!("{name}: flow not in the ground truth: {shown}"));
                continue;
            };
            let ours = ours(f);
            let reviewed = REVIEWED_MISSES
                .iter()
                .any(|(c, fl, _)| *c == name && *fl == flow);
            if (ours != row.class) != reviewed {
                problems.push(if reviewed {
                    format!("{name}: {flow} is right now: remove it from REVIEWED_MISSES")
                } else {
                    format!(
                        "{name}: {}: {shown} ({}), truth {}: not in REVIEWED_MISSES",
                        row.what,
                        f.verdict.confidence.name(),
                        row.class
                    )
                });
            }
            seen_flows.push((name.clone(), flow));
            match row.class {
                "p2p" => s.p2p.add(ours == "p2p"),
                "video" => s.video.add(ours == "video"),
                _ => s.fp.add(ours != "other"),
            }
            s.kinds
                .entry(row.what.clone())
                .or_default()
                .add(ours == row.class);
            if ours != row.class {
                println!(
                    "{name}: {}: {shown} ({}), truth {}",
                    row.what,
                    f.verdict.confidence.name(),
                    row.class
                );
            }
        }
        println!("{name:<13} {}", s.line());
        total.merge(&s);
        per_capture.insert(name, s);
    }
    println!("{:<13} {}", "all", total.line());
    for (capture, flow, _) in REVIEWED_MISSES {
        if !seen_flows.iter().any(|(c, f)| c == capture && f == flow) {
            problems.push(format!(
                "{capture}: {flow} is in REVIEWED_MISSES but not in the capture"
            ));
        }
    }
    problems.extend(total.failures("all captures"));
    for (scenario, kind, min) in EXPECTED {
        let n = per_capture
            .get(*scenario)
            .and_then(|s| s.kinds.get(*kind))
            .map_or(0, |r| r.1);
        if n < *min {
            problems.push(format!(
                "{scenario}: {n} {kind} flows, at least {min} expected (re-record it)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
