//! `GET /healthz`: 200 while the daemon runs, with its attachments.

use std::sync::Arc;

use axum::{Json, extract::State as Ext};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ktime, probe::Attachment, state::State};

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the daemon answers.
    status: &'static str,
    /// Start time (RFC 3339).
    since: String,
    /// Where the programs are attached.
    attached: Vec<Attachment>,
}

/// Liveness and attachments.
#[utoipa::path(get, path = "/healthz", tag = "status", responses((status = 200, body = Health)))]
pub async fn get(Ext(state): Ext<Arc<State>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        since: ktime::rfc3339(state.started),
        attached: state.attachments.clone(),
    })
}
