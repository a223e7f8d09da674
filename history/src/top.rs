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

/// A subscriber in the ranking: by its key in the store (no rows in memory), or by the
/// index of its group of rows in memory (with its key, if the store has rows of it).
#[derive(Clone, Copy)]
enum Who {
    Stored(i64),
    Pending(usize),
}

/// A subscriber's rows in memory: its id, its key in the store (if the store has it) and
/// the rows.
type Group<'a> = (&'a str, Option<i64>, Vec<(&'a Key, &'a Values)>);

/// What a row adds to a subscriber's bytes in the ranking: its bytes, none below zero.
fn counted(bytes: i64) -> u64 {
    bytes.max(0) as u64
}

impl History {
    /// The rows of [`History::traffic`]`(from, to, which)` (every subscriber's rows,
    /// [`Which::Subscribers`] or [`Which::SubscribersLabels`]) of the `limit` subscribers
    /// with the most bytes in the rows named in `names` (each row's bytes below zero
    /// counted as zero, the sum wrapping), ties by id, subscribers with none left out: the
    /// rows the API's top lists rank, in the same order as `traffic` gives them. With the
    /// running totals, only the winners' rows are built; other rows of `which` are read
    /// whole and ranked.
    pub fn top_traffic(
        &self,
        from: i64,
        to: i64,
        which: Which<'_>,
        names: &[&str],
        limit: usize,
    ) -> Result<Vec<Row>, HistoryError> {
        match self.window(from, to, which)? {
            Some(w) => Ok(self.top_of_window(w, names, limit)),
            None => Ok(top_of_rows(
                self.traffic_from_hours(from, to, which)?,
                names,
                limit,
            )),
        }
    }

    fn top_of_window(&self, mut w: Window, names: &[&str], limit: usize) -> Vec<Row> {
        let pending = std::mem::take(&mut w.pending);
        let mut ids = self.sub_ids.write().unwrap_or_else(|p| p.into_inner());
        let selected: Vec<bool> = w
            .names
            .iter()
            .map(|n| names.contains(&n.as_str()))
            .collect();
        // The rows in memory by subscriber (the map is in key order: each one's together),
        // with the subscriber's key when the store knows it.
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (k, v) in &pending {
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
        // Subscribers with nothing in memory: their entries alone, integers only.
        let mut i = 0;
        while i < w.diff.len() {
            let sub = w.diff[i].0 >> SUB_SHIFT;
            let mut bytes = 0u64;
            let mut j = i;
            while j < w.diff.len() && w.diff[j].0 >> SUB_SHIFT == sub {
                let (k, c) = &w.diff[j];
                if selected[((k >> 8) & 0xffff) as usize] {
                    bytes = bytes.wrapping_add(counted(c.bytes));
                }
                j += 1;
            }
            let key = sub as i64;
            if bytes != 0 && !touched.contains(&key) && ids_ref.get(key).is_some() {
                ranking.push((bytes, Who::Stored(key)));
            }
            i = j;
        }
        // Subscribers with rows in memory: each row is its entry plus what is in memory.
        for (g, (_, key, rows)) in groups.iter().enumerate() {
            let mut per: BTreeMap<(&str, u8), i64> = BTreeMap::new();
            if let Some(key) = key {
                for (k, c) in w.span(*key as u64) {
                    let name = w.names[((k >> 8) & 0xffff) as usize].as_str();
                    *per.entry((name, (k & 0xff) as u8)).or_default() += c.bytes;
                }
            }
            for (k, v) in rows {
                *per.entry((k.name.as_str(), k.dir)).or_default() += v.bytes;
            }
            let bytes = per
                .iter()
                .filter(|((name, _), _)| names.contains(name))
                .fold(0u64, |b, (_, v)| b.wrapping_add(counted(*v)));
            if bytes != 0 {
                ranking.push((bytes, Who::Pending(g)));
            }
        }
        let id = |who: &Who| -> &str {
            match who {
                Who::Stored(key) => ids_ref.get(*key).unwrap_or_default(),
                Who::Pending(g) => groups[*g].0,
            }
        };
        let order =
            |a: &(u64, Who), b: &(u64, Who)| b.0.cmp(&a.0).then_with(|| id(&a.1).cmp(id(&b.1)));
        if ranking.len() > limit && limit > 0 {
            ranking.select_nth_unstable_by(limit - 1, order);
        }
        ranking.truncate(limit);
        // The winners' rows, in the answer's order (by id).
        ranking.sort_unstable_by(|a, b| id(&a.1).cmp(id(&b.1)));
        let winners: HashSet<&str> = ranking.iter().map(|(_, who)| id(who)).collect();
        let keys: Vec<u64> = ranking
            .iter()
            .filter_map(|(_, who)| match who {
                Who::Stored(key) => Some(*key as u64),
                Who::Pending(g) => groups[*g].1.map(|k| k as u64),
            })
            .collect();
        let entries = keys.iter().flat_map(|k| w.span(*k)).copied();
        let in_memory = pending
            .iter()
            .filter(|(k, _)| winners.contains(k.subscriber.as_str()))
            .map(|(k, v)| (k.clone(), *v));
        w.rows(ids_ref, entries, in_memory)
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
