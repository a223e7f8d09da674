//! The query string: [`Query`], the extractor every handler with parameters takes (its
//! rejection is the API's JSON error), and the parameter values shared by several routes
//! (windows, ranges).

use std::time::SystemTime;

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::report::{Range, range};

/// The query string parsed into `T`; a query that does not parse answers 400 with serde's
/// reason (axum's own `Query` extractor answers in plain text).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// The longest span a query may ask for (`window`, `step`, `from`..`to`): 3,660 days, the
/// longest hour retention the config accepts, so nothing the store can hold is out of
/// reach, and far from where the arithmetic on times (seconds in an `i64`) could overflow.
pub const MAX_SPAN_SECS: u64 = 3660 * 86_400;

/// `90`, `90s`, `5m`, `2h` → seconds, at most [`MAX_SPAN_SECS`].
pub fn parse_window(s: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "window: {s:?} is not a duration like 60s, 5m or 1h"
        ))
    };
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(ApiError::BadRequest("window: must be at least 1s".into()));
    }
    if secs > MAX_SPAN_SECS {
        return Err(ApiError::BadRequest(format!(
            "window: {s:?} is longer than the {MAX_SPAN_SECS}s (3660 days) a query may span"
        )));
    }
    Ok(secs)
}

/// `from`/`to` as a range of the store (`None`: neither given); with `window` as well,
/// a 400: the two ways of saying the span exclude each other.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
    window: Option<&str>,
    now: SystemTime,
) -> Result<Option<Range>, ApiError> {
    match range::parse(from, to, now).map_err(ApiError::BadRequest)? {
        Some(_) if window.is_some() => Err(ApiError::BadRequest(
            "window: give either window or from/to".into(),
        )),
        Some(r) if r.seconds() > MAX_SPAN_SECS => Err(ApiError::BadRequest(format!(
            "from/to: {}s is longer than the {MAX_SPAN_SECS}s (3660 days) a query may span",
            r.seconds()
        ))),
        r => Ok(r),
    }
}
