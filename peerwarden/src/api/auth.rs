//! Bearer-token check for writes. Reads are open to whoever reaches the socket (localhost
//! by default); every write needs `Authorization: Bearer <token>`, compared in constant
//! time. With no token configured, writes are refused.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::ApiError;
use crate::state::State;

/// Fails unless the request carries the configured bearer token.
pub fn require_writer(state: &State, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.api_token.as_deref() else {
        return Err(ApiError::Forbidden(
            "writes are disabled: set api.token in the config or PEERWARDEN_API_TOKEN".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required for writes".into()))?;
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the bearer token is not valid".into(),
        ))
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
