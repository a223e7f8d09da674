//! The store's unit tests: restarts, ranges and steps, roll-ups, schema, concurrent reads.

use peerwarden_common::{CounterValue, Label, label::ALL_LABELS, stats::LabelCounters};

use super::*;

/// A fresh directory for one test's store, removed on drop.
pub(crate) struct Dir(PathBuf);

impl Dir {
    pub(crate) fn new(name: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("peerwarden-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join("nested").join("history.db")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn labels(bt: u64, unknown: u64) -> LabelCounters {
    let mut c = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
    c[Label::Bittorrent.id() as usize][1] = CounterValue {
        packets: bt / 1000,
        bytes: bt,
        flows: 1,
    };
    c[Label::Unknown.id() as usize][0] = CounterValue {
        packets: 1,
        bytes: unknown,
        flows: 2,
    };
    c
}

/// A kernel reading of one subscriber: `p2p_down` bytes of BitTorrent coming down, and
/// `dropped` p2p packets dropped.
fn sub(p2p_down: u64, dropped: u64) -> SubUsage {
    let mut u = SubUsage::default();
    u.labels[Label::Bittorrent.id() as usize][1] = peerwarden_common::policy::Usage {
        packets: p2p_down / 1000,
        bytes: p2p_down,
    };
    u.policy[0][1] = peerwarden_common::policy::PolicyCount {
        dropped_packets: dropped,
        dropped_bytes: dropped * 1000,
        marked_packets: 0,
    };
    u
}

pub(crate) fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn total(rows: &[Row], name: &str, dir: u8) -> Values {
    let mut v = Values::default();
    for r in rows
        .iter()
        .filter(|r| r.key.name == name && r.key.dir == dir)
    {
        v.add(&r.values);
    }
    v
}

pub(crate) const T0: i64 = 1_800_000_000;

#[test]
fn differences_add_up_over_a_restart_and_nothing_is_counted_twice() {
    let dir = Dir::new("restart");
    {
        let h = History::open(&dir.db(), "run-1", Retention::default()).expect("open");
        h.record(
            at(T0),
            &labels(1000, 50),
            &[("alice".into(), 0, sub(800, 0))],
        );
        h.record(
            at(T0 + 30),
            &labels(5000, 80),
            &[("alice".into(), 0, sub(4000, 2))],
        );
        // A flow's bytes moved from unknown to bittorrent: unknown goes down.
        h.record(
            at(T0 + 90),
            &labels(9000, 20),
            &[("alice".into(), 0, sub(7000, 3))],
        );
        h.flush().expect("flush");
    }
    {
        // A restart: new kernel maps, counting from zero again.
        let h = History::open(&dir.db(), "run-2", Retention::default()).expect("reopen");
        let before = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
        assert_eq!(
            total(&before, "bittorrent", 1).bytes,
            9000,
            "the first run whole"
        );
        assert_eq!(total(&before, "unknown", 0).bytes, 20);
        h.record(
            at(T0 + 200),
            &labels(300, 5),
            &[("alice".into(), 0, sub(250, 1))],
        );
        // Not flushed yet: queries see the pending part too.
        let rows = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
        assert_eq!(total(&rows, "bittorrent", 1).bytes, 9300);
        assert_eq!(total(&rows, "unknown", 0).bytes, 25);
        assert_eq!(total(&rows, "unknown", 0).flows, 4);
        let alice = h
            .sum(0, i64::MAX, None, Which::Subscriber("alice"))
            .expect("sum");
        assert_eq!(total(&alice, "p2p", 1).bytes, 7250);
        assert_eq!(total(&alice, "p2p", 1).dropped_packets, 4);
        assert_eq!(total(&alice, "p2p", 1).dropped_bytes, 4000);
        assert!(
            alice.iter().all(|r| !r.key.name.starts_with(LABEL_ROW)),
            "class rows only"
        );
        let labels = h
            .sum(0, i64::MAX, None, Which::SubscriberLabels("alice"))
            .expect("sum");
        assert_eq!(total(&labels, "bittorrent", 1).bytes, 7250);
        assert_eq!(total(&labels, "bittorrent", 1).packets, 7);
        assert_eq!(labels.len(), 1, "one label row: {labels:?}");
        h.flush().expect("flush");
    }
    {
        // The same instance again (pinned maps would do this): the stored readings are
        // the base, so the same reading adds nothing.
        let h = History::open(&dir.db(), "run-2", Retention::default()).expect("reopen");
        h.record(
            at(T0 + 260),
            &labels(300, 5),
            &[("alice".into(), 0, sub(250, 1))],
        );
        h.record(
            at(T0 + 270),
            &labels(400, 5),
            &[("alice".into(), 0, sub(350, 1))],
        );
        let rows = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
        assert_eq!(total(&rows, "bittorrent", 1).bytes, 9400);
        let alice = h.sum(0, i64::MAX, None, Which::Subscribers).expect("sum");
        assert_eq!(total(&alice, "p2p", 1).bytes, 7350);
        let labels = h
            .sum(0, i64::MAX, None, Which::SubscribersLabels)
            .expect("sum");
        assert_eq!(total(&labels, "bittorrent", 1).bytes, 7350);
    }
}

#[test]
fn subscriber_label_rows_follow_the_index_and_take_relabel_moves() {
    let dir = Dir::new("labels");
    let h = History::open(&dir.db(), "i", Retention::default()).expect("open");
    let reading = |unknown: u64, bt: u64| {
        let mut u = SubUsage::default();
        u.labels[Label::Unknown.id() as usize][0].bytes = unknown;
        u.labels[Label::Bittorrent.id() as usize][0].bytes = bt;
        u
    };
    h.record_subscribers(at(T0), &[("alice".into(), 3, reading(500, 0))]);
    // The flow is labelled: its 500 bytes move, and 100 more come.
    h.record_subscribers(at(T0 + 1), &[("alice".into(), 3, reading(0, 600))]);
    let labels = h
        .sum(0, i64::MAX, None, Which::SubscriberLabels("alice"))
        .expect("sum");
    assert_eq!(total(&labels, "unknown", 0).bytes, 0);
    assert_eq!(total(&labels, "bittorrent", 0).bytes, 600);
    let classes = h
        .sum(0, i64::MAX, None, Which::Subscriber("alice"))
        .expect("sum");
    assert_eq!(total(&classes, "other", 0).bytes, 0);
    assert_eq!(total(&classes, "p2p", 0).bytes, 600);
    // Alice leaves, bob gets index 3: the kernel counts on from alice's figures, and bob
    // gets only what came after.
    h.record_subscribers(at(T0 + 2), &[("bob".into(), 3, reading(0, 650))]);
    let bob = h
        .sum(0, i64::MAX, None, Which::SubscriberLabels("bob"))
        .expect("sum");
    assert_eq!(total(&bob, "bittorrent", 0).bytes, 50);
    let all = h
        .sum(0, i64::MAX, None, Which::SubscribersLabels)
        .expect("sum");
    assert_eq!(total(&all, "bittorrent", 0).bytes, 650, "counted once");
}

#[test]
fn ranges_and_steps_split_by_minute() {
    let dir = Dir::new("steps");
    let h = History::open(&dir.db(), "i", Retention::default()).expect("open");
    let base = minute_of(T0);
    for m in 0..10 {
        // 1000 bytes of bittorrent per minute, read mid-minute.
        h.record(
            at(base + m * 60 + 30),
            &labels(1000 * (m as u64 + 1), 0),
            &[],
        );
        if m == 4 {
            h.flush().expect("flush");
        }
    }
    let rows = h
        .sum(base + 120, base + 300, None, Which::Labels)
        .expect("sum");
    assert_eq!(total(&rows, "bittorrent", 1).bytes, 3000, "minutes 2, 3, 4");
    let rows = h
        .sum(base, base + 600, Some(120), Which::Labels)
        .expect("sum");
    let mut per_step = [0i64; 5];
    for r in rows.iter().filter(|r| r.key.name == "bittorrent") {
        per_step[r.bucket as usize] += r.values.bytes;
    }
    assert_eq!(per_step, [2000; 5]);
    assert_eq!(h.first().expect("first"), Some(base));
    assert!(
        h.sum(base, base + 600, None, Which::Subscribers)
            .expect("sum")
            .is_empty()
    );
}

#[test]
fn old_minutes_roll_up_into_hours_and_old_hours_go() {
    let dir = Dir::new("rollup");
    let retention = Retention {
        minute_days: 1,
        hour_days: 3,
    };
    let h = History::open(&dir.db(), "i", retention).expect("open");
    let day = 86_400;
    let start = T0.div_euclid(3600) * 3600;
    // One reading per 20 minutes over five days: 100 bytes each.
    let mut n = 0u64;
    let mut t = start;
    while t < start + 5 * day {
        n += 1;
        h.record(
            at(t),
            &labels(100 * n, 0),
            &[("bob".into(), 1, sub(10 * n, 0))],
        );
        t += 1200;
    }
    h.flush().expect("flush");
    let all = |h: &History| {
        total(
            &h.sum(i64::MIN, i64::MAX, None, Which::Labels).expect("sum"),
            "bittorrent",
            1,
        )
        .bytes
    };
    assert_eq!(all(&h), 100 * n as i64);
    let now = start + 5 * day;
    h.rollup(now).expect("rollup");
    let conn = h.reader();
    let count = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .expect("count")
    };
    let oldest_minute = count("SELECT MIN(t) FROM minute");
    assert!(
        oldest_minute >= now - day - 3600 && oldest_minute % 3600 == 0,
        "{oldest_minute}"
    );
    assert!(count("SELECT MIN(t) FROM hour") >= now - 3 * day - 3600);
    assert!(
        count("SELECT MAX(t) FROM hour") < oldest_minute,
        "no hour in both tables"
    );
    drop(conn);
    // Nothing was lost in the move: what remains is exactly the last three days.
    let kept = total(
        &h.sum(now - 3 * day - 3600, i64::MAX, None, Which::Labels)
            .expect("sum"),
        "bittorrent",
        1,
    )
    .bytes;
    let expected_readings = (start..start + 5 * day)
        .step_by(1200)
        .filter(|t| *t >= (now - 3 * day).div_euclid(3600) * 3600)
        .count() as i64;
    assert_eq!(kept, 100 * expected_readings);
    let bob = total(
        &h.sum(i64::MIN, i64::MAX, None, Which::Subscriber("bob"))
            .expect("sum"),
        "p2p",
        1,
    )
    .bytes;
    assert_eq!(bob, 10 * expected_readings);
}

#[test]
fn queries_during_flushes_see_every_difference_once() {
    let dir = Dir::new("concurrent");
    let h = std::sync::Arc::new(History::open(&dir.db(), "i", Retention::default()).expect("open"));
    // Cumulative readings whose differences all differ: a difference counted twice or
    // missed gives a total that is no reading at all.
    let readings: Vec<u64> = (1..=300u64).map(|i| 7 * i * (i + 1) / 2).collect();
    // The writer waits at every flush until the reader has made a query since the last
    // one, so queries and flushes interleave however fast either side runs.
    let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (h, readings, queries) = (h.clone(), readings.clone(), queries.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            for (i, r) in readings.iter().enumerate() {
                h.record(at(T0 + i as i64), &labels(*r, 0), &[]);
                if i % 3 == 0 {
                    h.flush().expect("flush");
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while queries.load(std::sync::atomic::Ordering::SeqCst) == last
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::yield_now();
                    }
                    last = queries.load(std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() {
        let rows = h.sum(i64::MIN, i64::MAX, None, Which::Labels).expect("sum");
        let t = total(&rows, "bittorrent", 1).bytes as u64;
        assert!(
            t == 0 || readings.contains(&t),
            "a total that was never read: {t}"
        );
        seen += 1;
        queries.store(seen, std::sync::atomic::Ordering::SeqCst);
    }
    writer.join().expect("writer");
    assert!(seen >= 100, "the reader ran alongside ({seen} queries)");
    let rows = h.sum(i64::MIN, i64::MAX, None, Which::Labels).expect("sum");
    assert_eq!(total(&rows, "bittorrent", 1).bytes as u64, readings[299]);
}

#[test]
fn a_query_during_a_flush_waits_for_no_commit_and_counts_everything_once() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
        mpsc,
    };
    use std::time::Duration;
    let dir = Dir::new("flush-wait");
    let h = Arc::new(History::open(&dir.db(), "i", Retention::default()).expect("open"));
    h.record(at(T0), &labels(1000, 0), &[]);
    h.flush().expect("first flush");
    h.record(at(T0 + 60), &labels(3000, 0), &[]);
    // The next flush stops after its commit, before it drops the differences it wrote
    // from memory, until a query has answered (or 10 s have passed: a query held up by
    // the flush never answers in time). The query's snapshot holds the commit, and the
    // differences are still in memory: counted once, not twice.
    let (started_tx, started_rx) = mpsc::channel();
    let (answered_tx, answered_rx) = mpsc::channel::<()>();
    let answered_in_time = Arc::new(AtomicBool::new(false));
    *lock(&h.after_commit) = Some(Box::new({
        let answered_in_time = answered_in_time.clone();
        move || {
            let _ = started_tx.send(());
            let ok = answered_rx.recv_timeout(Duration::from_secs(10)).is_ok();
            answered_in_time.store(ok, SeqCst);
        }
    }));
    let flusher = {
        let h = h.clone();
        std::thread::spawn(move || h.flush())
    };
    started_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the flush committed");
    let during = h.sum(i64::MIN, i64::MAX, None, Which::Labels).expect("sum");
    let _ = answered_tx.send(());
    flusher.join().expect("flusher").expect("flush");
    assert!(
        answered_in_time.load(SeqCst),
        "the query waited for the flush"
    );
    // Both minutes, the written one and the one being written, each once.
    assert_eq!(total(&during, "bittorrent", 1).bytes, 3000);
    let after = h.sum(i64::MIN, i64::MAX, None, Which::Labels).expect("sum");
    assert_eq!(total(&after, "bittorrent", 1).bytes, 3000);
    assert_eq!(h.flushes.load(SeqCst), 2);
}

#[test]
fn a_query_takes_a_free_reader_while_a_long_one_holds_another() {
    use std::sync::{Arc, mpsc};
    let dir = Dir::new("readers");
    let h = Arc::new(History::open(&dir.db(), "i", Retention::default()).expect("open"));
    h.record(at(T0), &labels(1000, 0), &[]);
    // A long query (every subscriber over hours, say) has the first reader.
    let held = lock(&h.readers[0]);
    let (tx, rx) = mpsc::channel();
    let asker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let rows = h.sum(i64::MIN, i64::MAX, None, Which::Labels);
            let _ = tx.send(rows.map(|r| total(&r, "bittorrent", 1).bytes));
        })
    };
    let answer = rx.recv_timeout(Duration::from_secs(10));
    drop(held);
    asker.join().expect("asker");
    let bytes = answer
        .expect("the query waited for the busy reader")
        .expect("sum");
    assert_eq!(bytes, 1000);
}

#[test]
fn a_store_of_another_schema_is_refused() {
    let dir = Dir::new("schema");
    drop(History::open(&dir.db(), "i", Retention::default()).expect("open"));
    let conn = Connection::open(dir.db()).expect("sqlite");
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'", [])
        .expect("update");
    drop(conn);
    let e = History::open(&dir.db(), "i", Retention::default())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

#[test]
fn label_differences_are_signed() {
    let v = |bytes| Values {
        bytes,
        ..Values::default()
    };
    assert_eq!(difference(&v(100), &v(40)).bytes, -60);
    assert_eq!(difference(&v(100), &v(140)).bytes, 40);
}

#[test]
fn subscriber_readings_survive_the_store_as_bytes() {
    let mut u = sub(123_456, 7);
    u.labels[Label::Dns.id() as usize][0].packets = u64::MAX;
    u.policy[3][0].marked_packets = 42;
    assert_eq!(usage_from_bytes(&usage_to_bytes(&u)), Some(u));
    assert_eq!(usage_from_bytes(&[0; 10]), None);
    // Sparse: only the nonzero counters are written.
    let nonzero = usage_words(&u).iter().filter(|w| **w != 0).count();
    assert_eq!(usage_to_bytes(&u).len(), 1 + 8 * MASK_WORDS + 8 * nonzero);
    assert_eq!(
        usage_from_bytes(&usage_to_bytes(&SubUsage::default())),
        Some(SubUsage::default())
    );
    // A label added since (ssh, id 22) is kept.
    let mut v = u;
    v.labels[Label::Ssh.id() as usize][1].bytes = 99;
    assert_eq!(usage_from_bytes(&usage_to_bytes(&v)), Some(v));
    // The layouts of stores written with 22 labels are still read: dense (112 counters,
    // 896 bytes) and sparse (tag 1, a 128-bit mask).
    let legacy: Vec<u64> = usage_words(&u)
        .iter()
        .take(LEGACY_LABELS * 4)
        .chain(usage_words(&u)[SUB_LABELS * 4..].iter())
        .copied()
        .collect();
    assert_eq!(legacy.len(), 112);
    let dense: Vec<u8> = legacy.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(dense.len(), 896);
    assert_eq!(usage_from_bytes(&dense), Some(u));
    let mask = legacy
        .iter()
        .enumerate()
        .filter(|(_, w)| **w != 0)
        .fold(0u128, |m, (i, _)| m | 1 << i);
    let mut sparse = vec![SPARSE_22_LABELS];
    sparse.extend_from_slice(&mask.to_le_bytes());
    for w in legacy.iter().filter(|w| **w != 0) {
        sparse.extend_from_slice(&w.to_le_bytes());
    }
    assert_eq!(usage_from_bytes(&sparse), Some(u));
    // Stores written with 32 labels (before `iptv`): tag 2, a 192-bit mask over 152
    // counters whose class counters sit four words before this build's.
    let mut w = u;
    w.labels[Label::Gre.id() as usize][0].bytes = 31;
    w.policy[2][1].dropped_bytes = 5;
    let words32: Vec<u64> = usage_words(&w)
        .iter()
        .take(LABELS_32 * 4)
        .chain(usage_words(&w)[SUB_LABELS * 4..].iter())
        .copied()
        .collect();
    assert_eq!(words32.len(), 152);
    let mut mask = [0u64; 3];
    for (i, x) in words32.iter().enumerate() {
        if *x != 0 {
            mask[i / 64] |= 1 << (i % 64);
        }
    }
    let mut sparse32 = vec![SPARSE_32_LABELS];
    for m in mask {
        sparse32.extend_from_slice(&m.to_le_bytes());
    }
    for x in words32.iter().filter(|x| **x != 0) {
        sparse32.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(usage_from_bytes(&sparse32), Some(w));
    // And the new label survives this build's layout.
    let mut v = w;
    v.labels[Label::Iptv.id() as usize][1].bytes = 1316;
    assert_eq!(usage_from_bytes(&usage_to_bytes(&v)), Some(v));
    // A blob that does not add up is refused, not guessed at.
    let mut short = usage_to_bytes(&u);
    short.pop();
    assert_eq!(usage_from_bytes(&short), None);
    let mut tagged = usage_to_bytes(&u);
    tagged[0] = 7;
    assert_eq!(usage_from_bytes(&tagged), None);
}

#[test]
fn traffic_totals_are_the_sums_bytes_and_packets_read_from_the_covering_index() {
    let dir = Dir::new("traffic");
    let h = History::open(&dir.db(), "i", Retention::default()).expect("open");
    let subs = |a: u64, a_dropped: u64, b: u64| {
        vec![
            ("alice".to_string(), 0, sub(a, a_dropped)),
            ("bob".to_string(), 1, sub(b, 0)),
        ]
    };
    h.record(at(T0), &labels(0, 0), &subs(1000, 1, 2000));
    h.record(at(T0 + 60), &labels(5000, 10), &subs(5000, 2, 7000));
    h.flush().expect("flush");
    // And some still pending.
    h.record(at(T0 + 120), &labels(9000, 20), &subs(8000, 4, 9000));
    for which in [Which::Subscribers, Which::SubscribersLabels] {
        let full = h.sum(0, i64::MAX, None, which).expect("sum");
        let traffic = h.traffic(0, i64::MAX, which).expect("traffic");
        let bytes_and_packets: Vec<Row> = full
            .iter()
            .map(|r| Row {
                values: Values {
                    bytes: r.values.bytes,
                    packets: r.values.packets,
                    ..Values::default()
                },
                ..r.clone()
            })
            .collect();
        assert_eq!(traffic, bytes_and_packets, "{which:?}");
        assert!(
            traffic
                .iter()
                .any(|r| r.key.subscriber == "bob" && r.values.bytes > 0),
            "{which:?}: {traffic:?}"
        );
    }
    let full = h.sum(0, i64::MAX, None, Which::Subscribers).expect("sum");
    assert!(
        full.iter().any(|r| r.values.dropped_packets > 0),
        "the full sum keeps the drops: {full:?}"
    );
    // Every subscriber's minute rows over a range, classes or labels, come from the index
    // alone.
    let conn = h.reader();
    for which in [Which::Subscribers, Which::SubscribersLabels] {
        let (query, _) = super::query::sum_query("minute", which, false, true);
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .expect("explain")
            .query_map(rusqlite::params![0, 10], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        assert!(
            plan.iter()
                .any(|l| l.contains("COVERING INDEX minute_totals")),
            "{which:?}: {plan:?}"
        );
    }
}

/// The top list's totals over ragged windows (ends inside hours, whole hours between, no
/// whole hour at all) from the hour totals equal the answer from minutes and hours: with
/// rows written and pending, after minutes are rolled up into hours and old hours expire,
/// and in a store whose hour totals were lost and rebuilt when it was opened.
#[test]
fn hour_totals_answer_ragged_windows_as_the_minutes_do() {
    let dir = Dir::new("hour-totals");
    let retention = Retention {
        minute_days: 1,
        hour_days: 2,
    };
    let h = History::open(&dir.db(), "i", retention).expect("open");
    // An hour boundary, then minutes every 5 minutes from 40 minutes before it to 4 h 20
    // after, alice, bob and carol each growing at their own pace.
    let base = (T0 / 3600 + 1) * 3600;
    let (first, last) = (base - 40 * 60, base + 260 * 60);
    let mut n = 0u64;
    for t in (first..=last).step_by(300) {
        n += 1;
        let subs = vec![
            ("alice".to_string(), 0, sub(n * 1000, n)),
            ("bob".to_string(), 1, sub(n * n * 300, 0)),
            (
                "carol".to_string(),
                2,
                sub(if n > 20 { n * 50 } else { 0 }, 0),
            ),
        ];
        h.record(at(t), &labels(n * 2000, n), &subs);
        // Written every third minute; the last ones stay pending.
        if n.is_multiple_of(3) && t < last - 900 {
            h.flush().expect("flush");
        }
    }
    let windows = [
        (first, last + 60),
        (first + 7, base + 3600 + 1),
        (base, base + 7200),
        (base + 120, base + 3 * 3600 - 60),
        (base + 600, base + 1200),
        (base - 1, base + 1),
        (base + 3599, base + 4 * 3600 + 17),
        (0, i64::MAX / 2),
    ];
    let same = |h: &History, what: &str| {
        for (from, to) in windows {
            for which in [Which::Subscribers, Which::SubscribersLabels] {
                let fast = h.traffic(from, to, which).expect("traffic");
                let slow = h.traffic_from_minutes(from, to, which).expect("minutes");
                assert_eq!(fast, slow, "{what}: [{from}, {to}) {which:?}");
                if to - from > 600 {
                    assert!(!fast.is_empty(), "{what}: [{from}, {to}) {which:?}");
                }
            }
        }
    };
    same(&h, "written and pending");
    h.flush().expect("flush");
    same(&h, "written");
    // The first two hours' minutes become hour rows.
    h.rollup(base + 7200 + 86_400).expect("rollup");
    let count =
        |h: &History, q: &str| -> i64 { h.reader().query_row(q, [], |r| r.get(0)).expect(q) };
    assert!(count(&h, "SELECT COUNT(*) FROM hour") > 0);
    same(&h, "rolled up");
    // The store loses its hour totals (a store from before them): rebuilt on opening.
    drop(h);
    {
        let conn = Connection::open(dir.db()).expect("open");
        conn.execute_batch("DELETE FROM hour_totals; DELETE FROM meta WHERE key = 'hour_totals'")
            .expect("forget the totals");
    }
    let h = History::open(&dir.db(), "i", retention).expect("reopen");
    assert!(count(&h, "SELECT COUNT(*) FROM hour_totals") > 0);
    same(&h, "rebuilt");
    // Hours past the hour retention go from every table alike.
    h.rollup(base + 3600 + 2 * 86_400).expect("expire");
    assert_eq!(
        count(
            &h,
            &format!("SELECT COUNT(*) FROM hour_totals WHERE t < {}", base + 3600)
        ),
        0
    );
    same(&h, "expired");
    // The whole hours come from the totals: the rows of one hour deleted behind the
    // store's back change the minute-based answer and not the other.
    for table in ["minute", "hour"] {
        h.reader()
            .execute(
                &format!("DELETE FROM {table} WHERE t >= ?1 AND t < ?2"),
                [base + 3 * 3600, base + 4 * 3600],
            )
            .expect("delete");
    }
    let (from, to) = (base + 3 * 3600, base + 4 * 3600);
    let fast = h.traffic(from, to, Which::Subscribers).expect("traffic");
    let slow = h
        .traffic_from_minutes(from, to, Which::Subscribers)
        .expect("minutes");
    assert!(
        fast.iter().any(|r| r.values.bytes > 0) && slow.is_empty(),
        "{fast:?} {slow:?}"
    );
}
