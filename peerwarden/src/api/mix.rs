//! `GET /api/v1/mix[?window=60s | ?from=RFC3339&to=RFC3339][&subscriber=ID[&by=label|class]]`:
//! bytes, packets and flows by class and by label; ranges beyond the in-memory history come
//! from the history store. With `subscriber`, one subscriber's mix from the store (its
//! per-label rows; classes are the sums of their labels; no flow counts).

use std::sync::Arc;

use axum::{Json, extract::State as Ext, http::Uri};
use serde::Deserialize;

use std::collections::BTreeMap;

use peerwarden_common::label::ALL_CLASSES;

use super::{ApiError, error::query, range};
use crate::{ktime, report, state::State};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Params {
    /// Only the last N seconds: `90`, `90s`, `5m`, `1h`. Without it: since start. Longer
    /// than the in-memory history: from the history store, in whole minutes.
    window: Option<String>,
    /// Start of a range (RFC 3339), served from the history store in whole minutes.
    from: Option<String>,
    /// End of the range (RFC 3339; default now).
    to: Option<String>,
    /// Only this subscriber's traffic (from the history store; without `window` or `from`:
    /// since the daemon started).
    subscriber: Option<String>,
    /// With `subscriber`: only `label` or only `class` figures (default both).
    by: Option<String>,
}

/// Bytes and packets (`[up, down]`) and flows by class and by label.
#[utoipa::path(get, path = "/api/v1/mix", tag = "reports", params(Params),
    responses((status = 200, body = report::Mix), (status = 400, body = super::error::ErrorBody)))]
pub async fn get(Ext(state): Ext<Arc<State>>, uri: Uri) -> Result<Json<report::Mix>, ApiError> {
    let params: Params = query(uri.query())?;
    let now = std::time::SystemTime::now();
    if params.by.is_some() && params.subscriber.is_none() {
        return Err(ApiError::BadRequest(
            "by: only with subscriber (the mix of all traffic has both)".into(),
        ));
    }
    if let Some(id) = params.subscriber.clone() {
        return Ok(Json(subscriber_mix(&state, &params, id, now).await?));
    }
    if let Some(r) = range::parse(params.from.as_deref(), params.to.as_deref(), now)? {
        if params.window.is_some() {
            return Err(ApiError::BadRequest(
                "window: give either window or from/to".into(),
            ));
        }
        return Ok(Json(range::mix(&state, r).await?));
    }
    let window = params.window.as_deref().map(parse_window).transpose()?;
    if let Some(w) = window
        && w > state.recent_seconds()
        && state.store().is_some()
    {
        return Ok(Json(range::mix(&state, range::Range::last(w, now)).await?));
    }
    if let Some(w) = window
        && w > state.recent_seconds()
    {
        return Err(ApiError::BadRequest(format!(
            "window: {w}s is longer than the {}s of history kept (history_seconds in the config)",
            state.recent_seconds()
        )));
    }
    Ok(Json(report::mix(&state, window)))
}

/// One subscriber's mix over the range the parameters give, from the store.
async fn subscriber_mix(
    state: &State,
    params: &Params,
    id: String,
    now: std::time::SystemTime,
) -> Result<report::Mix, ApiError> {
    let (labels_too, classes_too) = match params.by.as_deref() {
        None => (true, true),
        Some("label") => (true, false),
        Some("class") => (false, true),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "by: {other:?}: label or class"
            )));
        }
    };
    let r = match range::parse(params.from.as_deref(), params.to.as_deref(), now)? {
        Some(_) if params.window.is_some() => {
            return Err(ApiError::BadRequest(
                "window: give either window or from/to".into(),
            ));
        }
        Some(r) => r,
        None => {
            let secs = match params.window.as_deref() {
                Some(w) => parse_window(w)?,
                None => now.duration_since(state.started).map_or(0, |d| d.as_secs()),
            };
            range::Range::last(secs, now)
        }
    };
    let known = state
        .policy
        .active()
        .is_some_and(|a| a.policy.subscriber(&id).is_some())
        || state.subscribers.total(&id).is_some();
    let store = range::store(state)?;
    let per_label = range::query(store, {
        let id = id.clone();
        move |h| h.subscriber_labels(r.from, r.to, &id)
    })
    .await?;
    if !known && per_label.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no subscriber {id:?} in the active policy, seen since start or in the store"
        )));
    }
    let mut classes: BTreeMap<&'static str, report::Usage> = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for (label, t) in per_label {
        let u = report::Usage {
            bytes: t.bytes,
            packets: t.packets,
            flows: 0,
        };
        if classes_too {
            let c = classes.entry(label.class().name()).or_default();
            for d in 0..2 {
                c.bytes[d] += u.bytes[d];
                c.packets[d] += u.packets[d];
            }
        }
        if labels_too {
            labels.insert(label.name(), u);
        }
    }
    if classes_too {
        for c in ALL_CLASSES {
            classes.entry(c.name()).or_default();
        }
    }
    Ok(report::Mix {
        window_seconds: Some(r.seconds()),
        since: ktime::rfc3339(state.started),
        classes,
        labels,
        probe: state.stats(),
        range: Some(r.span()),
    })
}

/// `90`, `90s`, `5m`, `2h` → seconds.
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
    Ok(secs)
}
