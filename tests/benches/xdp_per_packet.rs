//! Per-packet cost of the XDP probe, beside a bare `XDP_PASS` program measured in the same
//! run (STYLE.md 9: a benchmark reports a ratio to a baseline, never asserts a time).
//!
//! Everything runs through `BPF_PROG_TEST_RUN`, no network card: the kernel runs the program
//! on the given frame `repeat` times in a loop and reports the mean time per run. That time
//! covers the program and the loop's own overhead (the same for both programs), not the
//! driver, the page pool or the stack, so the ratio is an upper bound of what the probe adds
//! to a real receive path, where XDP_PASS itself costs far more than here.
//!
//! Cases (see docs/benchmarks.md for what each measures and why):
//! - established flow, hot: one labelled flow, one 1514-byte frame, `repeat` = 1,000,000;
//! - established flows, spread: 50,000 labelled flows, each frame run once (`repeat` = 1),
//!   so the flow lookups miss the CPU caches as they do with real traffic;
//! - new flow, first payload: 50,000 frames of flows never seen, each run once, so every
//!   run creates an entry and runs the fingerprints (a DHT query, labelled at once; random
//!   UDP bytes, left undecided; an HTTP GET, the longest fingerprint scan);
//! - the established-flow cases again in the access networks' encapsulations: the same
//!   labelled flow's 1514-byte frames in a PPPoE session and under one and three MPLS
//!   labels (issue 14);
//! - non-IP: an ARP request, `repeat` = 1,000,000.
//! - the two established-flow cases again with a policy covering the flows' subscriber
//!   (a policed plan with a DSCP mark on p2p).
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench xdp_per_packet`.

use std::net::{IpAddr, Ipv4Addr};

use peerwarden::probe::PROG_PASS;
use peerwarden_common::{Direction, Label, flow::PROTO_TCP};
use peerwarden_tests::{
    encap::{Encap, encapsulate},
    packets::{Conversation, Family, REMOTE_V4, SUB_V4, TcpFlags, Vlan, arp_request, esp_payload},
    payloads::{
        INFO_HASH, PEER_ID, dht_get_peers_query, http_get_page, peer_wire_handshake,
        peer_wire_message,
    },
    rng::SplitMix64,
    xdp::{TestProbe, XDP_PASS, program_for},
};

/// Runs per call for the single-frame cases.
const REPEAT: u32 = 1_000_000;
/// Rounds per case; the median is reported.
const ROUNDS: usize = 7;
/// Distinct frames per round for the cases that run each frame once.
const SPREAD: usize = 50_000;
/// Room for every flow the run creates (3 new-flow cases and the spread case, all rounds),
/// so that no case measures LRU eviction.
const FLOW_TABLE: u32 = 1 << 21;

/// A frame's largest size on a 1500-byte MTU link, untagged.
const MTU_FRAME: usize = 1514;
/// IP protocol number of ESP.
const ESP: u8 = 50;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Mean ns per run of `prog` on `frame`, `REPEAT` runs, as the kernel measures it.
fn hot(probe: &mut TestProbe, prog: &'static str, frame: &[u8]) -> f64 {
    let r = probe.run_repeat(prog, frame, REPEAT);
    assert_eq!(r.return_value, XDP_PASS, "{prog}");
    r.duration.as_nanos() as f64
}

/// Mean ns per run of `prog` on `frame` as [`hot`], whatever the verdict: with a policy the
/// plan's total rate polices, and a million runs of a 1514-byte frame in well under a
/// second are far over any rate, so most of them are drops (the same rule and bucket code).
fn hot_any(probe: &mut TestProbe, prog: &'static str, frame: &[u8]) -> f64 {
    probe.run_repeat(prog, frame, REPEAT).duration.as_nanos() as f64
}

/// The policy of the "policy" cases: the subscriber of every frame (100.64.1.10) on a plan
/// of 10 gbit with a DSCP mark on p2p, so a packet reads its rule slot, its class rule
/// (mark: rewrites the DSCP) and the plan's total (police: a token bucket).
const POLICY: &str = "plans:\n  bench:\n    rate: { down: 10gbit, up: 10gbit }\n    classes:\n      p2p: { dscp: LE }\nsubscribers:\n  - { id: alice, prefixes: [100.64.1.10/32], plan: bench }\ndefault_plan: bench\n";

fn install_policy(probe: &mut TestProbe) {
    let policy = peerwarden_policies::load_str(POLICY, "bench.yaml").expect("a valid policy");
    let mut index = peerwarden_policies::compile::SubscriberIndex::default();
    let options = probe.probe().compile_options();
    let c = peerwarden_policies::compile::compile(
        &policy,
        peerwarden_policies::Weekday::Mon,
        0,
        &mut index,
        &options,
    )
    .expect("compiles");
    probe.probe().install_policy(&c).expect("install_policy");
}

/// A row of the medians of `ROUNDS` rounds of `round()`: (probe ns, baseline ns).
fn measure(name: &'static str, what: &'static str, mut round: impl FnMut() -> (f64, f64)) -> Row {
    let (p, b): (Vec<f64>, Vec<f64>) = (0..ROUNDS).map(|_| round()).unzip();
    Row {
        name,
        what,
        probe_ns: median(p),
        pass_ns: median(b),
    }
}

/// Mean ns per run of `prog` over `frames`, each run once. The kernel's timer brackets each
/// single run, so its overhead is in every figure, the baseline's too.
fn once_each(probe: &mut TestProbe, prog: &'static str, frames: &[Vec<u8>]) -> f64 {
    let mut total = 0u128;
    for f in frames {
        let r = probe.run_repeat(prog, f, 1);
        assert_eq!(r.return_value, XDP_PASS, "{prog}");
        total += r.duration.as_nanos();
    }
    total as f64 / frames.len() as f64
}

/// A conversation no other in this run uses: each id gets its own subscriber port and
/// remote address.
fn unique_conversation(id: usize) -> Conversation {
    let port = 1024 + u16::try_from(id % 60_000).expect("port");
    let host = u8::try_from(id / 60_000).expect("too many flows for 203.0.113.0/24");
    Conversation::new(Family::V4, port, 6881)
        .with_remote_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, host)))
}

/// A peer-wire `piece` message that fills an untagged TCP/IPv4 frame of `MTU_FRAME` bytes
/// (Ethernet 14, IPv4 20, TCP 20, message length and id 5).
fn piece_payload() -> Vec<u8> {
    peer_wire_message(7, &vec![0xab; MTU_FRAME - 14 - 20 - 20 - 5])
}

/// A full-size piece frame of `c` coming down in `encap`: 1514 bytes whatever the
/// encapsulation (a PPPoE link's IP MTU is 1492), so the rows differ by the parse only.
fn piece_frame(c: &Conversation, encap: Encap) -> Vec<u8> {
    let plain = peer_wire_message(
        7,
        &vec![0xab; MTU_FRAME - 14 - 20 - 20 - 5 - encap.overhead()],
    );
    let f = encapsulate(
        &c.tcp(Direction::Down, TcpFlags::ACK, &plain),
        Vlan::Untagged,
        encap,
    );
    assert_eq!(f.len(), MTU_FRAME);
    f
}

struct Row {
    name: &'static str,
    what: &'static str,
    probe_ns: f64,
    pass_ns: f64,
}

fn main() {
    let mut probe = TestProbe::load_with_flow_table(FLOW_TABLE);
    let down = program_for(Direction::Down);
    let up = program_for(Direction::Up);
    let mut rows = Vec::new();
    let mut next_id = 0usize;

    // (a) One established, labelled flow: a peer-wire flow whose handshake has been seen,
    // then full-size piece frames coming down.
    let c = Conversation::new(Family::V4, 51413, 6881);
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    probe.send(
        Direction::Up,
        &c.tcp(Direction::Up, TcpFlags::PSH | TcpFlags::ACK, &hs),
    );
    let piece = c.tcp(Direction::Down, TcpFlags::ACK, &piece_payload());
    assert_eq!(piece.len(), MTU_FRAME);
    let flow = probe.flow(&c.key(PROTO_TCP)).expect("the labelled flow");
    assert_eq!(Label::from_id(flow.label), Label::Bittorrent);
    let (mut p, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(hot(&mut probe, PROG_PASS, &piece));
        p.push(hot(&mut probe, down, &piece));
    }
    rows.push(Row {
        name: "established flow, hot",
        what: "1 labelled TCP flow, 1514 B frame, repeat 1e6",
        probe_ns: median(p),
        pass_ns: median(b),
    });

    // (a'') The same flow's frames in a PPPoE session and under MPLS labels.
    for (name, encap) in [
        ("established flow, hot, PPPoE", Encap::Pppoe),
        ("established flow, hot, MPLS x1", Encap::Mpls(1)),
        ("established flow, hot, MPLS x3", Encap::Mpls(3)),
    ] {
        let f = piece_frame(&c, encap);
        rows.push(measure(
            name,
            "as above, in the encapsulation, 1514 B",
            || {
                let b = hot(&mut probe, PROG_PASS, &f);
                (hot(&mut probe, down, &f), b)
            },
        ));
    }

    // (a') Many established, labelled flows, each frame run once.
    // A subscriber's packet of another IP protocol (issue 11): an ESP flow, keyed by
    // addresses and protocol, labelled `vpn.ipsec` at its first packet and final.
    let esp = c.ip(
        Direction::Up,
        ESP,
        &esp_payload(0x1001, 1, MTU_FRAME - 14 - 20 - 8),
    );
    assert_eq!(esp.len(), MTU_FRAME);
    probe.send(Direction::Up, &esp);
    let flow = probe.flow(&c.key_without_ports(ESP)).expect("the ESP flow");
    assert_eq!(Label::from_id(flow.label), Label::VpnIpsec);
    rows.push(measure(
        "non-TCP/UDP (ESP), hot",
        "1 ESP flow of the subscriber, 1514 B frame, repeat 1e6",
        || {
            let b = hot(&mut probe, PROG_PASS, &esp);
            (hot(&mut probe, up, &esp), b)
        },
    ));

    let spread: Vec<Conversation> = (0..SPREAD)
        .map(|_| {
            next_id += 1;
            unique_conversation(next_id)
        })
        .collect();
    for c in &spread {
        probe.send(
            Direction::Up,
            &c.tcp(Direction::Up, TcpFlags::PSH | TcpFlags::ACK, &hs),
        );
    }
    let frames: Vec<Vec<u8>> = spread
        .iter()
        .map(|c| c.tcp(Direction::Down, TcpFlags::ACK, &piece_payload()))
        .collect();
    let (mut p, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(once_each(&mut probe, PROG_PASS, &frames));
        p.push(once_each(&mut probe, down, &frames));
    }
    rows.push(Row {
        name: "established flows, spread",
        what: "50k labelled TCP flows, 1514 B, repeat 1 each",
        probe_ns: median(p),
        pass_ns: median(b),
    });
    let pppoe_frames: Vec<Vec<u8>> = spread
        .iter()
        .map(|c| piece_frame(c, Encap::Pppoe))
        .collect();
    rows.push(measure(
        "established flows, spread, PPPoE",
        "as above, in a PPPoE session, 1514 B",
        || {
            let b = once_each(&mut probe, PROG_PASS, &pppoe_frames);
            (once_each(&mut probe, down, &pppoe_frames), b)
        },
    ));

    // (b) First payload packet of a new flow, three kinds of payload.
    let mut rng = SplitMix64::new(0xbe4c);
    type MakeFrame = Box<dyn FnMut(&Conversation) -> Vec<u8>>;
    let kinds: [(&str, &str, MakeFrame); 3] = [
        (
            "new flow, labelled at once",
            "DHT get_peers query (UDP), repeat 1 each",
            Box::new(|c| c.udp(Direction::Up, &dht_get_peers_query(&PEER_ID, &INFO_HASH))),
        ),
        (
            "new flow, undecided",
            "200 random bytes (UDP), repeat 1 each",
            Box::new(move |c| c.udp(Direction::Up, &rng.bytes(200))),
        ),
        (
            "new flow, longest scan",
            "HTTP GET of a page (TCP), repeat 1 each",
            Box::new(|c| {
                c.tcp(
                    Direction::Up,
                    TcpFlags::PSH | TcpFlags::ACK,
                    &http_get_page(),
                )
            }),
        ),
    ];
    for (name, what, mut make) in kinds {
        let (mut p, mut b) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            // Fresh flows every round: each frame is the first its flow has.
            let frames: Vec<Vec<u8>> = (0..SPREAD)
                .map(|_| {
                    next_id += 1;
                    make(&unique_conversation(next_id))
                })
                .collect();
            b.push(once_each(&mut probe, PROG_PASS, &frames));
            p.push(once_each(&mut probe, up, &frames));
        }
        rows.push(Row {
            name,
            what,
            probe_ns: median(p),
            pass_ns: median(b),
        });
    }

    // (c) A frame that is not IP.
    let arp = arp_request(Vlan::Untagged, SUB_V4, REMOTE_V4);
    let (mut p, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(hot(&mut probe, PROG_PASS, &arp));
        p.push(hot(&mut probe, up, &arp));
    }
    rows.push(Row {
        name: "non-IP",
        what: "ARP request (42 B), repeat 1e6",
        probe_ns: median(p),
        pass_ns: median(b),
    });

    // (d) The two established-flow cases again with a policy that covers the flows'
    // subscriber. Rounds of the spread case pass 75 MB each, within the bucket's depth at
    // 10 gbit (300 ms: 375 MB) and its refill; the hot case is mostly drops (`hot_any`).
    install_policy(&mut probe);
    rows.push(measure(
        "established flow, hot, policy",
        "as above, subscriber on a policed + marked plan",
        || {
            let b = hot(&mut probe, PROG_PASS, &piece);
            (hot_any(&mut probe, down, &piece), b)
        },
    ));
    rows.push(measure(
        "non-TCP/UDP (ESP), hot, policy",
        "as above, subscriber on a policed + marked plan",
        || {
            let b = hot(&mut probe, PROG_PASS, &esp);
            (hot_any(&mut probe, up, &esp), b)
        },
    ));
    rows.push(measure(
        "established flows, spread, policy",
        "as above, subscriber on a policed + marked plan",
        || {
            let b = once_each(&mut probe, PROG_PASS, &frames);
            // Let the bucket refill between rounds, so they measure passing packets.
            std::thread::sleep(std::time::Duration::from_millis(300));
            (once_each(&mut probe, down, &frames), b)
        },
    ));
    let policy_drops = probe.stat("policy_drops");

    let stats = probe.stats();
    assert_eq!(
        stats["flow_insert_failed"], 0,
        "the flow table was too small: {stats:?}"
    );
    println!("XDP probe per-packet cost, BPF_PROG_TEST_RUN, median of {ROUNDS} rounds");
    println!("(policy cases: {policy_drops} packets dropped by the plan's police rule)");
    println!(
        "{:<34} {:>9} {:>12} {:>7} {:>9}  what",
        "case", "probe ns", "XDP_PASS ns", "ratio", "added ns"
    );
    for r in &rows {
        println!(
            "{:<34} {:>9.1} {:>12.1} {:>6.2}x {:>9.1}  {}",
            r.name,
            r.probe_ns,
            r.pass_ns,
            r.probe_ns / r.pass_ns,
            r.probe_ns - r.pass_ns,
            r.what
        );
    }
}
