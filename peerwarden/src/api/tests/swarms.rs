//! `/api/v1/swarms`: off answers 404; the list, its sorts and windows; one swarm with its
//! participants only for the read token; the totals in `/metrics`.

use std::net::Ipv4Addr;

use peerwarden_common::Direction;
use peerwarden_swarms::{SwarmTable, SwarmsConfig};

use super::*;
use crate::{state::DeepState, swarms::Swarms};

const READ: &str = "read-token-0123456789";
const T0: u64 = 1_800_000_000;

fn handshake(hash: u8) -> Vec<u8> {
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&[hash; 20]);
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    hs
}

fn key(sub: u8, remote: Ipv4Addr, port: u16) -> FlowKey {
    let mut k = FlowKey {
        family: FAMILY_V4,
        proto: PROTO_TCP,
        sub_port: port,
        remote_port: 6881,
        ..Default::default()
    };
    k.sub_addr[..4].copy_from_slice(&[100, 64, 1, sub]);
    k.remote_addr[..4].copy_from_slice(&remote.octets());
    k
}

/// Swarm 0xaa: subscribers .10 and .20 each with a remote seeder (303,000 bytes of
/// transit) and .10 sending 50,000 to .20 (local); swarm 0xbb: .30 alone, 400,010 bytes of
/// transit.
fn swarms() -> Arc<Swarms> {
    let config = SwarmsConfig {
        enabled: true,
        ..SwarmsConfig::default()
    };
    let table = SwarmTable::new(&config, None).expect("table");
    let s = Swarms::new(table, vec!["100.64.0.0/10".parse().expect("net")], 86_400);
    let seeder = Ipv4Addr::new(203, 0, 113, 9);
    let a10 = key(10, seeder, 50_000);
    let a20 = key(20, seeder, 50_001);
    let local = key(10, Ipv4Addr::new(100, 64, 1, 20), 50_002);
    let b30 = key(30, seeder, 50_003);
    for (k, h) in [(a10, 0xaa), (a20, 0xaa), (local, 0xaa), (b30, 0xbb)] {
        s.sample_at(&k, Direction::Up, &handshake(h), T0);
    }
    let v = |up, down| FlowValue {
        bytes: [up, down],
        ..FlowValue::default()
    };
    let flows = [
        (a10, v(1_000, 100_000)),
        (a20, v(2_000, 200_000)),
        (local, v(50_000, 0)),
        (b30, v(400_000, 10)),
    ];
    s.walk_at(&flows, None, T0 + 1);
    Arc::new(s)
}

fn with_swarms(read_token: Option<&str>) -> axum::Router {
    let deep = Arc::new(DeepState {
        swarms: Some(swarms()),
        ..DeepState::default()
    });
    app(state_with_deep(None, 10, read_token, deep))
}

async fn get_with(app: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut r = Request::get(uri);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    send(app, r.body(Body::empty()).expect("request")).await
}

#[tokio::test]
async fn off_answers_404_saying_so_and_metrics_have_no_swarm_series() {
    for uri in [
        "/api/v1/swarms",
        &format!("/api/v1/swarms/{}", "ab".repeat(20)),
    ] {
        let (status, v) = get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {v}");
        assert!(
            v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("swarms: { enabled: true }")),
            "{uri}: {v}"
        );
    }
    let resp = app(state())
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("req"))
        .await
        .expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("peerwarden_swarms_"));
}

#[tokio::test]
async fn the_list_sorts_by_transit_bytes_or_subscribers() {
    let app = with_swarms(None);
    let (status, v) = get_with(&app, "/api/v1/swarms", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["tracked"], 2);
    let ids: Vec<&str> = v["swarms"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ids,
        ["bb".repeat(20), "aa".repeat(20)],
        "400,010 transit before 303,000"
    );
    let a = &v["swarms"][1];
    assert_eq!(a["bytes"]["local"], 50_000);
    assert_eq!(a["bytes"]["transit_up"], 3_000);
    assert_eq!(a["bytes"]["transit_down"], 300_000);
    assert_eq!(a["subscribers"], 2);
    let (_, v) = get_with(&app, "/api/v1/swarms?sort=subscribers&limit=1", None).await;
    assert_eq!(v["swarms"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["swarms"][0]["id"], "aa".repeat(20));
    let (_, v) = get_with(&app, "/api/v1/swarms?sort=bytes", None).await;
    assert_eq!(
        v["swarms"][0]["id"],
        "bb".repeat(20),
        "400,010 before 353,000"
    );
}

#[tokio::test]
async fn bad_queries_and_ids_are_400_and_an_unknown_swarm_404() {
    let app = with_swarms(None);
    for (uri, says) in [
        ("/api/v1/swarms?sort=peers", "sort: \"peers\" is not one of"),
        (
            "/api/v1/swarms?window=soon",
            "window: \"soon\" is not a duration",
        ),
        ("/api/v1/swarms?limit=0", "limit: 0 is out of range"),
        ("/api/v1/swarms?window=1h", "no history store"),
        ("/api/v1/swarms/xyz", "id: \"xyz\" is not 40 hex digits"),
    ] {
        let (status, v) = get_with(&app, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{uri}: {v}"
        );
    }
    let (status, v) = get_with(&app, &format!("/api/v1/swarms/{}", "cc".repeat(20)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["detail"], format!("no swarm {}", "cc".repeat(20)));
}

#[tokio::test]
async fn participants_only_for_the_read_token() {
    let app = with_swarms(Some(READ));
    let uri = format!("/api/v1/swarms/{}", "AA".repeat(20));
    let (status, v) = get_with(&app, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["subscribers"], 2);
    assert!(v["participants"].is_null(), "{v}");
    assert!(!v.to_string().contains("100.64."), "no address leaks: {v}");
    for token in [READ, TOKEN] {
        let (_, v) = get_with(&app, &uri, Some(token)).await;
        let people = v["participants"].as_array().expect("participants");
        let addrs: Vec<&str> = people
            .iter()
            .map(|p| p["address"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            addrs,
            ["100.64.1.20", "100.64.1.10"],
            "most bytes first: {v}"
        );
        // .20: 2,000 up and 200,000 down from the seeder, 50,000 from .10.
        assert_eq!(people[0]["sent"], 2_000);
        assert_eq!(people[0]["received"], 250_000);
    }
    // Without a read token configured, reads are open.
    let (_, v) = get_with(&with_swarms(None), &uri, None).await;
    assert_eq!(v["participants"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn metrics_have_the_totals_and_no_per_swarm_series() {
    let resp = with_swarms(None)
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("req"))
        .await
        .expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    for line in [
        "peerwarden_swarms_tracked 2",
        "peerwarden_swarms_local_bytes 50000",
        "peerwarden_swarms_transit_bytes 703010",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    assert!(!text.contains("aaaaaaaa") && !text.contains("bbbbbbbb"));
}

#[tokio::test]
async fn a_window_reads_the_stores_minutes() {
    let dir = std::env::temp_dir().join(format!("pw-api-swarms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = crate::history::History::open(
        &dir.join("history.db"),
        "i",
        peerwarden_history::Retention::default(),
    )
    .expect("store");
    let now = peerwarden_history::unix(std::time::SystemTime::now());
    let row = |id: u8, local, up, down| peerwarden_history::SwarmBytes {
        swarm: [id; 20],
        local,
        transit_up: up,
        transit_down: down,
    };
    // Two hours ago (outside a 1h window), and ten minutes ago.
    store
        .record_swarm_minute(now - 7200, &[row(0xaa, 0, 0, 9_999_999)], now, 86_400)
        .expect("old");
    store
        .record_swarm_minute(
            now - 600,
            &[row(0xaa, 7, 8, 9), row(0xdd, 0, 1_000, 0)],
            now,
            86_400,
        )
        .expect("recent");
    let deep = Arc::new(DeepState {
        swarms: Some(swarms()),
        ..DeepState::default()
    });
    let app = app(state_with_deep(Some(Arc::new(store)), 10, None, deep));
    let (status, v) = get_with(&app, "/api/v1/swarms?window=1h", None).await;
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["window_seconds"], 3600);
    let list = v["swarms"].as_array().expect("list");
    assert_eq!(list.len(), 2, "{v}");
    // 0xdd: 1,000 of transit, only in the store; 0xaa: 17 in the window, live details.
    assert_eq!(list[0]["id"], "dd".repeat(20));
    assert!(list[0]["first_seen"].is_null() && list[0]["subscribers"] == 0);
    assert_eq!(list[1]["id"], "aa".repeat(20));
    assert_eq!(list[1]["bytes"]["local"], 7);
    assert_eq!(list[1]["bytes"]["transit_down"], 9);
    assert_eq!(list[1]["subscribers"], 2);
}
