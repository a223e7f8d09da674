//! The XDP probe run on crafted frames through `BPF_PROG_TEST_RUN` (DESIGN.md, test level 2).
//!
//! Every test loads a fresh probe, so its flow table and counters start empty, and every
//! test needs root (it panics saying so otherwise). Loading takes about a second (the
//! verifier), so a test runs its cases on its one probe, each case on a flow of its own
//! (a port no other case uses) and checked by what it changed (`Snapshot::since`). Frames go through `xdp_downlink` when
//! they come from the subscriber (`Up`) and `xdp_uplink` when they come from the internet
//! (`Down`), as on a gateway.
//!
//! What is checked: each BitTorrent form is labelled in each address family, encapsulation
//! and direction; look-alikes are not; broken frames pass, unlabelled, counted in the right
//! statistic; and the per-label counters add up to exactly what was sent.

use peerwarden_common::{
    Confidence, Direction, FlowKey, Label,
    flow::{INSPECT_BUDGET, PROTO_TCP, PROTO_UDP},
};
use peerwarden_tests::{
    packets::{
        Conversation, ETH_MIN_FRAME, Family, IPV4_HLEN, IPV4_ROUTER_ALERT, REMOTE_V4, REMOTE_V6,
        SUB_V4, SUB_V6, TCP_TIMESTAMPS, TcpFlags, Vlan, arp_request, ethernet, fix_ipv4_checksum,
        icmp_echo, icmpv6_echo, ip_frame, ipv4_fragment, ipv4_with_options, ipv6_fragment,
        ipv6_with_hop_by_hop, pad_to_minimum, reverse, tcp_segment, tcp_segment_with_options,
        udp_datagram,
    },
    payloads::{
        INFO_HASH, PEER_ID, UDP_TRACKER_MAGIC, dht_get_peers_query, dht_ping_query,
        dht_response_with_ip, dns_query, http_announce, http_get_page, http_ok, http_scrape,
        peer_wire_handshake, peer_wire_message, tls_client_hello, udp_tracker_connect,
        udp_tracker_connect_response, utp_packet, utp_syn, utp_type,
    },
    rng::SplitMix64,
    xdp::{TestProbe, XDP_PASS},
};
use pnet_packet::{ethernet::EtherTypes, ip::IpNextHeaderProtocols};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;
const SYN: u8 = TcpFlags::SYN;
const SYN_ACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
const ACK: u8 = TcpFlags::ACK;
const PSH_ACK: u8 = TcpFlags::PSH | TcpFlags::ACK;

/// The other peer's id in two-sided exchanges.
const PEER_ID_B: [u8; 20] = *b"-TR4050-zyxwvutsrqpo";
/// A DHT node id.
const NODE_ID: [u8; 20] =
    *b"\xeb\xff\x36\x69\x73\x51\xff\x4a\xec\x29\xcd\xba\xab\xf2\xfb\xe3\x46\x7c\xc2\x67";

/// Packets in the order they are sent, each with its direction.
type Exchange = Vec<(Direction, Vec<u8>)>;

/// Returns `Err(message)` from the enclosing function when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The remote port of most test conversations.
const REMOTE_PORT: u16 = 6881;

/// A subscriber-side port no other conversation in this test binary uses, so that each
/// case is a flow of its own.
fn fresh_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(20_000);
    let port = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(port >= 20_000, "ran out of test ports");
    port
}

/// A conversation in `family` on a fresh subscriber port, untagged.
fn conversation(family: Family) -> Conversation {
    Conversation::new(family, fresh_port(), REMOTE_PORT)
}

/// A TCP three-way handshake started from `fwd`'s side.
fn tcp_open(c: &Conversation, fwd: Direction) -> Exchange {
    let rev = reverse(fwd);
    vec![
        (fwd, c.tcp(fwd, SYN, &[])),
        (rev, c.tcp(rev, SYN_ACK, &[])),
        (fwd, c.tcp(fwd, ACK, &[])),
    ]
}

/// A peer-wire handshake from `dir`'s side of `c`.
fn handshake_frame(c: &Conversation, dir: Direction) -> Vec<u8> {
    c.tcp(dir, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID))
}

mod broken;
mod counters;
mod forms;
mod lookalikes;
