//! BitTorrent beyond the kernel's fixed-offset fingerprints: peer-wire message framing for
//! flows whose handshake was missed, the shape of an MSE/PE (encrypted) handshake, local
//! service discovery, UDP tracker packets other than connect, DHT messages whose keys are not
//! in the canonical order, and uTP seen in one direction only.

use peerwarden_common::fingerprint;

/// Peer-wire messages found in one packet that starts on a message boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Framing {
    /// Whole or started messages in the packet.
    pub messages: u32,
    /// One of them has a fixed, telling size (have, request, cancel, port, a 16 KiB piece).
    pub telling: bool,
}

/// The largest block a piece message carries (BEP 3 clients cap requests at 128 KiB).
const MAX_BLOCK: u32 = 1 << 17;

/// Parses `p` as a run of peer-wire messages `<len:u32><id:u8><payload>` (BEP 3, BEP 6
/// fast extension, BEP 10 extension protocol). The run must cover the packet exactly, except
/// that the last message may be a piece, bitfield or extended message continuing in later
/// packets. `None` if the packet does not frame that way.
pub fn framing(p: &[u8]) -> Option<Framing> {
    let mut f = Framing::default();
    let mut o = 0usize;
    while o < p.len() {
        let len = u32::from_be_bytes(p.get(o..o + 4)?.try_into().ok()?);
        if len == 0 {
            // keep-alive
            f.messages += 1;
            o += 4;
            continue;
        }
        let id = *p.get(o + 4)?;
        let ok = match id {
            0..=3 | 14 | 15 => len == 1,
            4 | 13 | 17 => len == 5,
            6 | 8 | 16 => len == 13,
            9 => len == 3,
            5 => (2..=1 << 20).contains(&len),
            7 => (10..=MAX_BLOCK + 9).contains(&len),
            20 => (2..=1 << 20).contains(&len),
            _ => false,
        };
        if !ok {
            return None;
        }
        f.messages += 1;
        f.telling |= matches!(id, 4 | 6 | 8 | 9 | 13 | 16 | 17) || (id == 7 && len == 16_384 + 9);
        let end = o + 4 + len as usize;
        if end > p.len() {
            // Only a long message may continue past this packet.
            if !matches!(id, 5 | 7 | 20) {
                return None;
            }
            return Some(f);
        }
        o = end;
    }
    if f.messages == 0 { None } else { Some(f) }
}

/// The first payload of each side of an MSE handshake (BEP 8 / "Message Stream Encryption"):
/// a 96-byte Diffie-Hellman public key plus 0..=512 bytes of random padding.
pub fn mse_key_size(len: usize) -> bool {
    (96..=608).contains(&len)
}

/// Whether `p` looks like uniformly random bytes: as many distinct byte values as random
/// data of that length would show, give or take. Text and structured binary fall short.
pub fn looks_random(p: &[u8]) -> bool {
    if p.len() < 64 {
        return false;
    }
    let mut seen = [false; 256];
    for &b in p {
        seen[b as usize] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count() as f64;
    let n = p.len() as f64;
    let expected = 256.0 * (1.0 - (255.0f64 / 256.0).powf(n));
    distinct >= 0.85 * expected
}

/// Local service discovery (BEP 14): an HTTP-like multicast announcement.
pub fn lsd(p: &[u8]) -> bool {
    p.starts_with(b"BT-SEARCH * HTTP/1.1\r\n")
}

/// A BEP 15 announce request (the connect request is the kernel's): connection id, action 1,
/// transaction id, info hash, peer id, downloaded, left, uploaded, event (0..=3), ip, key,
/// num_want, port; BEP 41 options may follow. Responses are too short and plain to tell
/// apart from other protocols on their own; they share the request's flow anyway.
///
/// Beyond the action, the fields must be plausible: a listening port, `num_want` of -1
/// (default) or a modest count, and a peer id in one of the two common styles
/// (`-XX1234-…` Azureus style, or a letter then digits/dashes, Shad0w style).
pub fn udp_tracker_announce(p: &[u8]) -> bool {
    let be32 = |o: usize| {
        p.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if p.len() < 98 || be32(8) != Some(1) || p.get(0..8) == Some(&[0; 8]) {
        return false;
    }
    let event_ok = be32(80).is_some_and(|e| e <= 3);
    let want_ok = be32(92).is_some_and(|n| n == u32::MAX || (1..=1000).contains(&n));
    let port_ok = p[96] != 0 || p[97] != 0;
    let id = &p[36..44];
    let azureus =
        id[0] == b'-' && id[7] == b'-' && id[1..3].iter().all(|c| c.is_ascii_alphanumeric());
    let shadow = id[0].is_ascii_alphabetic()
        && id[1..6]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    event_ok && want_ok && port_ok && (azureus || shadow)
}

/// A Mainline DHT message in any key order: a bencoded dictionary with the `y` key set to
/// q, r or e, and a transaction id `t`.
pub fn dht_any_order(p: &[u8]) -> bool {
    if fingerprint::dht_krpc(p) {
        return true;
    }
    if p.len() < 12 || p[0] != b'd' || p[p.len() - 1] != b'e' {
        return false;
    }
    let has = |pat: &[u8]| p.windows(pat.len()).any(|w| w == pat);
    (has(b"1:y1:q") || has(b"1:y1:r") || has(b"1:y1:e")) && has(b"1:t")
}

/// uTP in one direction: `run` holds the (connection id, timestamp, sequence number,
/// acknowledgement number) of consecutive uTP-shaped packets of one sender. A connection
/// keeps its id, its microsecond timestamps move forward, its sequence numbers count up by
/// one or two and its acknowledgements by at most 16 (state packets repeat their sequence
/// number while acknowledging what arrives, so a run of three with some step forward and
/// none backwards is asked).
pub fn utp_one_way(run: &[(u16, u32, u16, u16)]) -> bool {
    run.len() >= 3
        && run.windows(2).all(|w| {
            let step = w[1].2.wrapping_sub(w[0].2);
            let ack = w[1].3.wrapping_sub(w[0].3);
            w[0].0 == w[1].0
                && w[1].1.wrapping_sub(w[0].1).wrapping_sub(1) < 60_000_000
                && step <= 2
                && ack <= 16
        })
        && run.windows(2).any(|w| w[1].2 != w[0].2 || w[1].3 != w[0].3)
}

/// (connection id, timestamp, sequence number, acknowledgement number) of a uTP-shaped
/// packet.
pub fn utp_fields(p: &[u8]) -> Option<(u16, u32, u16, u16)> {
    let id = fingerprint::utp_header(p)?;
    let ts = u32::from_be_bytes([*p.get(4)?, *p.get(5)?, *p.get(6)?, *p.get(7)?]);
    Some((
        id,
        ts,
        u16::from_be_bytes([*p.get(16)?, *p.get(17)?]),
        u16::from_be_bytes([*p.get(18)?, *p.get(19)?]),
    ))
}

/// Whether the first bytes of a payload show structure that MSE's random key never has:
/// a length prefix (16 or 32 bits, of the payload or of the rest), two zero bytes among the
/// first four, a 4-character upper-case ASCII magic followed by a small version byte
/// (`ZBXD\x01`, ...), or a pre-EIP-8 RLPx handshake (an uncompressed elliptic-curve point
/// tag 0x04 first, in a 307-byte auth or 210-byte ack; EIP-8's have a length prefix).
/// Each rule is kept narrow because an MSE key is random: broader ones (any 0x04 tag, any
/// four letters) turned 2.3% of real encrypted BitTorrent flows away (lab captures).
pub fn structured_start(p: &[u8]) -> bool {
    if p.len() < 6 {
        return true;
    }
    let n = p.len();
    let be16 = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]) as usize;
    let be32 = |o: usize| u32::from_be_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]) as usize;
    let zeros = p[..4].iter().filter(|&&b| b == 0).count();
    be16(0) == n
        || be16(0) + 2 == n
        || be32(0) == n
        || be32(0) + 4 == n
        || be32(2) + 2 == n
        || be32(2) == n
        || zeros >= 2
        || (p[..4]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && p[4] <= 0x05)
        || (p[0] == 0x04 && (n == 307 || n == 210))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        m.push(id);
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn framing_of_mid_flow_packets() {
        let mut p = msg(4, &[0, 0, 0, 9]); // have
        p.extend(msg(2, &[])); // interested
        assert_eq!(
            framing(&p),
            Some(Framing {
                messages: 2,
                telling: true
            })
        );
        // A piece header whose block continues in the next packets.
        let mut piece = (16_384u32 + 9).to_be_bytes().to_vec();
        piece.push(7);
        piece.extend_from_slice(&[0; 8 + 1000]);
        assert_eq!(
            framing(&piece),
            Some(Framing {
                messages: 1,
                telling: true
            })
        );
        // Look-alikes: a have with a wrong length, a request cut short, HTTP, TLS.
        assert_eq!(framing(&msg(4, &[0, 0, 9])), None);
        assert_eq!(framing(&msg(6, &[0; 12])[..10]), None);
        assert_eq!(framing(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(framing(&[0x17, 3, 3, 0, 40, 1, 2, 3]), None);
        assert_eq!(framing(&[]), None);
    }

    #[test]
    fn randomness_and_mse_sizes() {
        let mut x = 0x1234_5678u32;
        let random: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(looks_random(&random));
        assert!(!looks_random(&[b'a'; 200]));
        assert!(!looks_random(b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"));
        assert!(mse_key_size(96) && mse_key_size(608) && !mse_key_size(95) && !mse_key_size(609));
    }

    #[test]
    fn lsd_trackers_dht() {
        assert!(lsd(b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: ab\r\n\r\n"));
        assert!(!lsd(b"M-SEARCH * HTTP/1.1\r\n"));
        let mut ann = vec![0x11u8; 98];
        ann[8..12].copy_from_slice(&1u32.to_be_bytes());
        ann[36..44].copy_from_slice(b"-TR2940-");
        ann[80..84].copy_from_slice(&2u32.to_be_bytes());
        ann[92..96].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(udp_tracker_announce(&ann));
        ann[96..98].copy_from_slice(&[0, 0]);
        assert!(!udp_tracker_announce(&ann), "port 0");
        ann[96..98].copy_from_slice(&51413u16.to_be_bytes());
        assert!(udp_tracker_announce(&ann));
        ann[83] = 9;
        assert!(!udp_tracker_announce(&ann));
        assert!(!udp_tracker_announce(&[0u8; 120]));
        assert!(dht_any_order(
            b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:aaaaaaaaaaaaaaaaaaaaee"
        ));
        assert!(!dht_any_order(b"d4:name5:hello3:agei42ee"));
    }

    #[test]
    fn utp_in_one_direction() {
        assert!(utp_one_way(&[
            (7, 10, 100, 5),
            (7, 20, 101, 5),
            (7, 30, 102, 5)
        ]));
        assert!(!utp_one_way(&[
            (7, 10, 100, 5),
            (8, 20, 101, 5),
            (7, 30, 102, 5)
        ]));
        assert!(!utp_one_way(&[
            (7, 10, 100, 5),
            (7, 20, 900, 5),
            (7, 30, 901, 5)
        ]));
        assert!(!utp_one_way(&[(7, 10, 100, 5), (7, 20, 101, 5)]));
        // State packets: the sequence number stays, the acknowledgements move.
        assert!(utp_one_way(&[
            (7, 10, 100, 5),
            (7, 20, 100, 6),
            (7, 30, 100, 8)
        ]));
        assert!(!utp_one_way(&[
            (7, 10, 100, 5),
            (7, 20, 100, 900),
            (7, 30, 100, 901)
        ]));
        // A DHCP discover repeated: same "id", same "timestamp" (the xid), same "seq".
        assert!(!utp_one_way(&[
            (0x0600, 5, 0, 0),
            (0x0600, 5, 0, 0),
            (0x0600, 5, 0, 0)
        ]));
    }
}
