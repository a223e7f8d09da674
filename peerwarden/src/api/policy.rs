//! `GET|PUT /api/v1/policy` and `GET /api/v1/policy/rejected`.

use std::sync::Arc;

use axum::{Json, extract::State as Ext, http::HeaderMap};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, auth::require_writer};
use crate::{
    ktime,
    policy_store::{Rejected, ReplaceError},
    state::State,
};

/// The active policy.
#[derive(Serialize, ToSchema)]
pub struct ActivePolicy {
    /// Where it came from: a file path, or `api`.
    origin: String,
    /// When it became active (RFC 3339).
    loaded_at: String,
    /// Subscribers defined.
    subscribers: usize,
    /// Plan names.
    plans: Vec<String>,
    /// The YAML source.
    source: String,
}

/// The active policy.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, body = ActivePolicy), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(Ext(state): Ext<Arc<State>>) -> Result<Json<ActivePolicy>, ApiError> {
    let active = state
        .policy
        .active()
        .ok_or_else(|| ApiError::NotFound("no policy is loaded".into()))?;
    Ok(Json(ActivePolicy {
        origin: active.origin,
        loaded_at: ktime::rfc3339(active.loaded_at),
        subscribers: active.policy.subscribers().len(),
        plans: active
            .policy
            .plans()
            .iter()
            .map(|p| p.name.clone())
            .collect(),
        source: active.source.to_string(),
    }))
}

/// Replaces the active policy with the YAML in the body, after validating it whole. An
/// invalid policy changes nothing and is kept as the last rejected one.
#[utoipa::path(put, path = "/api/v1/policy", tag = "policy",
    request_body(content = String, content_type = "application/yaml", description = "the policy, YAML"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ActivePolicy),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 422, description = "the policy is invalid: `errors` lists each with line and column", body = super::error::ErrorBody),
    ))]
pub async fn put(
    Ext(state): Ext<Arc<State>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<ActivePolicy>, ApiError> {
    require_writer(&state, &headers)?;
    let source = String::from_utf8(body.to_vec())
        .map_err(|e| ApiError::BadRequest(format!("the policy is not UTF-8 text: {e}")))?;
    let store_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || store_state.policy.replace(source, "api"))
        .await
        .map_err(|e| ApiError::Internal(format!("policy replacement task: {e}")))?;
    match outcome {
        Ok(()) => get(Ext(state)).await,
        Err(ReplaceError::Invalid(errors)) => Err(ApiError::InvalidPolicy(errors)),
        Err(ReplaceError::Apply(msg)) => {
            Err(ApiError::Internal(format!("installing the policy: {msg}")))
        }
    }
}

/// The last policy that was refused, with its errors.
#[utoipa::path(get, path = "/api/v1/policy/rejected", tag = "policy",
    responses((status = 200, body = Rejected), (status = 404, body = super::error::ErrorBody)))]
pub async fn rejected(Ext(state): Ext<Arc<State>>) -> Result<Json<Rejected>, ApiError> {
    state
        .policy
        .rejected()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no policy has been rejected".into()))
}
