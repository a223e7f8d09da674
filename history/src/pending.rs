//! The differences not yet written, by minute, then subscriber id, then row: a reading of
//! a subscriber finds its rows of the minute with one lookup of its id (borrowed, no copy
//! of it), and a row that is there already is added to without an allocation. Read in
//! the order of (minute, [`Key`]), as the queries, the top list and the flush's running
//! totals need them.

use std::collections::BTreeMap;

use super::{Key, Values};

/// What a flush is writing: its differences and the number its transaction writes to
/// `meta` (key `flushes`), by which a query's snapshot tells whether it holds them.
#[derive(Default)]
pub(super) struct Flushing {
    pub(super) number: u64,
    pub(super) rows: Pending,
}

/// One subscriber's rows of a minute, in the order of their keys (name, direction).
type Rows = Vec<(Key, Values)>;

/// Differences not yet written, by (minute start, key).
#[derive(Default)]
pub(super) struct Pending {
    minutes: BTreeMap<i64, BTreeMap<String, Rows>>,
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
        self.minutes.iter().flat_map(|(t, subs)| {
            subs.values()
                .flat_map(move |rows| rows.iter().map(move |(k, v)| (*t, k, v)))
        })
    }

    /// The start of the oldest minute with a row.
    pub(super) fn first_minute(&self) -> Option<i64> {
        self.minutes.keys().next().copied()
    }

    /// Adds `rows` (name, direction, difference) to the rows of `subscriber` in `minute`;
    /// nothing when `rows` is empty.
    pub(super) fn add<'n>(
        &mut self,
        minute: i64,
        subscriber: &str,
        rows: impl IntoIterator<Item = (&'n str, u8, Values)>,
    ) {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return;
        }
        let subs = self.minutes.entry(minute).or_default();
        let mine = match subs.get_mut(subscriber) {
            Some(mine) => mine,
            None => subs.entry(subscriber.to_string()).or_default(),
        };
        for (name, dir, v) in rows {
            add_row(mine, subscriber, name, dir, &v);
        }
    }

    /// Adds every row of `other` to this one's.
    pub(super) fn merge(&mut self, other: Pending) {
        for (t, subs) in other.minutes {
            let to = self.minutes.entry(t).or_default();
            for (id, rows) in subs {
                let mine = to.entry(id).or_default();
                for (k, v) in rows {
                    add_row(mine, &k.subscriber, &k.name, k.dir, &v);
                }
            }
        }
    }
}

/// Adds `v` to the row (`name`, `dir`) of `rows`, made (zero) if missing.
fn add_row(rows: &mut Rows, subscriber: &str, name: &str, dir: u8, v: &Values) {
    match rows.binary_search_by(|(k, _)| (k.name.as_str(), k.dir).cmp(&(name, dir))) {
        Ok(i) => rows[i].1.add(v),
        Err(i) => {
            let key = Key {
                subscriber: subscriber.to_string(),
                name: name.to_string(),
                dir,
            };
            let mut values = Values::default();
            values.add(v);
            rows.insert(i, (key, values));
        }
    }
}
