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

use std::collections::HashMap;

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

/// Per-flow export bookkeeping.
#[derive(Debug)]
pub struct Tracker {
    flows: HashMap<FlowKey, Tracked>,
    idle_ns: u64,
    active_ns: u64,
    /// Passes so far (what `Tracked::seen` compares with; no set of keys per pass).
    pass: u64,
}

impl Tracker {
    /// A tracker with these timeouts (nanoseconds).
    pub fn new(idle_ns: u64, active_ns: u64) -> Tracker {
        Tracker {
            flows: HashMap::new(),
            idle_ns,
            active_ns,
            pass: 0,
        }
    }

    /// Flows tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Takes a full reading of the flow table at `now_ns` (CLOCK_MONOTONIC); returns the
    /// records due.
    pub fn tick(
        &mut self,
        reading: impl IntoIterator<Item = (FlowKey, FlowValue)>,
        now_ns: u64,
    ) -> Vec<Due> {
        let mut due = Vec::new();
        self.pass += 1;
        let pass = self.pass;
        for (k, v) in reading {
            let t = self.flows.entry(k).or_insert_with(|| Tracked::new(v));
            if t.replaced_by(&v) {
                let old = t.last;
                due.extend(t.take(k, old, EndReason::LackOfResources, now_ns));
                *t = Tracked::new(v);
            }
            t.last = v;
            t.seen = pass;
            let idle = now_ns.saturating_sub(v.last_seen_ns) >= self.idle_ns;
            if idle {
                due.extend(t.take(k, v, EndReason::Idle, now_ns));
            } else if now_ns.saturating_sub(t.last_export_ns) >= self.active_ns {
                due.extend(t.take(k, v, EndReason::Active, now_ns));
            }
        }
        self.flows.retain(|k, t| {
            if t.seen == pass {
                return true;
            }
            let last = t.last;
            due.extend(t.take(*k, last, EndReason::LackOfResources, now_ns));
            false
        });
        due
    }

    /// Takes `reading` as exported already: the flows of maps adopted from an earlier
    /// daemon, which exported them at its stop. Only what they carry from now on is
    /// exported (packets between that daemon's last walk and this reading are not).
    pub fn adopt(&mut self, reading: impl IntoIterator<Item = (FlowKey, FlowValue)>, now_ns: u64) {
        for (k, v) in reading {
            let mut t = Tracked::new(v);
            let _ = t.take(k, v, EndReason::Forced, now_ns);
            self.flows.insert(k, t);
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
            let mut t = self.flows.remove(&k).unwrap_or_else(|| Tracked::new(v));
            if t.replaced_by(&v) {
                let old = t.last;
                due.extend(t.take(k, old, EndReason::LackOfResources, now_ns));
                t = Tracked::new(v);
            }
            due.extend(t.take(k, v, EndReason::Forced, now_ns));
        }
        for (k, mut t) in self.flows.drain() {
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
}
