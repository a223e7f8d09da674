//! Running totals: every subscriber's bytes, packets and rows summed from the start of the
//! store, kept as one packed blob per snapshot, so that the top list's totals over any
//! window are two blob reads and a merge, whatever the window's length.
//!
//! A snapshot at `t` holds, for every (subscriber, name, direction) the store has seen,
//! the sums of the rows (minute and hour rows alike) whose start is before `t`: bytes,
//! packets, and the number of rows. There is a snapshot at the start of every row the
//! store holds (so at every minute that has rows, and at every hour once its minutes are
//! rolled up), and one at `t = i64::MAX` with everything written (the *sentinel*). The
//! sums of the rows in `[from, to)` are then `at(to) - at(from)`, where `at(x)` is the
//! first snapshot at or after `x`: no row starts between `x` and it. This holds for any
//! `from` and `to`, ragged or not, and gives what the rows themselves give
//! ([`History::traffic_from_minutes`]); a key is in the answer when its number of rows
//! went up, as the rows' query would list it. Hours dropped by the retention take their
//! snapshots with them; the snapshots after them still count their rows, which cancel
//! out in every difference.
//!
//! Two blobs per snapshot: class rows (kind 0) and label rows (kind 1, named
//! [`LABEL_ROW`]...), so each top list reads only its own. The writer keeps the sentinel's
//! totals in memory ([`Running`]), writes a snapshot when a flush brings rows of a minute
//! after the last snapshot, rewrites the later snapshots when rows arrive for an earlier
//! minute (a clock set back: rare), and writes the sentinel with every flush, all in the
//! flush's transaction. A store from before the snapshots has them built once on opening.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::{History, HistoryError, Key, LABEL_ROW, Row, Values, Which, strip_label};

/// The `meta` key present once `cumulative` holds every row of the store.
const BUILT_KEY: &str = "cumulative";
/// The time of the sentinel snapshot (everything written).
const SENTINEL: i64 = i64::MAX;
/// The first byte of a snapshot blob.
const FORMAT: u8 = 1;

pub(super) const SCHEMA: &str = "
-- Running totals per subscriber, name and direction: one blob per snapshot and kind
-- (0: class rows, 1: label rows); see history/src/cumulative.rs.
CREATE TABLE IF NOT EXISTS cumulative (
    kind INTEGER NOT NULL, t INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (kind, t));";

/// One key's sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Cum {
    pub(super) bytes: i64,
    pub(super) packets: i64,
    pub(super) rows: i64,
}

impl Cum {
    fn add(&mut self, o: &Cum) {
        self.bytes = self.bytes.wrapping_add(o.bytes);
        self.packets = self.packets.wrapping_add(o.packets);
        self.rows = self.rows.wrapping_add(o.rows);
    }
}

/// (subscriber key in the store, name id, direction).
type CumKey = (i64, u16, u8);

/// The writer's side: the sentinel's totals and the time of the last snapshot before it.
#[derive(Default)]
pub(super) struct Running {
    names: Vec<String>,
    name_ids: HashMap<String, u16>,
    totals: BTreeMap<CumKey, Cum>,
    last_t: Option<i64>,
    /// Not what the store holds (just opened, a failed write, a roll-up): read again
    /// from the store before the next write.
    stale: bool,
}

/// One subscriber row a flush writes: (start, subscriber key, name, direction, bytes,
/// packets).
pub(super) type FlushRow<'a> = (i64, i64, &'a str, u8, i64, i64);

impl Running {
    fn name_id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.name_ids.get(name) {
            return *i;
        }
        let i = self.names.len() as u16;
        self.names.push(name.to_string());
        self.name_ids.insert(name.to_string(), i);
        i
    }

    fn apply(&mut self, sub: i64, name: &str, dir: u8, bytes: i64, packets: i64) {
        let n = self.name_id(name);
        self.totals.entry((sub, n, dir)).or_default().add(&Cum {
            bytes,
            packets,
            rows: 1,
        });
    }

    /// The two blobs (kinds 0 and 1) of `totals`.
    fn encode(&self, totals: &BTreeMap<CumKey, Cum>) -> [Vec<u8>; 2] {
        let mut out = [Enc::new(&self.names), Enc::new(&self.names)];
        let label: Vec<bool> = self.names.iter().map(|n| is_label(n)).collect();
        for (k, c) in totals {
            out[usize::from(label[usize::from(k.1)])].entry(*k, c);
        }
        out.map(Enc::finish)
    }

    /// Reads the sentinel and the last snapshot's time back from the store; rebuilds the
    /// snapshots from the rows if the sentinel is missing or does not read (damage).
    fn reload(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        *self = Running::default();
        let totals = match self.read(tx, SENTINEL, true)? {
            Some(t) => t,
            None => {
                fill(tx)?;
                self.read(tx, SENTINEL, true)?.unwrap_or_default()
            }
        };
        self.totals = totals;
        self.last_t = tx.query_row(
            "SELECT MAX(t) FROM cumulative WHERE t < ?1",
            [SENTINEL],
            |r| r.get(0),
        )?;
        Ok(())
    }

    /// Both kinds' snapshot at `t` (`exact`) or at the first time at or after it, in this
    /// writer's name ids; `None` if either is missing or does not read.
    fn read(
        &mut self,
        tx: &Connection,
        t: i64,
        exact: bool,
    ) -> rusqlite::Result<Option<BTreeMap<CumKey, Cum>>> {
        let mut out = BTreeMap::new();
        let op = if exact { "=" } else { ">=" };
        for kind in 0..2 {
            let blob: Option<Vec<u8>> = tx
                .prepare_cached(&format!(
                    "SELECT data FROM cumulative WHERE kind = ?1 AND t {op} ?2 ORDER BY t LIMIT 1"
                ))?
                .query_row(params![kind, t], |r| r.get(0))
                .optional()?;
            let Some((names, entries)) = blob.as_deref().and_then(decode) else {
                return Ok(None);
            };
            let ids: Vec<u16> = names.iter().map(|n| self.name_id(n)).collect();
            for ((sub, n, dir), c) in entries {
                out.insert((sub, ids[usize::from(n)], dir), c);
            }
        }
        Ok(Some(out))
    }

    fn put(&self, tx: &Connection, t: i64, totals: &BTreeMap<CumKey, Cum>) -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO cumulative (kind, t, data) VALUES (?1, ?2, ?3)",
        )?;
        for (kind, blob) in self.encode(totals).into_iter().enumerate() {
            stmt.execute(params![kind as i64, t, blob])?;
        }
        Ok(())
    }

    /// The snapshot at the first time at or after `t` as totals in this writer's name
    /// ids (the sentinel's, the running totals, when there is none in the store).
    fn read_at(&mut self, tx: &Connection, t: i64) -> rusqlite::Result<BTreeMap<CumKey, Cum>> {
        Ok(match self.read(tx, t, false)? {
            Some(m) => m,
            None => self.totals.clone(),
        })
    }
}

fn is_label(name: &str) -> bool {
    name.starts_with(LABEL_ROW)
}

/// Creates the table and, for a store from before it, builds the snapshots from the rows.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<Running> {
    conn.execute_batch(SCHEMA)?;
    let built: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [BUILT_KEY], |r| {
            r.get(0)
        })
        .optional()?;
    if built.is_none() {
        build(conn)?;
    }
    Ok(Running {
        stale: true,
        ..Running::default()
    })
}

/// Every row of the store, in time order, summed into a snapshot at each row start: one
/// transaction with the mark in `meta`.
fn build(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    fill(&tx)?;
    tx.commit()
}

/// [`build`]'s work, in the caller's transaction.
fn fill(tx: &Connection) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM cumulative", [])?;
    let mut run = Running::default();
    {
        let mut stmt = tx.prepare(
            "SELECT t, sub, name, dir, bytes, packets FROM minute WHERE sub <> 0
             UNION ALL SELECT t, sub, name, dir, bytes, packets FROM hour WHERE sub <> 0
             ORDER BY 1",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let t: i64 = r.get(0)?;
            if run.last_t.is_none_or(|l| l < t) {
                run.put(tx, t, &run.totals)?;
                run.last_t = Some(t);
            }
            let name: String = r.get(2)?;
            run.apply(r.get(1)?, &name, r.get(3)?, r.get(4)?, r.get(5)?);
        }
    }
    run.put(tx, SENTINEL, &run.totals)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, '1')",
        [BUILT_KEY],
    )?;
    Ok(())
}

/// Called by a flush at the start of its transaction, before it writes any row: the
/// running totals read back from the store if they may not be what it holds.
pub(super) fn begin(tx: &Transaction<'_>, run: &mut Running) -> rusqlite::Result<()> {
    if run.stale {
        run.reload(tx)?;
    }
    Ok(())
}

/// Adds a flush's subscriber rows (in time order) to the running totals and the
/// snapshots, in the flush's transaction. A failed write leaves the totals marked stale.
pub(super) fn record(
    tx: &Transaction<'_>,
    run: &mut Running,
    rows: &[FlushRow<'_>],
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    run.stale = true;
    let last = run.last_t;
    // Rows before the last snapshot (the clock went back): every snapshot after them,
    // and one at their own start where there is none, gets them added.
    let late: Vec<&FlushRow<'_>> = rows
        .iter()
        .filter(|r| last.is_some_and(|l| r.0 < l))
        .collect();
    if let (Some(first), Some(last)) = (late.first(), last) {
        let mut times: Vec<i64> = tx
            .prepare_cached("SELECT DISTINCT t FROM cumulative WHERE t > ?1 AND t <= ?2")?
            .query_map(params![first.0, last], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        times.extend(late.iter().map(|r| r.0));
        times.sort_unstable();
        times.dedup();
        for t in times {
            let mut snap = run.read_at(tx, t)?;
            for r in late.iter().filter(|r| r.0 < t) {
                let n = run.name_id(r.2);
                snap.entry((r.1, n, r.3)).or_default().add(&Cum {
                    bytes: r.4,
                    packets: r.5,
                    rows: 1,
                });
            }
            run.put(tx, t, &snap)?;
        }
        for r in &late {
            run.apply(r.1, r.2, r.3, r.4, r.5);
        }
    }
    for r in rows.iter().filter(|r| last.is_none_or(|l| r.0 >= l)) {
        if run.last_t.is_none_or(|l| l < r.0) {
            run.put(tx, r.0, &run.totals)?;
            run.last_t = Some(r.0);
        }
        run.apply(r.1, r.2, r.3, r.4, r.5);
    }
    run.put(tx, SENTINEL, &run.totals)
}

/// Called by a flush once its transaction committed.
pub(super) fn committed(run: &mut Running) {
    run.stale = false;
}

/// The roll-up's part, in its transaction: each hour whose minutes become an hour row
/// gets a snapshot at its start (the next snapshot's: no row in between), the snapshots
/// inside those hours go (no row starts there any more), and so do those before
/// `expired` (the oldest row the store keeps).
pub(super) fn rollup(
    tx: &Transaction<'_>,
    run: &mut Running,
    minute_cut: i64,
    expired: i64,
) -> rusqlite::Result<()> {
    for kind in 0..2 {
        tx.execute(
            "INSERT OR IGNORE INTO cumulative (kind, t, data)
             SELECT ?2, h.t, (SELECT data FROM cumulative WHERE kind = ?2 AND t >= h.t ORDER BY t LIMIT 1)
             FROM (SELECT DISTINCT (t / 3600) * 3600 AS t FROM minute WHERE t < ?1) h
             WHERE EXISTS (SELECT 1 FROM cumulative WHERE kind = ?2 AND t >= h.t)",
            params![minute_cut, kind],
        )?;
    }
    tx.execute(
        "DELETE FROM cumulative WHERE t < ?1 AND t % 3600 <> 0",
        [minute_cut],
    )?;
    tx.execute("DELETE FROM cumulative WHERE t < ?1", [expired])?;
    run.stale = true;
    Ok(())
}

/// Subscriber keys to ids for the readers, and the keys' order by id (computed when
/// first needed after subscribers were added).
#[derive(Default)]
pub(super) struct SubIds {
    pub(super) by_sub: Vec<Option<String>>,
    pub(super) order: Option<Vec<u32>>,
}

impl SubIds {
    pub(super) fn from_ids(ids: &HashMap<String, i64>) -> SubIds {
        let mut s = SubIds::default();
        for (id, sub) in ids {
            s.insert(*sub, id);
        }
        s
    }

    pub(super) fn insert(&mut self, sub: i64, id: &str) {
        let Ok(i) = usize::try_from(sub) else {
            return;
        };
        // Keys are SQLite rowids handed out from 1: dense.
        if i >= self.by_sub.len() {
            if i > (1 << 26) {
                return;
            }
            self.by_sub.resize(i + 1, None);
        }
        self.by_sub[i] = Some(id.to_string());
        self.order = None;
    }

    pub(super) fn get(&self, sub: i64) -> Option<&str> {
        self.by_sub.get(usize::try_from(sub).ok()?)?.as_deref()
    }

    /// The key of subscriber `id`, if the readers know it.
    pub(super) fn key_of(&mut self, id: &str) -> Option<i64> {
        self.order();
        let order = self.order.as_deref().unwrap_or_default();
        let at = order
            .binary_search_by(|k| self.by_sub[*k as usize].as_deref().cmp(&Some(id)))
            .ok()?;
        Some(i64::from(order[at]))
    }

    /// The subscriber keys in the order of their ids.
    pub(super) fn order(&mut self) -> &[u32] {
        self.order.get_or_insert_with(|| {
            let mut order: Vec<u32> = (0..self.by_sub.len() as u32).collect();
            order.sort_unstable_by(|a, b| self.by_sub[*a as usize].cmp(&self.by_sub[*b as usize]));
            order
        })
    }
}

/// A decoded blob: its name table and its entries, in the blob's order.
type Decoded = (Vec<String>, Vec<(CumKey, Cum)>);

/// Writes a blob: [`FORMAT`], the name table (count, then each name's length and
/// bytes), the number of entries, then each entry: the subscriber key's increase over
/// the previous entry's, the name's index, the direction, bytes, packets (zigzag) and
/// rows, all LEB128 varints.
struct Enc {
    out: Vec<u8>,
    body: Vec<u8>,
    count: u64,
    prev: i64,
}

impl Enc {
    fn new(names: &[String]) -> Enc {
        let mut out = vec![FORMAT];
        put_var(&mut out, names.len() as u64);
        for n in names {
            put_var(&mut out, n.len() as u64);
            out.extend_from_slice(n.as_bytes());
        }
        Enc {
            out,
            body: Vec::new(),
            count: 0,
            prev: 0,
        }
    }

    fn entry(&mut self, (sub, name, dir): CumKey, c: &Cum) {
        let b = &mut self.body;
        put_var(b, zigzag(sub.wrapping_sub(self.prev)));
        put_var(b, u64::from(name));
        put_var(b, u64::from(dir));
        put_var(b, zigzag(c.bytes));
        put_var(b, zigzag(c.packets));
        put_var(b, zigzag(c.rows));
        self.prev = sub;
        self.count += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        put_var(&mut self.out, self.count);
        self.out.extend_from_slice(&self.body);
        self.out
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_var(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The reverse of [`Enc`]; `None` for a blob of any other shape.
fn decode(b: &[u8]) -> Option<Decoded> {
    if b.first() != Some(&FORMAT) {
        return None;
    }
    let mut at = 1;
    let n = get_var(b, &mut at)?;
    let mut names = Vec::new();
    for _ in 0..n.min(u64::from(u16::MAX)) {
        let len = usize::try_from(get_var(b, &mut at)?).ok()?;
        let s = b.get(at..at.checked_add(len)?)?;
        names.push(String::from_utf8(s.to_vec()).ok()?);
        at += len;
    }
    if names.len() as u64 != n {
        return None;
    }
    let count = get_var(b, &mut at)?;
    // Each entry takes at least six bytes: a count past that is damage, not a size.
    let mut entries = Vec::with_capacity(usize::try_from(count.min((b.len() / 6) as u64)).ok()?);
    let mut prev = 0i64;
    for _ in 0..count {
        let sub = prev.wrapping_add(unzigzag(get_var(b, &mut at)?));
        let name = u16::try_from(get_var(b, &mut at)?).ok()?;
        let dir = u8::try_from(get_var(b, &mut at)?).ok()?;
        if usize::from(name) >= names.len() {
            return None;
        }
        let c = Cum {
            bytes: unzigzag(get_var(b, &mut at)?),
            packets: unzigzag(get_var(b, &mut at)?),
            rows: unzigzag(get_var(b, &mut at)?),
        };
        entries.push(((sub, name, dir), c));
        prev = sub;
    }
    (at == b.len()).then_some((names, entries))
}

impl History {
    /// The running totals' snapshots below the sentinel: how many (per kind, times) and
    /// their bytes (the store's cost of them).
    pub fn running_totals_size(&self) -> Result<(u64, u64), HistoryError> {
        self.reader()
            .query_row(
                "SELECT COUNT(DISTINCT t), COALESCE(SUM(length(data)), 0) FROM cumulative WHERE t < ?1",
                [SENTINEL],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.sql("measuring the running totals"))
    }

    /// The top list's totals ([`History::traffic`]) of every subscriber over `[from,
    /// to)` from the snapshots at both ends and what is not written yet; `None` when the
    /// store has no usable snapshots (the caller reads the rows instead).
    pub(super) fn traffic_cumulative(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
    ) -> Result<Option<Vec<Row>>, HistoryError> {
        let Some(mut w) = self.window(from, to, which)? else {
            return Ok(None);
        };
        let pending = std::mem::take(&mut w.pending);
        let mut ids = self.sub_ids.write().unwrap_or_else(|p| p.into_inner());
        // The answer's order (by id, then name and direction) without a sort: each
        // subscriber's entries are together and in order, and the keys' order by id is
        // kept (computed again only when subscribers were added).
        let n_subs = ids.by_sub.len();
        let mut span = vec![(0usize, 0usize); n_subs];
        let mut i = 0;
        while i < w.diff.len() {
            let sub = w.diff[i].0 >> SUB_SHIFT;
            let mut j = i + 1;
            while j < w.diff.len() && w.diff[j].0 >> SUB_SHIFT == sub {
                j += 1;
            }
            if let Some(s) = span.get_mut(sub as usize) {
                *s = (i, j);
            }
            i = j;
        }
        ids.order();
        let ids = &*ids;
        let ordered = ids
            .order
            .as_deref()
            .unwrap_or_default()
            .iter()
            .flat_map(|sub| {
                let (a, b) = span[*sub as usize];
                &w.diff[a..b]
            })
            .copied();
        Ok(Some(w.rows(ids, ordered, pending.into_iter())))
    }

    /// [`History::window`] with `pending` empty: `read` gets instead the rows in memory of
    /// it (named as in the answer) while they are locked, once per map of them.
    pub(super) fn window_with(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
        mut read: impl for<'r> FnMut(&mut dyn Iterator<Item = (&'r Key, &'r str, &'r Values)>),
    ) -> Result<Option<Window>, HistoryError> {
        let kind = match which {
            Which::Subscribers => 0,
            Which::SubscribersLabels => 1,
            _ => return Ok(None),
        };
        let strip = |name: &str| -> String { strip_label(name, kind == 1).to_string() };
        let mut conn = self.reader();
        let tx = self.snapshot(&mut conn, |rows| {
            read(
                &mut rows
                    .iter()
                    .filter(|(t, k, _)| {
                        *t >= from && *t < to && which.matches(&k.subscriber, &k.name)
                    })
                    .map(|(_, k, v)| (k, strip_label(&k.name, kind == 1), v)),
            )
        })?;
        let sql = self.sql("reading the running totals");
        let built: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [BUILT_KEY], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&sql)?;
        if built.is_none() {
            return Ok(None);
        }
        let at = |t: i64| -> Result<Option<Decoded>, HistoryError> {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT data FROM cumulative WHERE kind = ?1 AND t >= ?2 ORDER BY t LIMIT 1",
                )
                .map_err(&sql)?;
            let got = stmt
                .query_row(params![kind, t], |r| {
                    Ok(r.get_ref(0)?.as_blob().map(decode))
                })
                .optional()
                .map_err(&sql)?;
            Ok(match got {
                None => Some((Vec::new(), Vec::new())),
                Some(Ok(Some(d))) => Some(d),
                Some(_) => None,
            })
        };
        let (older, newer) = if from < to {
            match (at(from)?, at(to)?) {
                (Some(a), Some(b)) => (a, b),
                _ => return Ok(None),
            }
        } else {
            Default::default()
        };
        // Both blobs' names in one table, ordered as the answer orders them.
        let mut union: Vec<String> = older.0.iter().chain(&newer.0).cloned().collect();
        union.sort_by(|a, b| (strip(a), a).cmp(&(strip(b), b)));
        union.dedup();
        let index: HashMap<&str, u16> = union
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u16))
            .collect();
        let keyed = |(names, entries): &Decoded| -> Vec<(u64, Cum)> {
            let map: Vec<u64> = names.iter().map(|n| u64::from(index[n.as_str()])).collect();
            let mut v: Vec<(u64, Cum)> = entries
                .iter()
                .filter(|(k, _)| k.0 > 0 && k.0 < (1 << 38))
                .map(|((sub, n, dir), c)| {
                    (
                        (*sub as u64) << SUB_SHIFT | map[usize::from(*n)] << 8 | u64::from(*dir),
                        *c,
                    )
                })
                .collect();
            if !v.is_sorted_by_key(|e| e.0) {
                v.sort_unstable_by_key(|e| e.0);
            }
            v
        };
        let (a, b) = (keyed(&older), keyed(&newer));
        // `newer - older`, the keys whose number of rows went up.
        let mut diff: Vec<(u64, Cum)> = Vec::with_capacity(b.len());
        let mut ai = a.iter().peekable();
        for (k, c) in &b {
            while ai.next_if(|e| e.0 < *k).is_some() {}
            let mut d = *c;
            if let Some(o) = ai.next_if(|e| e.0 == *k) {
                d.bytes = d.bytes.wrapping_sub(o.1.bytes);
                d.packets = d.packets.wrapping_sub(o.1.packets);
                d.rows = d.rows.wrapping_sub(o.1.rows);
            }
            if d.rows > 0 {
                diff.push((*k, d));
            }
        }
        drop(tx);
        drop(conn);
        // Subscriber ids not known yet to the readers, read without holding `sub_ids` (a
        // top list waits for it while holding a connection).
        let ids = self.sub_ids.read().unwrap_or_else(|p| p.into_inner());
        let missing: Vec<i64> = diff
            .iter()
            .map(|(k, _)| (k >> SUB_SHIFT) as i64)
            .filter(|s| ids.get(*s).is_none())
            .collect();
        drop(ids);
        if !missing.is_empty() {
            let conn = self.reader();
            let mut stmt = conn
                .prepare_cached("SELECT id FROM subscriber WHERE sub = ?1")
                .map_err(&sql)?;
            for s in missing {
                if let Some(id) = stmt
                    .query_row([s], |r| r.get::<_, String>(0))
                    .optional()
                    .map_err(&sql)?
                {
                    let mut ids = self.sub_ids.write().unwrap_or_else(|p| p.into_inner());
                    if ids.get(s).is_none() {
                        ids.insert(s, &id);
                    }
                }
            }
        }
        Ok(Some(Window {
            diff,
            names: union.iter().map(|n| strip(n)).collect(),
            pending: BTreeMap::new(),
        }))
    }
}

/// Where the subscriber key sits in a [`Window`]'s keys (name index and direction below).
pub(super) const SUB_SHIFT: u32 = 24;

/// The running totals' difference over a window, with what is not written yet: what
/// [`History::traffic`] and the top list ([`History::top_traffic`]) build their rows from.
pub(super) struct Window {
    /// `at(to) - at(from)` of every key whose number of rows went up, sorted by key:
    /// subscriber key << [`SUB_SHIFT`] | name index << 8 | direction.
    pub(super) diff: Vec<(u64, Cum)>,
    /// The answer's names by name index (label rows without their prefix), the indexes
    /// in the order of the names.
    pub(super) names: Vec<String>,
    /// The rows in the window not written yet, named as in the answer.
    pub(super) pending: BTreeMap<Key, Values>,
}

impl Window {
    /// The entries of subscriber key `sub`.
    pub(super) fn span(&self, sub: u64) -> &[(u64, Cum)] {
        let a = self.diff.partition_point(|e| e.0 >> SUB_SHIFT < sub);
        let b = self.diff.partition_point(|e| e.0 >> SUB_SHIFT <= sub);
        &self.diff[a..b]
    }

    /// The answer's rows: `entries` (in the answer's order: by id, name, direction) and
    /// `pending` (in key order) merged; entries of a subscriber without an id are left out.
    pub(super) fn rows(
        &self,
        ids: &SubIds,
        entries: impl Iterator<Item = (u64, Cum)>,
        pending: impl Iterator<Item = (Key, Values)>,
    ) -> Vec<Row> {
        let mut out = Vec::with_capacity(entries.size_hint().0);
        let mut pending = pending.peekable();
        for (k, c) in entries {
            let Some(id) = ids.get((k >> SUB_SHIFT) as i64) else {
                continue;
            };
            let key = Key {
                subscriber: id.to_string(),
                name: self.names[((k >> 8) & 0xffff) as usize].clone(),
                dir: (k & 0xff) as u8,
            };
            while let Some((pk, pv)) = pending.next_if(|(pk, _)| *pk < key) {
                out.push(Row {
                    bucket: 0,
                    key: pk,
                    values: pv,
                });
            }
            let mut values = Values {
                bytes: c.bytes,
                packets: c.packets,
                ..Values::default()
            };
            if let Some((_, pv)) = pending.next_if(|(pk, _)| *pk == key) {
                values.add(&pv);
            }
            out.push(Row {
                bucket: 0,
                key,
                values,
            });
        }
        out.extend(pending.map(|(key, values)| Row {
            bucket: 0,
            key,
            values,
        }));
        out
    }
}

/// [`decode`] for the tests: whether a blob reads.
#[cfg(test)]
pub(super) fn tests_decode(b: &[u8]) -> Option<usize> {
    decode(b).map(|(_, e)| e.len())
}
