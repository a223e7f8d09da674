//! Reading the store: sums over a time range, per step or whole, of the written rows and
//! the pending differences together.

use std::collections::BTreeMap;

use peerwarden_common::Label;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{
    FLUSHES_KEY, History, HistoryError, Key, LABEL_ROW, Pending, Row, Values, Which,
    cumulative::Window, values_at,
};

/// One label's totals `[up, down]` for a subscriber (see [`History::subscriber_labels`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelTotals {
    /// Bytes on the wire.
    pub bytes: [u64; 2],
    /// Packets.
    pub packets: [u64; 2],
}

impl History {
    /// Sums the rows of `which` with a start time in `[from, to)` (seconds since the
    /// epoch; minute rows and hour rows alike, each counted by its start), written or
    /// pending. With `step`, rows are summed per step: bucket `(t - from) / step`.
    pub fn sum(
        &self,
        from: i64,
        to: i64,
        step: Option<i64>,
        which: Which<'_>,
    ) -> Result<Vec<Row>, HistoryError> {
        self.sum_of(from, to, step, which, None)
    }

    /// [`History::sum`] without steps, of bytes and packets only (the other values are
    /// 0): the top list's totals over a window. For every subscriber's rows
    /// ([`Which::Subscribers`], [`Which::SubscribersLabels`]) they are the difference of
    /// the running totals at the window's two ends (two blobs, whatever the window's
    /// length: see `cumulative.rs`), with what is not written yet; a store without
    /// usable running totals is read as [`History::traffic_from_hours`] reads it. Other
    /// rows are read from the minutes and hours, from the index `minute_totals` alone.
    pub fn traffic(&self, from: i64, to: i64, which: Which<'_>) -> Result<Vec<Row>, HistoryError> {
        match self.traffic_cumulative(from, to, which)? {
            Some(rows) => Ok(rows),
            None => self.traffic_from_hours(from, to, which),
        }
    }

    /// [`History::traffic`] without the running totals: the window's whole hours from the
    /// hour totals, the ragged ends from the minutes and hours (the way before them, the
    /// bench's second baseline).
    pub fn traffic_from_hours(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
    ) -> Result<Vec<Row>, HistoryError> {
        let hours = matches!(which, Which::Subscribers | Which::SubscribersLabels);
        self.sum_of(from, to, None, which, Some(hours))
    }

    /// [`History::traffic`] from the minute and hour rows alone, without the hour totals:
    /// the reference its answers must equal (tests, and the bench's baseline).
    pub fn traffic_from_minutes(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
    ) -> Result<Vec<Row>, HistoryError> {
        self.sum_of(from, to, None, which, Some(false))
    }

    /// `traffic`: bytes and packets only (`Some`), and whether whole hours come from the
    /// hour totals (`Some(true)`: without steps only).
    fn sum_of(
        &self,
        from: i64,
        to: i64,
        step: Option<i64>,
        which: Which<'_>,
        traffic: Option<bool>,
    ) -> Result<Vec<Row>, HistoryError> {
        let step = step.filter(|s| *s > 0);
        let traffic_only = traffic.is_some();
        // The whole hours `[h0, h1)` inside the window, read from the hour totals; the
        // minute and hour tables are read over the rest, `[from, h0)` and `[h1, to)` (an
        // hour row starts on the hour, so none is in a ragged end).
        let hour = |t: i64| t.div_euclid(3600).saturating_mul(3600);
        let whole = (traffic == Some(true) && step.is_none())
            .then(|| {
                let h0 = hour(from).saturating_add(3600 * i64::from(from.rem_euclid(3600) != 0));
                (h0, hour(to))
            })
            .filter(|(h0, h1)| h0 < h1);
        let mut ranges = match whole {
            Some((h0, h1)) => vec![
                ("minute", from, h0),
                ("hour", from, h0),
                ("minute", h1, to),
                ("hour", h1, to),
                ("hour_totals", h0, h1),
            ],
            None => vec![("minute", from, to), ("hour", from, to)],
        };
        ranges.retain(|(_, a, b)| a < b);
        let values = |v: &Values| {
            if traffic_only {
                Values {
                    bytes: v.bytes,
                    packets: v.packets,
                    ..Values::default()
                }
            } else {
                *v
            }
        };
        let strip = |k: &Key| match k.name.strip_prefix(LABEL_ROW) {
            Some(label) if which.label_rows() => Key {
                subscriber: k.subscriber.clone(),
                name: label.to_string(),
                dir: k.dir,
            },
            _ => k.clone(),
        };
        let bucket = |t: i64| step.map_or(0, |s| (t - from).div_euclid(s));
        let mut out: BTreeMap<(i64, Key), Values> = BTreeMap::new();
        let mut conn = self.reader();
        let tx = self.snapshot(&mut conn, |pending| {
            for (t, key, v) in pending.iter() {
                if t >= from && t < to && which.matches(&key.subscriber, &key.name) {
                    out.entry((bucket(t), strip(key)))
                        .or_default()
                        .add(&values(v));
                }
            }
        })?;
        for (table, from, to) in ranges {
            let (query, arg) = sum_query(table, which, step.is_some(), traffic_only);
            let mut stmt = tx.prepare_cached(&query).map_err(self.sql("querying"))?;
            let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, Key, Values)> {
                Ok((
                    r.get(1)?,
                    Key {
                        subscriber: r.get(0)?,
                        name: r.get(2)?,
                        dir: r.get(3)?,
                    },
                    values_at(r, 4)?,
                ))
            };
            let rows = match arg {
                Some(id) => stmt.query_map(params![from, to, id], map),
                None => stmt.query_map(params![from, to], map),
            }
            .map_err(self.sql("querying"))?;
            for row in rows {
                let (t, key, v) = row.map_err(self.sql("querying"))?;
                out.entry((bucket(t), strip(&key))).or_default().add(&v);
            }
        }
        drop(tx);
        Ok(out
            .into_iter()
            .map(|((bucket, key), values)| Row {
                bucket,
                key,
                values,
            })
            .collect())
    }

    /// One subscriber's packets and bytes per label over `[from, to)` (its per-label rows,
    /// written or pending). A label whose sum is below zero (bytes counted as `unknown`
    /// before the range moved to the flow's label within it) reads as zero; labels with
    /// nothing are left out.
    pub fn subscriber_labels(
        &self,
        from: i64,
        to: i64,
        id: &str,
    ) -> Result<BTreeMap<Label, LabelTotals>, HistoryError> {
        let mut signed: BTreeMap<Label, [[i64; 2]; 2]> = BTreeMap::new();
        for r in self.sum(from, to, None, Which::SubscriberLabels(id))? {
            let Some(label) = Label::from_name(&r.key.name) else {
                continue;
            };
            let d = usize::from(r.key.dir.min(1));
            let s = signed.entry(label).or_default();
            s[0][d] += r.values.bytes;
            s[1][d] += r.values.packets;
        }
        let pos = |v: i64| v.max(0) as u64;
        Ok(signed
            .into_iter()
            .map(|(l, [b, p])| {
                let t = LabelTotals {
                    bytes: [pos(b[0]), pos(b[1])],
                    packets: [pos(p[0]), pos(p[1])],
                };
                (l, t)
            })
            .filter(|(_, t)| *t != LabelTotals::default())
            .collect())
    }

    /// A read transaction on the reader, and the differences its snapshot does not hold,
    /// shown to `read`: what a flush is writing (unless the snapshot already holds its
    /// commit: the flush's number in `meta`), then what is pending. Both maps are read
    /// under their locks' read side, which a flush takes only to move pending differences
    /// over and to clear them after its commit, and the snapshot is fixed while they are
    /// held. The (possibly long) query then runs on the snapshot without the locks: no
    /// difference is seen twice or missed, and neither side waits for the other's work.
    pub(super) fn snapshot<'c>(
        &self,
        conn: &'c mut Connection,
        mut read: impl FnMut(&Pending),
    ) -> Result<rusqlite::Transaction<'c>, HistoryError> {
        let flushing = self.flushing.read().unwrap_or_else(|p| p.into_inner());
        let pending = self.pending.read().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.sql("starting a read"))?;
        // SQLite fixes a WAL reader's snapshot at its first read, not at BEGIN: here.
        let written: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [FLUSHES_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("starting a read"))?;
        let written: u64 = written.and_then(|v| v.parse().ok()).unwrap_or(0);
        if flushing.number > written {
            read(&flushing.rows);
        }
        read(&pending);
        Ok(tx)
    }

    /// The running totals' difference over `[from, to)` for every subscriber's rows of
    /// `which`, with what is not written yet, the ids of its subscribers known to
    /// [`History::sub_ids`]; `None` when the store has no usable snapshots.
    pub(super) fn window(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
    ) -> Result<Option<Window>, HistoryError> {
        let mut pending: BTreeMap<Key, Values> = BTreeMap::new();
        let w = self.window_with(from, to, which, |rows| {
            for (key, name, v) in rows {
                let k = Key {
                    subscriber: key.subscriber.clone(),
                    name: name.to_string(),
                    dir: key.dir,
                };
                let e = pending.entry(k).or_default();
                e.bytes += v.bytes;
                e.packets += v.packets;
            }
        })?;
        Ok(w.map(|w| Window { pending, ..w }))
    }

    /// The start of the oldest row, written or pending (seconds since the epoch).
    pub fn first(&self) -> Result<Option<i64>, HistoryError> {
        let mut conn = self.reader();
        let mut mem: Option<i64> = None;
        let tx = self.snapshot(&mut conn, |pending| {
            mem = mem.into_iter().chain(pending.first_minute()).min();
        })?;
        let stored: Option<i64> = tx
            .query_row("SELECT MIN(t) FROM (SELECT MIN(t) AS t FROM minute UNION ALL SELECT MIN(t) FROM hour)", [], |r| r.get(0))
            .map_err(self.sql("finding the oldest row"))?;
        drop(tx);
        Ok(stored.into_iter().chain(mem).min())
    }
}

/// The query summing `table`'s rows of `which` over `[?1, ?2)`, per step (`stepped`: the
/// time is a group) or not, all values or bytes and packets only; and the subscriber id
/// it takes as `?3`, if any.
pub(super) fn sum_query<'a>(
    table: &str,
    which: Which<'a>,
    stepped: bool,
    traffic_only: bool,
) -> (String, Option<&'a str>) {
    // Which rows, by subscriber key (where it meets the primary key (sub, t, name, dir):
    // one subscriber's rows are a range of it, not a scan of everyone's), and by name:
    // per-subscriber label rows are named `label:<label>` (LABEL_ROW).
    const ONE: &str = "m.sub = (SELECT sub FROM subscriber WHERE id = ?3)";
    let (sub, name, arg) = match which {
        Which::Labels => ("m.sub = 0", "1", None),
        Which::Subscriber(id) => (ONE, "m.name NOT LIKE 'label:%'", Some(id)),
        Which::Subscribers => ("m.sub <> 0", "m.name NOT LIKE 'label:%'", None),
        Which::SubscriberLabels(id) => (ONE, "m.name LIKE 'label:%'", Some(id)),
        Which::SubscribersLabels => ("m.sub <> 0", "m.name LIKE 'label:%'", None),
    };
    let sums = if traffic_only {
        "SUM(m.bytes), SUM(m.packets), 0, 0, 0, 0"
    } else {
        "SUM(m.bytes), SUM(m.packets), SUM(m.flows), SUM(m.dropped_packets), \
         SUM(m.dropped_bytes), SUM(m.marked_packets)"
    };
    // Without steps the time is not a group (the bare `m.t` is any row's, unused).
    let group = if stepped {
        "m.sub, m.t, m.name, m.dir"
    } else {
        "m.sub, m.name, m.dir"
    };
    let query = format!(
        "SELECT s.id, m.t, m.name, m.dir, {sums}
         FROM {table} m JOIN subscriber s ON s.sub = m.sub
         WHERE {sub} AND m.t >= ?1 AND m.t < ?2 AND {name}
         GROUP BY {group}"
    );
    (query, arg)
}
