//! A map that remembers the order its entries were last touched in, so the table can evict
//! the least recently seen swarm or flow when a cap is reached and drop idle entries from
//! the old end.
//!
//! A touch is one hash lookup and a counter store: the walk touches every attributed flow
//! each second, so the order queue is fixed up lazily, when an entry reaches its front
//! touched since it was queued (it is queued again at its last touch, once per touch at
//! most).

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

/// An entry: its value, its last touch, and where it sits in the queue.
#[derive(Debug)]
struct Slot<V> {
    value: V,
    touched: u64,
    queued: u64,
}

/// Entries with their last touch; `order` maps a queue position back to its key (one per
/// entry).
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    map: HashMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(crate) fn new() -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|s| &s.value)
    }

    /// The entry, marked as the most recently used.
    pub(crate) fn touch(&mut self, k: &K) -> Option<&mut V> {
        let slot = self.map.get_mut(k)?;
        slot.touched = self.next;
        self.next += 1;
        Some(&mut slot.value)
    }

    /// Inserts (or replaces) `k` as the most recently used entry.
    pub(crate) fn insert(&mut self, k: K, value: V) {
        let seq = self.next;
        self.next += 1;
        let slot = Slot {
            value,
            touched: seq,
            queued: seq,
        };
        if let Some(old) = self.map.insert(k.clone(), slot) {
            self.order.remove(&old.queued);
        }
        self.order.insert(seq, k);
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let slot = self.map.remove(k)?;
        self.order.remove(&slot.queued);
        Some(slot.value)
    }

    /// Requeues front entries touched since they were queued, until the front is the least
    /// recently used entry.
    fn settle(&mut self) {
        while let Some(front) = self.order.first_entry() {
            let Some(slot) = self.map.get_mut(front.get()) else {
                front.remove();
                continue;
            };
            if slot.touched == slot.queued {
                return;
            }
            slot.queued = slot.touched;
            let k = front.remove();
            self.order.insert(slot.touched, k);
        }
    }

    /// The least recently used entry.
    pub(crate) fn oldest(&mut self) -> Option<(&K, &V)> {
        self.settle();
        let (_, k) = self.order.first_key_value()?;
        self.map.get(k).map(|s| (k, &s.value))
    }

    /// Removes and returns the least recently used entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        self.settle();
        let (_, k) = self.order.pop_first()?;
        let slot = self.map.remove(&k)?;
        Some((k, slot.value))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, s)| (k, &mut s.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_in_touch_order() {
        let mut l = Lru::new();
        l.insert(1, "a");
        l.insert(2, "b");
        l.insert(3, "c");
        assert!(l.touch(&1).is_some());
        assert_eq!(l.pop_oldest(), Some((2, "b")));
        assert_eq!(l.oldest(), Some((&3, &"c")));
        l.insert(3, "C");
        assert_eq!(l.pop_oldest(), Some((1, "a")));
        assert_eq!(l.remove(&3), Some("C"));
        assert_eq!(l.len(), 0);
        assert_eq!(l.pop_oldest(), None);
        // Many touches between evictions: still least recently used first.
        for k in 0..5 {
            l.insert(k, "x");
        }
        for k in [3, 0, 3, 4, 1] {
            l.touch(&k);
        }
        let order: Vec<i32> = std::iter::from_fn(|| l.pop_oldest().map(|(k, _)| k)).collect();
        assert_eq!(order, vec![2, 0, 3, 4, 1]);
    }
}
