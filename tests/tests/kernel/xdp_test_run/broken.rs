//! Broken and untracked frames: passed, unlabelled, counted in their statistic.

use super::*;

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
