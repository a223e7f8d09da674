//! `GET /api/v1/flows[?label=&class=&subscriber=&address=&limit=&cursor=]`: flow records,
//! newest first, a page at a time.

use std::sync::Arc;

use axum::{Json, extract::State as Ext};
use peerwarden_common::{Class, FlowKey, Label};
use serde::{Deserialize, Serialize};

use super::{ApiError, auth::Reader, query::Query};
use crate::{report, state::State};

/// Flows listed when the request does not say.
pub(super) const DEFAULT_LIMIT: usize = 100;
/// The most flows one request may ask for.
pub(super) const MAX_LIMIT: usize = 10_000;

/// The query parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Only flows with this label (e.g. `bittorrent.utp`).
    label: Option<String>,
    /// Only flows of this class: p2p, video, web, other.
    class: Option<String>,
    /// At most this many (1 to 10,000; default 100).
    limit: Option<usize>,
    /// Only flows of this subscriber (an id of the active policy).
    subscriber: Option<String>,
    /// Only flows with this address on either side (IPv4 or IPv6).
    address: Option<String>,
    /// The next page: `next_cursor` of the previous answer (with the same filters).
    cursor: Option<String>,
}

/// Flow records.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Flows {
    flows: Vec<report::FlowRecord>,
    /// Pass as `cursor` for the next page; `null` on the last page. The table is live: a
    /// flow that sees a packet between two pages moves to the front and is not listed
    /// again on later pages (it was either listed already or is newer than the listing).
    next_cursor: Option<String>,
}

/// A page's end as an opaque string: the last flow's last-packet time and key, in hex.
fn encode_cursor((ns, k): (u64, FlowKey)) -> String {
    let mut raw = Vec::with_capacity(46);
    raw.extend_from_slice(&ns.to_be_bytes());
    raw.extend_from_slice(&[k.family, k.proto]);
    raw.extend_from_slice(&k.sub_addr);
    raw.extend_from_slice(&k.sub_port.to_be_bytes());
    raw.extend_from_slice(&k.remote_addr);
    raw.extend_from_slice(&k.remote_port.to_be_bytes());
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(s: &str) -> Result<(u64, FlowKey), ApiError> {
    let bad =
        || ApiError::BadRequest("cursor: not a cursor from a previous answer's next_cursor".into());
    if s.len() != 92 || !s.is_ascii() {
        return Err(bad());
    }
    let raw: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let take = |at: usize, n: usize| &raw[at..at + n];
    let arr16 = |at| -> [u8; 16] { take(at, 16).try_into().unwrap_or_default() };
    let ns = u64::from_be_bytes(take(0, 8).try_into().map_err(|_| bad())?);
    let k = FlowKey {
        family: raw[8],
        proto: raw[9],
        sub_addr: arr16(10),
        sub_port: u16::from_be_bytes([raw[26], raw[27]]),
        remote_addr: arr16(28),
        remote_port: u16::from_be_bytes([raw[44], raw[45]]),
        ..FlowKey::default()
    };
    Ok((ns, k))
}

/// Flows, most recently seen first.
#[utoipa::path(get, path = "/api/v1/flows", tag = "reports", params(Params),
    responses((status = 200, body = Flows), (status = 400, body = super::error::ErrorBody)))]
pub async fn get(
    Ext(state): Ext<Arc<State>>,
    _: Reader,
    Query(p): Query<Params>,
) -> Result<Json<Flows>, ApiError> {
    let label = p
        .label
        .map(|l| {
            Label::from_name(&l)
                .ok_or_else(|| ApiError::BadRequest(format!("label: unknown label {l:?}")))
        })
        .transpose()?;
    let class = p
        .class
        .map(|c| {
            Class::from_name(&c).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "class: unknown class {c:?} (p2p, video, web, other)"
                ))
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is out of range (1 to {MAX_LIMIT})"
        )));
    }
    if let Some(id) = &p.subscriber
        && state
            .policy
            .active()
            .is_none_or(|a| a.policy.subscriber(id).is_none())
    {
        return Err(ApiError::NotFound(format!(
            "subscriber: no subscriber {id:?} in the active policy"
        )));
    }
    let address = p
        .address
        .map(|a| {
            a.parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::BadRequest(format!("address: {a:?} is not an IP address")))
        })
        .transpose()?;
    let after = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = report::FlowFilter {
        label,
        class,
        subscriber: p.subscriber,
        address,
        after,
        limit,
    };
    // A walk of the whole table (a million flows take a good part of a second): on the
    // blocking pool, so the async workers keep answering.
    let (flows, next) = tokio::task::spawn_blocking(move || report::flows(&state, &filter))
        .await
        .map_err(|e| ApiError::Internal(format!("flow listing task: {e}")))?;
    Ok(Json(Flows {
        flows,
        next_cursor: next.map(encode_cursor),
    }))
}
