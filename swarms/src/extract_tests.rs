//! The extractors on packets built from the specifications' layouts, on packets that break
//! them by one byte, and on random bytes.

use super::*;

const HASH: [u8; 20] =
    *b"\x9a\x81\x33\x1c\x4f\x02\xd0\x7e\xbb\x10\x55\xe0\x21\x42\x6c\x5d\x09\xff\x00\x25";
const PEER: &[u8; 20] = b"-TR4050-0123456789ab";

/// BEP 3: 19, "BitTorrent protocol", 8 reserved bytes, info_hash, peer_id.
fn handshake() -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    h.extend_from_slice(&HASH);
    h.extend_from_slice(PEER);
    h
}

/// BEP 15: connection_id 8, action 4, transaction 4, info_hash 20, peer_id 20, downloaded 8,
/// left 8, uploaded 8, event 4, ip 4, key 4, num_want 4, port 2.
fn udp_announce(port: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    p.extend_from_slice(&HASH);
    p.extend_from_slice(PEER);
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&1_000_000u64.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
    p.extend_from_slice(&(-1i32).to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    assert_eq!(p.len(), 98);
    p
}

/// Percent-encodes every byte that is not unreserved (RFC 3986), as clients do.
fn escape(b: &[u8]) -> String {
    escape_with(b, false)
}

/// The same with lower-case hex digits (some clients write those).
fn escape_with(b: &[u8], lower: bool) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else if lower {
                format!("%{c:02x}")
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn bstr(b: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", b.len()).into_bytes();
    v.extend_from_slice(b);
    v
}

/// BEP 5's `get_peers` / `announce_peer` query, keys sorted as bencode wants.
fn dht(method: &str, hash: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut m = b"d1:ad2:id".to_vec();
    m.extend(bstr(b"abcdefghij0123456789"));
    m.extend(bstr(b"info_hash"));
    m.extend(bstr(hash));
    m.extend_from_slice(extra);
    m.extend_from_slice(b"e1:q");
    m.extend(bstr(method.as_bytes()));
    m.extend_from_slice(b"1:t2:aa1:y1:qe");
    m
}

#[test]
fn peer_wire_handshake_gives_hash_reserved_and_peer_id() {
    let h = peer_wire_handshake(&handshake()).expect("a handshake");
    assert_eq!(h.info_hash, InfoHash(HASH));
    assert_eq!(h.peer_id, Some(*PEER));
    assert_eq!(h.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    // The first 48 bytes alone (the peer id comes later): the hash, no id.
    let h = peer_wire_handshake(&handshake()[..48]).expect("hash part");
    assert_eq!((h.info_hash, h.peer_id), (InfoHash(HASH), None));
    // Messages after the handshake in the same segment (bitfield, extension handshake).
    let mut more = handshake();
    more.extend_from_slice(&[0, 0, 0, 3, 5, 0xff, 0xf0]);
    assert_eq!(
        peer_wire_handshake(&more).map(|h| h.info_hash),
        Some(InfoHash(HASH))
    );
    let s = sighting(Transport::Tcp, &handshake()).expect("sighting");
    assert_eq!(s.source, Source::PeerWire);
    assert_eq!(s.listen_port, ListenPort::None);
    // Not over UDP without uTP's header.
    assert_eq!(sighting(Transport::Udp, &handshake()), None);
}

#[test]
fn handshakes_cut_short_or_with_a_wrong_length_byte_are_refused() {
    let h = handshake();
    for n in 0..48 {
        assert_eq!(peer_wire_handshake(&h[..n]), None, "{n} bytes");
    }
    for len in [0u8, 18, 20, 0x93, 255] {
        let mut bad = h.clone();
        bad[0] = len;
        assert_eq!(peer_wire_handshake(&bad), None, "length byte {len}");
    }
    let mut bad = h.clone();
    bad[1] = b'b';
    assert_eq!(peer_wire_handshake(&bad), None);
    // Mid-stream: the handshake not at the segment's start.
    let mut late = vec![0u8; 4];
    late.extend_from_slice(&h);
    assert_eq!(peer_wire_handshake(&late), None);
}

#[test]
fn utp_carries_the_handshake_after_its_header_and_extensions() {
    // BEP 29: type ST_DATA (0) and version 1 in the first byte, extension, then 18 bytes.
    let mut p = vec![0x01, 0x00];
    p.extend_from_slice(&[
        0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0x10, 0, 0, 0, 1, 0, 0,
    ]);
    p.extend_from_slice(&handshake());
    let s = sighting(Transport::Udp, &p).expect("uTP handshake");
    assert_eq!((s.info_hash, s.source), (InfoHash(HASH), Source::PeerWire));
    // With a selective-ack extension (type 1, 4 bytes) before the data.
    let mut e = vec![0x01, 0x01];
    e.extend_from_slice(&p[2..20]);
    e.extend_from_slice(&[0, 4, 0xff, 0, 0, 0]);
    e.extend_from_slice(&handshake());
    assert_eq!(utp_handshake(&e).map(|h| h.info_hash), Some(InfoHash(HASH)));
    // An extension chain running off the end, or a ST_STATE packet: nothing.
    assert_eq!(utp_handshake(&e[..22]), None);
    let mut state = p.clone();
    state[0] = 0x21;
    assert_eq!(utp_handshake(&state), None);
}

#[test]
fn udp_announce_by_bep_15s_layout() {
    let a = udp_tracker_announce(&udp_announce(51413)).expect("announce");
    assert_eq!(a.info_hash, InfoHash(HASH));
    assert_eq!(a.peer_id, *PEER);
    assert_eq!((a.event, a.port), (2, 51413));
    // BEP 41 options after the fixed part are allowed.
    let mut ext = udp_announce(6881);
    ext.extend_from_slice(&[2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c', b'e']);
    let s = sighting(Transport::Udp, &ext).expect("with options");
    assert_eq!(
        (s.source, s.listen_port),
        (Source::UdpTracker, ListenPort::Port(6881))
    );
}

#[test]
fn udp_announce_refuses_what_breaks_the_layout() {
    let good = udp_announce(6881);
    assert_eq!(udp_tracker_announce(&good[..97]), None, "truncated");
    let set = |at: usize, bytes: &[u8]| {
        let mut p = good.clone();
        p[at..at + bytes.len()].copy_from_slice(bytes);
        udp_tracker_announce(&p)
    };
    assert_eq!(set(8, &0u32.to_be_bytes()), None, "connect, not announce");
    assert_eq!(set(8, &2u32.to_be_bytes()), None, "scrape");
    assert_eq!(
        set(0, &0x417_2710_1980u64.to_be_bytes()),
        None,
        "connect's magic"
    );
    assert_eq!(set(80, &4u32.to_be_bytes()), None, "event 4");
    assert_eq!(set(96, &[0, 0]), None, "port 0");
    assert_eq!(set(92, &(-2i32).to_be_bytes()), None, "num_want -2");
    assert_eq!(set(64, &u64::MAX.to_be_bytes()), None, "negative left");
    assert_eq!(set(16, &[0; 20]), None, "zero hash");
    assert!(
        set(80, &3u32.to_be_bytes()).is_some(),
        "stopped is an event"
    );
}

#[test]
fn http_announce_in_any_order_with_binary_bytes_escaped() {
    let q = format!(
        "GET /announce?info_hash={}&peer_id={}&port=51413&uploaded=0&downloaded=0&left=10&compact=1&event=started HTTP/1.1\r\nHost: t.example\r\n\r\n",
        escape(&HASH),
        escape(PEER)
    );
    let t = http_tracker_request(q.as_bytes()).expect("announce");
    assert_eq!(t.info_hashes, vec![InfoHash(HASH)]);
    assert_eq!(
        t.kind,
        HttpTrackerKind::Announce {
            peer_id: *PEER,
            port: 51413
        }
    );
    // Another order, another path (a private tracker's passkey path), lower-case escapes.
    let q = format!(
        "GET /0f1e2d/announce.php?port=6881&peer_id={}&key=x&info_hash={} HTTP/1.0\r\n\r\n",
        escape(PEER),
        escape_with(&HASH, true)
    );
    let s = sighting(Transport::Tcp, q.as_bytes()).expect("announce");
    assert_eq!(
        (s.info_hash, s.source, s.listen_port),
        (InfoHash(HASH), Source::HttpTracker, ListenPort::Port(6881))
    );
}

#[test]
fn http_scrape_lists_its_hashes_and_is_no_participation() {
    let other = [0x42u8; 20];
    let q = format!(
        "GET /scrape?info_hash={}&info_hash={} HTTP/1.1\r\n\r\n",
        escape(&HASH),
        escape(&other)
    );
    let t = http_tracker_request(q.as_bytes()).expect("scrape");
    assert_eq!(t.kind, HttpTrackerKind::Scrape);
    assert_eq!(t.info_hashes, vec![InfoHash(HASH), InfoHash(other)]);
    assert_eq!(sighting(Transport::Tcp, q.as_bytes()), None);
}

#[test]
fn http_requests_that_are_not_announces_are_refused() {
    let h = escape(&HASH);
    let p = escape(PEER);
    for (why, q) in [
        // A torrent site's page with an info_hash in its query: no peer_id, no port.
        (
            "no peer_id or port",
            format!("GET /details.php?info_hash={h} HTTP/1.1\r\n"),
        ),
        (
            "no port",
            format!("GET /announce?info_hash={h}&peer_id={p} HTTP/1.1\r\n"),
        ),
        (
            "no peer_id",
            format!("GET /announce?info_hash={h}&port=1 HTTP/1.1\r\n"),
        ),
        (
            "19 bytes",
            format!(
                "GET /announce?info_hash={}&peer_id={p}&port=1 HTTP/1.1\r\n",
                escape(&HASH[..19])
            ),
        ),
        (
            "21 bytes",
            format!("GET /announce?info_hash={h}00&peer_id={p}&port=1 HTTP/1.1\r\n"),
        ),
        (
            "two hashes",
            format!("GET /announce?info_hash={h}&info_hash={h}&peer_id={p}&port=1 HTTP/1.1\r\n"),
        ),
        (
            "bad escape",
            format!("GET /announce?info_hash={h}&peer_id={p}&port=1&x=%G1 HTTP/1.1\r\n"),
        ),
        (
            "port out of range",
            format!("GET /announce?info_hash={h}&peer_id={p}&port=65536 HTTP/1.1\r\n"),
        ),
        (
            "port not a number",
            format!("GET /announce?info_hash={h}&peer_id={p}&port=-1 HTTP/1.1\r\n"),
        ),
        (
            "two ports",
            format!("GET /announce?info_hash={h}&peer_id={p}&port=1&port=2 HTTP/1.1\r\n"),
        ),
        (
            "POST",
            format!("POST /announce?info_hash={h}&peer_id={p}&port=1 HTTP/1.1\r\n"),
        ),
        (
            "no HTTP version",
            format!("GET /announce?info_hash={h}&peer_id={p}&port=1\r\n"),
        ),
        (
            "hash in the path",
            format!("GET /announce/info_hash={h}&peer_id={p}&port=1 HTTP/1.1\r\n"),
        ),
        (
            "scrape without hash",
            "GET /scrape?x=1 HTTP/1.1\r\n".to_string(),
        ),
    ] {
        assert_eq!(http_tracker_request(q.as_bytes()), None, "{why}: {q}");
    }
    // Cut anywhere before the version, the request line says nothing.
    let q = format!("GET /announce?info_hash={h}&peer_id={p}&port=1 HTTP/1.1\r\n");
    let cut = q.find(" HTTP/1.").expect("version");
    for n in 0..cut + 8 {
        assert_eq!(http_tracker_request(&q.as_bytes()[..n]), None, "{n} bytes");
    }
    assert!(http_tracker_request(q.as_bytes()).is_some());
}

#[test]
fn dht_get_peers_and_announce_peer() {
    let q = dht_query(&dht("get_peers", &HASH, b"")).expect("get_peers");
    assert_eq!(
        (q.method, q.info_hash, q.port),
        (DhtMethod::GetPeers, InfoHash(HASH), None)
    );
    let extra = [b"4:porti6881e5:token".as_slice(), &bstr(b"tok")].concat();
    let q = dht_query(&dht("announce_peer", &HASH, &extra)).expect("announce_peer");
    assert_eq!(
        (q.method, q.port, q.implied_port),
        (DhtMethod::AnnouncePeer, Some(6881), false)
    );
    let s = sighting(Transport::Udp, &dht("announce_peer", &HASH, &extra)).expect("sighting");
    assert_eq!(s.listen_port, ListenPort::Port(6881));
    // implied_port: the listen port is the datagram's source port (keys out of order).
    let extra = [b"12:implied_porti1e5:token".as_slice(), &bstr(b"tok")].concat();
    let s = sighting(Transport::Udp, &dht("announce_peer", &HASH, &extra)).expect("implied");
    assert_eq!(
        (s.source, s.listen_port),
        (Source::DhtAnnouncePeer, ListenPort::Source)
    );
}

#[test]
fn dht_messages_that_name_no_swarm_are_refused() {
    let token = [b"4:porti6881e5:token".as_slice(), &bstr(b"tok")].concat();
    for (why, m) in [
        ("19-byte hash", dht("get_peers", &HASH[..19], b"")),
        (
            "21-byte hash",
            dht("get_peers", &[HASH.as_slice(), b"x"].concat(), b""),
        ),
        ("find_node", dht("find_node", &HASH, b"")),
        (
            "announce without token",
            dht("announce_peer", &HASH, b"4:porti6881e"),
        ),
        (
            "announce without port",
            dht(
                "announce_peer",
                &HASH,
                &[b"5:token".as_slice(), &bstr(b"t")].concat(),
            ),
        ),
        (
            "port out of range",
            dht(
                "announce_peer",
                &HASH,
                &[b"4:porti70000e5:token".as_slice(), &bstr(b"t")].concat(),
            ),
        ),
        (
            "trailing byte",
            [dht("get_peers", &HASH, b""), b"x".to_vec()].concat(),
        ),
        (
            "truncated",
            dht("announce_peer", &HASH, &token)[..60].to_vec(),
        ),
    ] {
        assert_eq!(dht_query(&m), None, "{why}");
    }
    // A response (`y` = `r`) carries no info_hash argument.
    let r = b"d1:rd2:id20:abcdefghij01234567895:nodes0:e1:t2:aa1:y1:re";
    assert_eq!(dht_query(r), None);
    let mut as_response = dht("get_peers", &HASH, b"");
    let n = as_response.len();
    as_response[n - 2] = b'r';
    assert_eq!(dht_query(&as_response), None);
}

/// SplitMix64: a fixed-seed generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = Rng(0x5eed_5eed_1234_5678);
    let seeds = [
        handshake(),
        udp_announce(6881),
        dht("get_peers", &HASH, b""),
        format!(
            "GET /announce?info_hash={}&peer_id={}&port=1 HTTP/1.1\r\n",
            escape(&HASH),
            escape(PEER)
        )
        .into_bytes(),
    ];
    let mut found = 0;
    for i in 0..20_000 {
        let mut p = if i % 2 == 0 {
            let n = (rng.next() % 1600) as usize;
            (0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>()
        } else {
            seeds[i % seeds.len()].clone()
        };
        // Flip, cut or extend a few bytes of a valid message.
        for _ in 0..(rng.next() % 4) {
            if p.is_empty() {
                break;
            }
            let at = (rng.next() as usize) % p.len();
            match rng.next() % 3 {
                0 => p[at] = rng.next() as u8,
                1 => p.truncate(at),
                _ => p.insert(at, rng.next() as u8),
            }
        }
        for t in [Transport::Tcp, Transport::Udp] {
            found += usize::from(sighting(t, &p).is_some());
        }
        let _ = http_tracker_request(&p);
        let _ = crate::bencode::parse(&p);
    }
    // The mutated valid messages are still found now and then: the loop reached the parsers.
    assert!(found > 100, "{found}");
}
