//! The daemon's deep tier: reads payload samples of undecided flows from the kernel's ring
//! buffer, runs the classifier engine on them, and hands verdicts back to the kernel (which
//! applies them on the flow's next packet). Video services' names (`video.youtube`) go to
//! [`DeepState`], keyed by flow, for the reports.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use peerwarden_classifier::{Engine, EngineConfig, PacketMeta};
use peerwarden_common::{
    Confidence, Direction, FlowKey, Label,
    deep::{DEEP_BUDGET, Sample, Verdict},
};

use crate::{
    probe::Probe,
    state::DeepState,
    supervision::{Heartbeat, STALL_BOUND, Threads, supervised},
};

/// Starts the deep tier's thread if the probe has a sample ring (it takes the ring), with
/// at most `max_tracked` undecided flows (`deep_max_flows`) and `dns_entries` DNS answers
/// (`dns_hint_entries`), supervised in `threads` as
/// `deep`: it beats every pass (the ring is polled with a 100 ms timeout, so also when
/// idle) and every sample.
pub(super) fn spawn(
    probe: &Arc<Probe>,
    deep: &Arc<DeepState>,
    threads: &Threads,
    stop: &Arc<AtomicBool>,
    max_tracked: u32,
    dns_entries: u32,
) -> anyhow::Result<Option<thread::JoinHandle<()>>> {
    let Some(ring) = probe.take_samples() else {
        return Ok(None);
    };
    let (probe, deep, stop) = (probe.clone(), deep.clone(), stop.clone());
    let heartbeat = threads.register("deep", STALL_BOUND);
    thread::Builder::new()
        .name("deep".into())
        .spawn(move || {
            supervised(&heartbeat, || {
                run(
                    &heartbeat,
                    probe,
                    ring,
                    deep,
                    stop,
                    (max_tracked, dns_entries),
                )
            })
        })
        .map(Some)
        .context("starting the deep classifier")
}

/// Payload samples seen per flow, to tell the kernel when the deep tier has given up.
type Seen = std::collections::HashMap<FlowKey, u8>;

/// Runs until `stop`: samples in, verdicts out.
fn run(
    heartbeat: &Heartbeat,
    probe: Arc<Probe>,
    mut ring: RingBuf<MapData>,
    deep: Arc<DeepState>,
    stop: Arc<AtomicBool>,
    (max_tracked, dns_entries): (u32, u32),
) {
    let mut engine = Engine::new(EngineConfig {
        packet_budget: DEEP_BUDGET,
        dns_capacity: dns_entries as usize,
        ..EngineConfig::default()
    });
    let mut hosts_seen = 0;
    let mut seen = Seen::new();
    let cap = probe.options().flow_table_size.min(max_tracked).max(16) as usize;
    let fd = ring.as_fd().as_raw_fd();
    let mut last_expiry = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        if let Some(hosts) = deep.hosts.newer(&mut hosts_seen) {
            engine.set_hosts(hosts);
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a 100 ms timeout keeps `stop` responsive.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        while let Some(item) = ring.next() {
            // A flood keeps this loop busy, and working.
            heartbeat.beat();
            if item.len() < std::mem::size_of::<Sample>() {
                continue;
            }
            // SAFETY: the kernel wrote a whole Sample (size checked); read it unaligned.
            let s: Sample = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            make_room(&mut engine, &mut seen, &deep, cap, &s.key);
            handle(&probe, &mut engine, &deep, &mut seen, &s);
        }
        deep.tracked
            .store(engine.flow_count() as u64, Ordering::Relaxed);
        deep.cache_learned
            .store(engine.cache_learned(), Ordering::Relaxed);
        deep.cache_refused
            .store(engine.cache_refused(), Ordering::Relaxed);
        let dns = engine.dns_hints();
        deep.dns_hints.store(dns.len() as u64, Ordering::Relaxed);
        deep.dns_unsolicited
            .store(dns.unsolicited(), Ordering::Relaxed);
        if last_expiry.elapsed() > Duration::from_secs(30) {
            last_expiry = std::time::Instant::now();
            let now = crate::ktime::monotonic_ns();
            engine.expire(now, 300_000_000_000);
            seen.retain(|k, _| engine.verdict(&from_kernel(k)).is_some());
            seen.shrink_to_fit();
            trim();
        }
    }
}

fn from_kernel(k: &FlowKey) -> peerwarden_classifier::FlowKey {
    peerwarden_classifier::FlowKey::from_kernel(k)
}

/// Before a sample of a flow the deep tier does not hold yet: when it holds `cap` flows,
/// forgets the least recently sampled quarter (engine state and sample counts), counted in
/// `deep.evicted`.
fn make_room(engine: &mut Engine, seen: &mut Seen, deep: &DeepState, cap: usize, key: &FlowKey) {
    if engine.flow_count() < cap || engine.verdict(&from_kernel(key)).is_some() {
        return;
    }
    let dropped = engine.evict_oldest(cap - cap / 4);
    deep.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
    seen.retain(|k, _| engine.verdict(&from_kernel(k)).is_some());
    trim();
}

/// Hands freed heap pages back to the system (glibc keeps them otherwise).
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no arguments besides the pad; only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn handle(probe: &Probe, engine: &mut Engine, deep: &DeepState, seen: &mut Seen, s: &Sample) {
    if let Some(swarms) = &deep.swarms {
        swarms.on_sample(s); // the swarm view (issue 15), when enabled
    }
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
    let count = seen.entry(s.key).or_insert(0);
    *count = count.saturating_add(1);
    let verdict = engine.on_packet(&meta);
    // The engine holds the flow (it may not, when it is full) and has ended its inspection,
    // or the deep tier's budget is spent: the verdict is final, with the engine's fallbacks
    // (endpoint cache, behaviour) for a flow no detector decided.
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
        seen.remove(&s.key);
    }
    if let Err(e) = probe.put_verdict(&s.key, out) {
        tracing::warn!(error = %e, "handing a verdict to the kernel");
    }
}
