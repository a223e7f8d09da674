//! API errors: JSON `{error, detail}` with the matching status; details of internal
//! failures go to the log, not to the client.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An error answered to an API client.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed: 400 with what to fix.
    BadRequest(String),
    /// No such resource: 404.
    NotFound(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, detail) = match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", d),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d),
        };
        (status, Json(json!({ "error": error, "detail": detail }))).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

/// Parses a query string into `T`, answering 400 with serde's reason on failure (axum's
/// own `Query` extractor answers in plain text).
pub fn query<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| ApiError::BadRequest(e.to_string()))
}
