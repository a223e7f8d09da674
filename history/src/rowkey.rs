//! Looking a pending row up by borrowed parts: the subscriber reader adds a second's
//! differences to three or so rows of every subscriber that moved (100,000 a second in
//! the daemon's CPU bench), and a key made for each lookup was two strings allocated and
//! freed per row. [`RowKey`] lets the pending map be searched with `&str`s; a key is
//! allocated only for a row that is new. The borrowed parts hash as the owned key does
//! (the same fields, in the same order, each as its `Hash` writes it: a `String` as its
//! `str`).

use std::{
    borrow::Borrow,
    hash::{Hash, Hasher},
};

use super::{Key, Pending, Values};

/// A pending row's key `(minute, subscriber, name, dir)`, owned or borrowed, equal and
/// hashed as the owned `(i64, Key)` is.
pub(crate) trait RowKey {
    fn parts(&self) -> (i64, &str, &str, u8);
}

impl RowKey for (i64, Key) {
    fn parts(&self) -> (i64, &str, &str, u8) {
        (self.0, &self.1.subscriber, &self.1.name, self.1.dir)
    }
}

impl RowKey for (i64, &str, &str, u8) {
    fn parts(&self) -> (i64, &str, &str, u8) {
        *self
    }
}

impl<'a> Borrow<dyn RowKey + 'a> for (i64, Key) {
    fn borrow(&self) -> &(dyn RowKey + 'a) {
        self
    }
}

impl PartialEq for dyn RowKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn RowKey + '_ {}

impl Hash for dyn RowKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

/// Adds `v` to the pending row `(minute, subscriber, name, dir)`, made if new.
pub(crate) fn add(
    pending: &mut Pending,
    minute: i64,
    subscriber: &str,
    name: &str,
    dir: u8,
    v: &Values,
) {
    let look: &dyn RowKey = &(minute, subscriber, name, dir);
    match pending.get_mut(look) {
        Some(row) => row.add(v),
        None => {
            let key = Key {
                subscriber: subscriber.to_string(),
                name: name.to_string(),
                dir,
            };
            pending.entry((minute, key)).or_default().add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: i64, s: &str, n: &str, d: u8) -> (i64, Key) {
        (
            t,
            Key {
                subscriber: s.into(),
                name: n.into(),
                dir: d,
            },
        )
    }

    #[test]
    fn borrowed_parts_hash_and_compare_as_the_owned_key_and_find_its_row() {
        let keys = [
            key(60, "a", "p2p", 0),
            key(60, "a", "p2p", 1),
            key(60, "a", "web", 0),
            key(60, "ab", "label:dns", 0),
            key(60, "b", "label:dns", 1),
            key(120, "a", "p2p", 0),
        ];
        use std::hash::BuildHasher as _;
        let hasher = std::hash::RandomState::new();
        for x in &keys {
            let bx: &dyn RowKey = x;
            assert_eq!(hasher.hash_one(bx), hasher.hash_one(x), "{x:?}");
            for y in &keys {
                let by: &dyn RowKey = y;
                assert_eq!(bx == by, x == y, "{x:?} against {y:?}");
            }
        }
        let mut pending = Pending::new();
        let one = Values {
            bytes: 10,
            packets: 1,
            ..Values::default()
        };
        add(&mut pending, 60, "a", "p2p", 1, &one);
        add(&mut pending, 60, "a", "p2p", 1, &one);
        add(&mut pending, 60, "a", "p2p", 0, &one);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[&key(60, "a", "p2p", 1)].bytes, 20);
        assert_eq!(pending[&key(60, "a", "p2p", 0)].packets, 1);
    }
}
