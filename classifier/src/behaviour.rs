//! Behavioural P2P: a host that talks to many distinct peers, with both ports unprivileged,
//! and both accepts and opens such connections, acts as a P2P node. Its flows that no
//! payload detector decided are labelled `p2p.behavioural`.
//!
//! The thresholds are deliberately high: client-server traffic (browsing, DNS, QUIC) uses a
//! well-known port on one side and is never counted, and a host must show incoming *and*
//! outgoing high-port flows to several peers each way.

use std::net::IpAddr;

use crate::flow::FxMap;

/// When a host counts as a P2P node.
#[derive(Debug, Clone, Copy)]
pub struct BehaviourConfig {
    /// Distinct peers over high-port flows, both directions together.
    pub min_peers: usize,
    /// High-port flows the host accepted.
    pub min_inbound: u32,
    /// High-port flows the host opened.
    pub min_outbound: u32,
    /// Hosts tracked at most (beyond, new hosts are not tracked).
    pub max_hosts: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            min_peers: 12,
            min_inbound: 4,
            min_outbound: 4,
            max_hosts: 1 << 18,
        }
    }
}

/// Ports at or above this are "high": ephemeral and P2P listening ports.
pub const HIGH_PORT: u16 = 1024;

#[derive(Debug, Default)]
struct Host {
    /// Distinct peers, up to the threshold (no need to remember more).
    peers: Vec<IpAddr>,
    inbound: u32,
    outbound: u32,
}

/// Per-host counters.
#[derive(Debug)]
pub struct Behaviour {
    cfg: BehaviourConfig,
    hosts: FxMap<IpAddr, Host>,
}

impl Behaviour {
    /// Empty counters.
    pub fn new(cfg: BehaviourConfig) -> Self {
        Behaviour {
            cfg,
            hosts: FxMap::default(),
        }
    }

    /// Counts a new flow opened by `initiator` towards `responder` (ports included).
    pub fn flow_started(&mut self, initiator: (IpAddr, u16), responder: (IpAddr, u16)) {
        if initiator.1 < HIGH_PORT || responder.1 < HIGH_PORT || initiator.0 == responder.0 {
            return;
        }
        let (min_peers, max_hosts) = (self.cfg.min_peers, self.cfg.max_hosts);
        let mut bump = |host: IpAddr, peer: IpAddr, outbound: bool| {
            if self.hosts.len() >= max_hosts && !self.hosts.contains_key(&host) {
                return;
            }
            let h = self.hosts.entry(host).or_default();
            if outbound {
                h.outbound = h.outbound.saturating_add(1);
            } else {
                h.inbound = h.inbound.saturating_add(1);
            }
            if h.peers.len() < min_peers && !h.peers.contains(&peer) {
                h.peers.push(peer);
            }
        };
        bump(initiator.0, responder.0, true);
        bump(responder.0, initiator.0, false);
    }

    /// Whether `host` acts as a P2P node.
    pub fn is_p2p_node(&self, host: &IpAddr) -> bool {
        self.hosts.get(host).is_some_and(|h| {
            h.peers.len() >= self.cfg.min_peers
                && h.inbound >= self.cfg.min_inbound
                && h.outbound >= self.cfg.min_outbound
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_many_peers_both_ways_on_high_ports() {
        let me = IpAddr::from([100, 64, 1, 10]);
        let peer = |i: u8| IpAddr::from([203, 0, 113, i]);
        let mut b = Behaviour::new(BehaviourConfig::default());
        for i in 0..20 {
            b.flow_started((me, 40000 + i as u16), (peer(i), 443)); // web: not counted
        }
        assert!(!b.is_p2p_node(&me));
        for i in 0..12 {
            b.flow_started((me, 40000 + i as u16), (peer(i), 51413));
        }
        assert!(!b.is_p2p_node(&me), "outbound only");
        for i in 12..16 {
            b.flow_started((peer(i), 50000), (me, 6881));
        }
        assert!(b.is_p2p_node(&me));
        assert!(!b.is_p2p_node(&peer(1)));
    }
}
