//! Serving the router over plain TCP or TLS with the limits a port reachable by strangers
//! needs: a deadline for a request's headers (a slowloris client that trickles them is cut
//! off), an idle timeout, a cap on connections served at once (more wait in the kernel's
//! backlog until one closes), and the `Host` allow-list against DNS rebinding.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::header,
    middleware::Next,
    response::IntoResponse as _,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{Semaphore, watch},
};
use tower::ServiceExt as _;

use super::{ApiError, tls::Peer};
use crate::{config::Config, state::State};

/// The shortest token accepted (`api.token`, `PEERWARDEN_API_TOKEN`, `api.read_token`).
pub const MIN_TOKEN_LEN: usize = 16;

/// How the API is served, from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// The `Host` values answered.
    pub hosts: AllowedHosts,
}

impl Settings {
    /// The settings of `config`, or the one-line reason they are refused (a token under
    /// [`MIN_TOKEN_LEN`] characters, wherever it comes from).
    pub fn new(config: &Config) -> Result<Settings, String> {
        for (name, token) in [
            ("api.token (or PEERWARDEN_API_TOKEN)", config.api_token()),
            ("api.read_token", config.api.read_token.clone()),
        ] {
            if token.is_some_and(|t| t.chars().count() < MIN_TOKEN_LEN) {
                return Err(format!("{name}: use at least {MIN_TOKEN_LEN} characters"));
            }
        }
        let api = &config.api;
        if !api.listen.ip().is_loopback() && api.tls.is_none() {
            tracing::warn!(
                listen = %api.listen,
                "the API listens beyond loopback without TLS: its tokens and answers cross the network in clear (set api.tls)"
            );
        }
        Ok(Settings {
            header_timeout: Duration::from_secs(api.header_timeout_seconds),
            idle_timeout: Duration::from_secs(api.idle_timeout_seconds),
            max_connections: api.max_connections,
            hosts: AllowedHosts::new(api.listen, &api.allowed_hosts),
        })
    }
}

/// The `Host` header values the API answers: the listen address, `localhost`, `127.0.0.1`
/// and `[::1]` with its port, plus `api.allowed_hosts`; a `Host` without a port (as HTTP
/// clients write one for port 80 or 443, and some for any) matches by name. Listening on
/// every address (0.0.0.0 or ::), any IP address with the port is answered too: a
/// rebinding attack needs a name the attacker controls, never an IP literal.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    any: bool,
    any_ip: bool,
    port: u16,
    names: Vec<(String, u16)>,
}

impl AllowedHosts {
    /// For a server on `listen`; `extra` from `api.allowed_hosts` (`name` or `name:port`;
    /// `*` answers any host).
    pub fn new(listen: SocketAddr, extra: &[String]) -> AllowedHosts {
        let port = listen.port();
        let ip = match listen.ip() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let mut names: Vec<(String, u16)> = [ip.as_str(), "localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|h| (h.to_string(), port))
            .collect();
        names.extend(extra.iter().filter_map(|h| split(h, port)));
        AllowedHosts {
            any: extra.iter().any(|h| h.trim() == "*"),
            any_ip: listen.ip().is_unspecified(),
            port,
            names,
        }
    }

    /// Whether a request with this `Host` is answered.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some((name, port)) = split(host, self.port) else {
            return false;
        };
        let ip = name.trim_start_matches('[').trim_end_matches(']');
        (self.any_ip && port == self.port && ip.parse::<IpAddr>().is_ok())
            || self.names.iter().any(|(n, p)| *n == name && *p == port)
    }
}

/// `name[:port]` → the name (lower case, no trailing dot) and the port (`default` when
/// none is given); `None` for a malformed port.
fn split(host: &str, default: u16) -> Option<(String, u16)> {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = if has_port(&host) {
        let (name, port) = host.rsplit_once(':')?;
        (name.to_string(), port.parse().ok()?)
    } else if host
        .rsplit_once(':')
        .is_some_and(|(n, _)| !n.contains(':') || n.ends_with(']'))
    {
        return None;
    } else {
        (host, default)
    };
    Some((name.trim_end_matches('.').to_string(), port))
}

/// `host:port` or `[v6]:port` (a bare IPv6 address has colons but no port).
fn has_port(h: &str) -> bool {
    match h.rsplit_once(':') {
        Some((name, port)) => {
            (!name.contains(':') || name.ends_with(']')) && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// The router behind the `Host` allow-list: another host is a 421 in the API's error
/// shape (a page of the dashboard loaded through a rebound name gets nothing).
pub fn guarded(app: Router, hosts: AllowedHosts) -> Router {
    let hosts = Arc::new(hosts);
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let hosts = hosts.clone();
            async move {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .map(|h| h.to_str().unwrap_or("?").to_string())
                    .or_else(|| req.uri().authority().map(|a| a.to_string()));
                match host {
                    // No Host at all (HTTP/1.0): not a browser, so not a rebinding.
                    Some(h) if !hosts.allows(&h) => ApiError::MisdirectedRequest(format!(
                        "this API does not answer for the host {:?}; add it to api.allowed_hosts",
                        h.chars().take(100).collect::<String>()
                    ))
                    .into_response(),
                    _ => next.run(req).await,
                }
            }
        },
    ))
}

/// Serves `state`'s API on `listener` (plain TCP or [`super::tls::TlsListener`]) until
/// `shutdown` completes, then lets the connections finish (10 s at most).
pub async fn run<L>(
    mut listener: L,
    state: Arc<State>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let app = guarded(super::app(state), settings.hosts.clone());
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: at the cap, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let (app, settings, closed) = (app.clone(), settings.clone(), closed.clone());
        tokio::spawn(async move {
            connection(io, peer, app, &settings, closed).await;
            drop(permit);
        });
    }
    let _ = closing.send(true);
    let all = u32::try_from(settings.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all)).await;
    Ok(())
}

async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    settings: &Settings,
    mut closed: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let seen = Arc::new(Activity::default());
    let io = TokioIo::new(Watched {
        io,
        seen: seen.clone(),
    });
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(Peer(peer)));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut ending = false;
    loop {
        let quiet = seen.quiet();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "API connection ended");
                }
                return;
            }
            () = tokio::time::sleep(settings.idle_timeout.saturating_sub(quiet)) => {
                if seen.quiet() < settings.idle_timeout {
                    continue;
                }
                if ending {
                    tracing::debug!(%peer, "API connection closed: idle");
                    return;
                }
                // Closes an idle keep-alive connection at once; a request in progress may
                // finish within one more idle period.
                conn.as_mut().graceful_shutdown();
                ending = true;
                seen.touch();
            }
            _ = closed.changed(), if !ending => {
                conn.as_mut().graceful_shutdown();
                ending = true;
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet(&self) -> Duration {
        self.base
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that notes each read and write in its [`Activity`].
struct Watched<I> {
    io: I,
    seen: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.seen.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
