//! `GET /api/v1/mix[?window=60s | ?from=RFC3339&to=RFC3339][&subscriber=ID[&by=label|class]]`:
//! bytes, packets and flows by class and by label; ranges beyond the in-memory history come
//! from the history store. With `subscriber`, one subscriber's mix from the store (its
//! per-label rows; classes are the sums of their labels; no flow counts).

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use axum::{Json, extract::State as Ext, http::HeaderMap};
use serde::Deserialize;

use super::{
    ApiError,
    query::{Query, parse_range, parse_window},
    store,
};
use crate::{
    history::Which,
    report::{
        self, By, Range,
        merged::{self, Merged},
        source::Live,
    },
    state::State,
};

/// The query parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only the last N seconds: `90`, `90s`, `5m`, `1h`. Without it: since start. Longer
    /// than the in-memory history: from the history store, in whole minutes. Within it,
    /// reaching back before the daemon started: the store's minutes before its first
    /// reading, the readings after it (`range.source`: `store+memory`).
    window: Option<String>,
    /// Start of a range (RFC 3339), served from the history store in whole minutes.
    from: Option<String>,
    /// End of the range (RFC 3339; default now).
    to: Option<String>,
    /// Only this subscriber's traffic (from the history store; without `window` or `from`:
    /// since the daemon started).
    subscriber: Option<String>,
    /// With `subscriber`: only `label` or only `class` figures (default both).
    by: Option<By>,
}

/// Bytes and packets (`[up, down]`) and flows by class and by label.
#[utoipa::path(get, path = "/api/v1/mix", tag = "reports", params(Params),
    responses((status = 200, body = report::Mix), (status = 400, body = super::error::ErrorBody)))]
pub async fn get(
    Ext(state): Ext<Arc<State>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Json<report::Mix>, ApiError> {
    let now = SystemTime::now();
    if p.by.is_some() && p.subscriber.is_none() {
        return Err(ApiError::BadRequest(
            "by: only with subscriber (the mix of all traffic has both)".into(),
        ));
    }
    let range = parse_range(p.from.as_deref(), p.to.as_deref(), p.window.as_deref(), now)?;
    if let Some(id) = p.subscriber {
        super::auth::require_reader(&state, &headers)?;
        let r = match range {
            Some(r) => r,
            None => {
                let secs = match p.window.as_deref() {
                    Some(w) => parse_window(w)?,
                    None => now.duration_since(state.started).map_or(0, |d| d.as_secs()),
                };
                Range::last(secs, now)
            }
        };
        let known = report::subscribers::known(&state, &id);
        let per_label = store::query(store::store(&state)?, {
            let id = id.clone();
            move |h| h.subscriber_labels(r.from, r.to, &id)
        })
        .await?;
        if !known && per_label.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no subscriber {id:?} in the active policy, seen since start or in the store"
            )));
        }
        return Ok(Json(report::mix::subscriber(&state, &per_label, r, p.by)));
    }
    let window = match range {
        Some(_) => None,
        None => p.window.as_deref().map(parse_window).transpose()?,
    };
    let history = state.recent_seconds();
    let range = match (range, window) {
        (Some(r), _) => Some(r),
        (None, Some(w)) if w > history && state.store().is_some() => Some(Range::last(w, now)),
        (None, Some(w)) if w > history => {
            return Err(ApiError::BadRequest(format!(
                "window: {w}s is longer than the {history}s of history kept (history_seconds in the config)"
            )));
        }
        _ => None,
    };
    match range {
        Some(r) => {
            let rows = store::query(store::store(&state)?, move |h| {
                h.sum(r.from, r.to, None, Which::Labels)
            })
            .await?;
            Ok(Json(report::mix::stored(&state, &rows, r)))
        }
        None => match window {
            Some(w) if state.store().is_some() => Ok(Json(live_or_merged(&state, w).await?)),
            _ => Ok(Json(report::mix::live(&state, window))),
        },
    }
}

/// The mix over the last `w` seconds (within the in-memory history) with a store: from the
/// readings, and when the window reaches back before the first of them (the daemon started
/// less than `w` ago), the store's minutes before it (`report::merged`).
async fn live_or_merged(state: &State, w: u64) -> Result<report::Mix, ApiError> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let live = |readings| Live {
        readings,
        now,
        wall,
        window: w,
        step: w,
    };
    // Whether the store is needed depends on the first and the latest reading only: the
    // whole history is copied only then.
    let ends = match state.readings(Some(u64::MAX)) {
        Some((latest, Some(first))) => vec![first, latest],
        _ => Vec::new(),
    };
    if merged::minutes(&live(&ends)).is_none() {
        return Ok(report::mix::live(state, Some(w)));
    }
    let readings = state.recent();
    let live = live(&readings);
    Ok(match store::before_start(state, &live).await? {
        Some((rows, need, first)) => {
            report::mix::merged(state, &Merged::new(live, &rows, need, first), w)
        }
        None => report::mix::live(state, Some(w)),
    })
}
