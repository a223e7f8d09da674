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
        "/api/v1/mix/series?window=10d".to_string(),
        format!("/api/v1/subscribers/top?window={huge}"),
        format!("/api/v1/subscribers/top?by=label&name=bittorrent&window={huge}"),
        format!("/api/v1/subscribers/alice?window={huge}"),
        format!("/api/v1/subscribers/top?limit={huge}"),
        "/api/v1/subscribers/top?limit=99999999999999999999999".to_string(),
        "/api/v1/flows?limit=99999999999999999999999".to_string(),
        "/api/v1/flows?cursor=zz".to_string(),
        "/api/v1/mix?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z".to_string(),
        "/api/v1/mix/series?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&step=60s".to_string(),
        "/api/v1/subscribers/top?window=-5".to_string(),
    ];
    for uri in &uris {
        for state in [&s.state, &state()] {
            let resp = app(state.clone())
                .oneshot(
                    Request::get(uri.as_str())
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("an answer, not a dropped connection");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
            assert_eq!(v["error"], "bad_request", "{uri}: {v}");
            assert!(
                v["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{uri}: {v}"
            );
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
    assert!(
        v["detail"].as_str().is_some_and(|d| d.contains("window")),
        "{v}"
    );
}

/// A body that never ends: counts how much of it the server pulled.
fn endless_body(pulled: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    struct Chunks(Arc<std::sync::atomic::AtomicUsize>);
    impl futures_core::Stream for Chunks {
        type Item = Result<axum::body::Bytes, std::io::Error>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0
                .fetch_add(1 << 20, std::sync::atomic::Ordering::Relaxed);
            std::task::Poll::Ready(Some(Ok(axum::body::Bytes::from(vec![b'#'; 1 << 20]))))
        }
    }
    Body::from_stream(Chunks(pulled))
}

/// Writes without the token are answered before a byte of the body is read; with it,
/// each route reads at most its own limit (413 beyond, in the API's error shape).
#[tokio::test]
async fn the_token_is_checked_before_the_body_and_each_route_has_a_limit() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for (path, token) in [
        ("/api/v1/policy", None),
        ("/api/v1/policy", Some("not-the-token-at-all")),
        ("/api/v1/clock", None),
    ] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut req = Request::put(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let (status, v) = send(
            &app(state()),
            req.body(endless_body(pulled.clone())).expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {v}");
        assert_eq!(
            pulled.load(Ordering::Relaxed),
            0,
            "{path}: body read before the token"
        );
    }
    for (path, limit) in [
        ("/api/v1/policy", super::super::body::POLICY_MAX_BYTES),
        ("/api/v1/clock", super::super::body::CLOCK_MAX_BYTES),
    ] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let req = Request::put(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(endless_body(pulled.clone()))
            .expect("request");
        let (status, v) = send(&app(state()), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {v}");
        assert_eq!(v["error"], "payload_too_large", "{v}");
        assert!(
            pulled.load(Ordering::Relaxed) <= limit + (1 << 20),
            "{path}: read {} bytes",
            pulled.load(Ordering::Relaxed)
        );
        // A declared length over the limit is refused without reading.
        let req = Request::put(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-length", (limit + 1).to_string())
            .body(Body::from(vec![b' '; limit + 1]))
            .expect("request");
        assert_eq!(
            send(&app(state()), req).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
    // A policy of 100,000 subscribers as the benchmark writes them fits.
    let mut big = String::from(GOOD_POLICY.split("subscribers:").next().expect("head"));
    big.push_str("subscribers:\n");
    for i in 0..100_000u32 {
        let v4 = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 1)) + i);
        big.push_str(&format!(
            "  - {{ id: s{i}, prefixes: [{v4}/32, \"2001:db8:{:x}:{:x}::/64\"] }}\n",
            i >> 16,
            i & 0xffff
        ));
    }
    assert!(
        big.len() < super::super::body::POLICY_MAX_BYTES / 2 + (1 << 20),
        "{}",
        big.len()
    );
}

/// The clock's offset: i64::MIN has no absolute value (it once overflowed the check).
#[tokio::test]
async fn the_most_negative_clock_offset_is_a_400() {
    for body in [
        r#"{"offset_seconds": -9223372036854775808}"#,
        r#"{"offset_seconds": 9223372036854775807}"#,
        r#"{"now": "-009999-01-01T00:00:00Z"}"#,
    ] {
        let req = Request::put("/api/v1/clock")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(body))
            .expect("request");
        let (status, v) = send(&app(state()), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
}

/// With `api.read_token`, the routes that name subscribers or addresses need it (or the
/// write token); the others stay open, and /metrics leaves out its per-subscriber series.
#[tokio::test]
async fn the_read_token_guards_subscriber_data() {
    let read = "read-token-0123456789";
    let s = stored_with("read-token", 1000, Some(read));
    let guarded = [
        "/api/v1/flows",
        "/api/v1/subscribers/top",
        "/api/v1/subscribers/alice",
        "/api/v1/mix?subscriber=alice",
        "/api/v1/policy",
        "/api/v1/policy/rejected",
    ];
    let open = [
        "/healthz",
        "/api/v1/mix",
        "/api/v1/mix/series",
        "/api/v1/status",
        "/",
        "/api/v1/clock",
    ];
    let ask = |uri: &str, token: Option<&str>| {
        let mut r = Request::get(uri);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(Body::empty()).expect("request")
    };
    for uri in guarded {
        let (status, v) = send(&app(s.state.clone()), ask(uri, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {v}");
        assert_eq!(v["error"], "unauthorized", "{uri}: {v}");
        let (status, _) = send(
            &app(s.state.clone()),
            ask(uri, Some("wrong-token-0123456789")),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        for token in [read, TOKEN] {
            let (status, v) = send(&app(s.state.clone()), ask(uri, Some(token))).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri}: {v}");
        }
    }
    for uri in open {
        let resp = app(s.state.clone())
            .oneshot(ask(uri, None))
            .await
            .expect("answer");
        assert_ne!(resp.status(), StatusCode::UNAUTHORIZED, "{uri}");
    }
    let metrics = |token: Option<&str>| {
        let state = s.state.clone();
        let req = ask("/metrics", token);
        async move {
            let resp = app(state).oneshot(req).await.expect("answer");
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    let anonymous = metrics(None).await;
    assert!(!anonymous.contains("subscriber=\"alice\""), "{anonymous}");
    assert!(
        anonymous.contains("peerwarden_subscribers_known"),
        "{anonymous}"
    );
    let reader = metrics(Some(read)).await;
    assert!(reader.contains("subscriber=\"alice\""), "{reader}");
}

/// /flows keeps one page while it walks the table: paging through a table with many ties
/// (flows last seen in the same nanosecond) still lists every flow once, newest first.
#[tokio::test]
async fn paging_a_large_table_lists_every_flow_once_in_order() {
    let s = State::new(StateOptions {
        attachments: Vec::new(),
        recent_seconds: 60,
        flow_table_size: 1 << 20,
        policy: PolicyStore::new(None),
        api_token: None,
        api_read_token: None,
        deep: Default::default(),
        clock: Default::default(),
        store: None,
        subscribers: Default::default(),
        subscriber_series_limit: 0,
        observe_mirror: None,
        alto: Default::default(),
    });
    let n = 20_000u32;
    s.set_flows(
        (0..n)
            .map(|i| {
                let (mut k, mut v) = flow((i % 250) as u8, Label::Bittorrent, 0);
                k.sub_port = (i / 250) as u16;
                // 40 distinct times: 500 flows share each.
                v.last_seen_ns -= u64::from(i % 40) * 1_000_000;
                (k, v)
            })
            .collect(),
    );
    let state = Arc::new(s);
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<String> = None;
    let mut cursor = String::new();
    loop {
        let uri = format!("/api/v1/flows?limit=997{cursor}");
        let (status, v) = get_on(&state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        for f in v["flows"].as_array().expect("flows") {
            let key = format!("{}:{}", f["src"], f["sport"]);
            assert!(seen.insert(key.clone()), "{key} listed twice");
            let at = f["last_seen"].as_str().expect("last_seen").to_string();
            assert!(
                last.as_ref().is_none_or(|l| *l >= at),
                "{at} after {last:?}"
            );
            last = Some(at);
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), n as usize);
}
