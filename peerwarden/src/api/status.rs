//! `GET /api/v1/status`: programs attached, interfaces and XDP mode, map fill levels,
//! policy reloads, uptime.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
};

use axum::{Json, extract::State as Ext};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ktime, probe::Attachment, state::State};

/// Fill level of a kernel map.
#[derive(Serialize, ToSchema)]
pub struct MapFill {
    /// Entries in use.
    entries: u64,
    /// Capacity.
    capacity: u64,
}

/// Daemon status.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// Start time (RFC 3339).
    since: String,
    /// Seconds since start.
    uptime_seconds: u64,
    /// `inline` (in the path, policies enforced) or `observe` (on a mirror port: classify
    /// and report, never drop or change a packet).
    mode: &'static str,
    /// Observe mode: the mirror interface.
    mirror: Option<String>,
    /// Where the programs are attached and in which XDP mode.
    attached: Vec<Attachment>,
    /// Kernel maps' fill levels.
    maps: BTreeMap<&'static str, MapFill>,
    /// The probe's own statistics since start.
    probe: BTreeMap<&'static str, u64>,
    /// Policies accepted since start.
    policy_reloads: u64,
    /// Policies refused since start.
    policy_failures: u64,
    /// Origin of the active policy, if any.
    policy_origin: Option<String>,
}

/// Daemon status.
#[utoipa::path(get, path = "/api/v1/status", tag = "status", responses((status = 200, body = Status)))]
pub async fn get(Ext(state): Ext<Arc<State>>) -> Json<Status> {
    let mut maps = BTreeMap::new();
    maps.insert(
        "flows",
        MapFill {
            entries: state.flows.len() as u64,
            capacity: state.flow_table_size().into(),
        },
    );
    Json(Status {
        since: ktime::rfc3339(state.started),
        uptime_seconds: state.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
        mode: if state.observe_mirror().is_some() {
            "observe"
        } else {
            "inline"
        },
        mirror: state.observe_mirror().map(str::to_string),
        attached: state.attachments.clone(),
        maps,
        probe: state.stats(),
        policy_reloads: state.policy.reloads.load(Ordering::Relaxed),
        policy_failures: state.policy.failures.load(Ordering::Relaxed),
        policy_origin: state.policy.active().map(|a| a.origin),
    })
}
