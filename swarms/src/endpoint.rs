//! Attribution of encrypted flows through their endpoint's plaintext announces.
//!
//! An MSE/PE-encrypted peer-wire flow shows no info-hash. What can name its swarm is the
//! same client's plaintext announce: a tracker announce (`port=` over HTTP, the port field
//! over UDP) or a DHT `announce_peer` says "I, at this address, listen on this port for this
//! swarm". A later encrypted flow to that address and port is then taken to be in that swarm.
//!
//! When this is sound: the flow's subscriber-side address and port are the announcing
//! subscriber's address and announced listen port (an incoming connection to the client,
//! or a uTP flow, which shares the listen socket), within [`SwarmsConfig::announce_ttl`] of
//! the announce, and that endpoint announced exactly one swarm in that time.
//!
//! When it is not, and what is done:
//! - Several swarms announced from one endpoint (a client with several torrents shares one
//!   listen port across all of them, the usual case): the flow could be in any of them.
//!   [`Attribution::Ambiguous`]: refused, counted as unattributed.
//! - An outgoing TCP connection leaves from an ephemeral port, not the listen port: no
//!   announce matches, [`Attribution::Unknown`].
//! - NAT behind the subscriber address (a home router with several clients, or CGNAT inside
//!   the subscriber prefix): the announced port is the client's own view and the gateway may
//!   see another, so flows are not matched, or two hosts behind one address share a port
//!   space and one's announce would name the other's flows. The table cannot tell NAT apart;
//!   an operator whose subscriber addresses are shared should not rely on endpoint
//!   attribution (the counts of endpoint-attributed bytes are kept apart for that reason).
//! - After the TTL (the client stopped, or changed torrents): [`Attribution::Unknown`].
//!
//! [`SwarmsConfig::announce_ttl`]: crate::SwarmsConfig::announce_ttl

use std::net::IpAddr;

use crate::{infohash::SwarmId, lru::Lru};

/// Swarms remembered per endpoint: past this many the endpoint is ambiguous anyway.
const PER_ENDPOINT: usize = 4;

/// What an endpoint's announces say about a flow on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// Exactly one swarm announced from this endpoint within the TTL.
    Swarm(SwarmId),
    /// Several swarms announced from it: refused.
    Ambiguous,
    /// No announce from it within the TTL.
    Unknown,
}

/// One endpoint's recent announces: swarm and when last announced (unix seconds).
#[derive(Debug, Default)]
struct Announces {
    recent: Vec<(SwarmId, u64)>,
    /// More swarms than [`PER_ENDPOINT`] were announced since the oldest kept one.
    overflow_until: u64,
}

/// Endpoints (subscriber address, listen port) and the swarms they announced.
#[derive(Debug)]
pub struct EndpointAnnounces {
    map: Lru<(IpAddr, u16), Announces>,
    ttl_secs: u64,
    cap: usize,
}

impl EndpointAnnounces {
    /// An empty set: announces hold for `ttl_secs`, at most `cap` endpoints are kept.
    pub fn new(ttl_secs: u64, cap: usize) -> Self {
        EndpointAnnounces {
            map: Lru::new(),
            ttl_secs,
            cap: cap.max(1),
        }
    }

    /// Endpoints kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no endpoint is kept.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Records that `addr` announced listening on `port` for `swarm` at `now`.
    pub fn record(&mut self, addr: IpAddr, port: u16, swarm: SwarmId, now: u64) {
        let key = (addr, port);
        let ttl = self.ttl_secs;
        let entry = match self.map.touch(&key) {
            Some(e) => e,
            None => {
                if self.map.len() >= self.cap {
                    self.map.pop_oldest();
                }
                self.map.insert(key, Announces::default());
                let Some(e) = self.map.touch(&key) else {
                    return;
                };
                e
            }
        };
        entry.recent.retain(|&(_, t)| t.saturating_add(ttl) > now);
        if let Some(slot) = entry.recent.iter_mut().find(|(s, _)| *s == swarm) {
            slot.1 = now;
        } else if entry.recent.len() < PER_ENDPOINT {
            entry.recent.push((swarm, now));
        } else {
            entry.overflow_until = now.saturating_add(ttl);
        }
    }

    /// The swarm of a flow on `addr`:`port` at `now`.
    pub fn lookup(&self, addr: IpAddr, port: u16, now: u64) -> Attribution {
        let Some(e) = self.map.get(&(addr, port)) else {
            return Attribution::Unknown;
        };
        let mut live = e
            .recent
            .iter()
            .filter(|&&(_, t)| t.saturating_add(self.ttl_secs) > now);
        match (live.next(), live.next()) {
            _ if e.overflow_until > now => Attribution::Ambiguous,
            (Some(&(s, _)), None) => Attribution::Swarm(s),
            (Some(_), Some(_)) => Attribution::Ambiguous,
            (None, _) => Attribution::Unknown,
        }
    }

    /// Drops endpoints whose announces are all older than the TTL.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.ttl_secs;
        while let Some((_, e)) = self.map.oldest() {
            let newest = e.recent.iter().map(|&(_, t)| t).max().unwrap_or(0);
            if newest.saturating_add(ttl) > now || e.overflow_until > now {
                break;
            }
            self.map.pop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> SwarmId {
        SwarmId {
            bytes: [b; 20],
            pseudonymous: false,
        }
    }

    #[test]
    fn one_swarm_per_endpoint_attributes_several_refuse() {
        let a: IpAddr = "100.64.0.1".parse().expect("ip");
        let mut e = EndpointAnnounces::new(1800, 10);
        e.record(a, 6881, id(1), 1000);
        assert_eq!(e.lookup(a, 6881, 1500), Attribution::Swarm(id(1)));
        assert_eq!(e.lookup(a, 6882, 1500), Attribution::Unknown);
        let other: IpAddr = "100.64.0.2".parse().expect("ip");
        assert_eq!(e.lookup(other, 6881, 1500), Attribution::Unknown);
        // A second torrent on the same port: ambiguous until the first's announce expires.
        e.record(a, 6881, id(2), 1600);
        assert_eq!(e.lookup(a, 6881, 1700), Attribution::Ambiguous);
        assert_eq!(e.lookup(a, 6881, 2800), Attribution::Swarm(id(2)));
        assert_eq!(e.lookup(a, 6881, 3400), Attribution::Unknown);
        e.expire(3400);
        assert!(e.is_empty());
    }

    #[test]
    fn overflowing_an_endpoint_stays_ambiguous_and_the_cap_holds() {
        let a: IpAddr = "100.64.0.1".parse().expect("ip");
        let mut e = EndpointAnnounces::new(1800, 2);
        for i in 0..=PER_ENDPOINT as u8 {
            e.record(a, 6881, id(i), 100);
        }
        assert_eq!(e.lookup(a, 6881, 200), Attribution::Ambiguous);
        e.record(a, 1, id(9), 100);
        e.record(a, 2, id(9), 100);
        assert_eq!(e.len(), 2);
        assert_eq!(e.lookup(a, 6881, 200), Attribution::Unknown);
    }
}
