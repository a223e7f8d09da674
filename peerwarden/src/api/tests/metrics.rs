//! `/metrics`: Prometheus text.

use super::*;

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
async fn metrics_have_policy_drops_reloads_and_capped_subscriber_series() {
    let s = stored_with("metrics", 1, None);
    let text = metrics_text(&s.state).await;
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
    let none = stored_with("metrics-limit-0", 0, None);
    let text = crate::api::metrics::render(&none.state, none.state.subscriber_series_limit());
    assert!(
        !text.contains("subscriber=\""),
        "limit 0: no per-subscriber series"
    );
}
