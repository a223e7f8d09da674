//! Every route: documented, JSON errors, the dashboard, the request log, path decoding.

use super::*;

#[tokio::test]
async fn every_documented_route_answers_and_every_route_is_documented() {
    let (status, doc) = get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let app = app(state());
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(path.as_str())
                .body(Body::empty())
                .expect("req");
            let resp = app.clone().oneshot(req).await.expect("response");
            // Answers: not the router's 404/405 for an unknown route.
            let s = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert!(
                s != StatusCode::METHOD_NOT_ALLOWED && v["detail"] != format!("no route {path}"),
                "{method} {path}: {s}"
            );
        }
    }
    documented.sort();
    // Every route the router serves (but the document itself) is in the document.
    let mut served = vec![
        "GET /api/v1/flows",
        "GET /api/v1/mix",
        "GET /api/v1/policy",
        "GET /api/v1/policy/rejected",
        "GET /api/v1/status",
        "GET /healthz",
        "GET /metrics",
        "PUT /api/v1/policy",
        "GET /api/v1/mix/series",
        "GET /",
        "GET /assets/{file}",
        "GET /api/v1/clock",
        "PUT /api/v1/clock",
        "GET /api/v1/subscribers/top",
        "GET /api/v1/subscribers/{id}",
        "GET /api/v1/swarms",
        "GET /api/v1/swarms/{id}",
        "GET /api/v1/alto",
        "GET /api/v1/alto/networkmap",
        "POST /api/v1/alto/networkmap/filtered",
        "GET /api/v1/alto/costmap/num-routingcost",
        "GET /api/v1/alto/costmap/ord-routingcost",
        "POST /api/v1/alto/costmap/filtered",
        "POST /api/v1/alto/endpointcost",
    ];
    served.sort();
    assert_eq!(documented, served);
    let (router, _) = crate::api::router();
    drop(router);
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    for uri in [
        "/api/v1/flows?label=napster",
        "/api/v1/flows?class=warez",
        "/api/v1/flows?limit=0",
        "/api/v1/flows?limit=-3",
        "/api/v1/flows?limit=99999999",
        "/api/v1/flows?bogus=1",
        "/api/v1/mix?window=abc",
        "/api/v1/mix?window=0s",
        "/api/v1/mix?window=3d",
        "/api/v1/mix?window=2h",
        "/api/v1/mix?window=99999999999999999999",
    ] {
        let (status, v) = get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], "bad_request", "{uri}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{uri}");
    }
    let (status, v) = get("/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_with_their_types() {
    for (uri, want) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let resp = app(state())
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()["content-type"], want, "{uri}");
        assert!(
            resp.headers()["content-security-policy"]
                .to_str()
                .expect("ascii")
                .starts_with("default-src 'self'")
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(body.len() > 500, "{uri}: {} bytes", body.len());
    }
    let (status, v) = get("/assets/nothing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
}

/// Collects what `tracing` writes while a test runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `tracing` writes in this test binary: a global subscriber, set once (a
/// scoped one races with the callsite cache while other tests log on other threads).
fn global_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        captured
    })
}

#[tokio::test]
async fn requests_are_logged_without_secrets() {
    let captured = global_log();
    let app = app(state());
    // A peer address no other test uses, to pick this test's lines out of the log.
    let peer = axum::extract::ConnectInfo(crate::api::tls::Peer(std::net::SocketAddr::from((
        [192, 0, 2, 77],
        4242,
    ))));
    let secret = "Bearer wrong-but-secret-0123456789";
    let mut req = Request::put("/api/v1/policy?token=query-secret-42")
        .header("authorization", secret)
        .body(Body::from("body-secret: 1\n"))
        .expect("request");
    req.extensions_mut().insert(peer);
    let (status, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut req = Request::get("/api/v1/mix")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(peer);
    let (status, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let log = String::from_utf8(captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .expect("utf-8");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peerwarden::access") && l.contains("peer=192.0.2.77:4242"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("method=PUT")
            && lines[0].contains("path=/api/v1/policy ")
            && lines[0].contains("status=401"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("latency_ms="), "{}", lines[0]);
    assert!(
        lines[1].contains("method=GET") && lines[1].contains("status=200"),
        "{}",
        lines[1]
    );
    for secret in ["wrong-but-secret", "query-secret", "body-secret", "Bearer"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// Found by the `api` fuzz target (fuzz/api): a subscriber id that is not UTF-8 once
/// percent-decoded got axum's plain-text 400; it must be the API's JSON error like the rest.
#[tokio::test]
async fn a_subscriber_id_that_is_not_utf8_is_a_json_bad_request() {
    for uri in ["/api/v1/subscribers/al%86", "/api/v1/subscribers/%FF%FE"] {
        let (status, v) = get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], "bad_request", "{uri}: {v}");
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains("UTF-8")),
            "{uri}: {v}"
        );
    }
}
