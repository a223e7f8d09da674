//! DNS-assisted labels: what subscribers' plain DNS answers (UDP and TCP port 53) said, so
//! that a flow whose own name is hidden or absent (ECH, QUIC without a readable name, a
//! bare address) to an address answered for a video service's name still gets
//! `video.<service>`.
//!
//! The trust rule. An answer is believed only when it answers a query this subscriber was
//! seen sending: same transport, same subscriber and resolver address and port, same
//! transaction id and same question name (two-way confirmation, as everywhere else in the
//! classifier). And what it teaches is kept under the subscriber's own address: an entry
//! is `(subscriber, answered address) → (service, expiry)`, so one subscriber's answers,
//! forged or not, only ever label that subscriber's own flows. A subscriber that forges
//! answers to itself can make its own flows to some address `video.<service>`, no one
//! else's; and it could as well have sent a matching SNI. HTTPS records (RFC 9460) of a
//! video service add `(subscriber, ECH public name) → (service, expiry)` entries, under
//! the same rule and bounds: they tell a real ECH hello's outer SNI (the front's name)
//! from a GREASE one's (a real name).
//!
//! The bounds. At most `capacity` entries (default 65,536); a new one when full first drops
//! the expired, then the entry that expires soonest ("oldest expiry first": it is the one
//! the resolver itself would forget first); and one subscriber holds at most
//! [`MAX_PER_SUBSCRIBER`] entries, past which its own soonest expiry goes. TTLs are
//! clamped to [`MIN_TTL_S`, `MAX_TTL_S`]: at least 30 s because clients keep using an address for a while past a short TTL
//! (connection pools, browsers' own caches, the flow that starts just after the answer),
//! at most a day because addresses move between tenants of a CDN and a week-long TTL would
//! keep a stale video name on someone else's address. Queries wait for their answer at
//! most [`QUERY_WAIT_NS`] and at most `capacity / 4` at once (the oldest dropped), and a
//! DNS-over-TCP direction holds at most [`TCP_HOLD`] bytes of an incomplete message.

use std::{
    collections::{BTreeSet, VecDeque},
    net::{IpAddr, SocketAddr},
};

use crate::{
    flow::{Direction, FlowKey, FxMap},
    hosts::{HostList, HostMatch},
    packet::TCP,
    protocols::dns_message,
};

/// Answers are remembered at least this long (seconds).
pub const MIN_TTL_S: u64 = 30;
/// Answers are remembered at most this long (seconds).
pub const MAX_TTL_S: u64 = 86_400;
/// A query waits this long for its answer (ns).
pub const QUERY_WAIT_NS: u64 = 10_000_000_000;
/// Bytes of an incomplete DNS-over-TCP message held per direction (answers longer than
/// this are not read; they are rare: a few A records fit in a few hundred bytes).
pub const TCP_HOLD: usize = 4096;
/// Entries one subscriber holds at most (when the map is larger): a household resolves a
/// few hundred video addresses a day; a subscriber answering itself with many cannot push
/// everyone else's out.
pub const MAX_PER_SUBSCRIBER: usize = 4096;
/// DNS-over-TCP directions with bytes held, at most.
const TCP_STREAMS: usize = 1024;

/// A query seen from a subscriber: transport, subscriber and resolver, transaction id.
type QueryKey = (u8, SocketAddr, SocketAddr, u16);
/// An entry: the subscriber's address and an address its resolver answered with.
type HintKey = (IpAddr, Target);

/// What an entry is about, for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Target {
    /// An address answered for the service's name.
    Addr(IpAddr),
    /// The public name of an ECH configuration the service's HTTPS record offered: the
    /// outer SNI of this subscriber's ECH hellos to the service.
    EchFront(Box<str>),
}

/// The answers remembered, per subscriber.
#[derive(Debug)]
pub struct DnsHints {
    capacity: usize,
    entries: FxMap<HintKey, (String, u64)>,
    /// The entries by expiry, soonest first.
    by_expiry: BTreeSet<(u64, HintKey)>,
    /// Each subscriber's entries by expiry.
    by_subscriber: FxMap<IpAddr, BTreeSet<(u64, Target)>>,
    /// Queries waiting for their answer: the question's name, when asked.
    queries: FxMap<QueryKey, (String, u64)>,
    query_order: VecDeque<(u64, QueryKey)>,
    /// DNS over TCP: bytes of incomplete messages per flow and direction.
    tcp: FxMap<(FlowKey, Direction), (Vec<u8>, u64)>,
    /// Answers ignored because no query of theirs was seen (forged or unsolicited).
    unsolicited: u64,
}

impl DnsHints {
    /// Remembers at most `capacity` (subscriber, address) pairs.
    pub fn new(capacity: usize) -> DnsHints {
        DnsHints {
            capacity: capacity.max(1),
            entries: FxMap::default(),
            by_expiry: BTreeSet::new(),
            by_subscriber: FxMap::default(),
            queries: FxMap::default(),
            query_order: VecDeque::new(),
            tcp: FxMap::default(),
            unsolicited: 0,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Answers ignored because they answered no query seen from their subscriber.
    pub fn unsolicited(&self) -> u64 {
        self.unsolicited
    }

    /// The video service `subscriber`'s resolver answered `addr` for, if the answer has not
    /// expired at `now` (ns).
    pub fn service(&self, subscriber: IpAddr, addr: IpAddr, now: u64) -> Option<&str> {
        self.live(&(subscriber, Target::Addr(addr)), now)
    }

    /// The video service whose HTTPS record offered `subscriber` an ECH configuration with
    /// the public name `outer` (lower case), if the answer has not expired at `now`.
    pub fn ech_front(&self, subscriber: IpAddr, outer: &str, now: u64) -> Option<&str> {
        self.live(&(subscriber, Target::EchFront(outer.into())), now)
    }

    fn live(&self, key: &HintKey, now: u64) -> Option<&str> {
        match self.entries.get(key) {
            Some((s, exp)) if *exp > now => Some(s),
            _ => None,
        }
    }

    /// Takes one packet of a flow to a resolver's port 53 (`key.dst`, the flow's `Up` side
    /// being the subscriber): queries going up are noted, answers coming down to a noted
    /// query are remembered when a name of their chain is a video service's.
    pub fn observe(
        &mut self,
        key: &FlowKey,
        dir: Direction,
        payload: &[u8],
        now: u64,
        hosts: &HostList,
    ) {
        if key.dst.port() != 53 || payload.is_empty() {
            return;
        }
        if key.proto != TCP {
            self.message(key, dir, payload, now, hosts);
            return;
        }
        let slot = (*key, dir);
        if !self.tcp.contains_key(&slot) && self.tcp.len() >= TCP_STREAMS {
            // Full (of streams that ended unseen, say): the one idle longest goes. A scan
            // of at most `TCP_STREAMS` entries, only when full.
            if let Some(oldest) = self
                .tcp
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.tcp.remove(&oldest);
            }
        }
        let (mut buf, _) = self.tcp.remove(&slot).unwrap_or_default();
        buf.extend_from_slice(payload);
        let (msgs, used) = dns_message::tcp_messages(&buf);
        let msgs: Vec<Vec<u8>> = msgs.into_iter().map(<[u8]>::to_vec).collect();
        for m in &msgs {
            self.message(key, dir, m, now, hosts);
        }
        buf.drain(..used);
        // Segments out of order or lost make garbage of the framing; such a direction is
        // given up rather than held.
        if !buf.is_empty() && buf.len() <= TCP_HOLD {
            self.tcp.insert(slot, (buf, now));
        }
    }

    /// Ends a flow's DNS-over-TCP state.
    pub fn flow_ended(&mut self, key: &FlowKey) {
        for d in [Direction::Up, Direction::Down] {
            self.tcp.remove(&(*key, d));
        }
    }

    fn message(&mut self, key: &FlowKey, dir: Direction, m: &[u8], now: u64, hosts: &HostList) {
        let Some(msg) = dns_message::parse(m) else {
            return;
        };
        let Some((qname, _)) = msg.question.as_ref() else {
            return;
        };
        let qkey = (key.proto, key.src, key.dst, msg.id);
        self.drop_stale_queries(now);
        match (dir, msg.response) {
            (Direction::Up, false) => {
                let cap = (self.capacity / 4).max(1);
                while self.query_order.len() >= cap {
                    let Some((t, k)) = self.query_order.pop_front() else {
                        break;
                    };
                    if self.queries.get(&k).is_some_and(|(_, at)| *at == t) {
                        self.queries.remove(&k);
                    }
                }
                self.queries.insert(qkey, (qname.clone(), now));
                self.query_order.push_back((now, qkey));
            }
            (Direction::Down, true) => {
                match self.queries.get(&qkey) {
                    Some((asked, _)) if asked == qname => {}
                    _ => {
                        self.unsolicited += 1;
                        return;
                    }
                }
                // One answer per query: a second (a forged copy racing the real one) finds
                // nothing to answer.
                self.queries.remove(&qkey);
                if msg.rcode != 0 {
                    return;
                }
                let Some(res) = dns_message::resolve(&msg) else {
                    return;
                };
                let service = res.names.iter().find_map(|n| match hosts.lookup(n) {
                    Some(HostMatch::Video(s)) => Some(s),
                    _ => None,
                });
                let Some(service) = service else {
                    return;
                };
                for (addr, ttl) in res.addrs {
                    let ttl_ns = (ttl as u64).clamp(MIN_TTL_S, MAX_TTL_S) * 1_000_000_000;
                    self.insert(
                        (key.src.ip(), Target::Addr(addr)),
                        service.clone(),
                        now.saturating_add(ttl_ns),
                        now,
                    );
                }
                for (front, ttl) in res.ech {
                    let ttl_ns = (ttl as u64).clamp(MIN_TTL_S, MAX_TTL_S) * 1_000_000_000;
                    let k = (key.src.ip(), Target::EchFront(front.into()));
                    self.insert(k, service.clone(), now.saturating_add(ttl_ns), now);
                }
            }
            _ => {}
        }
    }

    fn drop_stale_queries(&mut self, now: u64) {
        while let Some(&(t, k)) = self.query_order.front() {
            if now.saturating_sub(t) <= QUERY_WAIT_NS {
                break;
            }
            self.query_order.pop_front();
            if self.queries.get(&k).is_some_and(|(_, at)| *at == t) {
                self.queries.remove(&k);
            }
        }
    }

    fn insert(&mut self, key: HintKey, service: String, expiry: u64, now: u64) {
        if let Some(&(_, old)) = self.entries.get(&key) {
            self.remove(old, key.clone());
        }
        // The expired go first (each entry is dropped once: amortised constant work);
        // then, when the map is full of live entries, the one expiring soonest.
        while let Some((exp, k)) = self.by_expiry.first().cloned()
            && (exp <= now || self.entries.len() >= self.capacity)
        {
            self.remove(exp, k);
        }
        // One subscriber's answers (from a resolver of its own, say, answering with many
        // addresses) may not push everyone else's out: past its share, its own soonest
        // expiry goes.
        let share = self.capacity.min(MAX_PER_SUBSCRIBER);
        while let Some(own) = self.by_subscriber.get(&key.0)
            && own.len() >= share
            && let Some((exp, t)) = own.first().cloned()
        {
            self.remove(exp, (key.0, t));
        }
        self.entries.insert(key.clone(), (service, expiry));
        self.by_subscriber
            .entry(key.0)
            .or_default()
            .insert((expiry, key.1.clone()));
        self.by_expiry.insert((expiry, key));
    }

    fn remove(&mut self, expiry: u64, key: HintKey) {
        self.entries.remove(&key);
        let (sub, target) = key;
        if let Some(own) = self.by_subscriber.get_mut(&sub) {
            own.remove(&(expiry, target.clone()));
            if own.is_empty() {
                self.by_subscriber.remove(&sub);
            }
        }
        self.by_expiry.remove(&(expiry, (sub, target)));
    }
}

#[cfg(test)]
#[path = "dns_hints_tests.rs"]
mod tests;
