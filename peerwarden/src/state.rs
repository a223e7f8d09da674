//! What the daemon knows, shared between the threads that read the kernel maps and the
//! API handlers: the recent per-second readings of the counters, the latest flow table
//! snapshot, the probe's statistics and how it is attached.
//!
//! Built whole by [`State::new`]: the history store (SQLite, [`crate::history`]) is opened
//! before, and nothing is set afterwards.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

use dashmap::DashMap;
use peerwarden_common::{FlowKey, FlowValue};
use peerwarden_ipfix::{
    snapshot::Snapshot,
    tracker::{Slicer, slices_for},
};

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use crate::{
    history::History,
    policy_clock::PolicyClock,
    policy_store::PolicyStore,
    probe::{Attachment, LabelCounters},
};

/// One reading of the per-label counters.
#[derive(Clone)]
pub struct LabelReading {
    /// When it was read.
    pub at: Instant,
    /// Per label `[up, down]`.
    pub counters: LabelCounters,
}

/// Deep-tier results the reports read (the deep tier runs in `daemon/deep.rs`).
#[derive(Default)]
pub struct DeepState {
    /// Service names of flows labelled `video.<service>`.
    pub services: DashMap<FlowKey, String>,
    /// Undecided flows whose state the deep tier holds now.
    pub tracked: AtomicU64,
    /// Flows whose state was dropped to stay within its cap (`deep_max_flows`, least
    /// recently sampled first): the deep tier forgets them as the kernel forgets flows
    /// under a flood.
    pub evicted: AtomicU64,
    /// Endpoints the endpoint cache learned from confirmed flows (new or refreshed).
    pub cache_learned: AtomicU64,
    /// Learnings the endpoint cache refused because their subscriber had used its budget.
    pub cache_refused: AtomicU64,
    /// (subscriber, address) pairs the DNS-assisted labels remember now.
    pub dns_hints: AtomicU64,
    /// DNS answers ignored because they answered no query seen from their subscriber.
    pub dns_unsolicited: AtomicU64,
    /// Samples the ring's reader found their worker's queue full for and waited to hand
    /// on (`deep_threads` above 1; nothing is dropped, the ring backs up meanwhile).
    pub queue_waits: AtomicU64,
    /// The video host list with the operator's service file applied, when there is one
    /// (the deep tier picks up each new one).
    pub hosts: peerwarden_classifier::hosts::SharedHosts,
    /// The swarm view (`swarms.enabled`; none when off): fed by the deep tier's samples and
    /// the flow walk, read by the API.
    pub swarms: Option<Arc<crate::swarms::Swarms>>,
}

/// Shared daemon state.
pub struct State {
    /// When the daemon started.
    pub started: SystemTime,
    /// Interfaces and programs.
    pub attachments: Vec<Attachment>,
    /// The recent per-second readings, oldest first, at most `recent_len`.
    recent: Mutex<VecDeque<LabelReading>>,
    recent_len: usize,
    /// The flow table as of the last walk, in the IPFIX tracker's slices; a walk lands at
    /// once and API readers do not stall the walker.
    pub flows: Snapshot,
    /// The probe's statistics as of the last read.
    stats: Mutex<BTreeMap<&'static str, u64>>,
    flow_table_size: u32,
    /// The active and last rejected policies.
    pub policy: PolicyStore,
    /// Bearer token for writes; `None` disables writes.
    pub api_token: Option<String>,
    /// Bearer token for reads of subscriber data (`api.read_token`); `None`: those reads
    /// are open.
    pub api_read_token: Option<String>,
    /// The deep tier's results (video service names).
    pub deep: Arc<DeepState>,
    /// The schedules' clock.
    pub clock: Arc<PolicyClock>,
    /// The history store (none in most API tests).
    store: Option<Arc<History>>,
    /// Per-subscriber readings of the kernel's counters (shared: the daemon's last reading
    /// at shutdown happens after the state is gone).
    pub subscribers: Arc<crate::readings::Readings>,
    /// `/metrics` lists per-subscriber series for at most this many subscribers.
    subscriber_series_limit: usize,
    /// Observe-only mode: the mirror port (none: inline).
    observe_mirror: Option<String>,
    /// The supervised threads and their health (registered as the daemon starts them;
    /// none in API tests).
    pub threads: crate::supervision::Threads,
    /// The ALTO server's configuration and the maps of the last policy it saw.
    pub alto: peerwarden_alto::server::Alto,
}

/// What a [`State`] is made from.
pub struct StateOptions {
    /// Interfaces and programs.
    pub attachments: Vec<Attachment>,
    /// Seconds of recent per-second readings kept (`history_seconds` in the config).
    pub recent_seconds: u32,
    /// Entries of the kernel flow table.
    pub flow_table_size: u32,
    /// The policy store (with the data path's hook).
    pub policy: PolicyStore,
    /// Bearer token for writes.
    pub api_token: Option<String>,
    /// Bearer token for reads of subscriber data (`api.read_token`).
    pub api_read_token: Option<String>,
    /// The deep tier's results.
    pub deep: Arc<DeepState>,
    /// The schedules' clock.
    pub clock: Arc<PolicyClock>,
    /// The history store, opened before the state is made (none: no store).
    pub store: Option<Arc<History>>,
    /// Per-subscriber readings (the daemon keeps a handle for its last reading).
    pub subscribers: Arc<crate::readings::Readings>,
    /// `/metrics` lists per-subscriber series for at most this many subscribers.
    pub subscriber_series_limit: usize,
    /// Observe-only mode: the mirror port (none: inline).
    pub observe_mirror: Option<String>,
    /// The `alto` section of the config.
    pub alto: peerwarden_alto::AltoConfig,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// Empty state: no reading yet, no flows.
    pub fn new(o: StateOptions) -> State {
        State {
            started: SystemTime::now(),
            attachments: o.attachments,
            recent: Mutex::new(VecDeque::new()),
            recent_len: o.recent_seconds as usize + 1,
            flows: Snapshot::new(Slicer::new(slices_for(o.flow_table_size as usize))),
            stats: Mutex::new(BTreeMap::new()),
            flow_table_size: o.flow_table_size,
            policy: o.policy,
            api_token: o.api_token,
            api_read_token: o.api_read_token,
            deep: o.deep,
            clock: o.clock,
            store: o.store,
            subscribers: o.subscribers,
            subscriber_series_limit: o.subscriber_series_limit,
            observe_mirror: o.observe_mirror,
            threads: Default::default(),
            alto: peerwarden_alto::server::Alto::new(o.alto),
        }
    }

    /// The history store, if the daemon has one.
    pub fn store(&self) -> Option<&Arc<History>> {
        self.store.as_ref()
    }

    /// The mirror port in observe-only mode; `None` inline.
    pub fn observe_mirror(&self) -> Option<&str> {
        self.observe_mirror.as_deref()
    }

    /// `/metrics` lists per-subscriber series for at most this many subscribers.
    pub fn subscriber_series_limit(&self) -> usize {
        self.subscriber_series_limit
    }

    /// Entries of the kernel flow table.
    pub fn flow_table_size(&self) -> u32 {
        self.flow_table_size
    }

    /// Seconds of recent readings kept.
    pub fn recent_seconds(&self) -> u64 {
        self.recent_len as u64 - 1
    }

    /// Records a counter reading.
    pub fn push_reading(&self, reading: LabelReading) {
        let mut r = lock(&self.recent);
        if r.len() == self.recent_len {
            r.pop_front();
        }
        r.push_back(reading);
    }

    /// The latest reading, and the reading closest to `window_secs` before it (the oldest
    /// one when fewer are kept). `None` before the first reading.
    pub fn readings(
        &self,
        window_secs: Option<u64>,
    ) -> Option<(LabelReading, Option<LabelReading>)> {
        let r = lock(&self.recent);
        let latest = r.back()?.clone();
        let base = window_secs.map(|w| {
            r.iter()
                .find(|s| latest.at.duration_since(s.at).as_secs() <= w)
                .unwrap_or(&latest)
                .clone()
        });
        Some((latest, base))
    }

    /// Every recent reading kept, oldest first (for time series).
    pub fn recent(&self) -> Vec<LabelReading> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Replaces the statistics.
    pub fn set_stats(&self, stats: BTreeMap<&'static str, u64>) {
        *lock(&self.stats) = stats;
    }

    /// The statistics as of the last read, with the deep tier's bounds: the flows it holds
    /// (`deep_flows_tracked`) and those it dropped to stay bounded (`deep_flows_evicted`),
    /// and the endpoint cache's learnings (`endpoint_cache_learned`) and the learnings it
    /// refused to a subscriber over its budget (`endpoint_cache_refused`), and the DNS
    /// answers remembered (`dns_hints`) and ignored as unsolicited (`dns_unsolicited`), and
    /// the samples that waited for a full worker queue (`deep_queue_waits`).
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        let mut stats = lock(&self.stats).clone();
        let deep = &self.deep;
        stats.insert("deep_flows_tracked", deep.tracked.load(Relaxed));
        stats.insert("deep_flows_evicted", deep.evicted.load(Relaxed));
        stats.insert("endpoint_cache_learned", deep.cache_learned.load(Relaxed));
        stats.insert("endpoint_cache_refused", deep.cache_refused.load(Relaxed));
        stats.insert("dns_hints", deep.dns_hints.load(Relaxed));
        stats.insert("dns_unsolicited", deep.dns_unsolicited.load(Relaxed));
        stats.insert("deep_queue_waits", deep.queue_waits.load(Relaxed));
        stats
    }

    /// Replaces the flow snapshot with a fresh walk of the table (at most the table's size
    /// is kept); the video service names of flows the kernel no longer has go too.
    pub fn set_flows(&self, mut flows: Vec<(FlowKey, FlowValue)>) {
        flows.truncate(self.flow_table_size as usize);
        // The named flows are few: look for them in the walk, not the walk in a set.
        if !self.deep.services.is_empty() {
            let named: std::collections::HashSet<FlowKey> =
                self.deep.services.iter().map(|e| *e.key()).collect();
            let live: std::collections::HashSet<FlowKey> = flows
                .iter()
                .filter(|(k, _)| named.contains(k))
                .map(|(k, _)| *k)
                .collect();
            self.deep.services.retain(|k, _| live.contains(k));
        }
        self.flows.replace(flows);
    }
}
