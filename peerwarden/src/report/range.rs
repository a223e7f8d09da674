//! Time ranges (`from`/`to`, RFC 3339) of the answers served from the history store.
//! Ranges are rounded out to whole minutes (the store's resolution) and end at the
//! current minute at the latest.

use std::time::SystemTime;

use serde::Serialize;

use crate::{
    history::{minute_of, unix},
    ktime,
};

/// A range served from the history store, rounded out to whole minutes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Span {
    /// Start (RFC 3339), included.
    pub from: String,
    /// End (RFC 3339), excluded.
    pub to: String,
    /// `store`: per-minute rows (per-hour rows past the minute retention, each counted
    /// in full if its hour starts in the range). `store+memory`: a window within the
    /// in-memory history that reaches back before this daemon's first reading: the
    /// store's minutes before it, the per-second readings after it (`report::merged`;
    /// `from`/`to` are then the window's, not whole minutes).
    pub source: &'static str,
}

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

/// Seconds since the epoch as a time (before the epoch: the epoch).
pub fn time_of(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

fn rfc3339(secs: i64) -> String {
    ktime::rfc3339(time_of(secs))
}

/// Parses `from`/`to`: `None` when neither is given. `to` defaults to now; a range must
/// start before it ends. `to` past the current minute is cut there (there is no data
/// from the future to sum). The error says which parameter is wrong and why.
pub fn parse(
    from: Option<&str>,
    to: Option<&str>,
    now: SystemTime,
) -> Result<Option<Range>, String> {
    let time = |name: &str, s: &str| -> Result<i64, String> {
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|_| format!("{name}: {s:?} is not an RFC 3339 time like 2026-11-26T20:00:00Z"))
    };
    let from = match (from, to) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err("to: give from as well (the range's start)".into());
        }
        (Some(f), _) => time("from", f)?,
    };
    // The end of the current minute: rows of this minute start before it.
    let current_end = minute_of(unix(now)) + 60;
    let to = match to {
        Some(t) => {
            let to = time("to", t)?;
            if to <= from {
                return Err(format!(
                    "to: {} is not after from ({})",
                    rfc3339(to),
                    rfc3339(from)
                ));
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
