//! The kernel probe as user space sees it: the embedded eBPF object, loading it with the
//! flow table sized from the config, attaching it to the gateway's interfaces, and reading
//! its maps.

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use peerwarden_common::{
    CounterValue, Direction, FlowKey, FlowValue,
    label::ALL_LABELS,
    stats::{ALL_STATS, STAT_SLOTS, counter_index},
};

/// The compiled kernel programs (ebpf/, built by build.rs with aya-build).
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/peerwarden"));

/// Entry point for packets arriving from subscribers (attached to the downlink).
pub const PROG_DOWNLINK: &str = "xdp_downlink";
/// Entry point for packets arriving from the internet (attached to the uplink).
pub const PROG_UPLINK: &str = "xdp_uplink";
/// A bare XDP_PASS program, the benchmark's baseline.
pub const PROG_PASS: &str = "xdp_pass";

const MAP_FLOWS: &str = "FLOWS";
const MAP_COUNTERS: &str = "COUNTERS";
const MAP_STATS: &str = "STATS";

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
}

/// How a program ended up attached.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Program name.
    pub program: &'static str,
    /// `native` (driver) or `generic` (skb).
    pub mode: &'static str,
}

/// The loaded probe. Dropping it detaches and unloads every program.
pub struct Probe {
    ebpf: Ebpf,
    links: Vec<(&'static str, XdpLinkId)>,
}

/// Per-label counters, summed over CPUs: `[up, down]` per label id.
pub type LabelCounters = Vec<[CounterValue; 2]>;

impl Probe {
    /// Loads the object with a flow table of `flow_table_size` entries and loads (verifies)
    /// its programs without attaching them.
    pub fn load(flow_table_size: u32) -> Result<Probe, ProbeError> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_FLOWS, flow_table_size)
            .load(PROBE_OBJECT)?;
        for name in [PROG_DOWNLINK, PROG_UPLINK, PROG_PASS] {
            let prog: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(ProbeError::Missing(name))?
                .try_into()
                .map_err(|source| ProbeError::Program { program: name, source })?;
            prog.load()
                .map_err(|source| ProbeError::Program { program: name, source })?;
        }
        Ok(Probe { ebpf, links: Vec::new() })
    }

    /// A loaded program, for attaching or `test_run`.
    pub fn program(&mut self, name: &'static str) -> Result<&mut Xdp, ProbeError> {
        self.ebpf
            .program_mut(name)
            .ok_or(ProbeError::Missing(name))?
            .try_into()
            .map_err(|source| ProbeError::Program { program: name, source })
    }

    /// Attaches `program` to `interface` in native (driver) mode, falling back to generic
    /// (skb) mode with a warning when the driver has no XDP support.
    pub fn attach(
        &mut self,
        program: &'static str,
        interface: &str,
    ) -> Result<Attachment, ProbeError> {
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
                    .map_err(|source| ProbeError::Program { program, source })?;
                (link, "generic")
            }
        };
        self.links.push((program, link));
        Ok(Attachment { interface: interface.to_string(), program, mode })
    }

    /// Detaches every program this probe attached.
    pub fn detach_all(&mut self) -> Result<(), ProbeError> {
        for (program, link) in std::mem::take(&mut self.links) {
            self.program(program)?
                .detach(link)
                .map_err(|source| ProbeError::Program { program, source })?;
        }
        Ok(())
    }

    /// The per-label counters, summed over CPUs with wrapping arithmetic (a flow's earlier
    /// bytes move between labels on one CPU when it is labelled; see ebpf/src/counters.rs).
    pub fn counters(&self) -> Result<LabelCounters, ProbeError> {
        let map: PerCpuArray<&MapData, CounterValue> = PerCpuArray::try_from(
            self.ebpf.map(MAP_COUNTERS).ok_or(ProbeError::Missing(MAP_COUNTERS))?,
        )
        .map_err(|source| ProbeError::Map { map: MAP_COUNTERS, source })?;
        let mut out = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
        for label in ALL_LABELS {
            for dir in [Direction::Up, Direction::Down] {
                let per_cpu = map
                    .get(&counter_index(label.id(), dir), 0)
                    .map_err(|source| ProbeError::Map { map: MAP_COUNTERS, source })?;
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
    pub fn stats(&self) -> Result<BTreeMap<&'static str, u64>, ProbeError> {
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_STATS).ok_or(ProbeError::Missing(MAP_STATS))?)
                .map_err(|source| ProbeError::Map { map: MAP_STATS, source })?;
        let mut out = BTreeMap::new();
        for (stat, name) in ALL_STATS {
            debug_assert!((stat as u32) < STAT_SLOTS);
            let per_cpu = map
                .get(&(stat as u32), 0)
                .map_err(|source| ProbeError::Map { map: MAP_STATS, source })?;
            out.insert(name, per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v)));
        }
        Ok(out)
    }

    /// Every entry of the flow table. Entries that vanish while the table is walked (LRU
    /// eviction) are skipped.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, ProbeError> {
        let map: HashMap<&MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(MAP_FLOWS).ok_or(ProbeError::Missing(MAP_FLOWS))?)
                .map_err(|source| ProbeError::Map { map: MAP_FLOWS, source })?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }
}
