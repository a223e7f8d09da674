//! Which of the daemon's threads are alive: each supervised thread (the readers, the deep
//! tier, the IPFIX exporter) beats a [`Heartbeat`] once per pass, and runs its body under
//! [`supervised`], which records a panic with its message. The daemon's watchdog asks
//! [`Threads::check`] once a second; a thread whose last beat is older than its bound is
//! declared stalled. `/healthz` and `/metrics` read [`Threads::health`].
//!
//! A failure is final: a thread that panicked or stalled stays failed, and the daemon
//! exits so that its supervisor (systemd's `Restart=on-failure`) starts a fresh one, which
//! adopts the pinned kernel side (docs/reliability.md, "Supervision").
//!
//! For tests, `PEERWARDEN_FAULT` ([`Fault::from_env`]) makes one named thread panic or stall
//! at its first beat.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use peerwarden_supervise::{Threads, supervised};
//!
//! let threads = Threads::default();
//! let heartbeat = threads.register("read-counters", Duration::from_secs(30));
//! supervised(&heartbeat, || heartbeat.beat());
//! // Its body returned while the daemon runs: a failure the watchdog reports.
//! assert_eq!(threads.check(Instant::now()).len(), 1);
//! ```

use std::{
    any::Any,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The stall bound of a thread that passes once a second: far above a busy pass (the
/// subscriber reader's ~1 s at 65,536 subscribers, a history flush's ~3 s at 100,000,
/// docs/benchmarks.md), so only a thread that stopped making progress reaches it.
pub const STALL_BOUND: Duration = Duration::from_secs(30);

/// The environment variable of the fault-injection hook (tests only).
pub const FAULT_VAR: &str = "PEERWARDEN_FAULT";

/// What happened to a failed thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its body panicked, with this message.
    Panicked(String),
    /// It made no progress for this long (at least its bound).
    Stalled(Duration),
    /// It returned while the daemon was running.
    Exited,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panicked(m) => write!(f, "panicked: {m}"),
            Failure::Stalled(d) => write!(f, "stalled: no progress for {} s", d.as_secs()),
            Failure::Exited => write!(f, "exited while the daemon was running"),
        }
    }
}

/// An injected fault (`PEERWARDEN_FAULT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The thread it strikes (`read-flows`).
    pub thread: String,
    /// What it does there.
    pub kind: FaultKind,
}

/// What an injected fault does at the thread's first beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Panics.
    Panic,
    /// Blocks forever (ignoring the daemon's stop), and the thread's stall bound becomes
    /// this (`None`: [`STALL_BOUND`]).
    Stall(Option<Duration>),
}

impl Fault {
    /// Parses `panic:THREAD`, `stall:THREAD` or `stall:THREAD:SECONDS`.
    pub fn parse(s: &str) -> Result<Fault, String> {
        let bad = || {
            format!(
                "{FAULT_VAR}={s:?}: expected panic:THREAD, stall:THREAD or stall:THREAD:SECONDS"
            )
        };
        let mut parts = s.split(':');
        let (kind, thread, bound) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(bad());
        }
        let thread = thread
            .filter(|t| !t.is_empty())
            .ok_or_else(bad)?
            .to_string();
        let kind = match (kind, bound) {
            (Some("panic"), None) => FaultKind::Panic,
            (Some("stall"), None) => FaultKind::Stall(None),
            (Some("stall"), Some(secs)) => match secs.parse::<u64>() {
                Ok(secs) if secs > 0 => FaultKind::Stall(Some(Duration::from_secs(secs))),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        Ok(Fault { thread, kind })
    }

    /// The fault `PEERWARDEN_FAULT` asks for, read once at the daemon's start; unset or
    /// empty is none, anything unreadable an error (a test's typo must not pass silently).
    pub fn from_env() -> Result<Option<Fault>, String> {
        match std::env::var(FAULT_VAR) {
            Ok(v) if !v.is_empty() => Fault::parse(&v).map(Some),
            _ => Ok(None),
        }
    }
}

/// One supervised thread.
struct Watched {
    name: String,
    bound: Duration,
    /// Milliseconds since the registry's epoch at the last beat.
    beat_ms: AtomicU64,
    failure: Mutex<Option<Failure>>,
    /// Set when its body returned.
    ended: std::sync::atomic::AtomicBool,
    fault: Option<FaultKind>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watched {
    /// Records `failure` unless one is recorded already (the first one is what happened).
    fn fail(&self, failure: Failure) -> bool {
        let mut f = lock(&self.failure);
        if f.is_some() {
            return false;
        }
        *f = Some(failure);
        true
    }
}

/// The registry of supervised threads (one per daemon, in its shared state).
pub struct Threads {
    epoch: Instant,
    entries: Mutex<Vec<Arc<Watched>>>,
    fault: Mutex<Option<Fault>>,
}

impl Default for Threads {
    fn default() -> Threads {
        Threads {
            epoch: Instant::now(),
            entries: Mutex::new(Vec::new()),
            fault: Mutex::new(None),
        }
    }
}

/// A thread's health as `/healthz` and `/metrics` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadHealth {
    /// The thread's name (`read-counters`).
    pub name: String,
    /// What happened to it; `None` while it is healthy.
    pub failure: Option<Failure>,
}

impl Threads {
    /// Arms `fault` for the thread of its name registered from now on.
    pub fn arm(&self, fault: Fault) {
        *lock(&self.fault) = Some(fault);
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Registers the thread `name`, declared stalled when it has not beaten for `bound`;
    /// it counts as having beaten now.
    pub fn register(&self, name: &str, bound: Duration) -> Heartbeat {
        let fault = lock(&self.fault)
            .as_ref()
            .filter(|f| f.thread == name)
            .map(|f| f.kind);
        let bound = match fault {
            Some(FaultKind::Stall(Some(b))) => b,
            _ => bound,
        };
        let w = Arc::new(Watched {
            name: name.to_string(),
            bound,
            beat_ms: AtomicU64::new(self.since_epoch(Instant::now())),
            failure: Mutex::new(None),
            ended: Default::default(),
            fault,
        });
        lock(&self.entries).push(w.clone());
        Heartbeat {
            w,
            epoch: self.epoch,
        }
    }

    /// Declares stalled every thread whose last beat is older than its bound at `now`, and
    /// failed every thread whose body returned; returns the failures recorded by this call
    /// (the watchdog logs them). Only the watchdog calls it, while the daemon runs: a thread
    /// ends only once the daemon stops.
    pub fn check(&self, now: Instant) -> Vec<(String, Failure)> {
        let now_ms = self.since_epoch(now);
        let mut new = Vec::new();
        for w in lock(&self.entries).iter() {
            let failure = if w.ended.load(Ordering::Acquire) {
                Failure::Exited
            } else {
                let idle =
                    Duration::from_millis(now_ms.saturating_sub(w.beat_ms.load(Ordering::Relaxed)));
                if idle < w.bound {
                    continue;
                }
                Failure::Stalled(idle)
            };
            if w.fail(failure.clone()) {
                new.push((w.name.clone(), failure));
            }
        }
        new
    }

    /// Every registered thread, in registration order, with its failure if any.
    pub fn health(&self) -> Vec<ThreadHealth> {
        lock(&self.entries)
            .iter()
            .map(|w| ThreadHealth {
                name: w.name.clone(),
                failure: lock(&w.failure).clone(),
            })
            .collect()
    }

    /// The first failed thread and what happened to it, in registration order.
    pub fn first_failure(&self) -> Option<(String, Failure)> {
        self.health()
            .into_iter()
            .find_map(|h| h.failure.map(|f| (h.name, f)))
    }
}

/// A supervised thread's handle: [`beat`](Heartbeat::beat) once per pass.
pub struct Heartbeat {
    w: Arc<Watched>,
    epoch: Instant,
}

impl Heartbeat {
    /// Records progress now. An injected fault for this thread strikes here.
    pub fn beat(&self) {
        match self.w.fault {
            None => {}
            Some(FaultKind::Panic) => {
                panic!("injected fault ({FAULT_VAR}=panic:{})", self.w.name)
            }
            Some(FaultKind::Stall(_)) => {
                tracing::warn!(thread = %self.w.name, "injected fault: this thread stalls for good");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
        let ms = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64;
        self.w.beat_ms.store(ms, Ordering::Relaxed);
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.w.name
    }
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Runs a supervised thread's `body`: a panic is recorded as the thread's failure, logged,
/// and resumed (so the thread's `JoinHandle` still reports it); a return marks the thread
/// ended.
pub fn supervised<T>(hb: &Heartbeat, body: impl FnOnce() -> T) -> T {
    let result = catch_unwind(AssertUnwindSafe(body));
    hb.w.ended.store(true, Ordering::Release);
    match result {
        Ok(v) => v,
        Err(payload) => {
            let message = panic_message(&*payload);
            tracing::error!(thread = %hb.w.name, panic = %message, "a daemon thread panicked");
            hb.w.fail(Failure::Panicked(message));
            resume_unwind(payload)
        }
    }
}

#[cfg(test)]
mod tests;
