//! The info-hash as it travels on the wire, and its keyed pseudonym.
//!
//! Every source the deep tier sees (the peer-wire handshake, HTTP and UDP tracker announces,
//! DHT queries) carries 20 bytes. A BitTorrent v1 info-hash is a SHA-1 of the info
//! dictionary: those 20 bytes. A v2 info-hash (BEP 52) is a SHA-256, but BEP 52 has the
//! sender truncate it to its first 20 bytes in exactly these places, so what arrives is
//! already the truncated form and a v2 swarm is keyed by it, like a v1 one. Nothing in these
//! messages says which kind a hash is, so [`InfoHash`] is untyped; a hybrid torrent (v1 and
//! v2 at once) shows as two swarms, which only its metadata could join.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The 20 bytes that name a swarm on the wire (a v1 hash, or a v2 hash truncated per BEP 52).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The hash from a slice of exactly 20 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        b.try_into().ok().map(InfoHash)
    }

    /// Lower-case hex, 40 characters (as magnet links and trackers' pages write it).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(InfoHash(out))
    }
}

impl std::fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl std::fmt::Display for InfoHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a swarm is keyed by in the table: the info-hash itself, or its keyed pseudonym when
/// the operator asked for pseudonyms. Both print as 40 hex digits; [`SwarmId::pseudonymous`]
/// says which it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SwarmId {
    /// The 20 bytes.
    pub bytes: [u8; 20],
    /// True: `bytes` is a pseudonym (HMAC), not an info-hash.
    pub pseudonymous: bool,
}

impl SwarmId {
    /// Lower-case hex of the 20 bytes.
    pub fn to_hex(&self) -> String {
        hex(&self.bytes)
    }
}

/// The installation's secret for pseudonyms: 32 random bytes, made once and stored by the
/// caller (the daemon, beside its history store), so pseudonyms stay stable across restarts
/// and differ between installations.
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    /// A key from stored bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        PseudonymKey(key)
    }

    /// A fresh random key from the kernel's generator (`/dev/urandom`).
    pub fn generate() -> std::io::Result<Self> {
        use std::io::Read;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(PseudonymKey(key))
    }

    /// The bytes to store.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The pseudonym of `hash`: HMAC-SHA256 under this key, cut to 20 bytes. Without the key,
    /// a pseudonym cannot be turned back into the hash, nor can a known torrent's hash be
    /// checked against the stored pseudonyms (which an unkeyed hash would allow).
    pub fn pseudonym(&self, hash: &InfoHash) -> SwarmId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"peerwarden swarm pseudonym v1\0");
        mac.update(&hash.0);
        let full = mac.finalize().into_bytes();
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&full[..20]);
        SwarmId {
            bytes,
            pseudonymous: true,
        }
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// The value of one hex digit.
pub(crate) fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let h = InfoHash(*b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\xff0123456789");
        assert_eq!(h.to_hex(), "0123456789abcdef00ff30313233343536373839");
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(InfoHash::from_hex("0123"), None);
        assert_eq!(InfoHash::from_hex(&"g".repeat(40)), None);
    }

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_between_keys() {
        let a = InfoHash([7; 20]);
        let b = InfoHash([8; 20]);
        let k1 = PseudonymKey::from_bytes([1; 32]);
        let k2 = PseudonymKey::from_bytes([2; 32]);
        assert_eq!(k1.pseudonym(&a), k1.pseudonym(&a));
        assert_eq!(
            PseudonymKey::from_bytes(k1.to_bytes()).pseudonym(&a),
            k1.pseudonym(&a)
        );
        assert_ne!(k1.pseudonym(&a), k2.pseudonym(&a));
        assert_ne!(k1.pseudonym(&a), k1.pseudonym(&b));
        assert_ne!(k1.pseudonym(&a).bytes, a.0);
        assert!(k1.pseudonym(&a).pseudonymous);
        let r1 = PseudonymKey::generate().expect("urandom");
        let r2 = PseudonymKey::generate().expect("urandom");
        assert_ne!(r1.to_bytes(), r2.to_bytes());
    }
}
