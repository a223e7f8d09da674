//! `GET /healthz`: 200 while the programs are attached.

use std::sync::Arc;

use axum::{Json, extract::State as Ext};
use serde_json::{Value, json};

use crate::{clock, state::State};

pub async fn get(Ext(state): Ext<Arc<State>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "since": clock::rfc3339(state.started),
        "attached": state.attachments,
    }))
}
