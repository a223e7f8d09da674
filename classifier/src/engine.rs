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

use std::sync::{Arc, MutexGuard};

use peerwarden_common::{Class, Confidence, Label};

use crate::{
    behaviour::{Behaviour, BehaviourConfig, HIGH_PORT},
    cache::EndpointCache,
    dns_hints::DnsHints,
    flow::{Direction, FlowKey, FxMap, opposite},
    hosts::HostList,
    inspect::{Inspector, NON_P2P_SERVICE_PORTS},
    learning::Learning,
    packet::TCP,
    shared::Shared,
    verdict::{PacketMeta, Verdict},
};

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
    /// (subscriber, answered address) pairs the DNS-assisted labels remember at most
    /// (`crate::dns_hints`).
    pub dns_capacity: usize,
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
            dns_capacity: 1 << 16,
        }
    }
}

impl EngineConfig {
    /// Empty cross-flow context (endpoint cache, behaviour, DNS answers) bounded as this
    /// config says, for engines to share ([`Engine::with_shared`]).
    pub fn shared(&self) -> Arc<Shared> {
        Shared::new(
            Learning::new(
                EndpointCache::new(self.cache_ttl_ns, self.cache_capacity),
                self.learn_budget,
            ),
            Behaviour::new(self.behaviour),
            DnsHints::new(self.dns_capacity),
        )
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
    /// The endpoint cache, behaviour and DNS answers: its own, or shared with the other
    /// engines of a sharded deep tier.
    shared: Arc<Shared>,
}

impl Engine {
    /// An engine with the built-in host list and context of its own.
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine::with_shared(cfg.clone(), cfg.shared())
    }

    /// An engine that learns into and reads from `shared` (several engines, one per
    /// thread, each inspecting its own flows; [`crate::shared`]). The capacities of
    /// `shared` are the ones it was made with, whatever `cfg` says.
    pub fn with_shared(cfg: EngineConfig, shared: Arc<Shared>) -> Engine {
        Engine {
            shared,
            hosts: HostList::default(),
            flows: FxMap::default(),
            cfg,
        }
    }

    /// The context this engine shares (with itself only, unless made by
    /// [`Engine::with_shared`]).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Endpoints the cache learned (new or refreshed entries) since it was made, by every
    /// engine sharing it.
    pub fn cache_learned(&self) -> u64 {
        self.shared.cache_learned()
    }

    /// Endpoint learnings refused because their subscriber had used its budget for the
    /// minute (a counter for `/metrics`), by every engine sharing the cache.
    pub fn cache_refused(&self) -> u64 {
        self.shared.cache_refused()
    }

    /// Adds a video service host suffix (the policy file's list extends the built-in one).
    pub fn add_video_host(&mut self, suffix: &str, service: &str) {
        self.hosts.add_video(suffix, service);
    }

    /// Replaces the host list (the daemon's reload of its service file); flows already
    /// labelled keep their labels.
    pub fn set_hosts(&mut self, hosts: HostList) {
        self.hosts = hosts;
    }

    /// The host list in use.
    pub fn hosts(&self) -> &HostList {
        &self.hosts
    }

    /// The DNS answers remembered for the DNS-assisted labels (locked while the guard
    /// lives when the engine shares them).
    pub fn dns_hints(&self) -> MutexGuard<'_, DnsHints> {
        self.shared.dns()
    }

    /// Flows with state held.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Takes one packet. Returns the flow's verdict when it changed (a new label, or a more
    /// precise one); `None` when nothing changed.
    pub fn on_packet(&mut self, p: &PacketMeta<'_>) -> Option<Verdict> {
        let mut changed = false;
        if !self.cfg.kernel_only && p.key.dst.port() == 53 {
            // Read even once the flow's own label is final: the answers are what matter.
            (self.shared.dns()).observe(&p.key, p.dir, p.payload, p.ts_ns, &self.hosts);
        }
        if let Some(st) = self.flows.get_mut(&p.key) {
            st.last_ts = st.last_ts.max(p.ts_ns);
        } else {
            if self.flows.len() >= self.cfg.max_flows {
                return None;
            }
            // The first packet's sender opened the flow.
            let (i, r) = (p.key.sender(p.dir), p.key.sender(opposite(p.dir)));
            (self.shared.behaviour()).flow_started((i.ip(), i.port()), (r.ip(), r.port()));
            let mut verdict = Verdict::unknown();
            let cached = (!self.cfg.kernel_only)
                .then(|| self.shared.learning().cached(&p.key, p.ts_ns))
                .flatten();
            if let Some(l) = cached {
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
            // A DNS query waits for its answer (the DNS-assisted labels read it) and
            // nothing else: it was final at once before, and a later datagram of the same
            // flow taken for another protocol (eDonkey's opcodes, say) must not relabel it.
            let dns_wait = st.verdict.label == Label::Dns;
            if let Some(hit) = insp
                .inspect(p, &self.hosts, st.verdict.label, self.cfg.kernel_only)
                .filter(|h| !dns_wait || h.verdict.label == Label::Dns)
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
            if !self.cfg.kernel_only
                && let Some(v) = dns_hint(&self.shared, st, p)
            {
                st.verdict = v;
                changed = true;
            }
            if let Some((label, init_dir)) = teach
                && !self.cfg.kernel_only
            {
                (self.shared.learning()).learn(&p.key, init_dir, label, p.ts_ns);
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
        let cached = self.shared.learning().cached(key, now);
        if let Some(l) = cached {
            return Some(Verdict::new(l, Confidence::Cache));
        }
        if key.src.port() >= HIGH_PORT && key.dst.port() >= HIGH_PORT && {
            let b = self.shared.behaviour();
            b.is_p2p_node(&key.src.ip()) || b.is_p2p_node(&key.dst.ip())
        } {
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

    /// The flow's current verdict.
    pub fn verdict(&self, key: &FlowKey) -> Option<&Verdict> {
        self.flows.get(key).map(|st| &st.verdict)
    }

    /// Ends a flow (closed, expired, end of capture): its final verdict, with the cache and
    /// behaviour fallbacks applied if no detector decided it. Its state is dropped.
    pub fn finish(&mut self, key: &FlowKey, now: u64) -> Verdict {
        self.dns_flow_ended(key);
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
            self.dns_flow_ended(k);
        }
        excess
    }

    /// Forgets the DNS-over-TCP bytes held for `key` (only a flow to port 53 has any: the
    /// shared answers are not locked for the others).
    fn dns_flow_ended(&mut self, key: &FlowKey) {
        if key.dst.port() == 53 {
            self.shared.dns().flow_ended(key);
        }
    }

    /// Ends every flow; their final verdicts, in no particular order.
    pub fn finish_all(&mut self, now: u64) -> Vec<(FlowKey, Verdict)> {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        keys.into_iter()
            .map(|k| (k, self.finish(&k, now)))
            .collect()
    }
}

/// The DNS-assisted label for a flow that names no server of its own: `video.<service>`
/// when its subscriber's resolver answered the flow's remote address for a video
/// service's name. A name the flow shows (SNI, Host) wins over the DNS answer, which may be
/// a CDN address serving other sites too; a hello still being read waits for its name
/// until inspection ends. Only over what no detector decided better: nothing, or the bare
/// `tls`/`quic` labels.
fn dns_hint(shared: &Shared, st: &FlowState, p: &PacketMeta<'_>) -> Option<Verdict> {
    let insp = st.inspector.as_ref()?;
    let bare = matches!(st.verdict.label, Label::Unknown | Label::Tls | Label::Quic)
        && matches!(
            st.verdict.confidence,
            Confidence::None | Confidence::Payload
        );
    if !bare || insp.name_pending && !st.done || insp.known_other {
        return None;
    }
    let sub = p.key.src.ip();
    let dns = shared.dns();
    let service = dns.service(sub, p.key.dst.ip(), p.ts_ns)?;
    // A named flow only when its hello offers ECH and its SNI is the public name that
    // service's HTTPS record gave this subscriber: then the SNI is the front's, not the
    // flow's (GREASE ECH carries the real name, which is no such front).
    if insp.named
        && insp
            .ech_outer
            .as_deref()
            .and_then(|outer| dns.ech_front(sub, outer, p.ts_ns))
            != Some(service)
    {
        return None;
    }
    Some(Verdict {
        label: Label::VideoService,
        service: Some(service.to_string()),
        confidence: Confidence::Hostname,
    })
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

#[cfg(test)]
mod tests;
