//! The API, served on its own async runtime until SIGINT or SIGTERM, or until a supervised
//! thread has failed (the watchdog); SIGHUP re-reads the policy file and the service file.

use std::{
    net::TcpListener,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tracing::{error, info};

use super::readers::{reload_file, reload_services};
use crate::{api, state::State};

/// How long the daemon goes on answering after a thread failed, before it stops: so that
/// `/healthz` (503) and `/metrics` (`peerwarden_thread_up 0`) are seen by a scraper polling
/// every 15 s (docs/reliability.md, "Supervision"). The kernel side goes on meanwhile.
pub(super) const FAILURE_GRACE: Duration = Duration::from_secs(15);

/// How often the watchdog checks the supervised threads.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Serves the API on `listener` (over TLS with `tls`) until SIGINT or SIGTERM, or until
/// [`FAILURE_GRACE`] after a supervised thread failed.
pub(super) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: api::serve::Settings,
    state: Arc<State>,
    policy_path: Option<PathBuf>,
    services_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("API socket")?;
        info!(addr = %listener.local_addr()?, "API listening");
        if policy_path.is_some() || services_path.is_some() {
            let state = state.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    let (state, policy, services) =
                        (state.clone(), policy_path.clone(), services_path.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Some(path) = policy {
                            reload_file(&state, &path, "SIGHUP");
                        }
                        if let Some(path) = services {
                            reload_services(&state.deep, &path, "SIGHUP");
                        }
                    })
                    .await;
                }
            });
        }
        let ended = {
            let state = state.clone();
            async move {
                tokio::select! {
                    _ = shutdown_signal() => {}
                    _ = watchdog(state) => {}
                }
            }
        };
        match tls {
            Some(config) => {
                info!("API over TLS");
                let listener =
                    api::tls::TlsListener::new(listener, config).context("API socket")?;
                api::serve::run(listener, state, settings, ended).await
            }
            None => api::serve::run(listener, state, settings, ended).await,
        }
        .context("serving the API")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        error!(
            "cannot install signal handlers; stop with SIGKILL (programs detach when the process exits)"
        );
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => info!("SIGINT: shutting down"),
        _ = term.recv() => info!("SIGTERM: shutting down"),
    }
}

/// Checks the supervised threads every second; returns [`FAILURE_GRACE`] after the first
/// failure (a panic, recorded by the thread itself, or a stall, declared here).
async fn watchdog(state: Arc<State>) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    loop {
        every.tick().await;
        for (thread, failure) in state.threads.check(Instant::now()) {
            error!(thread = %thread, "daemon thread failed: {failure}");
        }
        if let Some((thread, failure)) = state.threads.first_failure() {
            error!(thread = %thread, grace = ?FAILURE_GRACE,
                "the {thread} thread {failure}: /healthz answers 503; the daemon stops after the grace, keeping the kernel side attached, and exits with an error");
            tokio::time::sleep(FAILURE_GRACE).await;
            return;
        }
    }
}
