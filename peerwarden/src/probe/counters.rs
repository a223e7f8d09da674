//! Where the counters are read: per label and direction (summed over CPUs), the probe's
//! own statistics by name, and each subscriber's usage out of the mapped array
//! (`usage.rs`).

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};
use peerwarden_common::{
    CounterValue, Direction,
    label::ALL_LABELS,
    observe::ALL_OBSERVE_STATS,
    policy::{SubCounter, SubUsage},
    stats::{ALL_STATS, STAT_SLOTS, counter_index},
};

use super::{
    LabelCounters, MAP_COUNTERS, MAP_OBSERVE_STATS, MAP_STATS, Probe, ProbeError, SeenMap,
    UsageMap, map_err,
};

impl Probe {
    /// The per-label counters, summed over CPUs with wrapping arithmetic (a flow's earlier
    /// bytes move between labels on one CPU when it is labelled; see ebpf/src/counters.rs).
    pub fn counters(&self) -> Result<LabelCounters, ProbeError> {
        let map: PerCpuArray<&MapData, CounterValue> = self.per_cpu_array(MAP_COUNTERS)?;
        let mut out = vec![[CounterValue::default(); 2]; ALL_LABELS.len()];
        for label in ALL_LABELS {
            for dir in [Direction::Up, Direction::Down] {
                let per_cpu = map
                    .get(&counter_index(label.id(), dir), 0)
                    .map_err(map_err(MAP_COUNTERS))?;
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

    /// The per-CPU array `name` with values of type `V`.
    fn per_cpu_array<V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<PerCpuArray<&MapData, V>, ProbeError> {
        PerCpuArray::try_from(self.held_map(name)?).map_err(map_err(name))
    }

    /// Slot `index` of the per-CPU `u64` array `name`, summed over CPUs.
    fn per_cpu_sum(&self, name: &'static str, index: u32) -> Result<u64, ProbeError> {
        let map: PerCpuArray<&MapData, u64> = self.per_cpu_array(name)?;
        let per_cpu = map.get(&index, 0).map_err(map_err(name))?;
        Ok(per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
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
}
