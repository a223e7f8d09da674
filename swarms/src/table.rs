//! The swarm table: which flows belong to which swarm, and per swarm the subscribers taking
//! part, the bytes split into local↔local and local↔remote (transit), and the peers seen.
//!
//! Flows are the kernel's flow keys (`peerwarden_common::flow::FlowKey`, written from the
//! subscriber's side). Inside the table a flow is its *conversation*: the two endpoints in a
//! fixed order and the protocol, so both orientations of one TCP or UDP conversation share
//! one attribution.
//!
//! Local↔local counting. A conversation between two subscribers A and B crosses the gateway
//! twice, once per direction, and both directions enter from the subscriber side: A's packets
//! are counted as `up` in the entry keyed from A (sub = A, remote = B), B's as `up` in the
//! entry keyed from B. So the conversation's bytes are exactly the two entries' `up` deltas,
//! each added once to the swarm's local bytes, and both A and B take part. A `down` delta on
//! such an entry could only be the same bytes seen a second time (on the uplink) and is not
//! added.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use peerwarden_common::{Direction, flow::FlowKey};
use serde::Serialize;

use crate::{
    config::SwarmsConfig,
    endpoint::{Attribution, EndpointAnnounces},
    extract::{ListenPort, Sighting, Source},
    infohash::{InfoHash, PseudonymKey, SwarmId},
    lru::Lru,
};

/// Distinct remote peer addresses counted per swarm at most.
pub const MAX_PEERS_PER_SWARM: usize = 4096;
/// Subscribers kept per swarm at most.
pub const MAX_SUBSCRIBERS_PER_SWARM: usize = 4096;

/// Tells subscriber addresses from the rest (the policy's subscriber prefixes).
pub trait Subscribers {
    /// Whether `addr` is a subscriber's.
    fn is_subscriber(&self, addr: IpAddr) -> bool;
}

impl<F: Fn(IpAddr) -> bool> Subscribers for F {
    fn is_subscriber(&self, addr: IpAddr) -> bool {
        self(addr)
    }
}

/// One subscriber's part in a swarm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Share {
    /// Bytes it sent in the swarm (to subscribers and to the internet).
    pub sent: u64,
    /// Bytes it received in the swarm.
    pub received: u64,
    /// Unix seconds it was first seen in the swarm.
    pub first_seen: u64,
    /// Unix seconds it was last seen in the swarm.
    pub last_seen: u64,
}

/// Byte counts of a swarm; each byte is counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    /// Subscriber to subscriber (stays inside the network).
    pub local: u64,
    /// Subscribers to the internet (transit, outbound).
    pub transit_up: u64,
    /// The internet to subscribers (transit, inbound).
    pub transit_down: u64,
}

impl Bytes {
    /// Transit both ways.
    pub fn transit(&self) -> u64 {
        self.transit_up.saturating_add(self.transit_down)
    }

    /// Everything.
    pub fn total(&self) -> u64 {
        self.transit().saturating_add(self.local)
    }

    fn add(&mut self, o: Bytes) {
        self.local = self.local.saturating_add(o.local);
        self.transit_up = self.transit_up.saturating_add(o.transit_up);
        self.transit_down = self.transit_down.saturating_add(o.transit_down);
    }
}

/// One swarm.
#[derive(Debug, Clone)]
pub struct Swarm {
    /// Bytes since the swarm was first seen.
    pub bytes: Bytes,
    /// Bytes since the last [`SwarmTable::take_interval`].
    pending: Bytes,
    /// Subscribers taking part.
    pub subscribers: HashMap<IpAddr, Share>,
    /// Distinct remote peer addresses (at most [`MAX_PEERS_PER_SWARM`]).
    remote_peers: HashSet<IpAddr>,
    /// More remote peers than kept were seen.
    pub remote_peers_capped: bool,
    /// Unix seconds.
    pub first_seen: u64,
    /// Unix seconds.
    pub last_seen: u64,
}

impl Swarm {
    fn new(now: u64) -> Self {
        Swarm {
            bytes: Bytes::default(),
            pending: Bytes::default(),
            subscribers: HashMap::new(),
            remote_peers: HashSet::new(),
            remote_peers_capped: false,
            first_seen: now,
            last_seen: now,
        }
    }

    /// Distinct remote peer addresses seen (a floor when [`Swarm::remote_peers_capped`]).
    pub fn remote_peers(&self) -> usize {
        self.remote_peers.len()
    }

    fn join(&mut self, addr: IpAddr, now: u64) -> Option<&mut Share> {
        if !self.subscribers.contains_key(&addr)
            && self.subscribers.len() >= MAX_SUBSCRIBERS_PER_SWARM
        {
            return None;
        }
        let s = self.subscribers.entry(addr).or_insert(Share {
            first_seen: now,
            ..Share::default()
        });
        s.last_seen = now;
        Some(s)
    }

    fn peer(&mut self, addr: IpAddr) {
        if self.remote_peers.len() < MAX_PEERS_PER_SWARM {
            self.remote_peers.insert(addr);
        } else if !self.remote_peers.contains(&addr) {
            self.remote_peers_capped = true;
        }
    }
}

/// A swarm as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmSummary {
    /// 40 hex digits: the info-hash, or its pseudonym.
    pub id: String,
    /// True when `id` is a pseudonym.
    pub pseudonymous: bool,
    /// Subscribers taking part.
    pub subscribers: usize,
    /// Bytes.
    pub bytes: Bytes,
    /// Distinct remote peer addresses.
    pub remote_peers: usize,
    /// Unix seconds.
    pub first_seen: u64,
    /// Unix seconds.
    pub last_seen: u64,
}

/// The table's own counters (for the daemon's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// Swarms evicted because `max_swarms` was reached.
    pub evicted_swarms: u64,
    /// Swarms dropped after `retention` without being seen.
    pub expired_swarms: u64,
    /// Flows evicted because `max_flows` was reached.
    pub evicted_flows: u64,
    /// Flows attributed through their endpoint's announce.
    pub endpoint_attributed: u64,
    /// Flows whose endpoint announced several swarms (refused).
    pub unattributed_ambiguous: u64,
    /// Flows whose endpoint announced nothing within the TTL.
    pub unattributed_unknown: u64,
    /// Announces and DHT queries received by subscribers (not their own: ignored).
    pub ignored_inbound: u64,
    /// Subscribers not added because a swarm had [`MAX_SUBSCRIBERS_PER_SWARM`].
    pub refused_subscribers: u64,
}

/// How a sighting was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The flow is now attributed to the swarm (a handshake).
    Flow(SwarmId),
    /// The subscriber takes part in the swarm (its own announce or query).
    Participant(SwarmId),
    /// Not used: an announce or query sent to a subscriber, or a flow with no subscriber end.
    Ignored,
}

/// A flow's conversation: endpoints ordered, so both orientations are one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Conversation {
    proto: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

impl Conversation {
    fn of(k: &FlowKey) -> Self {
        let x = (k.sub_ip(), k.sub_port);
        let y = (k.remote_ip(), k.remote_port);
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        Conversation {
            proto: k.proto,
            a,
            b,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FlowState {
    swarm: SwarmId,
    last_seen: u64,
}

/// Swarms by id, and the flows attributed to them. See the crate docs for how the daemon
/// drives it.
#[derive(Debug)]
pub struct SwarmTable {
    swarms: Lru<SwarmId, Swarm>,
    flows: Lru<Conversation, FlowState>,
    endpoints: EndpointAnnounces,
    key: Option<PseudonymKey>,
    max_swarms: usize,
    max_flows: usize,
    retention_secs: u64,
    flow_idle_secs: u64,
    stats: TableStats,
}

/// The table cannot be built from this config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A setting out of range.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `pseudonymize: true` needs the installation's key.
    #[error("swarms.pseudonymize is on but no pseudonym key was given")]
    MissingKey,
}

impl SwarmTable {
    /// A table for `config`. `key` is the installation's pseudonym key, needed (and only
    /// used) when `config.pseudonymize` is on.
    pub fn new(config: &SwarmsConfig, key: Option<PseudonymKey>) -> Result<Self, TableError> {
        config.check()?;
        let key = match (config.pseudonymize, key) {
            (true, None) => return Err(TableError::MissingKey),
            (true, k) => k,
            (false, _) => None,
        };
        Ok(SwarmTable {
            swarms: Lru::new(),
            flows: Lru::new(),
            endpoints: EndpointAnnounces::new(config.announce_ttl.as_secs(), config.max_flows),
            key,
            max_swarms: config.max_swarms,
            max_flows: config.max_flows,
            retention_secs: config.retention.as_secs(),
            flow_idle_secs: config.flow_idle.as_secs(),
            stats: TableStats::default(),
        })
    }

    /// The id `hash` is kept under: itself, or its pseudonym.
    pub fn swarm_id(&self, hash: &InfoHash) -> SwarmId {
        match &self.key {
            Some(k) => k.pseudonym(hash),
            None => SwarmId {
                bytes: hash.0,
                pseudonymous: false,
            },
        }
    }

    /// Takes a sighting from a packet of flow `key` travelling `dir`, at `now` (unix seconds).
    ///
    /// A peer-wire handshake (either direction) attributes the flow to the swarm and makes
    /// every subscriber end of it a participant (a flow with no subscriber end is ignored). A tracker announce or DHT query counts only
    /// when the subscriber sent it (`Up`): it makes the subscriber a participant, and an
    /// announced listen port is remembered for endpoint attribution. One a subscriber
    /// receives says nothing about it (DHT nodes are asked about any swarm).
    pub fn observe(
        &mut self,
        key: &FlowKey,
        dir: Direction,
        s: &Sighting,
        now: u64,
        subs: &impl Subscribers,
    ) -> Observed {
        let id = self.swarm_id(&s.info_hash);
        let sub = key.sub_ip();
        if s.source == Source::PeerWire {
            if !subs.is_subscriber(sub) && !subs.is_subscriber(key.remote_ip()) {
                return Observed::Ignored;
            }
            self.attribute(key, id, now, subs);
            return Observed::Flow(id);
        }
        if dir != Direction::Up || !subs.is_subscriber(sub) {
            self.stats.ignored_inbound += 1;
            return Observed::Ignored;
        }
        let port = match s.listen_port {
            ListenPort::Port(p) => Some(p),
            ListenPort::Source => Some(key.sub_port),
            ListenPort::None => None,
        };
        if let Some(p) = port {
            self.endpoints.record(sub, p, id, now);
        }
        let swarm = self.swarm_mut(id, now);
        if swarm.join(sub, now).is_none() {
            self.stats.refused_subscribers += 1;
        }
        Observed::Participant(id)
    }

    /// Attributes a flow of a BitTorrent label that showed no hash (MSE/PE) through the
    /// announces of its subscriber-side endpoint (see [`crate::endpoint`] for when that is
    /// sound). On success the flow is attributed as a handshake would.
    pub fn attribute_by_endpoint(
        &mut self,
        key: &FlowKey,
        now: u64,
        subs: &impl Subscribers,
    ) -> Attribution {
        if let Some(f) = self.flows.get(&Conversation::of(key)) {
            return Attribution::Swarm(f.swarm);
        }
        let mut found = self.endpoints.lookup(key.sub_ip(), key.sub_port, now);
        if found == Attribution::Unknown && subs.is_subscriber(key.remote_ip()) {
            found = self.endpoints.lookup(key.remote_ip(), key.remote_port, now);
        }
        match found {
            Attribution::Swarm(id) => {
                self.stats.endpoint_attributed += 1;
                self.attribute(key, id, now, subs);
            }
            Attribution::Ambiguous => self.stats.unattributed_ambiguous += 1,
            Attribution::Unknown => self.stats.unattributed_unknown += 1,
        }
        found
    }

    /// Adds a flow's byte deltas since the last walk (`up`: sent by the subscriber side of
    /// `key`, `down`: received by it). Returns the swarm, or `None` for a flow of no known
    /// swarm (nothing is counted).
    pub fn account(
        &mut self,
        key: &FlowKey,
        up: u64,
        down: u64,
        now: u64,
        subs: &impl Subscribers,
    ) -> Option<SwarmId> {
        let conv = Conversation::of(key);
        let flow = self.flows.touch(&conv)?;
        flow.last_seen = now;
        let id = flow.swarm;
        let (sub, remote) = (key.sub_ip(), key.remote_ip());
        if !subs.is_subscriber(sub) {
            return Some(id);
        }
        let local = subs.is_subscriber(remote);
        let bytes = if local {
            Bytes {
                local: up,
                ..Bytes::default()
            }
        } else {
            Bytes {
                transit_up: up,
                transit_down: down,
                ..Bytes::default()
            }
        };
        let swarm = self.swarm_mut(id, now);
        swarm.bytes.add(bytes);
        swarm.pending.add(bytes);
        let mut refused = 0;
        match swarm.join(sub, now) {
            Some(s) => {
                s.sent = s.sent.saturating_add(up);
                if !local {
                    s.received = s.received.saturating_add(down);
                }
            }
            None => refused += 1,
        }
        if local {
            match swarm.join(remote, now) {
                Some(s) => s.received = s.received.saturating_add(up),
                None => refused += 1,
            }
        }
        self.stats.refused_subscribers += refused;
        Some(id)
    }

    /// Forgets a flow the kernel dropped (its swarm's counts stay).
    pub fn forget_flow(&mut self, key: &FlowKey) {
        self.flows.remove(&Conversation::of(key));
    }

    /// Drops swarms not seen for `retention`, flows idle for `flow_idle`, and expired
    /// announces. Call it every few seconds to minutes.
    pub fn expire(&mut self, now: u64) {
        while let Some((_, s)) = self.swarms.oldest() {
            if s.last_seen.saturating_add(self.retention_secs) > now {
                break;
            }
            self.swarms.pop_oldest();
            self.stats.expired_swarms += 1;
        }
        while let Some((_, f)) = self.flows.oldest() {
            if f.last_seen.saturating_add(self.flow_idle_secs) > now {
                break;
            }
            self.flows.pop_oldest();
        }
        self.endpoints.expire(now);
    }

    /// The bytes each swarm gained since the previous call (swarms with none are left out),
    /// for the history store's per-interval rows.
    pub fn take_interval(&mut self) -> Vec<(SwarmId, Bytes)> {
        let mut out = Vec::new();
        for (id, s) in self.swarms.iter_mut() {
            if s.pending != Bytes::default() {
                out.push((*id, std::mem::take(&mut s.pending)));
            }
        }
        out
    }

    /// The id an API path names (40 hex digits, as [`SwarmSummary::id`] lists it): an
    /// info-hash, or a pseudonym when pseudonyms are on. A real info-hash given while
    /// pseudonyms are on is not mapped through the key, so the API cannot be used to test
    /// whether a known torrent is among the swarms.
    pub fn id_from_hex(&self, hex: &str) -> Option<SwarmId> {
        InfoHash::from_hex(hex).map(|h| SwarmId {
            bytes: h.0,
            pseudonymous: self.key.is_some(),
        })
    }

    /// A swarm.
    pub fn get(&self, id: &SwarmId) -> Option<&Swarm> {
        self.swarms.get(id)
    }

    /// Every swarm, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&SwarmId, &Swarm)> {
        self.swarms.iter()
    }

    /// Every swarm summed up, in no particular order.
    pub fn summaries(&self) -> Vec<SwarmSummary> {
        self.iter()
            .map(|(id, s)| SwarmSummary {
                id: id.to_hex(),
                pseudonymous: id.pseudonymous,
                subscribers: s.subscribers.len(),
                bytes: s.bytes,
                remote_peers: s.remote_peers(),
                first_seen: s.first_seen,
                last_seen: s.last_seen,
            })
            .collect()
    }

    /// Swarms kept.
    pub fn len(&self) -> usize {
        self.swarms.len()
    }

    /// True when no swarm is kept.
    pub fn is_empty(&self) -> bool {
        self.swarms.len() == 0
    }

    /// Flows attributed and kept.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    fn attribute(&mut self, key: &FlowKey, id: SwarmId, now: u64, subs: &impl Subscribers) {
        let conv = Conversation::of(key);
        let state = FlowState {
            swarm: id,
            last_seen: now,
        };
        match self.flows.touch(&conv) {
            Some(f) => *f = state,
            None => {
                if self.flows.len() >= self.max_flows {
                    self.flows.pop_oldest();
                    self.stats.evicted_flows += 1;
                }
                self.flows.insert(conv, state);
            }
        }
        let mut refused = 0;
        let swarm = self.swarm_mut(id, now);
        for addr in [key.sub_ip(), key.remote_ip()] {
            if subs.is_subscriber(addr) {
                if swarm.join(addr, now).is_none() {
                    refused += 1;
                }
            } else {
                swarm.peer(addr);
            }
        }
        self.stats.refused_subscribers += refused;
    }

    /// The swarm, created (evicting the least recently seen past `max_swarms`) if new, and
    /// marked seen at `now`.
    fn swarm_mut(&mut self, id: SwarmId, now: u64) -> &mut Swarm {
        if self.swarms.get(&id).is_none() {
            if self.swarms.len() >= self.max_swarms {
                self.swarms.pop_oldest();
                self.stats.evicted_swarms += 1;
            }
            self.swarms.insert(id, Swarm::new(now));
        }
        match self.swarms.touch(&id) {
            Some(s) => {
                s.last_seen = s.last_seen.max(now);
                s
            }
            None => unreachable!("inserted above"),
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
