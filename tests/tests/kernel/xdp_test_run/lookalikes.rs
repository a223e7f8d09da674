//! Look-alikes: inspected, and left unlabelled.

use super::*;

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
