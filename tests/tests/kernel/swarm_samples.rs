//! The swarm view's samples from the kernel (issue 15): a flow the kernel's own fingerprints
//! decide as BitTorrent is never sampled for the deep classifier, so with `swarms.enabled`
//! (the daemon sets `SWARM_VIEW`) the deciding packet and the flow's next few payload
//! packets go to the ring marked swarm-only, within the subscriber's sample budget. With
//! the view off the ring gets nothing from such a flow.

use aya::maps::{MapData, RingBuf};
use peerwarden_common::{
    Direction, Label,
    deep::{SAMPLE_SWARM_ONLY, SWARM_SAMPLES, Sample},
    flow::{FLAG_FINAL, PROTO_TCP, PROTO_UDP},
};
use peerwarden_tests::{
    packets::{Conversation, Family, TcpFlags},
    payloads::{
        INFO_HASH, PEER_ID, UDP_TRACKER_MAGIC, dht_get_peers_query, peer_wire_handshake,
        peer_wire_message, udp_tracker_connect, udp_tracker_connect_response,
    },
    xdp::{TestProbe, XDP_PASS},
};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;

/// A probe with the swarm view on or off, and its sample ring.
fn probe(view: bool) -> (TestProbe, RingBuf<MapData>) {
    let mut p = TestProbe::load();
    p.probe().set_swarm_view(view).expect("SWARM_VIEW");
    let ring = p.probe().take_samples().expect("the sample ring");
    (p, ring)
}

/// Every sample on the ring now.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<Sample> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert!(
            item.len() >= std::mem::size_of::<Sample>(),
            "a whole sample"
        );
        // SAFETY: a whole Sample (size checked), read unaligned.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
    }
    out
}

fn payload(s: &Sample) -> &[u8] {
    &s.data[..(s.captured as usize).min(s.data.len())]
}

/// A peer-wire connection: the TCP handshake, both peers' handshakes, then a bitfield and
/// interested/unchoke messages both ways (more payload packets than the view takes).
fn peer_wire(probe: &mut TestProbe, c: &Conversation) -> (Vec<u8>, Vec<u8>) {
    let mine = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let theirs = peer_wire_handshake(&INFO_HASH, b"-qB4650-zyxwvutsrqpo");
    let ack = TcpFlags::ACK | TcpFlags::PSH;
    let frames = [
        (UP, c.tcp(UP, TcpFlags::SYN, &[])),
        (DOWN, c.tcp(DOWN, TcpFlags::SYN | TcpFlags::ACK, &[])),
        (UP, c.tcp(UP, ack, &mine)),
        (DOWN, c.tcp(DOWN, ack, &theirs)),
        (UP, c.tcp(UP, ack, &peer_wire_message(5, &[0xff; 8]))),
        (DOWN, c.tcp(DOWN, ack, &peer_wire_message(5, &[0x0f; 8]))),
        (UP, c.tcp(UP, ack, &peer_wire_message(2, &[]))),
        (DOWN, c.tcp(DOWN, ack, &peer_wire_message(1, &[]))),
        (UP, c.tcp(UP, ack, &peer_wire_message(6, &[0; 12]))),
    ];
    for (dir, f) in &frames {
        assert_eq!(probe.send(*dir, f), XDP_PASS);
    }
    (mine, theirs)
}

#[test]
fn with_the_view_on_a_handshake_flow_sends_swarm_only_samples_of_both_handshakes() {
    let (mut probe, mut ring) = probe(true);
    let c = Conversation::new(Family::V4, 51413, 6881);
    let (mine, theirs) = peer_wire(&mut probe, &c);
    let f = probe.flow(&c.key(PROTO_TCP)).expect("the flow");
    assert_eq!(Label::from_id(f.label), Label::Bittorrent);
    assert_ne!(f.flags & FLAG_FINAL, 0, "the kernel decided it");
    assert_eq!(f.samples, 0, "nothing went to the deep classifier");

    let got = drain(&mut ring);
    assert_eq!(
        got.len(),
        SWARM_SAMPLES as usize,
        "the deciding packet and the next payload packets, up to the per-flow bound"
    );
    assert!(
        got.iter()
            .all(|s| s.flags & SAMPLE_SWARM_ONLY != 0 && s.key == c.key(PROTO_TCP))
    );
    assert_eq!((got[0].dir, payload(&got[0])), (UP as u8, &mine[..]));
    assert_eq!((got[1].dir, payload(&got[1])), (DOWN as u8, &theirs[..]));
    assert_eq!(probe.stat("samples_sent"), SWARM_SAMPLES as u64);
}

#[test]
fn with_the_view_on_a_udp_trackers_announce_and_a_dht_query_are_sampled() {
    let (mut probe, mut ring) = probe(true);
    // BEP 15: connect (which the kernel decides on), its answer, the announce.
    let tracker = Conversation::new(Family::V4, 40001, 6969);
    let mut announce = 0x1122_3344_5566_7788u64.to_be_bytes().to_vec();
    announce.extend_from_slice(&1u32.to_be_bytes());
    announce.extend_from_slice(&7u32.to_be_bytes());
    announce.extend_from_slice(&INFO_HASH);
    announce.extend_from_slice(&PEER_ID);
    announce.extend_from_slice(&[0; 24]); // downloaded, left, uploaded
    announce.extend_from_slice(&2u32.to_be_bytes()); // event: started
    announce.extend_from_slice(&[0; 8]); // IP, key
    announce.extend_from_slice(&(-1i32).to_be_bytes());
    announce.extend_from_slice(&51413u16.to_be_bytes());
    assert_eq!(announce.len(), 98);
    for (dir, p) in [
        (UP, udp_tracker_connect(UDP_TRACKER_MAGIC, 7)),
        (DOWN, udp_tracker_connect_response(7, 0x1122_3344_5566_7788)),
        (UP, announce.clone()),
    ] {
        assert_eq!(probe.send(dir, &tracker.udp(dir, &p)), XDP_PASS);
    }
    let f = probe
        .flow(&tracker.key(PROTO_UDP))
        .expect("the tracker flow");
    assert_eq!(Label::from_id(f.label), Label::BittorrentTracker);
    let got = drain(&mut ring);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|s| s.flags & SAMPLE_SWARM_ONLY != 0));
    assert_eq!(
        payload(&got[2]),
        &announce[..],
        "the announce reaches the view"
    );

    let dht = Conversation::new(Family::V4, 40002, 6881);
    let query = dht_get_peers_query(&[9; 20], &INFO_HASH);
    probe.send(UP, &dht.udp(UP, &query));
    let f = probe.flow(&dht.key(PROTO_UDP)).expect("the DHT flow");
    assert_eq!(Label::from_id(f.label), Label::BittorrentDht);
    let got = drain(&mut ring);
    assert_eq!(got.len(), 1);
    assert_eq!(payload(&got[0]), &query[..]);
    assert_ne!(got[0].flags & SAMPLE_SWARM_ONLY, 0);
}

#[test]
fn with_the_view_off_a_handshake_flow_sends_nothing() {
    let (mut probe, mut ring) = probe(false);
    let c = Conversation::new(Family::V4, 51413, 6881);
    peer_wire(&mut probe, &c);
    let f = probe.flow(&c.key(PROTO_TCP)).expect("the flow");
    assert_eq!(Label::from_id(f.label), Label::Bittorrent);
    assert_eq!(drain(&mut ring).len(), 0);
    assert_eq!(probe.stat("samples_sent"), 0);
}

/// A subscriber's flood of new handshake flows gets swarm-only samples up to her sample
/// budget (2,000 at once, 1,000 a second: quota.rs) and no further; another subscriber's
/// handshake is sampled at once.
#[test]
fn a_flood_of_handshakes_stays_within_the_subscribers_sample_budget() {
    let (mut probe, mut ring) = probe(true);
    let of = |sub: [u8; 4], port: u16| Conversation {
        sub: std::net::SocketAddr::from((sub, port)),
        ..Conversation::new(Family::V4, port, 6881)
    };
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let flood = 4_000u16;
    let t0 = std::time::Instant::now();
    for i in 0..flood {
        let c = of([100, 64, 1, 66], 10_000 + i);
        probe.send(UP, &c.tcp(UP, TcpFlags::ACK | TcpFlags::PSH, &hs));
    }
    let secs = t0.elapsed().as_secs_f64();
    let sent = drain(&mut ring).len() as u64;
    let over = probe.stat("samples_over_budget");
    let allowed = 2_000 + (1_000.0 * (secs + 0.01)).ceil() as u64;
    println!("flood: {sent} swarm samples in {secs:.3} s (allowed {allowed}), {over} over budget");
    assert!(
        (2_000..=allowed).contains(&sent),
        "the flood's swarm samples stop at the budget: {sent} sent, {allowed} allowed"
    );
    assert_eq!(sent + over, flood as u64, "each handshake sent or refused");
    assert_eq!(probe.stat("ring_drops"), 0, "the ring never filled");
    let bob = of([100, 64, 1, 20], 50_000);
    probe.send(UP, &bob.tcp(UP, TcpFlags::ACK | TcpFlags::PSH, &hs));
    let got = drain(&mut ring);
    assert_eq!(got.len(), 1, "bob's handshake is sampled despite the flood");
    assert_eq!(got[0].key, bob.key(PROTO_TCP));
}
