//! Behavioural P2P: a host that talks to many distinct peers, with both ports unprivileged,
//! and both accepts and opens such connections, acts as a P2P node. Its flows that no
//! payload detector decided are labelled `p2p.behavioural`.
//!
//! The thresholds are deliberately high: client-server traffic (browsing, DNS, QUIC) uses a
//! well-known port on one side and is never counted, and a host must show incoming *and*
//! outgoing high-port flows to several peers each way.
//!
//! Behaviour is not a port count (issue 11): a client that talks to many servers on one
//! service port (RADIUS 1812, game servers on 27015, a CDN's 8080, DNS or NTP from a high
//! source port to a resolver's) shows many peers but one remote port, and a server for many
//! clients on one port opens nothing. A P2P node's outgoing flows go to peers that each
//! listen on a port of their own: the host's outgoing flows must reach at least
//! `min_out_ports` distinct remote ports, none of them taking more than half of the flows,
//! and flows to [`SERVICE_PORTS`] are not counted at all.

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
    /// Distinct remote ports among the host's outgoing high-port flows.
    pub min_out_ports: usize,
    /// Hosts tracked at most (beyond, new hosts are not tracked).
    pub max_hosts: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            min_peers: 12,
            min_inbound: 4,
            min_outbound: 4,
            min_out_ports: 4,
            max_hosts: 1 << 18,
        }
    }
}

/// Ports at or above this are "high": ephemeral and P2P listening ports.
pub const HIGH_PORT: u16 = 1024;

/// High ports of client-server services that talk to many hosts (RADIUS and its CoA, the
/// common game server ports, VPN and VoIP/WebRTC servers, proxies and alternative HTTP
/// ports, MQTT, ...): a flow to one of them says nothing about P2P.
pub const SERVICE_PORTS: &[u16] = &[
    1194, 1645, 1646, 1701, 1723, 1812, 1813, 1883, 1935, 3074, 3128, 3478, 3479, 3480, 3659, 3724,
    3799, 4379, 4500, 5060, 5061, 5222, 5223, 5228, 5349, 7777, 8000, 8080, 8088, 8443, 8801, 8883,
    9000, 9987, 19302, 19305, 25565, 27015, 27016, 27017, 27960, 28960, 51820,
];

/// Outgoing remote ports remembered per host (with counts), enough to tell one dominant
/// service port from a spread of P2P listening ports.
const OUT_PORTS: usize = 16;

#[derive(Debug, Default)]
struct Host {
    /// Distinct peers, up to the threshold (no need to remember more).
    peers: Vec<IpAddr>,
    inbound: u32,
    outbound: u32,
    /// Remote ports of outgoing flows and how many flows each took.
    out_ports: Vec<(u16, u32)>,
}

impl Host {
    /// Whether the outgoing flows spread over many remote ports, none dominant.
    fn spread(&self, min_ports: usize) -> bool {
        let top = self.out_ports.iter().map(|(_, n)| *n).max().unwrap_or(0);
        self.out_ports.len() >= min_ports && top * 2 <= self.outbound
    }
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
        if initiator.1 < HIGH_PORT
            || responder.1 < HIGH_PORT
            || initiator.0 == responder.0
            || SERVICE_PORTS.contains(&responder.1)
            || SERVICE_PORTS.contains(&initiator.1)
        {
            return;
        }
        let remote_port = responder.1;
        let (min_peers, max_hosts) = (self.cfg.min_peers, self.cfg.max_hosts);
        let mut bump = |host: IpAddr, peer: IpAddr, outbound: bool| {
            if self.hosts.len() >= max_hosts && !self.hosts.contains_key(&host) {
                return;
            }
            let h = self.hosts.entry(host).or_default();
            if outbound {
                h.outbound = h.outbound.saturating_add(1);
                if let Some(i) = h.out_ports.iter().position(|(p, _)| *p == remote_port) {
                    h.out_ports[i].1 += 1;
                } else if h.out_ports.len() < OUT_PORTS {
                    h.out_ports.push((remote_port, 1));
                }
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
                && h.spread(self.cfg.min_out_ports)
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
        // Peers listen on ports of their own (a swarm mixes 6881, 51413 and random ports).
        for i in 0..12 {
            b.flow_started(
                (me, 40000 + i as u16),
                (peer(i), 51413 + (i as u16 % 5) * 1000),
            );
        }
        assert!(!b.is_p2p_node(&me), "outbound only");
        for i in 12..16 {
            b.flow_started((peer(i), 50000), (me, 6881));
        }
        assert!(b.is_p2p_node(&me));
        assert!(!b.is_p2p_node(&peer(1)));
    }

    /// A P2P node without dodges: peers on their own ports, some accepted.
    #[test]
    fn a_plain_p2p_node_is_still_one() {
        let me = IpAddr::from([100, 64, 1, 20]);
        let mut b = Behaviour::new(BehaviourConfig::default());
        for i in 0..10u16 {
            let peer = IpAddr::from([203, 0, 113, i as u8 + 1]);
            b.flow_started((me, 50000 + i), (peer, 6881 + i * 97));
        }
        for i in 0..6u8 {
            b.flow_started((IpAddr::from([198, 51, 100, i + 1]), 40000), (me, 51413));
        }
        assert!(b.is_p2p_node(&me));
    }

    /// Client-server patterns: one local port to many servers on one service port (RADIUS,
    /// a game's master servers, a CDN on 8080 or any one high port), and a server for many
    /// clients on one port, even with some CoA-style inbound flows.
    #[test]
    fn client_server_patterns_are_not_p2p() {
        let me = IpAddr::from([100, 64, 1, 30]);
        for server_port in [1812u16, 27015, 8080, 40000] {
            let mut b = Behaviour::new(BehaviourConfig::default());
            for i in 0..40u8 {
                let server = IpAddr::from([203, 0, 113, i + 1]);
                b.flow_started((me, 50000), (server, server_port));
                b.flow_started((server, 50000 + i as u16), (me, 3799 + 1));
            }
            assert!(!b.is_p2p_node(&me), "client of port {server_port}");
        }
        let server = IpAddr::from([100, 64, 1, 31]);
        let mut b = Behaviour::new(BehaviourConfig::default());
        for i in 0..40u8 {
            b.flow_started(
                (IpAddr::from([198, 51, 100, i + 1]), 40000 + i as u16),
                (server, 25000),
            );
        }
        for i in 0..4u8 {
            b.flow_started((server, 45000), (IpAddr::from([203, 0, 113, i + 1]), 9999));
        }
        assert!(
            !b.is_p2p_node(&server),
            "a server with a few outgoing flows to one port"
        );
    }
}
