//! eDonkey/eMule over TCP and UDP, and Kad (eMule's Kademlia DHT over UDP).
//!
//! TCP messages are `<protocol:u8><length:u32 LE><opcode:u8><payload>` where the protocol byte
//! is 0xe3 (eDonkey), 0xc5 (eMule extensions) or 0xd4 (zlib-packed); UDP datagrams are
//! `<protocol:u8><opcode:u8><payload>` with 0xe3/0xc5 and 0xe4/0xe5 for Kad (plain/packed).

/// eDonkey's client hello (0x01, with a 16-byte user hash: the next byte is 16) and hello
/// answer (0x4c).
const OP_HELLO: u8 = 0x01;
const OP_HELLO_ANSWER: u8 = 0x4c;

/// How sure one TCP packet makes us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tcp {
    /// The framing fits (protocol byte and a length matching the packet).
    Framed,
    /// A hello or hello answer: framing plus the opcode and hash size.
    Hello,
}

/// Checks the first packet of a TCP direction.
pub fn tcp(p: &[u8]) -> Option<Tcp> {
    if p.len() < 6 || !matches!(p[0], 0xe3 | 0xc5 | 0xd4) {
        return None;
    }
    let len = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
    if len == 0 || len > 1 << 21 {
        return None;
    }
    // The message fills the packet, or the packet is a chain of whole messages, or the
    // message continues in the next segment.
    let framed = if len + 5 == p.len() {
        true
    } else if len + 5 < p.len() {
        let next = &p[len + 5..];
        next.len() >= 6 && matches!(next[0], 0xe3 | 0xc5 | 0xd4)
    } else {
        len <= 1 << 16 && p.len() >= 512
    };
    if !framed {
        return None;
    }
    let op = p[5];
    if p[0] == 0xe3
        && (op == OP_HELLO && p.get(6) == Some(&16) || op == OP_HELLO_ANSWER && p.len() >= 22)
    {
        return Some(Tcp::Hello);
    }
    Some(Tcp::Framed)
}

/// Kad 2 opcodes (eMule's `KADEMLIA2_*`): bootstrap, hello, request/response, searches,
/// publishes, firewall checks, ping/pong.
const KAD_OPS: &[u8] = &[
    0x01, 0x09, 0x11, 0x19, 0x1a, 0x21, 0x22, 0x29, 0x33, 0x34, 0x35, 0x3b, 0x43, 0x44, 0x45, 0x4b,
    0x4c, 0x53, 0x58, 0x59, 0x60, 0x61, 0x62,
];

/// eDonkey server/client UDP opcodes (`OP_GLOBSEARCHREQ`, `OP_GLOBGETSOURCES`, status
/// requests, callbacks, `OP_REASKFILEPING` and answers...).
const ED_UDP_OPS: &[u8] = &[
    0x90, 0x91, 0x92, 0x93, 0x94, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0xa2, 0xa3, 0xa4, 0xa5, 0x90,
    0x91, 0x92, 0x93, 0x94, 0x95,
];

/// One UDP datagram's shape; a flow needs two of them (see the engine), as two bytes of
/// header are weak evidence alone.
pub fn udp(p: &[u8]) -> bool {
    if p.len() < 2 {
        return false;
    }
    match p[0] {
        0xe4 => KAD_OPS.contains(&p[1]) && p.len() >= 18,
        // Packed Kad: the opcode, then a zlib stream (0x78 header).
        0xe5 => KAD_OPS.contains(&p[1]) && p.get(2) == Some(&0x78),
        0xe3 => ED_UDP_OPS.contains(&p[1]) && p.len() >= 6,
        0xc5 => (0x90..=0xa0).contains(&p[1]) && p.len() >= 6,
        _ => false,
    }
}

/// Bytes eMule's UDP obfuscation adds to a Kad packet: the semi-random byte and the 2-byte
/// random key part in the clear, then, encrypted, the 4-byte magic value, the padding
/// length (0: eMule and aMule send no UDP padding) and the receiver's and sender's 4-byte
/// verify keys.
pub const KAD_CRYPT_OVERHEAD: usize = 16;

/// Kad 2 exchanges whose plain sizes are fixed by their grammar, as seen obfuscated: what
/// a request of one size may be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KadExchange {
    /// `KADEMLIA2_BOOTSTRAP_REQ` (header only, 2 bytes) answered by `BOOTSTRAP_RES`:
    /// node id, TCP port, version, a contact count and 25 bytes a contact (23 + 25n).
    /// Kad packs (zlib, marker 0xe5) a packet whose payload passes 200 bytes, so only
    /// answers of up to 7 contacts keep a size the grammar fixes; the same holds below.
    Bootstrap,
    /// `KADEMLIA2_REQ` (type, target, receiver id: 35 bytes) answered by `KADEMLIA2_RES`:
    /// the target, a count and 25 bytes a contact (19 + 25n, n up to 7 unpacked).
    Lookup,
    /// `KADEMLIA_FIREWALLED2_REQ` (TCP port, user hash, connect options: 21 bytes)
    /// answered by `FIREWALLED_RES` (the address seen: 6 bytes).
    Firewalled,
    /// `KADEMLIA2_PING` (2 bytes) answered by `KADEMLIA2_PONG` (the UDP port seen: 4).
    Ping,
}

/// A datagram that may be an obfuscated Kad packet: the semi-random first byte is never a
/// plain protocol marker and has its low bit clear (set means eDonkey, not Kad), and the
/// rest is ciphertext, which looks random.
pub fn kad_obfuscated(p: &[u8]) -> bool {
    p.len() >= KAD_CRYPT_OVERHEAD + 2
        && p[0] & 1 == 0
        && !matches!(p[0], 0xe3 | 0xc5 | 0xd4 | 0xe4 | 0xe5)
        && short_random(p)
}

/// The exchange an obfuscated request of `req` bytes and an answer of `ans` bytes make, if
/// any (sizes of the whole datagrams).
pub fn kad_exchange(req: usize, ans: usize) -> Option<KadExchange> {
    let (req, ans) = (
        req.checked_sub(KAD_CRYPT_OVERHEAD)?,
        ans.checked_sub(KAD_CRYPT_OVERHEAD)?,
    );
    let contacts = |base: usize, max: usize| {
        ans >= base && (ans - base).is_multiple_of(25) && (ans - base) / 25 <= max
    };
    match req {
        2 if ans == 4 => Some(KadExchange::Ping),
        2 if contacts(23, 7) => Some(KadExchange::Bootstrap),
        35 if contacts(19, 7) => Some(KadExchange::Lookup),
        21 if ans == 6 => Some(KadExchange::Firewalled),
        _ => None,
    }
}

/// Ciphertext-like bytes for a short datagram: nearly as many distinct values as random
/// bytes of that length would have, and no run of four equal bytes.
fn short_random(p: &[u8]) -> bool {
    let mut seen = [false; 256];
    for &b in p {
        seen[b as usize] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count() as f64;
    let n = p.len().min(256) as f64;
    let expected = 256.0 * (1.0 - (255.0f64 / 256.0).powf(n));
    distinct >= 0.8 * expected && !p.windows(4).any(|w| w.iter().all(|&b| b == w[0]))
}

/// A UDP flow's obfuscated Kad exchanges: a request one way answered by the next datagram
/// the other way, in one of the grammar's size pairs. Kad nodes query each other at the
/// same time, so each direction keeps its own open request (its latest datagram, if that
/// could be one). Two answered requests, not all pings, make the flow Kad: both endpoints
/// spoke it, and a single packet never decides.
#[derive(Debug, Default)]
pub struct KadPairs {
    /// Per direction, the size of its latest datagram while that may await an answer.
    open: [Option<usize>; 2],
    answered: u8,
    beyond_ping: bool,
}

impl KadPairs {
    /// Feeds one datagram of direction `d` (0 or 1). True once the flow is Kad.
    pub fn feed(&mut self, d: usize, p: &[u8]) -> bool {
        let o = 1 - d;
        if !kad_obfuscated(p) {
            self.open[d] = None;
            return false;
        }
        if let Some(x) = self.open[o].and_then(|req| kad_exchange(req, p.len())) {
            self.answered = self.answered.saturating_add(1);
            self.beyond_ping |= x != KadExchange::Ping;
            self.open = [None, None];
        } else {
            self.open[d] = Some(p.len());
        }
        self.answered >= 2 && self.beyond_ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Vec<u8> {
        let mut body = vec![OP_HELLO, 16];
        body.extend_from_slice(&[0xab; 16 + 6 + 4]);
        let mut p = vec![0xe3];
        p.extend_from_slice(&(body.len() as u32).to_le_bytes());
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn tcp_hello_and_look_alikes() {
        assert_eq!(tcp(&hello()), Some(Tcp::Hello));
        let mut h = hello();
        h[1] += 1; // length off by one
        assert_eq!(tcp(&h), None);
        let mut h = hello();
        h[6] = 20; // not a 16-byte hash
        assert_eq!(tcp(&h), Some(Tcp::Framed));
        assert_eq!(tcp(b"\xe3\x00\x00\x00\x00\x01"), None);
        assert_eq!(tcp(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn udp_shapes() {
        let mut kad = vec![0xe4, 0x11];
        kad.extend_from_slice(&[0; 20]);
        assert!(udp(&kad));
        assert!(!udp(&[0xe4, 0x07, 0, 0]));
        assert!(udp(&[0xe3, 0x96, 1, 2, 3, 4]));
        assert!(!udp(&[0x16, 0x03]));
    }
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Two obfuscated `KADEMLIA2_REQ`s (51 bytes) and their two-contact answers (85 bytes)
    /// between aMule 2.3.3 nodes, from the lab capture `edonkey-obfuscated`.
    fn lab_lookups() -> Vec<(usize, Vec<u8>)> {
        vec![
            (
                0,
                hex(
                    "204a586af043b266d0ecadbdb4242caee0f76cebaea2af4ca813b5339b1147676e71d984dc3a4e1608bad183b241c4db31ff84",
                ),
            ),
            (
                1,
                hex(
                    "066ca18a193c98ddab006bf461ff41ee5f7a04d2b179fa78c84c3ea47d698d66d4a4ac22a6ea429b403771005ae97df2f96cffc99549ecb3b925b7114fae263641e2298a0a30c5154ec4cd20c81abec2d6fb0e8cc8",
                ),
            ),
            (
                0,
                hex(
                    "f414ce3c05cc9c260d1242737a000108052313413f41a2fb3b007655a887b1be7c68e00c5825cb55194d6bc243f0f3b37af434",
                ),
            ),
            (
                1,
                hex(
                    "5e1b0ebac923de6be0c60219b4b45c7bcb9d1b04cb83c43ce76e1fc5346b6412e7105feb39c05e127190a91d718b8dd5370312df304d8d004e031b83c8f3b53c806a773f1d39832308874ec5ebe5d8ae7c801ee522",
                ),
            ),
        ]
    }

    /// A deterministic byte source (splitmix64) for look-alike datagrams.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// `count` random datagrams of `min..min + span` bytes, alternating directions.
        fn flow(&mut self, count: usize, min: usize, span: u64) -> Vec<(usize, Vec<u8>)> {
            (0..count)
                .map(|i| {
                    let n = min + (self.next() % span) as usize;
                    (i % 2, self.bytes(n))
                })
                .collect()
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Feeds every datagram; whether any made the flow Kad.
    fn feed_all(dgrams: &[(usize, Vec<u8>)]) -> bool {
        let mut k = KadPairs::default();
        let mut kad = false;
        for (d, p) in dgrams {
            kad |= k.feed(*d, p);
        }
        kad
    }

    #[test]
    fn obfuscated_kad_from_the_lab() {
        let dg = lab_lookups();
        assert!(dg.iter().all(|(_, p)| kad_obfuscated(p)));
        assert_eq!(kad_exchange(51, 85), Some(KadExchange::Lookup));
        let mut k = KadPairs::default();
        let got: Vec<bool> = dg.iter().map(|(d, p)| k.feed(*d, p)).collect();
        assert_eq!(
            got,
            [false, false, false, true],
            "the second answer decides"
        );
    }

    #[test]
    fn crossing_requests_pair_with_their_own_answers() {
        // Sizes from a lab flow: both nodes ask at once, a plain pong in between.
        let mut r = Rng(7);
        let mut k = KadPairs::default();
        let mut got = Vec::new();
        for (d, n) in [
            (0, 18),
            (0, 51),
            (1, 51),
            (1, 4),
            (1, 35),
            (0, 35),
            (1, 51),
            (0, 35),
        ] {
            let mut p = r.bytes(n);
            p[0] &= 0xfe;
            if n == 4 {
                p = vec![0xe4, 0x61, 0x92, 0x12];
            }
            got.push(k.feed(d, &p));
        }
        assert_eq!(got, [false, false, false, false, false, false, false, true]);
    }

    #[test]
    fn kad_grammar_sizes() {
        assert_eq!(kad_exchange(18, 20), Some(KadExchange::Ping));
        assert_eq!(kad_exchange(18, 39), Some(KadExchange::Bootstrap));
        assert_eq!(kad_exchange(18, 39 + 25 * 7), Some(KadExchange::Bootstrap));
        assert_eq!(
            kad_exchange(18, 39 + 25 * 8),
            None,
            "eight contacts pass 200 bytes: packed, the size is the compressor's"
        );
        assert_eq!(kad_exchange(51, 35 + 25 * 7), Some(KadExchange::Lookup));
        assert_eq!(kad_exchange(51, 35 + 25 * 8), None);
        assert_eq!(kad_exchange(51, 35), Some(KadExchange::Lookup));
        assert_eq!(kad_exchange(51, 36), None);
        assert_eq!(kad_exchange(37, 22), Some(KadExchange::Firewalled));
        assert_eq!(
            kad_exchange(35, 19),
            None,
            "plain sizes: no obfuscation overhead"
        );
        assert_eq!(kad_exchange(4, 4), None);
    }

    #[test]
    fn plain_markers_and_odd_first_bytes_are_not_obfuscated_kad() {
        let mut p = lab_lookups()[0].1.clone();
        for b in [0xe3, 0xc5, 0xd4, 0xe4, 0xe5] {
            p[0] = b;
            assert!(!kad_obfuscated(&p), "{b:#x}");
        }
        p[0] = 0x21; // low bit set: eDonkey's obfuscation, not Kad's
        assert!(!kad_obfuscated(&p));
        assert!(!kad_obfuscated(&[0x20; 51]), "not ciphertext");
        let mut zeros = lab_lookups()[0].1.clone();
        zeros[20..24].copy_from_slice(&[0; 4]);
        assert!(!kad_obfuscated(&zeros), "a run of four equal bytes");
    }

    #[test]
    fn one_packet_or_one_exchange_never_decides() {
        let dg = lab_lookups();
        assert!(!feed_all(&dg[..1]));
        assert!(!feed_all(&dg[..2]), "one answered request");
        // The same direction twice is not an answer.
        let same: Vec<(usize, Vec<u8>)> = dg.iter().map(|(_, p)| (0, p.clone())).collect();
        assert!(!feed_all(&same));
    }

    #[test]
    fn encrypted_pings_alone_are_not_kad() {
        // A game or VPN keepalive of the ping/pong sizes, random-looking: pings only.
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut dg = Vec::new();
        for _ in 0..8 {
            let mut a = r.bytes(18);
            a[0] &= 0xfe;
            let mut b = r.bytes(20);
            b[0] &= 0xfe;
            dg.push((0, a));
            dg.push((1, b));
        }
        assert!(!feed_all(&dg));
    }

    #[test]
    fn look_alike_udp_does_not_match() {
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        // Random datagrams of random sizes, alternating directions: 2000 flows of 32.
        for _ in 0..2000 {
            assert!(!feed_all(&r.flow(32, 18, 1300)));
        }
        // WireGuard: handshake initiation (type 1, 148 bytes) and response (type 2, 92),
        // then transport data (type 4: receiver index, an 8-byte counter, 16-byte blocks).
        let mut wg = Vec::new();
        let mut init = vec![1, 0, 0, 0];
        init.extend(r.bytes(144));
        wg.push((0, init));
        let mut resp = vec![2, 0, 0, 0];
        resp.extend(r.bytes(88));
        wg.push((1, resp));
        for c in 0..30u64 {
            let mut d = vec![4, 0, 0, 0];
            d.extend(r.bytes(4));
            d.extend(c.to_le_bytes());
            d.extend(r.bytes(16 * (1 + (c as usize % 3)) + 16));
            wg.push(((c % 2) as usize, d));
        }
        assert!(!feed_all(&wg));
        // QUIC: a client Initial padded to 1200 bytes and the server's long-header answer,
        // then short-header packets.
        let mut quic = Vec::new();
        let mut ini = vec![0xc0, 0, 0, 0, 1, 8];
        ini.extend(r.bytes(1194));
        quic.push((0, ini));
        let mut srv = vec![0xc0, 0, 0, 0, 1, 8];
        srv.extend(r.bytes(1194));
        quic.push((1, srv));
        for i in 0..30 {
            let mut sh = vec![0x40 | (r.next() as u8 & 0x1f)];
            let n = 24 + (r.next() % 1000) as usize;
            sh.extend(r.bytes(n));
            quic.push((i % 2, sh));
        }
        assert!(!feed_all(&quic));
        // MSE-shaped payloads (a 96-byte key plus up to 512 bytes of padding) sent as
        // datagrams: random, but of no Kad size pair.
        let mse = r.flow(16, 96, 513);
        assert!(!feed_all(&mse));
    }
}
