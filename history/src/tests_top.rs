//! The top list's rows (top.rs): the store's ranking on the running totals' integers
//! picks the subscribers a whole ranking of the rows picks.

use std::collections::BTreeSet;

use peerwarden_common::{Label, policy::Usage};

use super::tests::{Dir, T0, at, labels};
use super::*;

/// A subscriber's kernel reading: BitTorrent down, TLS up, and `unknown` up, which goes
/// down again when its bytes move to a label (rows below zero).
fn usage(bt: u64, tls: u64, unknown: u64) -> SubUsage {
    let mut u = SubUsage::default();
    for (l, d, bytes) in [
        (Label::Bittorrent, 1, bt),
        (Label::Tls, 0, tls),
        (Label::Unknown, 0, unknown),
    ] {
        u.labels[l.id() as usize][d] = Usage {
            packets: bytes / 100,
            bytes,
        };
    }
    u
}

/// The whole ranking of `rows`, brute force: every subscriber's bytes in the rows named
/// in `names` (below zero as zero), most first, ties by id, none with zero, the first
/// `limit` kept; their rows. And whether the cut fell inside a tie.
fn brute_force(rows: Vec<Row>, names: &[&str], limit: usize) -> (Vec<Row>, bool) {
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let e = per.entry(r.key.subscriber.clone()).or_default();
        if names.contains(&r.key.name.as_str()) {
            *e = e.wrapping_add(r.values.bytes.max(0) as u64);
        }
    }
    let mut all: Vec<(String, u64)> = per.into_iter().filter(|(_, b)| *b != 0).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let tie = limit > 0 && all.len() > limit && all[limit - 1].1 == all[limit].1;
    let keep: BTreeSet<String> = all.into_iter().take(limit).map(|(id, _)| id).collect();
    let rows = rows
        .into_iter()
        .filter(|r| keep.contains(&r.key.subscriber))
        .collect();
    (rows, tie)
}

/// Every window, list and limit: the store's top rows are the brute-force ranking's.
/// Returns how many cuts fell inside a tie.
fn same_as_brute_force(h: &History, windows: &[(i64, i64)], what: &str) -> usize {
    let mut ties = 0;
    let lists: [(Which<'_>, &[&str]); 8] = [
        (Which::Subscribers, &CLASS_NAMES),
        (Which::Subscribers, &["p2p"]),
        (Which::Subscribers, &["web"]),
        (Which::Subscribers, &["other"]),
        (Which::Subscribers, &["video"]),
        (Which::SubscribersLabels, &["bittorrent"]),
        (Which::SubscribersLabels, &["unknown"]),
        (Which::SubscribersLabels, &["tls"]),
    ];
    for &(from, to) in windows {
        for (which, names) in lists {
            let rows = h.traffic_from_minutes(from, to, which).expect("rows");
            for limit in [1, 2, 3, 5, 8, 13, 31, 1000] {
                let (want, tie) = brute_force(rows.clone(), names, limit);
                ties += usize::from(tie);
                let got = h.top_traffic(from, to, which, names, limit).expect("top");
                assert_eq!(
                    got, want,
                    "{what}: [{from}, {to}) {which:?} {names:?} limit {limit}"
                );
            }
        }
    }
    ties
}

#[test]
fn the_stores_top_is_the_brute_force_ranking_of_the_rows() {
    let dir = Dir::new("top");
    let h = History::open(&dir.db(), "i", Retention::default()).expect("open");
    // 30 subscribers whose ids sort in another order than their keys (`sub-10` before
    // `sub-2`), many with equal bytes (`i % 4`, `i % 3`), some with none of a class or
    // label, `unknown` going up and down; a readings each minute for 7 minutes, the last
    // two not written, and `zed` only in them.
    for m in 1..=7u64 {
        let mut subs: Vec<(String, u32, SubUsage)> = (0..30u32)
            .map(|i| {
                let id = format!("sub-{}", (i * 7) % 30);
                let n = u64::from(i);
                let unknown = if m % 2 == 1 { 300 * (n % 2) * m } else { 0 };
                (id, i, usage(1000 * m * (n % 4), 500 * m * (n % 3), unknown))
            })
            .collect();
        if m >= 6 {
            subs.push(("zed".to_string(), 30, usage(2000 * (m - 5), 1000, 0)));
        }
        h.record(at(T0 + (m as i64) * 60 + 17), &labels(m * 1000, m), &subs);
        if m <= 5 {
            h.flush().expect("flush");
        }
    }
    let windows = [
        (T0, T0 + 8 * 60),
        (T0 + 60, T0 + 4 * 60),
        (T0 + 90, T0 + 6 * 60 + 1),
        (T0 + 6 * 60, T0 + 8 * 60),
        (T0 + 7 * 60, T0 + 7 * 60 + 59),
        (T0 + 9 * 60, T0 + 10 * 60),
        (i64::MIN, i64::MAX),
    ];
    // The answer does come from the running totals, and holds rows still in memory.
    assert!(
        h.window(T0, T0 + 8 * 60, Which::Subscribers)
            .expect("window")
            .is_some()
    );
    assert!(
        h.top_traffic(T0, T0 + 8 * 60, Which::Subscribers, &CLASS_NAMES, 1000)
            .expect("top")
            .iter()
            .any(|r| r.key.subscriber == "zed")
    );
    let ties = same_as_brute_force(&h, &windows, "written and in memory");
    assert!(ties > 10, "the cuts fell inside ties only {ties} times");
    h.flush().expect("flush");
    same_as_brute_force(&h, &windows, "written");
    // Without usable running totals, the rows are ranked whole, to the same answer.
    h.reader()
        .execute("DELETE FROM meta WHERE key = 'cumulative'", [])
        .expect("forget the running totals");
    assert!(
        h.window(T0, T0 + 8 * 60, Which::Subscribers)
            .expect("window")
            .is_none()
    );
    same_as_brute_force(&h, &windows, "without running totals");
}

#[test]
fn names_only_in_memory_count_as_the_rows_do() {
    let dir = Dir::new("top-mem-names");
    let h = History::open(&dir.db(), "i", Retention::default()).expect("open");
    // 12 subscribers written for 3 minutes; then 2 minutes in memory where some of them
    // have HLS (class `video`, a name no written row has) and `unknown` goes below zero
    // against what is written, and `new` appears.
    for m in 1..=5u64 {
        let subs: Vec<(String, u32, SubUsage)> = (0..12u32)
            .map(|i| {
                let n = u64::from(i);
                let mut u = usage(100 * m * (n % 3), 70 * (n % 5), 40 * m * (n % 2));
                if m >= 4 && n % 4 != 0 {
                    u.labels[Label::Hls.id() as usize][1] = Usage {
                        packets: m,
                        bytes: 90 * m * (n % 4),
                    };
                }
                if m == 5 {
                    u.labels[Label::Unknown.id() as usize][0] = Usage::default();
                }
                (format!("s{}", (i * 5) % 12), i, u)
            })
            .chain((m >= 4).then(|| ("new".to_string(), 12, usage(0, 150 * m, 0))))
            .collect();
        h.record(at(T0 + (m as i64) * 60 + 5), &labels(m * 100, m), &subs);
        if m <= 3 {
            h.flush().expect("flush");
        }
    }
    let lists: [(Which<'_>, &[&str]); 5] = [
        (Which::Subscribers, &["video"]),
        (Which::Subscribers, &CLASS_NAMES),
        (Which::Subscribers, &["other"]),
        (Which::SubscribersLabels, &["hls"]),
        (Which::SubscribersLabels, &["unknown", "hls"]),
    ];
    let windows = [
        (T0, T0 + 6 * 60),
        (T0 + 2 * 60, T0 + 5 * 60),
        (T0 + 4 * 60, T0 + 6 * 60),
    ];
    let mut video = 0;
    for (from, to) in windows {
        for (which, names) in lists {
            let rows = h.traffic_from_minutes(from, to, which).expect("rows");
            for limit in [1, 2, 4, 7, 100] {
                let (want, _) = brute_force(rows.clone(), names, limit);
                let got = h.top_traffic(from, to, which, names, limit).expect("top");
                assert_eq!(
                    got, want,
                    "[{from}, {to}) {which:?} {names:?} limit {limit}"
                );
                video += got.iter().filter(|r| r.key.name == "video").count();
            }
        }
    }
    assert!(video > 0, "no video row in the answers");
}
