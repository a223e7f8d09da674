//! What the daemon knows, shared between the threads that read the kernel maps and the
//! API handlers: a per-second history of the counters, the latest flow table snapshot,
//! the probe's statistics and how it is attached.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

use dashmap::DashMap;
use peerwarden_common::{FlowKey, FlowValue};

use std::sync::{Arc, atomic::Ordering::Relaxed};

use crate::{
    deep::DeepState,
    policy_store::PolicyStore,
    probe::{Attachment, LabelCounters},
    schedule::PolicyClock,
};

/// One reading of the counters.
#[derive(Clone)]
pub struct Sample {
    /// When it was read.
    pub at: Instant,
    /// Per label `[up, down]`.
    pub counters: LabelCounters,
}

/// Shared daemon state.
pub struct State {
    /// When the daemon started.
    pub started: SystemTime,
    /// Interfaces and programs.
    pub attachments: Vec<Attachment>,
    /// Per-second samples, oldest first, at most `history_len`.
    history: Mutex<VecDeque<Sample>>,
    history_len: usize,
    /// The flow table as of the last walk; sharded so API readers do not stall the walker.
    pub flows: DashMap<FlowKey, FlowValue>,
    /// The probe's statistics as of the last read.
    stats: Mutex<BTreeMap<&'static str, u64>>,
    flow_table_size: u32,
    /// The active and last rejected policies.
    pub policy: PolicyStore,
    /// Bearer token for writes; `None` disables writes.
    pub api_token: Option<String>,
    /// Bearer token for reads of subscriber data (`api.read_token`), set once at start;
    /// unset: those reads are open.
    pub api_read_token: std::sync::OnceLock<String>,
    /// The deep tier's results (video service names).
    pub deep: Arc<DeepState>,
    /// The schedules' clock.
    pub clock: Arc<PolicyClock>,
    /// The history store, set once when the daemon has opened it (none in API tests).
    pub history_store: std::sync::OnceLock<Arc<crate::history::History>>,
    /// Per-subscriber readings of the kernel's counters (shared: the daemon's last reading
    /// at shutdown happens after the state is gone).
    pub subscribers: Arc<crate::readings::Readings>,
    /// `/metrics` lists per-subscriber series for at most this many subscribers.
    pub subscriber_series_limit: std::sync::atomic::AtomicUsize,
    /// Observe-only mode: the mirror port, set once by the daemon (unset: inline).
    pub observe_mirror: std::sync::OnceLock<String>,
}

/// What a [`State`] is made from.
pub struct StateOptions {
    /// Interfaces and programs.
    pub attachments: Vec<Attachment>,
    /// Seconds of per-second history.
    pub history_seconds: u32,
    /// Entries of the kernel flow table.
    pub flow_table_size: u32,
    /// The policy store (with the data path's hook).
    pub policy: PolicyStore,
    /// Bearer token for writes.
    pub api_token: Option<String>,
    /// The deep tier's results.
    pub deep: Arc<DeepState>,
    /// The schedules' clock.
    pub clock: Arc<PolicyClock>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// Empty state.
    pub fn new(o: StateOptions) -> State {
        State {
            started: SystemTime::now(),
            attachments: o.attachments,
            history: Mutex::new(VecDeque::new()),
            history_len: o.history_seconds as usize + 1,
            flows: DashMap::new(),
            stats: Mutex::new(BTreeMap::new()),
            flow_table_size: o.flow_table_size,
            policy: o.policy,
            api_token: o.api_token,
            api_read_token: Default::default(),
            deep: o.deep,
            clock: o.clock,
            history_store: Default::default(),
            subscribers: Default::default(),
            subscriber_series_limit: 1000.into(),
            observe_mirror: Default::default(),
        }
    }

    /// Entries of the kernel flow table.
    pub fn flow_table_size(&self) -> u32 {
        self.flow_table_size
    }

    /// The history store, once the daemon has opened it (none in API tests without one).
    pub fn store(&self) -> Option<&Arc<crate::history::History>> {
        self.history_store.get()
    }

    /// Observe-only mode: the mirror port (`None`: inline).
    pub fn observe_mirror(&self) -> Option<&str> {
        self.observe_mirror.get().map(String::as_str)
    }

    /// `/metrics` lists per-subscriber series for at most this many subscribers.
    pub fn subscriber_series_limit(&self) -> usize {
        self.subscriber_series_limit.load(Relaxed)
    }

    /// Seconds of history kept.
    pub fn history_seconds(&self) -> u64 {
        self.history_len as u64 - 1
    }

    /// Records a counter reading.
    pub fn push_sample(&self, sample: Sample) {
        let mut h = lock(&self.history);
        if h.len() == self.history_len {
            h.pop_front();
        }
        h.push_back(sample);
    }

    /// The latest reading, and the reading closest to `window_secs` before it (the oldest
    /// one when history is shorter). `None` before the first reading.
    pub fn samples(&self, window_secs: Option<u64>) -> Option<(Sample, Option<Sample>)> {
        let h = lock(&self.history);
        let latest = h.back()?.clone();
        let base = window_secs.map(|w| {
            h.iter()
                .find(|s| latest.at.duration_since(s.at).as_secs() <= w)
                .unwrap_or(&latest)
                .clone()
        });
        Some((latest, base))
    }

    /// Every reading kept, oldest first (for time series).
    pub fn history(&self) -> Vec<Sample> {
        lock(&self.history).iter().cloned().collect()
    }

    /// Replaces the statistics.
    pub fn set_stats(&self, stats: BTreeMap<&'static str, u64>) {
        *lock(&self.stats) = stats;
    }

    /// The statistics as of the last read, with the deep tier's bounds: the flows it holds
    /// (`deep_flows_tracked`) and those it dropped to stay bounded (`deep_flows_evicted`),
    /// and the endpoint cache's learnings (`endpoint_cache_learned`) and the learnings it
    /// refused to a subscriber over its budget (`endpoint_cache_refused`).
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        let mut stats = lock(&self.stats).clone();
        let deep = &self.deep;
        stats.insert("deep_flows_tracked", deep.tracked.load(Relaxed));
        stats.insert("deep_flows_evicted", deep.evicted.load(Relaxed));
        stats.insert("endpoint_cache_learned", deep.cache_learned.load(Relaxed));
        stats.insert("endpoint_cache_refused", deep.cache_refused.load(Relaxed));
        stats
    }

    /// Replaces the flow snapshot with a fresh walk of the table (at most the table's size
    /// is kept); the video service names of flows the kernel no longer has go too.
    pub fn set_flows(&self, mut flows: Vec<(FlowKey, FlowValue)>) {
        flows.truncate(self.flow_table_size as usize);
        let live: std::collections::HashSet<FlowKey> = flows.iter().map(|(k, _)| *k).collect();
        self.flows.retain(|k, _| live.contains(k));
        self.deep.services.retain(|k, _| live.contains(k));
        for (k, v) in flows {
            self.flows.insert(k, v);
        }
        // A flood's worth of shards shrinks back once it has passed.
        self.flows.shrink_to_fit();
    }
}
