//! Which flows are due for export, and how much of each: every byte and packet the kernel
//! counted for a flow goes into exactly one record.
//!
//! The kernel's flow entries only grow; the tracker keeps, per flow key, what was exported
//! so far and the last reading, and exports the difference:
//!
//! - **idle**: no packet for `idle_timeout`: the rest of the flow (reason 1);
//! - **active**: a flow still running `active_timeout` after its last record: what it
//!   carried since (reason 2);
//! - **gone**: a flow that left the kernel's LRU table (evicted for a new one) or whose
//!   entry was replaced by a new flow with the same key: the rest as of the last reading
//!   (reason 5, lack of resources). Packets counted between that reading and the eviction
//!   (at most one reading interval, 1 s) are lost;
//! - **stop**: at a clean stop, everything not exported yet (reason 4, forced end).
//!
//! A record is only made for a non-zero difference. A flow exported as idle stays tracked
//! while it is in the kernel's table, so a packet that revives it is exported later as the
//! difference, never counted twice.
//!
//! **Slices.** A full table (1,048,576 flows) cost about half a second of a core to pass
//! over every second. A tracker made with [`Tracker::sliced`] splits the flows into
//! `n` slices by a keyed hash of the flow key ([`Tracker::slice_of`]) and each
//! [`Tracker::tick_slice`] looks at one slice only, the next in turn, so every flow is
//! looked at once every `n` ticks (seconds). What that changes:
//!
//! - a record is made at the first look after its timeout: up to `n` seconds late (idle,
//!   active and gone alike). Active records of a long flow come every `active_timeout`
//!   rounded up to a multiple of `n` seconds. Their counts are exact all the same: each
//!   record is the difference to what was exported before;
//! - a flow that leaves the kernel's table is noticed at its slice's next look, and what
//!   it carried after the last look (up to `n` seconds, instead of 1) is lost, as above;
//! - the clean stop ([`Tracker::finish`]) reads every slice: nothing is left behind.
//!
//! [`slices_for`] gives the count the daemon uses: one slice per 65,536 flows of the
//! table, at most 16, so tables up to 65,536 flows are walked whole every second as before.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

use peerwarden_common::{FlowKey, FlowValue};

use crate::encode::EndReason;

/// A record to make: the flow, its reading now, and the difference to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub key: FlowKey,
    /// The reading the record describes (label, first and last packet).
    pub value: FlowValue,
    /// Bytes `[up, down]` not exported before.
    pub bytes: [u64; 2],
    /// Packets `[up, down]` not exported before.
    pub packets: [u64; 2],
    pub reason: EndReason,
}

#[derive(Debug)]
struct Tracked {
    /// The last reading of the flow.
    last: FlowValue,
    /// Bytes and packets exported so far.
    bytes: [u64; 2],
    packets: [u64; 2],
    /// When its last record was made (or when it started), CLOCK_MONOTONIC ns.
    last_export_ns: u64,
    /// The tracker's pass that last saw it in the table.
    seen: u64,
}

impl Tracked {
    fn new(v: FlowValue) -> Tracked {
        Tracked {
            last: v,
            bytes: [0; 2],
            packets: [0; 2],
            last_export_ns: v.first_seen_ns,
            seen: 0,
        }
    }

    /// The part of `v` not exported yet, as a record; marks it exported.
    fn take(&mut self, key: FlowKey, v: FlowValue, reason: EndReason, now_ns: u64) -> Option<Due> {
        let mut due = Due {
            key,
            value: v,
            bytes: [0; 2],
            packets: [0; 2],
            reason,
        };
        for d in 0..2 {
            due.bytes[d] = v.bytes[d].saturating_sub(self.bytes[d]);
            due.packets[d] = v.packets[d].saturating_sub(self.packets[d]);
        }
        self.bytes = v.bytes;
        self.packets = v.packets;
        self.last_export_ns = now_ns;
        (due.bytes != [0; 2] || due.packets != [0; 2]).then_some(due)
    }

    /// `v` is another flow than the one tracked (same key, new entry).
    fn replaced_by(&self, v: &FlowValue) -> bool {
        v.first_seen_ns != self.last.first_seen_ns
            || (0..2).any(|d| v.bytes[d] < self.bytes[d] || v.packets[d] < self.packets[d])
    }
}

/// Flows of the table per slice (see the module's documentation).
pub const SLICE_FLOWS: usize = 65_536;

/// The most slices: a flow is looked at least every this many seconds.
pub const MAX_SLICES: usize = 16;

/// The slice count for a flow table of `table` entries: one per [`SLICE_FLOWS`], at least
/// one, at most [`MAX_SLICES`].
pub fn slices_for(table: usize) -> usize {
    table.div_ceil(SLICE_FLOWS).clamp(1, MAX_SLICES)
}

/// Which slice a flow belongs to: a keyed hash of its key (the key is random per slicer,
/// so a sender cannot aim its flows at one slice), a few multiplications over the key's
/// 40 bytes, cheap enough to cut the whole table in slices every second.
#[derive(Clone, Copy, Debug)]
pub struct Slicer {
    seed: u64,
    slices: usize,
}

impl Slicer {
    /// A slicer into `slices` slices (at least 1).
    pub fn new(slices: usize) -> Slicer {
        Slicer {
            seed: RandomState::new().hash_one(0x1f1f_u64) | 1,
            slices: slices.max(1),
        }
    }

    /// The slice count.
    pub fn slices(&self) -> usize {
        self.slices
    }

    /// The slice `key` belongs to, below [`Slicer::slices`].
    pub fn slice_of(&self, key: &FlowKey) -> usize {
        let n = self.slices;
        if n == 1 {
            return 0;
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let tail = u64::from(key.sub_port)
            | u64::from(key.remote_port) << 16
            | u64::from(key.proto) << 32
            | u64::from(key.family) << 40;
        let mut h = self.seed;
        for w in [
            word(&key.sub_addr[..8]),
            word(&key.sub_addr[8..]),
            word(&key.remote_addr[..8]),
            word(&key.remote_addr[8..]),
            tail,
        ] {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 31;
        }
        ((h >> 32) as usize) % n
    }
}

/// Per-flow export bookkeeping.
#[derive(Debug)]
pub struct Tracker {
    /// The tracked flows, by slice.
    slices: Vec<HashMap<FlowKey, Tracked>>,
    slicer: Slicer,
    /// The slice the next [`Tracker::tick_slice`] looks at.
    next: usize,
    idle_ns: u64,
    active_ns: u64,
    /// Passes so far (what `Tracked::seen` compares with; no set of keys per pass).
    pass: u64,
}

impl Tracker {
    /// A tracker with these timeouts (nanoseconds) whose every tick reads the whole table.
    pub fn new(idle_ns: u64, active_ns: u64) -> Tracker {
        Tracker::sliced(idle_ns, active_ns, 1)
    }

    /// A tracker whose [`Tracker::tick_slice`] looks at one of `slices` slices at a time
    /// (at least 1).
    pub fn sliced(idle_ns: u64, active_ns: u64, slices: usize) -> Tracker {
        Tracker::with_slicer(idle_ns, active_ns, Slicer::new(slices))
    }

    /// A tracker whose slices are `slicer`'s (the flow snapshot's: `crate::snapshot`).
    pub fn with_slicer(idle_ns: u64, active_ns: u64, slicer: Slicer) -> Tracker {
        Tracker {
            slices: (0..slicer.slices()).map(|_| HashMap::new()).collect(),
            slicer,
            next: 0,
            idle_ns,
            active_ns,
            pass: 0,
        }
    }

    /// Flows tracked.
    pub fn len(&self) -> usize {
        self.slices.iter().map(HashMap::len).sum()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.slices.iter().all(HashMap::is_empty)
    }

    /// The slice count.
    pub fn slices(&self) -> usize {
        self.slices.len()
    }

    /// The slice the next [`Tracker::tick_slice`] reads.
    pub fn next_slice(&self) -> usize {
        self.next
    }

    /// The slice `key` belongs to.
    pub fn slice_of(&self, key: &FlowKey) -> usize {
        self.slicer.slice_of(key)
    }

    /// Takes a full reading of the flow table at `now_ns` (CLOCK_MONOTONIC); returns the
    /// records due, from every slice.
    pub fn tick(
        &mut self,
        reading: impl IntoIterator<Item = (FlowKey, FlowValue)>,
        now_ns: u64,
    ) -> Vec<Due> {
        self.pass_over(None, reading, now_ns)
    }

    /// Takes the reading of one slice, [`Tracker::next_slice`], at `now_ns`: every flow of
    /// the table whose [`Tracker::slice_of`] is that slice (flows of other slices in
    /// `reading` are passed over); returns the records due from that slice, and moves on to
    /// the next slice.
    pub fn tick_slice(
        &mut self,
        reading: impl IntoIterator<Item = (FlowKey, FlowValue)>,
        now_ns: u64,
    ) -> Vec<Due> {
        let s = self.next;
        self.next = (s + 1) % self.slices.len();
        self.pass_over(Some(s), reading, now_ns)
    }

    /// A pass over slice `only` (or all of them): its flows in `reading`, then those
    /// tracked but missing from it.
    fn pass_over(
        &mut self,
        only: Option<usize>,
        reading: impl IntoIterator<Item = (FlowKey, FlowValue)>,
        now_ns: u64,
    ) -> Vec<Due> {
        let mut due = Vec::new();
        self.pass += 1;
        for (k, v) in reading {
            let s = self.slice_of(&k);
            if only.is_none_or(|o| o == s) {
                self.visit(s, k, v, now_ns, &mut due);
            }
        }
        for s in only.map_or(0..self.slices.len(), |o| o..o + 1) {
            self.sweep(s, now_ns, &mut due);
        }
        due
    }

    /// One flow of slice `s` in this pass's reading.
    fn visit(&mut self, s: usize, k: FlowKey, v: FlowValue, now_ns: u64, due: &mut Vec<Due>) {
        let (idle_ns, active_ns, pass) = (self.idle_ns, self.active_ns, self.pass);
        let t = self.slices[s].entry(k).or_insert_with(|| Tracked::new(v));
        if t.replaced_by(&v) {
            let old = t.last;
            due.extend(t.take(k, old, EndReason::LackOfResources, now_ns));
            *t = Tracked::new(v);
        }
        t.last = v;
        t.seen = pass;
        let idle = now_ns.saturating_sub(v.last_seen_ns) >= idle_ns;
        if idle {
            due.extend(t.take(k, v, EndReason::Idle, now_ns));
        } else if now_ns.saturating_sub(t.last_export_ns) >= active_ns {
            due.extend(t.take(k, v, EndReason::Active, now_ns));
        }
    }

    /// Slice `s`'s flows not in this pass's reading have left the table: their rest.
    fn sweep(&mut self, s: usize, now_ns: u64, due: &mut Vec<Due>) {
        let pass = self.pass;
        self.slices[s].retain(|k, t| {
            if t.seen == pass {
                return true;
            }
            let last = t.last;
            due.extend(t.take(*k, last, EndReason::LackOfResources, now_ns));
            false
        });
    }

    /// Takes `reading` as exported already: the flows of maps adopted from an earlier
    /// daemon, which exported them at its stop. Only what they carry from now on is
    /// exported (packets between that daemon's last walk and this reading are not).
    pub fn adopt(&mut self, reading: impl IntoIterator<Item = (FlowKey, FlowValue)>, now_ns: u64) {
        for (k, v) in reading {
            let mut t = Tracked::new(v);
            let _ = t.take(k, v, EndReason::Forced, now_ns);
            let s = self.slice_of(&k);
            self.slices[s].insert(k, t);
        }
    }

    /// The last reading at a clean stop: everything not exported yet.
    pub fn finish(
        &mut self,
        reading: impl IntoIterator<Item = (FlowKey, FlowValue)>,
        now_ns: u64,
    ) -> Vec<Due> {
        let mut due = Vec::new();
        for (k, v) in reading {
            let s = self.slice_of(&k);
            let mut t = self.slices[s].remove(&k).unwrap_or_else(|| Tracked::new(v));
            if t.replaced_by(&v) {
                let old = t.last;
                due.extend(t.take(k, old, EndReason::LackOfResources, now_ns));
                t = Tracked::new(v);
            }
            due.extend(t.take(k, v, EndReason::Forced, now_ns));
        }
        for (k, mut t) in self.slices.iter_mut().flat_map(HashMap::drain) {
            let last = t.last;
            due.extend(t.take(k, last, EndReason::LackOfResources, now_ns));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            sub_addr: [100, 64, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [198, 51, 100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sub_port: port,
            remote_port: 6881,
            proto: 6,
            family: 4,
            _pad: [0; 2],
        }
    }

    fn val(first: u64, last: u64, up: u64, down: u64) -> FlowValue {
        FlowValue {
            bytes: [up, down],
            packets: [up / 100, down / 100],
            first_seen_ns: first,
            last_seen_ns: last,
            ..FlowValue::default()
        }
    }

    /// Sums of the records' bytes per key.
    fn total(dues: &[Due]) -> [u64; 2] {
        dues.iter()
            .fold([0, 0], |a, d| [a[0] + d.bytes[0], a[1] + d.bytes[1]])
    }

    #[test]
    fn idle_flow_is_exported_once_whole() {
        let mut t = Tracker::new(15 * S, 60 * S);
        let k = key(1000);
        assert!(t.tick([(k, val(S, 2 * S, 500, 9000))], 3 * S).is_empty());
        let d = t.tick([(k, val(S, 5 * S, 700, 12000))], 10 * S);
        assert!(d.is_empty(), "not idle yet: {d:?}");
        let d = t.tick([(k, val(S, 5 * S, 700, 12000))], 20 * S);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].bytes, d[0].packets), ([700, 12000], [7, 120]));
        assert_eq!(d[0].reason, EndReason::Idle);
        // Still in the table, nothing new: no second record.
        assert!(t.tick([(k, val(S, 5 * S, 700, 12000))], 30 * S).is_empty());
        // Revived: only the new bytes, once idle again.
        let d = t.tick([(k, val(S, 31 * S, 900, 12100))], 47 * S);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].bytes, [200, 100]);
    }

    #[test]
    fn active_flow_exports_deltas_that_sum_to_the_whole() {
        let mut t = Tracker::new(15 * S, 60 * S);
        let k = key(1001);
        let mut all = Vec::new();
        for sec in 1..=200u64 {
            let v = val(S, sec * S, sec * 1000, sec * 50_000);
            all.extend(t.tick([(k, v)], sec * S));
        }
        assert!(all.iter().all(|d| d.reason == EndReason::Active));
        assert_eq!(all.len(), 3, "at 61, 121, 181 s: {all:?}");
        all.extend(t.finish([(k, val(S, 200 * S, 200_000, 10_000_000))], 201 * S));
        assert_eq!(all.last().map(|d| d.reason), Some(EndReason::Forced));
        assert_eq!(total(&all), [200_000, 10_000_000]);
    }

    #[test]
    fn evicted_and_replaced_flows_export_their_last_reading() {
        let mut t = Tracker::new(15 * S, 60 * S);
        let (a, b) = (key(1), key(2));
        t.tick([(a, val(S, S, 100, 200)), (b, val(S, S, 300, 400))], 2 * S);
        // `a` left the table; `b`'s entry is a new flow (started later, smaller counts).
        let d = t.tick([(b, val(3 * S, 3 * S, 50, 60))], 4 * S);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|d| d.reason == EndReason::LackOfResources));
        let by_port = |p: u16| d.iter().find(|d| d.key.sub_port == p).map(|d| d.bytes);
        assert_eq!(by_port(1), Some([100, 200]));
        assert_eq!(by_port(2), Some([300, 400]));
        // The new `b` is exported from zero at the stop.
        let d = t.finish([(b, val(3 * S, 5 * S, 80, 90))], 6 * S);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].bytes, d[0].reason), ([80, 90], EndReason::Forced));
        assert!(t.is_empty());
    }

    #[test]
    fn adopted_flows_export_only_their_growth() {
        let mut t = Tracker::new(15 * S, 60 * S);
        let k = key(7);
        t.adopt([(k, val(S, 10 * S, 5000, 70000))], 11 * S);
        assert!(
            t.tick([(k, val(S, 12 * S, 5000, 70000))], 12 * S)
                .is_empty()
        );
        let d = t.finish([(k, val(S, 13 * S, 5100, 71000))], 14 * S);
        assert_eq!(total(&d), [100, 1000]);
    }

    #[test]
    fn finish_exports_what_is_left_and_nothing_twice() {
        let mut t = Tracker::new(S, 60 * S);
        let (a, b) = (key(1), key(2));
        let d = t.tick([(a, val(S, S, 100, 200))], 5 * S);
        assert_eq!(total(&d), [100, 200]);
        // `a` unchanged: nothing more; `b` never ticked; `c` tracked but gone by now.
        let c = key(3);
        t.tick(
            [(a, val(S, S, 100, 200)), (c, val(5 * S, 6 * S, 7, 8))],
            6 * S,
        );
        let d = t.finish(
            [(a, val(S, S, 100, 200)), (b, val(S, 6 * S, 10, 20))],
            7 * S,
        );
        assert_eq!(total(&d), [17, 28], "{d:?}");
    }

    /// A sliced tracker over a churning table: flows start, grow, go quiet, and some
    /// leave the table a while after going quiet; every byte is exported exactly once,
    /// and each idle record comes at most one round of slices after its timeout.
    #[test]
    fn sliced_ticks_export_every_byte_once_at_most_a_round_late() {
        let n = 4;
        let mut t = Tracker::sliced(5 * S, 20 * S, n);
        assert_eq!(t.slices(), n);
        let keys: Vec<FlowKey> = (0..600).map(key).collect();
        // Flow i runs from second i/10 for i%37 seconds; it leaves the table 12 s after
        // its last packet if i is odd (more than a round of slices after going quiet).
        let life = |i: u64| (i / 10 + 1, i / 10 + 1 + i % 37);
        let mut all: Vec<(u64, Due)> = Vec::new();
        for sec in 1..=150u64 {
            let reading: Vec<(FlowKey, FlowValue)> = (0..600u64)
                .filter_map(|i| {
                    let (start, end) = life(i);
                    let gone = i % 2 == 1 && sec > end + 12;
                    (sec >= start && !gone).then(|| {
                        let last = sec.min(end);
                        let grown = last - start + 1;
                        (
                            keys[i as usize],
                            val(start * S, last * S, grown * 100, grown * 1000),
                        )
                    })
                })
                .collect();
            let before = t.next_slice();
            all.extend(t.tick_slice(reading, sec * S).into_iter().map(|d| (sec, d)));
            assert_eq!(t.next_slice(), (before + 1) % n);
        }
        // The stop: the flows still in the table.
        let last: Vec<(FlowKey, FlowValue)> = (0..600u64)
            .filter(|i| i % 2 == 0)
            .map(|i| {
                let (start, end) = life(i);
                let grown = end - start + 1;
                (
                    keys[i as usize],
                    val(start * S, end * S, grown * 100, grown * 1000),
                )
            })
            .collect();
        all.extend(t.finish(last, 151 * S).into_iter().map(|d| (151, d)));
        assert!(t.is_empty());
        for i in 0..600u64 {
            let (start, end) = life(i);
            let grown = end - start + 1;
            let mine: Vec<&(u64, Due)> = all
                .iter()
                .filter(|(_, d)| d.key == keys[i as usize])
                .collect();
            let sum = mine
                .iter()
                .fold([0, 0], |a, (_, d)| [a[0] + d.bytes[0], a[1] + d.bytes[1]]);
            assert_eq!(sum, [grown * 100, grown * 1000], "flow {i}: {mine:?}");
            for (at, d) in &mine {
                if d.reason == EndReason::Idle {
                    // Idle from end + 5 s; looked at within the next n seconds.
                    assert!(
                        *at >= end + 5 && *at < end + 5 + n as u64,
                        "flow {i} ended at {end}, idle record at {at}"
                    );
                }
            }
        }
        assert!(all.iter().any(|(_, d)| d.reason == EndReason::Active));
        assert!(all.iter().any(|(_, d)| d.reason == EndReason::Idle));
    }

    /// A key's slice does not change, the slices share the flows about evenly, and a
    /// one-slice tracker's slice tick is its full tick.
    #[test]
    fn slices_share_the_table_about_evenly() {
        let t = Tracker::sliced(S, S, 16);
        let mut per = [0usize; 16];
        for i in 0..65_536u32 {
            let mut k = key((i % 60_000) as u16);
            k.remote_addr[2] = (i >> 8) as u8;
            k.remote_addr[3] = i as u8;
            let s = t.slice_of(&k);
            assert_eq!(s, t.slice_of(&k));
            per[s] += 1;
        }
        // 4,096 each on average.
        assert!(per.iter().all(|c| (3_600..4_600).contains(c)), "{per:?}");
        let one = Tracker::new(S, S);
        assert_eq!((one.slices(), one.slice_of(&key(1))), (1, 0));
        assert_eq!(slices_for(65_536), 1);
        assert_eq!(slices_for(1_048_576), 16);
        assert_eq!(slices_for(0), 1);
        assert_eq!(slices_for(100_000_000), MAX_SLICES);
    }
}
