//! The history store: the daemon's counters per minute in SQLite, rolled up into hours
//! after `minute_retention_days` and dropped after `hour_retention_days`.
//!
//! Two kinds of rows share one table per resolution, keyed by (subscriber, time, name,
//! direction):
//!
//! - subscriber `*`, name a **label**: the kernel's per-label counters (every packet the
//!   probe saw, whether or not a subscriber owns its address);
//! - subscriber `<id>`, name a **class**: the kernel's per-subscriber counters, which it
//!   keeps per class only (p2p, video, web, other), with policy drops and marks.
//!
//! So a per-subscriber, per-label breakdown is not in the store; flows give that detail
//! while they live in the flow table.
//!
//! Only differences are stored. The writer keeps the last kernel readings it recorded
//! (in memory, and in the `reading` table with every flush, in the same transaction as
//! the differences) and adds `now - last` to the current minute. The kernel's counters
//! belong to one load of the probe: [`History::open`] takes an `instance` naming it, and
//! the readings stored under another instance are not used as a base: a restarted daemon
//! has new maps whose counters start at zero, so its first reading counts whole. Totals
//! before and after a restart add up, and nothing is counted twice.
//!
//! Differences are kept in memory for up to [`FLUSH_EVERY`] and then written in one
//! transaction; queries read the table and the unwritten part together. A clean stop
//! ([`History::flush`]) loses nothing; a crash loses at most the unwritten seconds.
//!
//! ```no_run
//! use std::{path::Path, time::SystemTime};
//! use peerwarden::history::{History, Retention, Which};
//! # fn main() -> Result<(), peerwarden::history::HistoryError> {
//! let h = History::open(Path::new("/tmp/history.db"), "boot-1:pid-42", Retention::default())?;
//! let now = SystemTime::now();
//! let since_the_epoch = h.sum(0, i64::MAX, None, Which::Labels)?;
//! # let _ = (now, since_the_epoch);
//! # Ok(()) }
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use peerwarden_common::{label::ALL_LABELS, policy::SubCounter};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::probe::LabelCounters;

/// The subscriber id of the per-label rows.
pub const ALL: &str = "*";
/// How long differences wait in memory before they are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often old minutes are rolled up into hours.
const ROLLUP_EVERY: Duration = Duration::from_secs(3600);
/// Class names by the kernel's class index (`Class as u32`).
pub const CLASS_NAMES: [&str; 4] = ["p2p", "video", "web", "other"];
/// Schema version in `meta`; a store written by another version is refused, not guessed at.
const SCHEMA_VERSION: &str = "1";

/// The counters of one row. Signed: a label's counter goes down when a flow's earlier
/// bytes move to the label it finally receives (ebpf/src/counters.rs), so a minute of
/// `unknown` can be negative; sums over the whole history are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Values {
    /// Bytes on the wire.
    pub bytes: i64,
    /// Packets.
    pub packets: i64,
    /// Label rows: flows that received the label (`unknown`: flows created).
    pub flows: i64,
    /// Subscriber rows: packets dropped by the policy.
    pub dropped_packets: i64,
    /// Subscriber rows: bytes dropped by the policy.
    pub dropped_bytes: i64,
    /// Subscriber rows: packets whose DSCP the policy rewrote.
    pub marked_packets: i64,
}

impl Values {
    /// Adds `o` field by field.
    pub fn add(&mut self, o: &Values) {
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.flows += o.flows;
        self.dropped_packets += o.dropped_packets;
        self.dropped_bytes += o.dropped_bytes;
        self.marked_packets += o.marked_packets;
    }

    fn is_zero(&self) -> bool {
        *self == Values::default()
    }

    /// One kernel subscriber counter as values.
    pub fn of_sub(c: &SubCounter) -> Values {
        Values {
            bytes: c.bytes as i64,
            packets: c.packets as i64,
            flows: 0,
            dropped_packets: c.dropped_packets as i64,
            dropped_bytes: c.dropped_bytes as i64,
            marked_packets: c.marked_packets as i64,
        }
    }
}

/// A row's identity apart from time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// [`ALL`] or a subscriber id.
    pub subscriber: String,
    /// A label name (subscriber `*`) or a class name.
    pub name: String,
    /// 0 up (from the subscriber), 1 down.
    pub dir: u8,
}

/// Which rows a query sums.
#[derive(Clone, Copy, Debug)]
pub enum Which<'a> {
    /// The per-label rows (subscriber `*`).
    Labels,
    /// One subscriber's per-class rows.
    Subscriber(&'a str),
    /// Every subscriber's per-class rows.
    Subscribers,
}

impl Which<'_> {
    fn matches(&self, subscriber: &str) -> bool {
        match self {
            Which::Labels => subscriber == ALL,
            Which::Subscriber(id) => subscriber == *id,
            Which::Subscribers => subscriber != ALL,
        }
    }
}

/// One summed row of a query: `bucket` is the step index for series, 0 otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The step the row falls in (0 without steps).
    pub bucket: i64,
    /// The row's identity.
    pub key: Key,
    /// Summed values.
    pub values: Values,
}

/// How long rows are kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Days of minutes.
    pub minute_days: u32,
    /// Days of hours.
    pub hour_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            minute_days: 7,
            hour_days: 90,
        }
    }
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The store's directory could not be made.
    #[error("creating the directory of the history store {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("history store {path}: {op}: {source}")]
    Sql {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by another schema version.
    #[error("history store {path}: schema version {found}, this daemon writes {SCHEMA_VERSION}")]
    Schema { path: PathBuf, found: String },
}

/// The writer's side: the connection it writes with and the last readings.
struct Writer {
    conn: Connection,
    /// The last reading of every row, cumulative for this instance of the counters.
    last: HashMap<Key, Values>,
    /// The same for subscriber rows, per id, class and direction: looked up by `&str`
    /// every second for every subscriber, without building a key.
    last_subs: HashMap<String, [[Values; 2]; 4]>,
    /// Keys whose reading changed since the last flush.
    dirty: Vec<Key>,
    /// Subscriber ids to their integer keys in the store.
    ids: HashMap<String, i64>,
    last_flush: Instant,
    last_rollup: Option<Instant>,
}

/// Differences not yet written, by (minute start, key).
type Pending = BTreeMap<(i64, Key), Values>;

/// The store. Shared between the counter reader (writes) and the API (reads).
pub struct History {
    path: PathBuf,
    retention: Retention,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
    pending: RwLock<Pending>,
    /// Flushes written.
    pub flushes: AtomicU64,
    /// Flushes that failed (their differences stay in memory for the next try).
    pub flush_failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A name for this load of the kernel counters: the boot, this process and when it
/// started. The daemon loads new maps at every start (they are not pinned), so readings
/// recorded under another name are never the base for its counters.
pub fn instance_name() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}/{}/{nanos}", boot.trim(), std::process::id())
}

/// Seconds since the epoch (negative before it, for completeness).
pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// The start of the minute holding `secs`.
pub fn minute_of(secs: i64) -> i64 {
    secs.div_euclid(60) * 60
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriber (sub INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
INSERT OR IGNORE INTO subscriber (sub, id) VALUES (0, '*');
CREATE TABLE IF NOT EXISTS minute (
    sub INTEGER NOT NULL, t INTEGER NOT NULL, name TEXT NOT NULL, dir INTEGER NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    dropped_packets INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL, marked_packets INTEGER NOT NULL,
    PRIMARY KEY (sub, t, name, dir)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS minute_by_time ON minute (t);
CREATE TABLE IF NOT EXISTS hour (
    sub INTEGER NOT NULL, t INTEGER NOT NULL, name TEXT NOT NULL, dir INTEGER NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    dropped_packets INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL, marked_packets INTEGER NOT NULL,
    PRIMARY KEY (sub, t, name, dir)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hour_by_time ON hour (t);
CREATE TABLE IF NOT EXISTS reading (
    sub INTEGER NOT NULL, name TEXT NOT NULL, dir INTEGER NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    dropped_packets INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL, marked_packets INTEGER NOT NULL,
    PRIMARY KEY (sub, name, dir)) WITHOUT ROWID;
";

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
    /// Opens (or creates) the store at `path` for the counters of `instance`: the stored
    /// readings are the base for differences only if they were recorded for the same
    /// instance; otherwise the counters are new and start from zero.
    pub fn open(
        path: &Path,
        instance: &str,
        retention: Retention,
    ) -> Result<History, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sql = |op: &'static str| {
            move |source| HistoryError::Sql {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let conn = Connection::open(path).map_err(sql("opening"))?;
        // WAL: the API reads while the reader writes. NORMAL: a power cut may lose the
        // last flush, never corrupt the file.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("setting WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql("setting the busy timeout"))?;
        conn.execute_batch(SCHEMA)
            .map_err(sql("creating the schema"))?;
        let meta = |key: &str| -> Result<Option<String>, rusqlite::Error> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        };
        match meta("schema").map_err(sql("reading the schema version"))? {
            Some(v) if v != SCHEMA_VERSION => {
                return Err(HistoryError::Schema {
                    path: path.to_path_buf(),
                    found: v,
                });
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(sql("writing the schema version"))?;
            }
        }
        let mut ids = HashMap::new();
        {
            let mut stmt = conn
                .prepare("SELECT sub, id FROM subscriber")
                .map_err(sql("reading subscribers"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(sql("reading subscribers"))?;
            for row in rows {
                let (sub, id) = row.map_err(sql("reading subscribers"))?;
                ids.insert(id, sub);
            }
        }
        let mut last = HashMap::new();
        let mut last_subs: HashMap<String, [[Values; 2]; 4]> = HashMap::new();
        let same_instance = meta("instance")
            .map_err(sql("reading the instance"))?
            .as_deref()
            == Some(instance);
        if same_instance {
            let mut stmt = conn
                .prepare(
                    "SELECT s.id, r.name, r.dir, r.bytes, r.packets, r.flows, r.dropped_packets, r.dropped_bytes, r.marked_packets
                     FROM reading r JOIN subscriber s ON s.sub = r.sub",
                )
                .map_err(sql("reading the last readings"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        Key {
                            subscriber: r.get(0)?,
                            name: r.get(1)?,
                            dir: r.get(2)?,
                        },
                        values_at(r, 3)?,
                    ))
                })
                .map_err(sql("reading the last readings"))?;
            for row in rows {
                let (k, v) = row.map_err(sql("reading the last readings"))?;
                if k.subscriber == ALL {
                    last.insert(k, v);
                } else if let Some(c) = CLASS_NAMES.iter().position(|n| *n == k.name) {
                    last_subs
                        .entry(k.subscriber)
                        .or_insert_with(Default::default)[c][usize::from(k.dir.min(1))] = v;
                }
            }
        } else {
            // New counters: the old readings are no base for them.
            conn.execute_batch("DELETE FROM reading")
                .map_err(sql("clearing old readings"))?;
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('instance', ?1)",
                [instance],
            )
            .map_err(sql("writing the instance"))?;
        }
        let reader = Connection::open(path).map_err(sql("opening a reader"))?;
        reader
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql("setting the busy timeout"))?;
        let h = History {
            path: path.to_path_buf(),
            retention,
            writer: Mutex::new(Writer {
                conn,
                last,
                last_subs,
                dirty: Vec::new(),
                ids,
                last_flush: Instant::now(),
                last_rollup: None,
            }),
            reader: Mutex::new(reader),
            pending: RwLock::new(Pending::new()),
            flushes: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
        };
        h.rollup(unix(SystemTime::now()))?;
        Ok(h)
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> HistoryError + '_ {
        move |source| HistoryError::Sql {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Records one reading taken at `at`: the kernel's per-label counters and, per
    /// subscriber, its per-class counters accumulated over this instance (see
    /// `subscribers.rs`). Writes when [`FLUSH_EVERY`] has passed since the last write.
    pub fn record(
        &self,
        at: SystemTime,
        labels: &LabelCounters,
        subscribers: &[(String, [[SubCounter; 2]; 4])],
    ) {
        self.record_labels(at, labels);
        self.record_subscribers(at, subscribers);
    }

    /// Records the kernel's per-label counters read at `at`.
    pub fn record_labels(&self, at: SystemTime, labels: &LabelCounters) {
        let minute = minute_of(unix(at));
        let mut w = lock(&self.writer);
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
                let delta = difference(&key, &before.unwrap_or_default(), &now);
                if !delta.is_zero() {
                    pending
                        .entry((minute, key.clone()))
                        .or_default()
                        .add(&delta);
                }
                w.last.insert(key.clone(), now);
                w.dirty.push(key);
            }
        }
        drop(pending);
        self.flush_if_due(&mut w);
    }

    /// Records per-subscriber counters read at `at`: per id, its per-class counters
    /// accumulated over this instance (see `subscribers.rs`).
    pub fn record_subscribers(
        &self,
        at: SystemTime,
        subscribers: &[(String, [[SubCounter; 2]; 4])],
    ) {
        let minute = minute_of(unix(at));
        let mut w = lock(&self.writer);
        let mut pending = self.pending.write().unwrap_or_else(|p| p.into_inner());
        let Writer {
            last_subs, dirty, ..
        } = &mut *w;
        for (id, classes) in subscribers {
            let known = last_subs.contains_key(id.as_str());
            let before = last_subs.get(id.as_str()).copied().unwrap_or_default();
            let mut after = before;
            for (c, dirs) in classes.iter().enumerate() {
                for (d, counter) in dirs.iter().enumerate() {
                    let now = Values::of_sub(counter);
                    if known && before[c][d] == now {
                        continue;
                    }
                    let key = Key {
                        subscriber: id.clone(),
                        name: CLASS_NAMES[c].into(),
                        dir: d as u8,
                    };
                    let delta = difference(&key, &before[c][d], &now);
                    if !delta.is_zero() {
                        pending
                            .entry((minute, key.clone()))
                            .or_default()
                            .add(&delta);
                    }
                    after[c][d] = now;
                    dirty.push(key);
                }
            }
            if !known || after != before {
                last_subs.insert(id.clone(), after);
            }
        }
        drop(pending);
        self.flush_if_due(&mut w);
    }

    fn flush_if_due(&self, w: &mut Writer) {
        if w.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush_locked(w);
        }
    }

    /// Writes what is pending now (at shutdown, or in tests).
    pub fn flush(&self) -> Result<(), HistoryError> {
        let mut w = lock(&self.writer);
        self.write(&mut w)
    }

    fn flush_locked(&self, w: &mut Writer) {
        if let Err(e) = self.write(w) {
            self.flush_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "writing the history; the differences stay in memory for the next try");
        }
        w.last_flush = Instant::now();
        if w.last_rollup.is_none_or(|t| t.elapsed() >= ROLLUP_EVERY)
            && let Err(e) = self.rollup_locked(w, unix(SystemTime::now()))
        {
            tracing::warn!(error = %e, "rolling up old history");
        }
    }

    /// One transaction: the pending differences added to their minutes, and the readings
    /// they bring the store up to. The pending map is cleared only once it commits.
    fn write(&self, w: &mut Writer) -> Result<(), HistoryError> {
        let mut pending = self.pending.write().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() && w.dirty.is_empty() {
            return Ok(());
        }
        let Writer {
            conn,
            last,
            last_subs,
            dirty,
            ids,
            ..
        } = w;
        let tx = conn.transaction().map_err(self.sql("starting a write"))?;
        {
            let mut new_id = tx
                .prepare_cached("INSERT INTO subscriber (id) VALUES (?1)")
                .map_err(self.sql("adding a subscriber"))?;
            let mut sub_of = |id: &str| -> Result<i64, HistoryError> {
                if let Some(s) = ids.get(id) {
                    return Ok(*s);
                }
                new_id
                    .execute([id])
                    .map_err(self.sql("adding a subscriber"))?;
                let s = tx.last_insert_rowid();
                ids.insert(id.to_string(), s);
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
            for ((t, key), v) in pending.iter() {
                let sub = sub_of(&key.subscriber)?;
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
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO reading (sub, name, dir, bytes, packets, flows, dropped_packets, dropped_bytes, marked_packets)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(self.sql("saving a reading"))?;
            dirty.sort();
            dirty.dedup();
            for key in dirty.iter() {
                let v = if key.subscriber == ALL {
                    last.get(key).copied()
                } else {
                    let c = CLASS_NAMES.iter().position(|n| *n == key.name);
                    c.and_then(|c| {
                        last_subs
                            .get(key.subscriber.as_str())
                            .map(|s| s[c][usize::from(key.dir.min(1))])
                    })
                };
                let Some(v) = v else { continue };
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
        if let Err(source) = tx.commit() {
            // The transaction rolled back: subscriber ids it added are not in the file.
            ids.clear();
            return Err(HistoryError::Sql {
                path: self.path.clone(),
                op: "committing a write",
                source,
            });
        }
        pending.clear();
        dirty.clear();
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
        tx.execute(UPSERT_ROLLUP, [minute_cut])
            .map_err(self.sql("rolling minutes into hours"))?;
        tx.execute("DELETE FROM minute WHERE t < ?1", [minute_cut])
            .map_err(self.sql("deleting rolled-up minutes"))?;
        tx.execute("DELETE FROM hour WHERE t < ?1", [hour_cut])
            .map_err(self.sql("deleting expired hours"))?;
        tx.commit().map_err(self.sql("committing a roll-up"))?;
        w.last_rollup = Some(Instant::now());
        Ok(())
    }

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
        let step = step.filter(|s| *s > 0);
        let bucket = |t: i64| step.map_or(0, |s| (t - from).div_euclid(s));
        let mut out: BTreeMap<(i64, Key), Values> = BTreeMap::new();
        let mut conn = lock(&self.reader);
        let tx = self.snapshot(&mut conn, |pending| {
            for ((t, key), v) in pending.iter() {
                if *t >= from && *t < to && which.matches(&key.subscriber) {
                    out.entry((bucket(*t), key.clone())).or_default().add(v);
                }
            }
        })?;
        let (filter, arg) = match which {
            Which::Labels => ("m.sub = 0", None),
            Which::Subscriber(id) => ("s.id = ?3", Some(id)),
            Which::Subscribers => ("m.sub <> 0", None),
        };
        let query = format!(
            "SELECT s.id, m.t, m.name, m.dir, SUM(m.bytes), SUM(m.packets), SUM(m.flows),
                    SUM(m.dropped_packets), SUM(m.dropped_bytes), SUM(m.marked_packets)
             FROM (SELECT * FROM minute WHERE t >= ?1 AND t < ?2
                   UNION ALL SELECT * FROM hour WHERE t >= ?1 AND t < ?2) m
             JOIN subscriber s ON s.sub = m.sub
             WHERE {filter}
             GROUP BY {group}",
            // Without steps the time is not a group (the bare `m.t` is any row's, unused).
            group = if step.is_some() {
                "m.sub, m.t, m.name, m.dir"
            } else {
                "m.sub, m.name, m.dir"
            },
        );
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
            out.entry((bucket(t), key)).or_default().add(&v);
        }
        drop(stmt);
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

    /// A read transaction on the reader whose snapshot matches the pending differences
    /// `read` is shown: both are taken under the pending lock, which a flush holds until
    /// it commits. The (possibly long) query then runs on the snapshot without the lock,
    /// so it never holds up the recording, and a flush meanwhile is not seen twice.
    fn snapshot<'c>(
        &self,
        conn: &'c mut Connection,
        read: impl FnOnce(&Pending),
    ) -> Result<rusqlite::Transaction<'c>, HistoryError> {
        let pending = self.pending.read().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.sql("starting a read"))?;
        // SQLite fixes a WAL reader's snapshot at its first read, not at BEGIN.
        tx.query_row("SELECT COUNT(*) FROM meta", [], |r| r.get::<_, i64>(0))
            .map_err(self.sql("starting a read"))?;
        read(&pending);
        Ok(tx)
    }

    /// The start of the oldest row, written or pending (seconds since the epoch).
    pub fn first(&self) -> Result<Option<i64>, HistoryError> {
        let mut conn = lock(&self.reader);
        let mut mem = None;
        let tx = self.snapshot(&mut conn, |pending| {
            mem = pending.keys().map(|(t, _)| *t).min()
        })?;
        let stored: Option<i64> = tx
            .query_row("SELECT MIN(t) FROM (SELECT MIN(t) AS t FROM minute UNION ALL SELECT MIN(t) FROM hour)", [], |r| r.get(0))
            .map_err(self.sql("finding the oldest row"))?;
        drop(tx);
        Ok(match (stored, mem) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

/// Reads the six value columns starting at `i`.
fn values_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Values> {
    Ok(Values {
        bytes: r.get(i)?,
        packets: r.get(i + 1)?,
        flows: r.get(i + 2)?,
        dropped_packets: r.get(i + 3)?,
        dropped_bytes: r.get(i + 4)?,
        marked_packets: r.get(i + 5)?,
    })
}

/// `now - before` for one row. Label counters are wrapping sums that may go down (a
/// relabel moves bytes between labels): the signed difference. Subscriber counters only
/// grow within one instance; a reading below the last one is a new start (an id that came
/// back after leaving the policy) and counts whole.
fn difference(key: &Key, before: &Values, now: &Values) -> Values {
    if key.subscriber == ALL {
        return Values {
            bytes: now.bytes.wrapping_sub(before.bytes),
            packets: now.packets.wrapping_sub(before.packets),
            flows: now.flows.wrapping_sub(before.flows),
            ..Values::default()
        };
    }
    let went_down = now.bytes < before.bytes
        || now.packets < before.packets
        || now.dropped_packets < before.dropped_packets
        || now.dropped_bytes < before.dropped_bytes
        || now.marked_packets < before.marked_packets;
    let base = if went_down {
        Values::default()
    } else {
        *before
    };
    Values {
        bytes: now.bytes - base.bytes,
        packets: now.packets - base.packets,
        flows: 0,
        dropped_packets: now.dropped_packets - base.dropped_packets,
        dropped_bytes: now.dropped_bytes - base.dropped_bytes,
        marked_packets: now.marked_packets - base.marked_packets,
    }
}

#[cfg(test)]
mod tests {
    use peerwarden_common::{CounterValue, Label};

    use super::*;

    /// A fresh directory for one test's store, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir()
                .join(format!("peerwarden-history-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            Dir(p)
        }
        fn db(&self) -> PathBuf {
            self.0.join("nested").join("history.db")
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn labels(bt: u64, unknown: u64) -> LabelCounters {
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

    fn sub(p2p_down: u64, dropped: u64) -> [[SubCounter; 2]; 4] {
        let mut c = [[SubCounter::default(); 2]; 4];
        c[0][1] = SubCounter {
            packets: p2p_down / 1000,
            bytes: p2p_down,
            dropped_packets: dropped,
            dropped_bytes: dropped * 1000,
            marked_packets: 0,
        };
        c
    }

    fn at(secs: i64) -> SystemTime {
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

    const T0: i64 = 1_800_000_000;

    #[test]
    fn differences_add_up_over_a_restart_and_nothing_is_counted_twice() {
        let dir = Dir::new("restart");
        {
            let h = History::open(&dir.db(), "run-1", Retention::default()).expect("open");
            h.record(at(T0), &labels(1000, 50), &[("alice".into(), sub(800, 0))]);
            h.record(
                at(T0 + 30),
                &labels(5000, 80),
                &[("alice".into(), sub(4000, 2))],
            );
            // A flow's bytes moved from unknown to bittorrent: unknown goes down.
            h.record(
                at(T0 + 90),
                &labels(9000, 20),
                &[("alice".into(), sub(7000, 3))],
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
                &[("alice".into(), sub(250, 1))],
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
            h.flush().expect("flush");
        }
        {
            // The same instance again (pinned maps would do this): the stored readings are
            // the base, so the same reading adds nothing.
            let h = History::open(&dir.db(), "run-2", Retention::default()).expect("reopen");
            h.record(
                at(T0 + 260),
                &labels(300, 5),
                &[("alice".into(), sub(250, 1))],
            );
            h.record(
                at(T0 + 270),
                &labels(400, 5),
                &[("alice".into(), sub(350, 1))],
            );
            let rows = h.sum(0, i64::MAX, None, Which::Labels).expect("sum");
            assert_eq!(total(&rows, "bittorrent", 1).bytes, 9400);
            let alice = h.sum(0, i64::MAX, None, Which::Subscribers).expect("sum");
            assert_eq!(total(&alice, "p2p", 1).bytes, 7350);
        }
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
                &[("bob".into(), sub(10 * n, 0))],
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
        let conn = lock(&h.reader);
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
        let h =
            std::sync::Arc::new(History::open(&dir.db(), "i", Retention::default()).expect("open"));
        // Cumulative readings whose differences all differ: a difference counted twice or
        // missed gives a total that is no reading at all.
        let readings: Vec<u64> = (1..=300u64).map(|i| 7 * i * (i + 1) / 2).collect();
        let writer = {
            let (h, readings) = (h.clone(), readings.clone());
            std::thread::spawn(move || {
                for (i, r) in readings.iter().enumerate() {
                    h.record(at(T0 + i as i64), &labels(*r, 0), &[]);
                    if i % 3 == 0 {
                        h.flush().expect("flush");
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
        }
        writer.join().expect("writer");
        assert!(seen > 10, "the reader ran alongside ({seen} queries)");
        let rows = h.sum(i64::MIN, i64::MAX, None, Which::Labels).expect("sum");
        assert_eq!(total(&rows, "bittorrent", 1).bytes as u64, readings[299]);
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
    fn label_differences_are_signed_and_subscriber_restarts_count_whole() {
        let k = |s: &str| Key {
            subscriber: s.into(),
            name: "x".into(),
            dir: 0,
        };
        let v = |bytes| Values {
            bytes,
            ..Values::default()
        };
        assert_eq!(difference(&k(ALL), &v(100), &v(40)).bytes, -60);
        assert_eq!(difference(&k("alice"), &v(100), &v(140)).bytes, 40);
        assert_eq!(difference(&k("alice"), &v(100), &v(40)).bytes, 40);
    }
}
