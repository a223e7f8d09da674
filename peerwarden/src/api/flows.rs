//! `GET /api/v1/flows[?label=&class=&limit=]`: flow records, newest first.

use std::sync::Arc;

use axum::{Json, extract::State as Ext, http::Uri};
use peerwarden_common::{Class, Label};
use serde::{Deserialize, Serialize};

use super::{ApiError, error::query};
use crate::{report, state::State};

/// Flows listed when the request does not say.
const DEFAULT_LIMIT: usize = 100;
/// The most flows one request may ask for.
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    label: Option<String>,
    class: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct Flows {
    flows: Vec<report::FlowRecord>,
}

pub async fn get(Ext(state): Ext<Arc<State>>, uri: Uri) -> Result<Json<Flows>, ApiError> {
    let p: Params = query(uri.query())?;
    let label = p
        .label
        .map(|l| Label::from_name(&l).ok_or_else(|| ApiError::BadRequest(format!("label: unknown label {l:?}"))))
        .transpose()?;
    let class = p
        .class
        .map(|c| Class::from_name(&c).ok_or_else(|| ApiError::BadRequest(format!("class: unknown class {c:?} (p2p, video, web, other)"))))
        .transpose()?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!("limit: {limit} is out of range (1 to {MAX_LIMIT})")));
    }
    let filter = report::FlowFilter { label, class, limit };
    Ok(Json(Flows { flows: report::flows(&state, &filter) }))
}
