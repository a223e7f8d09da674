//! The bypass lab: a subscriber on a plan of 1 mbit each way uploads through the real
//! gateway (the daemon attached to the lab's veths) as ESP, as GRE and as fragmented UDP,
//! each far above the plan, and must be held to it.
//!
//! The test machine's kernel has neither ESP (`CONFIG_INET_ESP`) nor GRE
//! (`CONFIG_NET_IPGRE`), so an `ip xfrm` SA pair or a `gre` link cannot be made here; the
//! ESP and GRE streams are written from alice's namespace with raw IP sockets instead
//! (protocol 50: SPI, sequence number, opaque bytes; protocol 47: a GRE header around an
//! IPv4 packet). They are real packets all the same: alice's kernel routes them, the
//! gateway's probe sees them on its downlink and the gateway forwards them; nothing in the
//! probe's path depends on who wrote them. The fragmented stream is a plain UDP socket
//! sending 3,000-byte datagrams over the 1,500-byte MTU: alice's kernel fragments them.
//!
//! Each stream offers 20 Mbit/s for [`SEND_SECS`] seconds to the seeder's address. What
//! is judged, per stream:
//! - the rate arriving on the internet side's link (its `eth0` receive counters, whole
//!   frames, over the whole window after the first second, when the bucket's initial
//!   depth has drained) is within ±10% of 1 mbit;
//! - the daemon's API (`/api/v1/subscribers/alice`) shows the policy dropping class
//!   `other` up, and alice's counters carry the bytes she offered, drops included.
//!
//! One lab (prefix `pwb1`, API port 9481), removed when the test ends, also on failure.
//! Run as root, alone (rates are measured on a two-core machine):
//! `cargo test -p peerwarden-tests --test labs bypass:: -- --test-threads=1 --nocapture`.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::addr;
use peerwarden_tests::lab::{Lab, TempDir, link_bytes, run_bounded};
use serde_json::Value;

/// Seconds each stream is offered.
const SEND_SECS: u64 = 7;
/// The offered rate, Mbit/s: twenty times the plan.
const OFFERED_MBIT: f64 = 20.0;
/// The plan's rate, bit/s.
const PLAN_BPS: f64 = 1e6;

/// alice's plan: 1 mbit each way, nothing else; bob is there so alice is not alone.
const POLICY: &str = "timezone: UTC\n\
plans:\n\
\x20 one:\n\
\x20   rate: { up: 1mbit, down: 1mbit }\n\
\x20 big:\n\
\x20   rate: { up: 10gbit, down: 10gbit }\n\
subscribers:\n\
\x20 - { id: alice, prefixes: [100.64.1.10/32, \"2001:db8:1::10/128\"], plan: one }\n\
\x20 - { id: bob, prefixes: [100.64.1.20/32, \"2001:db8:1::20/128\"], plan: big }\n\
default_plan: big\n";

/// A paced sender: `python3 -c SENDER KIND DST BYTES SECS MBIT` sends for SECS seconds at
/// MBIT of IP payload and prints how many packets it sent. KIND is `esp`, `gre` (raw IP
/// sockets, BYTES of IP payload) or `udp` (a UDP socket, BYTES of UDP payload).
const SENDER: &str = r#"
import socket, struct, sys, time
kind, dst, size, secs, mbit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = 9
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50 if kind == "esp" else 47)
    port = 0
body = bytes(range(256)) * (size // 256 + 1)
def packet(n):
    if kind == "esp":
        return struct.pack("!II", 0x1001, n + 1) + body[: size - 8]
    if kind == "gre":
        inner_len = size - 4
        inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, inner_len, n & 0xffff, 0, 64, 17, 0,
                            socket.inet_aton("100.64.200.1"), socket.inet_aton("100.64.200.2"))
        return struct.pack("!HH", 0, 0x0800) + inner + bytes(inner_len - 20)
    return bytes(size)
interval = size * 8 / (mbit * 1e6)
t0 = time.monotonic()
n = 0
while True:
    now = time.monotonic()
    if now - t0 >= secs:
        break
    due = t0 + n * interval
    if due > now:
        time.sleep(due - now)
    try:
        s.sendto(packet(n), (dst, port))
    except OSError:
        pass
    n += 1
print(n)
"#;

/// One stream: what it is, the sender's kind and payload size, and the bytes one send puts
/// on the wire (Ethernet and IP headers included; all fragments for UDP).
struct Stream {
    name: &'static str,
    kind: &'static str,
    size: usize,
    wire_bytes: u64,
}

const STREAMS: [Stream; 3] = [
    Stream {
        name: "ESP",
        kind: "esp",
        size: 1400,
        wire_bytes: 14 + 20 + 1400,
    },
    Stream {
        name: "GRE",
        kind: "gre",
        size: 1400,
        wire_bytes: 14 + 20 + 1400,
    },
    // 3,008 bytes of UDP datagram in fragments of 1,480, 1,480 and 48 bytes of data.
    Stream {
        name: "fragmented UDP",
        kind: "udp",
        size: 3000,
        wire_bytes: 3 * (14 + 20) + 3008,
    },
];

/// What one stream did.
struct Outcome {
    sent_packets: u64,
    link_mbit: f64,
    api: Value,
}

fn send(lab: &Lab, s: &Stream, t0: Instant) -> Outcome {
    let alice = lab.netns("alice");
    let net = lab.netns("net");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &alice, "python3", "-c", SENDER])
        .args([s.kind, addr::SEEDER_V4, &s.size.to_string()])
        .args([&SEND_SECS.to_string(), &OFFERED_MBIT.to_string()]);
    let out = thread::scope(|scope| {
        let sender =
            scope.spawn(move || run_bounded(&mut cmd, Duration::from_secs(SEND_SECS + 30)));
        // The far side's link: its receive counter from one second in (the bucket's
        // initial 300 ms have drained by then) to the end of the stream.
        thread::sleep((t0 + Duration::from_secs(1)).saturating_duration_since(Instant::now()));
        let (a, ta) = (link_bytes(&net, "eth0").0, Instant::now());
        thread::sleep(
            (t0 + Duration::from_secs(SEND_SECS)).saturating_duration_since(Instant::now()),
        );
        let (b, tb) = (link_bytes(&net, "eth0").0, Instant::now());
        let link_mbit = (b - a) as f64 * 8.0 / (tb - ta).as_secs_f64() / 1e6;
        (sender.join().expect("sender thread"), link_mbit)
    });
    let (output, link_mbit) = out;
    assert!(
        output.status.success(),
        "{}: the sender failed: {}",
        s.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let sent_packets: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: sender output: {e}", s.name));
    // The daemon reads the counters every second: let it take the last one.
    thread::sleep(Duration::from_millis(1500));
    let api = lab.api("/api/v1/subscribers/alice");
    Outcome {
        sent_packets,
        link_mbit,
        api,
    }
}

#[test]
fn lab_a_one_mbit_plan_holds_for_esp_gre_and_fragments() {
    let tmp = TempDir::new("bypass-lab");
    let file = tmp.0.join("policy.yaml");
    std::fs::write(&file, POLICY).expect("writing the policy");
    let file = file.to_string_lossy().into_owned();
    let lab = Lab::up("pwb1", 9481, &["--policy", &file]);
    let mut failures = Vec::new();
    for (i, s) in STREAMS.iter().enumerate() {
        if i > 0 {
            // The API's rates cover the last 10 s: keep one stream out of the next's.
            thread::sleep(Duration::from_secs(4));
        }
        let t0 = Instant::now();
        let o = send(&lab, s, t0);
        let rates = &o.api["rates"];
        let seconds = rates["seconds"].as_f64().unwrap_or(0.0);
        let counted_bytes = rates["classes"]["other"]["bits_per_second"][0]
            .as_f64()
            .unwrap_or(0.0)
            * seconds
            / 8.0;
        let offered_bytes = (o.sent_packets * s.wire_bytes) as f64;
        let dropped: u64 = o.api["limiting"]["classes"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|c| c["class"] == "other" && c["direction"] == "up")
                    .filter_map(|c| c["dropped_packets"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        let line = format!(
            "{}: {} sends ({:.0} bytes on the wire), far link {:.3} Mbit/s, alice's other up \
             {:.0} bytes over {seconds:.1} s, {dropped} policy drops",
            s.name, o.sent_packets, offered_bytes, o.link_mbit, counted_bytes
        );
        println!("{line}");
        let ratio = o.link_mbit * 1e6 / PLAN_BPS;
        if !(0.9..=1.1).contains(&ratio) {
            failures.push(format!("{line}: the far link is not within 10% of 1 mbit"));
        }
        if dropped == 0 {
            failures.push(format!("{line}: no policy drops\n{}", o.api));
        }
        // Every byte alice sent is hers, dropped or not (the API's rate is rounded to a
        // bit per second and its window to the daemon's one-second reads).
        if !(0.9 * offered_bytes..=1.1 * offered_bytes).contains(&counted_bytes) {
            failures.push(format!(
                "{line}: alice's counters miss her bytes\n{}",
                o.api
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
