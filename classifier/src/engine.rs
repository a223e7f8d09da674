//! The classification engine: per-flow inspection plus the context flows share (the
//! video host list, the endpoint cache, per-host behaviour).
//!
//! A flow is inspected for a bounded number of payload packets (`packet_budget`, like the
//! kernel's and nDPI's 32); after that, or once a detector is sure, its label is final and
//! its inspection state is dropped. A flow still undecided when inspection ends falls back
//! to the endpoint cache, then to behaviour.
//!
//! Labels from weak signals are provisional: web and video labels found by protocol shape
//! or host name (`http`, `tls`, `quic`, `video.<service>`, `hls`, `dash`, `http.video`), a
//! one-way match (a peer-wire handshake not yet answered, one SSH banner), and cache
//! labels. Inspection goes on within the budget so a P2P signature found later, in either
//! direction, replaces them; [`Engine::is_final`] is false meanwhile, and always for a
//! cache label.
//!
//! Only flows confirmed in both directions teach the endpoint cache (a handshake answered
//! by a handshake, a uTP SYN answered by its STATE, a DHT query by its response, ...),
//! never a single datagram, LSD, multicast or broadcast; and one subscriber (the flow's `Up`
//! side) teaches at most `learn_budget` new endpoints a minute.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use peerwarden_common::{Class, Confidence, Label};

use crate::{
    behaviour::{Behaviour, BehaviourConfig, HIGH_PORT},
    cache::{Endpoint, EndpointCache},
    flow::{Direction, FlowKey, FxMap},
    hosts::HostList,
    inspect::{Inspector, NON_P2P_SERVICE_PORTS},
    packet::TCP,
};

/// A flow's label, the video service for `video.<service>`, and how it was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The label.
    pub label: Label,
    /// For [`Label::VideoService`]: the service (`youtube`, `netflix`, ...).
    pub service: Option<String>,
    /// How the label was decided.
    pub confidence: Confidence,
}

impl Verdict {
    /// A verdict without a service.
    pub fn new(label: Label, confidence: Confidence) -> Verdict {
        Verdict {
            label,
            service: None,
            confidence,
        }
    }

    /// Undecided.
    pub fn unknown() -> Verdict {
        Verdict::new(Label::Unknown, Confidence::None)
    }

    /// The class of the label.
    pub fn class(&self) -> Class {
        self.label.class()
    }
}

impl fmt::Display for Verdict {
    /// The name reports print: the label's, or `video.<service>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.label, &self.service) {
            (Label::VideoService, Some(s)) => write!(f, "video.{s}"),
            (l, _) => f.write_str(l.name()),
        }
    }
}

/// One packet as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta<'a> {
    /// Capture or arrival time, nanoseconds (any epoch, monotonic within a run).
    pub ts_ns: u64,
    /// The flow, written from its `Up` side.
    pub key: FlowKey,
    /// Which way this packet goes.
    pub dir: Direction,
    /// Transport payload.
    pub payload: &'a [u8],
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// TCP sequence number (0 for UDP).
    pub tcp_seq: u32,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Payload packets inspected per flow before its label is final.
    pub packet_budget: u8,
    /// How long an endpoint stays in the cache after it was last seen speaking P2P.
    pub cache_ttl_ns: u64,
    /// Endpoints the cache holds at most.
    pub cache_capacity: usize,
    /// When a host counts as a P2P node.
    pub behaviour: BehaviourConfig,
    /// Flows with state held at most; a new flow beyond it is not tracked (it stays
    /// unknown) until `expire`/`finish` make room. Bounds the daemon's memory under a flood.
    pub max_flows: usize,
    /// Run only what the kernel runs (the fixed-offset fingerprints and uTP id pairing),
    /// with no deep detectors and no fallbacks: the baseline the deep tier is measured against.
    pub kernel_only: bool,
    /// New endpoints one subscriber (a flow's `Up` side) may teach the cache per minute;
    /// beyond, learnings are refused and counted ([`Engine::cache_refused`]).
    pub learn_budget: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            packet_budget: peerwarden_common::flow::INSPECT_BUDGET,
            cache_ttl_ns: 10 * 60 * 1_000_000_000,
            cache_capacity: 1 << 16,
            behaviour: BehaviourConfig::default(),
            kernel_only: false,
            max_flows: 1 << 20,
            learn_budget: 256,
        }
    }
}

const SYN: u8 = 0x02;

#[derive(Debug)]
struct FlowState {
    verdict: Verdict,
    /// Inspection ended: the verdict is final.
    done: bool,
    inspected: u8,
    last_ts: u64,
    /// A detector recognised a protocol that is neither P2P nor video (SSH, a VPN, DTLS):
    /// the flow is not P2P, whatever the fallbacks would say.
    known_other: bool,
    /// The direction of the flow's first packet (its initiator's).
    init_dir: Direction,
    inspector: Option<Box<Inspector>>,
}

/// How long a learning budget window lasts.
const MINUTE_NS: u64 = 60 * 1_000_000_000;

/// Subscribers whose learning budget is tracked at most; past it, windows that ended are
/// swept, and if none has, new subscribers are refused until one does.
const MAX_LEARNERS: usize = 1 << 16;

/// The deep classifier.
///
/// ```
/// use peerwarden_classifier::{Engine, EngineConfig, FlowKey, PacketMeta, Direction};
/// let mut engine = Engine::new(EngineConfig::default());
/// let key = FlowKey {
///     proto: 6,
///     src: "100.64.1.10:51413".parse().unwrap(),
///     dst: "198.51.100.7:6881".parse().unwrap(),
/// };
/// let mut hs = vec![19u8];
/// hs.extend_from_slice(b"BitTorrent protocol");
/// hs.extend_from_slice(&[0; 48]);
/// let v = engine.on_packet(&PacketMeta {
///     ts_ns: 0, key, dir: Direction::Up, payload: &hs, tcp_flags: 0x18, tcp_seq: 1,
/// });
/// assert_eq!(v.map(|v| v.to_string()).as_deref(), Some("bittorrent"));
/// ```
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    hosts: HostList,
    flows: FxMap<FlowKey, FlowState>,
    cache: EndpointCache,
    behaviour: Behaviour,
    /// Per subscriber: (start of the current minute window, endpoints taught in it).
    learners: FxMap<IpAddr, (u64, u32)>,
    learned: u64,
    refused: u64,
}

impl Engine {
    /// An engine with the built-in host list.
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            cache: EndpointCache::new(cfg.cache_ttl_ns, cfg.cache_capacity),
            behaviour: Behaviour::new(cfg.behaviour),
            hosts: HostList::default(),
            flows: FxMap::default(),
            learners: FxMap::default(),
            learned: 0,
            refused: 0,
            cfg,
        }
    }

    /// Endpoints the cache learned (new or refreshed entries) since the engine started.
    pub fn cache_learned(&self) -> u64 {
        self.learned
    }

    /// Endpoint learnings refused because their subscriber had used its budget for the
    /// minute (a counter for `/metrics`).
    pub fn cache_refused(&self) -> u64 {
        self.refused
    }

    /// Adds a video service host suffix (the policy file's list extends the built-in one).
    pub fn add_video_host(&mut self, suffix: &str, service: &str) {
        self.hosts.add_video(suffix, service);
    }

    /// The host list in use.
    pub fn hosts(&self) -> &HostList {
        &self.hosts
    }

    /// Flows with state held.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Takes one packet. Returns the flow's verdict when it changed (a new label, or a more
    /// precise one); `None` when nothing changed.
    pub fn on_packet(&mut self, p: &PacketMeta<'_>) -> Option<Verdict> {
        let mut changed = false;
        if let Some(st) = self.flows.get_mut(&p.key) {
            st.last_ts = st.last_ts.max(p.ts_ns);
        } else {
            if self.flows.len() >= self.cfg.max_flows {
                return None;
            }
            // The first packet's sender opened the flow.
            let (i, r) = (p.key.sender(p.dir), p.key.sender(opposite(p.dir)));
            self.behaviour
                .flow_started((i.ip(), i.port()), (r.ip(), r.port()));
            let mut verdict = Verdict::unknown();
            if let Some(l) = cached(&self.cache, &p.key, p.ts_ns).filter(|_| !self.cfg.kernel_only)
            {
                verdict = Verdict::new(l, Confidence::Cache);
                changed = true;
            }
            self.flows.insert(
                p.key,
                FlowState {
                    verdict,
                    done: false,
                    inspected: 0,
                    last_ts: p.ts_ns,
                    known_other: false,
                    init_dir: p.dir,
                    inspector: None,
                },
            );
        }
        self.inspect(p, changed)
    }

    fn inspect(&mut self, p: &PacketMeta<'_>, changed_already: bool) -> Option<Verdict> {
        let budget = self.cfg.packet_budget;
        let st = self.flows.get_mut(&p.key)?;
        let mut changed = changed_already;
        if !st.done && (!p.payload.is_empty() || p.key.proto == TCP && p.tcp_flags & SYN != 0) {
            let insp = st.inspector.get_or_insert_with(Default::default);
            if p.payload.is_empty() {
                // A SYN fixes where the stream starts; nothing to inspect yet.
                insp.tcp_control(p);
                return changed.then(|| st.verdict.clone());
            }
            st.inspected = st.inspected.saturating_add(1);
            let mut teach = None;
            if let Some(hit) = insp.inspect(p, &self.hosts, st.verdict.label, self.cfg.kernel_only)
            {
                let stays = improves(&st.verdict, &hit.verdict);
                if stays {
                    st.verdict = hit.verdict.clone();
                    changed = true;
                }
                // Weak labels stay provisional: inspection goes on within the budget.
                if hit.fin && (self.cfg.kernel_only || !weak(&hit.verdict)) {
                    st.done = true;
                }
                // Only definite payload matches confirmed both ways teach the cache: an
                // inferred label (MSE's shape) spreading to other flows would multiply its
                // mistakes, and a one-way packet is anyone's to forge.
                let l = hit.verdict.label;
                if hit.two_way
                    && st.verdict.label == l
                    && l.class() == Class::P2p
                    && hit.verdict.confidence == Confidence::Payload
                    && l != Label::BittorrentEncrypted
                {
                    teach = Some((l, st.init_dir));
                }
            }
            if st.inspected >= budget {
                st.done = true;
            }
            if let Some((label, init_dir)) = teach
                && !self.cfg.kernel_only
            {
                self.learn(&p.key, init_dir, label, p.ts_ns);
            }
            let st = self.flows.get_mut(&p.key)?;
            if st.done {
                let insp = st.inspector.take();
                st.known_other |= insp.is_some_and(|i| i.known_other);
                let known_other = st.known_other;
                let label = st.verdict.label;
                if label == Label::Unknown && !known_other && !self.cfg.kernel_only {
                    let key = p.key;
                    let now = p.ts_ns;
                    if let Some(v) = self.fallback(&key, now)
                        && let Some(st) = self.flows.get_mut(&key)
                    {
                        st.verdict = v;
                        return Some(st.verdict.clone());
                    }
                }
                let st = self.flows.get_mut(&p.key)?;
                return changed.then(|| st.verdict.clone());
            }
            return changed.then(|| st.verdict.clone());
        }
        changed.then(|| st.verdict.clone())
    }

    /// The cache, then behaviour, for a flow no detector decided.
    fn fallback(&self, key: &FlowKey, now: u64) -> Option<Verdict> {
        let ports = [key.src.port(), key.dst.port()];
        if ports.iter().any(|p| NON_P2P_SERVICE_PORTS.contains(p)) {
            return None;
        }
        if let Some(l) = cached(&self.cache, key, now) {
            return Some(Verdict::new(l, Confidence::Cache));
        }
        if key.src.port() >= HIGH_PORT
            && key.dst.port() >= HIGH_PORT
            && (self.behaviour.is_p2p_node(&key.src.ip())
                || self.behaviour.is_p2p_node(&key.dst.ip()))
        {
            return Some(Verdict::new(Label::P2pBehavioural, Confidence::Behaviour));
        }
        None
    }

    /// Whether the flow's inspection has ended, so its verdict will not change (a flow the
    /// engine does not hold counts as ended). A verdict of a flow not yet final is
    /// provisional: a stronger finding on a later packet may replace it. A cache label is
    /// never final: it was learned from other flows, not seen on this one.
    pub fn is_final(&self, key: &FlowKey) -> bool {
        self.flows
            .get(key)
            .is_none_or(|st| st.done && st.verdict.confidence != Confidence::Cache)
    }

    /// Teaches the cache a confirmed flow's endpoints, within the `Up` side's budget.
    fn learn(&mut self, key: &FlowKey, init_dir: Direction, label: Label, now: u64) {
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
            if w.1.saturating_add(fresh) > self.cfg.learn_budget {
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

    /// The flow's current verdict.
    pub fn verdict(&self, key: &FlowKey) -> Option<&Verdict> {
        self.flows.get(key).map(|st| &st.verdict)
    }

    /// Ends a flow (closed, expired, end of capture): its final verdict, with the cache and
    /// behaviour fallbacks applied if no detector decided it. Its state is dropped.
    pub fn finish(&mut self, key: &FlowKey, now: u64) -> Verdict {
        let Some(st) = self.flows.remove(key) else {
            return Verdict::unknown();
        };
        let known_other = st.known_other || st.inspector.as_ref().is_some_and(|i| i.known_other);
        let v = st.verdict;
        if v.label == Label::Unknown
            && !known_other
            && !self.cfg.kernel_only
            && let Some(f) = self.fallback(key, now)
        {
            return f;
        }
        // A tentative cache label stands; a payload label that was never made final (e.g. a
        // flow shorter than the budget) is still the best we have.
        v
    }

    /// Ends every flow idle since before `now - idle_ns`; returns their final verdicts.
    pub fn expire(&mut self, now: u64, idle_ns: u64) -> Vec<(FlowKey, Verdict)> {
        let stale: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, st)| now.saturating_sub(st.last_ts) > idle_ns)
            .map(|(k, _)| *k)
            .collect();
        stale
            .into_iter()
            .map(|k| (k, self.finish(&k, now)))
            .collect()
    }

    /// Drops the state of the least recently seen flows until at most `keep` remain (no
    /// verdicts: the flows are forgotten, as when the kernel evicted them). Returns how many
    /// were dropped. For a deep tier that must stay bounded under a flood of new flows.
    pub fn evict_oldest(&mut self, keep: usize) -> usize {
        let excess = self.flows.len().saturating_sub(keep);
        if excess == 0 {
            return 0;
        }
        let mut by_age: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|(k, st)| (st.last_ts, *k)).collect();
        by_age.select_nth_unstable_by_key(excess - 1, |(ts, _)| *ts);
        for (_, k) in &by_age[..excess] {
            self.flows.remove(k);
        }
        excess
    }

    /// Ends every flow; their final verdicts, in no particular order.
    pub fn finish_all(&mut self, now: u64) -> Vec<(FlowKey, Verdict)> {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        keys.into_iter()
            .map(|k| (k, self.finish(&k, now)))
            .collect()
    }
}

/// Whether `new` should replace `old`: anything beats unknown; a final payload or host-name
/// finding beats a cache guess and a generic web label.
fn improves(old: &Verdict, new: &Verdict) -> bool {
    if old == new {
        return false;
    }
    if old.label == Label::Unknown {
        return true;
    }
    let rank = |v: &Verdict| match (v.label.class(), v.confidence) {
        (
            _,
            Confidence::Cache | Confidence::Behaviour | Confidence::PortGuess | Confidence::None,
        ) => 0,
        (Class::Web | Class::Other, _) => 1,
        (Class::P2p | Class::Video, _) => 2,
    };
    let (n, o) = (rank(new), rank(old));
    n > o || n == o && n >= 1
}

/// The other direction.
pub(crate) fn opposite(d: Direction) -> Direction {
    match d {
        Direction::Up => Direction::Down,
        Direction::Down => Direction::Up,
    }
}

fn cached(cache: &EndpointCache, key: &FlowKey, now: u64) -> Option<Label> {
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

/// Labels from weak signals, which later findings on the flow may still replace: web
/// protocols by shape, video by host name or HTTP request, and anything learned elsewhere.
fn weak(v: &Verdict) -> bool {
    matches!(
        v.label,
        Label::Http
            | Label::Tls
            | Label::Quic
            | Label::VideoService
            | Label::Hls
            | Label::Dash
            | Label::HttpVideo
    ) || matches!(
        v.confidence,
        Confidence::Hostname | Confidence::Cache | Confidence::Behaviour
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::{quic, tls};

    const SYN: u8 = 0x02;
    const SYNACK: u8 = 0x12;
    const PSH: u8 = 0x18;

    fn key(proto: u8, src: &str, dst: &str) -> FlowKey {
        FlowKey {
            proto,
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
        }
    }

    /// Feeds packets (direction, flags, seq, payload) of one flow; the last verdict seen.
    fn feed(e: &mut Engine, k: FlowKey, pkts: &[(Direction, u8, u32, &[u8])]) -> Option<Verdict> {
        let mut last = None;
        for (i, (dir, flags, seq, payload)) in pkts.iter().enumerate() {
            let v = e.on_packet(&PacketMeta {
                ts_ns: i as u64 * 1000,
                key: k,
                dir: *dir,
                payload,
                tcp_flags: *flags,
                tcp_seq: *seq,
            });
            if v.is_some() {
                last = v;
            }
        }
        last
    }

    fn random(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as u8
            })
            .collect()
    }

    use Direction::{Down, Up};

    #[test]
    fn mse_shape_needs_the_syn_and_random_keys() {
        let (ya, yb) = (random(96 + 200, 1), random(96 + 37, 2));
        let mut e = Engine::new(EngineConfig::default());
        let k = key(6, "100.64.1.10:50000", "198.51.100.7:51413");
        let pkts: [(Direction, u8, u32, &[u8]); 4] = [
            (Up, SYN, 99, b""),
            (Down, SYNACK, 499, b""),
            (Up, PSH, 100, &ya),
            (Down, PSH, 500, &yb),
        ];
        let v = feed(&mut e, k, &pkts).expect("labelled");
        assert_eq!(
            (v.to_string(), v.confidence),
            ("bittorrent.encrypted".into(), Confidence::Payload)
        );
        // Mid-flow (no SYN): the same sizes say nothing.
        let k2 = key(6, "100.64.1.10:50001", "198.51.100.7:51413");
        assert_eq!(feed(&mut e, k2, &pkts[2..]), None);
        // A structured first payload (a length prefix) is not a DH key.
        let mut framed = ya.clone();
        let n = (framed.len() - 2) as u16;
        framed[..2].copy_from_slice(&n.to_be_bytes());
        let k3 = key(6, "100.64.1.10:50002", "198.51.100.7:51413");
        assert_eq!(
            feed(
                &mut e,
                k3,
                &[pkts[0], pkts[1], (Up, PSH, 100, &framed), pkts[3]]
            ),
            None
        );
        // On an HTTPS port the same shape is left alone.
        let k4 = key(6, "100.64.1.10:50003", "198.51.100.7:443");
        assert_eq!(feed(&mut e, k4, &pkts), None);
    }

    fn handshake() -> Vec<u8> {
        let mut h = vec![19u8];
        h.extend_from_slice(b"BitTorrent protocol");
        h.extend_from_slice(&[0; 48]);
        h
    }

    #[test]
    fn endpoint_cache_applies_both_ways() {
        let mut e = Engine::new(EngineConfig::default());
        let bt = key(6, "100.64.1.10:40000", "198.51.100.7:6881");
        let hs = handshake();
        let v = feed(&mut e, bt, &[(Up, PSH, 1, &hs), (Down, PSH, 1, &hs)]);
        assert_eq!(v.map(|v| v.label), Some(Label::Bittorrent));
        assert_eq!(e.finish(&bt, 10).label, Label::Bittorrent);
        // Later, an encrypted-looking UDP flow towards the cached peer...
        let to_peer = key(17, "100.64.1.20:30000", "198.51.100.7:6881");
        let junk = random(300, 9);
        let v = feed(&mut e, to_peer, &[(Up, 0, 0, &junk)]).expect("cached at once");
        assert_eq!(
            (v.label, v.confidence),
            (Label::BittorrentUtp, Confidence::Cache)
        );
        // ...and one opened by the cached peer itself (it is the sender this time).
        let from_peer = key(6, "198.51.100.7:6881", "203.0.113.5:50000");
        let v = feed(&mut e, from_peer, &[(Up, PSH, 1, &junk)]).expect("cached");
        assert_eq!(
            (v.label, v.confidence),
            (Label::Bittorrent, Confidence::Cache)
        );
        // Payload evidence beats the cache.
        let web = key(6, "198.51.100.7:6881", "203.0.113.6:80");
        let v = feed(
            &mut e,
            web,
            &[(Up, PSH, 1, b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")],
        );
        assert_eq!(v.map(|v| v.label), Some(Label::Http));
        // Entries expire.
        let late = key(17, "100.64.1.30:30000", "198.51.100.7:6881");
        let mut p = PacketMeta {
            ts_ns: 11 * 60 * 1_000_000_000,
            key: late,
            dir: Up,
            payload: &junk,
            tcp_flags: 0,
            tcp_seq: 0,
        };
        assert_eq!(e.on_packet(&p), None);
        p.ts_ns += 1;
        assert_eq!(e.finish(&late, p.ts_ns).label, Label::Unknown);
    }

    #[test]
    fn behaviour_labels_only_undecided_high_port_flows_of_a_p2p_node() {
        let mut e = Engine::new(EngineConfig::default());
        let me = "100.64.1.10";
        let junk = random(200, 3);
        let mut keys = Vec::new();
        for i in 0..8u8 {
            let out = key(
                17,
                &format!("{me}:{}", 40000 + i as u16),
                &format!("203.0.113.{}:{}", i + 1, 50000 + i as u16),
            );
            feed(&mut e, out, &[(Up, 0, 0, &junk)]);
            let inbound = key(
                17,
                &format!("198.51.100.{}:{}", i + 1, 60000 + i as u16),
                &format!("{me}:6881"),
            );
            feed(&mut e, inbound, &[(Up, 0, 0, &junk)]);
            keys.push(out);
        }
        let web = key(6, &format!("{me}:45000"), "203.0.113.200:443");
        feed(&mut e, web, &[(Up, PSH, 1, &junk)]);
        let v = e.finish(&keys[0], 1);
        assert_eq!(
            (v.label, v.confidence),
            (Label::P2pBehavioural, Confidence::Behaviour)
        );
        assert_eq!(e.finish(&web, 1).label, Label::Unknown, "a well-known port");
    }

    #[test]
    fn mid_flow_peer_wire_pickup() {
        let mut e = Engine::new(EngineConfig::default());
        let k = key(6, "100.64.1.10:40000", "198.51.100.7:51413");
        let mut a = vec![0, 0, 0, 5, 4, 0, 0, 0, 7]; // have
        a.extend_from_slice(&[0, 0, 0, 1, 2]); // interested
        let mut b = vec![0, 0, 0, 13, 6]; // request
        b.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0x40, 0, 0, 0, 0x40, 0]);
        let v = feed(&mut e, k, &[(Up, PSH, 1000, &a), (Down, PSH, 5000, &b)]);
        assert_eq!(v.map(|v| v.label), Some(Label::Bittorrent));
    }

    #[test]
    fn sni_split_over_segments_and_added_hosts() {
        let mut e = Engine::new(EngineConfig::default());
        e.add_video_host("example-tv.net", "exampletv");
        for (host, want) in [
            ("r4---sn-5hne6n.googlevideo.com", "video.youtube"),
            ("edge.example-tv.net", "video.exampletv"),
            ("www.example.org", "tls"),
        ] {
            let rec = tls::tests::records(&tls::tests::client_hello_msg(Some(host)), 4000);
            let (a, b) = rec.split_at(40);
            let k = key(
                6,
                "100.64.1.10:40000",
                &format!("198.51.100.{}:443", host.len()),
            );
            let v = feed(
                &mut e,
                k,
                &[
                    (Up, SYN, 9, b""),
                    (Up, PSH, 10, a),
                    (Up, PSH, 10 + a.len() as u32, b),
                ],
            )
            .expect("labelled");
            assert_eq!(v.to_string(), want, "{host}");
        }
    }

    #[test]
    fn quic_initial_through_the_engine() {
        let mut e = Engine::new(EngineConfig::default());
        let hello = tls::tests::client_hello_msg(Some("www.netflix.com"));
        let pkt = quic::tests::initial(1, &[5; 8], &[(0, &hello)]);
        let k = key(17, "100.64.1.10:40000", "198.51.100.9:443");
        let v = feed(&mut e, k, &[(Up, 0, 0, &pkt)]).expect("labelled");
        assert_eq!(
            (v.to_string(), v.confidence),
            ("video.netflix".into(), Confidence::Hostname)
        );
    }

    #[test]
    fn http_video_streaming_and_trackers() {
        let mut e = Engine::new(EngineConfig::default());
        let cases: [(&[u8], &[u8], &str); 4] = [
            (
                b"GET /live/master.m3u8 HTTP/1.1\r\nHost: cdn.example\r\n\r\n",
                b"",
                "hls",
            ),
            (
                b"GET /v/1 HTTP/1.1\r\nHost: cdn.example\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Type: video/webm\r\n\r\n",
                "http.video",
            ),
            (
                b"GET /announce?info_hash=%01%02&port=6881 HTTP/1.1\r\nHost: t.example\r\n\r\n",
                b"",
                "bittorrent.tracker",
            ),
            (
                b"GET /index.html HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
                "http",
            ),
        ];
        for (i, (req, resp, want)) in cases.iter().enumerate() {
            let k = key(6, &format!("100.64.1.10:{}", 41000 + i), "198.51.100.9:80");
            let mut pkts = vec![(Up, PSH, 1, *req)];
            if !resp.is_empty() {
                pkts.push((Down, PSH, 1, *resp));
            }
            feed(&mut e, k, &pkts);
            assert_eq!(e.finish(&k, 9).to_string(), *want);
        }
    }

    #[test]
    fn rtmp_rtsp_edonkey_gnutella() {
        let mut e = Engine::new(EngineConfig::default());
        let mut c01 = vec![3u8];
        c01.extend(random(1536, 4));
        let mut s01 = vec![3u8];
        s01.extend(random(1536, 5));
        let k = key(6, "100.64.1.10:42000", "198.51.100.9:1935");
        let v = feed(
            &mut e,
            k,
            &[
                (Up, PSH, 1, &c01[..1400]),
                (Up, PSH, 1401, &c01[1400..]),
                (Down, PSH, 1, &s01),
            ],
        );
        assert_eq!(v.map(|v| v.label), Some(Label::Rtmp));
        let k = key(6, "100.64.1.10:42001", "198.51.100.9:8554");
        let v = feed(
            &mut e,
            k,
            &[(
                Up,
                PSH,
                1,
                b"DESCRIBE rtsp://198.51.100.9:8554/s RTSP/1.0\r\nCSeq: 2\r\n\r\n",
            )],
        );
        assert_eq!(v.map(|v| v.label), Some(Label::Rtsp));
        let mut hello = vec![0xe3];
        hello.extend_from_slice(&40u32.to_le_bytes());
        hello.extend_from_slice(&[0x01, 16]);
        hello.extend(random(38, 6));
        let k = key(6, "100.64.1.10:42002", "198.51.100.9:4662");
        assert_eq!(
            feed(&mut e, k, &[(Up, PSH, 1, &hello)]).map(|v| v.label),
            Some(Label::Edonkey)
        );
        let k = key(6, "100.64.1.10:42003", "198.51.100.9:6346");
        let v = feed(
            &mut e,
            k,
            &[(Up, PSH, 1, b"GNUTELLA CONNECT/0.6\r\nUser-Agent: x\r\n\r\n")],
        );
        assert_eq!(v.map(|v| v.label), Some(Label::Gnutella));
    }

    #[test]
    fn flow_table_is_bounded() {
        let mut e = Engine::new(EngineConfig {
            max_flows: 2,
            ..EngineConfig::default()
        });
        let hs = handshake();
        for port in 1..=3u16 {
            let k = key(6, &format!("100.64.1.10:{port}"), "198.51.100.9:6881");
            let v = feed(&mut e, k, &[(Up, PSH, 1, &hs)]);
            assert_eq!(v.is_some(), port <= 2, "port {port}");
        }
        assert_eq!(e.flow_count(), 2);
    }

    #[test]
    fn evict_oldest_keeps_the_most_recently_seen_flows() {
        let mut e = Engine::new(EngineConfig::default());
        for i in 0..10u16 {
            let k = key(
                17,
                &format!("100.64.1.10:{}", 40000 + i),
                "198.51.100.9:9999",
            );
            e.on_packet(&PacketMeta {
                ts_ns: u64::from(i),
                key: k,
                dir: Direction::Up,
                payload: &[0; 8],
                tcp_flags: 0,
                tcp_seq: 0,
            });
        }
        assert_eq!(e.evict_oldest(20), 0);
        assert_eq!(e.evict_oldest(4), 6);
        assert_eq!(e.flow_count(), 4);
        for i in 0..10u16 {
            let k = key(
                17,
                &format!("100.64.1.10:{}", 40000 + i),
                "198.51.100.9:9999",
            );
            assert_eq!(e.verdict(&k).is_some(), i >= 6, "flow {i}");
        }
    }

    #[test]
    fn budget_ends_inspection() {
        let mut e = Engine::new(EngineConfig {
            packet_budget: 4,
            ..EngineConfig::default()
        });
        let k = key(17, "100.64.1.10:42000", "198.51.100.9:9999");
        let junk = random(100, 7);
        for _ in 0..4 {
            assert_eq!(feed(&mut e, k, &[(Up, 0, 0, &junk)]), None);
        }
        // Past the budget, even a DHT message changes nothing.
        let dht = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe";
        assert_eq!(feed(&mut e, k, &[(Up, 0, 0, dht)]), None);
        assert_eq!(e.verdict(&k).map(|v| v.label), Some(Label::Unknown));
    }
}
