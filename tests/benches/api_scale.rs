//! The API's answers at ISP scale, through the daemon's own server: the router of
//! `peerwarden::api::app` behind `api::serve::run` (the `Host` guard, hyper, the access
//! log) on a TCP socket on 127.0.0.1, asked by a plain HTTP/1.1 client (one connection a
//! request, `Connection: close`, the whole body read). No root, no kernel: the state is
//! the daemon's `State` with a history store and a swarm view filled by hand.
//!
//! - issue 16, item 5: `GET /api/v1/subscribers/top?window=` (by class, and by label
//!   `bittorrent`) over 15 minutes, 1 hour, 24 hours, 7 days and 90 days, with
//!   `SUBSCRIBERS` (100,000) subscribers all active in each of the last `MINUTES` (10)
//!   minutes (the store `history_scale` fills), and before them one minute each 89 days,
//!   6 days, 23 hours and 50 minutes ago (not with `RECENT_ONLY` set), so that each
//!   longer window holds more and the running totals at the start of every window up to 7
//!   days hold every subscriber (the 90-day one starts before the oldest row); beside it, the store's own `History::traffic` over the same range (every
//!   subscriber's rows: what the API read before the store ranked), so the API's share
//!   shows;
//! - issue 15: `GET /api/v1/swarms?limit=100`, `limit=10000` and `window=1h&limit=100`
//!   with `SWARMS` (10,000) live swarms of 4 subscribers and 60 minutes of their store
//!   rows.
//!
//! With `PENDING` set, the last minute's rows are left in memory, not flushed.
//!
//! The baseline is `GET /healthz` through the same server in the same run. Medians of
//! `ROUNDS`, with the fastest and slowest.
//! `cargo bench -p peerwarden-tests --bench api_scale` (writes about 0.6 GB under the
//! temporary directory at 100,000 subscribers, removed at the end).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use peerwarden::{
    api::serve::{self, AllowedHosts, Settings},
    history::{History, Retention, Which},
    policy_store::PolicyStore,
    report::Range,
    state::{DeepState, State, StateOptions},
    swarms::Swarms,
};
use peerwarden_tests::{
    lab::TempDir,
    scale::{fill_subscribers_leaving, swarm_rows, swarm_table},
};
use serde_json::Value;

const ROUNDS: usize = 7;
/// Minutes of swarm rows in the store (the `window=1h` answer reads them all).
const SWARM_MINUTES: u32 = 60;

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The body of a response, de-chunked when it came in chunks.
fn body(head: &str, raw: &[u8]) -> Vec<u8> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return raw.to_vec();
    }
    let (mut out, mut rest) = (Vec::new(), raw);
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let data = &rest[eol + 2..];
        out.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
    out
}

/// One request on a new connection: the time from connecting to the last byte, the
/// body's size and its JSON. Panics unless the answer is a 200 with JSON.
fn get(addr: SocketAddr, path: &str) -> (Duration, usize, Value) {
    let start = Instant::now();
    let mut c = TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).expect("response");
    let took = start.elapsed();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&raw[..raw.len().min(600)])
    );
    let b = body(&head, &raw[split + 4..]);
    let json = serde_json::from_slice(&b).expect("JSON body");
    (took, b.len(), json)
}

/// `ROUNDS` requests: median, fastest, slowest, and the last answer.
struct Timed {
    median: Duration,
    min: Duration,
    max: Duration,
    bytes: usize,
    json: Value,
}

fn timed(addr: SocketAddr, path: &str) -> Timed {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let (t, n, j) = get(addr, path);
        times.push(t);
        last = Some((n, j));
    }
    times.sort();
    let (bytes, json) = last.expect("rounds");
    Timed {
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
        bytes,
        json,
    }
}

fn show(name: &str, t: &Timed, base: Duration, extra: &str) {
    println!(
        "  {name:<44} {:>9.2} ms ({:>7.2} to {:>7.2}) {:>8.1}x  {:>9} bytes{extra}",
        ms(t.median),
        ms(t.min),
        ms(t.max),
        t.median.as_secs_f64() / base.as_secs_f64(),
        t.bytes
    );
}

/// The entries of a list answer, checked to be `want` long and ranked by `key`, most
/// first.
fn ranked(json: &Value, list: &str, want: usize, key: impl Fn(&Value) -> u64) {
    let entries = json[list].as_array().expect("list");
    assert_eq!(entries.len(), want, "{list}: {json:.300}");
    let keys: Vec<u64> = entries.iter().map(key).collect();
    assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{list}: not ranked");
}

fn main() {
    let subscribers = env_or("SUBSCRIBERS", 100_000);
    let minutes = env_or("MINUTES", 10);
    let swarms = env_or("SWARMS", 10_000);
    let tmp = TempDir::new("api-scale");
    let history = Arc::new(
        History::open(&tmp.0.join("history.db"), "bench", Retention::default()).expect("store"),
    );
    // The minutes end with the current one: a window asked now covers them.
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let last = wall / 60 * 60;
    // Before them, one minute each 89 days, 6 days, 23 hours and 50 minutes ago: each
    // longer window holds one more minute, and the start of every window up to 7 days falls
    // after some rows, so the running totals read at both ends hold every subscriber (the
    // 90-day window starts before the oldest row: an empty snapshot at its start).
    let mut starts: Vec<i64> = [89 * 86_400, 6 * 86_400, 23 * 3600, 50 * 60]
        .into_iter()
        .take(if std::env::var_os("RECENT_ONLY").is_some() {
            0
        } else {
            4
        })
        .map(|ago| last - ago)
        .collect();
    starts.extend((0..i64::from(minutes)).rev().map(|m| last - m * 60));
    // With `PENDING` set, the last minute's rows stay in memory (not flushed), as the
    // current minute's rows do in the daemon.
    let pending = std::env::var_os("PENDING").is_some();
    let fill = fill_subscribers_leaving(&history, subscribers, &starts, pending);
    for m in 0..SWARM_MINUTES {
        let t = last - i64::from(SWARM_MINUTES - 1 - m) * 60;
        history
            .record_swarm_minute(t, &swarm_rows(swarms, m), wall, 86_400)
            .expect("swarm rows");
    }
    let table = swarm_table(swarms, wall as u64);
    let deep = Arc::new(DeepState {
        swarms: Some(Arc::new(Swarms::new(table, Vec::new(), 86_400))),
        ..DeepState::default()
    });
    let state = Arc::new(State::new(StateOptions {
        attachments: Vec::new(),
        recent_seconds: 3600,
        flow_table_size: 4096,
        policy: PolicyStore::new(None),
        api_token: None,
        api_read_token: None,
        deep,
        clock: Default::default(),
        store: Some(history.clone()),
        subscribers: Default::default(),
        subscriber_series_limit: 1000,
        observe_mirror: None,
        alto: Default::default(),
    }));
    println!(
        "store: {subscribers} subscribers x {} minutes ({minutes} up to now, the others from \
         {:?} s before; {} rows a minute, filled in {:.1} s) and {swarms} swarms x \
         {SWARM_MINUTES} minutes; live swarm table of {swarms}{}",
        starts.len(),
        starts
            .iter()
            .map(|t| last - t)
            .filter(|a| *a >= i64::from(minutes) * 60)
            .collect::<Vec<_>>(),
        u64::from(subscribers) * 4 + 2,
        fill.as_secs_f64(),
        if pending {
            "; the last minute's rows in memory"
        } else {
            ""
        }
    );

    // The daemon's runtime (two workers) and its server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    let settings = Settings {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 16,
        hosts: AllowedHosts::new(addr, &[]),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve::run(listener, state, settings, async {
        let _ = stopped.await;
    }));

    // Warm the page cache and the server once.
    for path in ["/healthz", "/api/v1/subscribers/top?window=15m"] {
        get(addr, path);
    }
    let health = timed(addr, "/healthz");
    let base = health.median;
    println!(
        "through the API server on {addr}, medians of {ROUNDS} (fastest to slowest), ratio to /healthz:"
    );
    show("GET /healthz (baseline)", &health, base, "");

    println!("top list at {subscribers} subscribers (limit 10), and the store's own answer:");
    for (window, secs) in [
        ("15m", 900),
        ("1h", 3600),
        ("24h", 86_400),
        ("168h", 7 * 86_400),
        ("2160h", 90 * 86_400),
    ] {
        for (by, which) in [
            ("", Which::Subscribers),
            ("&by=label&name=bittorrent", Which::SubscribersLabels),
        ] {
            let path = format!("/api/v1/subscribers/top?window={window}{by}");
            let t = timed(addr, &path);
            ranked(&t.json, "subscribers", 10, |e| {
                e["bytes"].as_array().map_or(0, |b| {
                    b.iter().map(|x| x.as_u64().unwrap_or(0)).sum::<u64>()
                })
            });
            // Whole minutes, the current one included.
            let covered = t.json["window_seconds"].as_u64().expect("window_seconds");
            assert!((secs..secs + 120).contains(&covered), "{path}: {covered}");
            let r = Range::last(secs, SystemTime::now());
            let mut store = Vec::new();
            for _ in 0..3 {
                let s = Instant::now();
                let rows = history.traffic(r.from, r.to, which).expect("store").len();
                store.push((s.elapsed(), rows));
            }
            store.sort();
            let (store_t, rows) = store[1];
            show(
                &path[7..],
                &t,
                base,
                &format!(
                    "; store alone {:.1} ms ({rows} rows); first {}",
                    ms(store_t),
                    t.json["subscribers"][0]["bytes"]
                ),
            );
        }
    }

    println!("swarm list at {swarms} swarms:");
    for (path, want) in [
        ("/api/v1/swarms?limit=100", 100),
        ("/api/v1/swarms?limit=10000", swarms as usize),
        ("/api/v1/swarms?window=1h&limit=100", 100),
    ] {
        let t = timed(addr, path);
        ranked(&t.json, "swarms", want, |s| {
            s["bytes"]["transit_up"].as_u64().unwrap_or(0)
                + s["bytes"]["transit_down"].as_u64().unwrap_or(0)
        });
        assert_eq!(t.json["tracked"].as_u64(), Some(u64::from(swarms)));
        show(&path[7..], &t, base, "");
    }

    let _ = stop.send(());
    rt.block_on(server).expect("server").expect("served");
}
