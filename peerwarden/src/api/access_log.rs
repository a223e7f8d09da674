//! The request log: one line per request with the method, the path, the status, the
//! latency and the client's address. Never a header (the bearer token travels in
//! `Authorization`), a query string or a body: the path is what an operator needs to
//! follow requests, and nothing else that a client sends is copied to the log.

use std::time::Instant;

use axum::{
    extract::{ConnectInfo, Request},
    middleware::Next,
    response::Response,
};

use super::tls::Peer;

/// Paths longer than this are cut in the log (a path is at most what the client sent,
/// which may be long; the log should not grow by whatever it is).
const MAX_PATH: usize = 200;

/// The log target: filter with `PEERWARDEN_LOG=peerwarden::access=warn` to silence it.
pub const TARGET: &str = "peerwarden::access";

/// Middleware (`axum::middleware::from_fn`) writing one `tracing` event per request.
pub async fn log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let mut path = req.uri().path().to_string();
    if path.len() > MAX_PATH {
        let mut cut = MAX_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push_str("...");
    }
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0.0);
    let response = next.run(req).await;
    let status = response.status().as_u16();
    // Hundredths of a millisecond are enough, and shorter to read.
    let latency_ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    tracing::info!(target: TARGET, %method, path = %path, status, latency_ms, peer = %peer, "request");
    response
}
