//! Tests of `feed.rs`: samples attribute, walks count deltas, gone flows are forgotten.

use std::net::IpAddr;

use peerwarden_common::flow::FAMILY_V4;

use super::*;
use crate::SwarmsConfig;

fn key(sub: [u8; 4], remote: [u8; 4], sport: u16) -> FlowKey {
    let mut k = FlowKey {
        proto: PROTO_TCP,
        family: FAMILY_V4,
        sub_port: sport,
        remote_port: 6881,
        ..FlowKey::default()
    };
    k.sub_addr[..4].copy_from_slice(&sub);
    k.remote_addr[..4].copy_from_slice(&remote);
    k
}

fn handshake(hash: u8) -> Vec<u8> {
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&[hash; 20]);
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    hs
}

fn subs(a: IpAddr) -> bool {
    a.to_string().starts_with("100.64.")
}

fn feed() -> Feed {
    let config = SwarmsConfig {
        enabled: true,
        ..SwarmsConfig::default()
    };
    Feed::new(SwarmTable::new(&config, None).expect("valid"))
}

#[test]
fn walks_count_each_byte_once_from_the_flows_start() {
    let mut f = feed();
    let transit = key([100, 64, 0, 1], [203, 0, 113, 9], 5000);
    let local = key([100, 64, 0, 1], [100, 64, 0, 2], 5001);
    let other = key([100, 64, 0, 3], [203, 0, 113, 9], 5002);
    assert!(matches!(
        f.sample(&transit, Direction::Up, &handshake(0xab), 100, &subs),
        Some(Observed::Flow(_))
    ));
    f.sample(&local, Direction::Up, &handshake(0xab), 100, &subs);
    // Not a handshake: nothing; a protocol without a transport here: nothing.
    assert_eq!(
        f.sample(&other, Direction::Up, b"GET / HTTP/1.1\r\n\r\n", 100, &subs),
        None
    );
    let mut icmp = other;
    icmp.proto = 1;
    assert_eq!(
        f.sample(&icmp, Direction::Up, &handshake(0xab), 100, &subs),
        None
    );
    let walk1 = [
        (&transit, [1_000, 50_000], false),
        (&local, [7_000, 0], false),
        (&other, [9_999, 9_999], false),
    ];
    assert_eq!(f.walk(walk1, 101, &subs), 2);
    let walk2 = [
        (&transit, [1_500, 80_000], false),
        (&local, [7_100, 0], false),
        (&other, [20_000, 20_000], false),
    ];
    assert_eq!(f.walk(walk2, 102, &subs), 2);
    let id = f.table().summaries()[0].id.clone();
    let s = &f.table().summaries()[0];
    assert_eq!(s.bytes.transit_up, 1_500);
    assert_eq!(s.bytes.transit_down, 80_000);
    assert_eq!(s.bytes.local, 7_100);
    assert_eq!(s.subscribers, 2);
    assert_eq!(id, "ab".repeat(20));
    let rows = f.minute(160);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, s.bytes);
    assert!(f.minute(161).is_empty(), "each interval's bytes once");
}

#[test]
fn a_flow_gone_from_the_table_is_forgotten_and_a_new_one_counts_from_zero() {
    let mut f = feed();
    let k = key([100, 64, 0, 1], [203, 0, 113, 9], 5000);
    f.sample(&k, Direction::Down, &handshake(1), 100, &subs);
    f.walk([(&k, [100, 200], false)], 101, &subs);
    // The flow left the kernel's table: forgotten, so later counters are not its.
    assert_eq!(f.walk([], 102, &subs), 0);
    assert_eq!(f.walk([(&k, [5, 5], false)], 103, &subs), 0);
    assert_eq!(f.table().summaries()[0].bytes.total(), 300);
    // Attributed again; counters that went down are a new flow, counted whole.
    f.sample(&k, Direction::Up, &handshake(1), 104, &subs);
    f.walk([(&k, [1_000, 1_000], false)], 105, &subs);
    f.walk([(&k, [10, 20], false)], 106, &subs);
    assert_eq!(f.table().summaries()[0].bytes.total(), 300 + 2_000 + 30);
}

/// A BEP 15 announce of swarm `hash` listening on `port`.
fn udp_announce(hash: u8, port: u16) -> Vec<u8> {
    let mut p = vec![0u8; 98];
    p[..8].copy_from_slice(&[9; 8]); // the tracker's connection id
    p[8..12].copy_from_slice(&1u32.to_be_bytes()); // announce
    p[16..36].copy_from_slice(&[hash; 20]);
    p[36..56].copy_from_slice(b"-XX0001-abcdefghijkl");
    p[80..84].copy_from_slice(&2u32.to_be_bytes()); // started
    p[92..96].copy_from_slice(&(-1i32).to_be_bytes());
    p[96..98].copy_from_slice(&port.to_be_bytes());
    p
}

#[test]
fn an_encrypted_flow_is_tried_once_through_its_endpoints_announce() {
    let mut f = feed();
    let mut announce = key([100, 64, 0, 1], [198, 51, 100, 7], 40000);
    announce.proto = PROTO_UDP;
    assert!(matches!(
        f.sample(
            &announce,
            Direction::Up,
            &udp_announce(7, 51413),
            100,
            &subs
        ),
        Some(Observed::Participant(_))
    ));
    let enc = key([100, 64, 0, 1], [203, 0, 113, 9], 51413);
    let unknown = key([100, 64, 0, 1], [203, 0, 113, 9], 6000);
    f.walk(
        [(&enc, [100, 900], true), (&unknown, [5, 5], true)],
        101,
        &subs,
    );
    f.walk(
        [(&enc, [200, 1_900], true), (&unknown, [9, 9], true)],
        102,
        &subs,
    );
    let s = &f.table().summaries()[0];
    assert_eq!((s.bytes.transit_up, s.bytes.transit_down), (200, 1_900));
    assert_eq!(f.table().stats().endpoint_attributed, 1);
    assert_eq!(f.table().stats().unattributed_unknown, 1, "tried once");
    assert_eq!(f.table().summaries().len(), 1);
}
