//! The top list's rows: [`History::traffic`]'s answer for the `limit` subscribers with
//! the most bytes of some names only. The ranking runs on the running totals' integers
//! (`cumulative.rs`): each subscriber's bytes are summed from its entries, the first
//! `limit` are picked, and rows (ids and names as strings) are built for those alone,
//! not for the 100,000 others.

use std::collections::{BTreeMap, HashSet};

use super::{
    History, HistoryError, Key, Row, Values, Which,
    cumulative::{SUB_SHIFT, SubIds, Window},
};

/// A subscriber in the ranking: by its key in the store, or (one the store had no key
/// for when its rows in memory were read) by the index of its group of rows in memory.
#[derive(Clone, Copy)]
enum Who {
    Stored(i64),
    Unknown(usize),
}

/// The rows in memory of subscribers the store has no key for: the id, its key if the
/// store has one by now, and the rows.
type Group<'a> = (&'a str, Option<i64>, Vec<(&'a Key, &'a Values)>);

/// What a row adds to a subscriber's bytes in the ranking: its bytes, none below zero.
fn counted(bytes: i64) -> u64 {
    bytes.max(0) as u64
}

/// The rows in memory of a top list's window: integers for the subscribers the store
/// has a key for, whole rows (strings copied) for the others (new since the last flush).
#[derive(Default)]
struct InMemory {
    /// The rows' names (as in the answer) by their index here.
    names: Vec<String>,
    /// Subscriber key << [`SUB_SHIFT`] | name index here << 8 | direction, with bytes and
    /// packets; sorted and each key once after [`InMemory::sum`].
    entries: Vec<(u64, i64, i64)>,
    unknown: BTreeMap<Key, Values>,
}

impl InMemory {
    /// Adds rows of one map of them, finding each subscriber's key in `ids`.
    fn add<'r>(
        &mut self,
        ids: &mut SubIds,
        rows: &mut dyn Iterator<Item = (&'r Key, &'r str, &'r Values)>,
    ) {
        ids.order();
        let mut find = Finder {
            by_sub: &ids.by_sub,
            order: ids.order.as_deref().unwrap_or_default(),
            at: 0,
        };
        let mut last: Option<(&str, Option<i64>)> = None;
        let mut hint = 0;
        for (key, name, v) in rows {
            let sub = match last {
                Some((id, sub)) if id == key.subscriber => sub,
                _ => {
                    let sub = find.key(&key.subscriber);
                    last = Some((&key.subscriber, sub));
                    sub
                }
            };
            let n = self.name(name, &mut hint);
            match (sub, n) {
                (Some(sub), Some(n)) => self.entries.push((
                    (sub as u64) << SUB_SHIFT | u64::from(n) << 8 | u64::from(key.dir),
                    v.bytes,
                    v.packets,
                )),
                _ => {
                    let k = Key {
                        subscriber: key.subscriber.clone(),
                        name: name.to_string(),
                        dir: key.dir,
                    };
                    let e = self.unknown.entry(k).or_default();
                    e.bytes = e.bytes.wrapping_add(v.bytes);
                    e.packets = e.packets.wrapping_add(v.packets);
                }
            }
        }
    }

    /// The index of `name`, added if new (`None` past 16 bits); `hint` is where the
    /// next name is looked for first (a subscriber's rows come in the names' order).
    fn name(&mut self, name: &str, hint: &mut usize) -> Option<u16> {
        let i = match self.names.get(*hint) {
            Some(n) if n == name => *hint,
            _ => match self.names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.names.push(name.to_string());
                    self.names.len() - 1
                }
            },
        };
        *hint = i + 1;
        u16::try_from(i).ok()
    }

    /// Sorts the entries and sums those of the same key (rows of several minutes).
    fn sum(&mut self) {
        self.entries.sort_unstable_by_key(|e| e.0);
        self.entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.wrapping_add(later.1);
                kept.2 = kept.2.wrapping_add(later.2);
            }
            same
        });
    }

    /// The entries of subscriber key `sub`.
    fn span(&self, sub: u64) -> &[(u64, i64, i64)] {
        let a = self.entries.partition_point(|e| e.0 >> SUB_SHIFT < sub);
        let b = self.entries.partition_point(|e| e.0 >> SUB_SHIFT <= sub);
        &self.entries[a..b]
    }
}

/// Finds subscribers' keys by id in the keys' order by id, onwards from the last one
/// found: ids asked in increasing order (a minute's rows in memory) take one walk.
struct Finder<'a> {
    by_sub: &'a [Option<String>],
    order: &'a [u32],
    /// Every key before it in `order` has an id below the last one asked.
    at: usize,
}

impl Finder<'_> {
    fn key(&mut self, id: &str) -> Option<i64> {
        let (by_sub, order) = (self.by_sub, self.order);
        let below = |k: u32| by_sub[k as usize].as_deref() < Some(id);
        if self.at > 0 && !below(order[self.at - 1]) {
            self.at = 0;
        }
        // Galloping: steps doubling until past `id`, then a binary search.
        let (mut lo, mut hi, mut step) = (self.at, self.at, 1);
        while hi < order.len() && below(order[hi]) {
            lo = hi + 1;
            hi = lo + step;
            step *= 2;
        }
        let hi = hi.min(order.len());
        self.at = lo + order[lo..hi].partition_point(|k| below(*k));
        let k = *order.get(self.at)?;
        (by_sub[k as usize].as_deref() == Some(id)).then_some(i64::from(k))
    }
}

impl History {
    /// The rows of [`History::traffic`]`(from, to, which)` (every subscriber's rows,
    /// [`Which::Subscribers`] or [`Which::SubscribersLabels`]) of the `limit` subscribers
    /// with the most bytes in the rows named in `names` (each row's bytes below zero
    /// counted as zero, the sum wrapping), ties by id, subscribers with none left out: the
    /// rows the API's top lists rank, in the same order as `traffic` gives them. With the
    /// running totals, only the winners' rows are built; the rows in memory are summed as
    /// integers per subscriber key and name; other rows of `which` are read whole and
    /// ranked.
    pub fn top_traffic(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
        names: &[&str],
        limit: usize,
    ) -> Result<Vec<Row>, HistoryError> {
        // The keys' order by id, computed (if subscribers were added) before the rows in
        // memory are locked, not while.
        self.sub_ids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .order();
        let mut mem = InMemory::default();
        let w = self.window_with(from, to, which, |rows| {
            let mut ids = self.sub_ids.write().unwrap_or_else(|p| p.into_inner());
            mem.add(&mut ids, rows);
        })?;
        match w {
            Some(w) => {
                mem.sum();
                Ok(self.top_of_window(w, &mem, names, limit))
            }
            None => Ok(top_of_rows(
                self.traffic_from_hours(from, to, which)?,
                names,
                limit,
            )),
        }
    }

    fn top_of_window(&self, w: Window, mem: &InMemory, names: &[&str], limit: usize) -> Vec<Row> {
        let mut ids = self.sub_ids.write().unwrap_or_else(|p| p.into_inner());
        // Every name, of the running totals or in memory, by one index: the rows a
        // subscriber's bytes are counted by.
        let mut all: Vec<&str> = w
            .names
            .iter()
            .chain(&mem.names)
            .map(String::as_str)
            .collect();
        all.sort_unstable();
        all.dedup();
        let at = |n: &String| all.binary_search(&n.as_str()).unwrap_or_default() as u32;
        let w_name: Vec<u32> = w.names.iter().map(at).collect();
        let m_name: Vec<u32> = mem.names.iter().map(at).collect();
        let selected: Vec<bool> = all.iter().map(|n| names.contains(n)).collect();
        let w_selected: Vec<bool> = w_name.iter().map(|n| selected[*n as usize]).collect();
        // The rows in memory of subscribers unknown when they were read, by subscriber
        // (the map is in key order: each one's together), with its key if known by now.
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (k, v) in &mem.unknown {
            match groups.last_mut() {
                Some((id, _, rows)) if *id == k.subscriber => rows.push((k, v)),
                _ => groups.push((&k.subscriber, None, vec![(k, v)])),
            }
        }
        let mut touched = HashSet::new();
        for g in &mut groups {
            g.1 = ids.key_of(g.0);
            touched.extend(g.1);
        }
        let ids_ref: &SubIds = &ids;
        let mut ranking: Vec<(u64, Who)> = Vec::new();
        // Subscribers with a key: their entries and their rows in memory, both in key
        // order, walked together; integers only.
        let (d, m) = (&w.diff, &mem.entries);
        let (mut i, mut j) = (0, 0);
        let mut per: Vec<(u32, i64)> = Vec::new();
        while i < d.len() || j < m.len() {
            let sub = match (d.get(i), m.get(j)) {
                (Some(a), Some(b)) => (a.0 >> SUB_SHIFT).min(b.0 >> SUB_SHIFT),
                (Some(a), None) => a.0 >> SUB_SHIFT,
                (None, Some(b)) => b.0 >> SUB_SHIFT,
                (None, None) => break,
            };
            let (i0, j0) = (i, j);
            while i < d.len() && d[i].0 >> SUB_SHIFT == sub {
                i += 1;
            }
            while j < m.len() && m[j].0 >> SUB_SHIFT == sub {
                j += 1;
            }
            let key = sub as i64;
            if touched.contains(&key) || ids_ref.get(key).is_none() {
                continue;
            }
            let name = |k: u64| ((k >> 8) & 0xffff) as usize;
            let bytes = if j0 == j {
                d[i0..i]
                    .iter()
                    .filter(|(k, _)| w_selected[name(*k)])
                    .fold(0u64, |b, (_, c)| b.wrapping_add(counted(c.bytes)))
            } else {
                // Each row is its entry plus what is in memory: summed per name and
                // direction before its bytes below zero count as zero.
                per.clear();
                per.extend(
                    d[i0..i]
                        .iter()
                        .map(|(k, c)| (w_name[name(*k)] << 8 | (*k & 0xff) as u32, c.bytes)),
                );
                per.extend(
                    m[j0..j]
                        .iter()
                        .map(|(k, b, _)| (m_name[name(*k)] << 8 | (*k & 0xff) as u32, *b)),
                );
                per.sort_unstable_by_key(|e| e.0);
                let mut bytes = 0u64;
                for run in per.chunk_by(|a, b| a.0 == b.0) {
                    if selected[(run[0].0 >> 8) as usize] {
                        let sum = run.iter().fold(0i64, |s, e| s.wrapping_add(e.1));
                        bytes = bytes.wrapping_add(counted(sum));
                    }
                }
                bytes
            };
            if bytes != 0 {
                ranking.push((bytes, Who::Stored(key)));
            }
        }
        // Subscribers unknown when their rows in memory were read, as rows.
        for (g, (_, key, rows)) in groups.iter().enumerate() {
            let mut per: BTreeMap<(&str, u8), i64> = BTreeMap::new();
            if let Some(key) = key {
                for (k, c) in w.span(*key as u64) {
                    let name = w.names[((k >> 8) & 0xffff) as usize].as_str();
                    let e = per.entry((name, (k & 0xff) as u8)).or_default();
                    *e = e.wrapping_add(c.bytes);
                }
            }
            for (k, v) in rows {
                let e = per.entry((k.name.as_str(), k.dir)).or_default();
                *e = e.wrapping_add(v.bytes);
            }
            let bytes = per
                .iter()
                .filter(|((name, _), _)| names.contains(name))
                .fold(0u64, |b, (_, v)| b.wrapping_add(counted(*v)));
            if bytes != 0 {
                ranking.push((bytes, Who::Unknown(g)));
            }
        }
        let id = |who: &Who| -> &str {
            match who {
                Who::Stored(key) => ids_ref.get(*key).unwrap_or_default(),
                Who::Unknown(g) => groups[*g].0,
            }
        };
        let order =
            |a: &(u64, Who), b: &(u64, Who)| b.0.cmp(&a.0).then_with(|| id(&a.1).cmp(id(&b.1)));
        if ranking.len() > limit && limit > 0 {
            ranking.select_nth_unstable_by(limit - 1, order);
        }
        ranking.truncate(limit);
        // The winners' rows, in the answer's order (by id): strings for these alone.
        ranking.sort_unstable_by(|a, b| id(&a.1).cmp(id(&b.1)));
        let mut in_memory: BTreeMap<Key, Values> = BTreeMap::new();
        let mut keys: Vec<u64> = Vec::with_capacity(ranking.len());
        for (_, who) in &ranking {
            match who {
                Who::Stored(key) => {
                    keys.push(*key as u64);
                    for (k, bytes, packets) in mem.span(*key as u64) {
                        let key = Key {
                            subscriber: id(who).to_string(),
                            name: mem.names[((k >> 8) & 0xffff) as usize].clone(),
                            dir: (k & 0xff) as u8,
                        };
                        let values = Values {
                            bytes: *bytes,
                            packets: *packets,
                            ..Values::default()
                        };
                        in_memory.insert(key, values);
                    }
                }
                Who::Unknown(g) => {
                    keys.extend(groups[*g].1.map(|k| k as u64));
                    in_memory.extend(groups[*g].2.iter().map(|(k, v)| ((*k).clone(), **v)));
                }
            }
        }
        let entries = keys.iter().flat_map(|k| w.span(*k)).copied();
        w.rows(ids_ref, entries, in_memory.into_iter())
    }
}

/// [`History::top_traffic`] over rows read whole (a store without usable running totals).
fn top_of_rows(rows: Vec<Row>, names: &[&str], limit: usize) -> Vec<Row> {
    let mut per: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        let b = per.entry(&r.key.subscriber).or_default();
        if names.contains(&r.key.name.as_str()) {
            *b = b.wrapping_add(counted(r.values.bytes));
        }
    }
    let mut ranking: Vec<(u64, &str)> = per
        .into_iter()
        .filter(|(_, b)| *b != 0)
        .map(|(id, b)| (b, id))
        .collect();
    let order = |a: &(u64, &str), b: &(u64, &str)| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1));
    if ranking.len() > limit && limit > 0 {
        ranking.select_nth_unstable_by(limit - 1, order);
    }
    ranking.truncate(limit);
    let winners: HashSet<String> = ranking.into_iter().map(|(_, id)| id.to_string()).collect();
    rows.into_iter()
        .filter(|r| winners.contains(&r.key.subscriber))
        .collect()
}
