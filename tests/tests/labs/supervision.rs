//! Supervision (issue 14, item 5): a daemon thread that panics or stalls shows in
//! `/healthz` (503 naming it) and in `/metrics` (`peerwarden_thread_up{thread} 0`), and the
//! daemon exits non-zero after its grace, leaving the kernel side attached and pinned as a
//! crash does; the next daemon adopts it, is healthy, and stops cleanly.
//!
//! The fault comes from the test hook `PEERWARDEN_FAULT` (docs/reliability.md,
//! "Supervision"), set on the first daemon's command only.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs supervision:: -- --test-threads=1`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use peerwarden_lab::http_get;
use peerwarden_tests::lab::{
    Daemon, HTTP_TIMEOUT, Lab, TempDir, assert_nothing_attached, peerwarden_bin, xdp_attached,
};
use serde_json::Value;

/// The daemon's grace after a failure (15 s) plus its stop, with room for a loaded machine.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

fn config(lab: &Lab, tmp: &Path) -> PathBuf {
    let path = tmp.join("config.yaml");
    let text = format!(
        "interfaces: {{ downlink: downlink, uplink: uplink }}\n\
         netns: {}\n\
         api: {{ listen: \"127.0.0.1:{}\" }}\n\
         flow_table_size: 65536\n\
         history: {{ path: {} }}\n",
        lab.netns("gw"),
        lab.api_port,
        tmp.join("history.db").display()
    );
    std::fs::write(&path, text).expect("writing config");
    path
}

fn pins(lab: &Lab) -> PathBuf {
    Path::new("/sys/fs/bpf/peerwarden").join(format!("{}_downlink_uplink", lab.netns("gw")))
}

/// A daemon started with a fault injected; killed on drop if it is still running (its
/// pins then go with the lab).
struct Faulty {
    child: Child,
    log: PathBuf,
}

impl Faulty {
    fn start(config: &Path, log: &Path, fault: &str) -> Faulty {
        let out = std::fs::File::create(log).expect("creating the daemon log");
        let err = out.try_clone().expect("cloning the log handle");
        let child = Command::new(peerwarden_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("PEERWARDEN_FAULT", fault)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting the daemon");
        Faulty {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/healthz` until it answers 503; returns its body.
    fn unhealthy(&mut self, lab: &Lab, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                panic!(
                    "the daemon exited ({status}) before /healthz said 503:\n{}",
                    self.log_text()
                );
            }
            if let Ok((503, body)) = http_get(lab.api_addr(), "/healthz", HTTP_TIMEOUT) {
                return serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("/healthz 503 body: {e}: {body}"));
            }
            assert!(
                Instant::now() < deadline,
                "/healthz did not answer 503 within {within:?}:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {within:?} of its failure:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `peerwarden_thread_up{thread="<thread>"}`'s value in a scrape, if listed.
fn thread_up(metrics: &str, thread: &str) -> Option<String> {
    let prefix = format!("peerwarden_thread_up{{thread=\"{thread}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

/// Starts a daemon with `fault`, sees the failure of `thread` in /healthz (the error
/// starting with `error_start`) and /metrics, its non-zero exit naming the thread, the
/// kernel side still attached; then a second daemon adopts it, is healthy and stops
/// cleanly.
fn fails_then_restarts(prefix: &str, port: u16, fault: &str, thread: &str, error_start: &str) {
    let tmp = TempDir::new(&format!("supervision-{prefix}"));
    let lab = Lab::up(prefix, port, &["--no-daemon"]);
    let gw = lab.netns("gw");
    let config = config(&lab, &tmp.0);
    let mut faulty = Faulty::start(&config, &tmp.0.join("faulty.log"), fault);

    let health = faulty.unhealthy(&lab, Duration::from_secs(120));
    assert_eq!(health["status"], "failed", "{health}");
    let failed = health["failed"].as_array().expect("failed threads");
    assert_eq!(failed.len(), 1, "one thread failed: {health}");
    assert_eq!(failed[0]["thread"], thread, "{health}");
    let error = failed[0]["error"].as_str().expect("error");
    assert!(error.starts_with(error_start), "{error}");
    let (code, metrics) = http_get(lab.api_addr(), "/metrics", HTTP_TIMEOUT).expect("GET /metrics");
    assert_eq!(code, 200);
    assert_eq!(
        thread_up(&metrics, thread).as_deref(),
        Some("0"),
        "{metrics}"
    );
    for healthy in ["read-counters", "read-subscribers", "read-flows", "deep"] {
        if healthy != thread {
            assert_eq!(
                thread_up(&metrics, healthy).as_deref(),
                Some("1"),
                "{healthy}: {metrics}"
            );
        }
    }

    let status = faulty.wait(EXIT_WITHIN);
    let log = faulty.log_text();
    assert!(
        status.code().is_some_and(|c| c != 0),
        "a failed thread must end in a non-zero exit, got {status}:\n{log}"
    );
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.starts_with("peerwarden: ") && last.contains(thread) && last.contains(error_start),
        "the last line names the thread and what happened: {last}\n{log}"
    );
    // Like a crash: the programs stay attached and pinned, the history store was flushed.
    assert_eq!(xdp_attached(&gw), 2, "XDP stays attached:\n{log}");
    assert!(pins(&lab).join("map_FLOWS").exists(), "maps stay pinned");
    assert!(
        std::fs::read_dir(pins(&lab))
            .expect("pin dir")
            .flatten()
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("link_xdp_downlink")),
        "the downlink's XDP link stays pinned"
    );
    assert!(
        tmp.0.join("history.db").exists(),
        "the history store exists"
    );

    // The next daemon (no fault) adopts the kernel side and is healthy.
    let daemon = Daemon::start(&config, &tmp.0.join("next.log"), lab.api_addr());
    let attached = lab.api("/api/v1/status")["attached"].clone();
    let xdp: Vec<&Value> = attached
        .as_array()
        .expect("attached")
        .iter()
        .filter(|a| a["program"].as_str().is_some_and(|p| p.starts_with("xdp")))
        .collect();
    assert_eq!(xdp.len(), 2, "{attached}");
    assert!(
        xdp.iter().all(|a| a["adopted"] == true),
        "the next daemon adopts the pinned links: {attached}"
    );
    let (code, body) = http_get(lab.api_addr(), "/healthz", HTTP_TIMEOUT).expect("healthz");
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = http_get(lab.api_addr(), "/metrics", HTTP_TIMEOUT).expect("metrics");
    assert_eq!(
        thread_up(&metrics, thread).as_deref(),
        Some("1"),
        "{metrics}"
    );
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "the next daemon stops cleanly: {status}");
    assert_nothing_attached(&gw, "after the next daemon's SIGTERM");
    assert!(!pins(&lab).exists(), "a clean stop removes the pins");
}

#[test]
fn a_panicking_reader_fails_healthz_and_the_daemon_exits_keeping_the_kernel_side() {
    fails_then_restarts(
        "pwsv1",
        19481,
        "panic:read-flows",
        "read-flows",
        "panicked: injected fault",
    );
}

#[test]
fn a_stalled_reader_fails_healthz_and_the_daemon_exits_keeping_the_kernel_side() {
    // A 2 s stall bound for this thread only; the thread blocks for good, so the stop
    // leaves it behind.
    fails_then_restarts(
        "pwsv2",
        19482,
        "stall:read-counters:2",
        "read-counters",
        "stalled: no progress for",
    );
}
