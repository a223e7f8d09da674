//! The REST API (axum): `/api/v1/...` JSON, `/healthz`. The router is built in [`app`] so
//! tests drive it without a socket.

mod error;
mod flows;
mod health;
mod metrics;
mod mix;

use std::sync::Arc;

use axum::{Router, routing::get};

pub use error::ApiError;

use crate::state::State;

/// The API's router over the daemon's state.
pub fn app(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(health::get))
        .route("/api/v1/mix", get(mix::get))
        .route("/api/v1/flows", get(flows::get))
        .route("/metrics", get(metrics::get))
        .fallback(error::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests;
