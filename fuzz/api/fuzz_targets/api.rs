//! The REST API's query and body parsing, through the daemon's real router (no socket, no
//! kernel; state filled as the API's unit tests fill it). The first input byte picks a route,
//! the rest is its query string (bytes a URI cannot carry are percent-encoded, so `&`, `=`
//! and `%` stay the fuzzer's to place) or its body. Every answer must be a client error or a
//! success, never a server error, and every /api/v1 answer must be JSON.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::{
    body::Body,
    http::{Method, Request},
};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use peerwarden::{
    api::app,
    policy_store::PolicyStore,
    state::{State, StateOptions},
};
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token-0123456789";

const GET_ROUTES: [&str; 6] = [
    "/api/v1/mix",
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

fn state() -> Arc<State> {
    Arc::new(State::new(StateOptions {
        attachments: Vec::new(),
        history_seconds: 3600,
        flow_table_size: 4096,
        policy: PolicyStore::new(None),
        api_token: Some(TOKEN.into()),
        deep: Default::default(),
        clock: Default::default(),
    }))
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
