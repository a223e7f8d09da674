//! Issue 11's adversarial corpus (`peerwarden_tests::adversarial`) through both tiers.
//!
//! - `classify_labels_every_case`: every case's frames in one classic pcap, through
//!   `peerwarden classify --format jsonl`; each checked flow found by its 5-tuple (either
//!   way round) and its label compared with the exact expectation. No root needed.
//! - `gateway_labels_every_case` (root): one lab (`peerwarden lab up`, prefix `adv`, API
//!   port 9677) with the real daemon attached to the gateway; every frame injected in
//!   order through an AF_PACKET socket, `Up` frames on the switch's port towards the
//!   gateway's downlink, `Down` frames on the internet namespace's link towards its uplink,
//!   25 ms apart (the deep tier's verdict is applied on the flow's next packet), bulk
//!   poisoning 2 ms apart. Then the labels from `GET /api/v1/flows`. The frames carry the
//!   veths' MAC addresses. The gateway forwards them into unanswered ARP/ND, so nothing
//!   answers but the corpus, with one exception: poisoner A is the lab's alice
//!   (100.64.1.10), whose kernel answers the SYN-ACK of A's own TCP poisoning flow with a
//!   reset (on that flow only; it is not a checked flow). IPv4 and IPv6 alike: XDP sees
//!   every frame whatever the lab routes.
//! - `kernel_alone_never_hits_the_innocent` (root): the same frames through the kernel
//!   program alone (`BPF_PROG_TEST_RUN`, no deep tier). It must give the exact label where
//!   its own fingerprints hold the evidence (uTP pairing, DHT), and never a p2p or video
//!   label to a poisoning case's innocent sessions or a look-alike; disguises that need the
//!   deep tier are shown, not judged.
//!
//! All print a table (case, family, group, expected, then each tier's labels with their
//! counts, `ok`/`FAIL`/`n/a`), then fail on any judged case with a checked flow that does
//! not pass (classify and the gateway: the exact expected label).
//! `cargo test -p peerwarden-tests --test labs adversarial:: -- --nocapture --test-threads=1`.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::CString,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
    process::Command,
    thread,
    time::Duration,
};

use peerwarden_common::{Class, Direction, Label};
use peerwarden_tests::{
    adversarial::{Case, Check, Group, corpus},
    lab::{Lab, TempDir, peerwarden_ok},
    packets::{Conversation, Family, Vlan},
    xdp::TestProbe,
};
use serde_json::Value;

/// A flow's identity whichever end opened it: proto and its two ends, sorted.
type FlowId = (String, SocketAddr, SocketAddr);

fn flow_id(proto: &str, a: SocketAddr, b: SocketAddr) -> FlowId {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    (proto.to_string(), x, y)
}

fn check_id(c: &Check) -> FlowId {
    flow_id(c.proto, c.sub, c.remote)
}

/// Writes `frames` as a classic pcap (little-endian, microseconds, Ethernet), one
/// millisecond apart from a fixed start.
fn write_pcap(path: &Path, frames: &[&[u8]]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes()); // magic: microseconds
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    let start_us: u64 = 1_795_000_000 * 1_000_000;
    for (i, f) in frames.iter().enumerate() {
        let ts = start_us + i as u64 * 1000;
        out.extend_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        let len = u32::try_from(f.len()).expect("frame length");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Labels of flow records (classify's jsonl lines, or the API's `flows`), by flow.
fn labels_of<'a>(records: impl Iterator<Item = &'a Value>) -> HashMap<FlowId, String> {
    let mut out = HashMap::new();
    for r in records {
        let end = |addr: &str, port: &str| -> Option<SocketAddr> {
            let ip: IpAddr = r[addr].as_str()?.parse().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(r[port].as_u64()?).ok()?))
        };
        let (Some(proto), Some(src), Some(dst), Some(label)) = (
            r["proto"].as_str(),
            end("src", "sport"),
            end("dst", "dport"),
            r["label"].as_str(),
        ) else {
            panic!("a flow record without proto, ends or label: {r}");
        };
        out.insert(flow_id(proto, src, dst), label.to_string());
    }
    out
}

/// Runs the whole corpus through `peerwarden classify`; labels by flow.
fn classify(cases: &[Case]) -> HashMap<FlowId, String> {
    let dir = TempDir::new("adversarial");
    let pcap = dir.0.join("adversarial.pcap");
    let frames: Vec<&[u8]> = cases
        .iter()
        .flat_map(|c| c.frames.iter().map(|s| s.frame.as_slice()))
        .collect();
    write_pcap(&pcap, &frames);
    let out = peerwarden_ok(
        &[
            "classify",
            "--format",
            "jsonl",
            pcap.to_str().expect("a UTF-8 temp path"),
        ],
        Duration::from_secs(120),
    );
    let records: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("classify printed {l:?}: {e}")))
        .collect();
    labels_of(records.iter())
}

/// How a tier's label for one checked flow is judged.
#[derive(Clone, Copy)]
enum Judge {
    /// The exact expected label (classify and the gateway: both tiers together).
    Exact,
    /// The kernel alone: the exact label where its fingerprints hold the evidence
    /// (`Case::kernel_alone`); for poisoning and look-alike cases, a class other than p2p
    /// and video (the innocent must never be hit, whatever else the kernel cannot name);
    /// disguises that need the deep tier are shown, not judged.
    KernelAlone,
}

/// The class of a report label (`video.<service>` is video).
fn class_of(label: &str) -> Option<Class> {
    if label.starts_with("video.") {
        return Some(Class::Video);
    }
    Label::from_name(label).map(Label::class)
}

impl Judge {
    /// What it wants of `case`, for failure messages.
    fn wanted(self, case: &Case) -> String {
        match self {
            Judge::KernelAlone if !case.kernel_alone => "no p2p or video label".to_string(),
            _ => expected(case).to_string(),
        }
    }

    fn judge(self, case: &Case, check: &Check, got: &str) -> Option<bool> {
        match self {
            Judge::Exact => Some(got == check.expected),
            Judge::KernelAlone if case.kernel_alone => Some(got == check.expected),
            Judge::KernelAlone if case.group == Group::Disguise => None,
            Judge::KernelAlone => {
                Some(got != "missing" && !matches!(class_of(got), Some(Class::P2p | Class::Video)))
            }
        }
    }
}

/// What a tier said about a case's checked flows: each distinct label with its count
/// (`missing` for a flow the tier did not report), and whether all pass the judge (`None`:
/// not judged for this tier).
fn verdict(case: &Case, labels: &HashMap<FlowId, String>, judge: Judge) -> (String, Option<bool>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ok = Some(true);
    for c in &case.checks {
        let got = labels.get(&check_id(c)).map_or("missing", String::as_str);
        ok = match (ok, judge.judge(case, c, got)) {
            (Some(a), Some(b)) => Some(a && b),
            _ => None,
        };
        *seen.entry(got).or_default() += 1;
    }
    let text = seen
        .iter()
        .map(|(l, n)| {
            if *n == 1 {
                l.to_string()
            } else {
                format!("{l} x{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    (text, ok)
}

fn expected(case: &Case) -> &'static str {
    let e = case.checks[0].expected;
    assert!(
        case.checks.iter().all(|c| c.expected == e),
        "{}: one expectation per case",
        case.name
    );
    e
}

fn family(f: Family) -> &'static str {
    match f {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

/// One column of the results table.
struct Tier<'a> {
    name: &'static str,
    labels: &'a HashMap<FlowId, String>,
    judge: Judge,
    /// Whether its failures fail the test (the gateway test shows classify's column too).
    asserted: bool,
}

/// Prints the table; returns the failing rows of the asserted tiers.
fn report(cases: &[Case], tiers: &[Tier]) -> Vec<String> {
    let mut head = format!(
        "{:<34} {:<3} {:<10} {:<15}",
        "case", "fam", "group", "expected"
    );
    for t in tiers {
        head.push_str(&format!(" {:<30}", t.name));
    }
    eprintln!("{head}");
    let mut failures = Vec::new();
    let mut passed = vec![(0usize, 0usize); tiers.len()];
    for case in cases {
        let mut row = format!(
            "{:<34} {:<3} {:<10} {:<15}",
            case.name,
            family(case.family),
            case.group.name(),
            expected(case)
        );
        for (i, t) in tiers.iter().enumerate() {
            let (text, ok) = verdict(case, t.labels, t.judge);
            let mark = match ok {
                Some(true) => "ok",
                Some(false) => "FAIL",
                None => "n/a",
            };
            row.push_str(&format!(" {:<30}", format!("{mark} {text}")));
            if let Some(ok) = ok {
                passed[i].1 += 1;
                if ok {
                    passed[i].0 += 1;
                } else if t.asserted {
                    failures.push(format!(
                        "{} ({}): {} said {text}, expected {}",
                        case.name,
                        family(case.family),
                        t.name,
                        t.judge.wanted(case)
                    ));
                }
            }
        }
        eprintln!("{row}");
    }
    for (t, (ok, judged)) in tiers.iter().zip(passed) {
        eprintln!("{}: {ok}/{judged} judged cases pass", t.name);
    }
    failures
}

#[test]
fn classify_labels_every_case() {
    let cases = corpus();
    let labels = classify(&cases);
    let failures = report(
        &cases,
        &[Tier {
            name: "classify",
            labels: &labels,
            judge: Judge::Exact,
            asserted: true,
        }],
    );
    assert!(
        failures.is_empty(),
        "{} adversarial cases mislabelled by classify:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The MAC address of `dev` in namespace `ns`.
fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = Command::new("ip")
        .args(["-j", "-n", ns, "link", "show", "dev", dev])
        .output()
        .expect("ip link");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ip -j -n {ns} link show dev {dev}: {e}"));
    let text = v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address for {ns}/{dev}: {v}"));
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("a hex MAC"))
        .collect();
    bytes.try_into().expect("six bytes")
}

/// A raw AF_PACKET socket bound to `dev` in namespace `ns` (sending only: protocol 0
/// receives nothing). A socket stays in the namespace it was made in, so a thread enters
/// the namespace, makes it and ends.
struct Injector {
    fd: OwnedFd,
    src: [u8; 6],
    dst: [u8; 6],
}

impl Injector {
    fn new(ns: &str, dev: &str, src: [u8; 6], dst: [u8; 6]) -> Injector {
        let (ns_path, dev_name) = (format!("/run/netns/{ns}"), dev.to_string());
        let fd = thread::spawn(move || -> Result<OwnedFd, String> {
            let nsf = std::fs::File::open(&ns_path).map_err(|e| format!("{ns_path}: {e}"))?;
            // SAFETY: a valid namespace fd; setns changes only this thread's namespace.
            if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "setns {ns_path}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let name = CString::new(dev_name.clone()).map_err(|e| e.to_string())?;
            // SAFETY: a NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(format!("no {dev_name} in {ns_path}"));
            }
            // SAFETY: plain socket call; the fd is owned at once.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            if raw < 0 {
                return Err(format!(
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: `raw` is a new descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: sockaddr_ll is plain data; zero is a valid start.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = index as i32;
            // SAFETY: a valid sockaddr_ll of the size given.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                return Err(format!(
                    "bind to {dev_name}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(fd)
        })
        .join()
        .expect("the namespace thread")
        .unwrap_or_else(|e| panic!("an AF_PACKET socket on {ns}/{dev}: {e}"));
        Injector { fd, src, dst }
    }

    fn send(&self, frame: &[u8]) {
        let mut f = frame.to_vec();
        f[0..6].copy_from_slice(&self.dst);
        f[6..12].copy_from_slice(&self.src);
        // SAFETY: a valid buffer of the length given.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        assert_eq!(
            n,
            f.len() as isize,
            "sending a {}-byte frame: {}",
            f.len(),
            std::io::Error::last_os_error()
        );
    }
}

const PREFIX: &str = "adv";
const API_PORT: u16 = 9677;
/// Between two frames that may need a deep-tier verdict before the next.
const PACED_GAP: Duration = Duration::from_millis(25);
/// Between two frames of bulk poisoning.
const BULK_GAP: Duration = Duration::from_millis(2);

/// Every flow the daemon lists, by flow.
fn gateway_labels(lab: &Lab) -> (HashMap<FlowId, String>, usize) {
    let v = lab.api("/api/v1/flows?limit=10000");
    let flows = v["flows"].as_array().expect("a flows array");
    assert!(
        v["next_cursor"].is_null(),
        "more than 10,000 flows listed: the lab is not this test's alone"
    );
    (labels_of(flows.iter()), flows.len())
}

#[test]
fn gateway_labels_every_case() {
    let cases = corpus();
    let offline = classify(&cases);
    let lab = Lab::up(PREFIX, API_PORT, &[]);
    let (sw, gw, net) = (lab.netns("sw"), lab.netns("gw"), lab.netns("net"));
    let up = Injector::new(&sw, "gw", mac(&sw, "gw"), mac(&gw, "downlink"));
    let down = Injector::new(&net, "eth0", mac(&net, "eth0"), mac(&gw, "uplink"));
    let mut sent = 0usize;
    for case in &cases {
        for s in &case.frames {
            match s.dir {
                Direction::Up => up.send(&s.frame),
                Direction::Down => down.send(&s.frame),
            }
            sent += 1;
            thread::sleep(if s.paced { PACED_GAP } else { BULK_GAP });
        }
    }
    // The daemon reads the kernel's flow table once a second.
    thread::sleep(Duration::from_secs(3));
    let (labels, listed) = gateway_labels(&lab);
    eprintln!("{sent} frames injected, {listed} flows listed by the gateway");
    let failures = report(
        &cases,
        &[
            Tier {
                name: "classify",
                labels: &offline,
                judge: Judge::Exact,
                asserted: false,
            },
            Tier {
                name: "gateway",
                labels: &labels,
                judge: Judge::Exact,
                asserted: true,
            },
        ],
    );
    assert!(
        failures.is_empty(),
        "{} adversarial cases mislabelled through the gateway:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn kernel_alone_never_hits_the_innocent() {
    let cases = corpus();
    let mut probe = TestProbe::load();
    for case in &cases {
        for s in &case.frames {
            probe.send(s.dir, &s.frame);
        }
    }
    let table = probe.flows();
    let mut labels = HashMap::new();
    for case in &cases {
        for c in &case.checks {
            let conv = Conversation {
                sub: c.sub,
                remote: c.remote,
                vlan: Vlan::Untagged,
            };
            let proto = if c.proto == "tcp" { 6 } else { 17 };
            let key = conv.key(proto);
            if let Some((_, v)) = table.iter().find(|(k, _)| *k == key) {
                labels.insert(check_id(c), Label::from_id(v.label).name().to_string());
            }
        }
    }
    let failures = report(
        &cases,
        &[Tier {
            name: "kernel alone",
            labels: &labels,
            judge: Judge::KernelAlone,
            asserted: true,
        }],
    );
    assert!(
        failures.is_empty(),
        "{} adversarial cases failed in the kernel alone:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
