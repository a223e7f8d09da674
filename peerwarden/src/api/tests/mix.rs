//! `/api/v1/mix` and `/api/v1/mix/series`: in memory and from the store.

use super::*;

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
