//! `lab traffic`: a BitTorrent swarm round (or rounds, with `looped`) plus HTTP background,
//! all through the gateway, bounded in time.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use super::{
    Lab, LabError, exec, require_up,
    swarm::{self, Peer},
    web,
};

/// How `lab traffic` runs.
#[derive(Clone, Debug)]
pub struct TrafficOptions {
    /// Time bound for the whole run.
    pub seconds: u64,
    /// Keep running fresh swarm rounds until the time bound or a signal.
    pub looped: bool,
    /// Size of each round's torrent payload.
    pub size_mb: u32,
    /// curl `--limit-rate` for each HTTP client.
    pub http_rate: String,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            seconds: 120,
            looped: false,
            size_mb: 8,
            http_rate: "4M".into(),
        }
    }
}

/// One completed swarm round.
#[derive(Clone, Debug)]
pub struct RoundSummary {
    /// Hex info-hash.
    pub infohash: String,
    /// Payload size.
    pub bytes: u64,
    /// Payload bytes each leecher session downloaded, by transport (`utp`, `tcp`).
    pub downloaded: BTreeMap<String, u64>,
    /// Payload bytes the seeder uploaded.
    pub uploaded: u64,
    /// From starting the leecher to its completion.
    pub duration: Duration,
}

/// What `lab traffic` did.
#[derive(Clone, Debug)]
pub struct TrafficSummary {
    /// Completed swarm rounds.
    pub rounds: Vec<RoundSummary>,
    /// HTTP clients.
    pub http: Vec<web::HttpStats>,
    /// Whole run.
    pub elapsed: Duration,
}

impl fmt::Display for TrafficSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "traffic: {:.1} s, {} swarm round(s)",
            self.elapsed.as_secs_f64(),
            self.rounds.len()
        )?;
        for (i, r) in self.rounds.iter().enumerate() {
            let leech: Vec<String> = r
                .downloaded
                .iter()
                .map(|(t, b)| format!("{t} {}", mb(*b)))
                .collect();
            writeln!(
                f,
                "  round {}: {} torrent {}..., alice leecher downloaded {} in {:.1} s; seeder uploaded {}",
                i + 1,
                mb(r.bytes),
                &r.infohash[..r.infohash.len().min(12)],
                leech.join(" + "),
                r.duration.as_secs_f64(),
                mb(r.uploaded),
            )?;
        }
        for h in &self.http {
            writeln!(
                f,
                "  http {}: {} fetch(es), {} downloaded, {} failed",
                h.client,
                h.fetches,
                mb(h.bytes),
                h.failures
            )?;
        }
        Ok(())
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// How often the daemon reads the probe's maps (peerwarden/src/daemon.rs).
const DAEMON_READ_INTERVAL: Duration = Duration::from_secs(1);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM end the run cleanly (children stopped, summary printed) instead of
/// killing this process with its children still running.
fn install_signal_handlers() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
        }
    });
}

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Runs the swarm (and HTTP background) through the gateway. Returns when the leecher has
/// the whole file, or, with `looped`, when the time bound passes or a signal arrives.
pub fn traffic(lab: &Lab, opts: &TrafficOptions) -> Result<TrafficSummary, LabError> {
    exec::require_root()?;
    require_up(lab)?;
    install_signal_handlers();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(opts.seconds);
    let script = swarm::install_script(lab)?;

    let mut nginx = web::start_server(lab)?;
    let clients = web::Clients::start(lab, &opts.http_rate);

    let mut rounds = Vec::new();
    let mut failure = None;
    for n in 1.. {
        match round(lab, &script, n, opts, deadline) {
            Ok(Some(r)) => rounds.push(r),
            // Cut short by the time bound or a signal: normal in loop mode.
            Ok(None) => break,
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
        // Keep the disk use of long loops flat.
        let _ = std::fs::remove_dir_all(lab.path("swarm").join(n.to_string()));
        if !opts.looped || stopped() || Instant::now() >= deadline {
            break;
        }
    }

    let http = clients.finish();
    nginx.stop(Duration::from_secs(3));
    if lab.path("daemon.pid").exists() {
        // The daemon reads the probe's counters once a second: wait for one more read, so
        // that `lab traffic && curl .../api/v1/mix` sees the last packets of the run.
        std::thread::sleep(DAEMON_READ_INTERVAL + Duration::from_millis(200));
    }
    if let Some(err) = failure {
        return Err(err);
    }
    if rounds.is_empty() {
        return Err(if stopped() {
            LabError::Interrupted
        } else {
            LabError::Download {
                reason: format!("time bound of {} s reached", opts.seconds),
                log: lab.path("leecher.log"),
                tail: exec::tail(&lab.path("leecher.log"), 10),
            }
        });
    }
    for h in &http {
        if h.fetches == 0 {
            return Err(LabError::NoHttp {
                client: h.client,
                failures: h.failures,
                last: h.last_failure.clone(),
            });
        }
    }
    Ok(TrafficSummary {
        rounds,
        http,
        elapsed: t0.elapsed(),
    })
}

/// One swarm round: torrent, tracker, seeder, leecher; everything stopped before return.
/// `Ok(None)` when a signal (or, in loop mode, the time bound) cut the round short; the
/// time bound in single mode is an error.
fn round(
    lab: &Lab,
    script: &str,
    n: u32,
    opts: &TrafficOptions,
    deadline: Instant,
) -> Result<Option<RoundSummary>, LabError> {
    let torrent = swarm::make_torrent(lab, script, n, opts.size_mb)?;
    let mut tracker = swarm::start_tracker(lab, &torrent)?;
    let mut seeder = swarm::start_seeder(lab, script, &torrent)?;
    let started = Instant::now();
    let mut leecher = swarm::start_leecher(lab, script, &torrent)?;

    let outcome = wait_leecher(&mut leecher, deadline);
    let duration = started.elapsed();
    // Give the leecher its clean exit (it announces `stopped`), then the seeder, then the
    // tracker, so that the last announces find the tracker still there.
    let leech_status = leecher.service.stop(Duration::from_secs(5));
    seeder.service.stop(Duration::from_secs(5));
    let uploaded = last_event(&seeder.events, "stopped")
        .and_then(|e| e["uploaded"].as_u64())
        .unwrap_or(0);
    tracker.stop(Duration::from_secs(3));

    let downloaded = match outcome {
        Wait::Done(downloaded) => downloaded,
        Wait::Signal => return Ok(None),
        Wait::Deadline if opts.looped => return Ok(None),
        Wait::Deadline => {
            return Err(LabError::Download {
                reason: format!("time bound of {} s reached", opts.seconds),
                log: leecher.service.log.clone(),
                tail: exec::tail(&leecher.service.log, 10),
            });
        }
        Wait::Exited => {
            return Err(LabError::Download {
                reason: format!("the leecher exited ({leech_status:?}) before finishing"),
                log: leecher.service.log.clone(),
                tail: exec::tail(&leecher.service.log, 10),
            });
        }
    };
    for copy in swarm::leeched_copies(&torrent) {
        if !swarm::same_contents(&torrent.payload, &copy)? {
            return Err(LabError::Corrupt { path: copy });
        }
    }
    Ok(Some(RoundSummary {
        infohash: torrent.infohash.clone(),
        bytes: torrent.bytes,
        downloaded,
        uploaded,
        duration,
    }))
}

enum Wait {
    Done(BTreeMap<String, u64>),
    Exited,
    Deadline,
    Signal,
}

fn wait_leecher(leecher: &mut Peer, deadline: Instant) -> Wait {
    loop {
        if stopped() {
            return Wait::Signal;
        }
        if Instant::now() >= deadline {
            return Wait::Deadline;
        }
        match leecher.events.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let ev = swarm::event(&line);
                if ev["event"] == "done" {
                    let downloaded = ev["downloaded"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                                .collect()
                        })
                        .unwrap_or_default();
                    return Wait::Done(downloaded);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Wait::Exited,
        }
    }
}

/// The last event named `name` still queued on `events`.
fn last_event(events: &mpsc::Receiver<String>, name: &str) -> Option<serde_json::Value> {
    // The process has exited: its reader thread ends once the pipe is drained.
    let mut found = None;
    while let Ok(line) = events.recv_timeout(Duration::from_millis(500)) {
        let ev = swarm::event(&line);
        if ev["event"] == name {
            found = Some(ev);
        }
    }
    found
}
