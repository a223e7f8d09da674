//! The history store: the daemon's counters per minute in SQLite, rolled up into hours
//! after `minute_retention_days` and dropped after `hour_retention_days`.
//!
//! Three kinds of rows share one table per resolution, keyed by (subscriber, time, name,
//! direction):
//!
//! - subscriber `*`, name a **label**: the kernel's per-label counters (every packet the
//!   probe saw, whether or not a subscriber owns its address);
//! - subscriber `<id>`, name [`LABEL_ROW`]`<label>` (`label:bittorrent`): the kernel's
//!   per-(subscriber, label, direction) packets and bytes;
//! - subscriber `<id>`, name a **class**: the same summed over the class's labels, with
//!   the policy's drops and marks (the kernel counts those per class).
//!
//! Only differences are stored. The writer keeps the last kernel readings it recorded
//! (in memory, and in the `reading` and `usage_reading` tables with every flush, in the
//! same transaction as the differences) and adds `now - last` to the current minute. Per
//! subscriber, the reading is the kernel's absolute counters of a subscriber *index*
//! (`usage_reading`, one row per index), and its difference goes to the id that owns the
//! index at that reading. The kernel's counters belong to one instance of the probe's
//! maps: [`History::open`] takes an `instance` naming it, and the readings stored under
//! another instance are not used as a base. A daemon that loads new maps (counters at
//! zero) counts its first reading whole; one that adopts the pinned maps of the same
//! instance continues from the stored readings. Totals before and after a restart add up,
//! and nothing is counted twice.
//!
//! Label counters (the totals', and a subscriber's `unknown`) go down when a flow's
//! earlier packets move to the label it finally receives: differences are signed, and a
//! minute of `unknown` can be negative; sums over the whole history are exact.
//!
//! Differences stay in memory until their minute has ended, then go in one transaction
//! with the readings at the minute's end (see [`History::flush_if_due`]); queries read the
//! table and the unwritten part together. A clean stop ([`History::flush`]) loses nothing;
//! a crash with pinned maps neither (the next run counts the unwritten part from the
//! stored readings); a power loss the unwritten part, up to a minute and some seconds.
//!
//! ```no_run
//! use std::{path::Path, time::SystemTime};
//! use peerwarden_history::{History, Retention, Which};
//! # fn main() -> Result<(), peerwarden_history::HistoryError> {
//! let h = History::open(Path::new("/tmp/history.db"), "boot-1:pid-42", Retention::default())?;
//! let now = SystemTime::now();
//! let since_the_epoch = h.sum(0, i64::MAX, None, Which::Labels)?;
//! # let _ = (now, since_the_epoch);
//! # Ok(()) }
//! ```

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Mutex, MutexGuard, RwLock, TryLockError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use peerwarden_common::policy::{SUB_CLASSES, SUB_LABELS, SubUsage};
use rusqlite::{Connection, OptionalExtension as _};
// The tests' (`use super::*`).
#[cfg(test)]
use std::collections::BTreeMap;

mod cumulative;
mod pending;
mod query;
mod swarms;
mod top;
mod write;

use pending::{Flushing, Pending};
pub use query::LabelTotals;
pub use swarms::SwarmBytes;

/// The subscriber id of the per-label rows.
pub const ALL: &str = "*";
/// The least time between two periodic writes, which come when recording enters a new
/// minute ([`History::flush_if_due`]).
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often old minutes are rolled up into hours.
const ROLLUP_EVERY: Duration = Duration::from_secs(3600);
/// Class names by the kernel's class index (`Class as u32`).
pub const CLASS_NAMES: [&str; 4] = ["p2p", "video", "web", "other"];
/// The name of a subscriber's per-label row is this prefix and the label's name (a label
/// and a class may share a name: `video`).
pub const LABEL_ROW: &str = "label:";

/// A row's name as in the answer: label rows without their prefix when `labels`.
fn strip_label(name: &str, labels: bool) -> &str {
    match name.strip_prefix(LABEL_ROW) {
        Some(label) if labels => label,
        _ => name,
    }
}
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
}

/// The last kernel reading per subscriber index, dense: the enforcer hands indexes out from
/// 0, so a vector is as small as a map and is compared in index order, at memory speed.
#[derive(Default)]
struct UsageBase(Vec<SubUsage>);

impl UsageBase {
    /// Indexes past this are ignored (a stored row from a damaged file must not make the
    /// daemon allocate without bound); max_subscribers is far below it.
    const MAX: u32 = 1 << 24;

    fn get(&self, index: u32) -> Option<&SubUsage> {
        self.0.get(index as usize)
    }

    fn set(&mut self, index: u32, u: SubUsage) {
        if index >= Self::MAX {
            return;
        }
        let i = index as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, SubUsage::default());
        }
        self.0[i] = u;
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
    /// The per-label rows of all traffic (subscriber `*`).
    Labels,
    /// One subscriber's per-class rows.
    Subscriber(&'a str),
    /// Every subscriber's per-class rows.
    Subscribers,
    /// One subscriber's per-label rows (names without the [`LABEL_ROW`] prefix).
    SubscriberLabels(&'a str),
    /// Every subscriber's per-label rows (names without the prefix).
    SubscribersLabels,
}

impl Which<'_> {
    fn matches(&self, subscriber: &str, name: &str) -> bool {
        let label_row = name.starts_with(LABEL_ROW);
        match self {
            Which::Labels => subscriber == ALL,
            Which::Subscriber(id) => subscriber == *id && !label_row,
            Which::Subscribers => subscriber != ALL && !label_row,
            Which::SubscriberLabels(id) => subscriber == *id && label_row,
            Which::SubscribersLabels => subscriber != ALL && label_row,
        }
    }

    /// Whether the rows are per-subscriber label rows, named with the prefix.
    fn label_rows(&self) -> bool {
        matches!(self, Which::SubscriberLabels(_) | Which::SubscribersLabels)
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
    /// The store's file could not be created or made private.
    #[error("creating the history store {path}: {source}")]
    File {
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
    /// The last reading of the kernel's per-subscriber counters, per subscriber *index*
    /// (absolute values of this instance of the counters).
    last_usage: UsageBase,
    /// Keys whose reading changed since the last flush.
    dirty: Vec<Key>,
    /// Subscriber indexes whose reading changed since the last flush.
    dirty_usage: Vec<u32>,
    /// Subscriber ids to their integer keys in the store.
    ids: HashMap<String, i64>,
    /// The number of the last committed flush (`meta` key `flushes`).
    committed: u64,
    /// The running totals of every subscriber (see `cumulative.rs`).
    cum: cumulative::Running,
    /// When the last write was (`None`: one is due); the minute of the last reading.
    last_flush: Option<Instant>,
    minute: Option<i64>,
    last_rollup: Option<Instant>,
}

/// The `meta` key of the last committed flush's number.
const FLUSHES_KEY: &str = "flushes";

/// The `meta` key present once `hour_totals` holds every hour of the store.
const HOUR_TOTALS_KEY: &str = "hour_totals";

/// Fills `hour_totals` from the minutes and hours, in one transaction with its mark.
const BUILD_HOUR_TOTALS: &str = "
BEGIN;
DELETE FROM hour_totals;
INSERT INTO hour_totals (t, sub, name, dir, bytes, packets)
SELECT (t / 3600) * 3600, sub, name, dir, SUM(bytes), SUM(packets)
FROM minute GROUP BY (t / 3600) * 3600, sub, name, dir;
INSERT INTO hour_totals (t, sub, name, dir, bytes, packets)
SELECT t, sub, name, dir, bytes, packets FROM hour WHERE true
ON CONFLICT (t, sub, name, dir) DO UPDATE SET
    bytes = bytes + excluded.bytes, packets = packets + excluded.packets;
INSERT OR REPLACE INTO meta (key, value) VALUES ('hour_totals', '1');
COMMIT;";

/// Read connections of a store. SQLite in WAL mode lets them read side by side, so a long
/// query (every subscriber's rows over hours, for the top list) holds up at most one of
/// them and the others keep answering.
const READERS: usize = 4;

/// The store. Shared between the counter reader (writes) and the API (reads).
pub struct History {
    path: PathBuf,
    retention: Retention,
    writer: Mutex<Writer>,
    /// Read connections; a query takes a free one (see [`History::reader`]).
    readers: Vec<Mutex<Connection>>,
    /// Which reader a query waits for when none is free.
    next_reader: AtomicUsize,
    pending: RwLock<Pending>,
    /// Subscriber keys to ids, for answers from the running totals.
    sub_ids: RwLock<cumulative::SubIds>,
    /// The differences a flush is writing (or that a failed flush left for the next try):
    /// moved out of `pending` at the start of a flush, so that neither recording nor
    /// queries wait while it writes and commits, and cleared after the commit. Lock
    /// order: `flushing` before `pending`.
    flushing: RwLock<Flushing>,
    /// Test hook: called by a flush after its commit, before it clears `flushing`.
    #[cfg(test)]
    after_commit: Mutex<Option<Box<dyn FnMut() + Send>>>,
    /// Flushes written.
    pub flushes: AtomicU64,
    /// Flushes that failed (their differences stay in memory for the next try).
    pub flush_failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl History {
    /// A read connection: the first free one, or (all busy) the next in turn once it is.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for r in &self.readers {
            match r.try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[i])
    }
}

/// A name for one load of unpinned kernel counters: the boot, this process and when it
/// started, so readings recorded under another name are never the base for them. The
/// daemon pins its maps and names them with `Probe::instance` instead (see peerwarden's
/// `probe/pins.rs`).
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
-- By time, covering what the traffic totals read (History::traffic): the top list over a
-- window reads this index alone, not the table rows (2-3x faster at 100,000 subscribers).
-- It serves every by-time use of the older index minute_by_time, which it replaces.
CREATE INDEX IF NOT EXISTS minute_totals ON minute (t, name, sub, dir, bytes, packets);
DROP INDEX IF EXISTS minute_by_time;
CREATE TABLE IF NOT EXISTS hour (
    sub INTEGER NOT NULL, t INTEGER NOT NULL, name TEXT NOT NULL, dir INTEGER NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    dropped_packets INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL, marked_packets INTEGER NOT NULL,
    PRIMARY KEY (sub, t, name, dir)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hour_by_time ON hour (t);
-- Bytes and packets per (hour, subscriber, name, direction) for every hour the store holds,
-- in minutes or in hours: added to as minutes are written, in the same transaction, and
-- dropped with the hours (History::traffic reads a window's whole hours here).
CREATE TABLE IF NOT EXISTS hour_totals (
    t INTEGER NOT NULL, sub INTEGER NOT NULL, name TEXT NOT NULL, dir INTEGER NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL,
    PRIMARY KEY (t, sub, name, dir)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_reading (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS reading (
    sub INTEGER NOT NULL, name TEXT NOT NULL, dir INTEGER NOT NULL,
    bytes INTEGER NOT NULL, packets INTEGER NOT NULL, flows INTEGER NOT NULL,
    dropped_packets INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL, marked_packets INTEGER NOT NULL,
    PRIMARY KEY (sub, name, dir)) WITHOUT ROWID;
-- The swarm view's bytes per (minute, swarm) (swarms.rs); only with `swarms.enabled`.
CREATE TABLE IF NOT EXISTS swarm_minute (
    t INTEGER NOT NULL, swarm BLOB NOT NULL, local INTEGER NOT NULL,
    transit_up INTEGER NOT NULL, transit_down INTEGER NOT NULL,
    PRIMARY KEY (t, swarm)) WITHOUT ROWID;
";

impl History {
    /// Opens (or creates) the store at `path` for the counters of `instance`: the stored
    /// readings are the base for differences only if they were recorded for the same
    /// instance; otherwise the counters are new and start from zero.
    pub fn open(
        path: &Path,
        instance: &str,
        retention: Retention,
    ) -> Result<History, HistoryError> {
        // Subscriber ids and their traffic: readable by the daemon's user only (0700 for
        // directories made here, 0600 for the file; SQLite gives its -wal and -shm files
        // the database file's mode).
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| HistoryError::Dir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
            .map_err(|source| HistoryError::File {
                path: path.to_path_buf(),
                source,
            })?;
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
        if meta(HOUR_TOTALS_KEY)
            .map_err(sql("reading the hour totals' state"))?
            .is_none()
        {
            // A store from before the hour totals: built once from its minutes and hours.
            conn.execute_batch(BUILD_HOUR_TOTALS)
                .map_err(sql("building the hour totals"))?;
        }
        let cum = cumulative::prepare(&conn).map_err(sql("building the running totals"))?;
        let committed = meta(FLUSHES_KEY)
            .map_err(sql("reading the flush number"))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
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
        let mut last_usage = UsageBase::default();
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
                }
            }
            drop(stmt);
            let mut stmt = conn
                .prepare("SELECT idx, data FROM usage_reading")
                .map_err(sql("reading the last subscriber readings"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(sql("reading the last subscriber readings"))?;
            for row in rows {
                let (idx, data) = row.map_err(sql("reading the last subscriber readings"))?;
                // A blob of another size is not a reading of this build's layout: no base.
                if let Some(u) = usage_from_bytes(&data) {
                    last_usage.set(idx, u);
                }
            }
        } else {
            // New counters: the old readings are no base for them.
            conn.execute_batch("DELETE FROM reading; DELETE FROM usage_reading")
                .map_err(sql("clearing old readings"))?;
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('instance', ?1)",
                [instance],
            )
            .map_err(sql("writing the instance"))?;
        }
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path).map_err(sql("opening a reader"))?;
                reader
                    .busy_timeout(Duration::from_secs(5))
                    .map_err(sql("setting the busy timeout"))?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, HistoryError>>()?;
        let sub_ids = cumulative::SubIds::from_ids(&ids);
        let h = History {
            path: path.to_path_buf(),
            retention,
            writer: Mutex::new(Writer {
                conn,
                last,
                last_usage,
                dirty: Vec::new(),
                dirty_usage: Vec::new(),
                ids,
                committed,
                cum,
                last_flush: Some(Instant::now()),
                minute: None,
                last_rollup: None,
            }),
            readers,
            next_reader: AtomicUsize::new(0),
            pending: RwLock::new(Pending::new()),
            sub_ids: RwLock::new(sub_ids),
            flushing: RwLock::new(Flushing::default()),
            #[cfg(test)]
            after_commit: Mutex::new(None),
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

/// `now - before` for one per-label row of all traffic: the kernel's counters are
/// wrapping sums that may go down (a relabel moves bytes between labels): the signed
/// difference.
fn difference(before: &Values, now: &Values) -> Values {
    Values {
        bytes: now.bytes.wrapping_sub(before.bytes),
        packets: now.packets.wrapping_sub(before.packets),
        flows: now.flows.wrapping_sub(before.flows),
        ..Values::default()
    }
}

/// Words (u64 counters) of one subscriber reading.
const USAGE_WORDS: usize = std::mem::size_of::<SubUsage>() / 8;
/// Words of a mask over [`USAGE_WORDS`] counters.
const MASK_WORDS: usize = USAGE_WORDS.div_ceil(64);
/// The first byte of a sparse reading (see [`usage_to_bytes`]).
const SPARSE: u8 = 3;
/// The first byte of a sparse reading of stores written before label 32 (`iptv`) was
/// added (32 labels, 152 counters, a 192-bit mask), still read: its class counters sit
/// four words earlier than this build's.
const SPARSE_32_LABELS: u8 = 2;
/// Labels of readings written before label 32 was added.
const LABELS_32: usize = 32;
const WORDS_32: usize = LABELS_32 * 4 + SUB_CLASSES * 2 * 3;
/// The first byte of a sparse reading of stores written before labels 22-31 were added
/// (22 labels, 112 counters, a 128-bit mask), still read.
const SPARSE_22_LABELS: u8 = 1;
/// Labels, and counters, of readings written before labels 22-31 were added.
const LEGACY_LABELS: usize = 22;
const LEGACY_WORDS: usize = LEGACY_LABELS * 4 + SUB_CLASSES * 2 * 3;

/// A reading's counters in the order they are stored: per label and direction
/// packets, bytes; per class and direction drops (packets, bytes) and marks.
fn usage_words(u: &SubUsage) -> [u64; USAGE_WORDS] {
    let mut out = [0u64; USAGE_WORDS];
    let words = u
        .labels
        .iter()
        .flatten()
        .flat_map(|d| [d.packets, d.bytes])
        .chain(
            u.policy
                .iter()
                .flatten()
                .flat_map(|p| [p.dropped_packets, p.dropped_bytes, p.marked_packets]),
        );
    for (o, w) in out.iter_mut().zip(words) {
        *o = w;
    }
    out
}

/// The reverse of [`usage_words`] for a reading of `labels` labels (this build's, or
/// [`LEGACY_LABELS`] for an older store's).
fn usage_of_words(words: &[u64], labels: usize) -> SubUsage {
    let mut next = words.iter().copied();
    let mut next = || next.next().unwrap_or(0);
    let mut u = SubUsage::default();
    for (i, dirs) in u.labels.iter_mut().enumerate() {
        if i >= labels {
            break;
        }
        for d in dirs.iter_mut() {
            d.packets = next();
            d.bytes = next();
        }
    }
    for _ in u.labels.len()..labels {
        next();
        next();
        next();
        next();
    }
    for p in u.policy.iter_mut().flatten() {
        p.dropped_packets = next();
        p.dropped_bytes = next();
        p.marked_packets = next();
    }
    u
}

/// A subscriber reading as stored in `usage_reading`, sparse: most of a subscriber's
/// counters are zero (labels it never used), and writing all of them for every changed
/// subscriber was most of a flush at 100,000 subscribers. The byte [`SPARSE`], a
/// little-endian bit mask of the nonzero counters ([`MASK_WORDS`] words), then those
/// counters little-endian. Stores written by earlier builds (the dense 896-byte layout,
/// the [`SPARSE_22_LABELS`] and [`SPARSE_32_LABELS`] forms) are still read.
fn usage_to_bytes(u: &SubUsage) -> Vec<u8> {
    let words = usage_words(u);
    let mut mask = [0u64; MASK_WORDS];
    for (i, w) in words.iter().enumerate() {
        if *w != 0 {
            mask[i / 64] |= 1 << (i % 64);
        }
    }
    let n: u32 = mask.iter().map(|m| m.count_ones()).sum();
    let mut out = Vec::with_capacity(1 + 8 * MASK_WORDS + 8 * n as usize);
    out.push(SPARSE);
    for m in mask {
        out.extend_from_slice(&m.to_le_bytes());
    }
    for w in words.iter().filter(|w| **w != 0) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// The reverse of [`usage_to_bytes`], and of the layouts of earlier stores; `None` for a
/// blob of no known shape.
fn usage_from_bytes(b: &[u8]) -> Option<SubUsage> {
    let le = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    if b.len() == LEGACY_WORDS * 8 {
        let words: Vec<u64> = b.chunks_exact(8).map(le).collect();
        return Some(usage_of_words(&words, LEGACY_LABELS));
    }
    let (&tag, rest) = b.split_first()?;
    let (mask_words, total, labels) = match tag {
        SPARSE => (MASK_WORDS, USAGE_WORDS, SUB_LABELS),
        SPARSE_32_LABELS => (WORDS_32.div_ceil(64), WORDS_32, LABELS_32),
        SPARSE_22_LABELS => (2, LEGACY_WORDS, LEGACY_LABELS),
        _ => return None,
    };
    let mask: Vec<u64> = rest
        .get(..8 * mask_words)?
        .chunks_exact(8)
        .map(le)
        .collect();
    let values = &rest[8 * mask_words..];
    let bit = |i: usize| mask[i / 64] >> (i % 64) & 1 != 0;
    let set: usize = mask.iter().map(|m| m.count_ones() as usize).sum();
    if (total..mask_words * 64).any(bit) || values.len() != 8 * set {
        return None;
    }
    let mut values = values.chunks_exact(8);
    let mut words = vec![0u64; total];
    for (i, w) in words.iter_mut().enumerate() {
        if bit(i) {
            *w = values.next().map(le)?;
        }
    }
    Some(usage_of_words(&words, labels))
}

#[cfg(test)]
#[path = "swarms_tests.rs"]
mod swarms_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cumulative;
#[cfg(test)]
mod tests_flush;
#[cfg(test)]
mod tests_top;
