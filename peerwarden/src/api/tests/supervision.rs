//! `/healthz` and `/metrics` with a failed supervised thread.

use super::*;
use crate::supervision::{STALL_BOUND, supervised};

fn thread_up(text: &str, thread: &str) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "peerwarden_thread_up" && s.labels.get("thread") == Some(thread))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("peerwarden_thread_up is a gauge: {other:?}"),
        })
}

#[tokio::test]
async fn healthz_is_503_naming_a_panicked_thread_and_metrics_show_it_down() {
    let state = state();
    let counters = state.threads.register("read-counters", STALL_BOUND);
    let flows = state.threads.register("read-flows", STALL_BOUND);
    counters.beat();
    let (status, body) = get_on(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert!(body.get("failed").is_none(), "{body}");
    let text = metrics_text(&state).await;
    assert_eq!(thread_up(&text, "read-counters"), Some(1.0), "{text}");
    assert_eq!(thread_up(&text, "read-flows"), Some(1.0), "{text}");

    let joined = std::thread::spawn(move || supervised(&flows, || panic!("walk failed"))).join();
    assert!(joined.is_err());
    let (status, body) = get_on(&state, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["failed"][0]["thread"], "read-flows", "{body}");
    assert_eq!(
        body["failed"][0]["error"], "panicked: walk failed",
        "{body}"
    );
    assert_eq!(body["failed"].as_array().map(Vec::len), Some(1), "{body}");
    let text = metrics_text(&state).await;
    assert_eq!(thread_up(&text, "read-counters"), Some(1.0), "{text}");
    assert_eq!(thread_up(&text, "read-flows"), Some(0.0), "{text}");
}

#[tokio::test]
async fn healthz_names_a_stalled_thread() {
    let state = state();
    let _deep = state.threads.register("deep", STALL_BOUND);
    let failed = state
        .threads
        .check(Instant::now() + STALL_BOUND + Duration::from_secs(2));
    assert_eq!(failed.len(), 1);
    let (status, body) = get_on(&state, "/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failed"][0]["thread"], "deep");
    let error = body["failed"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("stalled: no progress for 3") && error.ends_with(" s"),
        "{error}"
    );
}
