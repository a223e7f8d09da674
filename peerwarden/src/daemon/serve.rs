//! The API, served on its own async runtime until SIGINT or SIGTERM; SIGHUP re-reads the
//! policy file.

use std::{net::TcpListener, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use tracing::{error, info};

use super::readers::reload_file;
use crate::{api, state::State};

/// Serves the API on `listener` (over TLS with `tls`) until SIGINT or SIGTERM.
pub(super) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<State>,
    policy_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("API socket")?;
        info!(addr = %listener.local_addr()?, "API listening");
        if let Some(path) = policy_path {
            let state = state.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    let (state, path) = (state.clone(), path.clone());
                    let _ =
                        tokio::task::spawn_blocking(move || reload_file(&state, &path, "SIGHUP"))
                            .await;
                }
            });
        }
        let app = api::app(state).into_make_service_with_connect_info::<api::tls::Peer>();
        match tls {
            Some(config) => {
                info!("API over TLS");
                let listener =
                    api::tls::TlsListener::new(listener, config).context("API socket")?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }
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
