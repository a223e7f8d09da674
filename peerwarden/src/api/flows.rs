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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Params {
    /// Only flows with this label (e.g. `bittorrent.utp`).
    label: Option<String>,
    /// Only flows of this class: p2p, video, web, other.
    class: Option<String>,
    /// At most this many (1 to 10,000; default 100).
    limit: Option<usize>,
}

/// Flow records.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Flows {
    flows: Vec<report::FlowRecord>,
}

/// Flows, most recently seen first.
#[utoipa::path(get, path = "/api/v1/flows", tag = "reports", params(Params),
    responses((status = 200, body = Flows), (status = 400, body = super::error::ErrorBody)))]
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
