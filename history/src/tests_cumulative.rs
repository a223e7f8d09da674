//! The running totals (cumulative.rs): the top list's totals over any window equal the
//! rows' answer, through restarts, a clock set back, roll-ups, expiry and a rebuild.

use peerwarden_common::{Label, policy::Usage};

use super::tests::{Dir, T0, at, labels};
use super::*;

/// A subscriber's kernel reading: BitTorrent coming down, TLS going up, and `unknown`
/// bytes that later move to BitTorrent (the label counter goes down).
fn usage(bt: u64, tls: u64, unknown: u64) -> SubUsage {
    let mut u = SubUsage::default();
    let set = |u: &mut SubUsage, l: Label, d: usize, bytes: u64| {
        u.labels[l.id() as usize][d] = Usage {
            packets: bytes / 100,
            bytes,
        };
    };
    set(&mut u, Label::Bittorrent, 1, bt);
    set(&mut u, Label::Tls, 0, tls);
    set(&mut u, Label::Unknown, 1, unknown);
    u
}

fn count(h: &History, q: &str) -> i64 {
    h.reader().query_row(q, [], |r| r.get(0)).expect(q)
}

/// Every window below, both kinds: the running totals' answer is the rows' answer.
fn same_as_rows(h: &History, windows: &[(i64, i64)], what: &str) {
    for &(from, to) in windows {
        for which in [Which::Subscribers, Which::SubscribersLabels] {
            let fast = h
                .traffic_cumulative(from, to, which)
                .expect("traffic")
                .expect("the running totals answer");
            let slow = h.traffic_from_minutes(from, to, which).expect("minutes");
            assert_eq!(fast, slow, "{what}: [{from}, {to}) {which:?}");
        }
    }
}

/// Everything since the start, bytes of every subscriber's classes.
fn all_bytes(h: &History) -> i64 {
    h.traffic(0, i64::MAX, Which::Subscribers)
        .expect("traffic")
        .iter()
        .map(|r| r.values.bytes)
        .sum()
}

#[test]
fn running_totals_answer_any_window_as_the_rows_do() {
    let dir = Dir::new("running");
    let retention = Retention {
        minute_days: 1,
        hour_days: 2,
    };
    let base = (T0 / 3600 + 1) * 3600;
    let (first, last) = (base - 50 * 60, base + 200 * 60);
    // Readings at 17 s into every third minute; dave appears 70 minutes after the hour
    // (after the start of most windows); the daemon restarts at `restart` with new
    // counters (readings start again from zero); everything but the last few is written.
    let restart = base + 100 * 60;
    let mut h = History::open(&dir.db(), "i", retention).expect("open");
    let mut n = 0u64;
    let mut before_restart = 0;
    for t in (first..=last).step_by(180).map(|t| t + 17) {
        if t >= restart && before_restart == 0 {
            h.flush().expect("flush");
            before_restart = all_bytes(&h);
            drop(h);
            h = History::open(&dir.db(), "j", retention).expect("restart");
            n = 0;
        }
        n += 1;
        let mut subs = vec![
            ("alice".to_string(), 0, usage(n * 1000, n * 10, n % 4 * 50)),
            ("bob".to_string(), 1, usage(n * n * 300, 0, 0)),
        ];
        if t > base + 70 * 60 {
            subs.push(("dave".to_string(), 2, usage(0, n * 7, 0)));
        }
        h.record(at(t), &labels(n * 2000, n), &subs);
        if t < last - 600 {
            h.flush().expect("flush");
        }
    }
    // Counters that start again from zero never take the totals back.
    assert!(before_restart > 0);
    assert!(all_bytes(&h) > before_restart, "{before_restart}");
    let windows = [
        (first, last + 60),
        (first - 7200, base),
        (first + 7, base + 3600 + 1),
        (base, base + 7200),
        (base + 59, base + 61),
        (base + 120, base + 3 * 3600 - 60),
        (base + 600, base + 1200),
        (base + 70 * 60, restart + 600),
        (restart - 1, last - 300),
        (last - 400, last + 1000),
        (base + 3599, base + 4 * 3600 + 17),
        (base, base),
        (base + 600, base),
        (0, i64::MAX / 2),
        (i64::MIN, i64::MAX),
    ];
    same_as_rows(&h, &windows, "written and pending");
    // dave, first seen after the window's start, is in it with everything he did.
    let dave = h
        .traffic(base, last + 60, Which::Subscribers)
        .expect("traffic");
    assert!(
        dave.iter()
            .any(|r| r.key.subscriber == "dave" && r.values.bytes > 0),
        "{dave:?}"
    );
    // The clock set back: readings for minutes before the last snapshot.
    let back = base + 30 * 60 + 5;
    n += 1;
    h.record(
        at(back),
        &labels(n * 2000, n),
        &[("alice".to_string(), 0, usage(n * 1000, n * 10, 0))],
    );
    n += 1;
    h.record(
        at(back + 3 * 60 + 1),
        &labels(n * 2000, n),
        &[("erin".to_string(), 3, usage(5000, 0, 0))],
    );
    same_as_rows(&h, &windows, "set back, pending");
    h.flush().expect("flush");
    same_as_rows(&h, &windows, "set back, written");
    // The first two hours' minutes become hour rows: the snapshots inside them go.
    h.rollup(base + 3600 + 86_400).expect("rollup");
    assert!(count(&h, "SELECT COUNT(*) FROM hour") > 0);
    assert_eq!(
        count(
            &h,
            &format!(
                "SELECT COUNT(*) FROM cumulative WHERE t < {} AND t % 3600 <> 0",
                base + 3600
            )
        ),
        0
    );
    same_as_rows(&h, &windows, "rolled up");
    // Written after the roll-up (the writer reads its totals back).
    h.record(
        at(last + 61),
        &labels(n * 3000, n),
        &[("alice".to_string(), 0, usage(n * 2000, n * 20, 0))],
    );
    h.flush().expect("flush");
    same_as_rows(&h, &windows, "after the roll-up");
    // A store from before the running totals: built from its rows when opened.
    drop(h);
    {
        let conn = Connection::open(dir.db()).expect("open");
        conn.execute_batch("DROP TABLE cumulative; DELETE FROM meta WHERE key = 'cumulative'")
            .expect("forget the running totals");
    }
    let h = History::open(&dir.db(), "j", retention).expect("reopen");
    assert!(count(&h, "SELECT COUNT(*) FROM cumulative") > 0);
    same_as_rows(&h, &windows, "rebuilt");
    // Hours past the retention go, with their snapshots.
    h.rollup(base + 3600 + 2 * 86_400).expect("expire");
    assert!(count(&h, "SELECT COUNT(*) FROM hour") > 0);
    assert_eq!(
        count(
            &h,
            &format!("SELECT COUNT(*) FROM cumulative WHERE t < {}", base + 3600)
        ),
        0
    );
    same_as_rows(&h, &windows, "expired");
    // The answer is the snapshots': rows deleted behind the store's back change the rows'
    // answer and not this one.
    let (from, to) = (base + 2 * 3600, base + 3 * 3600);
    let fast = h.traffic(from, to, Which::Subscribers).expect("traffic");
    for table in ["minute", "hour"] {
        h.reader()
            .execute(
                &format!("DELETE FROM {table} WHERE t >= ?1 AND t < ?2"),
                [from, to],
            )
            .expect("delete");
    }
    let slow = h
        .traffic_from_minutes(from, to, Which::Subscribers)
        .expect("minutes");
    assert!(
        fast.iter().any(|r| r.values.bytes > 0) && slow.is_empty(),
        "{fast:?} {slow:?}"
    );
}

#[test]
fn a_damaged_snapshot_is_read_as_rows_never_a_panic() {
    let dir = Dir::new("running-damaged");
    let h = History::open(&dir.db(), "i", Retention::default()).expect("open");
    for (i, t) in [T0, T0 + 60, T0 + 120].into_iter().enumerate() {
        let n = i as u64 + 1;
        let subs = [("alice".to_string(), 0, usage(n * 1000, n, 0))];
        h.record(at(t), &labels(n, n), &subs);
        h.flush().expect("flush");
    }
    let good: Vec<u8> = h
        .reader()
        .query_row(
            "SELECT data FROM cumulative WHERE kind = 0 AND t = ?1",
            [i64::MAX],
            |r| r.get(0),
        )
        .expect("sentinel");
    // Every cut of a good blob, and a few bytes changed: no panic, and only whole blobs
    // read.
    for len in 0..good.len() {
        assert!(cumulative::tests_decode(&good[..len]).is_none(), "{len}");
    }
    assert!(cumulative::tests_decode(&good).is_some());
    let mut bad = good.clone();
    bad[0] = 9;
    assert!(cumulative::tests_decode(&bad).is_none());
    h.reader()
        .execute(
            "UPDATE cumulative SET data = x'01ff' WHERE t = ?1",
            [i64::MAX],
        )
        .expect("damage");
    assert_eq!(
        h.traffic_cumulative(T0, T0 + 3600, Which::Subscribers)
            .expect("traffic"),
        None
    );
    let rows = h
        .traffic(T0, T0 + 3600, Which::Subscribers)
        .expect("traffic");
    assert_eq!(
        rows,
        h.traffic_from_minutes(T0, T0 + 3600, Which::Subscribers)
            .expect("minutes")
    );
    assert!(!rows.is_empty());
    // Opened again, the writer finds no sentinel to go on from: it builds the snapshots
    // again from the rows, and they answer.
    drop(h);
    let h = History::open(&dir.db(), "i", Retention::default()).expect("reopen");
    let subs = [("alice".to_string(), 0, usage(9000, 9, 0))];
    h.record(at(T0 + 180), &labels(9, 9), &subs);
    h.flush().expect("flush");
    for (from, to) in [(T0, T0 + 3600), (T0 + 60, T0 + 181)] {
        let fast = h
            .traffic_cumulative(from, to, Which::Subscribers)
            .expect("traffic")
            .expect("rebuilt");
        assert_eq!(
            fast,
            h.traffic_from_minutes(from, to, Which::Subscribers)
                .expect("minutes")
        );
    }
}
