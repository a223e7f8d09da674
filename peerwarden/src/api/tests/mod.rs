//! The router driven with `oneshot`, no socket and no kernel: state is filled by hand.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt as _;
use peerwarden_common::{
    CounterValue, FlowKey, FlowValue, Label,
    flow::{FAMILY_V4, PROTO_TCP},
    label::ALL_LABELS,
    policy::SubUsage,
};
use serde_json::Value;
use tower::ServiceExt as _;

use super::app;
use crate::{
    ktime,
    policy_store::PolicyStore,
    state::{LabelReading, State, StateOptions},
};

fn counters(bt_bytes: u64, unknown_flows: u64) -> Vec<[CounterValue; 2]> {
    let mut c = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
    c[Label::Bittorrent.id() as usize] = [
        CounterValue {
            packets: 10,
            bytes: bt_bytes,
            flows: 1,
        },
        CounterValue {
            packets: 20,
            bytes: bt_bytes * 2,
            flows: 0,
        },
    ];
    c[Label::Unknown.id() as usize][0] = CounterValue {
        packets: 3,
        bytes: 300,
        flows: unknown_flows,
    };
    c
}

fn flow(last: u8, label: Label, age_ns: u64) -> (FlowKey, FlowValue) {
    let mut k = FlowKey {
        family: FAMILY_V4,
        proto: PROTO_TCP,
        sub_port: 51413,
        remote_port: 6881,
        ..Default::default()
    };
    k.sub_addr[..4].copy_from_slice(&[100, 64, 1, last]);
    k.remote_addr[..4].copy_from_slice(&[198, 51, 100, 7]);
    // On a machine up for less than `age_ns` (CI's fresh machines run these tests minutes
    // after boot) the flow is as old as the clock allows: older than any window shorter
    // than the uptime, inside any longer one, as a flow that old would be.
    let now = ktime::monotonic_ns();
    let v = FlowValue {
        packets: [5, 6],
        bytes: [500, 600],
        first_seen_ns: now.saturating_sub(age_ns + 1000),
        last_seen_ns: now.saturating_sub(age_ns),
        label: label.id(),
        confidence: 1,
        ..Default::default()
    };
    (k, v)
}

const TOKEN: &str = "test-token-0123456789";

fn state() -> Arc<State> {
    state_with(None, 1000, None)
}

fn state_with(
    store: Option<Arc<crate::history::History>>,
    subscriber_series_limit: usize,
    read_token: Option<&str>,
) -> Arc<State> {
    state_with_deep(
        store,
        subscriber_series_limit,
        read_token,
        Default::default(),
    )
}

/// [`state_with`] with the deep tier's state given (the swarm view's tests).
fn state_with_deep(
    store: Option<Arc<crate::history::History>>,
    subscriber_series_limit: usize,
    read_token: Option<&str>,
    deep: Arc<crate::state::DeepState>,
) -> Arc<State> {
    let s = State::new(StateOptions {
        attachments: Vec::new(),
        recent_seconds: 3600,
        flow_table_size: 4096,
        policy: PolicyStore::new(None),
        api_token: Some(TOKEN.into()),
        api_read_token: read_token.map(str::to_string),
        deep,
        clock: Default::default(),
        store,
        subscribers: Default::default(),
        subscriber_series_limit,
        observe_mirror: None,
        alto: Default::default(),
    });
    let t0 = Instant::now() - Duration::from_secs(120);
    s.push_reading(LabelReading {
        at: t0,
        counters: counters(1000, 2),
    });
    s.push_reading(LabelReading {
        at: t0 + Duration::from_secs(60),
        counters: counters(5000, 2),
    });
    s.push_reading(LabelReading {
        at: t0 + Duration::from_secs(120),
        counters: counters(9000, 3),
    });
    s.set_flows(vec![
        flow(10, Label::Bittorrent, 1_000_000),
        flow(20, Label::Unknown, 2_000_000),
        flow(30, Label::BittorrentUtp, 600_000_000_000),
    ]);
    Arc::new(s)
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get(uri: &str) -> (StatusCode, Value) {
    send(
        &app(state()),
        Request::get(uri).body(Body::empty()).expect("request"),
    )
    .await
}

fn put_policy(body: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::put("/api/v1/policy").header("content-type", "application/yaml");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).expect("request")
}

const GOOD_POLICY: &str = include_str!("../../../../policies/examples/lab.yaml");

mod flows;
mod hardening;
mod metrics;
mod mix;
mod policy;
mod restart;
mod routes;
mod serving;
mod subscribers;
mod supervision;
mod swarms;

// ---- history store, subscribers, flows paging, metrics, request log -----------------------

/// A state like [`state`] with a history store in a fresh directory (removed on drop), the
/// policy below, and per-subscriber readings 10 s apart: alice's p2p down grew by
/// 12,500,000 bytes (10 Mbit/s) with 100 drops, bob's web down by 1,000,000 bytes.
struct Stored {
    state: Arc<State>,
    dir: std::path::PathBuf,
}

impl Drop for Stored {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const POLICED: &str = "timezone: UTC
plans:
  home:
    rate: { down: 100mbit, up: 20mbit }
    classes:
      p2p: { down: 5mbit, up: 1mbit, action: police }
      bittorrent.dht: { action: block }
      video: { dscp: AF41 }
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32] }
  - { id: bob, prefixes: [100.64.1.20/32] }
default_plan: home
";

/// A kernel reading of one subscriber: BitTorrent and HTTP coming down, p2p drops.
fn sub_reading(p2p_down: u64, p2p_dropped: u64, web_down: u64) -> SubUsage {
    use peerwarden_common::policy::{PolicyCount, Usage};
    let mut u = SubUsage::default();
    u.labels[Label::Bittorrent.id() as usize][1] = Usage {
        packets: p2p_down / 1250,
        bytes: p2p_down,
    };
    u.policy[0][1] = PolicyCount {
        dropped_packets: p2p_dropped,
        dropped_bytes: p2p_dropped * 1500,
        marked_packets: 0,
    };
    u.labels[Label::Http.id() as usize][1] = Usage {
        packets: web_down / 1000,
        bytes: web_down,
    };
    u
}

fn stored(name: &str) -> Stored {
    stored_with(name, 1000, None)
}

fn stored_with(name: &str, subscriber_series_limit: usize, read_token: Option<&str>) -> Stored {
    use std::time::SystemTime;
    let dir = std::env::temp_dir().join(format!("peerwarden-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let h = crate::history::History::open(&dir.join("history.db"), "test", Default::default())
        .expect("store");
    let state = state_with(Some(Arc::new(h)), subscriber_series_limit, read_token);
    assert!(state.policy.replace(POLICED.to_string(), "test").is_ok());
    let owners = vec![("alice".to_string(), 0u32), ("bob".to_string(), 1u32)];
    let h = state.store().expect("store");
    let now = SystemTime::now();
    let t0 = Instant::now() - Duration::from_secs(10);
    let readings = [
        (sub_reading(0, 0, 0), sub_reading(0, 0, 0)),
        (
            sub_reading(12_500_000, 100, 0),
            sub_reading(0, 0, 1_000_000),
        ),
    ];
    for (i, (alice, bob)) in readings.iter().enumerate() {
        state
            .subscribers
            .update(t0 + Duration::from_secs(10 * i as u64), &owners, |index| {
                Ok::<_, String>(if index == 0 { alice } else { bob }.classes())
            });
    }
    // Label counters: 50, 40 and 5 minutes ago (bittorrent up 1000, 4000, 10000).
    for (mins, bt) in [(50u64, 1000), (40, 4000), (5, 10_000)] {
        h.record(now - Duration::from_secs(mins * 60), &counters(bt, 0), &[]);
    }
    // The subscribers' kernel readings, recorded now.
    let (alice, bob) = readings[1];
    h.record(
        now,
        &counters(10_000, 0),
        &[("alice".into(), 0, alice), ("bob".into(), 1, bob)],
    );
    Stored { state, dir }
}

/// The `/metrics` text of `state`.
async fn metrics_text(state: &Arc<State>) -> String {
    let resp = app(state.clone())
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(body.to_vec()).expect("utf-8")
}

async fn get_on(state: &Arc<State>, uri: &str) -> (StatusCode, Value) {
    send(
        &app(state.clone()),
        Request::get(uri).body(Body::empty()).expect("request"),
    )
    .await
}

fn ago(mins: u64) -> String {
    ktime::rfc3339(std::time::SystemTime::now() - Duration::from_secs(mins * 60))
}
