//! What spreads a verdict from one flow to others: the endpoint cache, filled only from
//! flows confirmed in both directions, within a per-subscriber budget (issue 11).
//!
//! One subscriber (a flow's `Up` side: the subscriber in the daemon, the initiator offline)
//! teaches at most `budget` new endpoints a minute; refreshing an endpoint already cached is
//! free. Refused learnings are counted for `/metrics`. Never learned: trackers (servers for
//! many swarms), behavioural labels, unspecified, multicast and broadcast addresses, port 0.

use std::net::{IpAddr, SocketAddr};

use peerwarden_common::Label;

use crate::{
    behaviour::HIGH_PORT,
    cache::{Endpoint, EndpointCache},
    flow::{Direction, FlowKey, FxMap, opposite},
    packet::TCP,
};

/// How long a learning budget window lasts.
const MINUTE_NS: u64 = 60 * 1_000_000_000;

/// Subscribers whose learning budget is tracked at most; past it, windows that ended are
/// swept, and if none has, new subscribers are refused until one does.
const MAX_LEARNERS: usize = 1 << 16;

/// The cache and the budget of those who teach it.
#[derive(Debug)]
pub(crate) struct Learning {
    cache: EndpointCache,
    budget: u32,
    /// Per subscriber: (start of the current minute window, endpoints taught in it).
    learners: FxMap<IpAddr, (u64, u32)>,
    learned: u64,
    refused: u64,
}

impl Learning {
    pub(crate) fn new(cache: EndpointCache, budget: u32) -> Learning {
        Learning {
            cache,
            budget,
            learners: FxMap::default(),
            learned: 0,
            refused: 0,
        }
    }

    /// Endpoints taught (new or refreshed entries).
    pub(crate) fn learned(&self) -> u64 {
        self.learned
    }

    /// Endpoints refused for a spent budget.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    /// The label cached for either end of the flow, in the flow's transport's form.
    pub(crate) fn cached(&self, key: &FlowKey, now: u64) -> Option<Label> {
        cached_in(&self.cache, key, now)
    }

    /// Teaches the cache a confirmed flow's endpoints, within the `Up` side's budget.
    pub(crate) fn learn(&mut self, key: &FlowKey, init_dir: Direction, label: Label, now: u64) {
        // Trackers are servers for many swarms, not peers; their endpoints say nothing.
        if label == Label::BittorrentTracker || label == Label::P2pBehavioural {
            return;
        }
        let mut eps: Vec<Endpoint> = [key.src, key.dst]
            .into_iter()
            .filter(|ep| !is_unspecified(ep))
            .map(|ep| (key.proto, ep))
            .collect();
        // BitTorrent clients listen for peer wire (TCP) and uTP/DHT (UDP) on one port
        // (libtorrent, Transmission, qBittorrent: `listen_interfaces`, BEP 29 and BEP 5 share
        // it): the accepting side's high port is taught for the other transport too. Only
        // the responder's: the initiator's port is ephemeral on its transport alone.
        let responder = key.sender(opposite(init_dir));
        if is_bittorrent(label) && responder.port() >= HIGH_PORT && !is_unspecified(&responder) {
            let other = if key.proto == TCP { 17 } else { TCP };
            eps.push((other, responder));
        }
        let sub = key.src.ip();
        let fresh = eps
            .iter()
            .filter(|ep| self.cache.get(ep, now).is_none())
            .count() as u32;
        if fresh > 0 {
            if self.learners.len() >= MAX_LEARNERS && !self.learners.contains_key(&sub) {
                self.learners
                    .retain(|_, (start, _)| now.saturating_sub(*start) < MINUTE_NS);
            }
            if self.learners.len() >= MAX_LEARNERS && !self.learners.contains_key(&sub) {
                self.refused += u64::from(fresh);
                return;
            }
            let w = self.learners.entry(sub).or_insert((now, 0));
            if now.saturating_sub(w.0) >= MINUTE_NS {
                *w = (now, 0);
            }
            if w.1.saturating_add(fresh) > self.budget {
                self.refused += u64::from(fresh);
                return;
            }
            w.1 += fresh;
        }
        for ep in eps {
            self.cache.insert(ep, label, now);
            self.learned += 1;
        }
    }
}

fn cached_in(cache: &EndpointCache, key: &FlowKey, now: u64) -> Option<Label> {
    let l = cache
        .get(&(key.proto, key.src), now)
        .or_else(|| cache.get(&(key.proto, key.dst), now))?;
    Some(transport_form(l, key.proto))
}

fn is_bittorrent(l: Label) -> bool {
    matches!(
        l,
        Label::Bittorrent
            | Label::BittorrentUtp
            | Label::BittorrentDht
            | Label::BittorrentEncrypted
            | Label::BittorrentLsd
    )
}

/// A cached BitTorrent endpoint seen on another transport: TCP flows are peer wire, UDP
/// flows uTP (the DHT and tracker forms are recognised by payload when they occur).
fn transport_form(l: Label, proto: u8) -> Label {
    match l {
        Label::Bittorrent
        | Label::BittorrentUtp
        | Label::BittorrentDht
        | Label::BittorrentEncrypted
        | Label::BittorrentLsd => {
            if proto == TCP {
                Label::Bittorrent
            } else {
                Label::BittorrentUtp
            }
        }
        other => other,
    }
}

/// Endpoints that must never be learned: unspecified, multicast, broadcast, port 0.
fn is_unspecified(ep: &SocketAddr) -> bool {
    let broadcast = match ep.ip() {
        IpAddr::V4(a) => a.is_broadcast() || a.octets()[3] == 255,
        IpAddr::V6(_) => false,
    };
    ep.ip().is_unspecified() || ep.ip().is_multicast() || broadcast || ep.port() == 0
}
