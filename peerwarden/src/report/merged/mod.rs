//! Reports across restarts: a window (`/mix?window=`, `/mix/series`) that reaches back
//! before this daemon's first reading is filled in from the history store, so the answer
//! is what a daemon that had run throughout would give.
//!
//! **The boundary.** The store adds each reading's difference to the minute (wall clock)
//! the reading was taken in; the in-memory readings are the same readings. Let `R0` be
//! this daemon's first reading and `m0` its minute. From `R0` on, the readings count.
//! Before it, the store: every minute before `m0` whole, and of `m0` what the readings do
//! not hold, the minute's rows less the readings' own differences in it (from `R0` to
//! the last reading of `m0`). That remainder is the previous daemon's last seconds in
//! `m0` and what the kernel counted before `R0` (maps kept attached: while no daemon ran;
//! new maps: since they were loaded). Nothing is counted twice and nothing is lost: a
//! window that covers it all gets every byte of the store and the readings.
//!
//! **Within a minute.** The store knows minutes only, so a stored minute is taken as
//! spread evenly over its seconds (the remainder of `m0` over `m0`'s start up to `R0`): a
//! window or a step that starts inside one gets its share. What that misplaces is the
//! traffic of the window's oldest minute, and in a series where within its minute the
//! traffic was: at most one minute's traffic at the window's far end, none of a total.
//!
//! **Clocks.** The readings keep monotonic times; a reading's minute is told by the wall
//! clock now less its age. If the wall clock was stepped since `R0`, the readings within
//! that step of `m0`'s end may be counted twice or missed: that many seconds of traffic
//! at most. A reading recorded while the store is asked, still in `m0`, is counted there
//! (before `R0`) although the readings end before it: a second of traffic, counted once.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use peerwarden_history::{Row, minute_of};

use super::{
    Span,
    source::{Counts, Live, SLACK, Source},
};
use crate::{ktime, state::LabelReading};

/// [`SLACK`] in milliseconds.
const SLACK_MS: i64 = SLACK.as_millis() as i64;

/// The store's minutes a merged answer reads: `[from, to)`, seconds since the epoch, on
/// minute boundaries, summed per minute (`History::sum` with a 60 s step from `from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Minutes {
    /// The first minute, included.
    pub from: i64,
    /// The end of `m0` (the minute of the first reading), excluded.
    pub to: i64,
}

/// Milliseconds since the epoch (before it: negative).
fn ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn time_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// When (ms since the epoch) a reading taken at `at` was taken: `live`'s wall clock less
/// the reading's age.
fn wall_ms(live: &Live, at: Instant) -> i64 {
    let age = i64::try_from(live.now.saturating_duration_since(at).as_millis());
    ms(live.wall).saturating_sub(age.unwrap_or(i64::MAX))
}

/// The span of `live`'s steps in milliseconds: whole steps covering the window.
fn span_ms(live: &Live) -> i64 {
    let step = live.step.max(1);
    let secs = live.window.div_ceil(step).saturating_mul(step);
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The store's minutes `live`'s window needs: `None` when its readings cover it (the first
/// is no later than the window's start, give or take the sampler's jitter: the steps an
/// in-memory series would leave out) or there is no reading yet. Only the first and the
/// last reading are looked at.
pub fn minutes(live: &Live) -> Option<Minutes> {
    let (first, latest) = (live.readings.first()?, live.readings.last()?);
    let (r0, l) = (wall_ms(live, first.at), wall_ms(live, latest.at));
    let start = l.saturating_sub(span_ms(live));
    if start.saturating_add(SLACK_MS) >= r0 {
        return None;
    }
    let m0 = minute_of(r0.div_euclid(1000));
    Some(Minutes {
        from: minute_of(start.div_euclid(1000)).min(m0),
        to: m0 + 60,
    })
}

/// A stored stretch of time, `[start, end)` in ms, its counts taken as spread evenly
/// over it.
struct Segment {
    start: i64,
    end: i64,
    counts: Counts,
}

impl Segment {
    /// The part of the segment before `x`: its share, rounded so that parts telescope
    /// (`part(b) - part(a)` over adjacent intervals adds up to the whole exactly).
    fn part(&self, x: i64) -> Counts {
        let len = self.end - self.start;
        if len <= 0 {
            return if x > self.start {
                self.counts.clone()
            } else {
                Counts::default()
            };
        }
        self.counts
            .share(x.saturating_sub(self.start).clamp(0, len), len)
    }
}

/// The readings of a [`Live`] source, and before the first of them the store's minutes
/// (see the module's header for how the minute of the first reading is counted).
pub struct Merged<'a> {
    live: Live<'a>,
    segments: Vec<Segment>,
    /// Where the store's data begins (ms): its first row, if before the first reading.
    stored_from: Option<i64>,
    /// The first and the latest reading (ms); without readings, both are now.
    r0: i64,
    latest: i64,
}

impl<'a> Merged<'a> {
    /// `rows`: the store's label rows over `minutes` per minute (`History::sum` with a 60 s
    /// step from `minutes.from`); `first`: the store's first row (`History::first`).
    pub fn new(live: Live<'a>, rows: &[Row], minutes: Minutes, first: Option<i64>) -> Merged<'a> {
        let latest = live
            .readings
            .last()
            .map_or(ms(live.wall), |s| wall_ms(&live, s.at));
        let r0 = live
            .readings
            .first()
            .map_or(latest, |s| wall_ms(&live, s.at));
        let m0 = minute_of(r0.div_euclid(1000));
        let mut by_minute: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        for r in rows {
            let m = minutes.from.saturating_add(r.bucket.saturating_mul(60));
            by_minute.entry(m).or_default().push(r);
        }
        let mut segments = Vec::new();
        for (m, rows) in by_minute {
            let counts = Counts::from_rows(rows);
            if m < m0 {
                segments.push(Segment {
                    start: m * 1000,
                    end: (m + 60) * 1000,
                    counts,
                });
            } else if m == m0 {
                // Less what the readings hold of m0: from the first to the last one in it.
                let mut rest = counts;
                let end = (m0 + 60) * 1000;
                let in_m0 = live
                    .readings
                    .iter()
                    .rev()
                    .find(|s| wall_ms(&live, s.at) < end);
                if let (Some(first), Some(last)) = (live.readings.first(), in_m0) {
                    rest.add(&Counts::between(Some(first), last), -1);
                }
                segments.push(Segment {
                    start: m0 * 1000,
                    end: r0,
                    counts: rest,
                });
            }
        }
        let stored_from = first.map(|f| f.saturating_mul(1000)).filter(|f| *f < r0);
        Merged {
            live,
            segments,
            stored_from,
            r0,
            latest,
        }
    }

    /// The reading that stands for time `x` (ms): the last one taken at most [`SLACK`]
    /// after it.
    fn at(&self, x: i64) -> Option<&LabelReading> {
        self.live
            .readings
            .iter()
            .rev()
            .find(|s| wall_ms(&self.live, s.at) <= x.saturating_add(SLACK_MS))
    }

    /// The traffic of the whole window, from the store's share of it and the readings
    /// (what of it there is: a window longer than both covers less, as [`Merged::covered`]
    /// says).
    pub fn total(&self) -> Counts {
        self.counts(
            self.latest.saturating_sub(span_ms(&self.live)),
            self.latest,
            true,
        )
        .unwrap_or_default()
    }

    /// The traffic of `[a, b)` (ms): the store's share before the first reading, the
    /// readings' difference after it. `None`: no data for any of it (before the store's
    /// first row and the first reading), or unless `partial`, no data for its start.
    fn counts(&self, a: i64, b: i64, partial: bool) -> Option<Counts> {
        let mut out = None;
        let cut = b.min(self.r0);
        if a < cut && self.stored_from.is_some_and(|f| f < cut) {
            let mut c = Counts::default();
            for s in &self.segments {
                c.add(&s.part(cut), 1);
                c.add(&s.part(a), -1);
            }
            out = Some(c);
        } else if !partial && a.saturating_add(SLACK_MS) < self.r0 {
            return None;
        }
        if b > self.r0 {
            let base = if a <= self.r0 {
                self.live.readings.first()
            } else {
                self.at(a)
            };
            if let (Some(base), Some(last)) = (base, self.at(b)) {
                out.get_or_insert_with(Counts::default)
                    .add(&Counts::between(Some(base), last), 1);
            }
        }
        out
    }

    /// Where the data of the window begins (ms): its start, or later if neither the store
    /// nor the readings reach back that far.
    fn from(&self) -> i64 {
        let data = self.stored_from.map_or(self.r0, |f| f.min(self.r0));
        data.max(self.latest.saturating_sub(span_ms(&self.live)))
    }

    /// Seconds the answer covers, up to the latest reading (at most the window).
    pub fn covered(&self) -> u64 {
        let secs = self.latest.saturating_sub(self.from()).max(0) / 1000;
        (secs as u64).min(self.live.window)
    }

    /// The span covered, `source` `store+memory`: the store before the daemon's first
    /// reading, the in-memory readings from it to the latest.
    pub fn span(&self) -> Span {
        Span {
            from: ktime::rfc3339(time_ms(self.from())),
            to: ktime::rfc3339(time_ms(self.latest)),
            source: "store+memory",
        }
    }
}

impl Source for Merged<'_> {
    /// As [`Live`]'s: `window / step` steps ending at the latest reading; a step before
    /// both the store's first row and the first reading is left out.
    fn steps(&self) -> Vec<(SystemTime, Counts)> {
        let step = i64::try_from(self.live.step.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let n = self.live.window.div_ceil(self.live.step.max(1));
        let mut out = Vec::new();
        for k in (0..n).rev() {
            let end = self.latest.saturating_sub(step.saturating_mul(k as i64));
            if let Some(c) = self.counts(end.saturating_sub(step), end, false) {
                out.push((time_ms(end), c));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
