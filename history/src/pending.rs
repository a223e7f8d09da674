//! The differences not yet written, by minute, then subscriber id, then row: a reading of
//! a subscriber finds its rows of the minute with one hash lookup of its id (borrowed, no
//! copy of it), and a row that is there already is found by its name's address and added
//! to without an allocation. Read in the order of (minute, [`Key`]), as the queries, the
//! top list and the flush's running totals need them: the ids are also kept ordered.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use super::{Key, Values};

/// What a flush is writing: its differences and the number its transaction writes to
/// `meta` (key `flushes`), by which a query's snapshot tells whether it holds them.
#[derive(Default)]
pub(super) struct Flushing {
    pub(super) number: u64,
    pub(super) rows: Pending,
}

/// One row: its key, its values, and the address and length of the `&'static str` its
/// name was given as (zero if none), by which recording finds it without comparing names.
struct Row {
    tag: (usize, usize),
    key: Key,
    values: Values,
}

/// One subscriber's rows of a minute, in the order of their keys (name, direction).
type Rows = Vec<Row>;

/// One minute's rows: each subscriber's by an index into `rows`, found by id through
/// `find` and read in the ids' order through `order`.
#[derive(Default)]
struct Minute {
    find: HashMap<Arc<str>, u32>,
    order: BTreeMap<Arc<str>, u32>,
    rows: Vec<Rows>,
}

impl Minute {
    /// The rows of `subscriber`, added (none) if new.
    fn of(&mut self, subscriber: &str) -> &mut Rows {
        let i = match self.find.get(subscriber) {
            Some(i) => *i as usize,
            None => {
                let i = self.rows.len();
                let id: Arc<str> = Arc::from(subscriber);
                self.find.insert(id.clone(), i as u32);
                self.order.insert(id, i as u32);
                self.rows.push(Rows::new());
                i
            }
        };
        &mut self.rows[i]
    }
}

/// Differences not yet written, by (minute start, key).
#[derive(Default)]
pub(super) struct Pending {
    minutes: BTreeMap<i64, Minute>,
}

impl Pending {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Every row in the order of (minute, key).
    pub(super) fn iter(&self) -> impl Iterator<Item = (i64, &Key, &Values)> + '_ {
        self.minutes.iter().flat_map(|(t, m)| {
            m.order.values().flat_map(move |i| {
                m.rows[*i as usize]
                    .iter()
                    .map(move |r| (*t, &r.key, &r.values))
            })
        })
    }

    /// The start of the oldest minute with a row.
    pub(super) fn first_minute(&self) -> Option<i64> {
        self.minutes.keys().next().copied()
    }

    /// Adds `rows` (name, direction, difference) to the rows of `subscriber` in `minute`;
    /// nothing when `rows` is empty.
    pub(super) fn add(
        &mut self,
        minute: i64,
        subscriber: &str,
        rows: impl IntoIterator<Item = (&'static str, u8, Values)>,
    ) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        let mine = self.minutes.entry(minute).or_default().of(subscriber);
        for (name, dir, v) in rows {
            let tag = (name.as_ptr() as usize, name.len());
            match mine.iter_mut().find(|r| r.tag == tag && r.key.dir == dir) {
                Some(r) => r.values.add(&v),
                None => add_row(mine, subscriber, name, dir, &v).tag = tag,
            }
        }
    }

    /// Adds every row of `other` to this one's.
    pub(super) fn merge(&mut self, other: Pending) {
        for (t, m) in other.minutes {
            let to = self.minutes.entry(t).or_default();
            for (id, i) in m.order {
                let mine = to.of(&id);
                for r in &m.rows[i as usize] {
                    add_row(mine, &id, &r.key.name, r.key.dir, &r.values);
                }
            }
        }
    }
}

/// Adds `v` to the row (`name`, `dir`) of `rows`, made (zero, untagged) if missing.
fn add_row<'r>(
    rows: &'r mut Rows,
    subscriber: &str,
    name: &str,
    dir: u8,
    v: &Values,
) -> &'r mut Row {
    let i = match rows.binary_search_by(|r| (r.key.name.as_str(), r.key.dir).cmp(&(name, dir))) {
        Ok(i) => i,
        Err(i) => {
            let key = Key {
                subscriber: subscriber.to_string(),
                name: name.to_string(),
                dir,
            };
            let row = Row {
                tag: (0, 0),
                key,
                values: Values::default(),
            };
            rows.insert(i, row);
            i
        }
    };
    rows[i].values.add(v);
    &mut rows[i]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Rows added in any order, some through `merge`, read back as one ordered map of
    /// (minute, key) would hold them: the order the queries, the top list and the flush
    /// rely on, and the same sums.
    #[test]
    fn pending_rows_read_in_the_order_and_with_the_sums_of_an_ordered_map() {
        const NAMES: [&str; 5] = ["p2p", "web", "label:tls", "label:bittorrent", "video"];
        let ids = ["b", "a", "sub-10", "sub-9", "*", "sub-1", "ab"];
        let mut expected: BTreeMap<(i64, Key), Values> = BTreeMap::new();
        let (mut pending, mut other) = (Pending::new(), Pending::new());
        let mut seed = 12345u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for i in 0..2000 {
            let minute = 60 * next(3) as i64;
            let id = ids[next(ids.len() as u64) as usize];
            let rows: Vec<(&'static str, u8, Values)> = (0..next(4))
                .map(|_| {
                    let v = Values {
                        bytes: next(1000) as i64 - 100,
                        packets: next(10) as i64,
                        ..Values::default()
                    };
                    (NAMES[next(5) as usize], next(2) as u8, v)
                })
                .collect();
            for (name, dir, v) in &rows {
                let key = Key {
                    subscriber: id.to_string(),
                    name: name.to_string(),
                    dir: *dir,
                };
                expected.entry((minute, key)).or_default().add(v);
            }
            if i % 3 == 0 {
                other.add(minute, id, rows);
            } else {
                pending.add(minute, id, rows);
            }
        }
        pending.merge(other);
        let got: Vec<(i64, Key, Values)> =
            pending.iter().map(|(t, k, v)| (t, k.clone(), *v)).collect();
        let want: Vec<(i64, Key, Values)> =
            expected.into_iter().map(|((t, k), v)| (t, k, v)).collect();
        assert_eq!(got, want);
        assert_eq!(pending.first_minute(), want.first().map(|r| r.0));
        assert!(Pending::new().is_empty() && !pending.is_empty());
    }
}
