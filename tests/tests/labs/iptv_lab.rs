//! IPTV through the real daemon (issue 12 item 4): ffmpeg in the lab's internet namespace
//! streams one MPEG-TS clip four ways at once, as head-ends do: bare TS over UDP to
//! alice's IPv4 address, RTP/MP2T (`-f rtp_mpegts`) to her IPv6 address, and bare TS to an
//! IPv4 group (239.1.1.1) and an IPv6 group (ff3e::8000:1), the groups routed onto the
//! lab's uplink only (the gateway, with no multicast routing, drops them after the probe
//! has counted them). Beside them, iperf3 sends alice UDP in 1316-byte datagrams (a TS
//! datagram's size, not its grammar).
//!
//! A tcpdump of whole frames on the gateway's uplink is the wire's truth. Checked:
//! - the daemon's `/api/v1/flows` shows the four streams labelled `iptv`, class `video`,
//!   each with exactly the bytes the capture saw coming down that flow
//!   ([`BYTES_TOLERANCE`]); the RTCP flow and iperf3's flows are not `iptv`;
//! - `/api/v1/mix` counts under `iptv` the four flows' bytes and nothing else;
//! - `peerwarden classify`'s library on the capture labels the four streams `iptv` and
//!   nothing else (truth by construction, as `classifier/tests/fixtures/lab/iptv.pcap`,
//!   made from one such capture, is scored by `lab_score.rs`).
//!
//! Bounded: every process under 60 s, the whole test about 20 s. Set
//! `PEERWARDEN_IPTV_CAPTURE=DIR` to keep the capture (to refresh the fixture).

use std::{collections::BTreeMap, path::Path, process::Command, thread, time::Duration};

use peerwarden_classifier::classify_capture;
use peerwarden_common::Label;
use peerwarden_tests::lab::{
    Capture, Lab, Procs, TempDir, run_bounded, spawn_in, until_still, wait_healthy,
};

const PREFIX: &str = "tv";
const API_PORT: u16 = 9651;
/// How far the daemon's bytes of a stream may be from the capture's: none. Five runs in a
/// row (2026-12-07) gave exactly the capture's bytes for every stream (441,784, 446,190,
/// 441,784 and 449,744): the probe and tcpdump see the same frames at the same interface,
/// the capture starts before the streams and stops after them, and a capture that lost a
/// frame fails on its drop count first.
const BYTES_TOLERANCE: u64 = 0;
/// The clip's length: its streams last as long (`-re`).
const CLIP_SECONDS: u32 = 6;

/// The four streams: (what, ffmpeg output, the subscriber-side port the flow is filed
/// under, which is the destination port of every stream).
const STREAMS: [(&str, &str, u16); 4] = [
    (
        "udp v4",
        "udp://100.64.1.10:5004?pkt_size=1316&localport=41004",
        5004,
    ),
    (
        "rtp v6",
        "rtp://[2001:db8:1::10]:5006?localrtpport=41006",
        5006,
    ),
    (
        "multicast v4",
        "udp://239.1.1.1:5008?pkt_size=1316&localport=41008&ttl=4",
        5008,
    ),
    (
        "multicast v6",
        "udp://[ff3e::8000:1]:5010?pkt_size=1316&localport=41010&ttl=4",
        5010,
    ),
];

/// A 6-second clip (test pattern and tone, MPEG-2 video and audio in MPEG-TS), made once
/// and streamed with `-c copy`, so the streams cost no encoding.
fn make_clip(dir: &Path) -> std::path::PathBuf {
    let clip = dir.join("clip.ts");
    let secs = CLIP_SECONDS.to_string();
    let out = run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &secs, "-c:v", "mpeg2video", "-b:v", "1M"])
            .args(["-c:a", "mp2", "-b:a", "128k", "-f", "mpegts"])
            .arg(&clip),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ffmpeg making the clip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    clip
}

fn ip(args: &[&str]) {
    let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(10));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The daemon's flows by their subscriber-side port: (label, class, bytes down).
fn daemon_flows(lab: &Lab) -> BTreeMap<(String, u16), (String, String, u64)> {
    let flows = lab.api("/api/v1/flows?limit=1000");
    flows["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["proto"] == "udp")
        .map(|f| {
            let s = |k: &str| f[k].as_str().expect(k).to_string();
            (
                (s("src"), f["sport"].as_u64().expect("sport") as u16),
                (
                    s("label"),
                    s("class"),
                    f["bytes"][1].as_u64().expect("bytes"),
                ),
            )
        })
        .collect()
}

#[test]
fn iptv_streams_are_labelled_and_counted_by_the_daemon() {
    let tmp = TempDir::new("iptv-lab");
    let clip = make_clip(&tmp.0);
    let lab = Lab::up(PREFIX, API_PORT, &[]);
    wait_healthy(lab.api_addr(), Duration::from_secs(30));
    let (net, gw, alice) = (lab.netns("net"), lab.netns("gw"), lab.netns("alice"));
    // The groups go out of the internet namespace onto the lab's uplink, nowhere else.
    ip(&["-n", &net, "route", "add", "239.0.0.0/8", "dev", "eth0"]);
    ip(&[
        "-n",
        &net,
        "-6",
        "route",
        "replace",
        "ff3e::/16",
        "dev",
        "eth0",
    ]);

    let pcap = tmp.0.join("iptv.pcap");
    let capture = Capture::start_snaplen(&gw, "uplink", "inout", "udp or tcp", &pcap, 0);
    let mut procs = Procs(Vec::new());
    procs.0.push((
        "iperf3 server".into(),
        spawn_in(
            &alice,
            &["iperf3", "-s", "-1", "-B", "100.64.1.10"],
            &tmp.0.join("iperf3-server.log"),
        ),
    ));
    thread::sleep(Duration::from_millis(500));
    let clip_arg = clip.to_string_lossy().into_owned();
    for (what, url, _) in STREAMS {
        let format = if url.starts_with("rtp") {
            "rtp_mpegts"
        } else {
            "mpegts"
        };
        let args = [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-i",
            &clip_arg,
            "-c",
            "copy",
            "-f",
            format,
            url,
        ];
        let log = tmp.0.join(format!("{}.log", what.replace(' ', "-")));
        procs
            .0
            .push((format!("ffmpeg {what}"), spawn_in(&net, &args, &log)));
    }
    procs.0.push((
        "iperf3 client".into(),
        spawn_in(
            &net,
            &[
                "iperf3",
                "-c",
                "100.64.1.10",
                "-u",
                "-b",
                "2M",
                "-l",
                "1316",
                "-t",
                "4",
            ],
            &tmp.0.join("iperf3-client.log"),
        ),
    ));
    procs.wait_all(Duration::from_secs(u64::from(CLIP_SECONDS) + 40));
    thread::sleep(Duration::from_millis(500));
    let dropped = capture.stop();
    assert_eq!(
        dropped, 0,
        "tcpdump dropped frames: the capture is no truth"
    );
    if let Ok(keep) = std::env::var("PEERWARDEN_IPTV_CAPTURE") {
        std::fs::copy(&pcap, Path::new(&keep).join("iptv-full.pcap")).expect("keeping it");
    }

    // The wire: the capture's flows, labelled by the library.
    let wire = classify_capture(&pcap).expect("reading the capture");
    let mut wire_bytes = BTreeMap::new();
    let mut problems = Vec::new();
    for f in &wire {
        let port = f.key.dst.port();
        let stream = STREAMS.iter().any(|s| s.2 == port) && f.key.proto == 17;
        if stream {
            wire_bytes.insert(port, f.bytes[0]);
        }
        if (f.verdict.label == Label::Iptv) != stream {
            problems.push(format!(
                "classify: {} -> {} ({}) is {}",
                f.key.src, f.key.dst, f.key.proto, f.verdict
            ));
        }
    }

    // The daemon, once its flows stop moving.
    let flows = until_still(
        || daemon_flows(&lab),
        Duration::from_secs(3),
        Duration::from_secs(30),
    );
    let mut iptv_bytes = 0;
    for (what, _, port) in STREAMS {
        let found: Vec<_> = flows.iter().filter(|((_, p), _)| *p == port).collect();
        let [((addr, _), (label, class, bytes))] = found[..] else {
            problems.push(format!("{what}: flows on port {port}: {found:?}"));
            continue;
        };
        let wire = wire_bytes.get(&port).copied().unwrap_or(0);
        let off = bytes.abs_diff(wire);
        println!(
            "{what}: {addr}:{port} {label}/{class}, daemon {bytes} bytes, wire {wire} ({:.4} %)",
            off as f64 * 100.0 / wire.max(1) as f64
        );
        if label != "iptv" || class != "video" || off > BYTES_TOLERANCE || wire == 0 {
            problems.push(format!(
                "{what}: {label}/{class}, daemon {bytes} bytes, wire {wire}"
            ));
        }
        iptv_bytes += bytes;
    }
    for ((addr, port), (label, _, _)) in &flows {
        let stream = STREAMS.iter().any(|s| s.2 == *port);
        if label == "iptv" && !stream {
            problems.push(format!("{addr}:{port} is iptv"));
        }
    }
    // The mix since start, once the per-second readings have caught up.
    let mix = until_still(
        || lab.api("/api/v1/mix")["labels"].clone(),
        Duration::from_secs(3),
        Duration::from_secs(30),
    );
    let mixed = &mix["iptv"]["bytes"];
    println!("mix: iptv {mixed}, the four flows {iptv_bytes}");
    if mixed[1].as_u64() != Some(iptv_bytes) || mixed[0].as_u64() != Some(0) {
        problems.push(format!("mix: iptv {mixed}, the flows {iptv_bytes}: {mix}"));
    }
    assert!(
        problems.is_empty(),
        "{}\nflows: {flows:#?}",
        problems.join("\n")
    );
}
