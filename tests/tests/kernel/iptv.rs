//! IPTV in the kernel (issue 12 item 4): MPEG-TS datagrams, bare and in RTP/MP2T, unicast
//! and multicast, labelled `iptv` by the probe itself on the third datagram in a row that
//! parses, with the flow's earlier packets moved to the label; everyday UDP, a lone crafted
//! datagram and a run broken before three never are. Through `BPF_PROG_TEST_RUN`, as root.

use std::net::{IpAddr, SocketAddr};

use peerwarden_common::{
    Confidence, Direction, Label,
    fingerprint::iptv::IPTV_RUN,
    flow::{FLAG_FINAL, PROTO_UDP},
};
use peerwarden_tests::{
    iptv::{bystanders, rtp_mp2t, ts_datagram},
    packets::{Conversation, Family, Vlan},
    xdp::{TestProbe, XDP_PASS},
};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;

/// A conversation on its own ports (each case is a flow of its own).
fn conv(family: Family, port: u16) -> Conversation {
    Conversation::new(family, port, 5000)
}

/// Sends `payloads` going `dir` on `c` and returns the flow's label after each one.
fn labels_after_each(
    probe: &mut TestProbe,
    c: &Conversation,
    dir: Direction,
    payloads: &[Vec<u8>],
) -> Vec<Label> {
    let key = c.key(PROTO_UDP);
    payloads
        .iter()
        .map(|p| {
            assert_eq!(probe.send(dir, &c.udp(dir, p)), XDP_PASS);
            // The key says which end is the subscriber's: a flow filed otherwise is missing.
            let f = probe.flow(&key).unwrap_or_else(|| {
                let keys: Vec<String> = probe
                    .flows()
                    .iter()
                    .map(|(k, _)| format!("sub {} remote {}", k.sub_ip(), k.remote_ip()))
                    .collect();
                panic!(
                    "no flow with sub {} remote {}; the table: {keys:?}",
                    key.sub_ip(),
                    key.remote_ip()
                )
            });
            Label::from_id(f.label)
        })
        .collect()
}

/// What the probe should show after each of `n` TS datagrams: unknown, then `iptv` from
/// the run's third.
fn expected(n: usize) -> Vec<Label> {
    (0..n)
        .map(|i| {
            if i + 1 >= usize::from(IPTV_RUN) {
                Label::Iptv
            } else {
                Label::Unknown
            }
        })
        .collect()
}

#[test]
fn iptv_bare_and_rtp_mpegts_are_labelled_on_the_third_datagram() {
    let mut probe = TestProbe::load();
    let ts = |i: u8| ts_datagram(0x100, i.wrapping_mul(7), 7);
    let cases: Vec<(&str, Family, Direction, Vec<Vec<u8>>)> = vec![
        ("bare, v4, down", Family::V4, DOWN, (0..5).map(ts).collect()),
        ("bare, v6, up", Family::V6, UP, (0..5).map(ts).collect()),
        (
            "bare, one TS packet a datagram",
            Family::V4,
            DOWN,
            (0..4).map(|i| ts_datagram(0x44, i, 1)).collect(),
        ),
        (
            "rtp, v4",
            Family::V4,
            DOWN,
            (0..5)
                .map(|i| rtp_mp2t(i.into(), &[], None, &ts(i)))
                .collect(),
        ),
        (
            "rtp with CSRCs and an extension, v6",
            Family::V6,
            DOWN,
            (0..5)
                .map(|i| rtp_mp2t(i.into(), &[7, 8, 9], Some(3), &ts(i)))
                .collect(),
        ),
    ];
    let mut failures = Vec::new();
    for (port, (what, family, dir, payloads)) in (30_000..).zip(&cases) {
        let c = conv(*family, port);
        let before = probe.snapshot();
        let got = labels_after_each(&mut probe, &c, *dir, payloads);
        if got != expected(payloads.len()) {
            failures.push(format!("{what}: labels {got:?}"));
            continue;
        }
        let f = probe.flow(&c.key(PROTO_UDP)).expect("the flow");
        if f.flags & FLAG_FINAL == 0 || Confidence::from_id(f.confidence) != Confidence::Payload {
            failures.push(format!(
                "{what}: flags {:#x}, confidence {}",
                f.flags, f.confidence
            ));
        }
        // Every frame, those before the label too, counts under iptv.
        let sent: u64 = payloads.iter().map(|p| c.udp(*dir, p).len() as u64).sum();
        let d = probe.snapshot().since(&before);
        let got = d.counter(Label::Iptv, *dir);
        if (got.packets, got.bytes) != (payloads.len() as u64, sent) {
            failures.push(format!(
                "{what}: iptv counted {} packets / {} bytes, sent {} / {sent}",
                got.packets,
                got.bytes,
                payloads.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn iptv_multicast_is_keyed_to_the_unicast_subscriber_or_the_group() {
    let mut probe = TestProbe::load();
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| ts_datagram(0x100, i, 7)).collect();
    let head_end_v4: SocketAddr = "198.51.100.20:1234".parse().expect("addr");
    let head_end_v6: SocketAddr = "[2001:db8:ffff::20]:1234".parse().expect("addr");
    let group = |ip: &str| SocketAddr::new(ip.parse::<IpAddr>().expect("group"), 5004);
    // A head-end on the internet side sending to a group: the packets come down, the group
    // stands where a subscriber would (no unicast subscriber address is in them), the
    // head-end is the remote end.
    let down = [
        Conversation {
            sub: group("239.1.1.1"),
            remote: head_end_v4,
            vlan: Vlan::Untagged,
        },
        Conversation {
            sub: group("ff3e::8000:1"),
            remote: head_end_v6,
            vlan: Vlan::Untagged,
        },
        Conversation {
            sub: group("ff05::1:3"),
            remote: head_end_v6,
            vlan: Vlan::Untagged,
        },
    ];
    // A subscriber sending to a group: the subscriber's unicast address is its side.
    let to_group = |family, port, ip: &str| {
        Conversation::new(family, port, 5004).with_remote_ip(ip.parse().expect("group"))
    };
    let up = [
        to_group(Family::V4, 31_000, "239.2.2.2"),
        to_group(Family::V6, 31_001, "ff3e::2"),
    ];
    let mut failures = Vec::new();
    for (c, dir) in down
        .iter()
        .map(|c| (c, DOWN))
        .chain(up.iter().map(|c| (c, UP)))
    {
        let got = labels_after_each(&mut probe, c, dir, &payloads);
        if got != expected(payloads.len()) {
            failures.push(format!("{} -> {:?}: labels {got:?}", c.remote, dir));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn iptv_never_for_everyday_udp_a_lone_crafted_datagram_or_a_broken_run() {
    let mut probe = TestProbe::load();
    let mut failures = Vec::new();
    let ts = ts_datagram(0x100, 0, 7);
    let not_ts = vec![0x11u8; 200];
    let mut flows: Vec<(String, Vec<Vec<u8>>)> = bystanders()
        .into_iter()
        .map(|(w, f)| (w.to_string(), f))
        .collect();
    // One crafted TS datagram in a QUIC-looking flow, two in a row then something else,
    // and runs of two broken again and again.
    let quic = flows[0].1.clone();
    let mut lone = quic.clone();
    lone.insert(3, ts.clone());
    flows.push(("one crafted datagram".into(), lone));
    flows.push((
        "two then other".into(),
        vec![ts.clone(), ts.clone(), not_ts.clone(), ts.clone()],
    ));
    flows.push((
        "runs of two".into(),
        (0..15)
            .map(|i| {
                if i % 3 == 2 {
                    not_ts.clone()
                } else {
                    ts.clone()
                }
            })
            .collect(),
    ));
    for (port, (what, payloads)) in (32_000..).zip(&flows) {
        for family in [Family::V4, Family::V6] {
            let c = conv(family, port);
            // Alternate directions: a two-way exchange, as the protocols are.
            let key = c.key(PROTO_UDP);
            for (i, p) in payloads.iter().enumerate() {
                let dir = if i % 2 == 0 { UP } else { DOWN };
                assert_eq!(probe.send(dir, &c.udp(dir, p)), XDP_PASS);
            }
            let label = Label::from_id(probe.flow(&key).expect("the flow").label);
            if label == Label::Iptv {
                failures.push(format!("{what} ({family:?}) labelled iptv"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
