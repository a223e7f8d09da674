//! `GET /api/v1/swarms[?window=&limit=&sort=]` and `GET /api/v1/swarms/{id}`: the swarm
//! view (issue 15; `crate::swarms`). With `swarms.enabled` off both answer 404 saying so.
//! Subscriber addresses are in the one-swarm answer only for a caller with the read token
//! (when one is configured; `auth.rs`).

use std::{collections::HashMap, fmt::Write as _, sync::Arc, time::SystemTime};

use axum::{
    Json,
    extract::{Path, State as Ext},
    http::HeaderMap,
};
use peerwarden_swarms::{Bytes, SwarmSummary};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, auth,
    flows::{DEFAULT_LIMIT, MAX_LIMIT},
    query::{Query, parse_window},
    store,
};
use crate::{state::State, swarms::Swarms};

/// The query parameters of the list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// Bytes over this window from the history store (`90s`, `5m`, `2h`); default: since
    /// each swarm was first seen (the live table).
    window: Option<String>,
    /// At most this many (1 to 10,000; default 100).
    limit: Option<usize>,
    /// `transit_bytes` (default), `bytes` or `subscribers`; largest first.
    sort: Option<String>,
}

/// A swarm's bytes; each byte is counted once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SwarmBytesOut {
    /// Subscriber to subscriber (stays inside the network).
    local: u64,
    /// Subscribers to the internet.
    transit_up: u64,
    /// The internet to subscribers.
    transit_down: u64,
}

impl From<Bytes> for SwarmBytesOut {
    fn from(b: Bytes) -> Self {
        SwarmBytesOut {
            local: b.local,
            transit_up: b.transit_up,
            transit_down: b.transit_down,
        }
    }
}

/// One swarm.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SwarmOut {
    /// 40 hex digits: the info-hash, or its keyed pseudonym (`swarms.pseudonymize`).
    id: String,
    /// True when `id` is a pseudonym.
    pseudonymous: bool,
    /// Subscribers taking part now (0 for a swarm the live table no longer holds).
    subscribers: usize,
    /// Distinct remote peer addresses seen.
    remote_peers: usize,
    /// Bytes since first seen, or over `window`.
    bytes: SwarmBytesOut,
    /// Unix seconds (null for a swarm only the store still holds).
    first_seen: Option<u64>,
    /// Unix seconds.
    last_seen: Option<u64>,
}

/// The swarms, largest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SwarmList {
    swarms: Vec<SwarmOut>,
    /// Swarms the live table holds.
    tracked: usize,
    /// The window's seconds, when one was asked for.
    window_seconds: Option<u64>,
}

/// One subscriber's part in a swarm.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ParticipantOut {
    /// The subscriber's address.
    address: String,
    /// Bytes it sent in the swarm.
    sent: u64,
    /// Bytes it received in the swarm.
    received: u64,
    /// Unix seconds.
    first_seen: u64,
    /// Unix seconds.
    last_seen: u64,
}

/// One swarm with its participants.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SwarmDetail {
    #[serde(flatten)]
    swarm: SwarmOut,
    /// The subscribers taking part, most bytes first; null when the caller lacks the read
    /// token (`api.read_token`) a configured daemon asks for.
    participants: Option<Vec<ParticipantOut>>,
}

fn view(state: &State) -> Result<&Arc<Swarms>, ApiError> {
    state.deep.swarms.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "the swarm view is off: set swarms: { enabled: true } in the config".into(),
        )
    })
}

fn out(s: SwarmSummary) -> SwarmOut {
    SwarmOut {
        id: s.id,
        pseudonymous: s.pseudonymous,
        subscribers: s.subscribers,
        remote_peers: s.remote_peers,
        bytes: s.bytes.into(),
        first_seen: Some(s.first_seen),
        last_seen: Some(s.last_seen),
    }
}

fn hex(bytes: &[u8; 20]) -> String {
    bytes.iter().fold(String::with_capacity(40), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Swarms, largest first.
#[utoipa::path(get, path = "/api/v1/swarms", tag = "reports", params(Params),
    responses((status = 200, body = SwarmList), (status = 400, body = super::error::ErrorBody),
        (status = 404, description = "the swarm view is off (swarms.enabled)", body = super::error::ErrorBody)))]
pub async fn list(
    Ext(state): Ext<Arc<State>>,
    Query(p): Query<Params>,
) -> Result<Json<SwarmList>, ApiError> {
    let window = p.window.as_deref().map(parse_window).transpose()?;
    let sort = p.sort.as_deref().unwrap_or("transit_bytes");
    let key: fn(&SwarmOut) -> u64 = match sort {
        "transit_bytes" => |s| s.bytes.transit_up.saturating_add(s.bytes.transit_down),
        "bytes" => |s| {
            let b = &s.bytes;
            b.local
                .saturating_add(b.transit_up)
                .saturating_add(b.transit_down)
        },
        "subscribers" => |s| s.subscribers as u64,
        other => {
            return Err(ApiError::BadRequest(format!(
                "sort: {other:?} is not one of transit_bytes, bytes, subscribers"
            )));
        }
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is out of range (1 to {MAX_LIMIT})"
        )));
    }
    let swarms = view(&state)?;
    let live = swarms.with_table(|t| t.summaries());
    let tracked = live.len();
    let mut listed: Vec<SwarmOut> = match window {
        None => live.into_iter().map(out).collect(),
        Some(w) => {
            let now = peerwarden_history::unix(SystemTime::now());
            let from = now - i64::try_from(w).unwrap_or(i64::MAX).min(now);
            let rows = store::query(store::store(&state)?, move |h| {
                h.swarm_totals(from, now.saturating_add(60))
            })
            .await?;
            let mut live: HashMap<String, SwarmSummary> =
                live.into_iter().map(|s| (s.id.clone(), s)).collect();
            let pseudonymous = swarms.pseudonymous();
            rows.into_iter()
                .map(|r| {
                    let id = hex(&r.swarm);
                    let bytes = Bytes {
                        local: r.local,
                        transit_up: r.transit_up,
                        transit_down: r.transit_down,
                    };
                    match live.remove(&id) {
                        Some(s) => SwarmOut {
                            bytes: bytes.into(),
                            ..out(s)
                        },
                        None => SwarmOut {
                            id,
                            pseudonymous,
                            subscribers: 0,
                            remote_peers: 0,
                            bytes: bytes.into(),
                            first_seen: None,
                            last_seen: None,
                        },
                    }
                })
                .collect()
        }
    };
    listed.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.id.cmp(&b.id)));
    listed.truncate(limit);
    Ok(Json(SwarmList {
        swarms: listed,
        tracked,
        window_seconds: window,
    }))
}

/// One swarm of the live table, with its participants.
#[utoipa::path(get, path = "/api/v1/swarms/{id}", tag = "reports",
    params(("id" = String, Path, description = "40 hex digits, as the list gives it")),
    responses((status = 200, body = SwarmDetail), (status = 400, body = super::error::ErrorBody),
        (status = 404, description = "no such swarm, or the swarm view is off", body = super::error::ErrorBody)))]
pub async fn one(
    Ext(state): Ext<Arc<State>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SwarmDetail>, ApiError> {
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "id: {:?} is not 40 hex digits",
            id.chars().take(64).collect::<String>()
        )));
    }
    let swarms = view(&state)?;
    let may_see = auth::require_reader(&state, &headers).is_ok();
    let found = swarms.with_table(|t| {
        let sid = t.id_from_hex(&id)?;
        let s = t.get(&sid)?;
        let summary = SwarmSummary {
            id: sid.to_hex(),
            pseudonymous: sid.pseudonymous,
            subscribers: s.subscribers.len(),
            bytes: s.bytes,
            remote_peers: s.remote_peers(),
            first_seen: s.first_seen,
            last_seen: s.last_seen,
        };
        let mut people: Vec<ParticipantOut> = s
            .subscribers
            .iter()
            .map(|(a, sh)| ParticipantOut {
                address: a.to_string(),
                sent: sh.sent,
                received: sh.received,
                first_seen: sh.first_seen,
                last_seen: sh.last_seen,
            })
            .collect();
        people.sort_by(|a, b| {
            (b.sent + b.received)
                .cmp(&(a.sent + a.received))
                .then_with(|| a.address.cmp(&b.address))
        });
        Some((summary, people))
    });
    let Some((summary, people)) = found else {
        return Err(ApiError::NotFound(format!(
            "no swarm {}",
            id.to_ascii_lowercase()
        )));
    };
    Ok(Json(SwarmDetail {
        swarm: out(summary),
        participants: may_see.then_some(people),
    }))
}

/// The swarm view's totals for `/metrics` (no per-swarm series): nothing when it is off.
pub fn render_metrics(state: &State, out: &mut String) {
    let Some(swarms) = &state.deep.swarms else {
        return;
    };
    let (tracked, bytes) = swarms.with_table(|t| {
        let mut sum = Bytes::default();
        for (_, s) in t.iter() {
            sum.local = sum.local.saturating_add(s.bytes.local);
            sum.transit_up = sum.transit_up.saturating_add(s.bytes.transit_up);
            sum.transit_down = sum.transit_down.saturating_add(s.bytes.transit_down);
        }
        (t.len(), sum)
    });
    for (name, help, v) in [
        (
            "peerwarden_swarms_tracked",
            "Swarms the swarm view holds.",
            tracked as u64,
        ),
        (
            "peerwarden_swarms_local_bytes",
            "Bytes subscribers exchanged with each other in the swarms held (subscriber to subscriber).",
            bytes.local,
        ),
        (
            "peerwarden_swarms_transit_bytes",
            "Bytes of the swarms held that crossed the transit link, both ways.",
            bytes.transit(),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}
