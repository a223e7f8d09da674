//! HTTPS for the API: the certificate and key from `api: { tls: { cert, key } }` (PEM),
//! rustls with the `ring` provider, and a listener for `axum::serve` whose handshakes run
//! in their own tasks, so a client that connects and never finishes its handshake holds up
//! nobody else.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// `api.tls`: a certificate chain and its private key, PEM files.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A handshake must be done within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// Why the TLS settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("api.tls: reading {what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("api.tls: {0} holds no certificate")]
    NoCertificate(PathBuf),
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("api.tls: the certificate {cert} and key {key}: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The server configuration from the PEM files: TLS 1.2 and 1.3, HTTP/1.1.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    fn pem<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + 'a {
        move |source| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(pem("the certificate", &tls.cert))?
        .collect::<Result<_, _>>()
        .map_err(pem("the certificate", &tls.cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(tls.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(pem("the key", &tls.key))?;
    let config_err = |source| TlsError::Config {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(config_err)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(config_err)?;
    // The router speaks HTTP/1.1 only (axum's http1 feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client's address, for the request log (put in each request by `serve::run`, over
/// plain TCP and TLS).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Accepts TCP connections and hands over those whose TLS handshake succeeded.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` (call within a Tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin (as
                // axum's own listener does).
                tracing::warn!(error = %e, "accepting an API connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ended (it only does when this listener is dropped): nothing
            // more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::serve::Listener as _;
    use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::TlsConnector;

    use super::*;

    struct Files(PathBuf);

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
    fn self_signed(name: &str) -> (Files, TlsConfig, CertificateDer<'static>) {
        let dir =
            std::env::temp_dir().join(format!("peerwarden-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("rcgen");
        let cfg = TlsConfig {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&cfg.cert, ck.cert.pem()).expect("cert");
        std::fs::write(&cfg.key, ck.signing_key.serialize_pem()).expect("key");
        (Files(dir), cfg, ck.cert.der().clone())
    }

    fn client(trust: Option<CertificateDer<'static>>) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        if let Some(c) = trust {
            roots.add(c).expect("root");
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    async fn get(connector: &TlsConnector, addr: SocketAddr, path: &str) -> io::Result<String> {
        let tcp = TcpStream::connect(addr).await?;
        let mut s = connector
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn serves_https_to_a_client_trusting_the_certificate_and_only_to_it() {
        let (_files, cfg, der) = self_signed("serve");
        let config = server_config(&cfg).expect("server config");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let listener = TlsListener::new(tcp, config).expect("listener");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        // A client that connects and never says a word does not stall the others.
        let _silent = TcpStream::connect(addr).await.expect("connect");
        let answer = get(&client(Some(der)), addr, "/healthz")
            .await
            .expect("https");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");

        let refused = get(&client(None), addr, "/healthz").await;
        assert!(
            refused.is_err(),
            "a client that does not trust the certificate gets nowhere"
        );
        // Plain HTTP on the TLS port is not answered in HTTP.
        let mut plain = TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
        assert!(!String::from_utf8_lossy(&buf).contains("200"), "{buf:?}");
        server.abort();
    }

    #[test]
    fn bad_files_are_refused_with_their_path() {
        let (files, cfg, _) = self_signed("bad");
        let missing = TlsConfig {
            cert: files.0.join("nope.pem"),
            key: cfg.key.clone(),
        };
        let e = server_config(&missing).expect_err("refused");
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let swapped = TlsConfig {
            cert: cfg.key.clone(),
            key: cfg.cert.clone(),
        };
        let e = server_config(&swapped).expect_err("refused");
        assert!(e.to_string().starts_with("api.tls: "), "{e}");
        // A key that is not the certificate's.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("rcgen");
        let wrong_key = files.0.join("other-key.pem");
        std::fs::write(&wrong_key, other.signing_key.serialize_pem()).expect("key");
        let e = server_config(&TlsConfig {
            cert: cfg.cert.clone(),
            key: wrong_key,
        })
        .expect_err("refused");
        assert!(e.to_string().contains("other-key.pem"), "{e}");
    }
}
