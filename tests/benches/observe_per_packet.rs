//! Per-packet cost of the observe-only program, `xdp_observe`, beside the inline program
//! `xdp_downlink` and a bare `XDP_PASS` measured in the same run (a ratio to a baseline,
//! never an assertion on time).
//!
//! Through `BPF_PROG_TEST_RUN` on one probe in observe-only mode with the subscriber
//! networks 100.64.0.0/10 and 2001:db8:1::/48: one labelled BitTorrent flow, a 1514-byte
//! frame run `REPEAT` times per call, rounds interleaved, medians reported. Cases: the
//! up frame through `xdp_pass`, `xdp_downlink` and `xdp_observe`; the down frame through
//! `xdp_observe` (the second trie lookup); a frame between two internet hosts through
//! `xdp_observe` (unmatched: two lookups, nothing tracked).
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench observe_per_packet`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use peerwarden::probe::{PROG_DOWNLINK, PROG_OBSERVE, PROG_PASS};
use peerwarden_common::Direction;
use peerwarden_tests::{
    packets::{Conversation, Family, TcpFlags, Vlan, tcp_frame},
    payloads::{INFO_HASH, PEER_ID, peer_wire_handshake, peer_wire_message},
    xdp::{TestProbe, XDP_PASS, program_for},
};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;
const PSH_ACK: u8 = TcpFlags::PSH | TcpFlags::ACK;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut probe = TestProbe::load();
    let p = probe.probe();
    p.observe_only();
    p.set_observe_networks(&[
        ("100.64.0.0".parse().unwrap(), 10),
        ("2001:db8:1::".parse().unwrap(), 48),
    ])
    .expect("subscriber networks");
    let c = Conversation::new(Family::V4, 51413, 6881);
    for (dir, payload) in [
        (Direction::Up, peer_wire_handshake(&INFO_HASH, &PEER_ID)),
        (Direction::Down, peer_wire_handshake(&INFO_HASH, &PEER_ID)),
    ] {
        probe.run(program_for(dir), &c.tcp(dir, PSH_ACK, &payload));
    }
    // Ethernet 14 + IPv4 20 + TCP 20 + 1460 of payload: 1514 bytes.
    let piece = |dir| c.tcp(dir, PSH_ACK, &peer_wire_message(7, &[0x5a; 1455]));
    let (up, down) = (piece(Direction::Up), piece(Direction::Down));
    assert_eq!(up.len(), 1514);
    let host = |a: [u8; 4], port| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port);
    let transit = tcp_frame(
        Vlan::Untagged,
        host([198, 51, 100, 7], 443),
        host([203, 0, 113, 10], 5555),
        PSH_ACK,
        &[0x5a; 1460],
    );
    let cases: [(&str, &'static str, &[u8]); 5] = [
        ("xdp_pass, up frame (baseline)", PROG_PASS, &up),
        ("xdp_downlink (inline), up frame", PROG_DOWNLINK, &up),
        ("xdp_observe, up frame", PROG_OBSERVE, &up),
        ("xdp_observe, down frame", PROG_OBSERVE, &down),
        ("xdp_observe, unmatched frame", PROG_OBSERVE, &transit),
    ];
    let mut ns = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, prog, frame)) in cases.iter().enumerate() {
            let r = probe.run_repeat(prog, frame, REPEAT);
            assert_eq!(r.return_value, XDP_PASS, "{prog}");
            ns[i].push(r.duration.as_nanos() as f64);
        }
    }
    let base = median(ns[0].clone());
    println!("per-packet cost, median of {ROUNDS} rounds of {REPEAT} runs (BPF_PROG_TEST_RUN)");
    for ((name, ..), v) in cases.iter().zip(ns) {
        let m = median(v);
        println!("{name:36} {m:7.1} ns  {:5.2}x xdp_pass", m / base);
    }
}
