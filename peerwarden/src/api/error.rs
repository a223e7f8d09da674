//! API errors: JSON `{error, detail}` with the matching status; details of internal
//! failures go to the log, not to the client.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A short machine-readable kind: bad_request, unauthorized, forbidden, not_found, invalid_policy, ...
    pub error: String,
    /// What went wrong, for a person.
    pub detail: String,
}

/// An error answered to an API client.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed: 400 with what to fix.
    BadRequest(String),
    /// No or wrong credentials: 401.
    Unauthorized(String),
    /// Not allowed at all: 403.
    Forbidden(String),
    /// No such resource: 404.
    NotFound(String),
    /// A `Host` header that is not one of `api.allowed_hosts`: 421.
    MisdirectedRequest(String),
    /// A body over the route's limit: 413.
    TooLarge(String),
    /// A policy that does not validate: 422 with every error.
    InvalidPolicy(Vec<crate::policy_store::ErrorAt>),
    /// The data path refused a valid policy: 500.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, detail) = match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", d),
            ApiError::Unauthorized(d) => {
                let body = json!({ "error": "unauthorized", "detail": d });
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", d),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d),
            ApiError::MisdirectedRequest(d) => {
                (StatusCode::MISDIRECTED_REQUEST, "misdirected_request", d)
            }
            ApiError::TooLarge(d) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", d),
            ApiError::InvalidPolicy(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let body = json!({ "error": "invalid_policy", "detail": detail, "errors": errors });
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            }
            ApiError::Internal(d) => {
                tracing::error!("{d}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the daemon could not complete the request; see its log".to_string(),
                )
            }
        };
        (status, Json(json!({ "error": error, "detail": detail }))).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}
