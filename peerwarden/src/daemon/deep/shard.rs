//! One shard of the deep tier: a classifier engine for the flows hashed to it, the sample
//! counts that tell the kernel when the tier has given up on a flow, and the counters it
//! adds to [`DeepState`]. Its engine shares the endpoint cache, behaviour and DNS answers
//! with the other shards' (`peerwarden_classifier::shared`).

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use peerwarden_classifier::{Engine, EngineConfig, PacketMeta, shared::Shared};
use peerwarden_common::{
    Confidence, Direction, FlowKey, Label,
    deep::{DEEP_BUDGET, SAMPLE_SWARM_ONLY, Sample, Verdict},
};

use crate::state::DeepState;

/// Payload samples seen per flow, to tell the kernel when the deep tier has given up.
type Seen = std::collections::HashMap<FlowKey, u8>;

/// The engine settings of the deep tier, with `dns_entries` DNS answers
/// (`dns_hint_entries`); [`EngineConfig::shared`] of it is the context its shards share.
pub fn engine_config(dns_entries: u32) -> EngineConfig {
    EngineConfig {
        packet_budget: DEEP_BUDGET,
        dns_capacity: dns_entries as usize,
        ..EngineConfig::default()
    }
}

/// One shard's engine and bookkeeping.
pub struct Shard {
    engine: Engine,
    seen: Seen,
    /// Undecided flows held at most.
    cap: usize,
    /// The flows held, as last added to `DeepState::tracked` (which sums the shards).
    tracked: u64,
    hosts_seen: u64,
    last_expiry: Instant,
}

impl Shard {
    /// A shard holding at most `cap` undecided flows, learning into `shared`.
    pub fn new(cfg: EngineConfig, shared: Arc<Shared>, cap: usize) -> Shard {
        Shard {
            engine: Engine::with_shared(cfg, shared),
            seen: Seen::new(),
            cap: cap.max(16),
            tracked: 0,
            hosts_seen: 0,
            last_expiry: Instant::now(),
        }
    }

    /// Takes one sample; a verdict for the kernel goes to `put`. A swarm-only sample (a
    /// packet of a flow the kernel decided as BitTorrent) goes to the swarm view alone: the
    /// engine never holds its flow, and no verdict relabels it.
    pub fn take(&mut self, s: &Sample, deep: &DeepState, put: &mut dyn FnMut(&FlowKey, Verdict)) {
        // Every sample feeds the swarm view (issue 15) when it is on.
        if let Some(swarms) = &deep.swarms {
            swarms.on_sample(s);
        }
        if s.flags & SAMPLE_SWARM_ONLY != 0 {
            return;
        }
        self.make_room(deep, &s.key);
        self.handle(deep, s, put);
    }

    /// Once per pass: picks up a new host list, publishes the counters, and every 30 s
    /// ends the flows idle for 5 minutes.
    pub fn tick(&mut self, deep: &DeepState) {
        if let Some(hosts) = deep.hosts.newer(&mut self.hosts_seen) {
            self.engine.set_hosts(hosts);
        }
        let held = self.engine.flow_count() as u64;
        // The shards add what changed: the sum stays the flows all of them hold.
        deep.tracked
            .fetch_add(held.wrapping_sub(self.tracked), Ordering::Relaxed);
        self.tracked = held;
        let e = &self.engine;
        deep.cache_learned
            .store(e.cache_learned(), Ordering::Relaxed);
        deep.cache_refused
            .store(e.cache_refused(), Ordering::Relaxed);
        let dns = e.dns_hints();
        deep.dns_hints.store(dns.len() as u64, Ordering::Relaxed);
        deep.dns_unsolicited
            .store(dns.unsolicited(), Ordering::Relaxed);
        drop(dns);
        if self.last_expiry.elapsed() > Duration::from_secs(30) {
            self.last_expiry = Instant::now();
            let now = crate::ktime::monotonic_ns();
            self.engine.expire(now, 300_000_000_000);
            let engine = &self.engine;
            self.seen
                .retain(|k, _| engine.verdict(&from_kernel(k)).is_some());
            self.seen.shrink_to_fit();
            trim();
        }
    }

    /// Before a sample of a flow the shard does not hold yet: when it holds `cap` flows,
    /// forgets the least recently sampled quarter (engine state and sample counts), counted
    /// in `deep.evicted`.
    fn make_room(&mut self, deep: &DeepState, key: &FlowKey) {
        let (engine, cap) = (&mut self.engine, self.cap);
        if engine.flow_count() < cap || engine.verdict(&from_kernel(key)).is_some() {
            return;
        }
        let dropped = engine.evict_oldest(cap - cap / 4);
        deep.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        self.seen
            .retain(|k, _| engine.verdict(&from_kernel(k)).is_some());
        trim();
    }

    fn handle(&mut self, deep: &DeepState, s: &Sample, put: &mut dyn FnMut(&FlowKey, Verdict)) {
        let engine = &mut self.engine;
        let captured = (s.captured as usize).min(s.data.len());
        let meta = PacketMeta {
            ts_ns: s.ts_ns,
            key: from_kernel(&s.key),
            dir: if s.dir == Direction::Up as u8 {
                peerwarden_classifier::Direction::Up
            } else {
                peerwarden_classifier::Direction::Down
            },
            payload: &s.data[..captured],
            tcp_flags: s.tcp_flags,
            tcp_seq: s.tcp_seq,
        };
        let count = self.seen.entry(s.key).or_insert(0);
        *count = count.saturating_add(1);
        let verdict = engine.on_packet(&meta);
        // The engine holds the flow (it may not, when it is full) and has ended its
        // inspection, or the deep tier's budget is spent: the verdict is final, with the
        // engine's fallbacks (endpoint cache, behaviour) for a flow no detector decided.
        let held = engine.verdict(&meta.key).is_some();
        let (v, final_) = if held && engine.is_final(&meta.key) || *count >= DEEP_BUDGET {
            (engine.finish(&meta.key, s.ts_ns), true)
        } else {
            // A label the flow may still lose (a web protocol, a host name, the endpoint
            // cache): the kernel applies it and goes on sampling.
            match verdict {
                Some(v) if v.label != Label::Unknown => (v, false),
                _ => return,
            }
        };
        if let Some(service) = &v.service {
            deep.services.insert(s.key, service.clone());
        } else {
            deep.services.remove(&s.key);
        }
        let out = Verdict {
            label: v.label.id(),
            confidence: if v.label == Label::Unknown {
                Confidence::None as u8
            } else {
                v.confidence as u8
            },
            final_: u8::from(final_),
        };
        if final_ {
            self.seen.remove(&s.key);
        }
        put(&s.key, out);
    }
}

/// The classifier's key of a kernel flow key: the subscriber's side is `Up`, in both
/// directions, so it is also the key the shards are chosen by.
pub fn from_kernel(k: &FlowKey) -> peerwarden_classifier::FlowKey {
    peerwarden_classifier::FlowKey::from_kernel(k)
}

/// Hands freed heap pages back to the system (glibc keeps them otherwise).
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no arguments besides the pad; only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
