//! Where each flow of a snapshot's slice is ([`crate::snapshot`]'s index, updated a part at a
//! time): a table of positions in the slice's vector, with each position's key and the
//! cycle of its latest reading kept beside it in the vector's order.
//!
//! The index is looked up once per flow read (131,072 and more a second, in no order the
//! table's memory follows), so what a lookup touches is what it costs: a standard hash map
//! of key → position read two cache lines far apart (its control bytes, then the 48-byte
//! entry), which was about 90% of the merge's time. Here a slot is a 4-byte position, so
//! the slots of a 65,536-flow slice take 512 KB, and the key compared is in `keys`, whose
//! line holds the cycle that is written next. Open addressing with linear probing, at most
//! half full; removal shifts the following entries back (no tombstones).

use peerwarden_common::FlowKey;

use crate::keyhash::{KeyHash, Word5};

use std::hash::BuildHasher as _;

/// The fewest slots of a table that holds anything.
const MIN_SLOTS: usize = 1024;

/// The positions of one slice's flows.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// Per slot: position + 1 (0: empty). A power of two long, at most half full.
    slots: Vec<u32>,
    /// Per position: the flow's key and the cycle of its latest reading.
    keys: Vec<(FlowKey, u64)>,
    /// Keyed per table (see [`crate::keyhash`] for why a sender cannot aim collisions).
    hash: KeyHash,
}

impl Positions {
    fn home(&self, k: &FlowKey) -> usize {
        self.hash.hash_one(Word5(*k)) as usize & (self.slots.len() - 1)
    }

    /// `Ok(slot)` holding `k`, or `Err(slot)`: the empty slot where it would go. The table
    /// must have slots.
    fn find(&self, k: &FlowKey) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut s = self.home(k);
        loop {
            match self.slots[s] {
                0 => return Err(s),
                p if self.keys[p as usize - 1].0 == *k => return Ok(s),
                _ => s = (s + 1) & mask,
            }
        }
    }

    /// The position of `k`.
    pub(crate) fn get(&self, k: &FlowKey) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        self.find(k).ok().map(|s| self.slots[s] as usize - 1)
    }

    /// Flows held.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The cycle of position `pos`'s reading.
    pub(crate) fn cycle(&self, pos: usize) -> u64 {
        self.keys[pos].1
    }

    /// Records that position `pos` was read in `cycle`.
    pub(crate) fn set_cycle(&mut self, pos: usize, cycle: u64) {
        self.keys[pos].1 = cycle;
    }

    /// Adds `k` (not held) at the next position, read in `cycle`; returns the position.
    pub(crate) fn push(&mut self, k: FlowKey, cycle: u64) -> usize {
        if (self.keys.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let pos = self.keys.len();
        self.keys.push((k, cycle));
        if let Err(s) = self.find(&k) {
            self.slots[s] = pos as u32 + 1;
        }
        pos
    }

    /// Twice the slots (at least [`MIN_SLOTS`]), every key placed again.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(MIN_SLOTS);
        self.slots = vec![0; n];
        let mask = n - 1;
        for pos in 0..self.keys.len() {
            let mut s = self.home(&self.keys[pos].0);
            while self.slots[s] != 0 {
                s = (s + 1) & mask;
            }
            self.slots[s] = pos as u32 + 1;
        }
    }

    /// Removes position `pos` as `Vec::swap_remove` does (the last position moves there),
    /// so that the positions stay those of the slice's vector.
    pub(crate) fn swap_remove(&mut self, pos: usize) {
        if let Ok(s) = self.find(&self.keys[pos].0) {
            self.clear_slot(s);
        }
        let last = self.keys.len() - 1;
        if pos != last
            && let Ok(s) = self.find(&self.keys[last].0)
        {
            self.slots[s] = pos as u32 + 1;
        }
        self.keys.swap_remove(pos);
    }

    /// Empties slot `hole` and moves back the entries after it that would not be found
    /// past the gap (each entry stays between its home slot and the first empty slot).
    fn clear_slot(&mut self, mut hole: usize) {
        let mask = self.slots.len() - 1;
        self.slots[hole] = 0;
        let mut s = hole;
        loop {
            s = (s + 1) & mask;
            let p = self.slots[s];
            if p == 0 {
                return;
            }
            let home = self.home(&self.keys[p as usize - 1].0);
            // The entry may fill the hole when the hole lies between its home and it.
            if s.wrapping_sub(home) & mask >= s.wrapping_sub(hole) & mask {
                self.slots[hole] = p;
                self.slots[s] = 0;
                hole = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn key(i: u32) -> FlowKey {
        crate::snapshot::tests::flow(i).0
    }

    /// Adds and removes as the snapshot does (removal by position, swap-remove), against
    /// a map and a vector doing the same: every key is found at its vector position.
    #[test]
    fn positions_follow_a_swap_removed_vector_through_growth_and_removals() {
        let mut p = Positions::default();
        let mut order: Vec<u32> = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..40u64 {
            for _ in 0..3000 {
                let i = (next() % 50_000) as u32;
                if p.get(&key(i)).is_none() {
                    assert_eq!(p.push(key(i), round), order.len());
                    order.push(i);
                } else {
                    let pos = p.get(&key(i)).expect("held");
                    p.set_cycle(pos, round);
                }
            }
            // Drop about a third, by position, as the snapshot's end of a cycle does.
            let mut pos = 0;
            while pos < order.len() {
                if next() % 3 == 0 {
                    p.swap_remove(pos);
                    order.swap_remove(pos);
                } else {
                    pos += 1;
                }
            }
            assert_eq!(p.len(), order.len());
            let at: HashMap<u32, usize> = order.iter().enumerate().map(|(n, &i)| (i, n)).collect();
            for i in 0..50_000 {
                assert_eq!(
                    p.get(&key(i)),
                    at.get(&i).copied(),
                    "key {i}, round {round}"
                );
            }
        }
        assert!(p.len() > 1000, "the test kept flows: {}", p.len());
    }
}
