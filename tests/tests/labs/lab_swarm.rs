//! A real BitTorrent swarm through the gateway (libtorrent seeder and leecher, opentracker,
//! HTTP background with nginx and curl), checked against packet captures.
//!
//! Ground truth comes from tcpdump, not from the probe. The probe counts whole Ethernet
//! frames at XDP ingress: on `downlink` for the up direction, on `uplink` for the down
//! direction. The frames arriving there are exactly the frames the peer ends of those veths
//! transmit, so the captures are taken on the peer ends, outbound only:
//!
//! - up: the switch port `gw` in `<prefix>-sw` (its frames enter `downlink`),
//! - down: `eth0` in `<prefix>-net` (its frames enter `uplink`).
//!
//! That matches the probe's vantage point whatever the gateway then does with a frame
//! (forward, police, drop), and it counts each frame once with the same length the probe
//! sees (offloads are off on lab veths, so no GSO super-frames; veths carry no FCS).
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs lab_swarm::`.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use peerwarden_tests::{
    captures::{FlowFrame, Tuple, flow_frames},
    lab::{Capture, Lab, TempDir, peerwarden_bin, run_bounded},
};

const PREFIX: &str = "pwts";
const API_PORT: u16 = 19451;

const ALICE: &str = "100.64.1.10";
const TRACKER: &str = "198.51.100.2";
const SEEDER: &str = "198.51.100.7";
const WEB: [&str; 2] = ["203.0.113.10", "2001:db8:203::10"];

/// Every TCP/UDP frame between alice (the leecher) and the seeder or the tracker.
const SWARM_FILTER: &str =
    "(tcp or udp) and host 100.64.1.10 and (host 198.51.100.7 or host 198.51.100.2)";

/// The label a swarm flow must get, from its remote end (the flow's `dst`).
fn expected_label(proto: &str, dst: IpAddr, dport: u16) -> &'static str {
    let tracker: IpAddr = TRACKER.parse().expect("address");
    let seeder: IpAddr = SEEDER.parse().expect("address");
    match (proto, dst) {
        (_, d) if d == tracker && dport == 6969 => "bittorrent.tracker",
        ("tcp", d) if d == seeder => "bittorrent",
        ("udp", d) if d == seeder => "bittorrent.utp",
        _ => "(not a swarm flow)",
    }
}

/// Per-flow frame bytes of a capture, keyed subscriber side first (as the API reports).
fn bytes_by_flow(frames: &[FlowFrame]) -> (u64, BTreeMap<Tuple, u64>) {
    let alice: IpAddr = ALICE.parse().expect("address");
    let mut total = 0;
    let mut flows = BTreeMap::new();
    for f in frames {
        total += u64::from(f.len);
        if let Some((proto, src, sport, dst, dport)) = f.tuple {
            let key = if src == alice {
                (proto, src, sport, dst, dport)
            } else {
                (proto, dst, dport, src, sport)
            };
            *flows.entry(key).or_insert(0) += u64::from(f.len);
        }
    }
    (total, flows)
}

fn pair(v: &serde_json::Value) -> [u64; 2] {
    [v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0)]
}

#[test]
fn swarm_through_the_gateway_is_counted_as_p2p() {
    let tmp = TempDir::new("lab-swarm");
    let lab = Lab::up(PREFIX, API_PORT, &[]);

    let up_cap = Capture::start(
        &lab.netns("sw"),
        "gw",
        "out",
        SWARM_FILTER,
        &tmp.0.join("up.pcap"),
    );
    let down_cap = Capture::start(
        &lab.netns("net"),
        "eth0",
        "out",
        SWARM_FILTER,
        &tmp.0.join("down.pcap"),
    );

    let t0 = Instant::now();
    let out = run_bounded(
        Command::new(peerwarden_bin()).args([
            "lab",
            "traffic",
            "--prefix",
            PREFIX,
            "--seconds",
            "120",
        ]),
        Duration::from_secs(180),
    );
    let traffic_time = t0.elapsed();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "lab traffic failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `lab traffic` returns after every client and server it started has exited, so the
    // last FINs and resets are on the wire by now; a moment more for stragglers.
    thread::sleep(Duration::from_secs(1));
    let up_dropped = up_cap.stop();
    let down_dropped = down_cap.stop();
    assert_eq!(
        up_dropped, 0,
        "tcpdump (up) dropped packets: the ground truth is incomplete"
    );
    assert_eq!(
        down_dropped, 0,
        "tcpdump (down) dropped packets: the ground truth is incomplete"
    );

    let (truth_up, flows_up) = bytes_by_flow(&flow_frames(&tmp.0.join("up.pcap")));
    let (truth_down, flows_down) = bytes_by_flow(&flow_frames(&tmp.0.join("down.pcap")));
    assert!(
        truth_up > 0 && truth_down > 1_000_000,
        "captures look empty: {truth_up} up, {truth_down} down"
    );

    // The daemon reads the probe's maps once a second: wait until the p2p counters settle.
    let p2p_bytes = |mix: &serde_json::Value| pair(&mix["classes"]["p2p"]["bytes"]);
    let mut mix = lab.api("/api/v1/mix");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        thread::sleep(Duration::from_millis(1500));
        let next = lab.api("/api/v1/mix");
        let settled = p2p_bytes(&next) == p2p_bytes(&mix);
        mix = next;
        if settled || Instant::now() >= deadline {
            break;
        }
    }
    let [p2p_up, p2p_down] = p2p_bytes(&mix);

    let flows = lab.api("/api/v1/flows?limit=10000");
    let flows = flows["flows"].as_array().expect("flows array").clone();
    let mut api_flows: BTreeMap<Tuple, &serde_json::Value> = BTreeMap::new();
    for f in &flows {
        let proto = match f["proto"].as_str() {
            Some("tcp") => "tcp",
            Some("udp") => "udp",
            _ => continue,
        };
        let (Some(src), Some(dst)) = (
            f["src"].as_str().and_then(|s| s.parse().ok()),
            f["dst"].as_str().and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        let port = |k: &str| {
            f[k].as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0)
        };
        api_flows.insert((proto, src, port("sport"), dst, port("dport")), f);
    }

    // Diagnostics first, so a failure below comes with the whole picture.
    let mut swarm: BTreeMap<Tuple, [u64; 2]> = BTreeMap::new();
    for (k, b) in &flows_up {
        swarm.entry(*k).or_default()[0] += b;
    }
    for (k, b) in &flows_down {
        swarm.entry(*k).or_default()[1] += b;
    }
    eprintln!("lab traffic took {:.1} s", traffic_time.as_secs_f64());
    eprintln!(
        "truth: up {truth_up} B, down {truth_down} B; mix p2p: up {p2p_up} B, down {p2p_down} B"
    );
    eprintln!("swarm flows (capture [up, down] vs API label and bytes):");
    for (k, b) in &swarm {
        let api = api_flows.get(k);
        eprintln!(
            "  {} {}:{} -> {}:{}  capture {b:?}  api {} {}",
            k.0,
            k.1,
            k.2,
            k.3,
            k.4,
            api.and_then(|f| f["label"].as_str()).unwrap_or("(missing)"),
            api.map(|f| f["bytes"].to_string()).unwrap_or_default(),
        );
    }
    eprintln!("mix labels: {}", mix["labels"]);

    // 1. The p2p class holds the swarm's bytes: all of them, and nothing else of size.
    let truth = (truth_up + truth_down) as f64;
    let ratio = (p2p_up + p2p_down) as f64 / truth;
    eprintln!(
        "p2p / truth: {ratio:.5} (up {:.5}, down {:.5})",
        p2p_up as f64 / truth_up as f64,
        p2p_down as f64 / truth_down as f64
    );
    assert!(
        (0.99..=1.01).contains(&ratio),
        "p2p bytes {} vs {} captured between the BitTorrent hosts (ratio {ratio:.5})",
        p2p_up + p2p_down,
        truth
    );

    // 2. Every swarm flow in the captures is listed, with the label its protocol deserves.
    let mut wrong = Vec::new();
    for k in swarm.keys() {
        let want = expected_label(k.0, k.3, k.4);
        match api_flows.get(k) {
            None => wrong.push(format!("{k:?}: not listed")),
            Some(f) if f["label"] != want || f["class"] != "p2p" => wrong.push(format!(
                "{k:?}: {} / {} (expected {want} / p2p)",
                f["label"], f["class"]
            )),
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "swarm flows labelled wrongly:\n{}",
        wrong.join("\n")
    );
    for label in ["bittorrent", "bittorrent.utp", "bittorrent.tracker"] {
        assert!(
            swarm.keys().any(|k| expected_label(k.0, k.3, k.4) == label),
            "the swarm had no {label} flow (the leecher runs a TCP and a uTP session)"
        );
    }

    // 3. The HTTP background crossed the gateway and none of it is p2p.
    let web: Vec<IpAddr> = WEB.iter().map(|a| a.parse().expect("address")).collect();
    let http: Vec<&serde_json::Value> = flows
        .iter()
        .filter(|f| {
            f["dst"]
                .as_str()
                .and_then(|d| d.parse::<IpAddr>().ok())
                .is_some_and(|d| web.contains(&d))
        })
        .collect();
    assert!(
        !http.is_empty(),
        "no HTTP flow to the web server in /api/v1/flows"
    );
    let http_bytes: u64 = http
        .iter()
        .map(|f| pair(&f["bytes"]).iter().sum::<u64>())
        .sum();
    assert!(
        http_bytes > 1_000_000,
        "the HTTP background moved only {http_bytes} bytes"
    );
    let p2p_http: Vec<String> = http
        .iter()
        .filter(|f| f["class"] == "p2p")
        .map(|f| f.to_string())
        .collect();
    assert!(
        p2p_http.is_empty(),
        "HTTP flows classed p2p:\n{}",
        p2p_http.join("\n")
    );
}
