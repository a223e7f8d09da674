//! The engine's unit tests: detectors through the engine, the cache, behaviour, bounds.

use super::*;
use crate::protocols::{quic, tls};

const SYN: u8 = 0x02;
const SYNACK: u8 = 0x12;
const PSH: u8 = 0x18;

fn key(proto: u8, src: &str, dst: &str) -> FlowKey {
    FlowKey {
        proto,
        src: src.parse().expect("src"),
        dst: dst.parse().expect("dst"),
    }
}

/// Feeds packets (direction, flags, seq, payload) of one flow; the last verdict seen.
fn feed(e: &mut Engine, k: FlowKey, pkts: &[(Direction, u8, u32, &[u8])]) -> Option<Verdict> {
    let mut last = None;
    for (i, (dir, flags, seq, payload)) in pkts.iter().enumerate() {
        let v = e.on_packet(&PacketMeta {
            ts_ns: i as u64 * 1000,
            key: k,
            dir: *dir,
            payload,
            tcp_flags: *flags,
            tcp_seq: *seq,
        });
        if v.is_some() {
            last = v;
        }
    }
    last
}

fn random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

use Direction::{Down, Up};

#[test]
fn mse_shape_needs_the_syn_and_random_keys() {
    let (ya, yb) = (random(96 + 200, 1), random(96 + 37, 2));
    let mut e = Engine::new(EngineConfig::default());
    let k = key(6, "100.64.1.10:50000", "198.51.100.7:51413");
    let pkts: [(Direction, u8, u32, &[u8]); 4] = [
        (Up, SYN, 99, b""),
        (Down, SYNACK, 499, b""),
        (Up, PSH, 100, &ya),
        (Down, PSH, 500, &yb),
    ];
    let v = feed(&mut e, k, &pkts).expect("labelled");
    assert_eq!(
        (v.to_string(), v.confidence),
        ("bittorrent.encrypted".into(), Confidence::Payload)
    );
    // Mid-flow (no SYN): the same sizes say nothing.
    let k2 = key(6, "100.64.1.10:50001", "198.51.100.7:51413");
    assert_eq!(feed(&mut e, k2, &pkts[2..]), None);
    // A structured first payload (a length prefix) is not a DH key.
    let mut framed = ya.clone();
    let n = (framed.len() - 2) as u16;
    framed[..2].copy_from_slice(&n.to_be_bytes());
    let k3 = key(6, "100.64.1.10:50002", "198.51.100.7:51413");
    assert_eq!(
        feed(
            &mut e,
            k3,
            &[pkts[0], pkts[1], (Up, PSH, 100, &framed), pkts[3]]
        ),
        None
    );
    // On an HTTPS port the same shape is left alone.
    let k4 = key(6, "100.64.1.10:50003", "198.51.100.7:443");
    assert_eq!(feed(&mut e, k4, &pkts), None);
}

fn handshake() -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 48]);
    h
}

#[test]
fn endpoint_cache_applies_both_ways() {
    let mut e = Engine::new(EngineConfig::default());
    let bt = key(6, "100.64.1.10:40000", "198.51.100.7:6881");
    let hs = handshake();
    let v = feed(&mut e, bt, &[(Up, PSH, 1, &hs), (Down, PSH, 1, &hs)]);
    assert_eq!(v.map(|v| v.label), Some(Label::Bittorrent));
    assert_eq!(e.finish(&bt, 10).label, Label::Bittorrent);
    // Later, an encrypted-looking UDP flow towards the cached peer...
    let to_peer = key(17, "100.64.1.20:30000", "198.51.100.7:6881");
    let junk = random(300, 9);
    let v = feed(&mut e, to_peer, &[(Up, 0, 0, &junk)]).expect("cached at once");
    assert_eq!(
        (v.label, v.confidence),
        (Label::BittorrentUtp, Confidence::Cache)
    );
    // ...and one opened by the cached peer itself (it is the sender this time).
    let from_peer = key(6, "198.51.100.7:6881", "203.0.113.5:50000");
    let v = feed(&mut e, from_peer, &[(Up, PSH, 1, &junk)]).expect("cached");
    assert_eq!(
        (v.label, v.confidence),
        (Label::Bittorrent, Confidence::Cache)
    );
    // Payload evidence beats the cache.
    let web = key(6, "198.51.100.7:6881", "203.0.113.6:80");
    let v = feed(
        &mut e,
        web,
        &[(Up, PSH, 1, b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")],
    );
    assert_eq!(v.map(|v| v.label), Some(Label::Http));
    // Entries expire.
    let late = key(17, "100.64.1.30:30000", "198.51.100.7:6881");
    let mut p = PacketMeta {
        ts_ns: 11 * 60 * 1_000_000_000,
        key: late,
        dir: Up,
        payload: &junk,
        tcp_flags: 0,
        tcp_seq: 0,
    };
    assert_eq!(e.on_packet(&p), None);
    p.ts_ns += 1;
    assert_eq!(e.finish(&late, p.ts_ns).label, Label::Unknown);
}

#[test]
fn behaviour_labels_only_undecided_high_port_flows_of_a_p2p_node() {
    let mut e = Engine::new(EngineConfig::default());
    let me = "100.64.1.10";
    let junk = random(200, 3);
    let mut keys = Vec::new();
    for i in 0..8u8 {
        let out = key(
            17,
            &format!("{me}:{}", 40000 + i as u16),
            &format!("203.0.113.{}:{}", i + 1, 50000 + i as u16),
        );
        feed(&mut e, out, &[(Up, 0, 0, &junk)]);
        let inbound = key(
            17,
            &format!("198.51.100.{}:{}", i + 1, 60000 + i as u16),
            &format!("{me}:6881"),
        );
        feed(&mut e, inbound, &[(Up, 0, 0, &junk)]);
        keys.push(out);
    }
    let web = key(6, &format!("{me}:45000"), "203.0.113.200:443");
    feed(&mut e, web, &[(Up, PSH, 1, &junk)]);
    let v = e.finish(&keys[0], 1);
    assert_eq!(
        (v.label, v.confidence),
        (Label::P2pBehavioural, Confidence::Behaviour)
    );
    assert_eq!(e.finish(&web, 1).label, Label::Unknown, "a well-known port");
}

#[test]
fn mid_flow_peer_wire_pickup() {
    let mut e = Engine::new(EngineConfig::default());
    let k = key(6, "100.64.1.10:40000", "198.51.100.7:51413");
    let mut a = vec![0, 0, 0, 5, 4, 0, 0, 0, 7]; // have
    a.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
    let mut b = vec![0, 0, 0, 13, 6]; // request
    b.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0x40, 0, 0, 0, 0x40, 0]);
    let v = feed(&mut e, k, &[(Up, PSH, 1000, &a), (Down, PSH, 5000, &b)]);
    assert_eq!(v.map(|v| v.label), Some(Label::Bittorrent));
}

#[test]
fn sni_split_over_segments_and_added_hosts() {
    let mut e = Engine::new(EngineConfig::default());
    e.add_video_host("example-tv.net", "exampletv");
    for (host, want) in [
        ("r4---sn-5hne6n.googlevideo.com", "video.youtube"),
        ("edge.example-tv.net", "video.exampletv"),
        ("www.example.org", "tls"),
    ] {
        let rec = tls::tests::records(&tls::tests::client_hello_msg(Some(host)), 4000);
        let (a, b) = rec.split_at(40);
        let k = key(
            6,
            "100.64.1.10:40000",
            &format!("198.51.100.{}:443", host.len()),
        );
        let v = feed(
            &mut e,
            k,
            &[
                (Up, SYN, 9, b""),
                (Up, PSH, 10, a),
                (Up, PSH, 10 + a.len() as u32, b),
            ],
        )
        .expect("labelled");
        assert_eq!(v.to_string(), want, "{host}");
    }
}

#[test]
fn quic_initial_through_the_engine() {
    let mut e = Engine::new(EngineConfig::default());
    let hello = tls::tests::client_hello_msg(Some("www.netflix.com"));
    let pkt = quic::tests::initial(1, &[5; 8], &[(0, &hello)]);
    let k = key(17, "100.64.1.10:40000", "198.51.100.9:443");
    let v = feed(&mut e, k, &[(Up, 0, 0, &pkt)]).expect("labelled");
    assert_eq!(
        (v.to_string(), v.confidence),
        ("video.netflix".into(), Confidence::Hostname)
    );
}

#[test]
fn http_video_streaming_and_trackers() {
    let mut e = Engine::new(EngineConfig::default());
    let cases: [(&[u8], &[u8], &str); 4] = [
        (
            b"GET /live/master.m3u8 HTTP/1.1\r\nHost: cdn.example\r\n\r\n",
            b"",
            "hls",
        ),
        (
            b"GET /v/1 HTTP/1.1\r\nHost: cdn.example\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: video/webm\r\n\r\n",
            "http.video",
        ),
        (
            b"GET /announce?info_hash=%01%02&port=6881 HTTP/1.1\r\nHost: t.example\r\n\r\n",
            b"",
            "bittorrent.tracker",
        ),
        (
            b"GET /index.html HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
            "http",
        ),
    ];
    for (i, (req, resp, want)) in cases.iter().enumerate() {
        let k = key(6, &format!("100.64.1.10:{}", 41000 + i), "198.51.100.9:80");
        let mut pkts = vec![(Up, PSH, 1, *req)];
        if !resp.is_empty() {
            pkts.push((Down, PSH, 1, *resp));
        }
        feed(&mut e, k, &pkts);
        assert_eq!(e.finish(&k, 9).to_string(), *want);
    }
}

#[test]
fn rtmp_rtsp_edonkey_gnutella() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c01 = vec![3u8];
    c01.extend(random(1536, 4));
    let mut s01 = vec![3u8];
    s01.extend(random(1536, 5));
    let k = key(6, "100.64.1.10:42000", "198.51.100.9:1935");
    let v = feed(
        &mut e,
        k,
        &[
            (Up, PSH, 1, &c01[..1400]),
            (Up, PSH, 1401, &c01[1400..]),
            (Down, PSH, 1, &s01),
        ],
    );
    assert_eq!(v.map(|v| v.label), Some(Label::Rtmp));
    let k = key(6, "100.64.1.10:42001", "198.51.100.9:8554");
    let v = feed(
        &mut e,
        k,
        &[(
            Up,
            PSH,
            1,
            b"DESCRIBE rtsp://198.51.100.9:8554/s RTSP/1.0\r\nCSeq: 2\r\n\r\n",
        )],
    );
    assert_eq!(v.map(|v| v.label), Some(Label::Rtsp));
    let mut hello = vec![0xe3];
    hello.extend_from_slice(&40u32.to_le_bytes());
    hello.extend_from_slice(&[0x01, 16]);
    hello.extend(random(38, 6));
    let k = key(6, "100.64.1.10:42002", "198.51.100.9:4662");
    assert_eq!(
        feed(&mut e, k, &[(Up, PSH, 1, &hello)]).map(|v| v.label),
        Some(Label::Edonkey)
    );
    let k = key(6, "100.64.1.10:42003", "198.51.100.9:6346");
    let v = feed(
        &mut e,
        k,
        &[(Up, PSH, 1, b"GNUTELLA CONNECT/0.6\r\nUser-Agent: x\r\n\r\n")],
    );
    assert_eq!(v.map(|v| v.label), Some(Label::Gnutella));
}

#[test]
fn flow_table_is_bounded() {
    let mut e = Engine::new(EngineConfig {
        max_flows: 2,
        ..EngineConfig::default()
    });
    let hs = handshake();
    for port in 1..=3u16 {
        let k = key(6, &format!("100.64.1.10:{port}"), "198.51.100.9:6881");
        let v = feed(&mut e, k, &[(Up, PSH, 1, &hs)]);
        assert_eq!(v.is_some(), port <= 2, "port {port}");
    }
    assert_eq!(e.flow_count(), 2);
}

#[test]
fn evict_oldest_keeps_the_most_recently_seen_flows() {
    let mut e = Engine::new(EngineConfig::default());
    for i in 0..10u16 {
        let k = key(
            17,
            &format!("100.64.1.10:{}", 40000 + i),
            "198.51.100.9:9999",
        );
        e.on_packet(&PacketMeta {
            ts_ns: u64::from(i),
            key: k,
            dir: Direction::Up,
            payload: &[0; 8],
            tcp_flags: 0,
            tcp_seq: 0,
        });
    }
    assert_eq!(e.evict_oldest(20), 0);
    assert_eq!(e.evict_oldest(4), 6);
    assert_eq!(e.flow_count(), 4);
    for i in 0..10u16 {
        let k = key(
            17,
            &format!("100.64.1.10:{}", 40000 + i),
            "198.51.100.9:9999",
        );
        assert_eq!(e.verdict(&k).is_some(), i >= 6, "flow {i}");
    }
}

#[test]
fn budget_ends_inspection() {
    let mut e = Engine::new(EngineConfig {
        packet_budget: 4,
        ..EngineConfig::default()
    });
    let k = key(17, "100.64.1.10:42000", "198.51.100.9:9999");
    let junk = random(100, 7);
    for _ in 0..4 {
        assert_eq!(feed(&mut e, k, &[(Up, 0, 0, &junk)]), None);
    }
    // Past the budget, even a DHT message changes nothing.
    let dht = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe";
    assert_eq!(feed(&mut e, k, &[(Up, 0, 0, dht)]), None);
    assert_eq!(e.verdict(&k).map(|v| v.label), Some(Label::Unknown));
}

/// An MPEG-TS datagram of `n` packets (PID 0x100, payload only), bare or behind an
/// RTP/MP2T header with one CSRC and a one-word extension.
fn mpegts(n: usize, rtp: bool) -> Vec<u8> {
    let mut p = if rtp {
        vec![
            0x91, 33, 0, 7, 0, 0, 0, 9, 1, 2, 3, 4, 0, 0, 0, 5, 0xbe, 0xde, 0, 1, 0, 0, 0, 0,
        ]
    } else {
        Vec::new()
    };
    for i in 0..n {
        p.extend_from_slice(&[0x47, 0x41, 0x00, 0x10 | i as u8]);
        p.extend(random(184, i as u32 + 1).iter().map(|b| b | 0x80));
    }
    p
}

#[test]
fn iptv_after_three_ts_datagrams_and_never_voice() {
    for rtp in [false, true] {
        let mut e = Engine::new(EngineConfig::default());
        let k = key(17, "198.51.100.20:1234", "239.1.1.1:5004");
        let d: Vec<Vec<u8>> = (0..3).map(|_| mpegts(7, rtp)).collect();
        let pkts: Vec<(Direction, u8, u32, &[u8])> = d.iter().map(|p| (Up, 0, 0, &p[..])).collect();
        assert_eq!(
            feed(&mut e, k, &pkts[..2]),
            None,
            "two datagrams are not enough"
        );
        let v = feed(&mut e, k, &pkts[2..]).expect("labelled");
        assert_eq!((v.label, v.class()), (Label::Iptv, Class::Video));
        assert!(e.is_final(&k));
    }
    // RTP of payload type 33 going one way is not taken for voice on the way either.
    let mut e = Engine::new(EngineConfig::default());
    let k = key(17, "198.51.100.20:1234", "100.64.1.10:5004");
    let mut cut = mpegts(7, true);
    cut.truncate(24 + 100);
    let d: Vec<Vec<u8>> = (0..6).map(|_| cut.clone()).collect();
    let pkts: Vec<(Direction, u8, u32, &[u8])> = d.iter().map(|p| (Up, 0, 0, &p[..])).collect();
    assert_eq!(feed(&mut e, k, &pkts), None);
}

#[test]
fn iptv_not_from_one_crafted_datagram_among_quic() {
    let mut e = Engine::new(EngineConfig::default());
    let k = key(17, "100.64.1.10:50000", "198.51.100.7:443");
    let ts = mpegts(1, false);
    let mut quic_short = random(188, 9);
    quic_short[0] = 0x52;
    let pkts: Vec<(Direction, u8, u32, &[u8])> = vec![
        (Up, 0, 0, &ts),
        (Down, 0, 0, &ts),
        (Up, 0, 0, &quic_short),
        (Down, 0, 0, &ts),
        (Up, 0, 0, &quic_short),
    ];
    let v = feed(&mut e, k, &pkts);
    assert_ne!(v.map(|v| v.label), Some(Label::Iptv));
}

/// A plain eDonkey message: protocol 0xe3, length, opcode, body.
fn ed2k(op: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xe3];
    m.extend_from_slice(&(body.len() as u32 + 1).to_le_bytes());
    m.push(op);
    m.extend_from_slice(body);
    m
}

#[test]
fn edonkey_hello_answered_teaches_the_cache_for_obfuscated_flows() {
    let mut e = Engine::new(EngineConfig::default());
    let mut hello_body = vec![16u8];
    hello_body.extend(random(16 + 6 + 20, 21));
    let hello = ed2k(0x01, &hello_body);
    let answer = ed2k(0x4c, &random(60, 22));
    // What an obfuscated connection shows: a random first payload (the 12-byte header and
    // padding) and the answer (6 bytes and padding), then ciphertext.
    let (obf_c, obf_s, data) = (random(40, 23), random(30, 24), random(120, 25));
    let obfuscated = |e: &mut Engine, k: FlowKey| {
        feed(
            e,
            k,
            &[
                (Up, SYN, 0, &[]),
                (Up, PSH, 1, &obf_c),
                (Down, PSH, 1, &obf_s),
                (Up, PSH, 41, &data),
            ],
        );
        e.finish(&k, 100)
    };
    // Before any plain eDonkey: nothing to go on.
    let first = key(6, "100.64.1.10:43000", "198.51.100.9:4662");
    assert_eq!(obfuscated(&mut e, first).label, Label::Unknown);
    // A hello alone (never answered) labels its flow but teaches nothing.
    let lone = key(6, "100.64.1.10:43001", "198.51.100.9:4662");
    let v = feed(&mut e, lone, &[(Up, PSH, 1, &hello)]).expect("hello");
    assert_eq!(v.label, Label::Edonkey);
    assert!(!e.is_final(&lone), "provisional until answered");
    assert_eq!(e.finish(&lone, 10).label, Label::Edonkey);
    let second = key(6, "100.64.1.11:43002", "198.51.100.9:4662");
    assert_eq!(obfuscated(&mut e, second).label, Label::Unknown);
    // Answered: confirmed both ways, and the client port 198.51.100.9:4662 is cached.
    let plain = key(6, "100.64.1.10:43003", "198.51.100.9:4662");
    feed(
        &mut e,
        plain,
        &[(Up, PSH, 1, &hello), (Down, PSH, 1, &answer)],
    );
    assert!(e.is_final(&plain));
    assert_eq!(e.finish(&plain, 20).label, Label::Edonkey);
    let later = key(6, "100.64.1.12:43004", "198.51.100.9:4662");
    let v = obfuscated(&mut e, later);
    assert_eq!((v.label, v.confidence), (Label::Edonkey, Confidence::Cache));
    // Another port of that host is not vouched for.
    let other = key(6, "100.64.1.12:43005", "198.51.100.9:4663");
    assert_eq!(obfuscated(&mut e, other).label, Label::Unknown);
}
