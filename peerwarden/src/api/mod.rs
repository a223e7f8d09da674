//! The REST API (axum): JSON under `/api/v1`, the OpenAPI document generated from the
//! handlers at `/api/v1/openapi.json`, Prometheus text at `/metrics`, `/healthz`. The router
//! is built in [`app`] so tests drive it without a socket.

mod access_log;
mod alto;
mod auth;
mod body;
mod clock;
mod dashboard;
mod error;
mod flows;
mod health;
mod metrics;
mod mix;
mod policy;
mod query;
mod series;
pub mod serve;
mod status;
mod store;
mod subscribers;
mod swarms;
pub use peerwarden_tls as tls;

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, http::header, routing::get};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use auth::BearerScheme;
pub use error::ApiError;

use crate::state::State;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "peerwarden", description = "Traffic classification and per-subscriber policy for ISP gateways."),
    modifiers(&BearerScheme),
)]
struct Doc;

/// The routes and the OpenAPI document describing them.
pub fn router() -> (Router<Arc<State>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(Doc::openapi())
        .routes(routes!(health::get))
        .routes(routes!(metrics::get))
        .routes(routes!(mix::get))
        .routes(routes!(series::get))
        .routes(routes!(flows::get))
        .routes(routes!(status::get))
        .routes(routes!(policy::get, policy::put))
        .routes(routes!(policy::rejected))
        .routes(routes!(clock::get, clock::put))
        .routes(routes!(subscribers::top))
        .routes(routes!(subscribers::one))
        .routes(routes!(swarms::list))
        .routes(routes!(swarms::one))
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::asset))
        .routes(routes!(alto::directory))
        .routes(routes!(alto::network_map))
        .routes(routes!(alto::network_map_filtered))
        .routes(routes!(alto::cost_map_num))
        .routes(routes!(alto::cost_map_ord))
        .routes(routes!(alto::cost_map_filtered))
        .routes(routes!(alto::endpoint_cost))
        .split_for_parts()
}

/// The API's router over the daemon's state.
pub fn app(state: Arc<State>) -> Router {
    let (routes, doc) = router();
    // Rendered once: the document does not change while the daemon runs.
    let doc: Arc<str> = doc
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        .into();
    routes
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
            }),
        )
        .fallback(error::not_found)
        // Bodies are read by `body::Body` with each route's own limit; this one covers any
        // extractor that reads a body another way.
        .layer(DefaultBodyLimit::max(body::POLICY_MAX_BYTES))
        .layer(axum::middleware::from_fn(access_log::log))
        .with_state(state)
}

#[cfg(test)]
mod tests;
