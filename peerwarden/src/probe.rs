//! The kernel probe as user space sees it: the embedded eBPF object, loading it with the
//! flow table sized from the config, attaching it to the gateway's interfaces, and reading
//! its maps.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use std::sync::Mutex;

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, IterableMap as _, MapData, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode, tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use peerwarden_common::{
    CounterValue, Direction, FlowKey, FlowValue,
    deep::Verdict,
    flow::LABELLED_PER_FLOWS,
    label::ALL_LABELS,
    observe::{ALL_OBSERVE_STATS, MAX_OBSERVE_NETWORKS},
    policy::{
        DEFAULT_MAX_SUBSCRIBERS, MAX_PLANS, PlanSlots, PolicyControl, RULE_SLOTS, RULES_PER_SET,
        Rule, SUB_COUNTER_SLOTS, SubCounter, SubUsage, SubscriberRef,
    },
    stats::{ALL_STATS, STAT_SLOTS, counter_index},
};

use peerwarden_policies::compile::{CompileOptions, Compiled};

use crate::pin::PinDir;

mod batch;
mod pinned;
mod usage;

pub use usage::{SeenMap, UsageMap, UsageMapError};

/// The compiled kernel programs (ebpf/, built by build.rs with aya-build).
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/peerwarden"));

/// Entry point for packets arriving from subscribers (attached to the downlink).
pub const PROG_DOWNLINK: &str = "xdp_downlink";
/// Entry point for packets arriving from the internet (attached to the uplink).
pub const PROG_UPLINK: &str = "xdp_uplink";
/// A bare XDP_PASS program, the benchmark's baseline.
pub const PROG_PASS: &str = "xdp_pass";
/// Observe-only mode: on a mirror port, copies of both directions, every frame passed.
pub const PROG_OBSERVE: &str = "xdp_observe";
/// TC egress on the uplink: steers shaped flows into HTB classes.
pub const PROG_TC_UPLINK: &str = "tc_uplink_egress";
/// TC egress on the downlink.
pub const PROG_TC_DOWNLINK: &str = "tc_downlink_egress";

const MAP_FLOWS: &str = "FLOWS";
const MAP_LABELLED: &str = "LABELLED";
const MAP_COUNTERS: &str = "COUNTERS";
const MAP_STATS: &str = "STATS";
const MAP_SAMPLES: &str = "SAMPLES";
const MAP_VERDICTS: &str = "VERDICTS";
const MAP_CONTROL: &str = "CONTROL";
const MAP_SUBS_V4: &str = "SUBS_V4";
const MAP_SUBS_V6: &str = "SUBS_V6";
const MAP_PLANS: &str = "PLANS";
const MAP_RULES: &str = "RULES";
const MAP_BUCKETS: &str = "BUCKETS";
const MAP_SUB_COUNTERS: &str = "SUB_COUNTERS";
const MAP_SUB_SEEN: &str = "SUB_SEEN";
const MAP_OBSERVE_V4: &str = "OBSERVE_V4";
const MAP_OBSERVE_V6: &str = "OBSERVE_V6";
const MAP_OBSERVE_STATS: &str = "OBSERVE_STATS";

/// The `max_entries` the config sets: the flow table, and the policy maps by subscribers
/// (two sets, a few prefixes per subscriber); the labels of evicted flows by the flow table.
fn max_entries(options: ProbeOptions) -> [(&'static str, u32); 7] {
    let subs = options.max_subscribers.max(1);
    [
        (MAP_FLOWS, options.flow_table_size),
        (
            MAP_LABELLED,
            (options.flow_table_size / LABELLED_PER_FLOWS).max(1),
        ),
        (MAP_SUBS_V4, subs.saturating_mul(4)),
        (MAP_SUBS_V6, subs.saturating_mul(4)),
        (MAP_BUCKETS, subs.saturating_mul(RULE_SLOTS * 2)),
        (MAP_SUB_COUNTERS, subs.saturating_mul(SUB_COUNTER_SLOTS)),
        (MAP_SUB_SEEN, subs),
    ]
}

/// How the probe's maps are sized.
#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    /// Entries of the LRU flow table.
    pub flow_table_size: u32,
    /// Subscribers the policy maps hold (buckets and counters are preallocated for them).
    pub max_subscribers: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            flow_table_size: 1 << 20,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
        }
    }
}

/// The policy maps, owned outside `Ebpf` so they can be written while readers share the
/// probe. `installed[set]` remembers what each set holds, to clear it before reuse.
struct PolicyMaps {
    control: Array<MapData, PolicyControl>,
    v4: LpmTrie<MapData, [u8; 5], SubscriberRef>,
    v6: LpmTrie<MapData, [u8; 17], SubscriberRef>,
    plans: Array<MapData, PlanSlots>,
    rules: Array<MapData, Rule>,
    installed: [Installed; 2],
    generation: u32,
    active: u32,
}

#[derive(Default)]
struct Installed {
    v4: Vec<Key<[u8; 5]>>,
    v6: Vec<Key<[u8; 17]>>,
    plans: usize,
    rules: Vec<u32>,
}

/// What can go wrong between the object file and an attached program.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The object or one of its programs did not load (verifier, missing BTF, limits).
    #[error("loading the kernel programs: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program failed to load or attach.
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map read failed.
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// The object lacks an expected program or map (a build mismatch).
    #[error("the kernel object has no {0}")]
    Missing(&'static str),
    /// The per-subscriber counter array could not be mapped.
    #[error("map SUB_COUNTERS: {0}")]
    Usage(#[from] UsageMapError),
    /// A subscriber index past the per-subscriber counter array.
    #[error("subscriber index {0} is past the per-subscriber counters (max_subscribers)")]
    IndexOutOfRange(u32),
    /// The pinned maps or links of the instance (see pin.rs).
    #[error(transparent)]
    Pin(#[from] crate::pin::PinError),
    /// A pinned link could not be adopted or pinned.
    #[error("program {program}: {detail}")]
    Adopt {
        program: &'static str,
        detail: String,
    },
    /// More subscriber networks than the observe program's tries hold.
    #[error("more than {0} subscriber networks of one address family for observe mode")]
    TooManyNetworks(u32),
}

/// How a program ended up attached.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Program name.
    pub program: &'static str,
    /// XDP: `native` (driver) or `generic` (skb); TC: `tcx` or `clsact`.
    pub mode: &'static str,
    /// The kernel's id of the link (pinned attachments), the same across daemon restarts.
    pub link_id: Option<u32>,
    /// The kernel's id of the program the link runs now (a new one at every start).
    pub program_id: Option<u32>,
    /// Whether the link was adopted from an earlier run (program swapped in place) rather
    /// than attached by this one.
    pub adopted: bool,
}

/// The loaded probe. Dropping it detaches and unloads every program.
pub struct Probe {
    ebpf: Ebpf,
    links: Vec<(&'static str, XdpLinkId)>,
    tc_links: Vec<(&'static str, SchedClassifierLinkId)>,
    samples: Mutex<Option<RingBuf<MapData>>>,
    verdicts: Mutex<HashMap<MapData, FlowKey, Verdict>>,
    policy: Mutex<PolicyMaps>,
    sub_counters: UsageMap,
    sub_seen: SeenMap,
    options: ProbeOptions,
    /// Set by [`Probe::attach_observe`]: policies are compiled without DSCP rewrites
    /// ([`Probe::compile_options`]), and the statistics include the observe program's.
    observe: bool,
    observe_nets: Mutex<ObserveNets>,
    /// The instance's pin directory and the links held pinned ([`Probe::load_pinned`]).
    pins: Option<pinned::Pins>,
}

/// The observe program's subscriber networks and the keys they hold now.
struct ObserveNets {
    v4: LpmTrie<MapData, [u8; 4], u8>,
    v6: LpmTrie<MapData, [u8; 16], u8>,
    installed_v4: Vec<Key<[u8; 4]>>,
    installed_v6: Vec<Key<[u8; 16]>>,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map { map, source }
}

fn program_err(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> ProbeError {
    move |source| ProbeError::Program { program, source }
}

/// The program `name` of `ebpf` as its type (`Xdp`, `SchedClassifier`).
fn program_of<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(program_err(name))
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, ProbeError> {
    ebpf.take_map(name).ok_or(ProbeError::Missing(name))
}

pub use peerwarden_common::stats::LabelCounters;

impl Probe {
    /// Loads the object with a flow table of `flow_table_size` entries and loads (verifies)
    /// its programs without attaching them.
    pub fn load(flow_table_size: u32) -> Result<Probe, ProbeError> {
        Probe::load_with(ProbeOptions {
            flow_table_size,
            ..ProbeOptions::default()
        })
    }

    /// Loads the object with maps sized by `options`.
    pub fn load_with(options: ProbeOptions) -> Result<Probe, ProbeError> {
        Probe::load_inner(options, None)
    }

    /// Loads the object; with `pins`, the maps of [`crate::pin::PINNED_MAPS`] are opened
    /// from (or created and pinned in) that directory.
    fn load_inner(options: ProbeOptions, pins: Option<&PinDir>) -> Result<Probe, ProbeError> {
        let mut loader = EbpfLoader::new();
        for (map, n) in max_entries(options) {
            loader.map_max_entries(map, n);
        }
        if let Some(dir) = pins {
            for map in crate::pin::PINNED_MAPS {
                loader.map_pin_path(map, dir.map_path(map));
            }
        }
        let mut ebpf = loader.load(PROBE_OBJECT)?;
        for name in [PROG_DOWNLINK, PROG_UPLINK, PROG_PASS, PROG_OBSERVE] {
            let prog: &mut Xdp = program_of(&mut ebpf, name)?;
            prog.load().map_err(program_err(name))?;
        }
        for name in [PROG_TC_UPLINK, PROG_TC_DOWNLINK] {
            let prog: &mut SchedClassifier = program_of(&mut ebpf, name)?;
            prog.load().map_err(program_err(name))?;
        }
        let samples =
            RingBuf::try_from(take(&mut ebpf, MAP_SAMPLES)?).map_err(map_err(MAP_SAMPLES))?;
        let verdicts =
            HashMap::try_from(take(&mut ebpf, MAP_VERDICTS)?).map_err(map_err(MAP_VERDICTS))?;
        let policy = PolicyMaps {
            control: Array::try_from(take(&mut ebpf, MAP_CONTROL)?)
                .map_err(map_err(MAP_CONTROL))?,
            v4: LpmTrie::try_from(take(&mut ebpf, MAP_SUBS_V4)?).map_err(map_err(MAP_SUBS_V4))?,
            v6: LpmTrie::try_from(take(&mut ebpf, MAP_SUBS_V6)?).map_err(map_err(MAP_SUBS_V6))?,
            plans: Array::try_from(take(&mut ebpf, MAP_PLANS)?).map_err(map_err(MAP_PLANS))?,
            rules: Array::try_from(take(&mut ebpf, MAP_RULES)?).map_err(map_err(MAP_RULES))?,
            installed: Default::default(),
            generation: 0,
            active: 0,
        };
        let sub_counters = match take(&mut ebpf, MAP_SUB_COUNTERS)? {
            aya::maps::Map::Array(data) => UsageMap::new(data)?,
            _ => return Err(ProbeError::Missing(MAP_SUB_COUNTERS)),
        };
        let sub_seen = match take(&mut ebpf, MAP_SUB_SEEN)? {
            aya::maps::Map::Array(data) => SeenMap::new(data)?,
            _ => return Err(ProbeError::Missing(MAP_SUB_SEEN)),
        };
        let observe_nets = ObserveNets {
            v4: LpmTrie::try_from(take(&mut ebpf, MAP_OBSERVE_V4)?)
                .map_err(map_err(MAP_OBSERVE_V4))?,
            v6: LpmTrie::try_from(take(&mut ebpf, MAP_OBSERVE_V6)?)
                .map_err(map_err(MAP_OBSERVE_V6))?,
            installed_v4: Vec::new(),
            installed_v6: Vec::new(),
        };
        Ok(Probe {
            ebpf,
            links: Vec::new(),
            tc_links: Vec::new(),
            samples: Mutex::new(Some(samples)),
            verdicts: Mutex::new(verdicts),
            policy: Mutex::new(policy),
            sub_counters,
            sub_seen,
            options,
            observe: false,
            observe_nets: Mutex::new(observe_nets),
            pins: None,
        })
    }

    /// How the maps were sized.
    pub fn options(&self) -> ProbeOptions {
        self.options
    }

    /// What a policy compiled for this probe must fit: its maps' size, the kernel's coarse
    /// clock tick, and whether it is observe-only (no frame changed).
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            max_subscribers: self.options.max_subscribers,
            tick_ns: crate::ktime::coarse_tick_ns(),
            observe: self.observe,
        }
    }

    /// The ring buffer of payload samples, for the deep classifier's thread (once).
    pub fn take_samples(&self) -> Option<RingBuf<MapData>> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Hands the deep classifier's verdict on a flow to the kernel, which applies it on the
    /// flow's next packet.
    pub fn put_verdict(&self, key: &FlowKey, verdict: Verdict) -> Result<(), ProbeError> {
        self.verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, verdict, 0)
            .map_err(map_err(MAP_VERDICTS))
    }

    /// Installs a compiled policy as it is (compile it with [`Probe::compile_options`]):
    /// fills the idle set of maps, then makes it live with one write of the control entry.
    /// Returns the new generation.
    pub fn install_policy(&self, c: &Compiled) -> Result<u32, ProbeError> {
        let mut m = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let set = if m.generation == 0 { 0 } else { 1 - m.active };
        let old = std::mem::take(&mut m.installed[set as usize]);
        // The idle set still holds the policy of two installs ago, usually almost the same
        // one: entries the new policy has again are overwritten in place, and only the
        // others deleted, which halves the map writes of a reload (a 100,000-subscriber
        // policy: 200,000 prefixes; see docs/benchmarks.md).
        let v4: Vec<Key<[u8; 5]>> = c
            .v4
            .iter()
            .map(|(a, len, _)| Key::new(8 + u32::from(*len), [set as u8, a[0], a[1], a[2], a[3]]))
            .collect();
        let v6: Vec<Key<[u8; 17]>> =
            c.v6.iter()
                .map(|(a, len, _)| {
                    let mut d = [0u8; 17];
                    d[0] = set as u8;
                    d[1..].copy_from_slice(a);
                    Key::new(8 + u32::from(*len), d)
                })
                .collect();
        let rules = c.rules.iter().map(|(i, _)| *i).collect();
        let now = Installed {
            v4,
            v6,
            plans: c.plans.len(),
            rules,
        };
        let keep_v4: HashSet<(u32, [u8; 5])> =
            now.v4.iter().map(|k| (k.prefix_len(), k.data())).collect();
        for k in old
            .v4
            .iter()
            .filter(|k| !keep_v4.contains(&(k.prefix_len(), k.data())))
        {
            let _ = m.v4.remove(k);
        }
        let keep_v6: HashSet<(u32, [u8; 17])> =
            now.v6.iter().map(|k| (k.prefix_len(), k.data())).collect();
        for k in old
            .v6
            .iter()
            .filter(|k| !keep_v6.contains(&(k.prefix_len(), k.data())))
        {
            let _ = m.v6.remove(k);
        }
        let keep_rules: HashSet<u32> = now.rules.iter().copied().collect();
        for i in old.rules.iter().filter(|i| !keep_rules.contains(i)) {
            m.rules
                .set(set * RULES_PER_SET + i, Rule::default(), 0)
                .map_err(map_err(MAP_RULES))?;
        }
        for p in c.plans.len() as u32..old.plans as u32 {
            m.plans
                .set(set * MAX_PLANS + p, PlanSlots::default(), 0)
                .map_err(map_err(MAP_PLANS))?;
        }
        for (p, slots) in c.plans.iter().enumerate() {
            m.plans
                .set(set * MAX_PLANS + p as u32, slots, 0)
                .map_err(map_err(MAP_PLANS))?;
        }
        for (i, rule) in &c.rules {
            m.rules
                .set(set * RULES_PER_SET + i, rule, 0)
                .map_err(map_err(MAP_RULES))?;
        }
        // One batch syscall per 16,384 prefixes where the kernel has them.
        let refs: Vec<SubscriberRef> = c.v4.iter().map(|(_, _, r)| *r).collect();
        if !batch::update(MAP_SUBS_V4, m.v4.map(), &now.v4, &refs)? {
            for (k, r) in now.v4.iter().zip(&refs) {
                m.v4.insert(k, r, 0).map_err(map_err(MAP_SUBS_V4))?;
            }
        }
        let refs: Vec<SubscriberRef> = c.v6.iter().map(|(_, _, r)| *r).collect();
        if !batch::update(MAP_SUBS_V6, m.v6.map(), &now.v6, &refs)? {
            for (k, r) in now.v6.iter().zip(&refs) {
                m.v6.insert(k, r, 0).map_err(map_err(MAP_SUBS_V6))?;
            }
        }
        m.installed[set as usize] = now;
        // The swap: one 16-byte write that the XDP program reads as a whole.
        let generation = m.generation.wrapping_add(1).max(1);
        m.control
            .set(
                0,
                PolicyControl {
                    generation,
                    active_set: set,
                    shaping: u32::from(c.shaping),
                    _reserved: 0,
                },
                0,
            )
            .map_err(map_err(MAP_CONTROL))?;
        m.generation = generation;
        m.active = set;
        Ok(generation)
    }

    /// One subscriber's counters `[class][direction]`: packets and bytes summed over the
    /// class's labels, policy drops and marks.
    pub fn subscriber_counters(&self, index: u32) -> Result<[[SubCounter; 2]; 4], ProbeError> {
        Ok(self.subscriber_usage(index)?.classes())
    }

    /// Everything the kernel counts for subscriber `index` (per label and direction; policy
    /// drops and marks per class and direction): a copy out of the mapped array.
    pub fn subscriber_usage(&self, index: u32) -> Result<SubUsage, ProbeError> {
        self.sub_counters
            .get(index)
            .ok_or(ProbeError::IndexOutOfRange(index))
    }

    /// The mapped per-subscriber counter array (for reading many subscribers at once).
    pub fn usage_map(&self) -> &UsageMap {
        &self.sub_counters
    }

    /// The per-subscriber change flags (`SUB_SEEN`): which indexes' counters moved since
    /// the daemon last looked.
    pub fn seen_map(&self) -> &SeenMap {
        &self.sub_seen
    }

    /// A loaded program, for attaching or `test_run`.
    pub fn program(&mut self, name: &'static str) -> Result<&mut Xdp, ProbeError> {
        program_of(&mut self.ebpf, name)
    }

    /// Attaches `program` to `interface` in native (driver) mode, falling back to generic
    /// (skb) mode with a warning when the driver has no XDP support.
    pub fn attach(
        &mut self,
        program: &'static str,
        interface: &str,
    ) -> Result<Attachment, ProbeError> {
        if self.pins.is_some() {
            return self.attach_pinned(program, interface);
        }
        let prog = self.program(program)?;
        let (link, mode) = match prog.attach(interface, XdpMode::Driver) {
            Ok(link) => (link, "native"),
            Err(native) => {
                tracing::warn!(
                    interface,
                    program,
                    error = %native,
                    "native XDP not available, falling back to generic mode"
                );
                let link = prog
                    .attach(interface, XdpMode::Skb)
                    .map_err(program_err(program))?;
                (link, "generic")
            }
        };
        self.links.push((program, link));
        Ok(Attachment {
            interface: interface.to_string(),
            program,
            mode,
            link_id: None,
            program_id: None,
            adopted: false,
        })
    }

    /// Observe-only mode: policies compiled for this probe from now on carry no DSCP
    /// rewrites ([`Probe::compile_options`]; the observe program must not change a frame),
    /// and [`Probe::stats`] reports the observe program's statistics. Call it before
    /// compiling a policy.
    pub fn observe_only(&mut self) {
        self.observe = true;
    }

    /// Whether [`Probe::observe_only`] was called.
    pub fn is_observe_only(&self) -> bool {
        self.observe
    }

    /// Observe-only mode on a mirror port: attaches `xdp_observe` to `interface` (native
    /// XDP, generic as a fallback, as [`Probe::attach`]). The program sees copies of both
    /// directions and passes every frame unchanged; see ebpf/src/observe.rs.
    pub fn attach_observe(&mut self, interface: &str) -> Result<Attachment, ProbeError> {
        self.observe_only();
        self.attach(PROG_OBSERVE, interface)
    }

    /// Replaces the subscriber networks the observe program takes a packet's direction
    /// from (source inside: up; destination inside: down). At most
    /// [`MAX_OBSERVE_NETWORKS`] per family; duplicates are written once.
    pub fn set_observe_networks(&self, nets: &[(IpAddr, u8)]) -> Result<(), ProbeError> {
        let mut m = self.observe_nets.lock().unwrap_or_else(|p| p.into_inner());
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (addr, len) in nets {
            match addr {
                IpAddr::V4(a) => v4.push(Key::new(u32::from(*len).min(32), a.octets())),
                IpAddr::V6(a) => v6.push(Key::new(u32::from(*len).min(128), a.octets())),
            }
        }
        if v4.len() > MAX_OBSERVE_NETWORKS as usize || v6.len() > MAX_OBSERVE_NETWORKS as usize {
            return Err(ProbeError::TooManyNetworks(MAX_OBSERVE_NETWORKS));
        }
        // Add the new ones first, then remove what is gone: a network in both lists is
        // never missing, so its packets keep their direction through a change.
        for k in &v4 {
            m.v4.insert(k, 1, 0).map_err(map_err(MAP_OBSERVE_V4))?;
        }
        for k in &v6 {
            m.v6.insert(k, 1, 0).map_err(map_err(MAP_OBSERVE_V6))?;
        }
        let keep4: HashSet<(u32, [u8; 4])> =
            v4.iter().map(|k| (k.prefix_len(), k.data())).collect();
        let keep6: HashSet<(u32, [u8; 16])> =
            v6.iter().map(|k| (k.prefix_len(), k.data())).collect();
        let ObserveNets {
            v4: map4,
            v6: map6,
            installed_v4,
            installed_v6,
        } = &mut *m;
        for k in installed_v4
            .iter()
            .filter(|k| !keep4.contains(&(k.prefix_len(), k.data())))
        {
            let _ = map4.remove(k);
        }
        for k in installed_v6
            .iter()
            .filter(|k| !keep6.contains(&(k.prefix_len(), k.data())))
        {
            let _ = map6.remove(k);
        }
        *installed_v4 = v4;
        *installed_v6 = v6;
        Ok(())
    }

    fn classifier(&mut self, name: &'static str) -> Result<&mut SchedClassifier, ProbeError> {
        program_of(&mut self.ebpf, name)
    }

    /// Attaches the TC egress programs that steer shaped flows into HTB classes:
    /// `tc_uplink_egress` on `uplink`, `tc_downlink_egress` on `downlink`. aya attaches
    /// through TCX on kernels from 6.6 (no qdisc needed, `bpftool net` lists them under
    /// `tc` as `tcx/egress`); older kernels get a clsact qdisc and a netlink filter. Both
    /// are detached by [`Probe::detach_all`] and when the probe is dropped.
    pub fn attach_tc_egress(
        &mut self,
        uplink: &str,
        downlink: &str,
    ) -> Result<Vec<Attachment>, ProbeError> {
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let mut out = Vec::new();
        for (program, interface) in [(PROG_TC_UPLINK, uplink), (PROG_TC_DOWNLINK, downlink)] {
            if tcx && self.pins.is_some() {
                out.push(self.attach_tc_pinned(program, interface)?);
                continue;
            }
            if !tcx {
                // Already there (EEXIST) is fine; any other failure shows up in attach.
                let _ = aya::programs::tc::qdisc_add_clsact(interface);
            }
            let link = self
                .classifier(program)?
                .attach(interface, TcAttachType::Egress)
                .map_err(program_err(program))?;
            self.tc_links.push((program, link));
            out.push(Attachment {
                interface: interface.to_string(),
                program,
                mode: if tcx { "tcx" } else { "clsact" },
                link_id: None,
                program_id: None,
                adopted: false,
            });
        }
        Ok(out)
    }

    /// Leaves the pinned links attached and every pin in place when this probe goes (for a
    /// daemon that stops to be replaced: the next one adopts them). Links that are not
    /// pinned are detached as usual.
    pub fn keep_attached(&mut self) {
        self.keep_pinned();
    }

    /// Detaches every program this probe attached.
    /// With pinned links (a probe from [`Probe::load_pinned`]) they are unpinned, and the
    /// instance's pin directory removed; see [`Probe::keep_attached`] for the alternative.
    pub fn detach_all(&mut self) -> Result<(), ProbeError> {
        self.unpin_all()?;
        for (program, link) in std::mem::take(&mut self.links) {
            self.program(program)?
                .detach(link)
                .map_err(program_err(program))?;
        }
        for (program, link) in std::mem::take(&mut self.tc_links) {
            self.classifier(program)?
                .detach(link)
                .map_err(program_err(program))?;
        }
        Ok(())
    }

    /// The per-label counters, summed over CPUs with wrapping arithmetic (a flow's earlier
    /// bytes move between labels on one CPU when it is labelled; see ebpf/src/counters.rs).
    pub fn counters(&self) -> Result<LabelCounters, ProbeError> {
        let map: PerCpuArray<&MapData, CounterValue> = PerCpuArray::try_from(
            self.ebpf
                .map(MAP_COUNTERS)
                .ok_or(ProbeError::Missing(MAP_COUNTERS))?,
        )
        .map_err(|source| ProbeError::Map {
            map: MAP_COUNTERS,
            source,
        })?;
        let mut out = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
        for label in ALL_LABELS {
            for dir in [Direction::Up, Direction::Down] {
                let per_cpu = map
                    .get(&counter_index(label.id(), dir), 0)
                    .map_err(|source| ProbeError::Map {
                        map: MAP_COUNTERS,
                        source,
                    })?;
                let slot = &mut out[label.id() as usize][dir.index()];
                for v in per_cpu.iter() {
                    slot.packets = slot.packets.wrapping_add(v.packets);
                    slot.bytes = slot.bytes.wrapping_add(v.bytes);
                    slot.flows = slot.flows.wrapping_add(v.flows);
                }
            }
        }
        Ok(out)
    }

    /// The probe's own statistics by name, summed over CPUs.
    /// In observe-only mode also the observe program's (`observe_up`, `observe_down`,
    /// `observe_unmatched`, `observe_would_drop`, `observe_passed`).
    pub fn stats(&self) -> Result<BTreeMap<&'static str, u64>, ProbeError> {
        let mut out = BTreeMap::new();
        for (stat, name) in ALL_STATS {
            debug_assert!((stat as u32) < STAT_SLOTS);
            out.insert(name, self.per_cpu_sum(MAP_STATS, stat as u32)?);
        }
        if self.observe {
            for (stat, name) in ALL_OBSERVE_STATS {
                out.insert(name, self.per_cpu_sum(MAP_OBSERVE_STATS, stat as u32)?);
            }
        }
        Ok(out)
    }

    /// Slot `index` of the per-CPU `u64` array `name`, summed over CPUs.
    fn per_cpu_sum(&self, name: &'static str, index: u32) -> Result<u64, ProbeError> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(name).ok_or(ProbeError::Missing(name))?)
                .map_err(map_err(name))?;
        let per_cpu = map.get(&index, 0).map_err(map_err(name))?;
        Ok(per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
    }

    /// The flow table's entry for `key`, if it holds one: one lookup, not a walk of the
    /// table (tests that run thousands of cases check each case's flow this way).
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowValue>, ProbeError> {
        let map: HashMap<&MapData, FlowKey, FlowValue> = HashMap::try_from(
            self.ebpf
                .map(MAP_FLOWS)
                .ok_or(ProbeError::Missing(MAP_FLOWS))?,
        )
        .map_err(map_err(MAP_FLOWS))?;
        match map.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_FLOWS)(e)),
        }
    }

    /// Every entry of the flow table. Entries that vanish while the table is walked (LRU
    /// eviction) are skipped.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, ProbeError> {
        let map: HashMap<&MapData, FlowKey, FlowValue> = HashMap::try_from(
            self.ebpf
                .map(MAP_FLOWS)
                .ok_or(ProbeError::Missing(MAP_FLOWS))?,
        )
        .map_err(|source| ProbeError::Map {
            map: MAP_FLOWS,
            source,
        })?;
        let max = self.options().flow_table_size as usize;
        Ok(distinct_walk(map.iter(), max))
    }
}

/// The entries of one walk of a hash map, each key once, at most `max` of them.
///
/// The kernel's "next key" of a key that is gone (an LRU map evicts under churn) is the
/// first key again, so a walk may pass over the same entries several times: repeated keys
/// are skipped, and the walk ends after `max` distinct keys or `2 * max + 1024` steps (a
/// bound on its time however much the map churns).
fn distinct_walk<K, V, E>(items: impl Iterator<Item = Result<(K, V), E>>, max: usize) -> Vec<(K, V)>
where
    K: Copy + Eq + std::hash::Hash,
{
    let mut seen = HashSet::with_capacity(max.min(1 << 20));
    let mut out = Vec::with_capacity(max.min(1 << 20));
    for item in items.take(max.saturating_mul(2).saturating_add(1024)) {
        if out.len() >= max {
            break;
        }
        if let Ok((k, v)) = item
            && seen.insert(k)
        {
            out.push((k, v));
        }
    }
    out
}

#[cfg(test)]
mod walk_tests {
    use super::distinct_walk;

    /// A walk as the kernel serves it under churn: restarts from the first key.
    fn restarting(keys: &[u32], restarts: usize) -> Vec<Result<(u32, u32), ()>> {
        let mut items = Vec::new();
        for r in 0..=restarts {
            // Each pass gets a little further before its key is evicted.
            let upto = keys.len() * (r + 1) / (restarts + 1);
            items.extend(keys[..upto].iter().map(|&k| Ok((k, k * 10))));
        }
        items
    }

    #[test]
    fn a_restarting_walk_lists_each_key_once() {
        let keys: Vec<u32> = (0..1000).collect();
        let items = restarting(&keys, 3);
        assert!(items.len() > 2000, "the raw walk repeats keys");
        let got = distinct_walk(items.into_iter(), 1000);
        assert_eq!(got.len(), 1000);
        let mut ks: Vec<u32> = got.iter().map(|(k, _)| *k).collect();
        ks.sort_unstable();
        assert_eq!(ks, keys);
        assert!(got.iter().all(|(k, v)| *v == k * 10));
    }

    #[test]
    fn a_walk_stops_at_the_maps_size_and_skips_failed_lookups() {
        // More distinct keys than the map can hold (entries added while walking).
        let items = (0..5000u32).map(|k| if k % 7 == 0 { Err(()) } else { Ok((k, k)) });
        let got = distinct_walk(items, 100);
        assert_eq!(got.len(), 100);
        assert!(got.iter().all(|(k, _)| k % 7 != 0));
        // Endless repetition of a few keys ends after a bounded number of steps.
        let got = distinct_walk(std::iter::repeat_n(Ok::<_, ()>((1u8, ())), 1 << 30), 100);
        assert_eq!(got.len(), 1);
    }
}
