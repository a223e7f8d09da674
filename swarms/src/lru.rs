//! A map that remembers the order its entries were last touched in, so the table can evict
//! the least recently seen swarm or flow in O(log n) when a cap is reached and drop idle
//! entries from the old end.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

/// Entries with their last touch; `order` maps a touch's sequence number back to its key.
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    map: HashMap<K, (V, u64)>,
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
        self.map.get(k).map(|(v, _)| v)
    }

    /// The entry, marked as the most recently used.
    pub(crate) fn touch(&mut self, k: &K) -> Option<&mut V> {
        let (v, seq) = self.map.get_mut(k)?;
        self.order.remove(seq);
        *seq = self.next;
        self.order.insert(self.next, k.clone());
        self.next += 1;
        Some(v)
    }

    /// Inserts (or replaces) `k` as the most recently used entry.
    pub(crate) fn insert(&mut self, k: K, v: V) {
        if let Some((_, seq)) = self.map.insert(k.clone(), (v, self.next)) {
            self.order.remove(&seq);
        }
        self.order.insert(self.next, k);
        self.next += 1;
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let (v, seq) = self.map.remove(k)?;
        self.order.remove(&seq);
        Some(v)
    }

    /// The least recently used entry.
    pub(crate) fn oldest(&self) -> Option<(&K, &V)> {
        let (_, k) = self.order.first_key_value()?;
        self.map.get(k).map(|(v, _)| (k, v))
    }

    /// Removes and returns the least recently used entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, k) = self.order.pop_first()?;
        let (v, _) = self.map.remove(&k)?;
        Some((k, v))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, (v, _))| (k, v))
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
    }
}
