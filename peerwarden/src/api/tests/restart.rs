//! `/api/v1/mix?window=` and `/api/v1/mix/series` within the in-memory history, reaching
//! back before the daemon's first reading: the store's minutes before it are merged in.

use super::*;

#[tokio::test]
async fn a_window_before_the_first_reading_takes_the_stores_minutes() {
    // The store: bittorrent up 1000 (new counters), 3000 and 6000 bytes, 50, 40 and 5
    // minutes ago (down twice that), all before the first of the in-memory readings (120 s
    // ago), which then grow by 8000 bytes up.
    let s = stored("restart");
    let (status, v) = get_on(&s.state, "/api/v1/mix?window=3600s").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([18_000, 36_000]),
        "{v}"
    );
    assert_eq!(v["range"]["source"], "store+memory", "{v}");
    // From the store's first minute (50 minutes ago) to the latest reading.
    let covered = v["window_seconds"].as_u64().expect("window_seconds");
    assert!((3000..=3060).contains(&covered), "{v}");
    // The series over the same hour: the same bytes, each in one step.
    let (status, v) = get_on(&s.state, "/api/v1/mix/series?window=3600s&step=60s").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["range"]["source"], "store+memory", "{v}");
    let points = v["points"].as_array().expect("points");
    let up: u64 = points
        .iter()
        .filter_map(|p| p["classes"]["p2p"]["bytes"][0].as_u64())
        .sum();
    assert_eq!(up, 18_000, "{v}");
    // Without a store, the readings alone (as before).
    let (_, v) = get("/api/v1/mix?window=3600s").await;
    assert_eq!(
        v["labels"]["bittorrent"]["bytes"],
        serde_json::json!([8000, 16_000])
    );
    assert!(v.get("range").is_none(), "{v}");
    // Within the readings: memory only, with or without a store.
    let (_, v) = get_on(&s.state, "/api/v1/mix?window=60s").await;
    assert!(v.get("range").is_none(), "{v}");
    let (_, v) = get_on(&s.state, "/api/v1/mix/series?window=2m&step=60s").await;
    assert!(v.get("range").is_none(), "{v}");
}
