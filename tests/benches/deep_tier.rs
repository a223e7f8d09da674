//! The deep tier's samples per second on one shard against several (`deep_threads`), in
//! the same run, through the daemon's own code: `Shard::take` on the reader's thread (one
//! shard, as the daemon runs `deep_threads: 1`), and the reader's `Feed` (batches by flow) to `work`
//! threads over bounded queues (two and four shards). A "dispatch only" case, with workers
//! that drop what they get, is the reader's own ceiling.
//!
//! The samples are a flood's, from memory (no kernel, so no ring read and no verdict map
//! update: the sink counts verdicts): 64 subscribers, nine in ten samples the one payload
//! of a new UDP flow (random bytes, as `flow_flood` sends), one in ten a BitTorrent
//! handshake of a TCP flow answered by its peer (two samples, a final verdict, the
//! endpoint cache taught). The deep tier holds its default 16,384 flows, so the flood
//! keeps it evicting, as in the lab flood.
//!
//! Beside the wall-clock rates, samples per CPU-second of the whole process: on a machine
//! shared with other work, more threads get a larger share of the CPUs, so the wall-clock
//! ratio there says more about the scheduler than about the tier; the CPU cost per sample
//! says what sharding costs.
//!
//! `cargo bench -p peerwarden-tests --bench deep_tier`

use std::{
    sync::{Arc, atomic::AtomicBool},
    thread,
    time::Instant,
};

use peerwarden::{
    config::DEFAULT_DEEP_MAX_FLOWS,
    daemon::deep::{BATCH, Feed, QUEUE_BATCHES, Shard, shard::engine_config, work},
    state::DeepState,
    supervision::{STALL_BOUND, Threads},
};
use peerwarden_common::{
    Direction, FlowKey,
    deep::{SAMPLE_BYTES, Sample, Verdict},
    flow::FAMILY_V4,
};

const SAMPLES: usize = 300_000;
const ROUNDS: usize = 3;

fn sample(key: FlowKey, dir: Direction, payload: &[u8], ts_ns: u64) -> Sample {
    let mut data = [0u8; SAMPLE_BYTES];
    data[..payload.len()].copy_from_slice(payload);
    Sample {
        key,
        ts_ns,
        tcp_seq: 1,
        payload_len: payload.len() as u16,
        captured: payload.len() as u16,
        dir: dir as u8,
        tcp_flags: if key.proto == 6 { 0x18 } else { 0 },
        flags: 0,
        _pad: [0; 5],
        data,
    }
}

fn key(proto: u8, sub: u32, sub_port: u16, remote: u32, remote_port: u16) -> FlowKey {
    let mut k = FlowKey {
        proto,
        family: FAMILY_V4,
        sub_port,
        remote_port,
        ..Default::default()
    };
    k.sub_addr[..4].copy_from_slice(&sub.to_be_bytes());
    k.remote_addr[..4].copy_from_slice(&remote.to_be_bytes());
    k
}

/// The flood's samples, in arrival order.
fn flood() -> Vec<Sample> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0; 48]);
    let sub0 = u32::from_be_bytes([100, 64, 1, 0]);
    let remote0 = u32::from_be_bytes([198, 51, 100, 0]);
    let mut out = Vec::with_capacity(SAMPLES);
    let mut i = 0u64;
    while out.len() < SAMPLES {
        let r = next();
        let sub = sub0 + (r % 64) as u32;
        let remote = remote0 + ((r >> 8) % 250) as u32;
        let (sport, rport) = (
            1024 + (r >> 16) as u16 % 60000,
            1024 + (r >> 32) as u16 % 60000,
        );
        i += 1;
        if i.is_multiple_of(10) {
            let k = key(6, sub, sport, remote, rport);
            out.push(sample(k, Direction::Up, &hs, i * 1000));
            out.push(sample(k, Direction::Down, &hs, i * 1000 + 500));
        } else {
            let payload: Vec<u8> = (0..25).flat_map(|_| next().to_le_bytes()).collect();
            let k = key(17, sub, sport, remote, rport);
            out.push(sample(k, Direction::Up, &payload, i * 1000));
        }
    }
    out.truncate(SAMPLES);
    out
}

fn shards(n: usize) -> Vec<Shard> {
    let cfg = engine_config(1 << 16);
    let shared = cfg.shared();
    let cap = DEFAULT_DEEP_MAX_FLOWS as usize / n;
    (0..n)
        .map(|_| Shard::new(cfg.clone(), shared.clone(), cap))
        .collect()
}

/// One shard on this thread: samples per second, verdicts.
fn inline(samples: &[Sample]) -> (f64, u64) {
    let deep = DeepState::default();
    let mut shard = shards(1).pop().expect("one");
    let mut verdicts = 0u64;
    let mut put = |_: &FlowKey, _: Verdict| verdicts += 1;
    let start = Instant::now();
    for (i, s) in samples.iter().enumerate() {
        shard.take(s, &deep, &mut put);
        if i % 4096 == 0 {
            shard.tick(&deep);
        }
    }
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    (rate, verdicts)
}

/// `n` workers fed by this thread: samples per second, verdicts, batches that waited for a
/// full queue.
/// `classify: false`: the workers drop what they get (the reader's ceiling).
fn sharded(samples: &[Sample], n: usize, classify: bool) -> (f64, u64, u64) {
    let deep = Arc::new(DeepState::default());
    let (threads, stop) = (Threads::default(), AtomicBool::new(false));
    let (mut feed, queues) = Feed::new(n);
    let mut verdicts = 0u64;
    let start = Instant::now();
    thread::scope(|scope| {
        let workers: Vec<_> = shards(n)
            .into_iter()
            .zip(queues)
            .enumerate()
            .map(|(i, (shard, queue))| {
                let (deep, stop) = (&deep, &stop);
                let hb = threads.register(&format!("deep-{i}"), STALL_BOUND);
                scope.spawn(move || {
                    let mut count = 0u64;
                    if classify {
                        work(&hb, shard, &queue, deep, stop, |_, _| count += 1);
                    } else {
                        while queue.recv().is_ok() {}
                    }
                    count
                })
            })
            .collect();
        for (i, s) in samples.iter().enumerate() {
            assert!(feed.push(*s), "workers run");
            // As the daemon's reader does in a flood that never empties the ring.
            if (i + 1).is_multiple_of(BATCH * n) {
                assert!(feed.flush(), "workers run");
            }
        }
        assert!(feed.flush(), "workers run");
        let waited = feed.waited();
        drop(feed);
        for w in workers {
            verdicts += w.join().expect("worker");
        }
        deep.queue_waits
            .store(waited, std::sync::atomic::Ordering::Relaxed);
    });
    let rate = samples.len() as f64 / start.elapsed().as_secs_f64();
    let waits = deep.queue_waits.load(std::sync::atomic::Ordering::Relaxed);
    (rate, verdicts, waits)
}

/// This process's CPU time (all threads), in seconds.
fn cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Runs `case`; its samples per wall-clock second (from the case) and per CPU-second.
fn timed<T>(case: impl FnOnce() -> (f64, T)) -> (f64, f64, T) {
    let cpu = cpu_s();
    let (rate, rest) = case();
    let per_cpu = SAMPLES as f64 / (cpu_s() - cpu);
    (rate, per_cpu, rest)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let samples = flood();
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "deep_tier: {} samples, {} CPUs, batches of {BATCH}, queues of {QUEUE_BATCHES} batches, {ROUNDS} alternating rounds",
        samples.len(),
        cpus
    );
    let (mut one, mut two, mut four, mut reader) = (vec![], vec![], vec![], vec![]);
    let mut cpu = [vec![], vec![], vec![], vec![]];
    for round in 0..ROUNDS {
        let (r1, c1, v1) = timed(|| inline(&samples));
        let split = |n, classify| {
            let (r, v, w) = sharded(&samples, n, classify);
            (r, (v, w))
        };
        let (r2, c2, (v2, w2)) = timed(|| split(2, true));
        let (r4, c4, (v4, w4)) = timed(|| split(4, true));
        let (rd, cd, _) = timed(|| split(2, false));
        println!(
            "round {round}: 1 shard {r1:>9.0}/s ({v1} verdicts) | 2 shards {r2:>9.0}/s ({v2} verdicts, {w2} waits) | 4 shards {r4:>9.0}/s ({v4} verdicts, {w4} waits) | dispatch only {rd:>9.0}/s"
        );
        println!(
            "         per CPU-second: 1 shard {c1:>9.0} | 2 shards {c2:>9.0} | 4 shards {c4:>9.0} | dispatch only {cd:>9.0}"
        );
        one.push(r1);
        two.push(r2);
        four.push(r4);
        reader.push(rd);
        for (v, c) in cpu.iter_mut().zip([c1, c2, c4, cd]) {
            v.push(c);
        }
    }
    let [c1, c2, c4, cd] = cpu.map(median);
    println!(
        "median samples per CPU-second: 1 shard {c1:.0}, 2 shards {c2:.0}, 4 shards {c4:.0}, dispatch only {cd:.0}"
    );
    let (one, two, four, reader) = (median(one), median(two), median(four), median(reader));
    println!(
        "median samples/s: 1 shard {one:.0}, 2 shards {two:.0}, 4 shards {four:.0}, dispatch only {reader:.0}"
    );
    println!(
        "ratio to 1 shard: 2 shards {:.2}x, 4 shards {:.2}x; dispatch only {:.2}x",
        two / one,
        four / one,
        reader / one
    );
}
