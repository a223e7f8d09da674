//! `GET /healthz`: 200 while the daemon runs and its supervised threads are healthy, with
//! its attachments; 503 naming the threads that panicked or stalled (the daemon stops
//! shortly after, for its supervisor to restart it; docs/reliability.md, "Supervision").

use std::sync::Arc;

use axum::{Json, extract::State as Ext, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ktime, probe::Attachment, state::State};

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `failed` when a supervised thread failed.
    status: &'static str,
    /// Start time (RFC 3339).
    since: String,
    /// Where the programs are attached.
    attached: Vec<Attachment>,
    /// The failed threads (absent while all are healthy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<FailedThread>,
}

/// A supervised thread that failed.
#[derive(Serialize, ToSchema)]
pub struct FailedThread {
    /// Its name (`read-flows`, `deep`, `ipfix`).
    thread: String,
    /// What happened: `panicked: <message>` or `stalled: no progress for N s`.
    error: String,
}

/// Liveness and attachments.
#[utoipa::path(get, path = "/healthz", tag = "status", responses(
    (status = 200, body = Health),
    (status = 503, description = "a supervised thread panicked or stalled", body = Health)))]
pub async fn get(Ext(state): Ext<Arc<State>>) -> (StatusCode, Json<Health>) {
    let failed: Vec<FailedThread> = state
        .threads
        .health()
        .into_iter()
        .filter_map(|h| {
            h.failure.map(|f| FailedThread {
                thread: h.name,
                error: f.to_string(),
            })
        })
        .collect();
    let (code, status) = if failed.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failed")
    };
    (
        code,
        Json(Health {
            status,
            since: ktime::rfc3339(state.started),
            attached: state.attachments.clone(),
            failed,
        }),
    )
}
