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
    let now = ktime::monotonic_ns();
    let v = FlowValue {
        packets: [5, 6],
        bytes: [500, 600],
        first_seen_ns: now - age_ns - 1000,
        last_seen_ns: now - age_ns,
        label: label.id(),
        confidence: 1,
        ..Default::default()
    };
    (k, v)
}

const TOKEN: &str = "test-token-0123456789";

fn state() -> Arc<State> {
    state_with(None, 1000)
}

fn state_with(
    store: Option<Arc<crate::history::History>>,
    subscriber_series_limit: usize,
) -> Arc<State> {
    let s = State::new(StateOptions {
        attachments: Vec::new(),
        recent_seconds: 3600,
        flow_table_size: 4096,
        policy: PolicyStore::new(None),
        api_token: Some(TOKEN.into()),
        deep: Default::default(),
        clock: Default::default(),
        store,
        subscribers: Default::default(),
        subscriber_series_limit,
        observe_mirror: None,
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

const GOOD_POLICY: &str = include_str!("../../../policies/examples/lab.yaml");

#[tokio::test]
async fn policy_writes_need_the_token_and_bad_ones_change_nothing() {
    let app = app(state());
    let (status, _) = send(
        &app,
        Request::get("/api/v1/policy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no policy yet");
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong-token-0123456789"), StatusCode::UNAUTHORIZED),
        (Some(""), StatusCode::UNAUTHORIZED),
    ] {
        let (status, v) = send(&app, put_policy(GOOD_POLICY, token)).await;
        assert_eq!(status, want, "{token:?}");
        assert_eq!(v["error"], "unauthorized");
    }
    let (status, _) = send(
        &app,
        Request::get("/api/v1/policy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "refused writes changed nothing"
    );

    let (status, v) = send(&app, put_policy(GOOD_POLICY, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["origin"], "api");
    assert_eq!(v["subscribers"], 2);

    let bad = GOOD_POLICY.replace("plan: home-50", "plan: home-500");
    let (status, v) = send(&app, put_policy(&bad, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "invalid_policy");
    let first = &v["errors"][0];
    assert!(
        first["line"].as_u64().is_some_and(|l| l > 0)
            && first["column"].as_u64().is_some_and(|c| c > 0),
        "{v}"
    );
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("home-500")),
        "{v}"
    );
    let (_, v) = send(
        &app,
        Request::get("/api/v1/policy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(v["source"], GOOD_POLICY, "the running policy stays");
    let (status, v) = send(
        &app,
        Request::get("/api/v1/policy/rejected")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["origin"], "api");
    let (_, v) = send(
        &app,
        Request::get("/api/v1/status")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(
        (v["policy_reloads"].as_u64(), v["policy_failures"].as_u64()),
        (Some(1), Some(1))
    );

    let (status, v) = send(&app, put_policy("\u{0}not: [yaml", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut not_utf8 = put_policy("", Some(TOKEN));
    *not_utf8.body_mut() = Body::from(vec![0xff, 0xfe, 0x00]);
    let (status, _) = send(&app, not_utf8).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn writes_are_refused_without_a_configured_token() {
    let s = State::new(StateOptions {
        attachments: Vec::new(),
        recent_seconds: 60,
        flow_table_size: 16,
        policy: PolicyStore::new(None),
        api_token: None,
        deep: Default::default(),
        clock: Default::default(),
        store: None,
        subscribers: Default::default(),
        subscriber_series_limit: 1000,
        observe_mirror: None,
    });
    let (status, v) = send(&app(Arc::new(s)), put_policy(GOOD_POLICY, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("api.token"))
    );
}

#[tokio::test]
async fn every_documented_route_answers_and_every_route_is_documented() {
    let (status, doc) = get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let app = app(state());
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(path.as_str())
                .body(Body::empty())
                .expect("req");
            let resp = app.clone().oneshot(req).await.expect("response");
            // Answers: not the router's 404/405 for an unknown route.
            let s = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert!(
                s != StatusCode::METHOD_NOT_ALLOWED && v["detail"] != format!("no route {path}"),
                "{method} {path}: {s}"
            );
        }
    }
    documented.sort();
    // Every route the router serves (but the document itself) is in the document.
    let mut served = vec![
        "GET /api/v1/flows",
        "GET /api/v1/mix",
        "GET /api/v1/policy",
        "GET /api/v1/policy/rejected",
        "GET /api/v1/status",
        "GET /healthz",
        "GET /metrics",
        "PUT /api/v1/policy",
        "GET /api/v1/mix/series",
        "GET /",
        "GET /assets/{file}",
        "GET /api/v1/clock",
        "PUT /api/v1/clock",
        "GET /api/v1/subscribers/top",
        "GET /api/v1/subscribers/{id}",
    ];
    served.sort();
    assert_eq!(documented, served);
    let (router, _) = super::router();
    drop(router);
}

#[tokio::test]
async fn mix_since_start_sums_labels_into_classes() {
    let (status, v) = get("/api/v1/mix").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["window_seconds"], Value::Null);
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([9000, 18000])
    );
    assert_eq!(
        v["classes"]["p2p"]["bytes"],
        serde_json::json!([9000, 18000])
    );
    assert_eq!(v["classes"]["p2p"]["packets"], serde_json::json!([10, 20]));
    // 3 flows created, 1 of them labelled bittorrent: 2 remain unknown.
    assert_eq!(v["labels"]["unknown"]["flows"], 2);
    assert_eq!(v["classes"]["video"]["bytes"], serde_json::json!([0, 0]));
}

#[tokio::test]
async fn mix_over_a_window_is_the_difference() {
    let (status, v) = get("/api/v1/mix?window=60s").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["window_seconds"], 60);
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([4000, 8000])
    );
    // Flows active in the last minute: the bittorrent and the unknown one, not the old uTP.
    assert_eq!(v["classes"]["p2p"]["flows"], 1);
    assert!(v["labels"].get("bittorrent.utp").is_none());
    let (_, v) = get("/api/v1/mix?window=1m").await;
    assert_eq!(v["window_seconds"], 60);
}

#[tokio::test]
async fn flows_are_filtered_and_newest_first() {
    let (status, v) = get("/api/v1/flows").await;
    assert_eq!(status, StatusCode::OK);
    let flows = v["flows"].as_array().expect("array");
    assert_eq!(flows.len(), 3);
    assert_eq!(flows[0]["src"], "100.64.1.10");
    assert_eq!(flows[2]["label"], "bittorrent.utp");
    assert_eq!(flows[0]["dst"], "198.51.100.7");
    assert_eq!(flows[0]["proto"], "tcp");
    assert_eq!(flows[0]["packets"], serde_json::json!([5, 6]));
    let (_, v) = get("/api/v1/flows?class=p2p").await;
    assert_eq!(v["flows"].as_array().expect("array").len(), 2);
    let (_, v) = get("/api/v1/flows?label=bittorrent&limit=1").await;
    let flows = v["flows"].as_array().expect("array");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["class"], "p2p");
    assert_eq!(flows[0]["confidence"], "payload");
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    for uri in [
        "/api/v1/flows?label=napster",
        "/api/v1/flows?class=warez",
        "/api/v1/flows?limit=0",
        "/api/v1/flows?limit=-3",
        "/api/v1/flows?limit=99999999",
        "/api/v1/flows?bogus=1",
        "/api/v1/mix?window=abc",
        "/api/v1/mix?window=0s",
        "/api/v1/mix?window=3d",
        "/api/v1/mix?window=2h",
        "/api/v1/mix?window=99999999999999999999",
    ] {
        let (status, v) = get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], "bad_request", "{uri}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{uri}");
    }
    let (status, v) = get("/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let resp = app(state())
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    let bt_down = scrape.samples.iter().find(|s| {
        s.metric == "peerwarden_traffic_bytes_total"
            && s.labels.get("label") == Some("bittorrent")
            && s.labels.get("direction") == Some("down")
    });
    match bt_down.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v)) => assert_eq!(*v, 18000.0),
        other => panic!("bittorrent down bytes: {other:?}"),
    }
    let table = scrape
        .samples
        .iter()
        .find(|s| s.metric == "peerwarden_flow_table_capacity")
        .expect("capacity");
    assert!(matches!(table.value, prometheus_parse::Value::Gauge(v) if v == 4096.0));
}

#[tokio::test]
async fn mix_series_has_one_point_per_step() {
    // The hand-filled history has readings 60 s apart: a 120 s window in 60 s steps.
    let (status, v) = get("/api/v1/mix/series?window=2m&step=60s").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["window_seconds"].as_u64(), v["step_seconds"].as_u64()),
        (Some(120), Some(60))
    );
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{v}");
    for p in points {
        assert_eq!(
            p["classes"]["p2p"]["bytes"],
            serde_json::json!([4000, 8000]),
            "{p}"
        );
        assert_eq!(p["classes"]["p2p"]["packets"], serde_json::json!([0, 0]));
        assert_eq!(p["classes"]["video"]["bytes"], serde_json::json!([0, 0]));
        assert!(
            p["labels"].get("unknown").is_none(),
            "only labels with traffic in the step: {p}"
        );
        assert!(p["t"].as_str().is_some_and(|t| t.ends_with('Z')), "{p}");
    }
    assert_eq!(v["label_classes"]["bittorrent.utp"], "p2p");
    // Steps with no reading before them (the daemon was not running) are left out.
    let (status, v) = get("/api/v1/mix/series?window=1h&step=60s").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["points"].as_array().expect("points").len(), 2);
    // Defaults: 10 minutes in 10 s steps.
    let (_, v) = get("/api/v1/mix/series").await;
    assert_eq!(
        (v["window_seconds"].as_u64(), v["step_seconds"].as_u64()),
        (Some(600), Some(10))
    );
}

#[tokio::test]
async fn mix_series_refuses_bad_windows_and_steps() {
    for uri in [
        "/api/v1/mix/series?window=0s",
        "/api/v1/mix/series?window=2h",
        "/api/v1/mix/series?window=abc",
        "/api/v1/mix/series?step=0s",
        "/api/v1/mix/series?step=-1",
        "/api/v1/mix/series?window=1m&step=2m",
        "/api/v1/mix/series?window=1h&step=1s",
        "/api/v1/mix/series?bogus=1",
    ] {
        let (status, v) = get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"], "bad_request", "{uri}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{uri}");
    }
    // Exactly 1,000 points is allowed.
    let (status, _) = get("/api/v1/mix/series?window=1000s&step=1s").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_with_their_types() {
    for (uri, want) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let resp = app(state())
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()["content-type"], want, "{uri}");
        assert!(
            resp.headers()["content-security-policy"]
                .to_str()
                .expect("ascii")
                .starts_with("default-src 'self'")
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(body.len() > 500, "{uri}: {} bytes", body.len());
    }
    let (status, v) = get("/assets/nothing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
}

fn put_clock(body: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::put("/api/v1/clock").header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).expect("request")
}

#[tokio::test]
async fn the_clock_moves_with_the_token_and_reevaluates() {
    let s = state();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    s.clock.set_reevaluate({
        let hits = hits.clone();
        Box::new(move || Ok(hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0))
    });
    let app = app(s.clone());
    let (status, v) = send(
        &app,
        Request::get("/api/v1/clock")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["offset_seconds"], 0);
    assert!(v.get("policy_local").is_none(), "no policy: {v}");

    let (status, _) = send(&app, put_clock(r#"{"offset_seconds": 3600}"#, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.clock.offset(), 0, "a refused write moves nothing");

    let (status, v) = send(&app, put_clock(r#"{"offset_seconds": 3600}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["offset_seconds"].as_i64(), v["rules_changed"].as_bool()),
        (Some(3600), Some(true))
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "re-evaluated once, at once"
    );

    // An absolute time: 2030-01-07 was a Monday; the policy's zone is UTC.
    let (status, _) = send(&app, put_policy(GOOD_POLICY, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = send(
        &app,
        put_clock(r#"{"now": "2030-01-07T19:30:00Z"}"#, Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["rules_changed"], false);
    let local = v["policy_local"].as_str().expect("a policy is loaded");
    assert!(
        local.starts_with("mon 19:3") && local.ends_with("UTC"),
        "{local}"
    );
    let now: jiff::Timestamp = v["now"].as_str().expect("now").parse().expect("RFC 3339");
    let want: jiff::Timestamp = "2030-01-07T19:30:00Z".parse().expect("time");
    assert!((now.as_second() - want.as_second()).abs() <= 2, "{now}");

    for bad in [
        r#"{}"#,
        r#"{"offset_seconds": 1, "now": "2030-01-07T19:30:00Z"}"#,
        r#"{"now": "tomorrow"}"#,
        r#"{"offset_seconds": 99999999999}"#,
        r#"{"offset": 5}"#,
        "not json",
    ] {
        let (status, v) = send(&app, put_clock(bad, Some(TOKEN))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"], "bad_request");
    }
    let (_, v) = send(&app, put_clock(r#"{"offset_seconds": 0}"#, Some(TOKEN))).await;
    assert_eq!(v["offset_seconds"], 0);
}

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
    stored_with(name, 1000)
}

fn stored_with(name: &str, subscriber_series_limit: usize) -> Stored {
    use std::time::SystemTime;
    let dir = std::env::temp_dir().join(format!("peerwarden-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let h = crate::history::History::open(&dir.join("history.db"), "test", Default::default())
        .expect("store");
    let state = state_with(Some(Arc::new(h)), subscriber_series_limit);
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

#[tokio::test]
async fn mix_over_a_range_comes_from_the_store() {
    let s = stored("mix");
    let (status, v) = get_on(&s.state, &format!("/api/v1/mix?from={}", ago(120))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Three readings: 1000 whole (the counters were new), then +3000 and +6000.
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([10_000, 20_000]),
        "{v}"
    );
    assert_eq!(
        v["classes"]["p2p"]["bytes"],
        serde_json::json!([10_000, 20_000])
    );
    assert_eq!(v["range"]["source"], "store");
    assert!(
        v["range"]["from"]
            .as_str()
            .is_some_and(|f| f.ends_with(":00.000Z")),
        "{v}"
    );
    let (_, v) = get_on(
        &s.state,
        &format!("/api/v1/mix?from={}&to={}", ago(45), ago(2)),
    )
    .await;
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([9000, 18_000]),
        "{v}"
    );
    // Longer than the in-memory hour: the store answers a window too.
    let (status, v) = get_on(&s.state, "/api/v1/mix?window=2h").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["range"]["source"], "store");
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([10_000, 20_000])
    );
    // Within it: memory, as before.
    let (_, v) = get_on(&s.state, "/api/v1/mix?window=60s").await;
    assert!(v.get("range").is_none(), "{v}");
    for uri in [
        format!("/api/v1/mix?to={}", ago(1)),
        format!("/api/v1/mix?from={}&to={}", ago(1), ago(2)),
        format!("/api/v1/mix?from={}&window=1h", ago(5)),
        "/api/v1/mix?from=noon".to_string(),
    ] {
        let (status, v) = get_on(&s.state, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"], "bad_request");
    }
    // Without a store, ranges are refused with a reason.
    let (status, v) = get(&format!("/api/v1/mix?from={}", ago(10))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("history store")),
        "{v}"
    );
}

#[tokio::test]
async fn mix_series_over_a_range_comes_from_the_store_in_minutes() {
    let s = stored("series");
    let (status, v) = get_on(
        &s.state,
        &format!("/api/v1/mix/series?from={}&step=10m", ago(60)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["step_seconds"], 600);
    let points = v["points"].as_array().expect("points");
    assert!((6..=7).contains(&points.len()), "{}", points.len());
    let up: u64 = points
        .iter()
        .filter_map(|p| p["classes"]["p2p"]["bytes"][0].as_u64())
        .sum();
    assert_eq!(up, 10_000, "every byte in exactly one step: {v}");
    // Default step: whole minutes, at most 1,000 points.
    let (_, v) = get_on(
        &s.state,
        &format!("/api/v1/mix/series?from={}", ago(3 * 24 * 60)),
    )
    .await;
    assert_eq!(
        v["step_seconds"], 300,
        "3 days in 1,000 points or fewer: {}",
        v["step_seconds"]
    );
    for uri in [
        format!("/api/v1/mix/series?from={}&step=30s", ago(60)),
        format!("/api/v1/mix/series?from={}&step=1m", ago(2 * 24 * 60)),
        format!("/api/v1/mix/series?from={}&window=1h", ago(60)),
    ] {
        let (status, v) = get_on(&s.state, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }
}

#[tokio::test]
async fn top_subscribers_by_class_label_and_window() {
    let s = stored("top");
    let (status, v) = get_on(&s.state, "/api/v1/subscribers/top").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["by"].as_str(), v["basis"].as_str()),
        (Some("class"), Some("counters"))
    );
    let subs = v["subscribers"].as_array().expect("list");
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["id"], "alice");
    assert_eq!(subs[0]["plan"], "home");
    assert_eq!(subs[0]["bytes"], serde_json::json!([0, 12_500_000]));
    assert_eq!(
        subs[0]["classes"]["p2p"]["bytes"],
        serde_json::json!([0, 12_500_000])
    );
    let (_, v) = get_on(
        &s.state,
        "/api/v1/subscribers/top?by=class&name=web&limit=5",
    )
    .await;
    let subs = v["subscribers"].as_array().expect("list");
    assert_eq!(subs.len(), 1, "alice has no web traffic: {v}");
    assert_eq!(subs[0]["id"], "bob");
    let (status, v) = get_on(&s.state, "/api/v1/subscribers/top?name=p2p&window=1h").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["basis"], "store");
    assert_eq!(
        v["subscribers"][0]["bytes"],
        serde_json::json!([0, 12_500_000]),
        "{v}"
    );
    // Per label, from the flow table: alice's bittorrent flow.
    let (_, v) = get_on(&s.state, "/api/v1/subscribers/top?by=label&name=bittorrent").await;
    assert_eq!(v["basis"], "flows");
    assert_eq!(v["subscribers"][0]["id"], "alice", "{v}");
    assert_eq!(v["subscribers"][0]["bytes"], serde_json::json!([500, 600]));
    // Over a window, from the store's per-subscriber label rows.
    let (_, v) = get_on(
        &s.state,
        "/api/v1/subscribers/top?by=label&name=http&window=1h",
    )
    .await;
    assert_eq!(v["basis"], "store", "{v}");
    assert_eq!(v["range"]["source"], "store");
    assert_eq!(v["subscribers"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["subscribers"][0]["id"], "bob");
    assert_eq!(
        v["subscribers"][0]["bytes"],
        serde_json::json!([0, 1_000_000])
    );
    assert_eq!(v["subscribers"][0]["packets"], serde_json::json!([0, 1000]));
    for uri in [
        "/api/v1/subscribers/top?by=label",
        "/api/v1/subscribers/top?by=plan",
        "/api/v1/subscribers/top?name=warez",
        "/api/v1/subscribers/top?limit=0",
        "/api/v1/subscribers/top?window=forever",
    ] {
        let (status, v) = get_on(&s.state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }
    // Without a store: since start only.
    let (status, _) = get("/api/v1/subscribers/top?window=1h").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn one_subscriber_shows_plan_rates_usage_and_limiting() {
    let s = stored("one");
    let (status, v) = get_on(&s.state, "/api/v1/subscribers/alice").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["in_policy"], true);
    assert_eq!(v["prefixes"], serde_json::json!(["100.64.1.10/32"]));
    assert_eq!(v["plan"]["name"], "home");
    assert_eq!(
        v["plan"]["rate_bits_per_second"],
        serde_json::json!([20_000_000, 100_000_000])
    );
    assert_eq!(v["rates"]["seconds"], 10.0);
    assert_eq!(
        v["rates"]["classes"]["p2p"]["bits_per_second"],
        serde_json::json!([0, 10_000_000]),
        "{v}"
    );
    assert_eq!(v["usage"]["basis"], "store");
    assert_eq!(
        v["usage"]["classes"]["p2p"]["bytes"],
        serde_json::json!([0, 12_500_000]),
        "{v}"
    );
    assert_eq!(
        v["usage"]["classes"]["p2p"]["dropped_packets"],
        serde_json::json!([0, 100])
    );
    // Per label, from the store's per-subscriber label rows: only labels with traffic.
    assert_eq!(
        v["usage"]["labels"],
        serde_json::json!({"bittorrent": {"bytes": [0, 12_500_000], "packets": [0, 10_000]}}),
        "{v}"
    );
    let l = &v["limiting"];
    assert_eq!(
        (l["dropping"].as_bool(), l["marking"].as_bool()),
        (Some(true), Some(false)),
        "{l}"
    );
    let entry = &l["classes"][0];
    assert_eq!(
        (entry["class"].as_str(), entry["direction"].as_str()),
        (Some("p2p"), Some("down"))
    );
    assert_eq!(entry["dropped_packets"], 100);
    assert_eq!(entry["plan_rate_bits_per_second"], 100_000_000);
    // The rules in force that cover p2p: the class rule and the DHT label's block.
    let rules = entry["rules"].as_array().expect("rules");
    let police = rules
        .iter()
        .find(|r| r["target"] == "p2p")
        .expect("p2p rule");
    assert_eq!(police["action"], "police");
    assert_eq!(
        police["rate_bits_per_second"],
        serde_json::json!([null, 5_000_000])
    );
    assert!(
        rules
            .iter()
            .any(|r| r["target"] == "bittorrent.dht" && r["action"] == "block"),
        "{rules:?}"
    );
    let (_, v) = get_on(&s.state, "/api/v1/subscribers/bob").await;
    assert_eq!(v["limiting"]["dropping"], false);
    assert_eq!(v["limiting"]["classes"], serde_json::json!([]));
    assert_eq!(
        v["rates"]["classes"]["web"]["bits_per_second"],
        serde_json::json!([0, 800_000])
    );
    assert_eq!(
        v["usage"]["labels"]["http"]["bytes"],
        serde_json::json!([0, 1_000_000])
    );
    let (status, v) = get_on(&s.state, "/api/v1/subscribers/mallory").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, _) = get_on(&s.state, "/api/v1/subscribers/alice?window=0s").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn one_subscribers_mix_by_label_and_class_comes_from_the_store() {
    let s = stored("submix");
    let (status, v) = get_on(&s.state, "/api/v1/mix?subscriber=alice&by=label&window=1h").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["range"]["source"], "store");
    assert_eq!(
        v["labels"],
        serde_json::json!({"bittorrent": {"bytes": [0, 12_500_000], "packets": [0, 10_000], "flows": 0}}),
        "{v}"
    );
    assert_eq!(v["classes"], serde_json::json!({}), "by=label: labels only");
    let (_, v) = get_on(&s.state, "/api/v1/mix?subscriber=bob&by=class&window=1h").await;
    assert_eq!(v["labels"], serde_json::json!({}));
    assert_eq!(
        v["classes"]["web"]["bytes"],
        serde_json::json!([0, 1_000_000])
    );
    assert_eq!(v["classes"]["p2p"]["bytes"], serde_json::json!([0, 0]));
    // Both, and the label rows of one subscriber only.
    let (_, v) = get_on(&s.state, "/api/v1/mix?subscriber=bob").await;
    assert_eq!(v["labels"].as_object().map(|m| m.len()), Some(1), "{v}");
    assert_eq!(
        v["classes"]["web"]["bytes"],
        serde_json::json!([0, 1_000_000])
    );
    for (uri, code) in [
        ("/api/v1/mix?subscriber=mallory", StatusCode::NOT_FOUND),
        (
            "/api/v1/mix?subscriber=alice&by=flow",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/mix?by=label", StatusCode::BAD_REQUEST),
        (
            "/api/v1/mix?subscriber=alice&window=1h&from=2026-01-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, v) = get_on(&s.state, uri).await;
        assert_eq!(status, code, "{uri}: {v}");
        assert!(v["error"].is_string(), "{uri}: {v}");
    }
}

#[tokio::test]
async fn flows_filter_by_subscriber_and_address_and_page_with_a_cursor() {
    let s = stored("flows");
    let (_, v) = get_on(&s.state, "/api/v1/flows?subscriber=alice").await;
    let flows = v["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 1, "{v}");
    assert_eq!(
        (flows[0]["src"].as_str(), flows[0]["subscriber"].as_str()),
        (Some("100.64.1.10"), Some("alice"))
    );
    let (_, v) = get_on(&s.state, "/api/v1/flows?address=198.51.100.7").await;
    assert_eq!(
        v["flows"].as_array().map(Vec::len),
        Some(3),
        "either side: the remote one"
    );
    let (_, v) = get_on(&s.state, "/api/v1/flows?address=100.64.1.20").await;
    assert_eq!(v["flows"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["next_cursor"], Value::Null);
    // Pages of one: every flow once, newest first, then no cursor.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/flows?limit=1".to_string();
    loop {
        let (status, v) = get_on(&s.state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        seen.extend(
            v["flows"]
                .as_array()
                .expect("flows")
                .iter()
                .map(|f| f["src"].as_str().unwrap_or("").to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/flows?limit=1&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, ["100.64.1.10", "100.64.1.20", "100.64.1.30"]);
    for (uri, want) in [
        ("/api/v1/flows?subscriber=mallory", StatusCode::NOT_FOUND),
        ("/api/v1/flows?address=100.64.1", StatusCode::BAD_REQUEST),
        ("/api/v1/flows?cursor=abc", StatusCode::BAD_REQUEST),
        (
            "/api/v1/flows?cursor=zz000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, v) = get_on(&s.state, uri).await;
        assert_eq!(status, want, "{uri}: {v}");
    }
}

#[tokio::test]
async fn metrics_have_policy_drops_reloads_and_capped_subscriber_series() {
    let s = stored_with("metrics", 1);
    let resp = app(s.state.clone())
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let value = |metric: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let p2p_down = [("class", "p2p"), ("direction", "down")];
    assert_eq!(
        value("peerwarden_policy_dropped_packets_total", &p2p_down),
        Some(100.0)
    );
    assert_eq!(
        value("peerwarden_policy_dropped_bytes_total", &p2p_down),
        Some(150_000.0)
    );
    assert_eq!(
        value("peerwarden_policy_marked_packets_total", &p2p_down),
        Some(0.0)
    );
    assert_eq!(value("peerwarden_policy_reloads_total", &[]), Some(1.0));
    assert_eq!(
        value("peerwarden_policy_reload_failures_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value("peerwarden_deep_samples_dropped_total", &[]),
        Some(0.0)
    );
    assert_eq!(value("peerwarden_subscribers_known", &[]), Some(2.0));
    assert_eq!(
        value("peerwarden_subscriber_series_subscribers", &[]),
        Some(1.0)
    );
    // The cap keeps the top subscriber by bytes: alice, not bob.
    assert_eq!(
        value(
            "peerwarden_subscriber_bytes_total",
            &[
                ("subscriber", "alice"),
                ("class", "p2p"),
                ("direction", "down")
            ]
        ),
        Some(12_500_000.0)
    );
    assert!(
        value(
            "peerwarden_subscriber_bytes_total",
            &[("subscriber", "bob")]
        )
        .is_none()
    );
    let per_sub = scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("peerwarden_subscriber_") && s.metric.ends_with("_total"))
        .count();
    assert_eq!(
        per_sub, 40,
        "5 metrics x 4 classes x 2 directions for one subscriber"
    );
    let none = stored_with("metrics-limit-0", 0);
    let text = super::metrics::render(&none.state);
    assert!(
        !text.contains("subscriber=\""),
        "limit 0: no per-subscriber series"
    );
}

/// Collects what `tracing` writes while a test runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `tracing` writes in this test binary: a global subscriber, set once (a
/// scoped one races with the callsite cache while other tests log on other threads).
fn global_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        captured
    })
}

#[tokio::test]
async fn requests_are_logged_without_secrets() {
    let captured = global_log();
    let app = app(state());
    // A peer address no other test uses, to pick this test's lines out of the log.
    let peer = axum::extract::ConnectInfo(super::tls::Peer(std::net::SocketAddr::from((
        [192, 0, 2, 77],
        4242,
    ))));
    let secret = "Bearer wrong-but-secret-0123456789";
    let mut req = Request::put("/api/v1/policy?token=query-secret-42")
        .header("authorization", secret)
        .body(Body::from("body-secret: 1\n"))
        .expect("request");
    req.extensions_mut().insert(peer);
    let (status, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut req = Request::get("/api/v1/mix")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(peer);
    let (status, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let log = String::from_utf8(captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .expect("utf-8");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peerwarden::access") && l.contains("peer=192.0.2.77:4242"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("method=PUT")
            && lines[0].contains("path=/api/v1/policy ")
            && lines[0].contains("status=401"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("latency_ms="), "{}", lines[0]);
    assert!(
        lines[1].contains("method=GET") && lines[1].contains("status=200"),
        "{}",
        lines[1]
    );
    for secret in ["wrong-but-secret", "query-secret", "body-secret", "Bearer"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// Found by the `api` fuzz target (fuzz/api): a subscriber id that is not UTF-8 once
/// percent-decoded got axum's plain-text 400; it must be the API's JSON error like the rest.
#[tokio::test]
async fn a_subscriber_id_that_is_not_utf8_is_a_json_bad_request() {
    for uri in ["/api/v1/subscribers/al%86", "/api/v1/subscribers/%FF%FE"] {
        let (status, v) = get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], "bad_request", "{uri}: {v}");
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains("UTF-8")),
            "{uri}: {v}"
        );
    }
}
