//! Tests of `swarms.rs`: the swarm view's minute rows, their sums and their two retentions.

use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "peerwarden-history-swarms-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const T0: i64 = 1_800_000_000; // a minute boundary

fn row(id: u8, local: u64, up: u64, down: u64) -> SwarmBytes {
    SwarmBytes {
        swarm: [id; 20],
        local,
        transit_up: up,
        transit_down: down,
    }
}

#[test]
fn minutes_add_up_per_swarm_and_survive_a_reopen() {
    let dir = Dir::new("sum");
    let db = dir.0.join("history.db");
    let h = History::open(&db, "i", Retention::default()).expect("open");
    let day = 86_400;
    h.record_swarm_minute(T0, &[row(1, 10, 20, 300), row(2, 5, 0, 1)], T0, day)
        .expect("first minute");
    // The same minute again (seconds within it) adds; the next minute is its own row.
    h.record_swarm_minute(T0 + 59, &[row(1, 1, 2, 3)], T0 + 59, day)
        .expect("same minute");
    h.record_swarm_minute(T0 + 60, &[row(1, 100, 0, 0)], T0 + 60, day)
        .expect("next minute");
    assert_eq!(
        h.swarm_totals(T0, T0 + 120).expect("sum"),
        [row(1, 111, 22, 303), row(2, 5, 0, 1)],
        "most transit first"
    );
    assert_eq!(
        h.swarm_totals(T0 + 60, T0 + 120).expect("sum"),
        [row(1, 100, 0, 0)]
    );
    assert!(h.swarm_totals(T0 - 60, T0).expect("sum").is_empty());
    drop(h);
    let h = History::open(&db, "i", Retention::default()).expect("reopen");
    assert_eq!(
        h.swarm_totals(T0, T0 + 60).expect("sum"),
        [row(1, 11, 22, 303), row(2, 5, 0, 1)]
    );
}

#[test]
fn rows_go_after_the_swarm_retention_or_the_minute_retention() {
    let dir = Dir::new("expire");
    let retention = Retention {
        minute_days: 1,
        hour_days: 3,
    };
    let h = History::open(&dir.0.join("history.db"), "i", retention).expect("open");
    h.record_swarm_minute(T0, &[row(1, 1, 1, 1)], T0, 3600)
        .expect("write");
    h.record_swarm_minute(T0 + 1800, &[row(2, 1, 1, 1)], T0 + 1800, 3600)
        .expect("write");
    // An hour later by `swarms.retention: 1h`, the first minute is gone, the second kept.
    h.record_swarm_minute(T0 + 3660, &[], T0 + 3660, 3600)
        .expect("expire");
    let all = h.swarm_totals(0, i64::MAX).expect("sum");
    assert_eq!(all, [row(2, 1, 1, 1)]);
    // A swarm retention longer than the store's minute retention (1 day) yields to it.
    h.record_swarm_minute(
        T0 + 2 * 86_400,
        &[row(3, 1, 0, 0)],
        T0 + 2 * 86_400,
        30 * 86_400,
    )
    .expect("expire");
    let all = h.swarm_totals(0, i64::MAX).expect("sum");
    assert_eq!(all, [row(3, 1, 0, 0)]);
}
