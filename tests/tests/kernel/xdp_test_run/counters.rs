//! Counters: per label, direction and flow, adding up to exactly what was sent; the
//! inspection budget.

use super::*;

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
