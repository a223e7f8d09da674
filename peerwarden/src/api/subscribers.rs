//! `GET /api/v1/subscribers/top` and `GET /api/v1/subscribers/{id}`: who uses the most
//! (of a class, or of a label), and one subscriber's plan, current rates, usage over a
//! window and whether the policy is limiting it right now (the views are in
//! `report::subscribers`).

use std::{sync::Arc, time::SystemTime};

use axum::{
    Json,
    extract::{Path, State as Ext, rejection::PathRejection},
};
use peerwarden_common::{Class, Label};
use serde::Deserialize;

use super::{
    ApiError,
    auth::Reader,
    query::{Query, parse_window},
    store,
};
use crate::{
    history::{CLASS_NAMES, Which},
    report::{
        By, Range,
        subscribers::{self as view, StoredUsage, SubscriberView, Top},
    },
    state::State,
};

/// Subscribers listed when the request does not say.
const DEFAULT_LIMIT: usize = 10;
/// The most subscribers one answer may list.
const MAX_LIMIT: usize = 1000;
/// The usage window of `/subscribers/{id}` when the request does not say and there is a
/// history store.
const DEFAULT_USAGE_WINDOW: u64 = 3600;

/// The query parameters of the ranking.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopParams {
    /// `class` (default) or `label`.
    by: Option<By>,
    /// The class (`p2p`, `video`, `web`, `other`; default: all traffic) or, with
    /// `by=label`, the label (required).
    name: Option<String>,
    /// Over the last `90s`, `10m`, `1h`... (from the history store, in whole minutes; with
    /// `by=label`, its per-subscriber label rows; without a store, flows seen in the
    /// window). Default: since the daemon started (`by=label`: every flow in the table).
    window: Option<String>,
    /// At most this many (1 to 1,000; default 10).
    limit: Option<usize>,
}

/// The top subscribers by bytes of a class or a label.
#[utoipa::path(get, path = "/api/v1/subscribers/top", tag = "subscribers", params(TopParams),
    responses((status = 200, body = Top), (status = 400, body = super::error::ErrorBody)))]
pub async fn top(
    Ext(state): Ext<Arc<State>>,
    _: Reader,
    Query(p): Query<TopParams>,
) -> Result<Json<Top>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is out of range (1 to {MAX_LIMIT})"
        )));
    }
    let window = p.window.as_deref().map(parse_window).transpose()?;
    let range = window.map(|w| Range::last(w, SystemTime::now()));
    match p.by.unwrap_or(By::Class) {
        By::Class => {
            let class = p
                .name
                .as_deref()
                .map(|name| {
                    Class::from_name(name).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "name: unknown class {name:?} (p2p, video, web, other)"
                        ))
                    })
                })
                .transpose()?;
            let rows = match range {
                None => view::counters_top(&state, class, limit),
                Some(r) => {
                    // The store ranks on its integers and gives the rows of the first
                    // `limit` only (at 100,000 subscribers, not 200,000 rows).
                    let names: Vec<&'static str> = match class {
                        Some(c) => vec![CLASS_NAMES[c as usize]],
                        None => CLASS_NAMES.to_vec(),
                    };
                    let rows = store::query(store::store(&state)?, move |h| {
                        h.top_traffic(r.from, r.to, Which::Subscribers, &names, limit)
                    })
                    .await?;
                    view::class_top(rows, class, limit)
                }
            };
            Ok(Json(view::top_by_class(&state, rows, class, range, limit)))
        }
        By::Label => {
            let name = p.name.as_deref().ok_or_else(|| {
                ApiError::BadRequest("name: give the label to rank by (e.g. bittorrent)".into())
            })?;
            let label = Label::from_name(name)
                .ok_or_else(|| ApiError::BadRequest(format!("name: unknown label {name:?}")))?;
            // Over a window with a store: the store's per-subscriber label rows.
            let rows = match range.filter(|_| state.store().is_some()) {
                Some(r) => Some((
                    store::query(store::store(&state)?, move |h| {
                        h.top_traffic(
                            r.from,
                            r.to,
                            Which::SubscribersLabels,
                            &[label.name()],
                            limit,
                        )
                    })
                    .await?,
                    r,
                )),
                None => None,
            };
            Ok(Json(view::top_by_label(&state, label, rows, window, limit)))
        }
    }
}

/// The query parameters of one subscriber.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OneParams {
    /// Usage over the last `10m`, `1h`, `1d`... (history store, whole minutes; default 1h).
    /// Without a history store: since the daemon started.
    window: Option<String>,
}

/// One subscriber: plan, current rates, usage and whether it is being limited.
#[utoipa::path(get, path = "/api/v1/subscribers/{id}", tag = "subscribers",
    params(("id" = String, Path, description = "Subscriber id"), OneParams),
    responses((status = 200, body = SubscriberView), (status = 400, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub async fn one(
    Ext(state): Ext<Arc<State>>,
    _: Reader,
    id: Result<Path<String>, PathRejection>,
    Query(p): Query<OneParams>,
) -> Result<Json<SubscriberView>, ApiError> {
    // axum's own rejection (an id that is not UTF-8 once decoded) answers in plain text.
    let Path(id) = id.map_err(|e| ApiError::BadRequest(format!("id: {}", e.body_text())))?;
    // The query is checked first: a bad window is a 400 whoever the subscriber.
    let window = p.window.as_deref().map(parse_window).transpose()?;
    if !view::known(&state, &id) {
        return Err(ApiError::NotFound(format!(
            "no subscriber {id:?} in the active policy or seen since start"
        )));
    }
    let has_store = state.store().is_some();
    let window = match window {
        Some(_) if !has_store => {
            return Err(ApiError::BadRequest(
                "window: this daemon keeps no history store; usage is since start".into(),
            ));
        }
        Some(w) => Some(w),
        None if has_store => Some(DEFAULT_USAGE_WINDOW),
        None => None,
    };
    let stored = match window {
        Some(w) => {
            let range = Range::last(w, SystemTime::now());
            let key = id.clone();
            let (rows, per_label) = store::query(store::store(&state)?, move |h| {
                Ok((
                    h.sum(range.from, range.to, None, Which::Subscriber(&key))?,
                    h.subscriber_labels(range.from, range.to, &key)?,
                ))
            })
            .await?;
            Some(StoredUsage {
                rows,
                per_label,
                range,
            })
        }
        None => None,
    };
    view::one(&state, id, stored)
        .map(Json)
        .map_err(ApiError::Internal)
}
