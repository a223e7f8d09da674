//! Recording readings: their differences into the pending minutes, written once a minute
//! has ended (when recording enters the next one, at most every
//! [`FLUSH_EVERY`](super::FLUSH_EVERY)) in one transaction with the readings, and old
//! minutes rolled up into hours.

use std::{
    collections::HashMap,
    sync::{MutexGuard, OnceLock, RwLockWriteGuard, atomic::Ordering},
    time::{Instant, SystemTime},
};

use peerwarden_common::{
    label::{ALL_LABELS, Label},
    policy::{SUB_CLASSES, SUB_LABELS, SubUsage},
    stats::LabelCounters,
};
use rusqlite::params;

use super::{
    ALL, CLASS_NAMES, FLUSH_EVERY, FLUSHES_KEY, History, HistoryError, Key, LABEL_ROW, Pending,
    ROLLUP_EVERY, Values, Writer, cumulative, difference, lock, minute_of, unix, usage_to_bytes,
};

/// Adds a row's values to what a table holds for its key.
const UPSERT_ROLLUP: &str = "
INSERT INTO hour (sub, t, name, dir, bytes, packets, flows, dropped_packets, dropped_bytes, marked_packets)
SELECT sub, (t / 3600) * 3600, name, dir, SUM(bytes), SUM(packets), SUM(flows),
       SUM(dropped_packets), SUM(dropped_bytes), SUM(marked_packets)
FROM minute WHERE t < ?1 GROUP BY sub, (t / 3600) * 3600, name, dir
ON CONFLICT (sub, t, name, dir) DO UPDATE SET
    bytes = bytes + excluded.bytes, packets = packets + excluded.packets, flows = flows + excluded.flows,
    dropped_packets = dropped_packets + excluded.dropped_packets,
    dropped_bytes = dropped_bytes + excluded.dropped_bytes,
    marked_packets = marked_packets + excluded.marked_packets";

impl History {
    /// Records one reading taken at `at`: the kernel's per-label counters and, per
    /// subscriber (id, kernel index), the kernel's counters of its index. Writes what is
    /// pending first when `at` is in another minute than the last reading (see
    /// [`History::flush_if_due`]).
    pub fn record(
        &self,
        at: SystemTime,
        labels: &LabelCounters,
        subscribers: &[(String, u32, SubUsage)],
    ) {
        self.record_labels(at, labels);
        self.record_subscribers(at, subscribers);
    }

    /// Records the kernel's per-label counters read at `at`.
    pub fn record_labels(&self, at: SystemTime, labels: &LabelCounters) {
        let minute = minute_of(unix(at));
        let mut w = lock(&self.writer);
        self.flush_if_due_locked(&mut w, minute);
        let mut pending = self.pending.write().unwrap_or_else(|p| p.into_inner());
        for label in ALL_LABELS {
            let Some(c) = labels.get(label.id() as usize) else {
                continue;
            };
            for (d, c) in c.iter().enumerate() {
                let now = Values {
                    // The kernel sums per-CPU counters with wrapping arithmetic; the
                    // reading is a two's-complement value of the true (non-negative) sum.
                    bytes: c.bytes as i64,
                    packets: c.packets as i64,
                    flows: c.flows as i64,
                    ..Values::default()
                };
                let key = Key {
                    subscriber: ALL.into(),
                    name: label.name().into(),
                    dir: d as u8,
                };
                let before = w.last.get(&key).copied();
                if before == Some(now) {
                    continue;
                }
                let delta = difference(&before.unwrap_or_default(), &now);
                if !delta.is_zero() {
                    pending.add(minute, ALL, [(label.name(), d as u8, delta)]);
                }
                w.last.insert(key.clone(), now);
                w.dirty.push(key);
            }
        }
        drop(pending);
    }

    /// Records per-subscriber counters read at `at`: per subscriber id, the kernel index
    /// it owns and the kernel's (absolute) counters of that index. The difference to the
    /// last reading of the index (none yet in this instance of the counters: zero, where
    /// new counters start) goes to the id that owns it now, as rows per label (named
    /// [`LABEL_ROW`] + label) and per class (the class's labels summed, with the policy's
    /// drops and marks). An index that changed hands between two readings gives the new
    /// owner that second.
    pub fn record_subscribers(&self, at: SystemTime, subscribers: &[(String, u32, SubUsage)]) {
        let owners: Vec<(String, u32)> = subscribers
            .iter()
            .map(|(id, i, _)| (id.clone(), *i))
            .collect();
        let mut next = subscribers.iter().map(|(_, _, u)| *u);
        self.record_subscribers_with(at, &owners, |_| next.next());
    }

    /// [`History::record_subscribers`] with each owner's counters from `read(index)`, asked
    /// once per owner in order (the daemon reads them out of the mapped kernel array, so
    /// no copy of every subscriber's counters is kept); `None` skips the owner.
    pub fn record_subscribers_with(
        &self,
        at: SystemTime,
        owners: &[(String, u32)],
        mut read: impl FnMut(u32) -> Option<SubUsage>,
    ) {
        let mut rec = self.subscriber_recorder(at);
        for (id, index) in owners {
            if let Some(now) = read(*index) {
                rec.record(id, *index, &now);
            }
        }
    }

    /// [`History::record_subscribers_with`] with each owner's counters copied by
    /// `read(index, into)` into a buffer of the store's (false skips the owner), asked once
    /// per owner in order: the caller can hand the same copy to another reader (the
    /// daemon's rates) before the store takes it, one copy out of the mapped array for both.
    pub fn record_subscribers_into(
        &self,
        at: SystemTime,
        owners: &[(String, u32)],
        mut read: impl FnMut(u32, &mut SubUsage) -> bool,
    ) {
        let mut rec = self.subscriber_recorder(at);
        let mut buf = SubUsage::default();
        for (id, index) in owners {
            if read(*index, &mut buf) {
                rec.record(id, *index, &buf);
            }
        }
    }

    /// What records subscribers' readings taken at `at` (the locks held until it is
    /// dropped), after the periodic write if it is due.
    fn subscriber_recorder(&self, at: SystemTime) -> SubRecorder<'_> {
        let minute = minute_of(unix(at));
        let mut w = lock(&self.writer);
        self.flush_if_due_locked(&mut w, minute);
        let pending = self.pending.write().unwrap_or_else(|p| p.into_inner());
        SubRecorder {
            minute,
            w,
            pending,
            rows: Vec::new(),
            zero: SubUsage::default(),
        }
    }

    /// The periodic write, as recording makes it before a reading taken at `at`: when
    /// `at` is in another minute than the last reading recorded, and [`FLUSH_EVERY`] has
    /// passed since the last write, everything pending is written. At that moment what is
    /// pending is the minutes that have ended, and the readings in memory are those at
    /// their end: the current minute's rows are written once, when it has ended, not
    /// again with every write while it runs; and the readings stored stay the base of
    /// exactly the rows stored (a daemon killed mid-minute leaves its last minute's growth
    /// in the kernel's counters, and the next run counts it). A minute that ends within
    /// [`FLUSH_EVERY`] of a write ([`History::flush`]) is written with the next one.
    pub fn flush_if_due(&self, at: SystemTime) {
        let mut w = lock(&self.writer);
        self.flush_if_due_locked(&mut w, minute_of(unix(at)));
    }

    fn flush_if_due_locked(&self, w: &mut Writer, minute: i64) {
        let ended = w.minute.is_some_and(|m| m != minute);
        w.minute = Some(minute);
        if ended && w.last_flush.is_none_or(|t| t.elapsed() >= FLUSH_EVERY) {
            self.flush_locked(w);
        }
    }

    /// Makes the next periodic write due at once, as if [`FLUSH_EVERY`] had passed (for
    /// benchmarks and tests that run faster than the clock).
    #[doc(hidden)]
    pub fn make_flush_due(&self) {
        lock(&self.writer).last_flush = None;
    }

    /// Writes what is pending now, the current minute's rows included (at shutdown, or in
    /// tests); the next periodic write is due no sooner than [`FLUSH_EVERY`] after it.
    pub fn flush(&self) -> Result<(), HistoryError> {
        let mut w = lock(&self.writer);
        self.write(&mut w)?;
        w.last_flush = Some(Instant::now());
        Ok(())
    }

    fn flush_locked(&self, w: &mut Writer) {
        if let Err(e) = self.write(w) {
            self.flush_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "writing the history; the differences stay in memory for the next try");
        }
        w.last_flush = Some(Instant::now());
        if w.last_rollup.is_none_or(|t| t.elapsed() >= ROLLUP_EVERY)
            && let Err(e) = self.rollup_locked(w, unix(SystemTime::now()))
        {
            tracing::warn!(error = %e, "rolling up old history");
        }
    }

    /// One transaction: the pending differences added to their minutes, and the readings
    /// they bring the store up to. The differences move to `flushing` first (a swap under
    /// both locks), are written from there with no lock held against queries or
    /// recording, and leave it once the transaction has committed, with its number in
    /// `meta` so that a query can tell whether its snapshot holds them; a failed write
    /// keeps them there, and the next one adds what became pending meanwhile.
    fn write(&self, w: &mut Writer) -> Result<(), HistoryError> {
        let number = w.committed + 1;
        {
            let mut flushing = self.flushing.write().unwrap_or_else(|p| p.into_inner());
            let mut pending = self.pending.write().unwrap_or_else(|p| p.into_inner());
            flushing.number = number;
            if flushing.rows.is_empty() {
                std::mem::swap(&mut flushing.rows, &mut *pending);
            } else {
                flushing.rows.merge(std::mem::take(&mut *pending));
            }
        }
        let flushing = self.flushing.read().unwrap_or_else(|p| p.into_inner());
        if flushing.rows.is_empty() && w.dirty.is_empty() && w.dirty_usage.is_empty() {
            return Ok(());
        }
        let Writer {
            conn,
            last,
            last_usage,
            dirty,
            dirty_usage,
            ids,
            committed,
            cum,
            ..
        } = w;
        let tx = conn.transaction().map_err(self.sql("starting a write"))?;
        cumulative::begin(&tx, cum).map_err(self.sql("reading the running totals"))?;
        // Subscriber ids this transaction adds: known to `ids` only once it commits.
        let mut added: HashMap<String, i64> = HashMap::new();
        {
            let mut new_id = tx
                .prepare_cached("INSERT INTO subscriber (id) VALUES (?1)")
                .map_err(self.sql("adding a subscriber"))?;
            let mut sub_of = |id: &str| -> Result<i64, HistoryError> {
                if let Some(s) = ids.get(id).or_else(|| added.get(id)) {
                    return Ok(*s);
                }
                new_id
                    .execute([id])
                    .map_err(self.sql("adding a subscriber"))?;
                let s = tx.last_insert_rowid();
                added.insert(id.to_string(), s);
                Ok(s)
            };
            let mut add = tx
                .prepare_cached(
                    "INSERT INTO minute (sub, t, name, dir, bytes, packets, flows, dropped_packets, dropped_bytes, marked_packets)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (sub, t, name, dir) DO UPDATE SET
                        bytes = bytes + excluded.bytes, packets = packets + excluded.packets, flows = flows + excluded.flows,
                        dropped_packets = dropped_packets + excluded.dropped_packets,
                        dropped_bytes = dropped_bytes + excluded.dropped_bytes,
                        marked_packets = marked_packets + excluded.marked_packets",
                )
                .map_err(self.sql("adding to a minute"))?;
            let mut add_hour = tx
                .prepare_cached(
                    "INSERT INTO hour_totals (t, sub, name, dir, bytes, packets)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (t, sub, name, dir) DO UPDATE SET
                        bytes = bytes + excluded.bytes, packets = packets + excluded.packets",
                )
                .map_err(self.sql("adding to an hour's totals"))?;
            // The subscribers' rows, in time order, for the running totals.
            let mut running: Vec<cumulative::FlushRow<'_>> = Vec::new();
            for (t, key, v) in flushing.rows.iter() {
                let sub = sub_of(&key.subscriber)?;
                if sub != 0 {
                    running.push((t, sub, &key.name, key.dir, v.bytes, v.packets));
                }
                if v.bytes != 0 || v.packets != 0 {
                    add_hour
                        .execute(params![
                            t.div_euclid(3600) * 3600,
                            sub,
                            key.name,
                            key.dir,
                            v.bytes,
                            v.packets
                        ])
                        .map_err(self.sql("adding to an hour's totals"))?;
                }
                add.execute(params![
                    sub,
                    t,
                    key.name,
                    key.dir,
                    v.bytes,
                    v.packets,
                    v.flows,
                    v.dropped_packets,
                    v.dropped_bytes,
                    v.marked_packets
                ])
                .map_err(self.sql("adding to a minute"))?;
            }
            cumulative::record(&tx, cum, &running)
                .map_err(self.sql("adding to the running totals"))?;
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO reading (sub, name, dir, bytes, packets, flows, dropped_packets, dropped_bytes, marked_packets)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(self.sql("saving a reading"))?;
            dirty.sort();
            dirty.dedup();
            for key in dirty.iter() {
                let Some(v) = last.get(key).copied() else {
                    continue;
                };
                let sub = sub_of(&key.subscriber)?;
                put.execute(params![
                    sub,
                    key.name,
                    key.dir,
                    v.bytes,
                    v.packets,
                    v.flows,
                    v.dropped_packets,
                    v.dropped_bytes,
                    v.marked_packets
                ])
                .map_err(self.sql("saving a reading"))?;
            }
        }
        {
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO usage_reading (idx, data) VALUES (?1, ?2)")
                .map_err(self.sql("saving a subscriber reading"))?;
            dirty_usage.sort_unstable();
            dirty_usage.dedup();
            for idx in dirty_usage.iter() {
                if let Some(u) = last_usage.get(*idx) {
                    put.execute(params![idx, usage_to_bytes(u)])
                        .map_err(self.sql("saving a subscriber reading"))?;
                }
            }
        }
        drop(flushing);
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![FLUSHES_KEY, number.to_string()],
        )
        .map_err(self.sql("numbering a write"))?;
        if let Err(source) = tx.commit() {
            return Err(HistoryError::Sql {
                path: self.path.clone(),
                op: "committing a write",
                source,
            });
        }
        *committed = number;
        cumulative::committed(cum);
        {
            let mut names = self.sub_ids.write().unwrap_or_else(|p| p.into_inner());
            for (id, sub) in &added {
                names.insert(*sub, id);
            }
        }
        ids.extend(added);
        #[cfg(test)]
        if let Some(hook) = lock(&self.after_commit).as_mut() {
            hook();
        }
        let mut flushing = self.flushing.write().unwrap_or_else(|p| p.into_inner());
        let written = std::mem::take(&mut flushing.rows);
        drop(flushing);
        // Freed with no lock held: hundreds of thousands of keys take tens of ms.
        drop(written);
        dirty.clear();
        dirty_usage.clear();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rolls minutes older than the minute retention into hours and drops hours older
    /// than the hour retention, as of `now` (seconds since the epoch).
    pub fn rollup(&self, now: i64) -> Result<(), HistoryError> {
        let mut w = lock(&self.writer);
        self.rollup_locked(&mut w, now)
    }

    fn rollup_locked(&self, w: &mut Writer, now: i64) -> Result<(), HistoryError> {
        // Whole hours only, so no hour is split between the two tables.
        let minute_cut =
            (now - i64::from(self.retention.minute_days) * 86_400).div_euclid(3600) * 3600;
        let hour_cut = (now - i64::from(self.retention.hour_days) * 86_400).div_euclid(3600) * 3600;
        // Readers see the rows before or after the move (a snapshot), never half of it.
        let tx = w
            .conn
            .transaction()
            .map_err(self.sql("starting a roll-up"))?;
        // Before the minutes go: it reads which hours they are in.
        cumulative::rollup(&tx, &mut w.cum, minute_cut, hour_cut.min(minute_cut))
            .map_err(self.sql("rolling up the running totals"))?;
        tx.execute(UPSERT_ROLLUP, [minute_cut])
            .map_err(self.sql("rolling minutes into hours"))?;
        tx.execute("DELETE FROM minute WHERE t < ?1", [minute_cut])
            .map_err(self.sql("deleting rolled-up minutes"))?;
        tx.execute("DELETE FROM hour WHERE t < ?1", [hour_cut])
            .map_err(self.sql("deleting expired hours"))?;
        // Hours the store still holds in either table keep their totals.
        tx.execute(
            "DELETE FROM hour_totals WHERE t < ?1",
            [hour_cut.min(minute_cut)],
        )
        .map_err(self.sql("deleting expired hour totals"))?;
        tx.commit().map_err(self.sql("committing a roll-up"))?;
        w.last_rollup = Some(Instant::now());
        Ok(())
    }
}

/// The names of the per-label subscriber rows ([`LABEL_ROW`] + label), by label id.
fn label_rows() -> &'static [String; SUB_LABELS] {
    static NAMES: OnceLock<[String; SUB_LABELS]> = OnceLock::new();
    NAMES.get_or_init(|| {
        std::array::from_fn(|l| format!("{LABEL_ROW}{}", Label::from_id(l as u16).name()))
    })
}

/// Records subscribers' readings of one minute, with the writer and the pending rows
/// locked.
struct SubRecorder<'h> {
    minute: i64,
    w: MutexGuard<'h, Writer>,
    pending: RwLockWriteGuard<'h, Pending>,
    /// A reading's rows (name, direction, difference), kept for the next reading.
    rows: Vec<(&'static str, u8, Values)>,
    /// The base of an index with no reading yet (made once a pass, not once a reading).
    zero: SubUsage,
}

impl SubRecorder<'_> {
    /// Records the reading `now` of kernel index `index`, owned by `id`: its difference
    /// to the last reading of the index as rows of `id` (see
    /// [`History::record_subscribers`]).
    fn record(&mut self, id: &str, index: u32, now: &SubUsage) {
        let Writer {
            last_usage,
            dirty_usage,
            ..
        } = &mut *self.w;
        let before = last_usage.get(index).unwrap_or(&self.zero);
        if before == now {
            return;
        }
        let names = label_rows();
        let rows = &mut self.rows;
        rows.clear();
        let mut classes = [[Values::default(); 2]; SUB_CLASSES];
        for (l, (n, b)) in now.labels.iter().zip(before.labels.iter()).enumerate() {
            for d in 0..2 {
                if n[d].bytes == b[d].bytes && n[d].packets == b[d].packets {
                    continue;
                }
                let v = Values {
                    bytes: n[d].bytes.wrapping_sub(b[d].bytes) as i64,
                    packets: n[d].packets.wrapping_sub(b[d].packets) as i64,
                    ..Values::default()
                };
                let label = Label::from_id(l as u16);
                classes[label.class() as usize % SUB_CLASSES][d].add(&v);
                rows.push((&names[l], d as u8, v));
            }
        }
        for (c, (n, b)) in now.policy.iter().zip(before.policy.iter()).enumerate() {
            for d in 0..2 {
                classes[c][d].add(&Values {
                    dropped_packets: n[d].dropped_packets.wrapping_sub(b[d].dropped_packets) as i64,
                    dropped_bytes: n[d].dropped_bytes.wrapping_sub(b[d].dropped_bytes) as i64,
                    marked_packets: n[d].marked_packets.wrapping_sub(b[d].marked_packets) as i64,
                    ..Values::default()
                });
            }
        }
        for (c, dirs) in classes.iter().enumerate() {
            for (d, v) in dirs.iter().enumerate() {
                if !v.is_zero() {
                    rows.push((CLASS_NAMES[c], d as u8, *v));
                }
            }
        }
        self.pending.add(self.minute, id, rows.drain(..));
        last_usage.set(index, *now);
        dirty_usage.push(index);
    }
}
