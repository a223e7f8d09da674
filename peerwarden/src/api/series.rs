//! `GET /api/v1/mix/series?window=10m&step=10s`: the traffic mix as a time series, one point
//! per step, from the daemon's per-second history (what the dashboard's chart draws);
//! `?from=RFC3339&to=RFC3339&step=5m` (or a window longer than that history) from the
//! history store, in whole minutes.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{Json, extract::State as Ext, http::Uri};
use peerwarden_common::label::{ALL_CLASSES, ALL_LABELS};
use serde::{Deserialize, Serialize};

use super::{ApiError, error::query, mix::parse_window, range};
use crate::{
    ktime,
    state::{LabelReading, State},
};

/// Window when the request does not say (clamped to the history kept).
const DEFAULT_WINDOW_SECS: u64 = 600;
/// Step when the request does not say.
const DEFAULT_STEP_SECS: u64 = 10;
/// The most points one answer may hold.
pub const MAX_POINTS: u64 = 1000;
/// How far after a step boundary a reading may be taken and still count for it: the
/// sampler reads about once a second, with some jitter.
const SLACK: Duration = Duration::from_millis(500);

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Params {
    /// The span covered, ending at the latest reading: `90s`, `10m`, `1h` (1 s up to the
    /// history kept; default 10 minutes or the history kept, whichever is shorter).
    window: Option<String>,
    /// The span of one point: `1s`, `10s`, `1m` (at least 1 s, at most the window, and at
    /// most 1,000 points per window; default 10 s). Over the history store: whole
    /// minutes (default: the shortest giving at most 1,000 points).
    step: Option<String>,
    /// Start of a range (RFC 3339), served from the history store.
    from: Option<String>,
    /// End of the range (RFC 3339; default now).
    to: Option<String>,
}

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
    /// ago) are left out, so there may be fewer than `window_seconds / step_seconds`.
    pub points: Vec<Point>,
    /// The class of every label, so a client can colour labels without its own table.
    pub label_classes: BTreeMap<&'static str, &'static str>,
    /// Answers from the history store: the range covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<crate::report::Span>,
}

/// The traffic mix as a time series: one point per step over the window.
#[utoipa::path(get, path = "/api/v1/mix/series", tag = "reports", params(Params),
    responses((status = 200, body = Series), (status = 400, body = super::error::ErrorBody)))]
pub async fn get(Ext(state): Ext<Arc<State>>, uri: Uri) -> Result<Json<Series>, ApiError> {
    let p: Params = query(uri.query())?;
    let history = state.recent_seconds();
    let now = SystemTime::now();
    let stored = match range::parse(p.from.as_deref(), p.to.as_deref(), now)? {
        Some(_) if p.window.is_some() => {
            return Err(ApiError::BadRequest(
                "window: give either window or from/to".into(),
            ));
        }
        Some(r) => Some(r),
        None => match p.window.as_deref().map(parse_window).transpose()? {
            Some(w) if w > history && state.store().is_some() => Some(range::Range::last(w, now)),
            _ => None,
        },
    };
    if let Some(r) = stored {
        let step = match p.step.as_deref() {
            Some(s) => parse_window(s).map_err(|_| {
                ApiError::BadRequest(format!("step: {s:?} is not a duration like 1m, 5m or 1h"))
            })?,
            None => r.seconds().div_ceil(MAX_POINTS).div_ceil(60).max(1) * 60,
        };
        let points = range::series(&state, r, step).await?;
        return Ok(Json(Series {
            window_seconds: r.seconds(),
            step_seconds: step,
            points,
            label_classes: ALL_LABELS
                .iter()
                .map(|l| (l.name(), l.class().name()))
                .collect(),
            range: Some(r.span()),
        }));
    }
    let window = match p.window.as_deref() {
        Some(w) => {
            let w = parse_window(w)?;
            if w > history {
                return Err(ApiError::BadRequest(format!(
                    "window: {w}s is longer than the {history}s of history kept (history_seconds in the config)"
                )));
            }
            w
        }
        None => DEFAULT_WINDOW_SECS.min(history),
    };
    let step = match p.step.as_deref() {
        Some(s) => parse_window(s).map_err(|_| {
            ApiError::BadRequest(format!(
                "step: {s:?} is not a duration of at least 1s like 1s, 10s or 1m"
            ))
        })?,
        None => DEFAULT_STEP_SECS.min(window),
    };
    if step > window {
        return Err(ApiError::BadRequest(format!(
            "step: {step}s is longer than the {window}s window"
        )));
    }
    let points = window.div_ceil(step);
    if points > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "window / step: {window}s in steps of {step}s is {points} points, more than {MAX_POINTS}; take a longer step"
        )));
    }
    let points = series(
        &state.recent(),
        Instant::now(),
        SystemTime::now(),
        window,
        step,
    );
    let label_classes = ALL_LABELS
        .iter()
        .map(|l| (l.name(), l.class().name()))
        .collect();
    Ok(Json(Series {
        window_seconds: window,
        step_seconds: step,
        points,
        label_classes,
        range: None,
    }))
}

/// The points of `window` seconds in steps of `step` seconds ending at the last reading of
/// `history` (oldest first). `now`/`wall` pin the monotonic clock to the wall clock.
pub fn series(
    history: &[LabelReading],
    now: Instant,
    wall: SystemTime,
    window: u64,
    step: u64,
) -> Vec<Point> {
    let Some(latest) = history.last() else {
        return Vec::new();
    };
    let step_d = Duration::from_secs(step);
    let n = window.div_ceil(step);
    // The reading that stands for boundary `b`: the last one taken at most SLACK after it.
    let at = |b: Instant| history.iter().rev().find(|s| s.at <= b + SLACK);
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
        out.push(point(base, last, wall_time(end, now, wall)));
    }
    out
}

/// `at` on the wall clock.
fn wall_time(at: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    // `at` is never after `now` for readings already taken; saturate rather than panic.
    wall.checked_sub(now.saturating_duration_since(at))
        .unwrap_or(wall)
}

/// The difference between two readings, per label and per class.
fn point(base: &LabelReading, last: &LabelReading, t: SystemTime) -> Point {
    let mut classes: BTreeMap<&'static str, StepUsage> = ALL_CLASSES
        .iter()
        .map(|c| (c.name(), StepUsage::default()))
        .collect();
    let mut labels = BTreeMap::new();
    for label in ALL_LABELS {
        let id = label.id() as usize;
        let (Some(now), Some(then)) = (last.counters.get(id), base.counters.get(id)) else {
            continue;
        };
        let mut u = StepUsage::default();
        for d in 0..2 {
            u.bytes[d] = delta(now[d].bytes, then[d].bytes);
            u.packets[d] = delta(now[d].packets, then[d].packets);
        }
        if u == StepUsage::default() {
            continue;
        }
        if let Some(c) = classes.get_mut(label.class().name()) {
            for d in 0..2 {
                c.bytes[d] += u.bytes[d];
                c.packets[d] += u.packets[d];
            }
        }
        labels.insert(label.name(), u);
    }
    Point {
        t: ktime::rfc3339(t),
        classes,
        labels,
    }
}

/// A counter difference; a reading below its base (a flow's bytes moved to its label
/// within the step) reads as zero rather than wrapping, as in `report::mix`.
fn delta(now: u64, base: u64) -> u64 {
    let d = now.wrapping_sub(base) as i64;
    d.max(0) as u64
}

#[cfg(test)]
mod tests {
    use peerwarden_common::{CounterValue, Label};

    use super::*;

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
