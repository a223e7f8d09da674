//! `/api/v1/flows`: filters and pages.

use super::*;

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
