//! What can go wrong while building, driving or removing a lab.

use std::path::PathBuf;

/// A lab error: the operation, its subject and, where there is one, the underlying cause
/// (as `source()`, which `{:#}` prints after the message).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces, veths and XDP need root.
    #[error("the lab needs root (network namespaces, XDP): run it as root")]
    NotRoot,
    /// The prefix would make odd namespace names.
    #[error(
        "invalid lab prefix {0:?}: use 1 to 10 lowercase letters and digits, starting with a letter"
    )]
    BadPrefix(String),
    /// `lab up` found namespaces of the same prefix.
    #[error(
        "lab {prefix:?} is already up (namespace {netns} exists); run `peerwarden lab down --prefix {prefix}` first"
    )]
    AlreadyUp { prefix: String, netns: String },
    /// `lab traffic` on a lab that was not brought up.
    #[error("lab {prefix:?} is not up; run `peerwarden lab up --prefix {prefix}` first")]
    NotUp { prefix: String },
    /// A command could not be started at all.
    #[error("{cmd}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{cmd}: {status}: {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// An instance's pins could not be removed.
    #[error("removing the pins of instance {name}: {detail}")]
    Unpin { name: String, detail: String },
    /// A file or directory operation failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The API port is taken (another lab's daemon, say).
    #[error("API port 127.0.0.1:{port} is not free (pick another with --api-port)")]
    ApiPort {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited before it answered `/healthz`.
    #[error("the daemon exited ({status}) before it became healthy; last lines of {log}:\n{tail}")]
    DaemonExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    /// The daemon kept running but `/healthz` never answered 200.
    #[error(
        "the daemon did not answer {url} with 200 within {secs} s (last: {last}); last lines of {log}:\n{tail}"
    )]
    DaemonUnhealthy {
        url: String,
        secs: u64,
        last: String,
        log: PathBuf,
        tail: String,
    },
    /// A lab service (tracker, seeder, web server) did not come up.
    #[error("{service} did not start: {reason}; last lines of {log}:\n{tail}")]
    ServiceStart {
        service: &'static str,
        reason: String,
        log: PathBuf,
        tail: String,
    },
    /// The leecher did not finish within the time bound, or failed.
    #[error("the BitTorrent download did not finish: {reason}; last lines of {log}:\n{tail}")]
    Download {
        reason: String,
        log: PathBuf,
        tail: String,
    },
    /// The downloaded file differs from the seeded one.
    #[error("the downloaded file {path} differs from the seeded one")]
    Corrupt { path: PathBuf },
    /// An HTTP client never got the web server's file.
    #[error(
        "{client} fetched nothing from the web server ({failures} failed attempts, last: {last})"
    )]
    NoHttp {
        client: &'static str,
        failures: u64,
        last: String,
    },
    /// SIGINT or SIGTERM before the first round finished.
    #[error("interrupted")]
    Interrupted,
}
