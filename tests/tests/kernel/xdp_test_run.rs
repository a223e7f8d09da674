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

// ---------------------------------------------------------------------------------------
// Each BitTorrent form, in every family, encapsulation and direction.
// ---------------------------------------------------------------------------------------

/// One BitTorrent form: what it is labelled and the exchange that carries it.
struct Form {
    label: Label,
    proto: u8,
    /// The exchange over `c`, its first packet going the given direction.
    exchange: fn(&Conversation, Direction) -> Exchange,
    /// Index of the packet that decides the label; the flow is `Unknown` before it.
    decided_at: usize,
}

/// One cell of the matrix: address family, VLAN tags, and the direction of the first
/// packet (`Up`: the subscriber starts; `Down`: a host on the internet starts).
#[derive(Clone, Copy, Debug)]
struct Case {
    family: Family,
    vlan: Vlan,
    first: Direction,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for family in Family::ALL {
        for vlan in Vlan::ALL {
            for first in [UP, DOWN] {
                out.push(Case {
                    family,
                    vlan,
                    first,
                });
            }
        }
    }
    out
}

/// Runs `form` in every case on one probe and reports every case that failed.
fn assert_form_labelled(form: &Form) {
    let mut probe = TestProbe::load();
    let cases = cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run_form(&mut probe, form, *case)
                .err()
                .map(|e| format!("  {case:?}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{:?} failed in {} of {} cases:\n{}",
        form.label,
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn run_form(probe: &mut TestProbe, form: &Form, case: Case) -> Result<(), String> {
    let c = conversation(case.family).with_vlan(case.vlan);
    let key = c.key(form.proto);
    let exchange = (form.exchange)(&c, case.first);
    let before = probe.snapshot();
    let (mut packets, mut bytes) = ([0u64; 2], [0u64; 2]);
    for (i, (dir, frame)) in exchange.iter().enumerate() {
        let rc = probe.send(*dir, frame);
        ensure!(rc == XDP_PASS, "packet {i} returned {rc}, not XDP_PASS");
        packets[dir.index()] += 1;
        bytes[dir.index()] += frame.len() as u64;
        let got = probe.flow(&key).map(|f| Label::from_id(f.label));
        let want = if i >= form.decided_at {
            form.label
        } else {
            Label::Unknown
        };
        ensure!(
            got == Some(want),
            "after packet {i} ({dir:?}) the flow is {got:?}, want {want:?}"
        );
    }
    let d = probe.snapshot().since(&before);
    ensure!(
        d.flows == 1,
        "both directions should share one new flow entry, the table grew by {}",
        d.flows
    );
    let v = probe.flow(&key).ok_or("no flow under the expected key")?;
    ensure!(
        v.confidence == Confidence::Payload as u8,
        "confidence {:?}",
        Confidence::from_id(v.confidence)
    );
    ensure!(
        v.packets == packets && v.bytes == bytes,
        "flow counted {:?}/{:?}, sent {packets:?}/{bytes:?}",
        v.packets,
        v.bytes
    );
    let decider = exchange[form.decided_at].0;
    for dir in [UP, DOWN] {
        let l = d.counter(form.label, dir);
        let i = dir.index();
        ensure!(
            l.packets == packets[i] && l.bytes == bytes[i],
            "{dir:?}: label counters {}/{} B, sent {}/{} B",
            l.packets,
            l.bytes,
            packets[i],
            bytes[i]
        );
        let want_flows = u64::from(dir == decider);
        ensure!(
            l.flows == want_flows,
            "{dir:?}: label counts {} flows, want {want_flows}",
            l.flows
        );
        let u = d.counter(Label::Unknown, dir);
        ensure!(
            u.packets == 0 && u.bytes == 0,
            "{dir:?}: {} packets / {} B left under unknown",
            u.packets,
            u.bytes
        );
    }
    ensure!(
        d.stat("packets") == exchange.len() as u64
            && d.stat("flows_created") == 1
            && d.stat("flows_labelled") == 1
            && d.stat("malformed") == 0,
        "statistics changed by {:?}",
        d.stats
    );
    Ok(())
}

#[test]
fn peer_wire_handshake_labels_tcp_flow_bittorrent() {
    assert_form_labelled(&Form {
        label: Label::Bittorrent,
        proto: PROTO_TCP,
        decided_at: 3,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            let mut x = tcp_open(c, fwd);
            x.push((
                fwd,
                c.tcp(fwd, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID)),
            ));
            x.push((
                rev,
                c.tcp(rev, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID_B)),
            ));
            x.push((fwd, c.tcp(fwd, PSH_ACK, &peer_wire_message(2, &[])))); // interested
            x
        },
    });
}

#[test]
fn utp_syn_labels_flow_at_once() {
    assert_form_labelled(&Form {
        label: Label::BittorrentUtp,
        proto: PROTO_UDP,
        decided_at: 0,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            let recv_id = 0x3039;
            vec![
                (fwd, c.udp(fwd, &utp_syn(recv_id))),
                (
                    rev,
                    c.udp(rev, &utp_packet(utp_type::STATE, recv_id, 1200, 7, 1, &[])),
                ),
                (
                    fwd,
                    c.udp(
                        fwd,
                        &utp_packet(
                            utp_type::DATA,
                            recv_id + 1,
                            900,
                            2,
                            7,
                            &peer_wire_handshake(&INFO_HASH, &PEER_ID),
                        ),
                    ),
                ),
            ]
        },
    });
}

#[test]
fn utp_data_and_state_with_paired_ids_label_flow_picked_up_mid_flow() {
    // No SYN seen (the flow was running before the probe started): the initiator sends with
    // its receive id + 1, the responder with the receive id itself.
    assert_form_labelled(&Form {
        label: Label::BittorrentUtp,
        proto: PROTO_UDP,
        decided_at: 1,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            let recv_id = 0xfff0;
            vec![
                (
                    fwd,
                    c.udp(
                        fwd,
                        &utp_packet(
                            utp_type::DATA,
                            recv_id + 1,
                            5000,
                            100,
                            40,
                            &peer_wire_message(7, &[0xaa; 200]),
                        ),
                    ),
                ),
                (
                    rev,
                    c.udp(
                        rev,
                        &utp_packet(utp_type::STATE, recv_id, 4000, 41, 100, &[]),
                    ),
                ),
                (
                    fwd,
                    c.udp(
                        fwd,
                        &utp_packet(
                            utp_type::DATA,
                            recv_id + 1,
                            5000,
                            101,
                            41,
                            &peer_wire_message(7, &[0xbb; 200]),
                        ),
                    ),
                ),
            ]
        },
    });
}

#[test]
fn dht_krpc_query_labels_flow_dht() {
    assert_form_labelled(&Form {
        label: Label::BittorrentDht,
        proto: PROTO_UDP,
        decided_at: 0,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            let querier = c.ends(fwd).0;
            vec![
                (fwd, c.udp(fwd, &dht_get_peers_query(&NODE_ID, &INFO_HASH))),
                (rev, c.udp(rev, &dht_response_with_ip(querier, &NODE_ID))),
                (fwd, c.udp(fwd, &dht_ping_query(&NODE_ID))),
            ]
        },
    });
}

#[test]
fn dht_response_with_bep42_ip_key_labels_flow_dht() {
    // Only the response is seen: its dictionary starts with `ip` (6 bytes over IPv4, 18 over
    // IPv6), not with `r`.
    assert_form_labelled(&Form {
        label: Label::BittorrentDht,
        proto: PROTO_UDP,
        decided_at: 0,
        exchange: |c, fwd| {
            let querier = c.ends(fwd).1;
            vec![(fwd, c.udp(fwd, &dht_response_with_ip(querier, &NODE_ID)))]
        },
    });
}

#[test]
fn udp_tracker_connect_request_labels_flow_tracker() {
    assert_form_labelled(&Form {
        label: Label::BittorrentTracker,
        proto: PROTO_UDP,
        decided_at: 0,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            vec![
                (
                    fwd,
                    c.udp(fwd, &udp_tracker_connect(UDP_TRACKER_MAGIC, 0xdead_beef)),
                ),
                (
                    rev,
                    c.udp(
                        rev,
                        &udp_tracker_connect_response(0xdead_beef, 0x0123_4567_89ab_cdef),
                    ),
                ),
            ]
        },
    });
}

#[test]
fn http_tracker_announce_labels_flow_tracker() {
    assert_form_labelled(&Form {
        label: Label::BittorrentTracker,
        proto: PROTO_TCP,
        decided_at: 3,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            let mut x = tcp_open(c, fwd);
            x.push((
                fwd,
                c.tcp(fwd, PSH_ACK, &http_announce(&INFO_HASH, &PEER_ID)),
            ));
            x.push((
                rev,
                c.tcp(rev, PSH_ACK, &http_ok(b"d8:intervali1800e5:peers0:e")),
            ));
            x
        },
    });
}

#[test]
fn http_tracker_scrape_labels_flow_tracker() {
    assert_form_labelled(&Form {
        label: Label::BittorrentTracker,
        proto: PROTO_TCP,
        decided_at: 3,
        exchange: |c, fwd| {
            let rev = reverse(fwd);
            let mut x = tcp_open(c, fwd);
            x.push((fwd, c.tcp(fwd, PSH_ACK, &http_scrape(&INFO_HASH))));
            x.push((rev, c.tcp(rev, PSH_ACK, &http_ok(b"d5:filesdee"))));
            x
        },
    });
}

#[test]
fn peer_wire_handshake_after_ipv6_hop_by_hop_header_is_labelled() {
    let mut probe = TestProbe::load();
    let c = conversation(Family::V6);
    let frame = ipv6_with_hop_by_hop(
        c.vlan,
        c.sub,
        c.remote,
        PSH_ACK,
        &peer_wire_handshake(&INFO_HASH, &PEER_ID),
    );
    assert_eq!(probe.send(UP, &frame), XDP_PASS);
    let flow = probe
        .flow(&c.key(PROTO_TCP))
        .expect("a flow for the TCP segment after the extension header");
    assert_eq!(Label::from_id(flow.label), Label::Bittorrent);
    assert_eq!(probe.stat("malformed"), 0);
}

#[test]
fn tcp_timestamps_and_ipv4_options_are_skipped_to_the_payload() {
    // Linux puts 12 bytes of timestamps in every TCP header, so real payloads start at
    // 32 bytes, not 20; IPv4 options are rarer but move the TCP header too.
    let mut probe = TestProbe::load();
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let tcp = IpNextHeaderProtocols::Tcp;
    for family in Family::ALL {
        for vlan in Vlan::ALL {
            let c = conversation(family).with_vlan(vlan);
            let seg = tcp_segment_with_options(c.sub, c.remote, PSH_ACK, &TCP_TIMESTAMPS, &hs);
            let frame = ip_frame(vlan, c.sub.ip(), c.remote.ip(), tcp, &seg);
            assert_eq!(probe.send(UP, &frame), XDP_PASS);
            let label = probe
                .flow(&c.key(PROTO_TCP))
                .map(|f| Label::from_id(f.label));
            assert_eq!(
                label,
                Some(Label::Bittorrent),
                "{family:?} {vlan:?} TCP timestamps"
            );
        }
    }
    for vlan in Vlan::ALL {
        let c = conversation(Family::V4).with_vlan(vlan);
        let seg = tcp_segment_with_options(c.sub, c.remote, PSH_ACK, &TCP_TIMESTAMPS, &hs);
        let ip = ipv4_with_options(SUB_V4, REMOTE_V4, tcp, &IPV4_ROUTER_ALERT, &seg);
        assert_eq!(
            probe.send(UP, &ethernet(vlan, EtherTypes::Ipv4, &ip)),
            XDP_PASS
        );
        let label = probe
            .flow(&c.key(PROTO_TCP))
            .map(|f| Label::from_id(f.label));
        assert_eq!(label, Some(Label::Bittorrent), "{vlan:?} IPv4 options, TCP");

        let connect = udp_tracker_connect(UDP_TRACKER_MAGIC, 0x0bad_f00d);
        let dgram = udp_datagram(c.sub, c.remote, &connect);
        let udp = IpNextHeaderProtocols::Udp;
        let ip = ipv4_with_options(SUB_V4, REMOTE_V4, udp, &IPV4_ROUTER_ALERT, &dgram);
        assert_eq!(
            probe.send(UP, &ethernet(vlan, EtherTypes::Ipv4, &ip)),
            XDP_PASS
        );
        let label = probe
            .flow(&c.key(PROTO_UDP))
            .map(|f| Label::from_id(f.label));
        assert_eq!(
            label,
            Some(Label::BittorrentTracker),
            "{vlan:?} IPv4 options, UDP"
        );
    }
    assert_eq!(probe.stat("malformed"), 0);
}

#[test]
fn two_8021q_tags_are_parsed_like_qinq() {
    // Stacked VLANs without an 802.1ad outer tag: TPID 0x8100 twice.
    let mut probe = TestProbe::load();
    let vlan = Vlan::DoubleDot1q {
        outer: 10,
        inner: 20,
    };
    for family in Family::ALL {
        for dir in [UP, DOWN] {
            let c = conversation(family).with_vlan(vlan);
            assert_eq!(probe.send(dir, &handshake_frame(&c, dir)), XDP_PASS);
            let label = probe
                .flow(&c.key(PROTO_TCP))
                .map(|f| Label::from_id(f.label));
            assert_eq!(label, Some(Label::Bittorrent), "{family:?} {dir:?}");
        }
    }
    assert_eq!(probe.stat("non_ip") + probe.stat("malformed"), 0);
}

// ---------------------------------------------------------------------------------------
// Look-alikes: inspected, and left unlabelled.
// ---------------------------------------------------------------------------------------

/// Sends `exchange` over `c` and checks that every packet passed and the flow was inspected
/// `inspected` times (so the fingerprints did see the payloads) without being labelled.
fn assert_inspected_not_labelled(
    probe: &mut TestProbe,
    c: &Conversation,
    proto: u8,
    exchange: &Exchange,
    inspected: u8,
) {
    let before = probe.snapshot();
    for (i, (dir, frame)) in exchange.iter().enumerate() {
        assert_eq!(probe.send(*dir, frame), XDP_PASS, "packet {i} ({dir:?})");
    }
    let flow = probe.flow(&c.key(proto)).expect("the exchange made a flow");
    assert_eq!(Label::from_id(flow.label), Label::Unknown, "flow {flow:?}");
    assert_eq!(Confidence::from_id(flow.confidence), Confidence::None);
    assert_eq!(flow.inspected, inspected, "payload packets inspected");
    let d = probe.snapshot().since(&before);
    assert_eq!(d.stat("flows_labelled"), 0);
    let total: u64 = exchange.iter().map(|(_, f)| f.len() as u64).sum();
    let unknown = d.counter(Label::Unknown, UP).bytes + d.counter(Label::Unknown, DOWN).bytes;
    assert_eq!(unknown, total, "every byte stays under unknown");
    assert_eq!(
        d.nonzero_counters().len(),
        1,
        "only unknown moved: {:?}",
        d.nonzero_counters()
    );
}

#[test]
fn http_get_of_a_web_page_is_not_labelled() {
    let mut probe = TestProbe::load();
    for family in Family::ALL {
        let c = Conversation::new(family, fresh_port(), 80);
        let mut x = tcp_open(&c, UP);
        x.push((UP, c.tcp(UP, PSH_ACK, &http_get_page())));
        x.push((
            DOWN,
            c.tcp(DOWN, PSH_ACK, &http_ok(b"<html><body>news</body></html>")),
        ));
        assert_inspected_not_labelled(&mut probe, &c, PROTO_TCP, &x, 2);
    }
}

#[test]
fn tls_client_hello_is_not_labelled() {
    let mut probe = TestProbe::load();
    for family in Family::ALL {
        let c = Conversation::new(family, fresh_port(), 443);
        let mut x = tcp_open(&c, UP);
        x.push((UP, c.tcp(UP, PSH_ACK, &tls_client_hello("www.example.com"))));
        assert_inspected_not_labelled(&mut probe, &c, PROTO_TCP, &x, 1);
    }
}

#[test]
fn dns_query_is_not_labelled() {
    let mut probe = TestProbe::load();
    for family in Family::ALL {
        let c = Conversation::new(family, fresh_port(), 53);
        let x = vec![(UP, c.udp(UP, &dns_query(0x1d2e, "tracker.example.net")))];
        assert_inspected_not_labelled(&mut probe, &c, PROTO_UDP, &x, 1);
    }
}

#[test]
fn tracker_sized_udp_packet_with_other_magic_is_not_labelled() {
    let mut probe = TestProbe::load();
    for magic in [UDP_TRACKER_MAGIC + 1, UDP_TRACKER_MAGIC ^ (1 << 63), 0] {
        let c = conversation(Family::V4);
        let p = udp_tracker_connect(magic, 0xdead_beef);
        assert_eq!(p.len(), 16);
        assert_inspected_not_labelled(&mut probe, &c, PROTO_UDP, &vec![(UP, c.udp(UP, &p))], 1);
    }
    // The right magic with action 1 (announce) in 16 bytes is not a connect request either.
    let c = conversation(Family::V4);
    let mut p = udp_tracker_connect(UDP_TRACKER_MAGIC, 1);
    p[11] = 1;
    assert_inspected_not_labelled(&mut probe, &c, PROTO_UDP, &vec![(UP, c.udp(UP, &p))], 1);
}

#[test]
fn utp_shaped_data_in_one_direction_only_is_not_labelled() {
    let mut probe = TestProbe::load();
    for dir in [UP, DOWN] {
        let c = conversation(Family::V4);
        let x: Exchange = (0..10u16)
            .map(|seq| {
                (
                    dir,
                    c.udp(
                        dir,
                        &utp_packet(utp_type::DATA, 0x4001, 3000, seq, 0, &[0x55; 300]),
                    ),
                )
            })
            .collect();
        assert_inspected_not_labelled(&mut probe, &c, PROTO_UDP, &x, 10);
    }
}

#[test]
fn utp_shaped_data_both_ways_with_unpaired_ids_is_not_labelled() {
    let mut probe = TestProbe::load();
    for (a, b) in [(0x4001u16, 0x4001u16), (0x4001, 0x4003), (0x0000, 0x8000)] {
        let c = conversation(Family::V6);
        let x = vec![
            (
                UP,
                c.udp(UP, &utp_packet(utp_type::DATA, a, 3000, 1, 0, &[0x55; 300])),
            ),
            (
                DOWN,
                c.udp(DOWN, &utp_packet(utp_type::STATE, b, 3000, 9, 1, &[])),
            ),
            (
                UP,
                c.udp(UP, &utp_packet(utp_type::DATA, a, 3000, 2, 9, &[0x56; 300])),
            ),
        ];
        assert_inspected_not_labelled(&mut probe, &c, PROTO_UDP, &x, 3);
    }
}

#[test]
fn random_udp_payloads_are_not_labelled() {
    // 2000 flows, one random payload each way. Lengths mostly spread over 1..=1200, every
    // fourth one at a length some fingerprint wants (16: tracker connect, 20: uTP SYN and
    // header, 68: peer-wire handshake) to give the fixed-length rules their best chance.
    const SEED: u64 = 0x5eed_2000;
    const FLOWS: usize = 2000;
    let mut rng = SplitMix64::new(SEED);
    let mut probe = TestProbe::load();
    let mut sent = Vec::with_capacity(FLOWS);
    for i in 0..FLOWS {
        let family = if i % 3 == 0 { Family::V6 } else { Family::V4 };
        let port = 10_000 + u16::try_from(i).expect("port");
        let c = Conversation::new(family, port, 6881).with_vlan(Vlan::ALL[i % 3]);
        let mut payloads = Vec::new();
        for dir in [UP, DOWN] {
            let len = if i % 4 == 0 {
                [16, 20, 68][rng.range(0, 2)]
            } else {
                rng.range(1, 1200)
            };
            let p = rng.bytes(len);
            assert_eq!(
                probe.send(dir, &c.udp(dir, &p)),
                XDP_PASS,
                "flow {i} {dir:?}"
            );
            payloads.push(p);
        }
        sent.push((c.key(PROTO_UDP), payloads));
    }
    let flows = probe.flows();
    assert_eq!(flows.len(), FLOWS, "one flow per conversation");
    let mut wrong = Vec::new();
    for (key, payloads) in &sent {
        let Some((_, v)) = flows.iter().find(|(k, _)| k == key) else {
            wrong.push(format!("no flow for {key:?}"));
            continue;
        };
        if v.label != Label::Unknown.id() || v.inspected != 2 {
            wrong.push(format!(
                "{:?} (inspected {}) after payloads {payloads:02x?}",
                Label::from_id(v.label),
                v.inspected
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "seed {SEED:#x}: {} of {FLOWS} flows went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(probe.stat("flows_labelled"), 0);
    assert_eq!(
        probe.counter(Label::Unknown, UP).packets + probe.counter(Label::Unknown, DOWN).packets,
        2 * FLOWS as u64
    );
}

// ---------------------------------------------------------------------------------------
// Broken and untracked frames: passed, unlabelled, counted in their statistic.
// ---------------------------------------------------------------------------------------

const ERROR_STATS: [&str; 4] = ["malformed", "non_ip", "non_tcp_udp", "fragments"];

/// Sends `frame` going `dir`: it must pass, count once in `stat` and in no other error
/// statistic, make no flow and count nothing under any label.
fn assert_untracked(probe: &mut TestProbe, what: &str, dir: Direction, frame: &[u8], stat: &str) {
    let before = probe.snapshot();
    assert_eq!(probe.send(dir, frame), XDP_PASS, "{what}: verdict");
    let d = probe.snapshot().since(&before);
    for s in ERROR_STATS {
        let want = u64::from(s == stat);
        assert_eq!(
            d.stat(s),
            want,
            "{what}: statistic {s} (changes: {:?})",
            d.stats
        );
    }
    assert_eq!(d.stat("packets"), 1, "{what}: packets seen");
    assert_eq!(d.stat("flows_created"), 0, "{what}: no flow");
    assert_eq!(d.flows, 0, "{what}: the flow table grew");
    assert!(
        d.nonzero_counters().is_empty(),
        "{what}: counted under {:?}",
        d.nonzero_counters()
    );
}

/// Sends `frame` going `dir`: it must pass, count once in `stat` and in no other error
/// statistic, and be charged to the flow `key` under `label`, and to nothing else (issue
/// 11: every packet of a subscriber address is the subscriber's).
fn assert_charged(
    probe: &mut TestProbe,
    what: &str,
    dir: Direction,
    frame: &[u8],
    stat: &str,
    key: &FlowKey,
    label: Label,
) {
    let before = probe.snapshot();
    let packets_before = probe.flow(key).map_or(0, |f| f.packets[dir.index()]);
    assert_eq!(probe.send(dir, frame), XDP_PASS, "{what}: verdict");
    let d = probe.snapshot().since(&before);
    for s in ERROR_STATS {
        let want = u64::from(s == stat);
        assert_eq!(d.stat(s), want, "{what}: statistic {s} ({:?})", d.stats);
    }
    let f = probe
        .flow(key)
        .unwrap_or_else(|| panic!("{what}: not charged to {key:?}"));
    assert_eq!(Label::from_id(f.label), label, "{what}: label");
    assert_eq!(
        f.packets[dir.index()],
        packets_before + 1,
        "{what}: packets"
    );
    let moved: Vec<Label> = d.nonzero_counters().iter().map(|(l, _)| *l).collect();
    assert_eq!(
        moved,
        [label],
        "{what}: counted under {:?}",
        d.nonzero_counters()
    );
    assert_eq!(d.counter(label, dir).packets, 1, "{what}");
    assert_eq!(d.counter(label, dir).bytes, frame.len() as u64, "{what}");
}

/// Whether `f`'s IPv4 or IPv6 header (after at most two VLAN tags) is whole and consistent
/// with the frame, as parse.rs checks it: the probe charges a frame broken above such a
/// header to its addresses, and leaves one broken below it to the IP stack.
fn ip_header_sound(f: &[u8]) -> bool {
    let be16 = |o: usize| {
        f.get(o..o + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let (Some(mut ethertype), mut l3) = (be16(12), 14) else {
        return false;
    };
    for _ in 0..2 {
        if ethertype != 0x8100 && !(l3 == 14 && ethertype == 0x88a8) {
            break;
        }
        let Some(e) = be16(l3 + 2) else {
            return false;
        };
        (ethertype, l3) = (e, l3 + 4);
    }
    match (ethertype, f.get(l3..)) {
        (0x0800, Some(h)) if h.len() >= 20 => {
            let (ihl, total) = (usize::from(h[0] & 0x0f) * 4, be16(l3 + 2).unwrap_or(0));
            h[0] >> 4 == 4 && ihl >= 20 && total >= ihl && total <= h.len()
        }
        (0x86dd, Some(h)) if h.len() >= 40 => {
            h[0] >> 4 == 6 && 40 + be16(l3 + 4).unwrap_or(0) <= h.len()
        }
        _ => false,
    }
}

/// A frame broken on purpose, beside the intact frame it was made from.
struct Broken {
    what: String,
    dir: Direction,
    bad: Vec<u8>,
    good: Vec<u8>,
    key: FlowKey,
    label: Label,
}

/// Checks that `b.bad` counts as malformed and leaves no trace, then that `b.good` is
/// labelled: the damage, not the payload, is what kept the bad frame unlabelled.
fn assert_malformed(probe: &mut TestProbe, b: &Broken) {
    if ip_header_sound(&b.bad) {
        // Broken above a sound IP header: the subscriber's all the same (issue 11).
        let key = FlowKey {
            sub_port: 0,
            remote_port: 0,
            ..b.key
        };
        assert_charged(
            probe,
            &b.what,
            b.dir,
            &b.bad,
            "malformed",
            &key,
            Label::Unknown,
        );
    } else {
        assert_untracked(probe, &b.what, b.dir, &b.bad, "malformed");
    }
    assert_eq!(probe.send(b.dir, &b.good), XDP_PASS);
    let label = probe.flow(&b.key).map(|f| Label::from_id(f.label));
    assert_eq!(
        label,
        Some(b.label),
        "{}: the intact frame should be labelled",
        b.what
    );
}

/// For every encapsulation and direction: builds the intact frame on a conversation of its
/// own, damages a copy, and checks both on one fresh probe.
fn check_malformed(
    what: &str,
    family: Family,
    label: Label,
    proto: u8,
    intact: impl Fn(&Conversation, Direction) -> Vec<u8>,
    damage: impl Fn(&Conversation, &mut Vec<u8>),
) {
    let mut probe = TestProbe::load();
    for vlan in Vlan::ALL {
        for dir in [UP, DOWN] {
            let c = conversation(family).with_vlan(vlan);
            let good = intact(&c, dir);
            let mut bad = good.clone();
            damage(&c, &mut bad);
            assert_ne!(bad, good, "{what}: the damage changed nothing");
            let b = Broken {
                what: format!("{what} ({vlan:?}, {dir:?})"),
                dir,
                bad,
                good,
                key: c.key(proto),
                label,
            };
            assert_malformed(&mut probe, &b);
        }
    }
}

fn handshake_frame(c: &Conversation, dir: Direction) -> Vec<u8> {
    c.tcp(dir, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID))
}

fn connect_frame(c: &Conversation, dir: Direction) -> Vec<u8> {
    c.udp(dir, &udp_tracker_connect(UDP_TRACKER_MAGIC, 0x1234_5678))
}

/// A short tracker announce: TCP header and payload together shorter than 60 bytes, so a
/// data offset of 15 words points past the packet.
fn short_announce_frame(c: &Conversation, dir: Direction) -> Vec<u8> {
    c.tcp(dir, PSH_ACK, b"GET /announce?info_hash=12345")
}

#[test]
fn ipv4_header_length_below_five_words_is_malformed() {
    for ihl in [0u8, 1, 4] {
        check_malformed(
            &format!("IHL {ihl}"),
            Family::V4,
            Label::Bittorrent,
            PROTO_TCP,
            handshake_frame,
            |c, f| {
                f[c.l3_offset()] = 0x40 | ihl;
                fix_ipv4_checksum(f, c.l3_offset());
            },
        );
    }
}

#[test]
fn ipv4_header_length_past_the_packet_end_is_malformed() {
    // 44-byte IPv4 packet (UDP, 16-byte payload) claiming a 60-byte header.
    check_malformed(
        "IHL 15 in a 44-byte packet",
        Family::V4,
        Label::BittorrentTracker,
        PROTO_UDP,
        connect_frame,
        |c, f| {
            f[c.l3_offset()] = 0x4f;
            fix_ipv4_checksum(f, c.l3_offset());
        },
    );
    // The same with the total length stretched to the header length, past the frame.
    check_malformed(
        "IHL 15 and total length 60 in a 44-byte packet",
        Family::V4,
        Label::BittorrentTracker,
        PROTO_UDP,
        connect_frame,
        |c, f| {
            let l3 = c.l3_offset();
            f[l3] = 0x4f;
            f[l3 + 2..l3 + 4].copy_from_slice(&60u16.to_be_bytes());
            fix_ipv4_checksum(f, l3);
        },
    );
}

#[test]
fn ipv4_total_length_beyond_the_frame_is_malformed() {
    check_malformed(
        "total length + 1",
        Family::V4,
        Label::Bittorrent,
        PROTO_TCP,
        handshake_frame,
        |c, f| {
            let l3 = c.l3_offset();
            let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]);
            f[l3 + 2..l3 + 4].copy_from_slice(&(total + 1).to_be_bytes());
            fix_ipv4_checksum(f, l3);
        },
    );
    check_malformed(
        "total length 65535",
        Family::V4,
        Label::Bittorrent,
        PROTO_TCP,
        handshake_frame,
        |c, f| {
            let l3 = c.l3_offset();
            f[l3 + 2..l3 + 4].copy_from_slice(&u16::MAX.to_be_bytes());
            fix_ipv4_checksum(f, l3);
        },
    );
}

#[test]
fn ipv4_total_length_shorter_than_its_header_is_malformed() {
    check_malformed(
        "total length 19",
        Family::V4,
        Label::Bittorrent,
        PROTO_TCP,
        handshake_frame,
        |c, f| {
            let l3 = c.l3_offset();
            f[l3 + 2..l3 + 4].copy_from_slice(&19u16.to_be_bytes());
            fix_ipv4_checksum(f, l3);
        },
    );
}

#[test]
fn ipv4_version_other_than_four_is_malformed() {
    check_malformed(
        "version 6 under the IPv4 ethertype",
        Family::V4,
        Label::Bittorrent,
        PROTO_TCP,
        handshake_frame,
        |c, f| {
            f[c.l3_offset()] = 0x65;
            fix_ipv4_checksum(f, c.l3_offset());
        },
    );
}

#[test]
fn tcp_data_offset_past_the_packet_end_is_malformed() {
    for family in Family::ALL {
        check_malformed(
            "TCP data offset 15 words",
            family,
            Label::BittorrentTracker,
            PROTO_TCP,
            short_announce_frame,
            |c, f| {
                let off = c.l4_offset() + 12;
                f[off] = 0xf0 | (f[off] & 0x0f);
            },
        );
    }
}

#[test]
fn tcp_data_offset_below_five_words_is_malformed() {
    for family in Family::ALL {
        check_malformed(
            "TCP data offset 4 words",
            family,
            Label::Bittorrent,
            PROTO_TCP,
            handshake_frame,
            |c, f| {
                let off = c.l4_offset() + 12;
                f[off] = 0x40 | (f[off] & 0x0f);
            },
        );
    }
}

#[test]
fn tcp_header_cut_by_the_ip_total_length_is_malformed() {
    // The frame goes on, but the IP packet ends 10 bytes into the TCP header.
    check_malformed(
        "IP total length ends inside the TCP header",
        Family::V4,
        Label::Bittorrent,
        PROTO_TCP,
        handshake_frame,
        |c, f| {
            let l3 = c.l3_offset();
            f[l3 + 2..l3 + 4].copy_from_slice(&((IPV4_HLEN + 10) as u16).to_be_bytes());
            fix_ipv4_checksum(f, l3);
        },
    );
}

#[test]
fn udp_length_zero_is_malformed() {
    for family in Family::ALL {
        check_malformed(
            "UDP length 0",
            family,
            Label::BittorrentTracker,
            PROTO_UDP,
            connect_frame,
            |c, f| {
                let off = c.l4_offset() + 4;
                f[off..off + 2].copy_from_slice(&[0, 0]);
            },
        );
    }
}

#[test]
fn udp_length_below_its_header_is_malformed() {
    for family in Family::ALL {
        check_malformed(
            "UDP length 7",
            family,
            Label::BittorrentTracker,
            PROTO_UDP,
            connect_frame,
            |c, f| {
                let off = c.l4_offset() + 4;
                f[off..off + 2].copy_from_slice(&7u16.to_be_bytes());
            },
        );
    }
}

#[test]
fn udp_length_past_the_ip_packet_end_is_malformed() {
    for family in Family::ALL {
        check_malformed(
            "UDP length + 1",
            family,
            Label::BittorrentTracker,
            PROTO_UDP,
            connect_frame,
            |c, f| {
                let off = c.l4_offset() + 4;
                let len = u16::from_be_bytes([f[off], f[off + 1]]);
                f[off..off + 2].copy_from_slice(&(len + 1).to_be_bytes());
            },
        );
    }
}

#[test]
fn ipv6_header_cut_short_is_malformed() {
    for keep in [0, 1, 20, 39] {
        check_malformed(
            &format!("IPv6 header cut to {keep} bytes"),
            Family::V6,
            Label::Bittorrent,
            PROTO_TCP,
            handshake_frame,
            |c, f| {
                f.truncate(c.l3_offset() + keep);
            },
        );
    }
}

#[test]
fn ipv6_payload_length_beyond_the_frame_is_malformed() {
    check_malformed(
        "IPv6 payload length + 1",
        Family::V6,
        Label::Bittorrent,
        PROTO_TCP,
        handshake_frame,
        |c, f| {
            let off = c.l3_offset() + 4;
            let len = u16::from_be_bytes([f[off], f[off + 1]]);
            f[off..off + 2].copy_from_slice(&(len + 1).to_be_bytes());
        },
    );
}

#[test]
fn ipv6_extension_header_running_past_the_packet_is_malformed() {
    let mut probe = TestProbe::load();
    for vlan in Vlan::ALL {
        let c = conversation(Family::V6).with_vlan(vlan);
        let payload = peer_wire_handshake(&INFO_HASH, &PEER_ID);
        let good = ipv6_with_hop_by_hop(vlan, c.sub, c.remote, PSH_ACK, &payload);
        let mut bad = good.clone();
        // Hop-by-hop length 200: (200 + 1) * 8 bytes, far more than the packet holds.
        bad[c.l3_offset() + 40 + 1] = 200;
        let b = Broken {
            what: format!("hop-by-hop header of 1608 bytes ({vlan:?})"),
            dir: UP,
            bad,
            good,
            key: c.key(PROTO_TCP),
            label: Label::Bittorrent,
        };
        assert_malformed(&mut probe, &b);
    }
}

#[test]
fn vlan_tag_cut_short_is_malformed() {
    // The frame ends inside the (inner) tag: no ethertype to read after it.
    let mut probe = TestProbe::load();
    for vlan in [Vlan::ALL[1], Vlan::ALL[2]] {
        let c = conversation(Family::V4).with_vlan(vlan);
        let good = handshake_frame(&c, UP);
        let mut bad = good.clone();
        bad.truncate(c.l3_offset() - 1);
        let b = Broken {
            what: format!("cut inside the tag ({vlan:?})"),
            dir: UP,
            bad,
            good,
            key: c.key(PROTO_TCP),
            label: Label::Bittorrent,
        };
        assert_malformed(&mut probe, &b);
    }
}

#[test]
fn every_truncation_of_a_labelled_frame_passes_as_malformed() {
    // A frame cut anywhere (keeping at least the Ethernet header, which BPF_PROG_TEST_RUN
    // requires) leaves an IP length pointing past its end: no error, no flow, malformed.
    let mut probe = TestProbe::load();
    for family in Family::ALL {
        for vlan in Vlan::ALL {
            let c = conversation(family).with_vlan(vlan);
            for (proto, full) in [
                (PROTO_TCP, handshake_frame(&c, UP)),
                (PROTO_UDP, connect_frame(&c, UP)),
            ] {
                let what = format!("{family:?} {vlan:?} proto {proto}");
                let before = probe.snapshot();
                let cuts = 14..full.len();
                for len in cuts.clone() {
                    let rc = probe.send(UP, &full[..len]);
                    assert_eq!(rc, XDP_PASS, "{what} cut to {len}");
                }
                let d = probe.snapshot().since(&before);
                assert_eq!(d.flows, 0, "{what}: a cut frame made a flow");
                assert_eq!(d.stat("malformed"), cuts.len() as u64, "{what}");
                assert!(
                    d.nonzero_counters().is_empty(),
                    "{what}: {:?}",
                    d.nonzero_counters()
                );
                // The whole frame is fine.
                assert_eq!(probe.send(UP, &full), XDP_PASS);
                let label = probe.flow(&c.key(proto)).map(|f| Label::from_id(f.label));
                assert_ne!(label, Some(Label::Unknown), "{what}: intact frame");
                assert!(label.is_some(), "{what}: intact frame made no flow");
            }
        }
    }
}

#[test]
fn arp_is_counted_as_non_ip() {
    let mut probe = TestProbe::load();
    for vlan in Vlan::ALL {
        for dir in [UP, DOWN] {
            let what = format!("ARP ({vlan:?}, {dir:?})");
            let frame = arp_request(vlan, SUB_V4, REMOTE_V4);
            assert_untracked(&mut probe, &what, dir, &frame, "non_ip");
        }
    }
}

#[test]
fn icmp_is_counted_as_non_tcp_udp_and_charged_as_icmp() {
    let mut probe = TestProbe::load();
    let key4 = conversation(Family::V4).key_without_ports(1);
    let key6 = conversation(Family::V6).key_without_ports(58);
    for vlan in Vlan::ALL {
        for dir in [UP, DOWN] {
            let what = format!("ICMP echo ({vlan:?}, {dir:?})");
            let frame = match dir {
                UP => icmp_echo(vlan, SUB_V4, REMOTE_V4),
                DOWN => icmp_echo(vlan, REMOTE_V4, SUB_V4),
            };
            assert_charged(
                &mut probe,
                &what,
                dir,
                &frame,
                "non_tcp_udp",
                &key4,
                Label::Icmp,
            );
            let what = format!("ICMPv6 echo ({vlan:?}, {dir:?})");
            let frame = match dir {
                UP => icmpv6_echo(vlan, SUB_V6, REMOTE_V6),
                DOWN => icmpv6_echo(vlan, REMOTE_V6, SUB_V6),
            };
            assert_charged(
                &mut probe,
                &what,
                dir,
                &frame,
                "non_tcp_udp",
                &key6,
                Label::Icmp,
            );
        }
    }
}

#[test]
fn non_first_fragments_are_counted_as_fragments_and_charged_uninspected() {
    // Each fragment's data is a whole TCP segment carrying a handshake: read as if it
    // began with a TCP header, it would be labelled. Later fragments are charged to the
    // subscriber uninspected: to their first fragment's flow once it was seen (the
    // builders give every datagram the same IP identification), before that to the
    // addresses with ports 0, `unknown` (bypass.rs covers these in full).
    let mut probe = TestProbe::load();
    let tcp = IpNextHeaderProtocols::Tcp;
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let mut first_seen: Option<(FlowKey, FlowKey)> = None;
    for vlan in Vlan::ALL {
        let c4 = conversation(Family::V4).with_vlan(vlan);
        let c6 = conversation(Family::V6).with_vlan(vlan);
        let seg4 = tcp_segment(c4.sub, c4.remote, PSH_ACK, &hs);
        let seg6 = tcp_segment(c6.sub, c6.remote, PSH_ACK, &hs);
        let (k4, k6, label) = match first_seen {
            Some((k4, k6)) => (k4, k6, Label::Bittorrent),
            None => (
                c4.key_without_ports(PROTO_TCP),
                c6.key_without_ports(PROTO_TCP),
                Label::Unknown,
            ),
        };
        for more in [true, false] {
            let what = format!("IPv4 fragment at 1480 ({vlan:?}, MF {more})");
            let f = ipv4_fragment(vlan, SUB_V4, REMOTE_V4, tcp, 185, more, &seg4);
            assert_charged(&mut probe, &what, UP, &f, "fragments", &k4, label);
            let what = format!("IPv6 fragment at 1480 ({vlan:?}, M {more})");
            let f = ipv6_fragment(vlan, SUB_V6, REMOTE_V6, tcp, 185, more, &seg6);
            assert_charged(&mut probe, &what, UP, &f, "fragments", &k6, label);
        }
        first_seen = Some((c4.key(PROTO_TCP), c6.key(PROTO_TCP)));
        // A first fragment has the ports: it is keyed and inspected like any packet.
        let before = probe.snapshot();
        let f = ipv4_fragment(vlan, SUB_V4, REMOTE_V4, tcp, 0, true, &seg4);
        assert_eq!(probe.send(UP, &f), XDP_PASS);
        let f = ipv6_fragment(vlan, SUB_V6, REMOTE_V6, tcp, 0, true, &seg6);
        assert_eq!(probe.send(UP, &f), XDP_PASS);
        let d = probe.snapshot().since(&before);
        assert_eq!(
            d.stat("fragments"),
            0,
            "{vlan:?}: first fragments are not fragments"
        );
        for c in [c4, c6] {
            let label = probe
                .flow(&c.key(PROTO_TCP))
                .map(|f| Label::from_id(f.label));
            assert_eq!(
                label,
                Some(Label::Bittorrent),
                "{vlan:?}: first fragment of {c:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Counters.
// ---------------------------------------------------------------------------------------

/// Packets and bytes of `x` going `dir`.
fn total(x: &Exchange, dir: Direction) -> (u64, u64) {
    x.iter()
        .filter(|(d, _)| *d == dir)
        .fold((0, 0), |(p, b), (_, f)| (p + 1, b + f.len() as u64))
}

#[test]
fn bytes_sent_before_labelling_move_to_the_label() {
    let mut probe = TestProbe::load();
    let qinq = Vlan::ALL[2];
    for (family, vlan) in [(Family::V4, Vlan::Untagged), (Family::V6, qinq)] {
        let what = format!("{family:?} {vlan:?}");
        let c = conversation(family).with_vlan(vlan);
        let start = probe.snapshot();
        // SYN, SYN/ACK, ACK: no payload, undecided, counted under unknown.
        let before: Exchange = tcp_open(&c, UP);
        for (dir, f) in &before {
            assert_eq!(probe.send(*dir, f), XDP_PASS);
        }
        let d = probe.snapshot().since(&start);
        for dir in [UP, DOWN] {
            let u = d.counter(Label::Unknown, dir);
            assert_eq!(
                (u.packets, u.bytes),
                total(&before, dir),
                "{what} {dir:?}: before"
            );
            assert_eq!(
                d.counter(Label::Bittorrent, dir).bytes,
                0,
                "{what} {dir:?}: before"
            );
        }
        let after: Exchange = vec![
            (
                UP,
                c.tcp(UP, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID)),
            ),
            (
                DOWN,
                c.tcp(DOWN, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID_B)),
            ),
            (UP, c.tcp(UP, PSH_ACK, &peer_wire_message(2, &[]))),
            (DOWN, c.tcp(DOWN, PSH_ACK, &peer_wire_message(1, &[]))),
            (UP, c.tcp(UP, PSH_ACK, &peer_wire_message(6, &[0; 12]))),
            (
                DOWN,
                c.tcp(DOWN, PSH_ACK, &peer_wire_message(7, &[0xcd; 1024])),
            ),
        ];
        for (dir, f) in &after {
            assert_eq!(probe.send(*dir, f), XDP_PASS);
        }
        let all: Exchange = before.iter().chain(after.iter()).cloned().collect();
        let d = probe.snapshot().since(&start);
        for dir in [UP, DOWN] {
            let bt = d.counter(Label::Bittorrent, dir);
            assert_eq!(
                (bt.packets, bt.bytes),
                total(&all, dir),
                "{what} {dir:?}: whole flow"
            );
            let u = d.counter(Label::Unknown, dir);
            assert_eq!(
                (u.packets, u.bytes),
                (0, 0),
                "{what} {dir:?}: left under unknown"
            );
        }
        // Flows: created once (counted under unknown, in the first packet's direction) and
        // labelled once (in the direction of the packet that decided it).
        assert_eq!(d.counter(Label::Unknown, UP).flows, 1, "{what}");
        assert_eq!(d.counter(Label::Unknown, DOWN).flows, 0, "{what}");
        assert_eq!(d.counter(Label::Bittorrent, UP).flows, 1, "{what}");
        assert_eq!(d.counter(Label::Bittorrent, DOWN).flows, 0, "{what}");
        let flow = probe.flow(&c.key(PROTO_TCP)).expect("flow");
        assert_eq!(
            flow.packets,
            [total(&all, UP).0, total(&all, DOWN).0],
            "{what}"
        );
        assert_eq!(
            flow.bytes,
            [total(&all, UP).1, total(&all, DOWN).1],
            "{what}"
        );
    }
}

/// What a test expects in the counters: per label id and direction, (packets, bytes, flows).
struct Expected(Vec<[(u64, u64, u64); 2]>);

impl Expected {
    fn new() -> Expected {
        Expected(vec![
            [(0, 0, 0); 2];
            peerwarden_common::label::ALL_LABELS.len()
        ])
    }

    /// Sends `frame` going `dir` and expects it counted under `label`.
    fn send(&mut self, probe: &mut TestProbe, label: Label, dir: Direction, frame: &[u8]) {
        assert_eq!(probe.send(dir, frame), XDP_PASS);
        let e = &mut self.0[usize::from(label.id())][dir.index()];
        e.0 += 1;
        e.1 += frame.len() as u64;
    }

    fn flows(&mut self, label: Label, dir: Direction, n: u64) {
        self.0[usize::from(label.id())][dir.index()].2 += n;
    }
}

#[test]
fn counters_add_up_per_label_direction_and_flow() {
    let mut probe = TestProbe::load();
    let mut want = Expected::new();
    // Three peer-wire flows, two started by the subscriber and one from outside.
    for first in [UP, UP, DOWN] {
        let c = conversation(Family::V4);
        let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
        want.send(
            &mut probe,
            Label::Bittorrent,
            first,
            &c.tcp(first, PSH_ACK, &hs),
        );
        let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID_B);
        want.send(
            &mut probe,
            Label::Bittorrent,
            reverse(first),
            &c.tcp(reverse(first), PSH_ACK, &hs),
        );
        want.flows(Label::Bittorrent, first, 1);
        // Created under unknown, in the direction of its first packet.
        want.flows(Label::Unknown, first, 1);
    }
    // Two DHT flows over IPv6, queries coming down.
    for _ in 0..2 {
        let c = conversation(Family::V6);
        want.send(
            &mut probe,
            Label::BittorrentDht,
            DOWN,
            &c.udp(DOWN, &dht_ping_query(&NODE_ID)),
        );
        want.send(
            &mut probe,
            Label::BittorrentDht,
            UP,
            &c.udp(UP, &dht_response_with_ip(c.remote, &NODE_ID)),
        );
        want.flows(Label::BittorrentDht, DOWN, 1);
        want.flows(Label::Unknown, DOWN, 1);
    }
    // A web flow the kernel leaves undecided.
    let web = Conversation::new(Family::V4, fresh_port(), 80).with_vlan(Vlan::Dot1q(10));
    want.send(
        &mut probe,
        Label::Unknown,
        UP,
        &web.tcp(UP, PSH_ACK, &http_get_page()),
    );
    want.send(
        &mut probe,
        Label::Unknown,
        DOWN,
        &web.tcp(DOWN, PSH_ACK, &http_ok(&[b'x'; 900])),
    );
    want.flows(Label::Unknown, UP, 1);
    // Untracked frames count in no label.
    assert_eq!(
        probe.send(UP, &arp_request(Vlan::Untagged, SUB_V4, REMOTE_V4)),
        XDP_PASS
    );
    // ICMP is a flow of its own, labelled from its protocol when it is created.
    want.send(
        &mut probe,
        Label::Icmp,
        DOWN,
        &icmp_echo(Vlan::Untagged, REMOTE_V4, SUB_V4),
    );
    want.flows(Label::Icmp, DOWN, 1);

    let counters = probe.counters();
    assert_eq!(counters.len(), want.0.len());
    for (id, per_dir) in counters.iter().enumerate() {
        for dir in [UP, DOWN] {
            let c = per_dir[dir.index()];
            let w = want.0[id][dir.index()];
            assert_eq!(
                (c.packets, c.bytes, c.flows),
                w,
                "{:?} {dir:?} (packets, bytes, flows)",
                Label::from_id(id as u16)
            );
        }
    }
    let stats = probe.stats();
    assert_eq!(stats["packets"], 14);
    assert_eq!(stats["flows_created"], 7);
    assert_eq!(stats["flows_labelled"], 5);
    assert_eq!(stats["non_ip"], 1);
    assert_eq!(stats["non_tcp_udp"], 1);
}

#[test]
fn ethernet_padding_is_not_taken_as_payload() {
    let mut probe = TestProbe::load();
    let connect = udp_tracker_connect(UDP_TRACKER_MAGIC, 0xabcd);
    for vlan in Vlan::ALL {
        let c = conversation(Family::V4).with_vlan(vlan);
        // An empty UDP datagram padded to 60 bytes with (as much as fits of) a tracker
        // connect request. Untagged, all 16 bytes fit: read as payload they would label it.
        let mut frame = c.udp(UP, &[]);
        let room = ETH_MIN_FRAME - frame.len();
        frame.extend_from_slice(&connect[..room.min(connect.len())]);
        let frame = pad_to_minimum(&frame);
        assert_eq!(frame.len(), ETH_MIN_FRAME);
        assert_eq!(probe.send(UP, &frame), XDP_PASS);
        let flow = probe
            .flow(&c.key(PROTO_UDP))
            .expect("the empty datagram is a flow");
        assert_eq!(
            Label::from_id(flow.label),
            Label::Unknown,
            "{vlan:?}: padding labelled"
        );
        assert_eq!(flow.inspected, 0, "{vlan:?}: padding inspected as payload");
        assert_eq!(
            flow.bytes,
            [60, 0],
            "{vlan:?}: bytes are whole frames, padding included"
        );

        // A bare TCP ACK with 6 bytes after the IP packet (the padding an untagged ACK
        // gets; tagged ones are long enough, but a trailer is as possible): no payload.
        let mut ack = c.tcp(UP, ACK, &[]);
        ack.extend_from_slice(b"\x13BitTo");
        assert_eq!(probe.send(UP, &ack), XDP_PASS);
        let flow = probe.flow(&c.key(PROTO_TCP)).expect("TCP flow");
        assert_eq!(
            flow.inspected, 0,
            "{vlan:?}: TCP padding inspected as payload"
        );
    }
    // The padding's bytes as real payload of an untagged datagram are labelled, so the
    // untagged case above could have failed.
    let c = conversation(Family::V4);
    let mut payload = connect.clone();
    payload.resize(ETH_MIN_FRAME - c.udp(UP, &[]).len(), 0);
    let frame = c.udp(UP, &payload);
    assert_eq!(frame.len(), ETH_MIN_FRAME);
    assert_eq!(probe.send(UP, &frame), XDP_PASS);
    let label = probe
        .flow(&c.key(PROTO_UDP))
        .map(|f| Label::from_id(f.label));
    assert_eq!(label, Some(Label::BittorrentTracker));
    assert_eq!(probe.stat("malformed"), 0);
}

#[test]
fn kernel_fingerprints_stop_after_the_inspection_budget() {
    // INSPECT_BUDGET undecided payload packets end the kernel's inspection: a DHT query
    // after them is not fingerprinted (whatever the flow waits for next, e.g. a verdict
    // from user space, which no one gives here). One packet fewer, and it still labels.
    let mut probe = TestProbe::load();
    let dht = dht_ping_query(&[3; 20]);
    for undecided in [INSPECT_BUDGET - 1, INSPECT_BUDGET] {
        let c = conversation(Family::V4).with_sub_port(41_000 + u16::from(undecided));
        for i in 0..undecided {
            assert_eq!(probe.send(UP, &c.udp(UP, &[i; 100])), XDP_PASS);
        }
        assert_eq!(probe.send(UP, &c.udp(UP, &dht)), XDP_PASS);
        let flow = probe.flow(&c.key(PROTO_UDP)).expect("flow");
        let label = Label::from_id(flow.label);
        if undecided < INSPECT_BUDGET {
            assert_eq!(
                label,
                Label::BittorrentDht,
                "after {undecided} undecided datagrams"
            );
        } else {
            assert_eq!(
                label,
                Label::Unknown,
                "after {undecided} undecided datagrams"
            );
            assert_eq!(flow.inspected, INSPECT_BUDGET, "packets fingerprinted");
        }
    }
}

#[test]
fn kernel_reads_tcp_fingerprints_in_a_flows_first_two_payload_packets_only() {
    // A fixed offset cannot tell a stream's start from a later segment that begins with the
    // same bytes (a web page quoting the handshake in its body): the kernel reads TCP
    // fingerprints in the first two payload packets (the client's first segment and the
    // server's answer), and leaves later ones to the deep tier's stream reassembly.
    let mut probe = TestProbe::load();
    for before in [1u8, 2] {
        let c = conversation(Family::V4).with_sub_port(42_000 + u16::from(before));
        for i in 0..before {
            assert_eq!(probe.send(UP, &c.tcp(UP, PSH_ACK, &[i; 100])), XDP_PASS);
        }
        assert_eq!(probe.send(UP, &handshake_frame(&c, UP)), XDP_PASS);
        let label = Label::from_id(probe.flow(&c.key(PROTO_TCP)).expect("flow").label);
        let want = if before < 2 {
            Label::Bittorrent
        } else {
            Label::Unknown
        };
        assert_eq!(label, want, "a handshake after {before} payload packets");
    }
}
