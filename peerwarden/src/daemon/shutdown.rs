//! Everything the running daemon owns, and the one order in which it stops
//! ([`Running::shutdown`]).
//!
//! The order follows who holds what: the threads hold the state and the probe; the state
//! holds the policy store, whose hook holds the enforcer and so the probe. The probe can be
//! detached only when it is no longer shared, so the holders go first; the last readings
//! are taken after detaching, when nothing counts any more.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::SystemTime,
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

impl Running {
    /// Stops everything, in order; the error is the detach's, if it failed.
    pub fn shutdown(self) -> anyhow::Result<()> {
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

        // 1. The threads stop and are joined: they hold the state and the probe.
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            if t.join().is_err() {
                error!("a daemon thread panicked");
            }
        }
        // 2. The IPFIX exporter's thread, before the state goes: it holds it.
        let ipfix = ipfix.and_then(Exporter::join);

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
        drop(state);

        // 5. The probe, now held only here, is detached and unpinned, or kept attached.
        let mut probe =
            Arc::into_inner(probe).ok_or_else(|| anyhow!("probe still shared at shutdown"))?;
        let detached = if keep_attached {
            // An upgrade: the next daemon adopts the pinned links and maps.
            probe.keep_attached();
            info!(instance = %pins.name(), "keep_attached_on_stop: programs stay attached and pinned");
            Ok(())
        } else {
            probe.detach_all().context("detaching the probe")
        };

        // 6. Flows not exported yet go out from a last walk of the table (after detaching;
        //    kept attached, the next daemon takes its first reading as exported).
        if let Some(x) = ipfix {
            x.finish(probe.flows().ok());
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
            &probe,
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
