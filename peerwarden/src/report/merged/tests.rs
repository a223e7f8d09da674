//! A window across a restart, with a real history store: a first daemon's readings in the
//! store, a second daemon's in memory (and in the store, as the daemon records them).
//!
//! Traffic: BitTorrent up at 1000 bytes a second, one packet a second. Minutes are on
//! `w0`, a whole minute ten minutes ago:
//!
//! - daemon A (new maps, loaded half a second before its first reading): readings every
//!   second from `w0 - 300 s` to `w0 + 20 s`, counters `1000 * i + 500`;
//! - nothing runs from `w0 + 20 s` to `w0 + 30 s`;
//! - daemon B: readings every second from `w0 + 30 s` (`R0`, in the minute `w0`) to
//!   `w0 + 185 s` (the latest), in memory and in the store; with new maps its counters
//!   start again (`1000 * j + 500`), with A's maps adopted they go on (and count the
//!   pause: the kernel kept counting).

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use peerwarden_common::{CounterValue, Label, label::ALL_LABELS};
use peerwarden_history::{History, Which, minute_of, unix};

use super::*;
use crate::report::{series::points, source::Live};

const RATE: u64 = 1000;
/// Daemon B's readings after `R0`.
const B_SECS: u64 = 155;

fn counters(bytes: u64) -> crate::probe::LabelCounters {
    let mut c = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
    c[Label::Bittorrent.id() as usize][0] = CounterValue {
        packets: bytes / RATE,
        bytes,
        flows: 1,
    };
    c
}

fn bt_up(c: &Counts) -> u64 {
    c.labels()["bittorrent"].bytes[0]
}

struct Case {
    dir: PathBuf,
    store: History,
    /// Daemon B's readings, as the ring holds them.
    ring: Vec<LabelReading>,
    now: Instant,
    wall: SystemTime,
    /// Daemon B's last counter: with adopted maps, every byte since A's maps were loaded.
    latest: u64,
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn at_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
}

/// The store and the ring after A's run and B's, in a fresh directory; `a`: whether A ran
/// at all (else the store is new with B); `adopt`: B adopts A's maps.
fn case(name: &str, a: bool, adopt: bool) -> (Case, i64) {
    let dir = std::env::temp_dir().join(format!("peerwarden-merged-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("history.db");
    let w0 = minute_of(unix(SystemTime::now())) - 600;
    let mut last_a = 0;
    if a {
        let h = History::open(&path, "a", Default::default()).expect("store A");
        for i in 0..=320u64 {
            last_a = RATE * i + 500;
            h.record_labels(at_ms((w0 - 300 + i as i64) * 1000), &counters(last_a));
        }
        h.flush().expect("flush A");
    }
    let store =
        History::open(&path, if adopt { "a" } else { "b" }, Default::default()).expect("store B");
    // B's base: A's last counter and the pause's 10 s, or new maps.
    let base = if adopt { last_a + 10 * RATE } else { 500 };
    let wall = at_ms((w0 + 30 + B_SECS as i64) * 1000 + 200);
    let now = Instant::now();
    let mut ring = Vec::new();
    let mut latest = 0;
    for j in 0..=B_SECS {
        let t = (w0 + 30 + j as i64) * 1000;
        latest = base + RATE * j;
        store.record_labels(at_ms(t), &counters(latest));
        let age = wall.duration_since(at_ms(t)).expect("in the past");
        ring.push(LabelReading {
            at: now.checked_sub(age).expect("uptime of a few minutes"),
            counters: counters(latest),
        });
    }
    (
        Case {
            dir,
            store,
            ring,
            now,
            wall,
            latest,
        },
        w0,
    )
}

impl Case {
    fn live(&self, window: u64, step: u64) -> Live<'_> {
        Live {
            readings: &self.ring,
            now: self.now,
            wall: self.wall,
            window,
            step,
        }
    }

    /// The merged source, as the API builds it; `None` when the ring covers the window.
    fn merged(&self, window: u64, step: u64) -> Option<Merged<'_>> {
        let live = self.live(window, step);
        let need = minutes(&live)?;
        let rows = self
            .store
            .sum(need.from, need.to, Some(60), Which::Labels)
            .expect("sum");
        let first = self.store.first().expect("first");
        Some(Merged::new(live, &rows, need, first))
    }
}

#[test]
fn a_window_across_a_restart_holds_every_stored_byte_once() {
    let (c, w0) = case("whole", true, false);
    // A: its first reading whole (500), then 320 s; B: likewise, 155 s.
    let (a, b) = (500 + 320 * RATE, 500 + B_SECS * RATE);
    let m = c.merged(3600, 3600).expect("the window reaches before B");
    assert_eq!(bt_up(&m.total()), a + b);
    // Every byte the store holds, once: the store over the whole time agrees.
    let rows = c
        .store
        .sum(w0 - 3600, w0 + 3600, None, Which::Labels)
        .expect("sum");
    assert_eq!(bt_up(&Counts::from_rows(&rows)), a + b);
    // The readings alone (as before) held B's seconds only.
    let only = crate::report::series::points(&c.live(3600, 3600));
    assert!(
        only.is_empty(),
        "a step before the first reading is left out"
    );
    // Covered: from the store's first minute to B's latest reading.
    assert_eq!(m.covered(), 300 + 30 + B_SECS);
    let span = m.span();
    assert_eq!(span.source, "store+memory");
    assert_eq!(span.from, ktime::rfc3339(at_ms((w0 - 300) * 1000)));
    // The series over the same hour: every byte in exactly one step.
    let m = c.merged(3600, 10).expect("merged");
    let pts = points(&m);
    let sum: u64 = pts.iter().map(|p| p.classes["p2p"].bytes[0]).sum();
    assert_eq!(sum, a + b, "{} points", pts.len());
    // Steps wholly before the store's first minute are left out: the first point's step
    // (they end at the latest reading, 10 s apart) is the one it starts in.
    let first_end = unix(humantime::parse_rfc3339(&pts[0].t).expect("t"));
    assert_eq!(first_end, w0 - 295, "{}", pts[0].t);
}

#[test]
fn steps_before_the_start_are_the_stored_minutes_spread_evenly() {
    let (c, w0) = case("steps", true, false);
    let m = c.merged(600, 10).expect("merged");
    let pts = points(&m);
    for p in &pts {
        let end = unix(humantime::parse_rfc3339(&p.t).expect("t"));
        let up = p.classes["p2p"].bytes[0];
        // Whole minutes of A (60 readings each): 10 s of them is 10 s of traffic.
        let whole_a = end - 10 >= w0 - 240 && end <= w0;
        // After B's first reading: the readings themselves.
        let b = end - 10 >= w0 + 30;
        if whole_a || b {
            assert_eq!(up, 10 * RATE, "{}", p.t);
            assert_eq!(p.classes["p2p"].packets[0], 10, "{}", p.t);
        }
    }
    // The steps from w0 - 5 s to w0 + 35 s: 5 s of A's whole minute before w0; the rest of
    // the minute of the restart up to R0 (A's 21 readings in it and B's first, 500 bytes:
    // its maps were new), spread over w0 to R0; and B's readings from R0 to w0 + 35 s.
    let boundary: u64 = pts
        .iter()
        .filter(|p| {
            let end = unix(humantime::parse_rfc3339(&p.t).expect("t"));
            end > w0 && end <= w0 + 35
        })
        .map(|p| p.classes["p2p"].bytes[0])
        .sum();
    assert_eq!(boundary, 5 * RATE + (21 * RATE + 500) + 5 * RATE);
}

#[test]
fn a_window_starting_in_the_boundary_minute_gets_its_share() {
    let (c, w0) = case("share", true, false);
    // 170 s before the latest reading: w0 + 15 s, half way from w0 to R0.
    let m = c.merged(170, 170).expect("merged");
    let remainder = 21 * RATE + 500;
    assert_eq!(bt_up(&m.total()), remainder / 2 + B_SECS * RATE);
    // What really crossed since w0 + 15 s: A's last 5 s, B's 500 and its 155 s. Off by
    // less than a minute's traffic at the far end, as documented.
    let truth = 5 * RATE + 500 + B_SECS * RATE;
    assert!(bt_up(&m.total()).abs_diff(truth) < 60 * RATE);
    assert_eq!(m.covered(), 170);
    assert_eq!(m.span().from, ktime::rfc3339(at_ms((w0 + 15) * 1000)));
}

#[test]
fn adopted_maps_count_the_pause_once() {
    let (c, _) = case("adopt", true, true);
    let m = c.merged(3600, 3600).expect("merged");
    // Every byte since A's maps were loaded: B's latest counter, pause included.
    assert_eq!(bt_up(&m.total()), c.latest);
    assert_eq!(c.latest, 500 + 320 * RATE + 10 * RATE + B_SECS * RATE);
    let pts = points(&c.merged(3600, 60).expect("merged"));
    let sum: u64 = pts.iter().map(|p| p.classes["p2p"].bytes[0]).sum();
    assert_eq!(sum, c.latest);
}

#[test]
fn a_new_store_adds_only_what_came_before_the_first_reading() {
    let (c, w0) = case("fresh", false, false);
    let m = c.merged(600, 10).expect("merged");
    let pts = points(&m);
    // Nothing before the minute of B's first reading: those steps are left out.
    let first_end = unix(humantime::parse_rfc3339(&pts[0].t).expect("t"));
    assert!(first_end > w0, "{}", pts[0].t);
    let sum: u64 = pts.iter().map(|p| p.classes["p2p"].bytes[0]).sum();
    // B's first reading counted whole (its maps were new): 500 bytes before it.
    assert_eq!(sum, 500 + B_SECS * RATE);
    assert_eq!(m.covered(), 30 + B_SECS, "from the store's first minute");
}

#[test]
fn readings_that_cover_the_window_need_no_store() {
    let (c, _) = case("covered", true, false);
    assert!(c.merged(B_SECS, 5).is_none());
    assert!(c.merged(100, 100).is_none());
    assert!(c.merged(B_SECS + 10, 10).is_some());
    // 155 s in 10 s steps is 16 steps: the oldest starts 5 s before the first reading.
    assert!(c.merged(B_SECS, 10).is_some());
    let empty = Live {
        readings: &[],
        now: c.now,
        wall: c.wall,
        window: 60,
        step: 10,
    };
    assert_eq!(
        minutes(&empty),
        None,
        "no reading yet: nothing to merge with"
    );
}
