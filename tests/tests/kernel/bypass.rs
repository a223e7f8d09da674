//! Everything a subscriber sends is the subscriber's (issue 11, item 5): IP protocols other
//! than TCP and UDP, fragments, and packets broken above a sound IP header are counted for
//! their subscriber and held to the plan's total, to a `block` of their class and to the
//! rules for `other`.
//!
//! Two levels, one in each test binary (they share the policy set-up,
//! `peerwarden_tests::policy::PolicyProbe`):
//!
//! - `BPF_PROG_TEST_RUN` (the `test_run` cases below): crafted ESP, AH, GRE, ICMP, SCTP
//!   packets, fragments and broken headers, IPv4 and IPv6, through the probe with a compiled
//!   policy installed as the daemon does; the flow table, the subscriber's kernel counters
//!   and the verdicts say what happened to them.
//! - The namespace lab (`lab_*`, in tests/tests/labs/bypass.rs): the real daemon on a gateway namespace,
//!   a subscriber on a 1 mbit plan uploading as ESP (an `ip xfrm` SA pair), as GRE (a
//!   `gre` tunnel) and as fragmented UDP; the far side's link counters and the daemon's API
//!   say whether the plan held.
//!
//! Needs root (it loads the probe and makes namespaces); panics saying so otherwise.

use std::{collections::BTreeMap, time::Instant};

use peerwarden::ktime::coarse_tick_ns;
use peerwarden_common::{
    Class, Direction, Label,
    flow::{FLAG_FINAL, PROTO_TCP, PROTO_UDP},
    policy::SubUsage,
};
use peerwarden_policies::compile::bucket_depth;
use peerwarden_tests::{
    packets::{
        Conversation, Family, TcpFlags, esp_payload, fix_ipv4_checksum, gre_payload, ipv4,
        sctp_init,
    },
    payloads::{UDP_TRACKER_MAGIC, udp_tracker_connect},
    policy::{ALICE, BOB, PolicyProbe},
    xdp::XDP_PASS,
};
use pnet_packet::ip::IpNextHeaderProtocols;

const XDP_DROP: u32 = 1;
const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;

/// A plan that only counts (its total far above anything a test sends).
const COUNT_ONLY: &str = "    rate: { down: 10gbit, up: 10gbit }\n";

const PROTO_ICMP: u8 = 1;
const PROTO_GRE: u8 = 47;
const PROTO_ESP: u8 = 50;
const PROTO_AH: u8 = 51;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;

/// The IP protocols without ports a subscriber might send, with the label the probe gives
/// each, and a plausible packet of it.
fn portless(family: Family) -> Vec<(&'static str, u8, Label, Vec<u8>)> {
    let icmp = match family {
        Family::V4 => ("ICMP", PROTO_ICMP, Label::Icmp),
        Family::V6 => ("ICMPv6", PROTO_ICMPV6, Label::Icmp),
    };
    // An echo request: type, code, checksum (not checked by the probe), id, sequence, data.
    let echo_type = if family == Family::V4 { 8 } else { 128 };
    let mut echo = vec![echo_type, 0, 0, 0, 0, 7, 0, 1];
    echo.extend_from_slice(&[0xab; 56]);
    let inner = ipv4(
        "10.0.0.1".parse().expect("addr"),
        "10.0.0.2".parse().expect("addr"),
        IpNextHeaderProtocols::Udp,
        &[0u8; 300],
    );
    let mut all = vec![
        (
            "ESP",
            PROTO_ESP,
            Label::VpnIpsec,
            esp_payload(0x1001, 1, 400),
        ),
        ("GRE", PROTO_GRE, Label::Gre, gre_payload(&inner)),
        (icmp.0, icmp.1, icmp.2, echo),
        ("SCTP", PROTO_SCTP, Label::Unknown, sctp_init(5000, 5001)),
    ];
    // In IPv6, AH is an extension header: the probe walks past it to the TCP or UDP header
    // it authenticates (AH does not encrypt), and files the packet under that flow.
    if family == Family::V4 {
        // Next header TCP, length 4 (24 bytes): SPI, sequence, ICV; then the segment.
        let mut ah = vec![6, 4, 0, 0, 0, 0, 0x20, 0x01, 0, 0, 0, 1];
        ah.extend_from_slice(&[0x5a; 12 + 100]);
        all.push(("AH", PROTO_AH, Label::VpnIpsec, ah));
    }
    all
}

fn conversation(family: Family) -> Conversation {
    Conversation::new(family, 40_000, 443)
}

#[test]
fn other_protocols_are_flows_of_their_subscriber_with_their_labels() {
    let mut p = PolicyProbe::load(COUNT_ONLY);
    // Expected per (label, direction) for alice: packets and bytes.
    let mut want: BTreeMap<(u16, usize), (u64, u64)> = BTreeMap::new();
    let mut sent = 0;
    for family in Family::ALL {
        let c = conversation(family);
        for (name, proto, label, l4) in portless(family) {
            let what = format!("{name} over {family:?}");
            let up = c.ip(UP, proto, &l4);
            let down = c.ip(DOWN, proto, &l4);
            for _ in 0..3 {
                assert_eq!(p.verdict(UP, &up), XDP_PASS, "{what}");
            }
            for _ in 0..2 {
                assert_eq!(p.verdict(DOWN, &down), XDP_PASS, "{what}");
            }
            sent += 5;
            let f = p
                .flow(&c.key_without_ports(proto))
                .unwrap_or_else(|| panic!("{what}: no flow under (addresses, {proto}, 0, 0)"));
            assert_eq!(Label::from_id(f.label), label, "{what}: label");
            assert_ne!(f.flags & FLAG_FINAL, 0, "{what}: final at once");
            assert_eq!(f.packets, [3, 2], "{what}: packets");
            assert_eq!(
                f.bytes,
                [3 * up.len() as u64, 2 * down.len() as u64],
                "{what}: bytes"
            );
            for (dir, n, len) in [(0, 3, up.len()), (1, 2, down.len())] {
                let w = want.entry((label.id(), dir)).or_default();
                w.0 += n;
                w.1 += n * len as u64;
            }
        }
    }
    let alice = p.usage(ALICE);
    for ((label, dir), (packets, bytes)) in &want {
        let got = alice.labels[usize::from(*label)][*dir];
        assert_eq!(
            (got.packets, got.bytes),
            (*packets, *bytes),
            "alice's {:?} counters, direction {dir}",
            Label::from_id(*label)
        );
    }
    assert_eq!(p.usage(BOB), SubUsage::default(), "bob was charged");
    assert_eq!(
        p.stat("non_tcp_udp"),
        sent,
        "each counts as non_tcp_udp too"
    );
    assert_eq!(p.stat("policy_drops"), 0);
}

#[test]
fn a_block_of_class_other_drops_them_and_a_label_rule_picks_its_label() {
    let mut p = PolicyProbe::load(&format!(
        "{COUNT_ONLY}    classes:\n      other: {{ action: block }}\n"
    ));
    let mut n = 0;
    for family in Family::ALL {
        let c = conversation(family);
        for (name, proto, _, l4) in portless(family) {
            for dir in [UP, DOWN] {
                let v = p.verdict(dir, &c.ip(dir, proto, &l4));
                assert_eq!(v, XDP_DROP, "{name} over {family:?} going {dir:?}");
                n += 1;
            }
        }
    }
    let other = p.usage(ALICE).policy[Class::Other as usize];
    assert_eq!(other[0].dropped_packets + other[1].dropped_packets, n);
    // A rule for one label: GRE dropped, ESP of the same subscriber passes.
    let mut p = PolicyProbe::load(&format!(
        "{COUNT_ONLY}    classes:\n      gre: {{ action: block }}\n"
    ));
    for family in Family::ALL {
        let c = conversation(family);
        let inner = vec![0u8; 100];
        assert_eq!(
            p.verdict(UP, &c.ip(UP, PROTO_GRE, &gre_payload(&inner))),
            XDP_DROP
        );
        assert_eq!(
            p.verdict(UP, &c.ip(UP, PROTO_ESP, &esp_payload(1, 1, 100))),
            XDP_PASS
        );
    }
}

#[test]
fn the_plan_total_polices_them_at_its_rate() {
    // 1 mbit each way, the plan's total only: the kind of plan the subscriber had.
    const RATE: u64 = 125_000;
    let mut p = PolicyProbe::load("    rate: { down: 1mbit, up: 1mbit }\n");
    let c4 = conversation(Family::V4);
    let c6 = conversation(Family::V6);
    let pad = |l4: Vec<u8>, to: usize| {
        let mut l4 = l4;
        l4.resize(to, 0x33);
        l4
    };
    // Full-size frames of each protocol, interleaved, as a tunnel would send them.
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("ESP", c4.ip(UP, PROTO_ESP, &esp_payload(7, 1, 1472))),
        (
            "GRE",
            c4.ip(UP, PROTO_GRE, &pad(gre_payload(&[0x45]), 1480)),
        ),
        ("SCTP", c4.ip(UP, PROTO_SCTP, &pad(sctp_init(1, 2), 1480))),
        (
            "ICMPv6",
            c6.ip(UP, PROTO_ICMPV6, &pad(vec![128, 0, 0, 0], 1460)),
        ),
        (
            "ESP over IPv6",
            c6.ip(UP, PROTO_ESP, &esp_payload(8, 1, 1452)),
        ),
    ];
    let mut passed_bytes = 0u64;
    let mut dropped: BTreeMap<&str, u32> = BTreeMap::new();
    let t0 = Instant::now();
    for _ in 0..60 {
        for (name, f) in &frames {
            match p.verdict(UP, f) {
                XDP_PASS => passed_bytes += f.len() as u64,
                XDP_DROP => *dropped.entry(name).or_default() += 1,
                v => panic!("{name}: verdict {v}"),
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let offered: u64 = frames.iter().map(|(_, f)| 60 * f.len() as u64).sum();
    let depth = bucket_depth(RATE, None, coarse_tick_ns()) as f64;
    let allowed = depth + elapsed * RATE as f64 + frames[0].1.len() as f64;
    println!(
        "offered {offered} bytes in {elapsed:.3} s, passed {passed_bytes}, allowed {allowed:.0}, \
         drops {dropped:?}"
    );
    assert!(
        (passed_bytes as f64) <= allowed,
        "{passed_bytes} bytes passed a 1 mbit total in {elapsed:.3} s (at most {allowed:.0})"
    );
    assert!(
        passed_bytes as f64 >= depth - frames[0].1.len() as f64,
        "the bucket's depth should pass: only {passed_bytes} bytes did"
    );
    for (name, _) in &frames {
        assert!(
            dropped.get(name).copied().unwrap_or(0) > 0,
            "{name}: never dropped"
        );
    }
    let alice = p.usage(ALICE);
    let drops: u64 = alice.policy.iter().map(|c| c[0].dropped_bytes).sum();
    let seen: u64 = alice.labels.iter().map(|l| l[0].bytes).sum();
    assert_eq!(seen, offered, "alice's counters carry every byte she sent");
    assert_eq!(
        drops,
        offered - passed_bytes,
        "her drops are what did not pass"
    );
}

/// A UDP datagram of 3,000 bytes whose first bytes are a BitTorrent tracker connect (the
/// kernel fingerprint matches on the first fragment), in fragments of 1,232 bytes.
fn tracker_fragments(c: &Conversation, dir: Direction, id: u32) -> Vec<Vec<u8>> {
    let mut payload = udp_tracker_connect(UDP_TRACKER_MAGIC, 0x1234_5678);
    payload.resize(3000, 0);
    c.udp_fragments(dir, &payload, id, 1232)
}

#[test]
fn later_fragments_follow_their_first_fragments_flow() {
    let mut p = PolicyProbe::load(COUNT_ONLY);
    let mut later = 0;
    for family in Family::ALL {
        let c = Conversation::new(family, 40_100, 6969);
        let up = tracker_fragments(&c, UP, 0x5151);
        let down = tracker_fragments(&c, DOWN, 0x7777);
        assert_eq!((up.len(), down.len()), (3, 3), "three fragments each");
        for f in up.iter() {
            assert_eq!(p.verdict(UP, f), XDP_PASS);
        }
        for f in down.iter() {
            assert_eq!(p.verdict(DOWN, f), XDP_PASS);
        }
        later += 4;
        let what = format!("{family:?}");
        let f = p
            .flow(&c.key(PROTO_UDP))
            .unwrap_or_else(|| panic!("{what}: no flow"));
        assert_eq!(Label::from_id(f.label), Label::BittorrentTracker, "{what}");
        assert_eq!(f.packets, [3, 3], "{what}: every fragment on the flow");
        let bytes = |v: &[Vec<u8>]| v.iter().map(|f| f.len() as u64).sum::<u64>();
        assert_eq!(f.bytes, [bytes(&up), bytes(&down)], "{what}");
        assert!(
            p.flow(&c.key_without_ports(PROTO_UDP)).is_none(),
            "{what}: no fragment was charged apart"
        );
    }
    let tracker = p.usage(ALICE).labels[usize::from(Label::BittorrentTracker.id())];
    assert_eq!([tracker[0].packets, tracker[1].packets], [6, 6]);
    assert_eq!(
        p.stat("fragments"),
        later,
        "later fragments still count as fragments"
    );
    assert_eq!(
        p.stat("malformed"),
        0,
        "a first fragment's UDP length is not malformed"
    );
    // A block of the first fragment's class drops the later fragments too.
    let mut p = PolicyProbe::load(&format!(
        "{COUNT_ONLY}    classes:\n      p2p: {{ action: block }}\n"
    ));
    for family in Family::ALL {
        let c = Conversation::new(family, 40_101, 6969);
        for (i, f) in tracker_fragments(&c, UP, 0x1234).iter().enumerate() {
            assert_eq!(p.verdict(UP, f), XDP_DROP, "{family:?} fragment {i}");
        }
    }
    assert_eq!(
        p.usage(ALICE).policy[Class::P2p as usize][0].dropped_packets,
        6
    );
}

#[test]
fn orphan_fragments_are_charged_to_the_subscribers_other() {
    let mut p = PolicyProbe::load(COUNT_ONLY);
    for family in Family::ALL {
        let c = Conversation::new(family, 40_200, 6969);
        // The first fragment never arrives.
        let frags = tracker_fragments(&c, UP, 0x0d0d);
        for f in &frags[1..] {
            assert_eq!(p.verdict(UP, f), XDP_PASS);
        }
        let what = format!("{family:?}");
        let f = p
            .flow(&c.key_without_ports(PROTO_UDP))
            .unwrap_or_else(|| panic!("{what}: orphans not charged"));
        assert_eq!(Label::from_id(f.label), Label::Unknown, "{what}");
        assert_ne!(f.flags & FLAG_FINAL, 0, "{what}: final, nothing to inspect");
        assert_eq!(f.packets, [2, 0], "{what}");
        assert!(
            p.flow(&c.key(PROTO_UDP)).is_none(),
            "{what}: no flow with ports"
        );
    }
    let unknown = p.usage(ALICE).labels[usize::from(Label::Unknown.id())][0];
    assert_eq!(unknown.packets, 4);
    // ... and held to the rules for other.
    let mut p = PolicyProbe::load(&format!(
        "{COUNT_ONLY}    classes:\n      other: {{ action: block }}\n"
    ));
    let c = Conversation::new(Family::V6, 40_201, 6969);
    for f in &tracker_fragments(&c, UP, 0x0e0e)[1..] {
        assert_eq!(p.verdict(UP, f), XDP_DROP);
    }
}

#[test]
fn packets_broken_above_a_sound_ip_header_are_charged() {
    let mut p = PolicyProbe::load(&format!(
        "{COUNT_ONLY}    classes:\n      other: {{ action: block }}\n"
    ));
    for family in Family::ALL {
        let c = conversation(family);
        let what = format!("{family:?}");
        // TCP data offset of 4 words: the TCP header is broken, the IP header is not.
        let mut bad = c.tcp(UP, TcpFlags::ACK, b"payload");
        let off = c.l4_offset() + 12;
        bad[off] = 0x40 | (bad[off] & 0x0f);
        let before = p.stat("malformed");
        assert_eq!(p.verdict(UP, &bad), XDP_DROP, "{what}: other is blocked");
        assert_eq!(
            p.stat("malformed"),
            before + 1,
            "{what}: still counted as malformed"
        );
        let f = p
            .flow(&c.key_without_ports(PROTO_TCP))
            .unwrap_or_else(|| panic!("{what}: not charged"));
        assert_eq!(
            (Label::from_id(f.label), f.packets),
            (Label::Unknown, [1, 0])
        );
        // A UDP length past the packet: the same.
        let mut bad = c.udp(UP, b"datagram");
        let off = c.l4_offset() + 4;
        bad[off..off + 2].copy_from_slice(&600u16.to_be_bytes());
        assert_eq!(p.verdict(UP, &bad), XDP_DROP, "{what}: broken UDP");
        assert!(p.flow(&c.key_without_ports(PROTO_UDP)).is_some(), "{what}");
    }
    // Broken at the IP layer (the kernel's IP input drops these itself): counted as
    // malformed, charged to no one, passed to that fate.
    let c = conversation(Family::V4);
    let mut bad = c.tcp(UP, TcpFlags::ACK, b"payload");
    let l3 = c.l3_offset();
    let total = u16::from_be_bytes([bad[l3 + 2], bad[l3 + 3]]);
    bad[l3 + 2..l3 + 4].copy_from_slice(&(total + 1).to_be_bytes());
    fix_ipv4_checksum(&mut bad, l3);
    let (flows, usage) = (p.probe.flows().expect("flows").len(), p.usage(ALICE));
    assert_eq!(p.verdict(UP, &bad), XDP_PASS);
    assert_eq!(p.probe.flows().expect("flows").len(), flows, "no flow");
    assert_eq!(p.usage(ALICE), usage, "not charged");
}

#[test]
fn neighbor_discovery_is_never_charged_nor_policed() {
    // A subscriber whose plan is full, or whose class other is blocked, must still reach
    // its router: ICMPv6 types 133-137 pass untouched, counted only as non_tcp_udp.
    let mut p = PolicyProbe::load(&format!(
        "{COUNT_ONLY}    classes:\n      other: {{ action: block }}\n"
    ));
    let c = conversation(Family::V6);
    for t in 133u8..=137 {
        let mut nd = vec![t, 0, 0, 0, 0, 0, 0, 0];
        nd.extend_from_slice(&[0x20; 16]);
        assert_eq!(
            p.verdict(UP, &c.ip(UP, PROTO_ICMPV6, &nd)),
            XDP_PASS,
            "type {t}"
        );
    }
    assert!(p.flow(&c.key_without_ports(PROTO_ICMPV6)).is_none());
    assert_eq!(p.usage(ALICE), SubUsage::default());
    assert_eq!(p.stat("non_tcp_udp"), 5);
    // An echo request is not Neighbor Discovery: charged, and blocked as other.
    let echo = c.ip(UP, PROTO_ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]);
    assert_eq!(p.verdict(UP, &echo), XDP_DROP);
}
