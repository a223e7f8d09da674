//! The daemon's side of [`crate::shape`]: it walks the kernel's flow table once a second,
//! and [`ShapeWalk`] turns each candidate flow's byte counters into per-walk deltas for its
//! [`Shape`], stamped with the time of the flow's last packet, and says which flows the
//! walk found to be video.

use std::{collections::HashMap, hash::Hash};

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
}
