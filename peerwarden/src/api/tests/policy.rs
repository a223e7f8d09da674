//! `/api/v1/policy` and `/api/v1/clock`: writes need the token.

use super::*;

#[tokio::test]
async fn policy_writes_need_the_token_and_bad_ones_change_nothing() {
    let app = app(state());
    let (status, _) = send(
        &app,
        Request::get("/api/v1/policy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no policy yet");
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong-token-0123456789"), StatusCode::UNAUTHORIZED),
        (Some(""), StatusCode::UNAUTHORIZED),
    ] {
        let (status, v) = send(&app, put_policy(GOOD_POLICY, token)).await;
        assert_eq!(status, want, "{token:?}");
        assert_eq!(v["error"], "unauthorized");
    }
    let (status, _) = send(
        &app,
        Request::get("/api/v1/policy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "refused writes changed nothing"
    );

    let (status, v) = send(&app, put_policy(GOOD_POLICY, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["origin"], "api");
    assert_eq!(v["subscribers"], 2);

    let bad = GOOD_POLICY.replace("plan: home-50", "plan: home-500");
    let (status, v) = send(&app, put_policy(&bad, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "invalid_policy");
    let first = &v["errors"][0];
    assert!(
        first["line"].as_u64().is_some_and(|l| l > 0)
            && first["column"].as_u64().is_some_and(|c| c > 0),
        "{v}"
    );
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("home-500")),
        "{v}"
    );
    let (_, v) = send(
        &app,
        Request::get("/api/v1/policy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(v["source"], GOOD_POLICY, "the running policy stays");
    let (status, v) = send(
        &app,
        Request::get("/api/v1/policy/rejected")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["origin"], "api");
    let (_, v) = send(
        &app,
        Request::get("/api/v1/status")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(
        (v["policy_reloads"].as_u64(), v["policy_failures"].as_u64()),
        (Some(1), Some(1))
    );

    let (status, v) = send(&app, put_policy("\u{0}not: [yaml", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut not_utf8 = put_policy("", Some(TOKEN));
    *not_utf8.body_mut() = Body::from(vec![0xff, 0xfe, 0x00]);
    let (status, _) = send(&app, not_utf8).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn writes_are_refused_without_a_configured_token() {
    let s = State::new(StateOptions {
        attachments: Vec::new(),
        recent_seconds: 60,
        flow_table_size: 16,
        policy: PolicyStore::new(None),
        api_token: None,
        api_read_token: None,
        deep: Default::default(),
        clock: Default::default(),
        store: None,
        subscribers: Default::default(),
        subscriber_series_limit: 1000,
        observe_mirror: None,
        alto: Default::default(),
    });
    let (status, v) = send(&app(Arc::new(s)), put_policy(GOOD_POLICY, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("api.token"))
    );
}

fn put_clock(body: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::put("/api/v1/clock").header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).expect("request")
}

#[tokio::test]
async fn the_clock_moves_with_the_token_and_reevaluates() {
    let s = state();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    s.clock.set_reevaluate({
        let hits = hits.clone();
        Box::new(move |move_clock: &dyn Fn()| {
            move_clock();
            Ok(hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0)
        })
    });
    let app = app(s.clone());
    let (status, v) = send(
        &app,
        Request::get("/api/v1/clock")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["offset_seconds"], 0);
    assert!(v.get("policy_local").is_none(), "no policy: {v}");

    let (status, _) = send(&app, put_clock(r#"{"offset_seconds": 3600}"#, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.clock.offset(), 0, "a refused write moves nothing");

    let (status, v) = send(&app, put_clock(r#"{"offset_seconds": 3600}"#, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["offset_seconds"].as_i64(), v["rules_changed"].as_bool()),
        (Some(3600), Some(true))
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "re-evaluated once, at once"
    );

    // An absolute time: 2030-01-07 was a Monday; the policy's zone is UTC.
    let (status, _) = send(&app, put_policy(GOOD_POLICY, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = send(
        &app,
        put_clock(r#"{"now": "2030-01-07T19:30:00Z"}"#, Some(TOKEN)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["rules_changed"], false);
    let local = v["policy_local"].as_str().expect("a policy is loaded");
    assert!(
        local.starts_with("mon 19:3") && local.ends_with("UTC"),
        "{local}"
    );
    let now: jiff::Timestamp = v["now"].as_str().expect("now").parse().expect("RFC 3339");
    let want: jiff::Timestamp = "2030-01-07T19:30:00Z".parse().expect("time");
    assert!((now.as_second() - want.as_second()).abs() <= 2, "{now}");

    for bad in [
        r#"{}"#,
        r#"{"offset_seconds": 1, "now": "2030-01-07T19:30:00Z"}"#,
        r#"{"now": "tomorrow"}"#,
        r#"{"offset_seconds": 99999999999}"#,
        r#"{"offset": 5}"#,
        "not json",
    ] {
        let (status, v) = send(&app, put_clock(bad, Some(TOKEN))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"], "bad_request");
    }
    let (_, v) = send(&app, put_clock(r#"{"offset_seconds": 0}"#, Some(TOKEN))).await;
    assert_eq!(v["offset_seconds"], 0);
}
