//! The REST API's query and body parsing, through the daemon's real router (no socket, no
//! kernel; state filled as the API's unit tests fill it, with a history store holding an
//! hour of label and subscriber rows, so windows and ranges reach the store's queries, and
//! a policy naming the stored subscribers). The first input byte picks a route,
//! the rest is its query string (bytes a URI cannot carry are percent-encoded, so `&`, `=`
//! and `%` stay the fuzzer's to place) or its body. Every answer must be a client error or a
//! success, never a server error, and every /api/v1 answer must be JSON.
#![no_main]

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use axum::{
    body::Body,
    http::{Method, Request},
};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use peerwarden::{
    api::app,
    history::History,
    policy_store::PolicyStore,
    state::{State, StateOptions},
};
use peerwarden_common::{
    CounterValue, Label,
    label::ALL_LABELS,
    policy::{SubUsage, Usage},
};
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token-0123456789";

const GET_ROUTES: [&str; 7] = [
    "/api/v1/mix",
    "/api/v1/policy",
    "/api/v1/mix/series",
    "/api/v1/flows",
    "/api/v1/subscribers/top",
    "/api/v1/status",
    "/api/v1/policy/rejected",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

const POLICY: &str = "timezone: UTC
plans:
  home:
    rate: { down: 100mbit, up: 20mbit }
    classes:
      p2p: { down: 5mbit, up: 1mbit, action: police }
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32] }
  - { id: bob, prefixes: [100.64.1.20/32] }
default_plan: home
";

/// One store for the whole run (the API only reads it), in a directory of the temp dir
/// named after the process: label rows for the last hour and both subscribers' readings.
fn store() -> Arc<History> {
    static STORE: OnceLock<Arc<History>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("peerwarden-fuzz-api-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let h = History::open(&dir.join("history.db"), "fuzz", Default::default())
                .expect("a history store");
            let now = SystemTime::now();
            for (i, mins) in [61u64, 50, 40, 5, 0].iter().enumerate() {
                let bytes = 1000 * (i as u64 + 1);
                let mut labels = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
                labels[Label::Bittorrent.id() as usize][1] = CounterValue {
                    packets: i as u64 + 1,
                    bytes,
                    flows: 1,
                };
                let mut u = SubUsage::default();
                u.labels[Label::Bittorrent.id() as usize][1] = Usage {
                    packets: i as u64 + 1,
                    bytes,
                };
                h.record(
                    now - Duration::from_secs(mins * 60),
                    &labels,
                    &[("alice".into(), 0, u), ("bob".into(), 1, u)],
                );
            }
            Arc::new(h)
        })
        .clone()
}

fn state() -> Arc<State> {
    let s = State::new(StateOptions {
        attachments: Vec::new(),
        history_seconds: 3600,
        flow_table_size: 4096,
        policy: PolicyStore::new(None),
        api_token: Some(TOKEN.into()),
        deep: Default::default(),
        clock: Default::default(),
    });
    let _ = s.history_store.set(store());
    // Reads of subscriber data need a token too: the write token the requests carry.
    let _ = s.api_read_token.set("fuzz-read-token-0123456789".into());
    if let Err(e) = s.policy.replace(POLICY.to_string(), "fuzz") {
        panic!("the fuzz policy: {e:?}");
    }
    Arc::new(s)
}

/// Percent-encodes what a URI's query or path cannot hold as it is.
fn uri_safe(raw: &[u8], keep: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    for &b in raw {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn request(pick: u8, rest: &[u8]) -> Request<Body> {
    let query = uri_safe(rest, b"&=%-._~:+,");
    let n = GET_ROUTES.len() as u8;
    let (method, uri, body) = match pick % (n + 3) {
        i if i < n => (
            Method::GET,
            format!("{}?{query}", GET_ROUTES[i as usize]),
            Body::empty(),
        ),
        i if i == n => (
            Method::GET,
            format!("/api/v1/subscribers/{}", uri_safe(rest, b"-._~")),
            Body::empty(),
        ),
        i if i == n + 1 => (
            Method::PUT,
            "/api/v1/policy".into(),
            Body::from(rest.to_vec()),
        ),
        _ => (
            Method::PUT,
            "/api/v1/clock".into(),
            Body::from(rest.to_vec()),
        ),
    };
    let content_type = if uri.ends_with("/clock") {
        "application/json"
    } else {
        "application/yaml"
    };
    let r = Request::builder()
        .method(method)
        .uri(&uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type);
    match r.body(body) {
        Ok(r) => r,
        Err(e) => panic!("request for {uri:?}: {e}"),
    }
}

fuzz_target!(|p: &[u8]| {
    let Some((&pick, rest)) = p.split_first() else {
        return;
    };
    let req = request(pick, rest);
    let uri = req.uri().to_string();
    runtime().block_on(async move {
        let resp = match app(state()).oneshot(req).await {
            Ok(r) => r,
            Err(e) => panic!("{uri}: {e}"),
        };
        let status = resp.status();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => panic!("{uri}: body: {e}"),
        };
        assert!(
            !status.is_server_error(),
            "{uri}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
            panic!(
                "{uri}: {status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            );
        }
    });
});
