//! `GET /api/v1/mix[?window=60s | ?from=RFC3339&to=RFC3339]`: bytes, packets and flows by
//! class and by label; ranges beyond the in-memory history come from the history store.

use std::sync::Arc;

use axum::{Json, extract::State as Ext, http::Uri};
use serde::Deserialize;

use super::{ApiError, error::query, range};
use crate::{report, state::State};

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
}

/// Bytes and packets (`[up, down]`) and flows by class and by label.
#[utoipa::path(get, path = "/api/v1/mix", tag = "reports", params(Params),
    responses((status = 200, body = report::Mix), (status = 400, body = super::error::ErrorBody)))]
pub async fn get(Ext(state): Ext<Arc<State>>, uri: Uri) -> Result<Json<report::Mix>, ApiError> {
    let params: Params = query(uri.query())?;
    let now = std::time::SystemTime::now();
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
        && w > state.history_seconds()
        && state.history_store.get().is_some()
    {
        return Ok(Json(range::mix(&state, range::Range::last(w, now)).await?));
    }
    if let Some(w) = window
        && w > state.history_seconds()
    {
        return Err(ApiError::BadRequest(format!(
            "window: {w}s is longer than the {}s of history kept (history_seconds in the config)",
            state.history_seconds()
        )));
    }
    Ok(Json(report::mix(&state, window)))
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
