//! Each BitTorrent form, in every family, encapsulation and direction.

use super::*;

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
