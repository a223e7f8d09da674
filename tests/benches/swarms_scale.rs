//! The swarm view's cost (issue 15), no root and no lab needed:
//!
//! - store growth: one hour of per-minute swarm rows (`swarm_minute`: the minute, the
//!   20-byte id, local, transit up and transit down; primary key `(t, swarm)`) for 1,000
//!   and 10,000 swarms, written through `History::record_swarm_minute` as the daemon does
//!   once a minute; the file's size after the store is closed (which checkpoints the WAL)
//!   against the same store closed empty, per swarm-hour;
//! - the list's answer at `SWARMS` (10,000) swarms of 4 subscribers each from the live
//!   table: summaries, sort by transit bytes, limit 100 or all, JSON; against the bare
//!   summaries of the same run;
//! - the windowed answer from the store over 1 h (`History::swarm_totals`, 60 minutes of
//!   rows for every swarm) against one minute of the same rows.
//!
//! Medians of `ROUNDS`. `cargo bench -p peerwarden-tests --bench swarms_scale`.

use std::time::{Duration, Instant};

use peerwarden::history::{History, Retention};
use peerwarden_swarms::{SwarmSummary, SwarmTable};
use peerwarden_tests::{
    lab::TempDir,
    scale::{SUBS_PER_SWARM, swarm_rows, swarm_table},
};

const ROUNDS: usize = 7;
/// A fixed minute (2027-01-15), recent enough for the store's minute retention.
const T0: i64 = 1_800_000_000 / 3600 * 3600;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rounds<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        out = Some(std::hint::black_box(f()));
        times.push(t.elapsed());
    }
    (median(times), out.expect("rounds"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes on disk of a store holding `minutes` minutes of `swarms` swarms, closed.
fn store_with(swarms: u32, minutes: u32) -> (u64, Duration) {
    let tmp = TempDir::new("swarms-scale");
    let path = tmp.0.join("history.db");
    let h = History::open(&path, "bench", Retention::default()).expect("store");
    let mut write = Vec::new();
    for m in 0..minutes {
        let r = swarm_rows(swarms, m);
        let t = T0 + i64::from(m) * 60;
        let start = Instant::now();
        h.record_swarm_minute(t, &r, t, 86_400).expect("rows");
        write.push(start.elapsed());
    }
    drop(h);
    let bytes = size(&tmp.0);
    let w = if write.is_empty() {
        Duration::ZERO
    } else {
        median(write)
    };
    (bytes, w)
}

fn list(t: &SwarmTable, limit: usize) -> usize {
    let mut s: Vec<SwarmSummary> = t.summaries();
    s.sort_by(|a, b| {
        b.bytes
            .transit()
            .cmp(&a.bytes.transit())
            .then_with(|| a.id.cmp(&b.id))
    });
    s.truncate(limit);
    serde_json::to_vec(&s).expect("json").len()
}

fn main() {
    println!("store growth, one hour of swarm rows (record_swarm_minute once a minute):");
    let (empty, _) = store_with(0, 0);
    for n in [1_000u32, 10_000] {
        let (bytes, write) = store_with(n, 60);
        let grown = bytes.saturating_sub(empty);
        println!(
            "  {n:>6} swarms: {grown} bytes ({:.1} MB) = {:.0} bytes per swarm-hour \
             ({:.1} per row); one minute's write {:.1} ms (median of 60)",
            grown as f64 / 1e6,
            grown as f64 / f64::from(n),
            grown as f64 / f64::from(n * 60),
            ms(write)
        );
    }

    let n = std::env::var("SWARMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000u32);
    let t = swarm_table(n, T0 as u64);
    println!(
        "live table: {} swarms, {} flows, {SUBS_PER_SWARM} subscribers each",
        t.len(),
        t.flows()
    );
    let (bare, _) = rounds(|| t.summaries().len());
    let (top, b100) = rounds(|| list(&t, 100));
    let (all, ball) = rounds(|| list(&t, usize::MAX));
    println!(
        "  bare summaries              {:>8.2} ms  (baseline)",
        ms(bare)
    );
    for (name, d, b) in [("limit=100", top, b100), ("limit=all", all, ball)] {
        println!(
            "  sort=transit_bytes {name:<9} {:>8.2} ms  {:>5.1}x  ({b} bytes of JSON)",
            ms(d),
            d.as_secs_f64() / bare.as_secs_f64()
        );
    }

    let tmp = TempDir::new("swarms-scale-window");
    let h = History::open(&tmp.0.join("history.db"), "bench", Retention::default()).expect("store");
    for m in 0..60u32 {
        let t = T0 + i64::from(m) * 60;
        h.record_swarm_minute(t, &swarm_rows(n, m), t, 86_400)
            .expect("rows");
    }
    let last = T0 + 59 * 60;
    let (minute, one) = rounds(|| h.swarm_totals(last, last + 60).expect("totals").len());
    let (hour, many) = rounds(|| h.swarm_totals(T0, last + 60).expect("totals").len());
    assert_eq!(
        (one, many),
        (n as usize, n as usize),
        "every swarm in both windows"
    );
    println!("store, {n} swarms x 60 minutes:");
    println!(
        "  swarm_totals over 1 minute  {:>8.2} ms  (baseline)",
        ms(minute)
    );
    println!(
        "  swarm_totals over 1 hour    {:>8.2} ms  {:>5.1}x",
        ms(hour),
        hour.as_secs_f64() / minute.as_secs_f64()
    );
}
