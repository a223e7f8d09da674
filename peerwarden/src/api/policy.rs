//! `GET|PUT /api/v1/policy` and `GET /api/v1/policy/rejected`.

use std::sync::Arc;

use axum::{
    Json,
    extract::State as Ext,
    http::header,
    response::{IntoResponse as _, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    ApiError,
    auth::{Reader, Writer},
    body::{Body, POLICY_MAX_BYTES},
};
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
    security((), ("bearer" = [])),
    responses((status = 200, body = ActivePolicy), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn get(Ext(state): Ext<Arc<State>>, _: Reader) -> Result<Response, ApiError> {
    active(state).await
}

/// The active policy as JSON, made on the blocking pool: at 100,000 subscribers its
/// source is megabytes of YAML to escape, which would hold up an async worker.
async fn active(state: Arc<State>) -> Result<Response, ApiError> {
    let json = tokio::task::spawn_blocking(move || {
        let active = state
            .policy
            .active()
            .ok_or_else(|| ApiError::NotFound("no policy is loaded".into()))?;
        serde_json::to_vec(&ActivePolicy {
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
        })
        .map_err(|e| ApiError::Internal(format!("serialising the policy: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("policy serialisation task: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

#[utoipa::path(put, path = "/api/v1/policy", tag = "policy",
    request_body(content = String, content_type = "application/yaml", description = "the policy, YAML"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ActivePolicy),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody),
        (status = 422, description = "the policy is invalid: `errors` lists each with line and column", body = super::error::ErrorBody),
    ))]
pub async fn put(
    Ext(state): Ext<Arc<State>>,
    _: Writer,
    Body(body): Body<POLICY_MAX_BYTES>,
) -> Result<Response, ApiError> {
    let source = String::from_utf8(body.to_vec())
        .map_err(|e| ApiError::BadRequest(format!("the policy is not UTF-8 text: {e}")))?;
    let store_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || store_state.policy.replace(source, "api"))
        .await
        .map_err(|e| ApiError::Internal(format!("policy replacement task: {e}")))?;
    match outcome {
        Ok(()) => active(state).await,
        Err(ReplaceError::Invalid(errors)) => Err(ApiError::InvalidPolicy(errors)),
        Err(ReplaceError::Apply(msg)) => {
            Err(ApiError::Internal(format!("installing the policy: {msg}")))
        }
    }
}

/// The last policy that was refused, with its errors.
#[utoipa::path(get, path = "/api/v1/policy/rejected", tag = "policy",
    responses((status = 200, body = Rejected), (status = 404, body = super::error::ErrorBody)))]
pub async fn rejected(Ext(state): Ext<Arc<State>>, _: Reader) -> Result<Json<Rejected>, ApiError> {
    state
        .policy
        .rejected()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no policy has been rejected".into()))
}
