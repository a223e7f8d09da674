//! The history store as the daemon drives it at its worst (issue 16): every subscriber's
//! counters move every second, each second's reading is recorded (simulated wall clock,
//! one reading a second) and the store is written on the daemon's cadence. Prints the CPU
//! time (this thread's, from /proc/thread-self/schedstat) per simulated minute, split into
//! recording and writing, for two cadences run alternately in one process, each on a
//! fresh store:
//!
//! - `each 10 s`: everything pending written after every 10th reading (the earlier
//!   cadence: every `FLUSH_EVERY`, the current minute's rows again with each write);
//! - `minute`: the store's periodic write as recording makes it (`flush_if_due`), made due
//!   at every reading as if `FLUSH_EVERY` of real time had passed: the ended minute's rows
//!   once, when the next minute's first reading comes.
//!
//! Both write the same minutes: the `minute` run's write at the start of the minute after
//! the last is counted (into the last minute). The first minute (the subscribers' ids
//! inserted) is shown but left out of the means.
//!
//! `cargo bench -p peerwarden-history --bench flush_cadence -- [SUBSCRIBERS [MINUTES [ROUNDS]]]`
//! (defaults 100000 4 2; `PW_BENCH_DIR` for the stores' directory, default the temp dir).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peerwarden_common::{
    CounterValue, Label, label::ALL_LABELS, policy::SubUsage, stats::LabelCounters,
};
use peerwarden_history::{History, Retention};

/// This thread's CPU time so far.
fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = cpu();
    f();
    cpu().saturating_sub(start)
}

#[derive(Clone, Copy, PartialEq)]
enum Cadence {
    Each10,
    Minute,
}

impl Cadence {
    fn name(self) -> &'static str {
        match self {
            Cadence::Each10 => "each 10 s",
            Cadence::Minute => "minute",
        }
    }
}

/// Per simulated minute: (recording, writing) CPU time.
fn run(
    cadence: Cadence,
    subscribers: u32,
    minutes: u32,
    dir: &std::path::Path,
) -> Vec<(Duration, Duration)> {
    let path = dir.join(format!("flush-cadence-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let h = History::open(&path, "bench", Retention::default()).expect("open");
    let owners: Vec<(String, u32)> = (0..subscribers).map(|i| (format!("sub-{i}"), i)).collect();
    let (bt, tls) = (Label::Bittorrent.id() as usize, Label::Tls.id() as usize);
    let mut kernel = vec![SubUsage::default(); subscribers as usize];
    let mut labels: LabelCounters = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let first = (now / 60 + 1) * 60;
    let mut out = vec![(Duration::ZERO, Duration::ZERO); minutes as usize];
    for second in 0..u64::from(minutes) * 60 + 1 {
        let at = UNIX_EPOCH + Duration::from_secs(first + second);
        let m = (second / 60) as usize;
        if second == u64::from(minutes) * 60 {
            // The minute after the last: only the write of the last minute.
            if cadence == Cadence::Minute {
                h.make_flush_due();
                out[m - 1].1 += timed(|| h.flush_if_due(at));
            }
            break;
        }
        for (i, u) in kernel.iter_mut().enumerate() {
            let n = 1 + (i as u64 % 97);
            u.labels[bt][1].bytes += 1500 * 10 * n;
            u.labels[bt][1].packets += 10 * n;
            u.labels[tls][0].bytes += 80 * 2 * n;
            u.labels[tls][0].packets += 2 * n;
        }
        for (l, dir) in [(bt, 1), (tls, 0)] {
            let c = &mut labels[l][dir];
            c.bytes = kernel.iter().map(|u| u.labels[l][dir].bytes).sum::<u64>();
            c.packets = kernel.iter().map(|u| u.labels[l][dir].packets).sum::<u64>();
            c.flows += 1;
        }
        if cadence == Cadence::Minute {
            h.make_flush_due();
            // The write the first reading of a minute makes, timed apart from recording.
            let w = timed(|| h.flush_if_due(at));
            out[m.saturating_sub(1)].1 += w;
        }
        out[m].0 += timed(|| {
            h.record_labels(at, &labels);
            h.record_subscribers_with(at, &owners, |i| kernel.get(i as usize).copied());
        });
        if cadence == Cadence::Each10 && second % 10 == 9 {
            out[m].1 += timed(|| h.flush().expect("flush"));
        }
    }
    drop(h);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let subscribers = args.first().copied().unwrap_or(100_000);
    let minutes = args.get(1).copied().unwrap_or(4).max(2);
    let rounds = args.get(2).copied().unwrap_or(2).max(1);
    let dir = std::env::var_os("PW_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "history store, {subscribers} subscribers all moving every second, {minutes} simulated minutes, {rounds} rounds (load {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut means: Vec<(Cadence, f64, f64)> = Vec::new();
    for round in 0..rounds {
        for cadence in [Cadence::Each10, Cadence::Minute] {
            let per_minute = run(cadence, subscribers, minutes, &dir);
            let shown: Vec<String> = per_minute
                .iter()
                .map(|(r, w)| format!("{:.0}+{:.0}", ms(*r), ms(*w)))
                .collect();
            let rest = &per_minute[1..];
            let n = rest.len() as f64;
            let record = rest.iter().map(|(r, _)| ms(*r)).sum::<f64>() / n;
            let write = rest.iter().map(|(_, w)| ms(*w)).sum::<f64>() / n;
            println!(
                "round {} {:>9}: per minute record+write ms [{}]; minutes 2-{minutes}: record {record:.0} ms, write {write:.0} ms, {:.2}% of a core",
                round + 1,
                cadence.name(),
                shown.join(", "),
                (record + write) / 600.0
            );
            means.push((cadence, record, write));
        }
    }
    let mean = |c: Cadence, f: fn(&(Cadence, f64, f64)) -> f64| {
        let v: Vec<f64> = means.iter().filter(|m| m.0 == c).map(f).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (r10, w10) = (
        mean(Cadence::Each10, |m| m.1),
        mean(Cadence::Each10, |m| m.2),
    );
    let (rm, wm) = (
        mean(Cadence::Minute, |m| m.1),
        mean(Cadence::Minute, |m| m.2),
    );
    println!(
        "mean per minute: each 10 s record {r10:.0} + write {w10:.0} ms ({:.2}% of a core); minute record {rm:.0} + write {wm:.0} ms ({:.2}% of a core); write minute/each 10 s {:.3}x, total {:.3}x",
        (r10 + w10) / 600.0,
        (rm + wm) / 600.0,
        wm / w10,
        (rm + wm) / (r10 + w10)
    );
}
