//! The kernel probe as user space sees it: the embedded eBPF object, loading it with the
//! flow table sized from the config, attaching it to the gateway's interfaces, and reading
//! its maps.
//!
//! [`Probe`] is one type; its methods live with the job they do:
//!
//! - `load.rs`: [`ProbeOptions`] (map sizes), [`Probe::load`]/[`Probe::load_with`], and
//!   [`Probe::load_pinned`], which adopts an instance's pinned maps.
//! - `attach.rs`: attaching the XDP programs ([`Probe::attach`], [`Probe::attach_observe`]
//!   with its subscriber networks), the TC egress programs, adopting or pinning the links,
//!   [`Probe::keep_attached`] and [`Probe::detach_all`]; [`interface_index`].
//! - `pins.rs`: the pin directory of an instance under `/sys/fs/bpf/peerwarden` (which maps
//!   are pinned, their shapes, the instance lock, `peerwarden unload`).
//! - `policy.rs`: the policy maps: [`Probe::install_policy`] writes a compiled policy into
//!   the idle set and flips the active one; [`Probe::compile_options`] says what the
//!   compiler (`peerwarden_policies::compile`) must fit. `batch.rs` writes the prefix tries
//!   in batches.
//! - `counters.rs`: the per-label counters, the probe's statistics and the per-subscriber
//!   usage; `usage.rs` maps the per-subscriber array into memory.
//! - `flows.rs`: the flow table ([`Probe::flow`], [`Probe::flows`]) and the deep
//!   classifier's channel (payload samples out, verdicts in).

use std::sync::Mutex;

use aya::{
    Ebpf,
    maps::{HashMap, MapData, RingBuf},
    programs::{tc::SchedClassifierLinkId, xdp::XdpLinkId},
};
use peerwarden_common::{FlowKey, deep::Verdict};

mod attach;
mod batch;
mod counters;
mod flows;
mod load;
pub mod pins;
mod policy;
mod steer;
mod usage;

pub use attach::{NoSuchInterface, interface_index};
pub use flows::{FlowBuf, FlowPart};
pub use load::ProbeOptions;
pub use peerwarden_common::stats::LabelCounters;
pub use usage::{SeenMap, UsageMap, UsageMapError};

/// The compiled kernel programs (ebpf/, built by build.rs with aya-build).
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/peerwarden"));

/// Bench-only kernel programs (ebpf/src/bench.rs): flow-table layouts measured against each
/// other by `tests/benches/flow_key.rs`. The daemon never loads this object.
pub static FLOW_BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow_bench"));

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

// The object's maps, by name.
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
    /// The pinned maps or links of the instance (see pins.rs).
    #[error(transparent)]
    Pin(#[from] pins::PinError),
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
    policy: Mutex<policy::PolicyMaps>,
    sub_counters: UsageMap,
    sub_seen: SeenMap,
    options: ProbeOptions,
    /// Set by [`Probe::attach_observe`]: policies are compiled without DSCP rewrites
    /// ([`Probe::compile_options`]), and the statistics include the observe program's.
    observe: bool,
    observe_nets: Mutex<attach::ObserveNets>,
    /// The instance's pin directory and the links held pinned ([`Probe::load_pinned`]).
    pins: Option<attach::Pins>,
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

impl Probe {
    /// The map `name` as `Ebpf` still holds it: those only read, and read in place (the
    /// flow table, the counters, the statistics).
    fn held_map(&self, name: &'static str) -> Result<&aya::maps::Map, ProbeError> {
        self.ebpf.map(name).ok_or(ProbeError::Missing(name))
    }
}
