//! The rates' window ([`RATE_WINDOW`]) of every subscriber, in one ring of passes rather
//! than a deque per subscriber.
//!
//! Each pass that moves some subscriber's total has a slot: the moved subscribers' totals,
//! appended in the order the pass reads them (a dense, sequential write), and beside them
//! the position of each subscriber's entry (4 bytes per subscriber). A slot leaves the
//! ring once the next one is at least [`RATE_WINDOW`] old; a subscriber's entry in it is
//! then kept as its *base* (the total at the window's start), unless the next slot holds a
//! newer one of the same subscriber, which is a base for every later reading. So the
//! window of a subscriber is its base and its entries in the ring, oldest first: what the
//! deque held, with the same meaning (entries only for readings that moved the total, and
//! the newest at least [`RATE_WINDOW`] old as the base), and no read of a subscriber's
//! older entries while passes move it.
//!
//! The slots leave the ring as of each pass's time, the deque's entries as of the
//! subscriber's own reading: the same for every subscriber read in the pass. One whose
//! read failed keeps its window's end (its last reading) while its entries move on with
//! the others; the daemon's reads fail only for an index beyond the mapped array, which
//! never has entries.
//!
//! Memory, at one pass a second: 11 slots (the window's 10 s and the base's; the slot
//! that leaves is the next one's memory), each 4 bytes per subscriber and 328 bytes per
//! subscriber moved in its pass, and 336 bytes per subscriber whose entry became a base
//! (none while it moves every second). At 100,000 subscribers all moving: 11 x 33.2 MB =
//! 365 MB, against the deques' buffers of 16 entries of 336 bytes (538 MB); with 1%
//! moving: about 8 MB and the bases (at most 33.6 MB), against the deques' buffers of 4
//! entries (134 MB).

use std::{collections::VecDeque, time::Instant};

use super::{ClassCounters, RATE_WINDOW};

/// One pass's entries.
#[derive(Default)]
struct Slot {
    /// The pass's number.
    pass: u64,
    /// The reading's time.
    at: Option<Instant>,
    /// Per subscriber position: its entry's index in `entries` + 1, or 0 for none.
    of: Vec<u32>,
    /// (subscriber position, total), in the order written.
    entries: Vec<(u32, ClassCounters)>,
}

impl Slot {
    fn get(&self, pos: usize) -> Option<&ClassCounters> {
        let i = *self.of.get(pos)? as usize;
        self.entries.get(i.checked_sub(1)?).map(|(_, t)| t)
    }

    /// Whether `entries[i]` is still its subscriber's entry (not cleared since).
    fn live(&self, i: usize, pos: u32) -> bool {
        self.of
            .get(pos as usize)
            .is_some_and(|&e| e as usize == i + 1)
    }

    fn reset(&mut self) {
        for (pos, _) in self.entries.drain(..) {
            if let Some(e) = self.of.get_mut(pos as usize) {
                *e = 0;
            }
        }
    }
}

/// Every subscriber's recent totals.
#[derive(Default)]
pub(super) struct Window {
    /// Oldest first.
    slots: VecDeque<Slot>,
    /// A slot that left the ring, its memory kept for the next.
    spare: Option<Slot>,
    /// Per subscriber position: the newest entry that left the ring, if not followed by a
    /// newer one that also left it.
    bases: Vec<Option<(Instant, ClassCounters)>>,
}

/// The window of one subscriber as of `end`: the seconds it spans and the total at its start.
pub(super) struct Span<'a> {
    pub seconds: f64,
    pub base: &'a ClassCounters,
}

impl Window {
    /// Starts a pass read at `at`: the slots whose successor is at least [`RATE_WINDOW`]
    /// old leave the ring (their entries become bases).
    pub(super) fn advance(&mut self, at: Instant) {
        while self.slots.len() >= 2
            && self.slots[1]
                .at
                .is_some_and(|t| at.saturating_duration_since(t) >= RATE_WINDOW)
        {
            let Some(mut old) = self.slots.pop_front() else {
                break;
            };
            if let (Some(next), Some(t)) = (self.slots.front(), old.at) {
                for (i, (pos, total)) in old.entries.iter().enumerate() {
                    if !old.live(i, *pos) || next.get(*pos as usize).is_some() {
                        continue;
                    }
                    let pos = *pos as usize;
                    if self.bases.len() <= pos {
                        self.bases.resize(pos + 1, None);
                    }
                    self.bases[pos] = Some((t, *total));
                }
            }
            old.reset();
            self.spare = Some(old);
        }
    }

    /// Adds subscriber `pos`'s total read in pass `pass` at `at`.
    pub(super) fn push(&mut self, pass: u64, pos: usize, at: Instant, total: &ClassCounters) {
        if self.slots.back().is_none_or(|s| s.pass != pass) {
            // A new slot is sized for as many entries as the last pass's (a vector grown
            // by doubling would hold up to twice what it needs, in every slot).
            let last = self.slots.back().map_or(0, |s| s.entries.len());
            let mut slot = self.spare.take().unwrap_or_else(|| Slot {
                entries: Vec::with_capacity(last),
                ..Slot::default()
            });
            slot.pass = pass;
            slot.at = Some(at);
            self.slots.push_back(slot);
        }
        let Some(slot) = self.slots.back_mut() else {
            return;
        };
        if slot.of.len() <= pos {
            slot.of.resize(pos + 1, 0);
        }
        match slot.of[pos].checked_sub(1) {
            Some(i) => {
                if let Some(e) = slot.entries.get_mut(i as usize) {
                    e.1 = *total;
                }
            }
            None => {
                slot.entries.push((pos as u32, *total));
                slot.of[pos] = slot.entries.len() as u32;
            }
        }
    }

    /// Forgets subscriber `pos`'s entries (it left, or owns another index).
    pub(super) fn clear(&mut self, pos: usize) {
        for slot in self.slots.iter_mut() {
            if let Some(e) = slot.of.get_mut(pos) {
                *e = 0;
            }
        }
        if let Some(b) = self.bases.get_mut(pos) {
            *b = None;
        }
    }

    /// Subscriber `pos`'s window ending at `end` (its last reading): the total at the
    /// newest entry at least [`RATE_WINDOW`] old, or without one, at its first entry;
    /// `None` without entries.
    pub(super) fn span(&self, pos: usize, end: Instant) -> Option<Span<'_>> {
        let old_enough = |t: Instant| end.saturating_duration_since(t) >= RATE_WINDOW;
        let base = self.bases.get(pos).and_then(|b| b.as_ref());
        let mut first = base.map(|(t, c)| (*t, c));
        let mut found = first.filter(|(t, _)| old_enough(*t));
        for slot in &self.slots {
            let (Some(total), Some(t)) = (slot.get(pos), slot.at) else {
                continue;
            };
            first.get_or_insert((t, total));
            if old_enough(t) {
                found = Some((t, total));
            } else {
                break;
            }
        }
        match found {
            Some((_, base)) => Some(Span {
                seconds: RATE_WINDOW.as_secs_f64(),
                base,
            }),
            None => first.map(|(t, base)| Span {
                seconds: end.saturating_duration_since(t).as_secs_f64(),
                base,
            }),
        }
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
