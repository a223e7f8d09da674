//! Time ranges (`from`/`to`, RFC 3339) and the answers served from the history store:
//! the traffic mix over a range and its series. Ranges are rounded out to whole minutes
//! (the store's resolution) and end at the current minute at the latest.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use peerwarden_common::{
    Label,
    label::{ALL_CLASSES, ALL_LABELS},
};

use super::{
    ApiError,
    series::{MAX_POINTS, Point, StepUsage},
};
use crate::{
    history::{History, Row, Which, minute_of, unix},
    ktime,
    report::{Mix, Span, Usage},
    state::State,
};

/// A range in seconds since the epoch, `[from, to)`, both on minute boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Start, included.
    pub from: i64,
    /// End, excluded.
    pub to: i64,
}

impl Range {
    /// The last `secs` seconds up to `now`, rounded out to minutes (the current minute
    /// included, even when `now` is its first second).
    pub fn last(secs: u64, now: SystemTime) -> Range {
        let end = unix(now);
        Range {
            from: minute_of(end.saturating_sub(secs as i64)),
            to: minute_of(end) + 60,
        }
    }

    /// Length in seconds.
    pub fn seconds(&self) -> u64 {
        (self.to - self.from).max(0) as u64
    }

    /// The range as the answers print it.
    pub fn span(&self) -> Span {
        Span {
            from: rfc3339(self.from),
            to: rfc3339(self.to),
            source: "store",
        }
    }
}

fn ceil_minute(secs: i64) -> i64 {
    minute_of(secs + 59)
}

fn rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH
    };
    ktime::rfc3339(t)
}

/// Parses `from`/`to`: `None` when neither is given. `to` defaults to now; a range must
/// start before it ends. `to` past the current minute is cut there (there is no data
/// from the future to sum).
pub fn parse(
    from: Option<&str>,
    to: Option<&str>,
    now: SystemTime,
) -> Result<Option<Range>, ApiError> {
    let time = |name: &str, s: &str| -> Result<i64, ApiError> {
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name}: {s:?} is not an RFC 3339 time like 2026-11-26T20:00:00Z"
                ))
            })
    };
    let from = match (from, to) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(
                "to: give from as well (the range's start)".into(),
            ));
        }
        (Some(f), _) => time("from", f)?,
    };
    // The end of the current minute: rows of this minute start before it.
    let current_end = minute_of(unix(now)) + 60;
    let to = match to {
        Some(t) => {
            let to = time("to", t)?;
            if to <= from {
                return Err(ApiError::BadRequest(format!(
                    "to: {} is not after from ({})",
                    rfc3339(to),
                    rfc3339(from)
                )));
            }
            ceil_minute(to).min(current_end)
        }
        None => current_end,
    };
    Ok(Some(Range {
        from: minute_of(from),
        to: to.max(minute_of(from) + 60),
    }))
}

/// The daemon's history store, or a 400 saying there is none.
pub fn store(state: &State) -> Result<Arc<History>, ApiError> {
    state.store().cloned().ok_or_else(|| {
        ApiError::BadRequest(
            "this daemon keeps no history store: only the in-memory window is available".into(),
        )
    })
}

/// Runs a store query off the async threads.
pub async fn query<T: Send + 'static>(
    history: Arc<History>,
    f: impl FnOnce(&History) -> Result<T, crate::history::HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&history))
        .await
        .map_err(|e| ApiError::Internal(format!("history query task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("{e}")))
}

/// Sums signed per-label rows into usages: a label's sum below zero (its bytes moved to
/// another label within the range) reads as zero, as in `report::mix`.
fn label_usage(rows: impl Iterator<Item = Row>) -> BTreeMap<&'static str, (Usage, i64)> {
    let mut signed: BTreeMap<&'static str, [[i64; 3]; 2]> = BTreeMap::new();
    for r in rows {
        let Some(label) = Label::from_name(&r.key.name) else {
            continue;
        };
        let d = usize::from(r.key.dir.min(1));
        let s = &mut signed.entry(label.name()).or_default()[d];
        s[0] += r.values.bytes;
        s[1] += r.values.packets;
        s[2] += r.values.flows;
    }
    signed
        .into_iter()
        .map(|(name, s)| {
            let pos = |v: i64| v.max(0) as u64;
            let u = Usage {
                bytes: [pos(s[0][0]), pos(s[1][0])],
                packets: [pos(s[0][1]), pos(s[1][1])],
                flows: 0,
            };
            (name, (u, s[0][2] + s[1][2]))
        })
        .collect()
}

/// The traffic mix over `range`, from the store.
pub async fn mix(state: &State, range: Range) -> Result<Mix, ApiError> {
    let history = store(state)?;
    let rows = query(history, move |h| {
        h.sum(range.from, range.to, None, Which::Labels)
    })
    .await?;
    let mut labels: BTreeMap<&'static str, Usage> = BTreeMap::new();
    let per_label = label_usage(rows.into_iter());
    // As since start: `unknown` counts flows created, the others flows labelled; the
    // flows still undecided are the difference.
    let labelled: i64 = per_label
        .iter()
        .filter(|(n, _)| **n != Label::Unknown.name())
        .map(|(_, (_, f))| *f)
        .sum();
    for (name, (mut u, flows)) in per_label {
        u.flows = if name == Label::Unknown.name() {
            (flows - labelled).max(0)
        } else {
            flows.max(0)
        } as u64;
        labels.insert(name, u);
    }
    let mut classes: BTreeMap<&'static str, Usage> = ALL_CLASSES
        .iter()
        .map(|c| (c.name(), Usage::default()))
        .collect();
    for label in ALL_LABELS {
        if let (Some(u), Some(c)) = (
            labels.get(label.name()),
            classes.get_mut(label.class().name()),
        ) {
            for d in 0..2 {
                c.bytes[d] += u.bytes[d];
                c.packets[d] += u.packets[d];
            }
            c.flows += u.flows;
        }
    }
    labels.retain(|_, u| *u != Usage::default());
    Ok(Mix {
        window_seconds: Some(range.seconds()),
        since: ktime::rfc3339(state.started),
        classes,
        labels,
        probe: state.stats(),
        range: Some(range.span()),
    })
}

/// The points of `range` in steps of `step` seconds (a multiple of 60), from the store:
/// one per step, ending at the range's end; steps that end before the store's first
/// row are left out, as the in-memory series leaves out steps before the first reading.
pub async fn series(state: &State, range: Range, step: u64) -> Result<Vec<Point>, ApiError> {
    if step == 0 || !step.is_multiple_of(60) {
        return Err(ApiError::BadRequest(format!(
            "step: {step}s; the history store keeps minutes, so a step over a from/to range is a whole number of minutes (60s, 5m, 1h)"
        )));
    }
    let n = range.seconds().div_ceil(step);
    if n > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "from/to/step: {}s in steps of {step}s is {n} points, more than {MAX_POINTS}; take a longer step",
            range.seconds()
        )));
    }
    let history = store(state)?;
    // Steps end at `to`: the first starts `n` steps before it.
    let start = range.to - (n * step) as i64;
    let step_i = step as i64;
    let (rows, first) = query(history, move |h| {
        Ok((
            h.sum(start, range.to, Some(step_i), Which::Labels)?,
            h.first()?,
        ))
    })
    .await?;
    let mut by_bucket: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    for r in rows {
        by_bucket.entry(r.bucket).or_default().push(r);
    }
    let mut points = Vec::new();
    for b in 0..n as i64 {
        let end = start + (b + 1) * step_i;
        if first.is_none_or(|f| end <= f) {
            continue;
        }
        let mut classes: BTreeMap<&'static str, StepUsage> = ALL_CLASSES
            .iter()
            .map(|c| (c.name(), StepUsage::default()))
            .collect();
        let mut labels = BTreeMap::new();
        for (name, (u, _)) in label_usage(by_bucket.remove(&b).unwrap_or_default().into_iter()) {
            let s = StepUsage {
                bytes: u.bytes,
                packets: u.packets,
            };
            if s == StepUsage::default() {
                continue;
            }
            if let Some(c) = Label::from_name(name).and_then(|l| classes.get_mut(l.class().name()))
            {
                for d in 0..2 {
                    c.bytes[d] += s.bytes[d];
                    c.packets[d] += s.packets[d];
                }
            }
            labels.insert(name, s);
        }
        points.push(Point {
            t: rfc3339(end),
            classes,
            labels,
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).expect("time")
    }

    #[test]
    fn ranges_round_out_to_minutes_and_stop_at_now() {
        let now = at("2026-11-26T20:43:33Z");
        let r = parse(
            Some("2026-11-26T20:00:10Z"),
            Some("2026-11-26T20:30:01Z"),
            now,
        )
        .expect("ok")
        .expect("some");
        assert_eq!(r.span().from, "2026-11-26T20:00:00.000Z");
        assert_eq!(r.span().to, "2026-11-26T20:31:00.000Z");
        let r = parse(Some("2026-11-26T19:00:00+01:00"), None, now)
            .expect("ok")
            .expect("some");
        assert_eq!(
            (r.span().from.as_str(), r.span().to.as_str()),
            ("2026-11-26T18:00:00.000Z", "2026-11-26T20:44:00.000Z")
        );
        let r = parse(
            Some("2026-11-26T20:00:00Z"),
            Some("2030-01-01T00:00:00Z"),
            now,
        )
        .expect("ok")
        .expect("some");
        assert_eq!(
            r.span().to,
            "2026-11-26T20:44:00.000Z",
            "cut at the current minute"
        );
        assert_eq!(parse(None, None, now).expect("ok"), None);
        for (from, to) in [
            (None, Some("2026-11-26T20:00:00Z")),
            (Some("yesterday"), None),
            (Some("2026-11-26T20:00:00Z"), Some("2026-11-26T20:00:00Z")),
            (Some("2026-11-26T21:00:00Z"), Some("2026-11-26T20:00:00Z")),
            (Some("2026-11-26"), None),
        ] {
            assert!(parse(from, to, now).is_err(), "{from:?} {to:?}");
        }
        let r = Range::last(3600, now);
        assert_eq!(r.seconds(), 3660, "61 minutes: the current one is partial");
        // On a minute's first second, that minute is in (its rows start then).
        let r = Range::last(60, now - Duration::from_secs(33));
        assert_eq!(
            (r.span().from.as_str(), r.span().to.as_str()),
            ("2026-11-26T20:42:00.000Z", "2026-11-26T20:44:00.000Z")
        );
    }
}
