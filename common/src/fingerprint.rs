//! Fixed-offset protocol fingerprints, run by the XDP program and by the offline classifier.
//!
//! Each function looks at the first bytes of one packet's payload (the kernel copies at most
//! [`SAMPLE_LEN`] of them) and does bounded work at constant offsets. Every read goes through
//! [`byte`], which returns `None` past the end,
//! so there is no panic path and the verifier sees only bounded accesses.

use crate::label::Label;

pub mod iptv;

/// How many payload bytes the kernel hands to the fingerprints.
pub const SAMPLE_LEN: usize = 128;

/// The BitTorrent peer-wire handshake: length byte 19 and the protocol string.
const BT_HANDSHAKE: &[u8; 20] = b"\x13BitTorrent protocol";

/// BEP 15: the protocol id a UDP tracker connect request starts with (`0x41727101980`).
const UDP_TRACKER_MAGIC: [u8; 8] = 0x0417_2710_1980_u64.to_be_bytes();

#[inline(always)]
fn byte(p: &[u8], i: usize) -> Option<u8> {
    p.get(i).copied()
}

/// Whether `pat` stands in `p` at `off`.
#[inline(always)]
fn at(p: &[u8], off: usize, pat: &[u8]) -> bool {
    let mut i = 0;
    while i < pat.len() {
        match byte(p, off + i) {
            Some(b) if b == pat[i] => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// Labels a TCP payload from its first bytes, if a fingerprint matches.
#[inline(always)]
pub fn tcp(p: &[u8]) -> Option<Label> {
    if bittorrent_handshake(p) {
        return Some(Label::Bittorrent);
    }
    if http_tracker(p) {
        return Some(Label::BittorrentTracker);
    }
    None
}

/// Labels a UDP payload from its first bytes, if a fingerprint matches on its own.
/// uTP data packets need both directions: see [`utp_header`] and [`utp_pair`].
#[inline(always)]
pub fn udp(p: &[u8]) -> Option<Label> {
    if udp_tracker_connect(p) || udp_tracker_announce(p) {
        return Some(Label::BittorrentTracker);
    }
    if dht_krpc(p) {
        return Some(Label::BittorrentDht);
    }
    if utp_syn(p) {
        return Some(Label::BittorrentUtp);
    }
    None
}

/// The peer-wire handshake `0x13 "BitTorrent protocol"`, which both peers send first.
#[inline(always)]
pub fn bittorrent_handshake(p: &[u8]) -> bool {
    at(p, 0, BT_HANDSHAKE)
}

/// An HTTP tracker announce or scrape whose query starts with `info_hash=`, as the
/// common clients (libtorrent, Transmission, aria2, µTorrent) send it:
/// `GET /announce?info_hash=…`, `/scrape?`, and the `.php` forms. Fixed offsets only: a
/// search of the whole sample for `info_hash=` costs the verifier a path per offset, and
/// trackers whose query puts it later are left to the deep classifier, which searches.
#[inline(always)]
pub fn http_tracker(p: &[u8]) -> bool {
    if !at(p, 0, b"GET /") {
        return false;
    }
    let query = if at(p, 5, b"announce") {
        13
    } else if at(p, 5, b"scrape") {
        11
    } else {
        return false;
    };
    let query = if at(p, query, b".php") {
        query + 4
    } else {
        query
    };
    at(p, query, b"?info_hash=")
}

/// BEP 15 connect request: the 64-bit protocol id, then action 0 (connect).
#[inline(always)]
pub fn udp_tracker_connect(p: &[u8]) -> bool {
    p.len() >= 16 && at(p, 0, &UDP_TRACKER_MAGIC) && at(p, 8, &[0, 0, 0, 0])
}

/// BEP 15 announce request, for flows whose connect was not seen (clients reuse a
/// connection id for up to a minute, across torrents): connection id, action 1, transaction
/// id, info_hash, peer_id, three 64-bit counters, an event of 0 to 3 at offset 80, IP, key,
/// num_want at 92 (-1 for the default, or a small count) and a non-zero port at 96.
/// 98 bytes, more with BEP 41 options. DNS queries with an EDNS record have the same
/// `00 00 00 01` at offset 8 (NSCOUNT 0, ARCOUNT 1); their QDCOUNT of 1 at offset 4 tells
/// them apart (a connection id with those bytes is a 1 in 2^32 chance).
#[inline(always)]
pub fn udp_tracker_announce(p: &[u8]) -> bool {
    p.len() >= 98
        && at(p, 8, &[0, 0, 0, 1])
        && at(p, 80, &[0, 0, 0])
        && matches!(byte(p, 83), Some(0..=3))
        && (at(p, 92, &[0xff, 0xff, 0xff, 0xff]) || at(p, 92, &[0, 0]))
        && !at(p, 96, &[0, 0])
        && !(at(p, 4, &[0, 1]) && at(p, 6, &[0, 0]))
}

/// A Mainline DHT KRPC message (BEP 5): a bencoded dictionary whose sorted keys start with
/// `a` (query arguments), `r` (response) or `e` (error), optionally after BEP 42's `ip`
/// key (a 6-byte IPv4 or 18-byte IPv6 compact address) that responses carry.
#[inline(always)]
pub fn dht_krpc(p: &[u8]) -> bool {
    let body = if at(p, 0, b"d2:ip6:") {
        7 + 6
    } else if at(p, 0, b"d2:ip18:") {
        8 + 18
    } else if at(p, 0, b"d1:") {
        1
    } else {
        return false;
    };
    if at(p, body, b"1:ad2:id20:") || at(p, body, b"1:rd2:id20:") {
        return true;
    }
    // Error: `1:eli<code>e…`, the code a number.
    at(p, body, b"1:eli") && matches!(byte(p, body + 5), Some(b'0'..=b'9'))
}

/// uTP packet types (BEP 29).
pub const UTP_ST_DATA: u8 = 0;
/// Connection request.
pub const UTP_ST_SYN: u8 = 4;

/// If `p` has the shape of a uTP header (BEP 29: version 1, type 0..=4, a known extension,
/// 20 bytes at least), its connection id. One packet of this shape is weak evidence (about
/// 1 in 3,000 random payloads pass); the kernel labels a flow when both directions carry it
/// with ids that pair up ([`utp_pair`]), or on a strict SYN ([`utp_syn`]).
#[inline(always)]
pub fn utp_header(p: &[u8]) -> Option<u16> {
    if p.len() < 20 {
        return None;
    }
    let b0 = byte(p, 0)?;
    let ext = byte(p, 1)?;
    if b0 & 0x0f != 1 || b0 >> 4 > UTP_ST_SYN || ext > 4 {
        return None;
    }
    Some(u16::from_be_bytes([byte(p, 2)?, byte(p, 3)?]))
}

/// Whether two connection ids seen in opposite directions belong to one uTP connection:
/// the initiator sends with `recv_id + 1` and receives on `recv_id`, so they differ by one.
#[inline(always)]
pub fn utp_pair(a: u16, b: u16) -> bool {
    a.wrapping_sub(b) == 1 || b.wrapping_sub(a) == 1
}

/// A uTP SYN as clients send it: type 4, version 1, no extension, a bare 20-byte header,
/// and no timestamp difference yet (nothing has been received).
#[inline(always)]
pub fn utp_syn(p: &[u8]) -> bool {
    p.len() == 20 && at(p, 0, &[(UTP_ST_SYN << 4) | 1, 0]) && at(p, 8, &[0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> [u8; 68] {
        let mut h = [0u8; 68];
        h[..20].copy_from_slice(BT_HANDSHAKE);
        h
    }

    #[test]
    fn handshake_and_look_alikes() {
        assert_eq!(tcp(&handshake()), Some(Label::Bittorrent));
        assert_eq!(
            tcp(&handshake()[..19]),
            None,
            "cut before the protocol string ends"
        );
        assert_eq!(tcp(b"\x13BitTorrent protocoX"), None);
        assert_eq!(tcp(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(tcp(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), None);
        assert_eq!(tcp(b""), None);
    }

    #[test]
    fn http_tracker_needs_info_hash() {
        let ann =
            b"GET /announce?info_hash=%12%34&peer_id=-LT2080-abcdefghijkl&port=6881 HTTP/1.1\r\n";
        assert_eq!(tcp(ann), Some(Label::BittorrentTracker));
        let scrape = b"GET /scrape?info_hash=%aa%bb HTTP/1.1\r\n";
        assert_eq!(tcp(scrape), Some(Label::BittorrentTracker));
        let php = b"GET /announce.php?info_hash=%aa%bb HTTP/1.1\r\n";
        assert_eq!(tcp(php), Some(Label::BittorrentTracker));
        // Left to the deep classifier: info_hash later in the query.
        assert_eq!(
            tcp(b"GET /announce?peer_id=x&info_hash=%aa HTTP/1.1\r\n"),
            None
        );
        assert_eq!(tcp(b"GET /announce?foo=bar HTTP/1.1\r\n"), None);
        assert_eq!(tcp(b"POST /announce?info_hash=1 HTTP/1.1\r\n"), None);
    }

    #[test]
    fn udp_tracker_connect_magic() {
        let mut req = [0u8; 16];
        req[..8].copy_from_slice(&UDP_TRACKER_MAGIC);
        req[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(udp(&req), Some(Label::BittorrentTracker));
        req[11] = 1; // action announce, not connect
        assert_eq!(udp(&req), None);
        let mut other = [0u8; 16];
        other[..8].copy_from_slice(&0x0417_2710_1981_u64.to_be_bytes());
        assert_eq!(udp(&other), None, "other magic");
        assert_eq!(udp(&req[..15]), None);
    }

    #[test]
    fn udp_tracker_announce_without_connect() {
        let mut ann = [0u8; 109];
        ann[..8].copy_from_slice(&[0x9a, 0x3b, 0x11, 0x02, 0x5c, 0x77, 0xe1, 0x40]); // connection id
        ann[11] = 1;
        ann[83] = 2; // event: started
        ann[92..96].copy_from_slice(&200u32.to_be_bytes()); // num_want
        ann[96..98].copy_from_slice(&6881u16.to_be_bytes());
        assert_eq!(udp(&ann), Some(Label::BittorrentTracker));
        let mut no_port = ann;
        no_port[96..98].copy_from_slice(&[0, 0]);
        assert_eq!(udp(&no_port), None, "port 0");
        let mut dns_shape = ann;
        dns_shape[4..8].copy_from_slice(&[0, 1, 0, 0]);
        assert_eq!(udp(&dns_shape), None, "QDCOUNT 1, ANCOUNT 0: a DNS query");
        ann[83] = 4;
        assert_eq!(udp(&ann), None, "no such event");
        ann[83] = 2;
        ann[11] = 2;
        assert_eq!(udp(&ann), None, "action scrape");
        ann[11] = 1;
        assert_eq!(udp(&ann[..97]), None, "shorter than an announce");
    }

    #[test]
    fn dht_messages() {
        let mut q = b"d1:ad2:id20:".to_vec();
        q.extend_from_slice(&[7u8; 20]);
        q.extend_from_slice(b"e1:q4:ping1:t2:aa1:y1:qe");
        assert_eq!(udp(&q), Some(Label::BittorrentDht));
        let mut r = b"d2:ip6:".to_vec();
        r.extend_from_slice(&[100, 64, 1, 10, 0x1a, 0xe1]);
        r.extend_from_slice(b"1:rd2:id20:");
        r.extend_from_slice(&[9u8; 20]);
        r.extend_from_slice(b"e1:t2:aa1:y1:re");
        assert_eq!(udp(&r), Some(Label::BittorrentDht));
        assert_eq!(
            udp(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"),
            Some(Label::BittorrentDht)
        );
        assert_eq!(udp(b"d1:elie"), None);
        assert_eq!(
            udp(b"d4:spaml1:a1:bee"),
            None,
            "a bencoded dict that is not KRPC"
        );
    }

    #[test]
    fn utp_rules() {
        let mut syn = [0u8; 20];
        syn[0] = 0x41;
        syn[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
        syn[4..8].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(udp(&syn), Some(Label::BittorrentUtp));
        assert_eq!(utp_header(&syn), Some(0x1234));
        let mut syn_with_diff = syn;
        syn_with_diff[9] = 1;
        assert_eq!(
            udp(&syn_with_diff),
            None,
            "a SYN has no timestamp difference yet"
        );
        let mut data = [0u8; 40];
        data[0] = 0x01;
        data[2..4].copy_from_slice(&0x1235u16.to_be_bytes());
        assert_eq!(udp(&data), None, "one data packet alone is not enough");
        assert_eq!(utp_header(&data), Some(0x1235));
        assert!(utp_pair(0x1234, 0x1235) && utp_pair(0xffff, 0x0000));
        assert!(!utp_pair(0x1234, 0x1236) && !utp_pair(7, 7));
        data[0] = 0x02; // version 2
        assert_eq!(utp_header(&data), None);
        data[0] = 0x51; // type 5
        assert_eq!(utp_header(&data), None);
        assert_eq!(utp_header(&[0x01; 19]), None);
    }
}
