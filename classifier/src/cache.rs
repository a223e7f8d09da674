//! The endpoint cache: (transport, address, port) seen speaking a P2P protocol, with an
//! expiry. A flow that has such an endpoint on either side (as sender or receiver) takes
//! the cached protocol provisionally, with confidence `cache`, until its own payload says
//! more. The engine fills it only from flows confirmed in both directions, within a
//! per-subscriber budget (see [`crate::engine`]). The key holds the transport: a TCP
//! endpoint says nothing about UDP on the same port, except where the engine decides so
//! (BitTorrent's shared listen port).

use std::net::SocketAddr;

use peerwarden_common::Label;

use crate::flow::FxMap;

/// A cache key: IP protocol and endpoint.
pub type Endpoint = (u8, SocketAddr);

/// Bounded map of endpoint → (label, expiry).
#[derive(Debug)]
pub struct EndpointCache {
    entries: FxMap<Endpoint, (Label, u64)>,
    ttl_ns: u64,
    capacity: usize,
}

impl EndpointCache {
    /// A cache whose entries live `ttl_ns` after their last confirmation, holding at most
    /// `capacity` endpoints.
    pub fn new(ttl_ns: u64, capacity: usize) -> Self {
        EndpointCache {
            entries: FxMap::default(),
            ttl_ns,
            capacity,
        }
    }

    /// Records that `ep` spoke `label` at `now`.
    pub fn insert(&mut self, ep: Endpoint, label: Label, now: u64) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&ep) {
            // Full: drop what has expired; if nothing has, forget the oldest half. Rare and
            // amortised over `capacity / 2` inserts.
            self.entries.retain(|_, (_, exp)| *exp > now);
            if self.entries.len() >= self.capacity {
                let mut exps: Vec<u64> = self.entries.values().map(|(_, e)| *e).collect();
                exps.sort_unstable();
                let cut = exps[exps.len() / 2];
                self.entries.retain(|_, (_, exp)| *exp > cut);
            }
        }
        self.entries
            .insert(ep, (label, now.saturating_add(self.ttl_ns)));
    }

    /// The label cached for `ep`, if it has not expired at `now`.
    pub fn get(&self, ep: &Endpoint, now: u64) -> Option<Label> {
        self.entries
            .get(ep)
            .filter(|(_, exp)| *exp > now)
            .map(|(l, _)| *l)
    }

    /// Entries held (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_capacity() {
        let ep = |p: u16| (17u8, SocketAddr::from(([198, 51, 100, 7], p)));
        let mut c = EndpointCache::new(100, 4);
        c.insert(ep(6881), Label::Bittorrent, 10);
        assert_eq!(c.get(&ep(6881), 50), Some(Label::Bittorrent));
        assert_eq!(c.get(&ep(6881), 110), None, "expired");
        assert_eq!(c.get(&ep(6882), 50), None);
        assert_eq!(c.get(&(6, ep(6881).1), 50), None, "another transport");
        for p in 0..10 {
            c.insert(ep(p), Label::BittorrentDht, 20 + p as u64);
        }
        assert!(c.len() <= 4);
        assert_eq!(
            c.get(&ep(9), 40),
            Some(Label::BittorrentDht),
            "the newest survive"
        );
    }
}
