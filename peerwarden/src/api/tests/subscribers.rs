//! `/api/v1/subscribers/top` and `/api/v1/subscribers/{id}`.

use super::*;

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
