//! Issue 14, API hardening: absurd query values, the order of authentication and body
//! reading, body limits, the read token and the Host allow-list.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};

use super::*;

/// Every query that once panicked in a handler (a window whose range start overflowed) or
/// could, answered 400 with the API's error shape, with and without a history store.
#[tokio::test]
async fn absurd_query_values_are_a_json_400_never_a_panic() {
    let s = stored("absurd");
    let huge = "9223372036854775808";
    let uris = [
        format!("/api/v1/mix?window={huge}"),
        "/api/v1/mix?window=18446744073709551615".to_string(),
        format!("/api/v1/mix?window={huge}&subscriber=alice"),
        "/api/v1/mix?window=99999999999h".to_string(),
        format!("/api/v1/mix/series?window={huge}"),
        format!("/api/v1/mix/series?window=1h&step={huge}"),
        format!("/api/v1/mix/series?window=10d"),
        format!("/api/v1/subscribers/top?window={huge}"),
        format!("/api/v1/subscribers/top?by=label&name=bittorrent&window={huge}"),
        format!("/api/v1/subscribers/alice?window={huge}"),
        format!("/api/v1/subscribers/top?limit={huge}"),
        "/api/v1/subscribers/top?limit=99999999999999999999999".to_string(),
        "/api/v1/flows?limit=99999999999999999999999".to_string(),
        "/api/v1/flows?cursor=zz".to_string(),
        "/api/v1/mix?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z".to_string(),
        "/api/v1/mix/series?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&step=60s"
            .to_string(),
        "/api/v1/subscribers/top?window=-5".to_string(),
    ];
    for uri in &uris {
        for state in [&s.state, &state()] {
            let resp = app(state.clone())
                .oneshot(Request::get(uri.as_str()).body(Body::empty()).expect("request"))
                .await
                .expect("an answer, not a dropped connection");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
            assert_eq!(v["error"], "bad_request", "{uri}: {v}");
            assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{uri}: {v}");
        }
    }
}

/// The longest window accepted still answers (from the store).
#[tokio::test]
async fn the_longest_window_accepted_answers() {
    let s = stored("longest");
    let max = super::super::query::MAX_SPAN_SECS;
    for uri in [
        format!("/api/v1/mix?window={max}"),
        format!("/api/v1/mix?window={max}&subscriber=alice"),
        format!("/api/v1/subscribers/top?window={max}"),
        format!("/api/v1/subscribers/alice?window={max}"),
        format!("/api/v1/mix/series?window={max}&step={}", max / 60),
    ] {
        let (status, v) = get_on(&s.state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {v}");
    }
    let (status, v) = get_on(&s.state, &format!("/api/v1/mix?window={}", max + 1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("window")), "{v}");
}
