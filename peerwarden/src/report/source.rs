//! Where reports come from: the daemon's per-second readings (cumulative counters per
//! label and direction) or the history store's rows (per-minute or per-hour differences,
//! signed). Both become [`Counts`], the traffic per label and direction over one span,
//! and every view folds those with the same rules ([`Counts::labels`], [`classes`]).
//!
//! A [`Source`] yields the steps of a series: `(end of step, counts)`, oldest first.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use peerwarden_common::{
    Label,
    label::{ALL_CLASSES, ALL_LABELS},
};
use peerwarden_history::{LabelTotals, Row};

use super::Usage;
use crate::state::LabelReading;

/// How far after a step boundary a reading may be taken and still count for it: the
/// sampler reads about once a second, with some jitter.
pub(super) const SLACK: Duration = Duration::from_millis(500);

/// Bytes, packets and flows of one label and direction over a span, signed: a reading
/// below its base (a flow's bytes moved to its label within the span) is negative here
/// and reads as zero in the views.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Signed {
    bytes: i64,
    packets: i64,
    flows: i64,
}

/// The traffic of a span per label (in [`ALL_LABELS`] order) and direction `[up, down]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    labels: [[Signed; 2]; ALL_LABELS.len()],
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            labels: [[Signed::default(); 2]; ALL_LABELS.len()],
        }
    }
}

/// `now - base` read as signed: a counter that went down is negative, not a wrap.
fn signed_delta(now: u64, base: u64) -> i64 {
    now.wrapping_sub(base) as i64
}

/// A signed sum as a count: below zero reads as zero.
fn pos(v: i64) -> u64 {
    v.max(0) as u64
}

impl Counts {
    /// The difference between two readings of the counters (`base`: none, since start).
    pub fn between(base: Option<&LabelReading>, last: &LabelReading) -> Counts {
        let mut out = Counts::default();
        for (slot, label) in out.labels.iter_mut().zip(ALL_LABELS) {
            let id = label.id() as usize;
            let Some(now) = last.counters.get(id) else {
                continue;
            };
            let then = base.and_then(|b| b.counters.get(id));
            for d in 0..2 {
                let t = then.map(|t| t[d]).unwrap_or_default();
                slot[d] = Signed {
                    bytes: signed_delta(now[d].bytes, t.bytes),
                    packets: signed_delta(now[d].packets, t.packets),
                    flows: signed_delta(now[d].flows, t.flows),
                };
            }
        }
        out
    }

    /// The sum of the history store's per-label rows (rows of other names are skipped).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Counts {
        let mut out = Counts::default();
        for r in rows {
            let Some(slot) = Label::from_name(&r.key.name).and_then(|l| out.slot(l)) else {
                continue;
            };
            let s = &mut slot[usize::from(r.key.dir.min(1))];
            s.bytes += r.values.bytes;
            s.packets += r.values.packets;
            s.flows += r.values.flows;
        }
        out
    }

    /// One subscriber's per-label totals from the store (the store keeps no flow counts
    /// per subscriber).
    pub fn from_totals(totals: &BTreeMap<Label, LabelTotals>) -> Counts {
        let mut out = Counts::default();
        for (label, t) in totals {
            let Some(slot) = out.slot(*label) else {
                continue;
            };
            for (d, s) in slot.iter_mut().enumerate() {
                s.bytes = i64::try_from(t.bytes[d]).unwrap_or(i64::MAX);
                s.packets = i64::try_from(t.packets[d]).unwrap_or(i64::MAX);
            }
        }
        out
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) `o`'s figures, label by label.
    pub fn add(&mut self, o: &Counts, sign: i64) {
        for (a, b) in self.labels.iter_mut().zip(&o.labels) {
            for d in 0..2 {
                a[d].bytes = a[d].bytes.wrapping_add(sign.wrapping_mul(b[d].bytes));
                a[d].packets = a[d].packets.wrapping_add(sign.wrapping_mul(b[d].packets));
                a[d].flows = a[d].flows.wrapping_add(sign.wrapping_mul(b[d].flows));
            }
        }
    }

    /// The share `num / den` of every figure, rounded toward zero (`den` 0: none).
    pub fn share(&self, num: i64, den: i64) -> Counts {
        let part = |v: i64| {
            if den == 0 {
                0
            } else {
                (i128::from(v) * i128::from(num) / i128::from(den)) as i64
            }
        };
        let mut out = self.clone();
        for s in out.labels.iter_mut().flatten() {
            *s = Signed {
                bytes: part(s.bytes),
                packets: part(s.packets),
                flows: part(s.flows),
            };
        }
        out
    }

    fn slot(&mut self, label: Label) -> Option<&mut [Signed; 2]> {
        let i = ALL_LABELS.iter().position(|l| *l == label)?;
        self.labels.get_mut(i)
    }

    /// Usage per label, every label (zero included). Each figure below zero reads as
    /// zero; `unknown` counts flows created and the other labels flows labelled, so the
    /// flows still undecided are `unknown`'s less the others'.
    pub fn labels(&self) -> BTreeMap<&'static str, Usage> {
        let mut out: BTreeMap<&'static str, Usage> = BTreeMap::new();
        for (s, label) in self.labels.iter().zip(ALL_LABELS) {
            let u = Usage {
                bytes: [pos(s[0].bytes), pos(s[1].bytes)],
                packets: [pos(s[0].packets), pos(s[1].packets)],
                flows: pos(s[0].flows) + pos(s[1].flows),
            };
            out.insert(label.name(), u);
        }
        let labelled: u64 = ALL_LABELS
            .iter()
            .filter(|l| **l != Label::Unknown)
            .map(|l| out[l.name()].flows)
            .sum();
        if let Some(u) = out.get_mut(Label::Unknown.name()) {
            u.flows = u.flows.saturating_sub(labelled);
        }
        out
    }
}

/// Usage per class (all four, zero included): the sums of their labels.
pub fn classes(labels: &BTreeMap<&'static str, Usage>) -> BTreeMap<&'static str, Usage> {
    let mut classes: BTreeMap<&'static str, Usage> = ALL_CLASSES
        .iter()
        .map(|c| (c.name(), Usage::default()))
        .collect();
    for label in ALL_LABELS {
        if let (Some(u), Some(c)) = (
            labels.get(label.name()),
            classes.get_mut(label.class().name()),
        ) {
            c.add(u);
        }
    }
    classes
}

/// The steps of a time series: `(end of the step, its counts)`, oldest first; steps the
/// source has no data for (before the daemon's first reading, before the store's first
/// row) are left out.
pub trait Source {
    /// The steps, oldest first.
    fn steps(&self) -> Vec<(SystemTime, Counts)>;
}

/// The per-second readings kept in memory: `n` steps of `step` ending at the latest
/// reading. `now`/`wall` pin the monotonic clock to the wall clock.
pub struct Live<'a> {
    /// Readings, oldest first.
    pub readings: &'a [LabelReading],
    /// Monotonic now.
    pub now: Instant,
    /// Wall-clock now.
    pub wall: SystemTime,
    /// Seconds covered.
    pub window: u64,
    /// Seconds per step.
    pub step: u64,
}

impl Source for Live<'_> {
    fn steps(&self) -> Vec<(SystemTime, Counts)> {
        let Some(latest) = self.readings.last() else {
            return Vec::new();
        };
        let step_d = Duration::from_secs(self.step);
        let n = self.window.div_ceil(self.step.max(1));
        // The reading that stands for boundary `b`: the last one taken at most SLACK after it.
        let at = |b: Instant| self.readings.iter().rev().find(|s| s.at <= b + SLACK);
        let mut out = Vec::with_capacity(n as usize);
        for k in (0..n).rev() {
            let Some(end) = latest.at.checked_sub(step_d * k as u32) else {
                continue;
            };
            let Some(start) = end.checked_sub(step_d) else {
                continue;
            };
            // No reading that old: the daemon was not running yet.
            let (Some(base), Some(last)) = (at(start), at(end)) else {
                continue;
            };
            // `end` is never after `now` for readings already taken; saturate rather than panic.
            let t = self
                .wall
                .checked_sub(self.now.saturating_duration_since(end))
                .unwrap_or(self.wall);
            out.push((t, Counts::between(Some(base), last)));
        }
        out
    }
}

/// The history store's per-label rows summed in `n` buckets of `step` seconds from
/// `start` (`History::sum` with a step); `first` is the store's first row.
pub struct Stored {
    /// The rows, each with its bucket.
    pub rows: Vec<Row>,
    /// Start of the first bucket, seconds since the epoch.
    pub start: i64,
    /// Seconds per bucket.
    pub step: u64,
    /// Buckets.
    pub n: u64,
    /// The store's first row (`None`: an empty store).
    pub first: Option<i64>,
}

impl Source for Stored {
    fn steps(&self) -> Vec<(SystemTime, Counts)> {
        let mut by_bucket: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        for r in &self.rows {
            by_bucket.entry(r.bucket).or_default().push(r);
        }
        let step = self.step as i64;
        let mut out = Vec::new();
        for b in 0..self.n as i64 {
            let end = self.start + (b + 1) * step;
            if self.first.is_none_or(|f| end <= f) {
                continue;
            }
            let counts = Counts::from_rows(by_bucket.remove(&b).unwrap_or_default());
            out.push((super::range::time_of(end), counts));
        }
        out
    }
}
