//! A cheap keyed hash for the flow snapshot's index ([`crate::snapshot`]): a flow key is
//! five words, hashed with a multiply and an xor-shift each, in place of the standard
//! library's SipHash over the key's fields (eight calls into the hasher for a derived
//! `Hash`). The index is looked up once per flow read, 131,072 flows a second and more.
//!
//! Flow keys are chosen by whoever sends the packets, so a hash that one could aim would
//! let a sender put many flows in one chain of the index and make every lookup slow. The
//! hash is keyed: each [`KeyHash`] draws a random seed (from the standard library's
//! per-process random keys) and starts every hash from it, so which keys collide differs
//! per index and per process, and a sender sees nothing of the index (it is read by the
//! daemon's own threads, never answered on the wire) to learn it from. This is not a
//! cryptographic hash; the flows a sender can place are also bounded by the kernel's
//! table (its LRU evicts the oldest), which bounds the index's size.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use peerwarden_common::FlowKey;

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// A flow key, hashed as its five words ([`KeyHash`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word5(pub(crate) FlowKey);

impl Hash for Word5 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let k = &self.0;
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        state.write_u64(word(&k.sub_addr[..8]));
        state.write_u64(word(&k.sub_addr[8..]));
        state.write_u64(word(&k.remote_addr[..8]));
        state.write_u64(word(&k.remote_addr[8..]));
        state.write_u64(
            u64::from(k.sub_port)
                | u64::from(k.remote_port) << 16
                | u64::from(k.proto) << 32
                | u64::from(k.family) << 40
                | u64::from(k._pad[0]) << 48
                | u64::from(k._pad[1]) << 56,
        );
    }
}

/// Builds [`WordHasher`]s from a random seed of its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHash {
    seed: u64,
}

impl Default for KeyHash {
    fn default() -> KeyHash {
        KeyHash {
            seed: RandomState::new().hash_one(0x006b_6579_u64),
        }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = WordHasher;

    fn build_hasher(&self) -> WordHasher {
        WordHasher(self.seed)
    }
}

/// A multiply and xor-shift per word written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write_u64(&mut self, w: u64) {
        let h = (self.0 ^ w).wrapping_mul(MUL);
        self.0 = h ^ (h >> 29);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn finish(&self) -> u64 {
        // The table takes its slot from the low bits and a tag from the top ones: one more
        // multiply spreads every word's bits into both.
        let h = self.0.wrapping_mul(MUL);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(i: u32) -> FlowKey {
        crate::snapshot::tests::flow(i).0
    }

    #[test]
    fn keys_that_differ_in_any_field_hash_apart_and_seeds_differ() {
        let h = KeyHash::default();
        let base = key(7);
        let mut variants = vec![base];
        for b in 0..16 {
            let mut k = base;
            k.sub_addr[b] ^= 1;
            variants.push(k);
            let mut k = base;
            k.remote_addr[b] ^= 0x80;
            variants.push(k);
        }
        let mut k = base;
        k.remote_port ^= 1;
        variants.push(k);
        let mut k = base;
        k.proto = 17;
        variants.push(k);
        let mut k = base;
        k.family = 6;
        variants.push(k);
        let hashes: HashSet<u64> = variants.iter().map(|k| h.hash_one(Word5(*k))).collect();
        assert_eq!(hashes.len(), variants.len());
        // Another index hashes the same key elsewhere (its own seed).
        let other = KeyHash::default();
        assert_ne!(h.hash_one(Word5(base)), other.hash_one(Word5(base)));
    }

    #[test]
    fn consecutive_ports_spread_over_the_low_bits() {
        // The table picks a slot from the low bits: 65,536 keys of one subscriber and one
        // server, differing only in the port, fill 4,096 slots of 12 bits nearly evenly.
        let h = KeyHash::default();
        let mut slots = vec![0u32; 4096];
        for i in 0..65_536 {
            slots[(h.hash_one(Word5(key(i))) & 4095) as usize] += 1;
        }
        let most = *slots.iter().max().expect("slots");
        assert!(most <= 40, "16 a slot on average, the fullest holds {most}");
    }
}
