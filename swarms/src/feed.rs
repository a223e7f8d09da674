//! The daemon's side of the table in one place: payload samples in, the flow table's
//! byte counters in (turned into deltas here), interval rows out. [`Feed`] holds a
//! [`SwarmTable`] and the last byte counters of each attributed flow.

use std::collections::HashMap;

use peerwarden_common::{
    Direction, FlowKey,
    flow::{PROTO_TCP, PROTO_UDP},
};

use crate::{Attribution, Bytes, Observed, Subscribers, SwarmId, SwarmTable, Transport, sighting};

/// An attributed flow's counters as of the last walk.
#[derive(Debug, Clone, Copy)]
struct Base {
    bytes: [u64; 2],
    /// The walk that last saw the flow in the kernel's table.
    walk: u64,
}

/// A [`SwarmTable`] fed from samples and flow-table walks.
#[derive(Debug)]
pub struct Feed {
    table: SwarmTable,
    base: HashMap<FlowKey, Base>,
    /// Encrypted flows tried through their endpoint (once each), with the last walk that
    /// saw them.
    tried: HashMap<FlowKey, u64>,
    walks: u64,
}

impl Feed {
    /// A feed for `table`.
    pub fn new(table: SwarmTable) -> Self {
        Feed {
            table,
            base: HashMap::new(),
            tried: HashMap::new(),
            walks: 0,
        }
    }

    /// The table.
    pub fn table(&self) -> &SwarmTable {
        &self.table
    }

    /// Reads one payload sample of flow `key` travelling `dir` (`now`: unix seconds). A flow
    /// it attributes is counted from its first byte: the kernel's counters of the flow are
    /// all its own, the handshake being its first payload.
    pub fn sample(
        &mut self,
        key: &FlowKey,
        dir: Direction,
        payload: &[u8],
        now: u64,
        subs: &impl Subscribers,
    ) -> Option<Observed> {
        let transport = match key.proto {
            PROTO_TCP => Transport::Tcp,
            PROTO_UDP => Transport::Udp,
            _ => return None,
        };
        let s = sighting(transport, payload)?;
        let observed = self.table.observe(key, dir, &s, now, subs);
        if let Observed::Flow(_) = observed {
            self.follow(key);
        }
        Some(observed)
    }

    /// A flow labelled encrypted BitTorrent: attributed through its endpoint's announces
    /// when that is sound (see [`SwarmTable::attribute_by_endpoint`]).
    pub fn encrypted(&mut self, key: &FlowKey, now: u64, subs: &impl Subscribers) -> Attribution {
        let a = self.table.attribute_by_endpoint(key, now, subs);
        if let Attribution::Swarm(_) = a {
            self.follow(key);
        }
        a
    }

    fn follow(&mut self, key: &FlowKey) {
        let walk = self.walks;
        self.base.entry(*key).or_insert(Base {
            bytes: [0, 0],
            walk,
        });
    }

    /// One walk of the kernel's flow table: `(key, [up, down] bytes, try the endpoint)` of
    /// every flow, the flag set for BitTorrent peer flows whose hash no sample may show:
    /// encrypted ones, and those the kernel labelled by its own fingerprint (it sends no
    /// sample of a flow it decided: the handshake never reaches the deep tier). Such a flow
    /// not attributed yet is tried once through its endpoint's announces
    /// ([`Feed::encrypted`]); the attributed flows' bytes since the last walk go
    /// to their swarms; attributed flows no longer in the table are forgotten. Returns how
    /// many flows were accounted.
    pub fn walk<'a>(
        &mut self,
        flows: impl IntoIterator<Item = (&'a FlowKey, [u64; 2], bool)>,
        now: u64,
        subs: &impl Subscribers,
    ) -> usize {
        self.walks += 1;
        let walk = self.walks;
        let mut accounted = 0;
        for (key, bytes, try_endpoint) in flows {
            if try_endpoint && !self.base.contains_key(key) {
                let first = self.tried.insert(*key, walk).is_none();
                if first {
                    self.encrypted(key, now, subs);
                }
            }
            let Some(base) = self.base.get_mut(key) else {
                continue;
            };
            // Counters below the last reading: the kernel made the flow anew.
            let delta = |d: usize| bytes[d].checked_sub(base.bytes[d]).unwrap_or(bytes[d]);
            let (up, down) = (delta(0), delta(1));
            base.bytes = bytes;
            base.walk = walk;
            if self.table.account(key, up, down, now, subs).is_some() {
                accounted += 1;
            } else {
                // The table let the flow go (idle or evicted).
                self.base.remove(key);
            }
        }
        self.tried.retain(|_, w| *w == walk);
        let table = &mut self.table;
        self.base.retain(|key, b| {
            // Followed since the last walk (b.walk == walk - 1 and not seen: gone).
            let keep = b.walk == walk || b.walk == walk - 1 && b.bytes == [0, 0];
            if !keep {
                table.forget_flow(key);
            }
            keep
        });
        accounted
    }

    /// The interval's rows (each swarm's bytes since the last call), then expiry as of
    /// `now`: call it once a minute and store the rows.
    pub fn minute(&mut self, now: u64) -> Vec<(SwarmId, Bytes)> {
        let rows = self.table.take_interval();
        self.table.expire(now);
        rows
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
