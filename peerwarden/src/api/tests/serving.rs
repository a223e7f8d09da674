//! Issue 14: the server's own limits over a real socket (header deadline, idle timeout,
//! connection cap) and the `Host` allow-list.

use std::net::SocketAddr;

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::api::serve::{AllowedHosts, Settings, guarded, run};

fn settings(header: u64, idle: u64, max: usize, listen: SocketAddr) -> Settings {
    Settings {
        header_timeout: Duration::from_secs(header),
        idle_timeout: Duration::from_secs(idle),
        max_connections: max,
        hosts: AllowedHosts::new(listen, &[]),
    }
}

async fn start(header: u64, idle: u64, max: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s = settings(header, idle, max, addr);
    tokio::spawn(run(listener, state(), s, std::future::pending()));
    addr
}

async fn healthz(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// Reads until the server closes; how long that took.
async fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    let addr = start(1, 30, 16).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let t = Instant::now();
    let mut cut = false;
    for b in request {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let closed = if cut {
        Some(t.elapsed())
    } else {
        closed_after(&mut s, Duration::from_secs(5)).await
    };
    let closed = closed.expect("the server closed the connection");
    assert!(closed < Duration::from_secs(4), "{closed:?}");
    // Others are still served.
    assert!(
        healthz(addr)
            .await
            .expect("answer")
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_keep_alive_connection_is_closed_when_idle() {
    let addr = start(30, 1, 16).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            addr.port()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let closed = closed_after(&mut s, Duration::from_secs(5))
        .await
        .expect("closed when idle");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let addr = start(30, 30, 2).await;
    let held = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(healthz(addr));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past a cap of two"
    );
    drop(held);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot is free")
        .expect("task")
        .expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn only_the_allowed_hosts_are_answered() {
    let listen: SocketAddr = "127.0.0.1:9440".parse().expect("addr");
    let app = guarded(
        app(state()),
        AllowedHosts::new(listen, &["gw.example.net".into()]),
    );
    for (host, ok) in [
        ("127.0.0.1:9440", true),
        ("localhost:9440", true),
        ("LOCALHOST:9440", true),
        ("[::1]:9440", true),
        ("gw.example.net:9440", true),
        ("gw.example.net.:9440", true),
        ("attacker.example:9440", false),
        ("localhost:80", false),
        ("localhost", true),
        ("127.0.0.1", true),
        ("localhost:x", false),
        ("attacker.example", false),
        ("127.0.0.1:9441", false),
        ("10.0.0.1:9440", false),
    ] {
        let req = Request::get("/healthz")
            .header("host", host)
            .body(Body::empty())
            .expect("request");
        let (status, v) = send(&app, req).await;
        if ok {
            assert_eq!(status, StatusCode::OK, "{host}: {v}");
        } else {
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}: {v}");
            assert_eq!(v["error"], "misdirected_request", "{host}: {v}");
        }
    }
    // Listening on every address: any IP literal with the port, never another name.
    let every = AllowedHosts::new("0.0.0.0:9440".parse().expect("addr"), &[]);
    assert!(every.allows("192.0.2.7:9440"));
    assert!(every.allows("[2001:db8::1]:9440"));
    assert!(!every.allows("rebound.example:9440"));
    assert!(!every.allows("192.0.2.7:80"));
    // `*` answers any host; a bare name gets the listen port.
    assert!(AllowedHosts::new(listen, &["*".into()]).allows("x.example"));
}

#[test]
fn short_tokens_are_refused_at_start() {
    let path = std::path::Path::new("config.yaml");
    let base = "interfaces: { downlink: a, uplink: b }\n";
    let c = crate::config::Config::parse(&format!("{base}api: {{ read_token: short }}\n"), path);
    let e = c.expect_err("refused").to_string();
    assert!(
        e.contains("api.read_token: use at least 16 characters"),
        "{e}"
    );
    let c = crate::config::Config::parse(&format!("{base}api: {{ max_connections: 0 }}\n"), path);
    assert!(
        c.expect_err("refused")
            .to_string()
            .contains("api.max_connections")
    );
    let c = crate::config::Config::parse(base, path).expect("defaults");
    let s = Settings::new(&c).expect("settings");
    assert_eq!(s.max_connections, 256);
    assert_eq!(s.header_timeout, Duration::from_secs(10));
    assert!(s.hosts.allows("127.0.0.1:9440"));
}
