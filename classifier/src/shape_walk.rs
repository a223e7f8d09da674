//! The daemon's side of [`crate::shape`]: it walks the kernel's flow table once a second,
//! and [`ShapeWalk`] turns each candidate flow's byte counters into per-walk deltas for its
//! [`Shape`], stamped with the time of the flow's last packet, and says which flows the
//! walk found to be video.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use crate::shape::Shape;

/// The most flows a daemon follows at once: about 140 bytes each with the map's own, so
/// 9 MB at most however large the flow table (the flows later in the walk's order wait).
pub const MAX_FOLLOWED: usize = 65_536;

/// One flow as a walk of the table reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Time of the flow's last packet (the kernel's `last_seen_ns`).
    pub last_seen_ns: u64,
    /// Bytes on the wire so far, `[up, down]`.
    pub bytes: [u64; 2],
    /// The flow is one the shape may name (TLS or QUIC without a service).
    pub candidate: bool,
}

/// The shapes of candidate flows between walks, at most `max` of them.
#[derive(Debug)]
pub struct ShapeWalk<K> {
    flows: HashMap<K, (Shape, [u64; 2])>,
    max: usize,
}

impl<K: Copy + Eq + Hash> ShapeWalk<K> {
    /// Follows at most `max` flows at a time (new candidates beyond it wait until some go).
    pub fn new(max: usize) -> ShapeWalk<K> {
        ShapeWalk {
            flows: HashMap::new(),
            max,
        }
    }

    /// Flows followed now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is followed.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Takes one walk of the table; returns the flows it found to be video, each once (a
    /// flow found stays followed, as found, while it is a candidate). Flows the walk did
    /// not see, or that stopped being candidates, are forgotten; past `max`, the flows
    /// later in the walk's order are not followed.
    pub fn pass(&mut self, walk: impl IntoIterator<Item = (K, Reading)>) -> Vec<K> {
        let mut next = HashMap::with_capacity(self.flows.len().min(self.max));
        let mut found = Vec::new();
        for (key, r) in walk {
            if !r.candidate || next.len() >= self.max {
                continue;
            }
            // A flow first seen starts from zero: its bytes so far are one observation.
            let (mut shape, before) = self.flows.remove(&key).unwrap_or_default();
            let was_video = shape.is_video();
            let up = r.bytes[0].saturating_sub(before[0]);
            let down = r.bytes[1].saturating_sub(before[1]);
            if up + down > 0 {
                shape.observe(r.last_seen_ns, up, down);
            }
            if shape.is_video() && !was_video {
                found.push(key);
            }
            next.insert(key, (shape, r.bytes));
        }
        self.flows = next;
        found
    }

    /// Takes one step of a walk that reads the table a part at a time (a large table:
    /// `peerwarden_ipfix::parts`): `part` is the flows the step read, and each followed
    /// flow it does not hold is read by `lookup` (one by one: at most `max` of them), so
    /// every followed flow keeps its one-step deltas. A candidate elsewhere in the table
    /// is met when its part is read. The followed flows come first, so new candidates do
    /// not push them out past `max`. Returns what [`ShapeWalk::pass`] returns.
    pub fn pass_part(
        &mut self,
        part: impl IntoIterator<Item = (K, Reading)>,
        mut lookup: impl FnMut(&K) -> Option<Reading>,
    ) -> Vec<K> {
        let (mut walk, mut fresh, mut met) = (Vec::new(), Vec::new(), HashSet::new());
        for (key, r) in part {
            if self.flows.contains_key(&key) {
                met.insert(key);
                walk.push((key, r));
            } else if r.candidate {
                fresh.push((key, r));
            }
        }
        for key in self.flows.keys().filter(|k| !met.contains(*k)) {
            walk.extend(lookup(key).map(|r| (*key, r)));
        }
        walk.extend(fresh);
        self.pass(walk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Walks of one flow fetching `bytes` every `period` walks, with a second flow that
    /// downloads without a pause.
    fn walks(period: u64, bytes: u64, n: u64, candidate: bool) -> (Vec<Vec<u8>>, usize) {
        let mut w = ShapeWalk::new(16);
        let (mut video, mut download) = ([0u64; 2], [0u64; 2]);
        let mut found = Vec::new();
        for i in 0..n {
            if i % period == 0 {
                video[0] += 600 + bytes / 40;
                video[1] += bytes;
            }
            download[0] += 30_000;
            download[1] += 1_200_000;
            let read = |bytes| Reading {
                last_seen_ns: i * S + S / 2,
                bytes,
                candidate,
            };
            found.push(w.pass([(1u8, read(video)), (2u8, read(download))]));
            assert!(w.len() <= 2);
        }
        let followed = w.len();
        (found, followed)
    }

    #[test]
    fn a_player_is_found_once_and_a_download_never() {
        let (found, followed) = walks(4, 1_000_000, 40, true);
        let all: Vec<u8> = found.iter().flatten().copied().collect();
        assert_eq!(all, [1]);
        // Found when the sixth segment starts (walk 20).
        assert_eq!(found[20], [1]);
        assert_eq!(followed, 2);
    }

    #[test]
    fn flows_that_are_not_candidates_are_not_followed() {
        let (found, followed) = walks(4, 1_000_000, 40, false);
        assert!(found.iter().all(Vec::is_empty));
        assert_eq!(followed, 0);
    }

    #[test]
    fn the_number_followed_is_bounded_and_gone_flows_are_forgotten() {
        let mut w = ShapeWalk::new(3);
        let read = |b| Reading {
            last_seen_ns: S,
            bytes: [b, b],
            candidate: true,
        };
        w.pass((0..10u32).map(|k| (k, read(1000))));
        assert_eq!(w.len(), 3);
        w.pass([(7u32, read(2000)), (1, read(2000))]);
        assert_eq!(w.len(), 2);
        assert!(!w.is_empty());
        w.pass([]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_walk_in_parts_finds_the_player_at_the_same_step_as_a_whole_walk() {
        // The player (flow 1) and a download (flow 2), among flows 3.. of other parts;
        // each step reads one of four parts, and the followed flows are looked up.
        let (mut whole, mut parted) = (ShapeWalk::new(16), ShapeWalk::new(16));
        let (mut video, mut download) = ([0u64; 2], [0u64; 2]);
        let (mut lookups, mut found) = (0, Vec::new());
        for i in 0..40u64 {
            if i % 4 == 0 {
                video[0] += 25_600;
                video[1] += 1_000_000;
            }
            download[0] += 30_000;
            download[1] += 1_200_000;
            let read = |bytes| Reading {
                last_seen_ns: i * S + S / 2,
                bytes,
                candidate: true,
            };
            let table: Vec<(u32, Reading)> = [(1, read(video)), (2, read(download))]
                .into_iter()
                .chain((3..12).map(|k| (k, read([0, 0]))))
                .collect();
            let part = i % 4;
            let in_part = |k: &u32| u64::from(*k) % 4 == part;
            let a = whole.pass(table.clone());
            let b = parted.pass_part(table.iter().copied().filter(|(k, _)| in_part(k)), |k| {
                assert!(!in_part(k), "flow {k} looked up though its part was read");
                lookups += 1;
                table.iter().find(|(t, _)| t == k).map(|(_, r)| *r)
            });
            // Once met, the two flows' deltas are the same every step.
            if i >= 3 {
                assert_eq!(a, b, "step {i}");
            }
            found.extend(b);
        }
        assert_eq!(found, [1]);
        assert!(lookups > 0);
        assert_eq!(parted.len(), whole.len());
    }

    #[test]
    fn a_followed_flow_gone_from_the_table_is_forgotten_in_a_walk_in_parts() {
        let mut w = ShapeWalk::new(4);
        let read = Reading {
            last_seen_ns: S,
            bytes: [10, 1000],
            candidate: true,
        };
        w.pass_part([(1u32, read), (2, read)], |_| None);
        assert_eq!(w.len(), 2);
        // Flow 1 is looked up and still there; flow 2 is gone; flow 3 is new in this part.
        w.pass_part([(3u32, read)], |k| (*k == 1).then_some(read));
        assert_eq!(w.len(), 2);
        w.pass_part([], |_| None);
        assert!(w.is_empty());
    }
}
