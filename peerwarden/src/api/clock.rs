//! `GET|PUT /api/v1/clock`: the time the policy's schedules see.
//!
//! Schedules follow the wall clock plus an offset (0 unless set here). Moving it lets an
//! operator (or a test) see what the evening limits do without waiting for the evening;
//! the schedules are re-evaluated at once, not at the next once-a-second tick.

use std::sync::Arc;

use axum::{Json, extract::State as Ext};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    ApiError,
    auth::Writer,
    body::{Body, CLOCK_MAX_BYTES},
};
use crate::state::State;

/// Offsets beyond ten years are refused: they are typos, and jiff's range is finite.
const MAX_OFFSET_SECS: i64 = 10 * 366 * 86_400;

/// The schedules' clock.
#[derive(Serialize, ToSchema)]
pub struct ClockState {
    /// The time schedules see (RFC 3339, UTC).
    now: String,
    /// Seconds added to the wall clock.
    offset_seconds: i64,
    /// Weekday and time in the active policy's time zone, e.g. `mon 19:00 Europe/Berlin`
    /// (absent without a policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_local: Option<String>,
    /// After a PUT: whether the rules in force changed and were re-installed (absent when
    /// nothing was re-evaluated).
    #[serde(skip_serializing_if = "Option::is_none")]
    rules_changed: Option<bool>,
}

/// A new setting: exactly one of the two fields.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetClock {
    /// Seconds to add to the wall clock (0 goes back to real time).
    #[serde(default)]
    offset_seconds: Option<i64>,
    /// The time schedules should see now (RFC 3339); the offset becomes its distance from
    /// the wall clock.
    #[serde(default)]
    now: Option<String>,
}

fn current(state: &State, rules_changed: Option<bool>) -> Result<ClockState, ApiError> {
    let now = state.clock.now().map_err(ApiError::Internal)?;
    let policy_local = match state.policy.active() {
        Some(active) => {
            let tz = active.policy.timezone().to_string();
            let (day, minute) = state.clock.local(&tz).map_err(ApiError::Internal)?;
            Some(format!(
                "{} {:02}:{:02} {tz}",
                format!("{day:?}").to_lowercase(),
                minute / 60,
                minute % 60
            ))
        }
        None => None,
    };
    Ok(ClockState {
        now: now
            .round(jiff::Unit::Second)
            .map_or_else(|_| now.to_string(), |t| t.to_string()),
        offset_seconds: state.clock.offset(),
        policy_local,
        rules_changed,
    })
}

/// The time the schedules see and its offset from the wall clock.
#[utoipa::path(get, path = "/api/v1/clock", tag = "policy", responses((status = 200, body = ClockState)))]
pub async fn get(Ext(state): Ext<Arc<State>>) -> Result<Json<ClockState>, ApiError> {
    current(&state, None).map(Json)
}

/// Moves the schedules' clock (`{"offset_seconds": N}` or `{"now": "RFC 3339"}`) and
/// re-evaluates the schedules at once.
#[utoipa::path(put, path = "/api/v1/clock", tag = "policy",
    request_body = SetClock,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ClockState),
        (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody),
    ))]
pub async fn put(
    Ext(state): Ext<Arc<State>>,
    _: Writer,
    Body(body): Body<CLOCK_MAX_BYTES>,
) -> Result<Json<ClockState>, ApiError> {
    let set: SetClock = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body: {e}")))?;
    let offset = match (set.offset_seconds, set.now) {
        (Some(secs), None) => secs,
        (None, Some(now)) => {
            let target: jiff::Timestamp = now.parse().map_err(|e| {
                ApiError::BadRequest(format!("now: {now:?} is not an RFC 3339 time: {e}"))
            })?;
            target
                .as_second()
                .saturating_sub(jiff::Timestamp::now().as_second())
        }
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of offset_seconds and now".into(),
            ));
        }
    };
    // unsigned_abs: i64::MIN has no absolute value in an i64.
    if offset.unsigned_abs() > MAX_OFFSET_SECS.unsigned_abs() {
        return Err(ApiError::BadRequest(format!(
            "an offset of {offset} s is more than ten years"
        )));
    }
    let eval_state = state.clone();
    let changed = tokio::task::spawn_blocking(move || eval_state.clock.move_and_reevaluate(offset))
        .await
        .map_err(|e| ApiError::Internal(format!("schedule re-evaluation task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("re-evaluating the schedules: {e:#}")))?;
    tracing::info!(offset, "schedule clock moved");
    current(&state, changed).map(Json)
}
