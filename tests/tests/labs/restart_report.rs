//! Reports across a restart (issue 14: after a restart, `/api/v1/mix?window=3600s` read 0
//! bytes although the store held every byte of the hour).
//!
//! Per test, one lab, one store, two runs of the daemon with the default
//! `history_seconds` (an hour, so a one-hour window is served from memory): first with the
//! default `keep_attached_on_stop: false` (SIGTERM detaches; the next daemon loads new
//! maps, whose counters start at zero, as after `systemctl restart`), then with `true` (an
//! upgrade: the next daemon adopts the maps, whose counters go on):
//!
//! 1. traffic, then quiet; once the answers stop moving, the last hour's mix
//!    (`/mix?window=3600s`) and the series over the same hour (`/mix/series?window=3600s
//!    &step=60s`, summed over its points) are read, and agree; SIGTERM;
//! 2. a new daemon on the same store: the same two answers, once they stop moving, hold
//!    the same bytes per class and direction within 1% (and two full-size frames, for a
//!    stray packet in a class with almost nothing). The mix since start is the kernel's
//!    counters: next to nothing with new maps, run 1's traffic with adopted ones.
//!
//! Run as root: `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs
//! restart_report:: -- --test-threads=1`.

use std::{collections::BTreeMap, path::Path, thread, time::Duration};

use peerwarden_tests::lab::{Lab, LoopTraffic, TempDir, until_still};
use serde_json::Value;

const PREFIX: &str = "rr";
const PORT: u16 = 9641;
/// The second test's lab (the maps kept attached across the restart).
const PREFIX_KEPT: &str = "rk";
const PORT_KEPT: u16 = 9642;
/// A full-size frame on the lab's 1500-byte links.
const MAX_FRAME: u64 = 1514;
/// `lab traffic` rounds at most, when one carries too little.
const ROUNDS: u32 = 3;

/// Per class: bytes `[up, down]`.
type Classes = BTreeMap<String, [u64; 2]>;

fn mix_classes(mix: &Value) -> Classes {
    mix["classes"]
        .as_object()
        .expect("classes")
        .iter()
        .map(|(name, u)| {
            let b = |i: usize| u["bytes"][i].as_u64().expect("bytes");
            (name.clone(), [b(0), b(1)])
        })
        .collect()
}

/// Per class, the bytes of every point of a series.
fn series_classes(series: &Value) -> Classes {
    let mut out = Classes::new();
    for p in series["points"].as_array().expect("points") {
        for (name, b) in mix_classes(p) {
            let e = out.entry(name).or_default();
            e[0] += b[0];
            e[1] += b[1];
        }
    }
    out
}

fn total(c: &Classes) -> u64 {
    c.values().map(|b| b[0] + b[1]).sum()
}

/// The last hour's mix and series once neither has moved for three seconds, with the
/// mix's own answer (for its `range`).
fn last_hour(lab: &Lab) -> (Classes, Classes, Value) {
    let (mix, series) = until_still(
        || {
            (
                mix_classes(&lab.api("/api/v1/mix?window=3600s")),
                series_classes(&lab.api("/api/v1/mix/series?window=3600s&step=60s")),
            )
        },
        Duration::from_secs(3),
        Duration::from_secs(90),
    );
    (mix, series, lab.api("/api/v1/mix?window=3600s"))
}

/// Rounds of `lab traffic --loop` for `seconds` until the daemon's since-start counters
/// show more than 1 MB, at most [`ROUNDS`]; a round's clients that fail early (a busy
/// machine) are not fatal: what is checked is that the bytes that did cross read alike.
fn traffic(lab: &Lab, dir: &Path, seconds: u32) {
    for round in 1..=ROUNDS {
        let mut t = LoopTraffic::start(lab, &dir.join(format!("traffic{round}.log")), seconds);
        thread::sleep(Duration::from_secs(u64::from(seconds) + 5));
        t.stop();
        let since = until_still(
            || mix_classes(&lab.api("/api/v1/mix")),
            Duration::from_secs(3),
            Duration::from_secs(60),
        );
        if total(&since) > 1_000_000 {
            return;
        }
        eprintln!("round {round}: too little traffic ({since:?}); another round");
    }
    panic!("{ROUNDS} rounds of lab traffic carried less than 1 MB");
}

/// Every class and direction of `after` within 1% (and two full-size frames) of `before`.
fn assert_same(what: &str, before: &Classes, after: &Classes) {
    let mut bad = Vec::new();
    for (name, b) in before {
        let a = after.get(name).copied().unwrap_or_default();
        for d in 0..2 {
            let tolerance = b[d] / 100 + 2 * MAX_FRAME;
            if a[d].abs_diff(b[d]) > tolerance {
                bad.push(format!(
                    "{name} {}: {} before, {} after (tolerance {tolerance})",
                    ["up", "down"][d],
                    b[d],
                    a[d]
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: the last hour's bytes differ by more than 1%:\n  {}\nbefore: {before:?}\nafter:  {after:?}",
        bad.join("\n  ")
    );
}

#[test]
fn the_last_hour_reads_the_same_after_a_restart() {
    across_a_restart(PREFIX, PORT, false);
}

#[test]
fn the_last_hour_reads_the_same_after_an_upgrade_that_keeps_the_maps() {
    across_a_restart(PREFIX_KEPT, PORT_KEPT, true);
}

/// Traffic, the last hour read, SIGTERM (with `keep_attached_on_stop: keep`), a new
/// daemon on the same store (which adopts the maps if they were kept), the last hour read
/// again: the same bytes.
fn across_a_restart(prefix: &str, port: u16, keep: bool) {
    let tmp = TempDir::new(&format!("restart-report-{prefix}"));
    let lab = Lab::up(prefix, port, &["--no-daemon"]);
    let first = format!("keep_attached_on_stop: {keep}\n");

    let d = lab.daemon_with_store(&tmp.0, 1, &first);
    traffic(&lab, &tmp.0, 15);
    let (mix1, series1, _) = last_hour(&lab);
    eprintln!(
        "before the restart: mix {mix1:?} ({} bytes), series {series1:?} ({} bytes)",
        total(&mix1),
        total(&series1)
    );
    assert!(
        total(&mix1) > 1_000_000,
        "the hour holds the traffic: {mix1:?}"
    );
    // "before": the mix, "after": the series over the same hour.
    assert_same("run 1: the series against the mix", &mix1, &series1);
    d.stop_cleanly("run 1");

    let d = lab.daemon_with_store(&tmp.0, 2, "");
    let (mix2, series2, answer) = last_hour(&lab);
    eprintln!(
        "after the restart: mix {mix2:?} ({} bytes), series {series2:?} ({} bytes); range {}",
        total(&mix2),
        total(&series2),
        answer["range"]
    );
    assert_eq!(
        answer["range"]["source"], "store+memory",
        "the hour reaches back before this daemon's first reading: {answer}"
    );
    assert_same("/api/v1/mix?window=3600s", &mix1, &mix2);
    assert_same(
        "/api/v1/mix/series?window=3600s&step=60s",
        &series1,
        &series2,
    );
    // Since start: the kernel's counters, this daemon's own (new maps: no traffic since)
    // or, with the maps adopted, since they were loaded (the whole of run 1).
    let since = mix_classes(&lab.api("/api/v1/mix"));
    if keep {
        assert_same("since start, with the maps adopted", &mix1, &since);
    } else {
        assert!(
            total(&since) <= total(&mix1) / 100,
            "since start after the restart: {since:?}"
        );
    }
    d.stop_cleanly("run 2");
}
