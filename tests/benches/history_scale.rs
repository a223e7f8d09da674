//! The history store at ISP scale: `MINUTES` minutes of rows for `SUBSCRIBERS` subscribers,
//! every one of them active in every minute (a BitTorrent download and a TLS upload: two
//! label rows and two class rows per subscriber and minute), recorded and flushed as the
//! daemon does it. Then the store queries behind the API, each timed (median of `ROUNDS`):
//!
//! - the mix over the range (the per-label rows of all subscribers together: `/api/v1/mix`);
//! - one subscriber's classes over the range (`/api/v1/subscribers/{id}?window=`);
//! - every subscriber's classes over the range, all counters;
//! - every subscriber's bytes and packets by class and by label over the range
//!   (`History::traffic`, what `/api/v1/subscribers/top?window=` ranks);
//!
//! and the mix query's longest time while top queries run on another thread, against its
//! median alone: the baseline of the same run.
//!
//! Then the top list's totals (`History::traffic`, every subscriber's class traffic and
//! label traffic) over windows of 15 minutes, 1 hour, 24 hours and 90 days ending at the
//! last minute, read the way it is now (the difference of the running totals at the two
//! ends) against the two ways before (`History::traffic_from_hours`: the window's whole
//! hours from the hour totals, the ragged ends from minutes; `traffic_from_minutes`: the
//! minutes and hours alone), all in this run, each the median of 3, with a check that
//! they agree; and the running totals' size on disk. The
//! minutes are laid so that the last 20 of them are in the last hour and the rest in
//! hours before it (the store holds only these minutes: windows past them read no more
//! rows, but they do read the hour totals of every hour they cover).
//!
//! `cargo bench -p peerwarden-tests --bench history_scale` (no root needed; writes a few
//! hundred MB under the temporary directory, removed at the end). `SUBSCRIBERS` and
//! `MINUTES` (default 75) can be set in the environment.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peerwarden::history::{History, Retention, Which};
use peerwarden_tests::{lab::TempDir, scale::fill_subscribers};

const ROUNDS: usize = 5;

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let subscribers = env_or("SUBSCRIBERS", 100_000);
    let minutes = env_or("MINUTES", 75);
    let tmp = TempDir::new("history-scale");
    let history =
        History::open(&tmp.0.join("history.db"), "bench", Retention::default()).expect("store");
    // Whole minutes ending 20 minutes into the last hour before this one (recent enough
    // that none is rolled up into hours).
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let now = (wall / 3600 - 1) * 3600 + 19 * 60;
    let first = (now / 60 - i64::from(minutes) + 1) * 60;
    let fill = fill_subscribers(&history, subscribers, first, minutes);
    let db_bytes = ["history.db", "history.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(tmp.0.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>();
    let (from, to) = (first.max(now + 60 - 15 * 60), now + 60);
    // One store query over the range: its time and the rows it gives.
    // (`traffic`: bytes and packets only, as the top list asks.)
    let ask = |which: Which<'static>, traffic: bool| {
        timed(|| {
            if traffic {
                history.traffic(from, to, which)
            } else {
                history.sum(from, to, None, which)
            }
            .expect("store query")
            .len()
        })
    };
    // The median time of `ROUNDS` of them, and the rows.
    let alone = |which: Which<'static>, traffic: bool| {
        let runs: Vec<(Duration, usize)> = (0..ROUNDS).map(|_| ask(which, traffic)).collect();
        (median(runs.iter().map(|r| r.0).collect()), runs[0].1)
    };
    let (mix_alone, mix_rows) = alone(Which::Labels, false);
    let (one_alone, one_rows) = alone(Which::Subscriber("sub-4242"), false);
    let (all_alone, all_rows) = alone(Which::Subscribers, false);
    let (top_alone, top_rows) = alone(Which::Subscribers, true);
    let (top_labels_alone, top_labels_rows) = alone(Which::SubscribersLabels, true);
    // The mix asked over and over while top queries run beside it.
    let (worst, asked) = std::thread::scope(|s| {
        let top = s.spawn(|| {
            for _ in 0..2 {
                ask(Which::Subscribers, true);
            }
        });
        let (mut worst, mut asked) = (Duration::ZERO, 0);
        while !top.is_finished() {
            worst = worst.max(ask(Which::Labels, false).0);
            asked += 1;
        }
        top.join().expect("top");
        (worst, asked)
    });
    println!(
        "history store: {subscribers} subscribers x {minutes} minutes, {} rows a minute; filled in {:.1} s ({:.2} s a minute), {:.0} MB on disk",
        subscribers as usize * 4 + 2,
        fill.as_secs_f64(),
        fill.as_secs_f64() / f64::from(minutes),
        db_bytes as f64 / 1e6
    );
    println!("query over the last 15 minutes, median of {ROUNDS}:");
    println!(
        "  mix (label rows of all)         {:>10.2} ms  ({mix_rows} rows out)",
        ms(mix_alone)
    );
    println!(
        "  one subscriber's classes        {:>10.2} ms  ({one_rows} rows out)",
        ms(one_alone)
    );
    println!(
        "  every subscriber's classes, all counters {:>10.2} ms  ({all_rows} rows out)",
        ms(all_alone)
    );
    println!(
        "  every subscriber's class traffic (top by class) {:>10.2} ms  ({top_rows} rows out)",
        ms(top_alone)
    );
    println!(
        "  every subscriber's label traffic (top by label) {:>10.2} ms  ({top_labels_rows} rows out)",
        ms(top_labels_alone)
    );
    println!(
        "  mix while top queries run: longest of {asked}: {:.2} ms (alone {:.2} ms)",
        ms(worst),
        ms(mix_alone)
    );
    // The top list over windows ending at the last minute: running totals against hour
    // totals against minutes.
    let (snapshots, snapshot_bytes) = history.running_totals_size().expect("size");
    println!(
        "running totals: {snapshots} snapshots, {:.2} MB ({:.2} MB a minute, {:.1}% of the store)",
        snapshot_bytes as f64 / 1e6,
        snapshot_bytes as f64 / 1e6 / f64::from(minutes),
        100.0 * snapshot_bytes as f64 / db_bytes as f64
    );
    println!(
        "top list (every subscriber's traffic), running totals against hour totals against minutes, median of 3:"
    );
    for (name, secs) in [
        ("15 min", 15 * 60),
        ("1 h", 3600),
        ("24 h", 86_400),
        ("90 days", 90 * 86_400),
    ] {
        let from = to - secs;
        for which in [Which::Subscribers, Which::SubscribersLabels] {
            let run = |way: u8| {
                let runs: Vec<(Duration, Vec<_>)> = (0..3)
                    .map(|_| {
                        timed(|| {
                            match way {
                                0 => history.traffic_from_minutes(from, to, which),
                                1 => history.traffic_from_hours(from, to, which),
                                _ => history.traffic(from, to, which),
                            }
                            .expect("store query")
                        })
                    })
                    .collect();
                let rows = runs[0].1.clone();
                (median(runs.into_iter().map(|r| r.0).collect()), rows)
            };
            let (before, slow) = run(0);
            let (hours, by_hours) = run(1);
            let (after, fast) = run(2);
            assert_eq!(by_hours, slow, "{name}: hour totals and minutes disagree");
            assert_eq!(fast, slow, "{name}: running totals and minutes disagree");
            let what = if matches!(which, Which::Subscribers) {
                "classes"
            } else {
                "labels"
            };
            println!(
                "  {name:>8} {what:>7}: minutes {:>10.1} ms, hour totals {:>10.1} ms, running totals {:>8.1} ms ({:.3}x minutes, {:.3}x hour totals; {} rows out)",
                ms(before),
                ms(hours),
                ms(after),
                ms(after) / ms(before),
                ms(after) / ms(hours),
                fast.len()
            );
        }
    }
}
