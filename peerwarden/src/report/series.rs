//! The traffic mix as a time series, one point per step (what the dashboard's chart
//! draws), from any [`Source`]: the per-second readings or the history store's minutes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    Span,
    source::{Source, classes},
};
use crate::ktime;

/// Window when the request does not say (clamped to the history kept).
pub const DEFAULT_WINDOW_SECS: u64 = 600;
/// Step when the request does not say.
pub const DEFAULT_STEP_SECS: u64 = 10;
/// The most points one answer may hold.
pub const MAX_POINTS: u64 = 1000;

/// Bytes and packets of one class or label over one step, each `[up, down]`.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct StepUsage {
    /// Bytes on the wire, `[up, down]`.
    pub bytes: [u64; 2],
    /// Packets, `[up, down]`.
    pub packets: [u64; 2],
}

/// The traffic of one step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// The end of the step (RFC 3339); the step covers `step_seconds` before it.
    pub t: String,
    /// Per class (all four, zero included).
    pub classes: BTreeMap<&'static str, StepUsage>,
    /// Per label, only labels with traffic in the step.
    pub labels: BTreeMap<&'static str, StepUsage>,
}

/// The traffic mix over time. A rate is `bytes * 8 / step_seconds` bits per second.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Series {
    /// The span asked for, seconds.
    pub window_seconds: u64,
    /// The span of each point, seconds.
    pub step_seconds: u64,
    /// Oldest first. Steps before the first reading (the daemon started less than a window
    /// ago) come from the history store's minutes; without a store, or before its first
    /// row, they are left out, so there may be fewer than `window_seconds / step_seconds`.
    pub points: Vec<Point>,
    /// The class of every label, so a client can colour labels without its own table.
    pub label_classes: BTreeMap<&'static str, &'static str>,
    /// Answers from the history store: the range covered (`source` `store+memory`: the
    /// window reached back before the daemon's first reading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<Span>,
}

/// The points of `source`, oldest first: per label (those with traffic in the step) and
/// per class (all four), bytes and packets.
pub fn points(source: &impl Source) -> Vec<Point> {
    source
        .steps()
        .into_iter()
        .map(|(t, counts)| {
            let mut labels = counts.labels();
            for u in labels.values_mut() {
                u.flows = 0;
            }
            let step = |u: &super::Usage| StepUsage {
                bytes: u.bytes,
                packets: u.packets,
            };
            Point {
                t: ktime::rfc3339(t),
                classes: classes(&labels)
                    .iter()
                    .map(|(n, u)| (*n, step(u)))
                    .collect(),
                labels: labels
                    .iter()
                    .map(|(n, u)| (*n, step(u)))
                    .filter(|(_, u)| *u != StepUsage::default())
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use peerwarden_common::{CounterValue, Label, label::ALL_LABELS};

    use super::*;
    use crate::{report::source::Live, state::LabelReading};

    fn series(
        readings: &[LabelReading],
        now: Instant,
        wall: SystemTime,
        window: u64,
        step: u64,
    ) -> Vec<Point> {
        points(&Live {
            readings,
            now,
            wall,
            window,
            step,
        })
    }

    /// Readings once a second for `secs` seconds ending at `end`: bittorrent grows by 1000
    /// bytes up and 2000 down per second, http by 100 down.
    fn history(end: Instant, secs: u64) -> Vec<LabelReading> {
        (0..=secs)
            .map(|i| {
                let mut c = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
                c[Label::Bittorrent.id() as usize] = [
                    CounterValue {
                        packets: i,
                        bytes: 1000 * i,
                        flows: 1,
                    },
                    CounterValue {
                        packets: 2 * i,
                        bytes: 2000 * i,
                        flows: 0,
                    },
                ];
                c[Label::Http.id() as usize][1] = CounterValue {
                    packets: i,
                    bytes: 100 * i,
                    flows: 1,
                };
                // Jitter: the sampler is never exactly on the second.
                let jitter = Duration::from_millis(if i % 2 == 0 { 3 } else { 40 });
                LabelReading {
                    at: end - Duration::from_secs(secs - i) + jitter,
                    counters: c,
                }
            })
            .collect()
    }

    #[test]
    fn each_point_is_the_difference_over_its_step() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let h = history(now - Duration::from_secs(1), 120);
        let pts = series(&h, now, wall, 60, 10);
        assert_eq!(pts.len(), 6);
        for p in &pts {
            assert_eq!(p.classes["p2p"].bytes, [10_000, 20_000], "{p:?}");
            assert_eq!(p.classes["p2p"].packets, [10, 20]);
            assert_eq!(p.classes["web"].bytes, [0, 1000]);
            assert_eq!(p.classes["video"], StepUsage::default());
            assert_eq!(p.labels.len(), 2, "only labels with traffic: {p:?}");
            assert_eq!(p.labels["bittorrent"].bytes, [10_000, 20_000]);
        }
        // Oldest first, a step apart, the last one at the latest reading.
        let ts: Vec<SystemTime> = pts
            .iter()
            .map(|p| humantime::parse_rfc3339(&p.t).expect("RFC 3339"))
            .collect();
        for w in ts.windows(2) {
            let d = w[1].duration_since(w[0]).expect("increasing");
            assert!((d.as_millis() as i64 - 10_000).abs() <= 1, "{d:?}");
        }
        let last_age = wall.duration_since(ts[5]).expect("in the past");
        assert!(
            last_age >= Duration::from_millis(900) && last_age <= Duration::from_millis(1000),
            "{last_age:?}"
        );
    }

    #[test]
    fn steps_before_the_first_reading_are_left_out() {
        let now = Instant::now();
        let h = history(now, 25);
        let pts = series(&h, now, SystemTime::now(), 60, 10);
        // Boundaries at -0, -10, -20 s have a reading before them; -30 s does not.
        assert_eq!(pts.len(), 2);
        assert!(series(&[], now, SystemTime::now(), 60, 10).is_empty());
        let ones = series(&h, now, SystemTime::now(), 5, 1);
        assert_eq!(ones.len(), 5);
        assert!(ones.iter().all(|p| p.classes["p2p"].bytes == [1000, 2000]));
    }

    #[test]
    fn a_counter_below_its_base_reads_as_zero() {
        let now = Instant::now();
        let mut h = history(now, 10);
        // A flow's bytes moved from bittorrent to another label between two readings.
        h[10].counters[Label::Bittorrent.id() as usize][0].bytes = 0;
        let pts = series(&h, now, SystemTime::now(), 1, 1);
        assert_eq!(pts[0].classes["p2p"].bytes, [0, 2000]);
    }
}
