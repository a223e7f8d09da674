//! QUIC: the server name in a client's Initial packets.
//!
//! IETF QUIC protects Initial packets with keys anyone can derive from the packet's
//! destination connection id and a per-version public salt (RFC 9001 §5.2 for v1, RFC 9369
//! §3.3.1 for v2, the drafts' own salts before): remove header protection, decrypt with
//! AES-128-GCM, collect the CRYPTO frames by offset (a ClientHello may be split over several
//! frames, in any order, and over several Initial packets), and read the ClientHello.
//! Google QUIC (Q0xx up to Q046) sends its CHLO in the clear; its `SNI` tag is read directly.

use aes::{
    Aes128,
    cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray},
};
use aes_gcm::{AeadInPlace, Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::tls::{self, Hello};

const SALT_V1: [u8; 20] = hex20(b"38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
const SALT_V2: [u8; 20] = hex20(b"0dede3def700a6db819381be6e269dcbf9bd2ed9");
const SALT_DRAFT29: [u8; 20] = hex20(b"afbfec289993d24c9e9786f19c6111e04390a899");
const SALT_DRAFT23: [u8; 20] = hex20(b"c3eef712c72ebb5a11a7d2432bb46365bef9f502");
const SALT_DRAFT22: [u8; 20] = hex20(b"7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a");

const V1: u32 = 1;
const V2: u32 = 0x6b33_43cf;

/// How many CRYPTO bytes are collected at most (a ClientHello with post-quantum key shares
/// is under 2 KiB; ten times that is generous).
const MAX_CRYPTO: usize = 16 * 1024;

/// Disjoint ranges of the CRYPTO stream held at most. Clients split a ClientHello into a
/// handful of frames (Chrome's "chaos protection" into a dozen or so, out of order); a
/// crafted Initial of one-byte frames at alternating offsets would otherwise cost a sort
/// and merge over thousands of ranges per frame. Past the cap the flow's hello is given up.
pub const MAX_RANGES: usize = 32;

/// Frames other than PADDING read per packet: past it the rest of the packet is skipped.
pub const MAX_FRAMES: usize = 64;

const fn hex20(s: &[u8; 40]) -> [u8; 20] {
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// The salt and key-derivation labels of a QUIC version, if it is one this module opens.
fn version_params(v: u32) -> Option<(&'static [u8; 20], bool)> {
    match v {
        V1 => Some((&SALT_V1, false)),
        V2 => Some((&SALT_V2, true)),
        0xff00_001d..=0xff00_0022 => Some((&SALT_DRAFT29, false)),
        0xff00_0017..=0xff00_001c | 0xface_b002 => Some((&SALT_DRAFT23, false)),
        0xff00_0016 | 0xface_b001 => Some((&SALT_DRAFT22, false)),
        0xface_b00e => Some((&SALT_V1, false)),
        _ => None,
    }
}

/// Whether `p` starts with a QUIC long header (IETF or Google Q0xx/T0xx) or a Google QUIC
/// public header with a version: the cheap test before any decryption.
pub fn looks_like(p: &[u8]) -> bool {
    if p.len() < 20 {
        return false;
    }
    if p[0] & 0xc0 == 0xc0 {
        let v = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        return version_params(v).is_some()
            || google_version(&p[1..5])
            || v & 0x0f0f_0f0f == 0x0a0a_0a0a;
    }
    // gQUIC public header: flags with the version bit, an 8-byte connection id, version.
    p[0] & 0x81 == 0x01 && p[0] & 0x08 != 0 && google_version(&p[9..13])
}

fn google_version(v: &[u8]) -> bool {
    matches!(v[0], b'Q' | b'T') && v[1..4].iter().all(|c| c.is_ascii_digit())
}

/// Client Initial keys.
struct Keys {
    key: [u8; 16],
    iv: [u8; 12],
    hp: [u8; 16],
}

fn expand_label(prk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    // HkdfLabel: length u16, label "tls13 " + label as opaque<7..255>, empty context.
    let mut info = [0u8; 64];
    let full = 6 + label.len();
    if 4 + full > info.len() {
        return None;
    }
    info[..2].copy_from_slice(&(out.len() as u16).to_be_bytes());
    info[2] = full as u8;
    info[3..9].copy_from_slice(b"tls13 ");
    info[9..9 + label.len()].copy_from_slice(label);
    info[9 + label.len()] = 0;
    prk.expand(&info[..10 + label.len()], out).ok()
}

fn client_keys(salt: &[u8; 20], v2: bool, dcid: &[u8]) -> Option<Keys> {
    let (_, initial) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut secret)?;
    let client = Hkdf::<Sha256>::from_prk(&secret).ok()?;
    let mut k = Keys {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    let (lk, li, lh): (&[u8], &[u8], &[u8]) = if v2 {
        (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
    } else {
        (b"quic key", b"quic iv", b"quic hp")
    };
    expand_label(&client, lk, &mut k.key)?;
    expand_label(&client, li, &mut k.iv)?;
    expand_label(&client, lh, &mut k.hp)?;
    Some(k)
}

/// A QUIC variable-length integer (RFC 9000 §16) at `*o`.
fn varint(p: &[u8], o: &mut usize) -> Option<u64> {
    let first = *p.get(*o)?;
    let len = 1usize << (first >> 6);
    let bytes = p.get(*o..*o + len)?;
    let mut v = (first & 0x3f) as u64;
    for b in &bytes[1..] {
        v = (v << 8) | *b as u64;
    }
    *o += len;
    Some(v)
}

/// Per-flow state: the client's keys once known, and the CRYPTO stream collected so far.
#[derive(Default)]
pub struct Initials {
    keys: Option<(Keys, u32)>,
    crypto: Vec<u8>,
    /// Byte ranges of `crypto` filled so far, kept merged and sorted.
    filled: Vec<(usize, usize)>,
    /// The ClientHello was read (or can no longer be).
    pub done: bool,
    /// The ClientHello read offers Encrypted Client Hello (`tls::offers_ech`).
    pub ech: bool,
}

impl std::fmt::Debug for Initials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initials")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// What a datagram told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not an Initial this module can open.
    NotInitial,
    /// QUIC, but no server name yet.
    Quic,
    /// The ClientHello's server name (`None`: the hello names no server).
    Sni(Option<String>),
}

impl Initials {
    /// Feeds one client datagram.
    pub fn feed(&mut self, dgram: &[u8]) -> Outcome {
        if self.done {
            return Outcome::Quic;
        }
        if let Some(sni) = google_chlo_sni(dgram) {
            self.done = true;
            return Outcome::Sni(sni);
        }
        let mut rest = dgram;
        let mut any = false;
        // Coalesced packets: each long-header packet says its length.
        for _ in 0..4 {
            if rest.len() < 20 || rest[0] & 0x80 == 0 {
                break;
            }
            match self.packet(rest) {
                Some((used, opened)) => {
                    any |= opened;
                    rest = &rest[used..];
                }
                None => break,
            }
            if let Some(out) = self.try_hello() {
                return out;
            }
        }
        if any {
            Outcome::Quic
        } else {
            Outcome::NotInitial
        }
    }

    fn try_hello(&mut self) -> Option<Outcome> {
        let contiguous = match self.filled.first() {
            Some(&(0, end)) => end,
            _ => return None,
        };
        match tls::client_hello(&self.crypto[..contiguous]) {
            Hello::Done(sni) => {
                self.done = true;
                self.ech = tls::offers_ech(&self.crypto[..contiguous]);
                Some(Outcome::Sni(sni))
            }
            Hello::No => {
                self.done = true;
                Some(Outcome::Sni(None))
            }
            Hello::Partial => None,
        }
    }

    /// Opens one long-header packet at the start of `p`: (bytes it spans, whether it was a
    /// client Initial that decrypted).
    fn packet(&mut self, p: &[u8]) -> Option<(usize, bool)> {
        let version = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        let (salt, v2) = version_params(version)?;
        let ptype = (p[0] >> 4) & 0x03;
        let initial = if v2 { 0b01 } else { 0b00 };
        let mut o = 5;
        let dcid_len = *p.get(o)? as usize;
        if dcid_len > 20 {
            return None;
        }
        let dcid = p.get(o + 1..o + 1 + dcid_len)?;
        o += 1 + dcid_len;
        let scid_len = *p.get(o)? as usize;
        o += 1 + scid_len;
        if ptype == initial {
            let token_len = varint(p, &mut o)? as usize;
            o = o.checked_add(token_len)?;
        }
        let len = varint(p, &mut o)? as usize;
        let end = o.checked_add(len)?;
        if end > p.len() {
            return None;
        }
        if ptype != initial {
            return Some((end, false));
        }
        if self.keys.as_ref().is_none_or(|(_, v)| *v != version) {
            self.keys = Some((client_keys(salt, v2, dcid)?, version));
        }
        let (keys, _) = self.keys.as_ref()?;
        let pn_off = o;
        let sample = p.get(pn_off + 4..pn_off + 20)?;
        let mut mask = GenericArray::clone_from_slice(sample);
        Aes128::new(GenericArray::from_slice(&keys.hp)).encrypt_block(&mut mask);
        let mut header = p[..pn_off].to_vec();
        header[0] ^= mask[0] & 0x0f;
        let pn_len = (header[0] & 0x03) as usize + 1;
        let mut pn: u64 = 0;
        for i in 0..pn_len {
            let b = p[pn_off + i] ^ mask[1 + i];
            header.push(b);
            pn = (pn << 8) | b as u64;
        }
        let body = p.get(pn_off + pn_len..end)?;
        if body.len() < 16 {
            return None;
        }
        let mut nonce = keys.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let (ct, tag) = body.split_at(body.len() - 16);
        let mut plain = ct.to_vec();
        let cipher = Aes128Gcm::new(GenericArray::from_slice(&keys.key));
        if cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                &header,
                &mut plain,
                Tag::from_slice(tag),
            )
            .is_err()
        {
            // Not the client's Initial (a server Initial, or a DCID we did not derive from).
            return Some((end, false));
        }
        self.frames(&plain);
        Some((end, true))
    }

    fn frames(&mut self, f: &[u8]) {
        let mut o = 0;
        let mut frames = 0;
        while o < f.len() {
            let Some(t) = varint(f, &mut o) else { return };
            if t != 0x00 {
                frames += 1;
                if frames > MAX_FRAMES {
                    return;
                }
            }
            match t {
                0x00 | 0x01 => {}
                0x02 | 0x03 => {
                    // ACK: largest, delay, range count, first range, ranges, [ECN counts].
                    let mut n = [0u64; 4];
                    for v in &mut n {
                        let Some(x) = varint(f, &mut o) else { return };
                        *v = x;
                    }
                    for _ in 0..n[2].min(64) * 2 {
                        if varint(f, &mut o).is_none() {
                            return;
                        }
                    }
                    if t == 0x03 {
                        for _ in 0..3 {
                            if varint(f, &mut o).is_none() {
                                return;
                            }
                        }
                    }
                }
                0x06 => {
                    let (Some(off), Some(len)) = (varint(f, &mut o), varint(f, &mut o)) else {
                        return;
                    };
                    let (off, len) = (off as usize, len as usize);
                    let Some(data) = f.get(o..o + len) else {
                        return;
                    };
                    o += len;
                    self.add_crypto(off, data);
                    if self.done {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn add_crypto(&mut self, off: usize, data: &[u8]) {
        let end = off.saturating_add(data.len()).min(MAX_CRYPTO);
        if off >= end {
            return;
        }
        if self.crypto.len() < end {
            self.crypto.resize(end, 0);
        }
        self.crypto[off..end].copy_from_slice(&data[..end - off]);
        self.filled.push((off, end));
        self.filled.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.filled.len());
        for &(s, e) in &self.filled {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        if merged.len() > MAX_RANGES {
            // Not a client's hello: stop collecting (and decrypting) for this flow.
            self.done = true;
            self.crypto = Vec::new();
            merged.clear();
        }
        self.filled = merged;
    }
}

/// A Google QUIC CHLO in the clear: the `CHLO` tag, a tag count, then (tag, end offset)
/// pairs and the values. Returns the `SNI` value (`Some(None)`: a CHLO without one).
fn google_chlo_sni(p: &[u8]) -> Option<Option<String>> {
    if !looks_like(p) || p[0] & 0x80 != 0 && !google_version(&p[1..5]) {
        return None;
    }
    let at = p.windows(4).take(64).position(|w| w == b"CHLO")?;
    let n = u16::from_le_bytes([*p.get(at + 4)?, *p.get(at + 5)?]) as usize;
    let table = at + 8;
    let values = table.checked_add(n.checked_mul(8)?)?;
    let mut start = 0usize;
    for i in 0..n.min(64) {
        let e = table + i * 8;
        let tag = p.get(e..e + 4)?;
        let end = u32::from_le_bytes(p.get(e + 4..e + 8)?.try_into().ok()?) as usize;
        if tag == b"SNI\0" {
            let v = p.get(values + start..values + end)?;
            return Some(Some(String::from_utf8_lossy(v).into_owned()));
        }
        start = end;
    }
    Some(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aes_gcm::AeadInPlace;

    #[test]
    fn rfc9001_and_rfc9369_client_keys() {
        // RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1: DCID 0x8394c8f03e515708.
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let k = client_keys(&SALT_V1, false, &dcid).expect("v1 keys");
        assert_eq!(k.key, hex16(b"1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(k.hp, hex16(b"9f50449e04a0e810283a1e9933adedd2"));
        assert_eq!(&k.iv[..], &hex16(b"fa044b2f42a3fd3b46fb255c00000000")[..12]);
        let k = client_keys(&SALT_V2, true, &dcid).expect("v2 keys");
        assert_eq!(k.key, hex16(b"8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(k.hp, hex16(b"45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    fn hex16(s: &[u8; 32]) -> [u8; 16] {
        let mut o = [0u8; 16];
        for i in 0..16 {
            o[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        }
        o
    }

    /// Builds a protected client Initial (v1 or v2) carrying the given CRYPTO frames.
    pub(crate) fn initial(version: u32, dcid: &[u8], frames: &[(usize, &[u8])]) -> Vec<u8> {
        let (salt, v2) = version_params(version).expect("known version");
        let keys = client_keys(salt, v2, dcid).expect("keys");
        let mut plain = Vec::new();
        for (off, data) in frames {
            plain.push(0x06);
            plain.extend_from_slice(&(0x4000u16 | *off as u16).to_be_bytes());
            plain.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
            plain.extend_from_slice(data);
        }
        plain.resize(plain.len().max(1100), 0); // padding
        let pn_len = 2;
        let mut h = vec![0xc0 | (if v2 { 0b01 } else { 0 }) << 4 | (pn_len - 1) as u8];
        h.extend_from_slice(&version.to_be_bytes());
        h.push(dcid.len() as u8);
        h.extend_from_slice(dcid);
        h.push(0); // scid
        h.push(0); // token
        let len = pn_len + plain.len() + 16;
        h.extend_from_slice(&(0x4000u16 | len as u16).to_be_bytes());
        let pn_off = h.len();
        h.extend_from_slice(&[0, 1]); // packet number 1
        let mut nonce = keys.iv;
        nonce[11] ^= 1;
        let cipher = Aes128Gcm::new(GenericArray::from_slice(&keys.key));
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &h, &mut plain)
            .expect("encrypts");
        let mut pkt = h.clone();
        pkt.extend_from_slice(&plain);
        pkt.extend_from_slice(&tag);
        let mut mask = GenericArray::clone_from_slice(&pkt[pn_off + 4..pn_off + 20]);
        Aes128::new(GenericArray::from_slice(&keys.hp)).encrypt_block(&mut mask);
        pkt[0] ^= mask[0] & 0x0f;
        pkt[pn_off] ^= mask[1];
        pkt[pn_off + 1] ^= mask[2];
        pkt
    }

    #[test]
    fn sni_from_v1_v2_and_split_hellos() {
        let hello = tls::tests::client_hello_msg(Some("rr1.googlevideo.com"));
        let want = Outcome::Sni(Some("rr1.googlevideo.com".into()));
        for v in [V1, V2, 0xff00_001d] {
            let mut q = Initials::default();
            assert_eq!(
                q.feed(&initial(v, &[1, 2, 3, 4, 5, 6, 7, 8], &[(0, &hello)])),
                want,
                "{v:x}"
            );
        }
        // Out of order frames in one packet, then a hello split over two packets.
        let (a, b) = hello.split_at(30);
        let mut q = Initials::default();
        assert_eq!(q.feed(&initial(V1, &[9; 8], &[(30, b), (0, a)])), want);
        let mut q = Initials::default();
        assert_eq!(q.feed(&initial(V1, &[9; 8], &[(30, b)])), Outcome::Quic);
        assert_eq!(q.feed(&initial(V1, &[9; 8], &[(0, a)])), want);
    }

    /// Crafted worst cases cost bounded work: thousands of one-byte CRYPTO frames at
    /// alternating offsets (ranges never merge), and a packet of nothing but frames.
    #[test]
    fn crafted_initials_are_bounded() {
        let data = [0x16u8; 1];
        let frames: Vec<(usize, &[u8])> = (0..200).map(|i| (2 * i + 1, &data[..])).collect();
        let mut q = Initials::default();
        let out = q.feed(&initial(V1, &[3; 8], &frames[..60]));
        assert_eq!(out, Outcome::Quic);
        assert!(q.filled.len() <= MAX_RANGES);
        assert!(q.done, "past the range cap the hello is given up");
        assert!(q.crypto.is_empty());
        // Later datagrams of the flow are not decrypted at all.
        assert_eq!(
            q.feed(&initial(V1, &[3; 8], &frames[60..100])),
            Outcome::Quic
        );
        assert!(q.filled.is_empty());
        // Frames per packet: of 200 one-byte frames only the first MAX_FRAMES are read.
        let contiguous: Vec<(usize, &[u8])> = (0..200).map(|i| (i, &data[..])).collect();
        let mut q = Initials::default();
        q.feed(&initial(V1, &[4; 8], &contiguous));
        assert_eq!(q.filled, vec![(0, MAX_FRAMES)]);
        // A real hello in 20 out-of-order pieces still reads.
        let hello = tls::tests::client_hello_msg(Some("rr2.googlevideo.com"));
        let step = hello.len().div_ceil(20);
        let mut pieces: Vec<(usize, &[u8])> = hello
            .chunks(step)
            .enumerate()
            .map(|(i, c)| (i * step, c))
            .collect();
        pieces.reverse();
        assert_eq!(
            Initials::default().feed(&initial(V1, &[5; 8], &pieces)),
            Outcome::Sni(Some("rr2.googlevideo.com".into()))
        );
    }

    #[test]
    fn corrupt_initials_and_gquic() {
        let hello = tls::tests::client_hello_msg(Some("a.example"));
        let mut pkt = initial(V1, &[7; 8], &[(0, &hello)]);
        let n = pkt.len();
        pkt[n - 1] ^= 1; // tag
        assert_eq!(Initials::default().feed(&pkt), Outcome::NotInitial);
        for cut in [0, 5, 20, 60, n - 17] {
            let _ = Initials::default().feed(&pkt[..cut]);
        }
        // gQUIC Q043 public header + CHLO with SNI and another tag.
        let mut g = vec![0x0d];
        g.extend_from_slice(&[1; 8]);
        g.extend_from_slice(b"Q043");
        g.push(1);
        g.extend_from_slice(&[0; 12]);
        g.extend_from_slice(
            b"CHLO\x02\x00\x00\x00PAD\x00\x03\x00\x00\x00SNI\x00\x12\x00\x00\x00---www.youtube.com",
        );
        assert_eq!(
            Initials::default().feed(&g),
            Outcome::Sni(Some("www.youtube.com".into()))
        );
        assert!(!looks_like(b"\x01\x02 not quic at all........"));
    }
}
