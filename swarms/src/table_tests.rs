//! The swarm table: exact sums over a mix of local↔local and local↔remote flows, caps,
//! retention, pseudonyms, participation and endpoint attribution.

use std::time::Duration;

use peerwarden_common::flow::{FAMILY_V4, PROTO_TCP, PROTO_UDP};

use super::*;

const A: [u8; 4] = [100, 64, 0, 1];
const B: [u8; 4] = [100, 64, 0, 2];
const C: [u8; 4] = [100, 64, 0, 3];
const R1: [u8; 4] = [203, 0, 113, 9];
const R2: [u8; 4] = [198, 51, 100, 7];

fn is_sub(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.octets()[..2] == [100, 64])
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

/// The kernel's key of a flow seen from subscriber-side address `sub`.
fn key(proto: u8, sub: [u8; 4], sub_port: u16, remote: [u8; 4], remote_port: u16) -> FlowKey {
    let mut k = FlowKey {
        proto,
        family: FAMILY_V4,
        sub_port,
        remote_port,
        ..FlowKey::default()
    };
    k.sub_addr[..4].copy_from_slice(&sub);
    k.remote_addr[..4].copy_from_slice(&remote);
    k
}

fn tcp(sub: [u8; 4], sub_port: u16, remote: [u8; 4], remote_port: u16) -> FlowKey {
    key(PROTO_TCP, sub, sub_port, remote, remote_port)
}

fn seen(hash: u8, source: Source, listen_port: ListenPort) -> Sighting {
    Sighting {
        info_hash: InfoHash([hash; 20]),
        source,
        listen_port,
    }
}

fn handshake(hash: u8) -> Sighting {
    seen(hash, Source::PeerWire, ListenPort::None)
}

fn config() -> SwarmsConfig {
    SwarmsConfig {
        enabled: true,
        ..SwarmsConfig::default()
    }
}

fn table(config: &SwarmsConfig) -> SwarmTable {
    SwarmTable::new(config, None).expect("valid config")
}

#[test]
fn local_and_transit_bytes_sum_exactly_and_local_ones_once() {
    let mut t = table(&config());
    let x = t.swarm_id(&InfoHash([1; 20]));
    // A ↔ R1: A's handshake; two flow walks.
    let a_r1 = tcp(A, 50001, R1, 6881);
    assert_eq!(
        t.observe(&a_r1, Direction::Up, &handshake(1), 100, &is_sub),
        Observed::Flow(x)
    );
    assert_eq!(t.account(&a_r1, 1_000, 50_000, 110, &is_sub), Some(x));
    assert_eq!(t.account(&a_r1, 200, 7_000, 120, &is_sub), Some(x));
    // B ↔ R2: R2's handshake arrives towards B.
    let b_r2 = tcp(B, 6881, R2, 40000);
    t.observe(&b_r2, Direction::Down, &handshake(1), 105, &is_sub);
    t.account(&b_r2, 3_000, 0, 120, &is_sub);
    // A ↔ B, two subscribers: the kernel keeps one entry keyed from each side. The handshake
    // is seen in A's entry only; B's entry is attributed with it (one conversation).
    let a_b = tcp(A, 50002, B, 6881);
    let b_a = tcp(B, 6881, A, 50002);
    t.observe(&a_b, Direction::Up, &handshake(1), 106, &is_sub);
    // A sent 10,000 to B and B 4,000 to A: each shows as `up` of its sender's entry. The
    // `down` counts are the same bytes seen again and must not add.
    assert_eq!(t.account(&a_b, 10_000, 4_000, 120, &is_sub), Some(x));
    assert_eq!(t.account(&b_a, 4_000, 10_000, 120, &is_sub), Some(x));
    // Two addresses outside the subscriber prefixes: no swarm of ours.
    let outside = tcp(R1, 1, R2, 2);
    assert_eq!(
        t.observe(&outside, Direction::Up, &handshake(2), 106, &is_sub),
        Observed::Ignored
    );
    assert_eq!(t.account(&outside, 5, 5, 120, &is_sub), None);
    // C ↔ R1 belongs to no swarm: nothing counted anywhere.
    assert_eq!(t.account(&tcp(C, 1, R1, 2), 999, 999, 120, &is_sub), None);

    let s = t.get(&x).expect("swarm");
    assert_eq!(
        s.bytes,
        Bytes {
            local: 14_000,
            transit_up: 4_200,
            transit_down: 57_000
        }
    );
    assert_eq!(s.bytes.total(), 75_200);
    let a = &s.subscribers[&ip(A)];
    assert_eq!((a.sent, a.received), (11_200, 61_000));
    let b = &s.subscribers[&ip(B)];
    assert_eq!((b.sent, b.received), (7_000, 10_000));
    assert_eq!(s.subscribers.len(), 2);
    assert!(!s.subscribers.contains_key(&ip(C)));
    assert_eq!(s.remote_peers(), 2);
    assert_eq!((s.first_seen, s.last_seen), (100, 120));
    // Every byte the subscribers sent or received in the swarm is counted once: local bytes
    // are one subscriber's sent and another's received.
    let sent: u64 = s.subscribers.values().map(|v| v.sent).sum();
    let received: u64 = s.subscribers.values().map(|v| v.received).sum();
    assert_eq!(sent, s.bytes.local + s.bytes.transit_up);
    assert_eq!(received, s.bytes.local + s.bytes.transit_down);
    assert_eq!(t.len(), 1);
    assert_eq!(t.flows(), 3);

    // The store's interval rows: everything once, then nothing until new bytes.
    let total = s.bytes;
    assert_eq!(t.take_interval(), vec![(x, total)]);
    assert_eq!(t.take_interval(), vec![]);
    t.account(&a_r1, 5, 6, 130, &is_sub);
    assert_eq!(
        t.take_interval(),
        vec![(
            x,
            Bytes {
                local: 0,
                transit_up: 5,
                transit_down: 6
            }
        )]
    );
    let listed = t.summaries();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "01".repeat(20));
    assert_eq!((listed[0].subscribers, listed[0].remote_peers), (2, 2));
}

#[test]
fn swarms_and_flows_past_their_caps_evict_the_oldest() {
    let mut t = table(&SwarmsConfig {
        max_swarms: 2,
        max_flows: 2,
        ..config()
    });
    let flows = [tcp(A, 1, R1, 1), tcp(A, 2, R1, 2), tcp(A, 3, R1, 3)];
    for (i, f) in flows.iter().enumerate() {
        t.observe(
            f,
            Direction::Up,
            &handshake(i as u8 + 1),
            100 + i as u64,
            &is_sub,
        );
    }
    assert_eq!((t.len(), t.flows()), (2, 2));
    assert_eq!((t.stats().evicted_swarms, t.stats().evicted_flows), (1, 1));
    assert!(t.get(&t.swarm_id(&InfoHash([1; 20]))).is_none());
    // The evicted flow counts nowhere; the kept ones do.
    assert_eq!(t.account(&flows[0], 10, 10, 110, &is_sub), None);
    assert!(t.account(&flows[2], 10, 10, 110, &is_sub).is_some());
    // A swarm touched by bytes is the newest: the next new one evicts the other.
    t.observe(
        &tcp(A, 4, R1, 4),
        Direction::Up,
        &handshake(4),
        111,
        &is_sub,
    );
    assert!(t.get(&t.swarm_id(&InfoHash([3; 20]))).is_some());
    assert!(t.get(&t.swarm_id(&InfoHash([2; 20]))).is_none());
    assert_eq!(t.stats().evicted_swarms, 2);
}

#[test]
fn swarms_not_seen_for_the_retention_are_dropped() {
    let mut t = table(&SwarmsConfig {
        retention: Duration::from_secs(3600),
        flow_idle: Duration::from_secs(600),
        ..config()
    });
    let (f, g) = (tcp(A, 1, R1, 1), tcp(B, 1, R2, 1));
    t.observe(&f, Direction::Up, &handshake(1), 1_000, &is_sub);
    t.observe(&g, Direction::Up, &handshake(2), 1_000, &is_sub);
    t.account(&g, 1, 1, 3_000, &is_sub);
    t.expire(1_599);
    assert_eq!(t.flows(), 2);
    t.expire(1_600);
    assert_eq!(t.flows(), 1, "f idle for flow_idle");
    t.expire(4_599);
    assert_eq!(t.len(), 2);
    t.expire(4_600);
    assert_eq!(t.len(), 1);
    assert!(t.get(&t.swarm_id(&InfoHash([2; 20]))).is_some());
    assert_eq!(t.stats().expired_swarms, 1);
    t.expire(6_600);
    assert!(t.is_empty());
    assert_eq!(t.stats().expired_swarms, 2);
}

#[test]
fn pseudonyms_replace_hashes_stably_per_key() {
    let c = SwarmsConfig {
        pseudonymize: true,
        ..config()
    };
    assert_eq!(
        SwarmTable::new(&c, None).err(),
        Some(TableError::MissingKey)
    );
    let k1 = PseudonymKey::from_bytes([1; 32]);
    let k2 = PseudonymKey::from_bytes([2; 32]);
    let mut t1 = SwarmTable::new(&c, Some(k1.clone())).expect("key");
    let mut t2 = SwarmTable::new(&c, Some(k2)).expect("key");
    let h = InfoHash([9; 20]);
    for t in [&mut t1, &mut t2] {
        t.observe(&tcp(A, 1, R1, 1), Direction::Up, &handshake(9), 10, &is_sub);
        t.observe(&tcp(B, 1, R2, 1), Direction::Up, &handshake(9), 10, &is_sub);
    }
    let ids1: Vec<SwarmId> = t1.iter().map(|(id, _)| *id).collect();
    let ids2: Vec<SwarmId> = t2.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids1,
        vec![k1.pseudonym(&h)],
        "one swarm, under its pseudonym"
    );
    assert_eq!(ids2.len(), 1);
    assert_ne!(ids1, ids2, "another key, another pseudonym");
    assert_ne!(ids1[0].bytes, h.0);
    assert!(t1.summaries()[0].pseudonymous);
    assert!(!t1.summaries()[0].id.contains(&h.to_hex()));
    // The API finds a swarm by the id it listed, not by the hash behind a pseudonym.
    let listed = t1.id_from_hex(&t1.summaries()[0].id).expect("hex");
    assert!(t1.get(&listed).is_some());
    assert!(
        t1.id_from_hex(&h.to_hex())
            .and_then(|id| t1.get(&id))
            .is_none()
    );
    // Without pseudonyms, the hash itself.
    let mut plain = table(&config());
    assert_eq!(plain.swarm_id(&h).bytes, h.0);
    plain.observe(&tcp(A, 1, R1, 1), Direction::Up, &handshake(9), 10, &is_sub);
    let id = plain.id_from_hex(&h.to_hex()).expect("hex");
    assert!(plain.get(&id).is_some());
}

#[test]
fn announces_count_when_the_subscriber_sends_them() {
    let mut t = table(&config());
    let x = t.swarm_id(&InfoHash([5; 20]));
    let tracker = tcp(A, 40000, R1, 80);
    let announce = seen(5, Source::HttpTracker, ListenPort::Port(51413));
    assert_eq!(
        t.observe(&tracker, Direction::Up, &announce, 10, &is_sub),
        Observed::Participant(x)
    );
    let s = t.get(&x).expect("swarm");
    assert!(s.subscribers.contains_key(&ip(A)));
    assert_eq!(
        s.bytes,
        Bytes::default(),
        "the tracker flow's bytes are not the swarm's"
    );
    assert_eq!(t.flows(), 0);
    assert_eq!(t.account(&tracker, 500, 900, 11, &is_sub), None);
    // A DHT query a subscriber's node receives says nothing about the subscriber.
    let dht = key(PROTO_UDP, B, 6881, R2, 6881);
    let q = seen(6, Source::DhtGetPeers, ListenPort::None);
    assert_eq!(
        t.observe(&dht, Direction::Down, &q, 12, &is_sub),
        Observed::Ignored
    );
    assert!(t.get(&t.swarm_id(&InfoHash([6; 20]))).is_none());
    assert_eq!(t.stats().ignored_inbound, 1);
}

#[test]
fn encrypted_flows_are_attributed_by_their_endpoints_announce_only_when_unambiguous() {
    let mut t = table(&SwarmsConfig {
        announce_ttl: Duration::from_secs(1800),
        ..config()
    });
    let x = t.swarm_id(&InfoHash([5; 20]));
    let announce = seen(5, Source::UdpTracker, ListenPort::Port(51413));
    t.observe(
        &key(PROTO_UDP, A, 40000, R1, 6969),
        Direction::Up,
        &announce,
        10,
        &is_sub,
    );
    // An incoming connection to the announced listen port.
    let enc = tcp(A, 51413, R2, 33333);
    assert_eq!(
        t.attribute_by_endpoint(&enc, 20, &is_sub),
        Attribution::Swarm(x)
    );
    t.account(&enc, 100, 2_000, 30, &is_sub);
    assert_eq!(t.get(&x).map(|s| s.bytes.transit()), Some(2_100));
    // An outgoing one leaves from an ephemeral port: unknown.
    let out = tcp(A, 50123, R2, 6881);
    assert_eq!(
        t.attribute_by_endpoint(&out, 20, &is_sub),
        Attribution::Unknown
    );
    assert_eq!(t.account(&out, 7, 7, 30, &is_sub), None);
    // A second torrent announced on the same port: the next flow is refused.
    let other = seen(6, Source::HttpTracker, ListenPort::Port(51413));
    t.observe(&tcp(A, 40001, R1, 80), Direction::Up, &other, 40, &is_sub);
    let enc2 = tcp(A, 51413, R1, 44444);
    assert_eq!(
        t.attribute_by_endpoint(&enc2, 50, &is_sub),
        Attribution::Ambiguous
    );
    assert_eq!(t.account(&enc2, 7, 7, 50, &is_sub), None);
    // The flow attributed before keeps its swarm.
    assert_eq!(
        t.attribute_by_endpoint(&enc, 50, &is_sub),
        Attribution::Swarm(x)
    );
    let st = t.stats();
    assert_eq!(
        (
            st.endpoint_attributed,
            st.unattributed_ambiguous,
            st.unattributed_unknown
        ),
        (1, 1, 1)
    );
    // DHT `implied_port`: the listen port is the query's own source port.
    let implied = seen(7, Source::DhtAnnouncePeer, ListenPort::Source);
    t.observe(
        &key(PROTO_UDP, B, 6882, R2, 6881),
        Direction::Up,
        &implied,
        60,
        &is_sub,
    );
    let utp = key(PROTO_UDP, B, 6882, R1, 1234);
    let y = t.swarm_id(&InfoHash([7; 20]));
    assert_eq!(
        t.attribute_by_endpoint(&utp, 70, &is_sub),
        Attribution::Swarm(y)
    );
    // After the TTL, nothing.
    let late = tcp(B, 6882, R1, 999);
    assert_eq!(
        t.attribute_by_endpoint(&late, 60 + 1800, &is_sub),
        Attribution::Unknown
    );
}

#[test]
fn one_swarm_holds_a_bounded_number_of_subscribers_and_peers() {
    let mut t = table(&SwarmsConfig {
        max_flows: 10_000,
        ..config()
    });
    let x = t.swarm_id(&InfoHash([3; 20]));
    let announce = seen(3, Source::HttpTracker, ListenPort::Port(6881));
    for i in 0..=MAX_SUBSCRIBERS_PER_SWARM as u32 {
        let sub = [100, 64, (i >> 8) as u8, i as u8];
        t.observe(&tcp(sub, 1, R1, 80), Direction::Up, &announce, 10, &is_sub);
    }
    for i in 0..=MAX_PEERS_PER_SWARM as u32 {
        let remote = [203, 0, (i >> 8) as u8, i as u8];
        t.observe(
            &tcp(A, 2, remote, 6881),
            Direction::Up,
            &handshake(3),
            10,
            &is_sub,
        );
    }
    let s = t.get(&x).expect("swarm");
    assert_eq!(s.subscribers.len(), MAX_SUBSCRIBERS_PER_SWARM);
    assert_eq!(t.stats().refused_subscribers, 1);
    assert_eq!(s.remote_peers(), MAX_PEERS_PER_SWARM);
    assert!(s.remote_peers_capped);
}
