//! The daemon's copy of the kernel's flow table, as of its last walk, cut in slices by a
//! [`Slicer`]: the exporter takes one slice a second without walking the rest (a tracker
//! made [`Tracker::with_slicer`](crate::tracker::Tracker::with_slicer) with the same slicer),
//! and the API's readers walk them all.
//!
//! A walk replaces the whole snapshot at once: each slice is a vector behind an `Arc`,
//! so a reader keeps the slices it took while the next walk lands, and the walker never
//! waits for a reader.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicUsize, Ordering},
};

use peerwarden_common::{FlowKey, FlowValue};

use crate::{positions::Positions, tracker::Slicer};

/// One slice: the flows of the table whose key is in it.
pub type Slice = Arc<Vec<(FlowKey, FlowValue)>>;

/// The last walk of the flow table, in slices.
#[derive(Debug)]
pub struct Snapshot {
    slicer: Slicer,
    slices: RwLock<Arc<[Slice]>>,
    len: AtomicUsize,
}

/// Where each flow of a snapshot updated in parts is, and the cycle of its latest
/// reading: the writer's side of [`Snapshot::merge`].
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Per slice, each flow's position in the slice's vector and the cycle of its
    /// reading.
    at: Vec<Positions>,
}

impl Index {
    /// Whether the snapshot holds `key`.
    pub(crate) fn holds(&self, key: &FlowKey) -> bool {
        self.at.iter().any(|at| at.get(key).is_some())
    }

    /// Flows held.
    pub(crate) fn len(&self) -> usize {
        self.at.iter().map(Positions::len).sum()
    }
}

/// A flow of the snapshot, copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    key: FlowKey,
    value: FlowValue,
}

impl Entry {
    /// The flow's key.
    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The flow's reading.
    pub fn value(&self) -> &FlowValue {
        &self.value
    }
}

impl Snapshot {
    /// An empty snapshot cut by `slicer`.
    pub fn new(slicer: Slicer) -> Snapshot {
        Snapshot {
            slicer,
            slices: RwLock::new((0..slicer.slices()).map(|_| Slice::default()).collect()),
            len: AtomicUsize::new(0),
        }
    }

    /// The slicer (for the exporter's tracker).
    pub fn slicer(&self) -> Slicer {
        self.slicer
    }

    /// Replaces the snapshot with a fresh walk.
    pub fn replace(&self, flows: Vec<(FlowKey, FlowValue)>) {
        let n = self.slicer.slices();
        let len = flows.len();
        let slices: Arc<[Slice]> = if n == 1 {
            Arc::from([Arc::new(flows)])
        } else {
            let mut parts: Vec<Vec<(FlowKey, FlowValue)>> = (0..n)
                .map(|_| Vec::with_capacity(len / n + len / (4 * n) + 1))
                .collect();
            for f in flows {
                parts[self.slicer.slice_of(&f.0)].push(f);
            }
            parts.into_iter().map(Arc::new).collect()
        };
        let old = std::mem::replace(
            &mut *self.slices.write().unwrap_or_else(|e| e.into_inner()),
            slices,
        );
        self.len.store(len, Ordering::Relaxed);
        // The old walk is freed here, after the lock (unless a reader still holds it).
        drop(old);
    }

    /// Lands the readings `part` of cycle `cycle` of a walk in parts in place (the writer's
    /// side, [`crate::parts::PartWalk`]): a flow's reading replaces its earlier one, a new
    /// flow is added, and with `end` the flows not read in `cycle` are dropped. A slice a
    /// reader still holds is copied first (the reader keeps what it took); the others are
    /// changed where they are, without copying the table.
    pub(crate) fn merge(
        &self,
        index: &mut Index,
        part: &[(FlowKey, FlowValue)],
        cycle: u64,
        end: bool,
    ) {
        let n = self.slicer.slices();
        if index.at.len() != n {
            index.at = (0..n).map(|_| Positions::default()).collect();
        }
        // One write lock for the part (tens of ms at 131,072 flows; a reader of a slice
        // waits that long at most), the flows written where they are, in the part's order.
        let mut guard = self.slices.write().unwrap_or_else(|e| e.into_inner());
        let all = Arc::make_mut(&mut *guard);
        // Each slice made writable once for the part (an atomic exchange on its count, a
        // copy if a reader holds it), not once per flow.
        let mut writable: Vec<&mut Vec<(FlowKey, FlowValue)>> =
            all.iter_mut().map(Arc::make_mut).collect();
        for &(k, value) in part {
            let s = self.slicer.slice_of(&k);
            let (v, at) = (&mut *writable[s], &mut index.at[s]);
            match at.get(&k) {
                Some(i) => {
                    at.set_cycle(i, cycle);
                    v[i] = (k, value);
                }
                None => {
                    at.push(k, cycle);
                    v.push((k, value));
                }
            }
        }
        let mut len = 0;
        for (s, v) in writable.into_iter().enumerate() {
            if !end {
                len += v.len();
                continue;
            }
            let at = &mut index.at[s];
            let mut i = 0;
            while i < v.len() {
                if at.cycle(i) == cycle {
                    i += 1;
                    continue;
                }
                at.swap_remove(i);
                v.swap_remove(i);
            }
            len += v.len();
        }
        self.len.store(len, Ordering::Relaxed);
    }

    /// All slices as of the last walk (held, they stay as they are).
    pub fn slices(&self) -> Arc<[Slice]> {
        self.all()
    }

    /// All slices as of the last walk.
    fn all(&self) -> Arc<[Slice]> {
        self.slices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Slice `s` as of the last walk (empty past the last slice).
    pub fn slice(&self, s: usize) -> Slice {
        self.all().get(s).cloned().unwrap_or_default()
    }

    /// Flows in the snapshot.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the snapshot has no flow.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every flow of the last walk, slice by slice.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + use<> {
        let all = self.all();
        (0..all.len()).flat_map(move |s| {
            let slice = all[s].clone();
            (0..slice.len()).map(move |i| {
                let (key, value) = slice[i];
                Entry { key, value }
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Flow `i` of a test table (a TLS flow of one subscriber), `i` bytes up.
    pub(crate) fn flow(i: u32) -> (FlowKey, FlowValue) {
        let mut k = FlowKey {
            sub_port: i as u16,
            remote_port: 443,
            proto: 6,
            family: 4,
            ..FlowKey::default()
        };
        k.sub_addr[..4].copy_from_slice(&[100, 64, 0, 1]);
        k.remote_addr[..4].copy_from_slice(&(0xcb00_7100 | (i >> 16)).to_be_bytes());
        let v = FlowValue {
            bytes: [u64::from(i), 1],
            ..FlowValue::default()
        };
        (k, v)
    }

    #[test]
    fn a_walk_lands_whole_in_the_slices_of_its_keys() {
        let snap = Snapshot::new(Slicer::new(8));
        assert!(snap.is_empty() && snap.iter().next().is_none());
        let walk: Vec<_> = (0..10_000).map(flow).collect();
        snap.replace(walk.clone());
        assert_eq!(snap.len(), 10_000);
        let mut seen: Vec<_> = snap.iter().map(|e| (*e.key(), *e.value())).collect();
        let mut want = walk.clone();
        seen.sort_by_key(|f| f.0.sub_port);
        want.sort_by_key(|f| f.0.sub_port);
        assert_eq!(seen, want);
        for s in 0..8 {
            let slice = snap.slice(s);
            assert!(!slice.is_empty());
            assert!(slice.iter().all(|(k, _)| snap.slicer().slice_of(k) == s));
        }
        assert!(snap.slice(8).is_empty());
        // A reader keeps the slices it took while a new walk lands.
        let held = snap.slice(0);
        snap.replace(walk[..10].to_vec());
        assert_eq!(snap.len(), 10);
        assert_eq!(snap.iter().count(), 10);
        assert!(held.len() > 10);
    }
}
