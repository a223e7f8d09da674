//! The daemon's deep tier: reads payload samples of undecided flows from the kernel's ring
//! buffer, runs the classifier engine on them, and hands verdicts back to the kernel (which
//! applies them on the flow's next packet). Video services' names (`video.youtube`) go to
//! [`DeepState`], keyed by flow, for the reports.
//!
//! On `deep_threads` shards (config; default half the CPUs, 1 to 8). With one, a single
//! thread `deep` reads the ring and classifies. With more, `deep` only reads the ring (it
//! has one consumer) and hands each sample to the worker `deep-<i>` its flow hashes to
//! (`peerwarden_classifier::shards`: the key is the subscriber-side 5-tuple both directions
//! share), in batches of up to [`BATCH`] samples (handed on when full, and whatever is
//! gathered after each pass over the ring or every `BATCH` samples per worker read)
//! through a bounded queue of [`QUEUE_BATCHES`] batches, so a flow's samples are classified
//! in the order the kernel sent them. A batch for a full queue waits for room, counted in
//! `deep_queue_waits`: no sample is dropped in the daemon; meanwhile the ring fills,
//! and what the kernel could not put there it counts (`ring_drops`). The workers'
//! engines share the endpoint cache, behaviour and DNS answers; each holds at most its
//! share of `deep_max_flows`. Every thread is supervised.
//!
//! The per-subscriber fairness is the kernel's: each subscriber gets a budget of samples
//! before the ring (issue 11, `samples_over_budget`), whatever the number of shards.

pub mod shard;

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use peerwarden_classifier::shards::Dispatch;
use peerwarden_classifier::shards::shard_of;
use peerwarden_common::{
    FlowKey,
    deep::{Sample, Verdict},
};

pub use self::shard::Shard;
use crate::{
    probe::Probe,
    state::DeepState,
    supervision::{Heartbeat, STALL_BOUND, Threads, supervised},
};

/// Samples handed to a worker at once at most (about 1.5 KiB each): one queue operation,
/// and at most one wake-up of the worker, per batch rather than per sample.
pub const BATCH: usize = 32;
/// Batches queued per worker at most.
pub const QUEUE_BATCHES: usize = 8;

/// How often a worker publishes its counters (and beats, when idle).
const PASS: Duration = Duration::from_millis(100);

/// Shards at most when the config does not say (`deep_threads`: half the CPUs, up to this).
pub const DEFAULT_MAX_THREADS: usize = 8;

/// The shards for the config's `deep_threads` (validated: 1 to 64), or by default half the
/// CPUs this process may run on (at least 1, at most [`DEFAULT_MAX_THREADS`]): the other half
/// is left to the kernel's XDP and softirq work and the daemon's other threads. On two CPUs
/// that is one shard, which measured faster than two there (docs/benchmarks.md).
pub fn threads(configured: Option<u32>) -> usize {
    match configured {
        Some(n) => n.max(1) as usize,
        None => thread::available_parallelism()
            .map_or(1, |n| (n.get() / 2).clamp(1, DEFAULT_MAX_THREADS)),
    }
}

/// The deep tier's settings from the config.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Undecided flows held at most, over all shards (`deep_max_flows`).
    pub max_tracked: u32,
    /// DNS answers remembered (`dns_hint_entries`).
    pub dns_entries: u32,
    /// Shards (`deep_threads`), at least 1.
    pub threads: usize,
}

/// Starts the deep tier if the probe has a sample ring (it takes the ring), supervised in
/// `threads`: `deep` beats every pass (the ring is polled with a 100 ms timeout, so also
/// when idle) and every sample, and each worker `deep-<i>` every sample and every 100 ms.
pub(super) fn spawn(
    probe: &Arc<Probe>,
    deep: &Arc<DeepState>,
    threads: &Threads,
    stop: &Arc<AtomicBool>,
    settings: Settings,
) -> anyhow::Result<Vec<thread::JoinHandle<()>>> {
    let Some(ring) = probe.take_samples() else {
        return Ok(Vec::new());
    };
    let n = settings.threads.max(1);
    let cfg = shard::engine_config(settings.dns_entries);
    let shared = cfg.shared();
    let cap = probe
        .options()
        .flow_table_size
        .min(settings.max_tracked)
        .max(16) as usize;
    let mut shards = (0..n).map(|_| Shard::new(cfg.clone(), shared.clone(), cap / n));
    let reader = threads.register("deep", STALL_BOUND);
    let mut handles = Vec::new();
    let source = if n == 1 {
        Source::Inline(shards.next().expect("one shard"))
    } else {
        let (feed, queues) = Feed::new(n);
        for (i, (shard, queue)) in shards.zip(queues).enumerate() {
            let name = format!("deep-{i}");
            let heartbeat = threads.register(&name, STALL_BOUND);
            let (probe, deep, stop) = (probe.clone(), deep.clone(), stop.clone());
            let put = move |k: &FlowKey, v: Verdict| put_verdict(&probe, k, v);
            handles.push(
                thread::Builder::new()
                    .name(name)
                    .spawn(move || {
                        supervised(&heartbeat, || {
                            work(&heartbeat, shard, &queue, &deep, &stop, put);
                        });
                    })
                    .context("starting a deep classifier worker")?,
            );
        }
        Source::Feed(feed)
    };
    let (probe, deep, stop) = (probe.clone(), deep.clone(), stop.clone());
    let handle = thread::Builder::new()
        .name("deep".into())
        .spawn(move || {
            supervised(&reader, || {
                read(&reader, &probe, ring, &deep, &stop, source)
            })
        })
        .context("starting the deep classifier")?;
    handles.insert(0, handle);
    Ok(handles)
}

fn put_verdict(probe: &Probe, key: &FlowKey, v: Verdict) {
    if let Err(e) = probe.put_verdict(key, v) {
        tracing::warn!(error = %e, "handing a verdict to the kernel");
    }
}

/// Where the ring's samples go: the reader's own shard, or the workers' queues.
enum Source {
    Inline(Shard),
    Feed(Feed),
}

/// Runs until `stop`: samples in, verdicts out (or samples handed on).
fn read(
    heartbeat: &Heartbeat,
    probe: &Probe,
    mut ring: RingBuf<MapData>,
    deep: &DeepState,
    stop: &AtomicBool,
    mut source: Source,
) {
    let fd = ring.as_fd().as_raw_fd();
    let mut put = |k: &FlowKey, v: Verdict| put_verdict(probe, k, v);
    let mut read = 0usize;
    while !stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        if let Source::Inline(shard) = &mut source {
            shard.tick(deep);
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
            match &mut source {
                Source::Inline(shard) => shard.take(&s, deep, &mut put),
                // false: a worker is gone (it panicked, and the daemon is ending).
                Source::Feed(f) => {
                    let _ = f.push(s);
                    read += 1;
                    // A flood may never empty the ring: a worker with few samples waits
                    // at most this many for its batch.
                    if read.is_multiple_of(BATCH * f.len()) {
                        let _ = f.flush();
                    }
                }
            }
        }
        if let Source::Feed(f) = &mut source {
            let _ = f.flush();
            deep.queue_waits.store(f.waited(), Ordering::Relaxed);
        }
    }
}

/// The reader's side of the workers' queues: samples gathered per worker (the one their
/// flow hashes to), handed on in batches.
pub struct Feed {
    dispatch: Dispatch<Vec<Sample>>,
    pending: Vec<Vec<Sample>>,
}

impl Feed {
    /// Queues for `n` workers (at least one), and their receiving ends.
    pub fn new(n: usize) -> (Feed, Vec<Receiver<Vec<Sample>>>) {
        let (dispatch, queues) = Dispatch::new(n, QUEUE_BATCHES);
        let pending = (0..dispatch.len())
            .map(|_| Vec::with_capacity(BATCH))
            .collect();
        (Feed { dispatch, pending }, queues)
    }

    /// Workers.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Never: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds `s` to its worker's batch, handed on (waiting for room) once full; false if
    /// that worker is gone.
    pub fn push(&mut self, s: Sample) -> bool {
        let i = shard_of(&shard::from_kernel(&s.key), self.pending.len());
        self.pending[i].push(s);
        self.pending[i].len() < BATCH || self.hand_on(i)
    }

    /// Hands on every batch gathered; false if a worker is gone.
    pub fn flush(&mut self) -> bool {
        let mut ok = true;
        for i in 0..self.pending.len() {
            if !self.pending[i].is_empty() {
                ok &= self.hand_on(i);
            }
        }
        ok
    }

    fn hand_on(&mut self, i: usize) -> bool {
        let batch = std::mem::replace(&mut self.pending[i], Vec::with_capacity(BATCH));
        self.dispatch.send(i, batch).is_ok()
    }

    /// Batches that found their queue full and waited for room.
    pub fn waited(&self) -> u64 {
        self.dispatch.waited()
    }
}

/// A worker: takes its queue's samples in order until `stop` or the reader is gone.
pub fn work(
    heartbeat: &Heartbeat,
    mut shard: Shard,
    queue: &Receiver<Vec<Sample>>,
    deep: &DeepState,
    stop: &AtomicBool,
    mut put: impl FnMut(&FlowKey, Verdict),
) {
    let mut last_tick = Instant::now();
    shard.tick(deep);
    while !stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        match queue.recv_timeout(PASS) {
            Ok(batch) => {
                for s in &batch {
                    shard.take(s, deep, &mut put);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= PASS {
            last_tick = Instant::now();
            shard.tick(deep);
        }
    }
    shard.tick(deep);
}

#[cfg(test)]
mod tests;
