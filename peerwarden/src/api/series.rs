//! `GET /api/v1/mix/series?window=10m&step=10s`: the traffic mix as a time series, one point
//! per step, from the daemon's per-second history (what the dashboard's chart draws;
//! steps before the daemon's first reading from the history store's minutes, each spread
//! evenly over its seconds: `report::merged`);
//! `?from=RFC3339&to=RFC3339&step=5m` (or a window longer than that history) from the
//! history store, in whole minutes.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use axum::{Json, extract::State as Ext};
use serde::Deserialize;

use super::{
    ApiError,
    query::{Query, parse_range, parse_window},
    store,
};
use crate::{
    history::Which,
    report::{
        Range,
        merged::Merged,
        mix::label_classes,
        series::{DEFAULT_STEP_SECS, DEFAULT_WINDOW_SECS, MAX_POINTS, Point, Series, points},
        source::{Live, Stored},
    },
    state::State,
};

/// The query parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
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

/// The traffic mix as a time series: one point per step over the window.
#[utoipa::path(get, path = "/api/v1/mix/series", tag = "reports", params(Params),
    responses((status = 200, body = Series), (status = 400, body = super::error::ErrorBody)))]
pub async fn get(
    Ext(state): Ext<Arc<State>>,
    Query(p): Query<Params>,
) -> Result<Json<Series>, ApiError> {
    let history = state.recent_seconds();
    let now = SystemTime::now();
    let stored = match parse_range(p.from.as_deref(), p.to.as_deref(), p.window.as_deref(), now)? {
        Some(r) => Some(r),
        None => match p.window.as_deref().map(parse_window).transpose()? {
            Some(w) if w > history && state.store().is_some() => Some(Range::last(w, now)),
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
        return Ok(Json(Series {
            window_seconds: r.seconds(),
            step_seconds: step,
            points: stored_points(&state, r, step).await?,
            label_classes: label_classes(),
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
    let n = window.div_ceil(step);
    if n > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "window / step: {window}s in steps of {step}s is {n} points, more than {MAX_POINTS}; take a longer step"
        )));
    }
    let readings = state.recent();
    let live = Live {
        readings: &readings,
        now: Instant::now(),
        wall: SystemTime::now(),
        window,
        step,
    };
    // Reaching back before the daemon's first reading: the store's minutes before it.
    let (points, range) = match store::before_start(&state, &live).await? {
        Some((rows, need, first)) => {
            let merged = Merged::new(live, &rows, need, first);
            (points(&merged), Some(merged.span()))
        }
        None => (points(&live), None),
    };
    Ok(Json(Series {
        window_seconds: window,
        step_seconds: step,
        points,
        label_classes: label_classes(),
        range,
    }))
}

/// The points of `range` in steps of `step` seconds (a multiple of 60), from the store:
/// one per step, ending at the range's end; steps that end before the store's first
/// row are left out, as the in-memory series leaves out steps before the first reading.
async fn stored_points(state: &State, range: Range, step: u64) -> Result<Vec<Point>, ApiError> {
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
    // Steps end at `to`: the first starts `n` steps before it.
    let start = range.to - (n * step) as i64;
    let step_i = step as i64;
    let (rows, first) = store::query(store::store(state)?, move |h| {
        Ok((
            h.sum(start, range.to, Some(step_i), Which::Labels)?,
            h.first()?,
        ))
    })
    .await?;
    Ok(points(&Stored {
        rows,
        start,
        step,
        n,
        first,
    }))
}
