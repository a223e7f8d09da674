//! When rows reach SQLite: the periodic write takes the minutes that have ended and the
//! readings at their end; the current minute stays in memory, seen by queries, and a
//! daemon killed mid-minute loses no byte of counters that outlive it (pinned maps).

use peerwarden_common::{Label, policy::Usage};

use super::tests::{Dir, T0, at, labels};
use super::*;

/// A kernel reading of one subscriber: `down` bytes of BitTorrent coming down.
fn sub(down: u64) -> SubUsage {
    let mut u = SubUsage::default();
    u.labels[Label::Bittorrent.id() as usize][1] = Usage {
        packets: down / 1000,
        bytes: down,
    };
    u
}

/// One reading of both kinds: all traffic's BitTorrent bytes `bt`, alice's `down`.
fn record(h: &History, secs: i64, bt: u64, down: u64) {
    h.record(at(secs), &labels(bt, 0), &[("alice".into(), 7, sub(down))]);
}

/// Bytes of `name` (direction 1) summed over rows.
fn bytes(rows: &[Row], name: &str) -> i64 {
    rows.iter()
        .filter(|r| r.key.name == name && r.key.dir == 1)
        .map(|r| r.values.bytes)
        .sum()
}

/// What SQLite holds (not what queries add from memory): per minute start, all traffic's
/// BitTorrent bytes and alice's p2p bytes, downstream.
fn stored(dir: &Dir) -> Vec<(i64, i64, i64)> {
    let c = Connection::open(dir.db()).expect("open");
    let mut stmt = c
        .prepare(
            "SELECT m.t,
                    SUM(CASE WHEN s.id = '*' AND m.name = 'bittorrent' THEN m.bytes ELSE 0 END),
                    SUM(CASE WHEN s.id = 'alice' AND m.name = 'p2p' THEN m.bytes ELSE 0 END)
             FROM minute m JOIN subscriber s ON s.sub = m.sub
             WHERE m.dir = 1 GROUP BY m.t ORDER BY m.t",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn the_periodic_write_leaves_the_current_minute_pending_and_queries_see_it() {
    let dir = Dir::new("minute-pending");
    let h = History::open(&dir.db(), "run-1", Retention::default()).expect("open");
    record(&h, T0 + 5, 1_000, 100);
    h.make_flush_due();
    record(&h, T0 + 30, 3_000, 300);
    assert_eq!(h.flushes.load(Ordering::Relaxed), 0, "no minute has ended");
    assert!(stored(&dir).is_empty());
    // The first reading of the next minute writes the ended one, before it is recorded.
    h.make_flush_due();
    record(&h, T0 + 65, 4_500, 450);
    assert_eq!(h.flushes.load(Ordering::Relaxed), 1);
    assert_eq!(
        stored(&dir),
        vec![(T0, 3_000, 300)],
        "the ended minute alone"
    );
    // Due again by time, in the same minute: nothing is written.
    h.make_flush_due();
    record(&h, T0 + 90, 6_000, 600);
    assert_eq!(h.flushes.load(Ordering::Relaxed), 1, "mid-minute: no write");
    assert_eq!(stored(&dir), vec![(T0, 3_000, 300)]);
    // Queries see the current minute from memory, whole and by minute.
    let all = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
    assert_eq!(bytes(&all, "bittorrent"), 6_000);
    let now = h.sum(T0 + 60, T0 + 120, None, Which::Labels).expect("sum");
    assert_eq!(bytes(&now, "bittorrent"), 3_000);
    let alice = h
        .sum(T0, T0 + 120, Some(60), Which::Subscriber("alice"))
        .expect("sum");
    let by_minute: Vec<(i64, i64)> = alice
        .iter()
        .filter(|r| r.key.name == "p2p")
        .map(|r| (r.bucket, r.values.bytes))
        .collect();
    assert_eq!(by_minute, vec![(0, 300), (1, 300)]);
    let top = h
        .traffic(T0, T0 + 120, Which::Subscribers)
        .expect("traffic");
    assert_eq!(bytes(&top, "p2p"), 600);
    // A clean stop writes the current minute too.
    h.flush().expect("flush");
    assert_eq!(stored(&dir), vec![(T0, 3_000, 300), (T0 + 60, 3_000, 300)]);
}

#[test]
fn a_daemon_killed_mid_minute_loses_no_byte_of_pinned_counters() {
    let dir = Dir::new("killed-mid-minute");
    {
        let h = History::open(&dir.db(), "pinned", Retention::default()).expect("open");
        record(&h, T0 + 1, 1_000, 100);
        record(&h, T0 + 30, 3_000, 300);
        h.make_flush_due();
        record(&h, T0 + 61, 4_000, 400);
        h.make_flush_due();
        record(&h, T0 + 90, 7_000, 700);
        assert_eq!(h.flushes.load(Ordering::Relaxed), 1);
        // Killed: dropped without a flush, the minute from T0 + 60 never written.
    }
    assert_eq!(stored(&dir), vec![(T0, 3_000, 300)]);
    // The next daemon adopts the same pinned counters, which went on counting.
    let h = History::open(&dir.db(), "pinned", Retention::default()).expect("reopen");
    record(&h, T0 + 125, 9_500, 950);
    h.flush().expect("flush");
    let all = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
    assert_eq!(
        bytes(&all, "bittorrent"),
        9_500,
        "the kernel's growth, once"
    );
    let alice = h
        .sum(0, i64::MAX, None, Which::Subscriber("alice"))
        .expect("sum");
    assert_eq!(bytes(&alice, "p2p"), 950);
    let alice = h
        .sum(0, i64::MAX, None, Which::SubscriberLabels("alice"))
        .expect("sum");
    assert_eq!(bytes(&alice, "bittorrent"), 950);
    let top = h.traffic(0, i64::MAX, Which::Subscribers).expect("traffic");
    assert_eq!(bytes(&top, "p2p"), 950);
    // The killed run's last minute is counted into the new run's first one.
    assert_eq!(stored(&dir), vec![(T0, 3_000, 300), (T0 + 120, 6_500, 650)]);
}

#[test]
fn a_minute_ending_soon_after_a_write_waits_for_the_next_minutes_end() {
    let dir = Dir::new("minute-after-flush");
    let h = History::open(&dir.db(), "run-1", Retention::default()).expect("open");
    record(&h, T0 + 5, 1_000, 100);
    h.flush().expect("flush");
    record(&h, T0 + 50, 2_000, 200);
    // Within FLUSH_EVERY of the last write: the minute's end writes nothing.
    record(&h, T0 + 65, 2_500, 250);
    assert_eq!(h.flushes.load(Ordering::Relaxed), 1);
    assert_eq!(stored(&dir), vec![(T0, 1_000, 100)]);
    h.make_flush_due();
    record(&h, T0 + 121, 4_000, 400);
    assert_eq!(h.flushes.load(Ordering::Relaxed), 2);
    assert_eq!(
        stored(&dir),
        vec![(T0, 2_000, 200), (T0 + 60, 500, 50)],
        "both ended minutes, each row once"
    );
    let all = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
    assert_eq!(bytes(&all, "bittorrent"), 4_000);
}
