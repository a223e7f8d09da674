//! Bearer tokens, compared in constant time. Every write needs `Authorization: Bearer
//! <api.token>` (with no token configured, writes are refused). Reads of subscriber ids
//! and addresses need `api.read_token` (or the write token) when one is configured, and
//! are open to whoever reaches the socket otherwise (localhost by default).
//!
//! Both checks are extractors ([`Writer`], [`Reader`]) that look at the headers only; a
//! handler takes them before its body, so an unauthenticated request is answered before
//! a byte of its body is read.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
};
use subtle::ConstantTimeEq as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::ApiError;
use crate::state::State;

/// The token a request carries, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn same(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Fails unless the request carries the configured bearer token.
pub fn require_writer(state: &State, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.api_token.as_deref() else {
        return Err(ApiError::Forbidden(
            "writes are disabled: set api.token in the config or PEERWARDEN_API_TOKEN".into(),
        ));
    };
    let given = bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required for writes".into()))?;
    if same(given, expected) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        ))
    }
}

/// Fails when a read token is configured and the request carries neither it nor the
/// write token.
pub fn require_reader(state: &State, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.api_read_token.as_deref() else {
        return Ok(());
    };
    let given = bearer(headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "a bearer token (api.read_token) is required to read subscriber data".into(),
        )
    })?;
    // Both compared, so the time taken does not tell which one nearly matched.
    let read = same(given, expected);
    let write = state.api_token.as_deref().is_some_and(|t| same(given, t));
    if read | write {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        ))
    }
}

/// Extractor: the request carries the write token. Put it before the body.
pub struct Writer;

impl FromRequestParts<Arc<State>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<State>) -> Result<Self, ApiError> {
        require_writer(state, &parts.headers).map(|()| Writer)
    }
}

/// Extractor: the request may read subscriber ids and addresses (see [`require_reader`]).
pub struct Reader;

impl FromRequestParts<Arc<State>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<State>) -> Result<Self, ApiError> {
        require_reader(state, &parts.headers).map(|()| Reader)
    }
}

/// Adds the bearer scheme to the OpenAPI document.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
