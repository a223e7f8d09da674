//! Everything the running daemon owns, and the one order in which it stops
//! ([`Running::shutdown`]).
//!
//! The order follows who holds what: the threads hold the state and the probe; the state
//! holds the policy store, whose hook holds the enforcer and so the probe. The probe can be
//! detached only when it is no longer shared, so the holders go first; the last readings
//! are taken after detaching, when nothing counts any more.
//!
//! After a supervised thread failed, the stop is a crash's, made orderly: the kernel side
//! stays attached and pinned for the next daemon whatever `keep_attached_on_stop` says, a
//! thread that does not end within [`JOIN_AFTER_FAILURE`] (a stalled one) is left behind,
//! holding its share of the probe (which then stays as it is), and the history store is
//! flushed. Should even that hang, the process exits after [`EXIT_AFTER_FAILURE`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, anyhow};
use tracing::{error, info, warn};

use super::{enforcer::Enforcer, readers::read_subscribers};
use crate::{
    ipfix::Exporter,
    probe::Probe,
    probe::pins::{InstanceLock, PinDir},
    state::State,
};

/// The running daemon: its threads and the handles they share.
pub(super) struct Running {
    /// Set to stop the reader threads, the deep tier and the IPFIX exporter.
    pub stop: Arc<AtomicBool>,
    /// The reader threads and the deep tier's.
    pub threads: Vec<JoinHandle<()>>,
    /// The IPFIX exporter, if one is configured.
    pub ipfix: Option<Exporter>,
    /// The policy in force in the kernel (and the shaping qdiscs).
    pub enforcer: Arc<Enforcer>,
    /// What the threads and the API share.
    pub state: Arc<State>,
    /// The kernel probe.
    pub probe: Arc<Probe>,
    /// The instance's pin directory.
    pub pins: PinDir,
    /// The instance's lock, released last.
    pub lock: InstanceLock,
    /// `keep_attached_on_stop`: leave the programs attached and pinned for the next daemon.
    pub keep_attached: bool,
}

/// After a failure, how long the stop waits for the threads to end.
pub(super) const JOIN_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// After a failure, the longest the stop may take before the process exits regardless (a
/// stalled thread holding the history store's lock would hold the last flush forever).
pub(super) const EXIT_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Waits for `finished` until `deadline` (none: no wait needed, it is joined outright).
fn ends_by(finished: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    let Some(deadline) = deadline else {
        return true;
    };
    while !finished() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

impl Running {
    /// Stops everything, in order; the error is the detach's, if it failed. `after_failure`:
    /// a supervised thread failed; the kernel side stays attached (see the module's doc).
    pub fn shutdown(self, after_failure: bool) -> anyhow::Result<()> {
        let Running {
            stop,
            threads,
            ipfix,
            enforcer,
            state,
            probe,
            pins,
            lock,
            keep_attached,
        } = self;
        let keep_attached = keep_attached || after_failure;
        let deadline = after_failure.then(|| Instant::now() + JOIN_AFTER_FAILURE);
        if after_failure {
            // The last resort: no destructor runs, so the pins stay as after a crash.
            let _ = thread::Builder::new()
                .name("exit-after-failure".into())
                .spawn(|| {
                    thread::sleep(EXIT_AFTER_FAILURE);
                    error!(after = ?EXIT_AFTER_FAILURE, "the stop after a thread's failure hangs; exiting now");
                    std::process::exit(1);
                });
        }

        // 1. The threads stop and are joined: they hold the state and the probe. After a
        //    failure, one that has not ended by the deadline is left behind.
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let name = t.thread().name().unwrap_or("?").to_string();
            if !ends_by(|| t.is_finished(), deadline) {
                error!(thread = %name, "the thread does not end; left behind");
            } else if t.join().is_err() {
                error!(thread = %name, "a daemon thread panicked");
            }
        }
        // 2. The IPFIX exporter's thread, before the state goes: it holds it.
        let ipfix = ipfix.and_then(|x| {
            if ends_by(|| x.is_finished(), deadline) {
                x.join()
            } else {
                error!(thread = "ipfix", "the thread does not end; left behind");
                None
            }
        });

        // 3. The shaping qdiscs go (or stay for the next daemon), then the enforcer.
        if keep_attached {
            info!("keep_attached_on_stop: the shaping qdiscs stay for the next daemon");
        } else if let Err(e) = enforcer.remove_shaping() {
            warn!(error = %format!("{e:#}"), "removing the shaping qdiscs");
        }
        drop(enforcer);

        // 4. The state goes (its policy store's hook holds the enforcer and so the probe),
        //    keeping what the last reading needs: the subscriber readings and the store.
        let (readings, history) = (state.subscribers.clone(), state.store().cloned());
        let swarms = state.deep.swarms.clone();
        drop(state);

        // 5. The probe, now held only here, is detached and unpinned, or kept attached.
        //    A thread left behind after a failure still holds it: it stays attached.
        let mut held: Result<Probe, Arc<Probe>> = match Arc::try_unwrap(probe) {
            Ok(probe) => Ok(probe),
            Err(shared) if keep_attached => Err(shared),
            Err(_) => return Err(anyhow!("probe still shared at shutdown")),
        };
        let detached = match &mut held {
            Ok(probe) if keep_attached => {
                // An upgrade, or a failure: the next daemon adopts the pinned links and maps.
                probe.keep_attached();
                if after_failure {
                    info!(instance = %pins.name(), "after the failure: programs stay attached and pinned");
                } else {
                    info!(instance = %pins.name(), "keep_attached_on_stop: programs stay attached and pinned");
                }
                Ok(())
            }
            Ok(probe) => probe.detach_all().context("detaching the probe"),
            Err(_) => {
                warn!(instance = %pins.name(), "a thread left behind holds the probe: programs stay attached and pinned");
                Ok(())
            }
        };
        let probe: &Probe = match &held {
            Ok(p) => p,
            Err(shared) => shared,
        };

        // 6. Flows not exported yet go out from a last walk of the table (after detaching;
        //    kept attached, the next daemon takes its first reading as exported).
        //    The swarm view's part-minute goes to the store from the same walk.
        let last_walk = (ipfix.is_some() || swarms.is_some())
            .then(|| probe.flows().ok())
            .flatten();
        if let (Some(swarms), Some(flows)) = (&swarms, &last_walk) {
            swarms.finish(flows, history.as_deref());
        }
        if let Some(x) = ipfix {
            x.finish(last_walk);
        }

        // 7. A last reading once nothing counts any more: the store gets every byte counted.
        if let Ok(c) = probe.counters() {
            let (bytes, packets) = c.iter().flatten().fold((0u64, 0u64), |(b, p), v| {
                (b.wrapping_add(v.bytes), p.wrapping_add(v.packets))
            });
            info!(
                bytes,
                packets, "last reading, after detaching: totals since start"
            );
            if let Some(h) = &history {
                h.record_labels(SystemTime::now(), &c);
            }
        }
        read_subscribers(
            probe,
            &readings,
            history.as_deref(),
            &readings.owners(),
            true,
        );

        // 8. The store writes what it holds.
        if let Some(h) = &history
            && let Err(e) = h.flush()
        {
            error!(error = %e, "writing the last of the history");
        }
        detached?;
        if !keep_attached {
            info!("detached from both interfaces and unpinned");
        }

        // 9. The instance's lock, last: another daemon may start on it now.
        drop(lock);
        Ok(())
    }
}
