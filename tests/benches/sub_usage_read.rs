//! Reading the per-subscriber counters: one pass over 100,000 subscribers, as the daemon's
//! subscriber reader makes it every second, beside the same entries read with one
//! `BPF_MAP_LOOKUP_ELEM` system call each (the baseline, measured in the same run), and
//! the pass into the history store (rates and store rows) with 1% and 100% of the
//! subscribers' counters changed: reading every owner (the daemon's full pass, once a
//! minute) and reading only those the kernel's change flags name (`SUB_SEEN`, every
//! other second). Beside them, in the same passes, the daemon's pass as it is now
//! (`read_subscribers`): one pass over the owners, each moved owner's counters copied once
//! and handed to the rates (`Readings::usage_pass`) and the store
//! (`History::record_subscribers_into`), on a second readings and store given the same
//! counters; against it, the two passes it replaced (rates, then store rows, each copying
//! the counters).
//!
//! The kernel array (`SUB_COUNTERS`, one 896-byte entry per subscriber) is mmapable: the
//! daemon maps it once and copies entries out of its own memory. Before this layout the
//! counters were per-CPU slots per (subscriber, class, direction), 8 lookups per
//! subscriber, about 13 us (0.9 s per pass at 65,536 subscribers).
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench sub_usage_read`.

use std::time::{Duration, Instant, SystemTime};

use aya::maps::{Array, Map, MapData};
use peerwarden::{
    history::{History, Retention, Which},
    probe::{Probe, ProbeOptions},
    readings::Readings,
};
use peerwarden_common::{Label, policy::SubUsage};
use peerwarden_tests::lab::{TempDir, require_root};

const SUBSCRIBERS: u32 = 100_000;
const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// The median time of `ROUNDS` passes reading subscribers 0..SUBSCRIBERS with `read`.
fn read_all(read: impl Fn(u32) -> SubUsage) -> Duration {
    median(
        (0..ROUNDS)
            .map(|_| {
                timed(|| {
                    let mut sum = 0u64;
                    for i in 0..SUBSCRIBERS {
                        sum = sum.wrapping_add(read(i).labels[1][1].bytes);
                    }
                    std::hint::black_box(sum);
                })
            })
            .collect(),
    )
}

fn main() {
    require_root();
    let probe = Probe::load_with(ProbeOptions {
        flow_table_size: 4096,
        max_subscribers: 131_072,
    })
    .unwrap_or_else(|e| panic!("loading the probe: {e}"));
    let owners: Vec<(String, u32)> = (0..SUBSCRIBERS).map(|i| (format!("sub-{i}"), i)).collect();

    // (a) The mapped array, one copy per subscriber.
    let mapped = read_all(|i| probe.subscriber_usage(i).expect("usage"));
    // (b) The baseline: the same entries through the system call, a second handle on the
    // same map.
    let id = probe.usage_map().map().info().expect("info").id();
    let array: Array<MapData, SubUsage> =
        Array::try_from(Map::Array(MapData::from_id(id).expect("map by id"))).expect("array");
    let syscall = read_all(|i| array.get(&i, 0).expect("lookup"));

    // (c) The daemon's whole pass: read, rates, store rows; synthetic readings, a share of
    // the subscribers with new counts each pass.
    let tmp = TempDir::new("sub-usage-bench");
    let history =
        History::open(&tmp.0.join("history.db"), "bench", Retention::default()).expect("store");
    let readings = Readings::default();
    // The one-pass way's own readings and store.
    let history1 =
        History::open(&tmp.0.join("history1.db"), "bench", Retention::default()).expect("store");
    let readings1 = Readings::default();
    let mut kernel = vec![SubUsage::default(); SUBSCRIBERS as usize];
    let t0 = Instant::now();
    // Per pass: (a walk of the counters alone, rates, store rows); the counters here are
    // in a vector, as fast to copy from as the mapped array (read (a) above).
    // The kernel's change flags (`SUB_SEEN`), as the daemon takes them; with `flags` off,
    // every owner is read (the daemon's full pass, once a minute, and before the flags).
    let mut moved = vec![false; SUBSCRIBERS as usize];
    let mut pass = |n: u64, changed_every: usize, flags: bool| -> [Duration; 4] {
        for (i, u) in kernel.iter_mut().enumerate() {
            moved[i] = !flags;
            if i % changed_every == 0 {
                moved[i] = true;
                u.labels[Label::Bittorrent.id() as usize][1].bytes += 1500 * n;
                u.labels[Label::Bittorrent.id() as usize][1].packets += n;
                u.labels[Label::Tls.id() as usize][0].bytes += 80 * n;
                u.labels[Label::Tls.id() as usize][0].packets += n;
            }
        }
        let read = timed(|| {
            let mut sum = 0u64;
            for (_, i) in &owners {
                sum = sum.wrapping_add(kernel[*i as usize].labels[1][1].bytes);
            }
            std::hint::black_box(sum);
        });
        let rates = timed(|| {
            readings.update_usage(t0 + Duration::from_secs(n), &owners, |i, must| {
                Ok::<_, String>((must || moved[i as usize]).then(|| kernel[i as usize]))
            })
        });
        let store = timed(|| {
            history.record_subscribers_with(SystemTime::now(), &owners, |i| {
                moved[i as usize].then(|| kernel[i as usize])
            })
        });
        let at = t0 + Duration::from_secs(n);
        let one = timed(|| {
            let mut pass = readings1.usage_pass(at, &owners);
            history1.record_subscribers_into(SystemTime::now(), &owners, |i, into| {
                if !pass.must() && !moved[i as usize] {
                    pass.next(Ok::<_, String>(None));
                    return false;
                }
                *into = kernel[i as usize];
                pass.next(Ok::<_, String>(Some(&*into)));
                true
            });
        });
        [read, rates, store, one]
    };
    let mut n = 0;
    let mut run = |changed_every: usize, flags: bool| -> [Duration; 5] {
        let passes: Vec<[Duration; 4]> = (0..ROUNDS)
            .map(|_| {
                n += 1;
                pass(n, changed_every, flags)
            })
            .collect();
        // The two passes' median as a whole: rates + store of the same pass.
        let two = median(passes.iter().map(|p| p[1] + p[2]).collect());
        let m = [0, 1, 2, 3].map(|k| median(passes.iter().map(|p| p[k]).collect()));
        [m[0], m[1], m[2], m[3], two]
    };
    // Each case in its steady state: the rates' window filled with its own passes (more
    // than RATE_WINDOW of them), as in a daemon that has run for a while.
    let mut steady = |changed_every: usize, flags: bool| {
        run(changed_every, flags);
        run(changed_every, flags);
        run(changed_every, flags)
    };
    let all = steady(1, false);
    let some_full = steady(100, false);
    let some = steady(100, true);
    // (d) The flush of what those passes left pending, and the API's query of the mix
    // (all subscribers' label rows of the last hour) run over and over beside it: its
    // longest time, against the same query's median with no flush running (same run).
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let query = || {
        timed(|| {
            std::hint::black_box(
                history
                    .sum(now - 3600, now + 60, None, Which::Labels)
                    .expect("query"),
            );
        })
    };
    let alone = median((0..ROUNDS).map(|_| query()).collect());
    let (flush, worst, queries) = std::thread::scope(|s| {
        let flusher = s.spawn(|| timed(|| history.flush().expect("flush")));
        let (mut worst, mut queries) = (Duration::ZERO, 0);
        while !flusher.is_finished() {
            worst = worst.max(query());
            queries += 1;
        }
        (flusher.join().expect("flusher"), worst, queries)
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("Per-subscriber counters, {SUBSCRIBERS} subscribers, median of {ROUNDS} passes");
    println!(
        "read, mapped array (no syscalls)     {:>9.2} ms  {:>6.3} us/subscriber",
        ms(mapped),
        ms(mapped) * 1000.0 / f64::from(SUBSCRIBERS)
    );
    println!(
        "read, one lookup syscall each (base) {:>9.2} ms  {:>6.3} us/subscriber  mapped/base {:.3}",
        ms(syscall),
        ms(syscall) * 1000.0 / f64::from(SUBSCRIBERS),
        mapped.as_secs_f64() / syscall.as_secs_f64()
    );
    for (what, p) in [
        ("100%, full pass", all),
        ("1%, full pass", some_full),
        ("1%, flagged only", some),
    ] {
        println!(
            "pass, {what:>16} changed: counters walk {:>6.2} ms, rates {:>8.2} ms, store rows {:>8.2} ms, total {:>8.2} ms",
            ms(p[0]),
            ms(p[1]),
            ms(p[2]),
            ms(p[0] + p[1] + p[2])
        );
    }
    for (what, p) in [
        ("100%, full pass", all),
        ("1%, full pass", some_full),
        ("1%, flagged only", some),
    ] {
        println!(
            "daemon, {what:>16} changed: two passes (rates, store) {:>8.2} ms, one pass {:>8.2} ms, one/two {:.3}",
            ms(p[4]),
            ms(p[3]),
            p[3].as_secs_f64() / p[4].as_secs_f64()
        );
    }
    println!(
        "store flush of the pending minutes    {:>8.2} ms",
        ms(flush)
    );
    println!(
        "mix query: alone (median) {:.2} ms; during the flush, longest of {queries}: {:.2} ms",
        ms(alone),
        ms(worst)
    );
}
