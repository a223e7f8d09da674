//! The flow table, one entry or a walk of all of them, and the deep classifier's channel
//! to the kernel: the ring buffer of payload samples out, verdicts on flows in.

use std::collections::HashSet;

use aya::maps::{Array, HashMap, MapData, RingBuf};
use peerwarden_common::{
    FlowKey, FlowValue,
    deep::{SwarmView, Verdict},
};

use super::{MAP_FLOWS, MAP_VERDICTS, Probe, ProbeError, map_err};

const MAP_SWARM_VIEW: &str = "SWARM_VIEW";

/// A step's flows and the token to resume from (`None`: the table's end).
pub type FlowPart = super::batch::Part<FlowKey, FlowValue>;

/// The buffers of the flow table's walk in parts, kept across steps ([`Probe::flows_part_into`]).
pub type FlowBuf = super::batch::PartBuf<FlowKey, FlowValue>;

impl Probe {
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

    /// Turns the kernel's swarm-only samples on or off (`swarms.enabled`; issue 15): with it
    /// on, the packet that makes the kernel's fingerprints decide a flow as BitTorrent, and
    /// the flow's next few payload packets, reach the ring marked
    /// [`SAMPLE_SWARM_ONLY`](peerwarden_common::deep::SAMPLE_SWARM_ONLY). Off at load.
    pub fn set_swarm_view(&mut self, on: bool) -> Result<(), ProbeError> {
        let map = self
            .ebpf
            .map_mut(MAP_SWARM_VIEW)
            .ok_or(ProbeError::Missing(MAP_SWARM_VIEW))?;
        let mut view: Array<_, SwarmView> =
            Array::try_from(map).map_err(map_err(MAP_SWARM_VIEW))?;
        view.set(0, SwarmView::from(on), 0)
            .map_err(map_err(MAP_SWARM_VIEW))
    }

    /// The flow table's entry for `key`, if it holds one: one lookup, not a walk of the
    /// table (tests that run thousands of cases check each case's flow this way).
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowValue>, ProbeError> {
        match self.flow_table()?.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_FLOWS)(e)),
        }
    }

    /// Every entry of the flow table. Entries that vanish while the table is walked (LRU
    /// eviction) are skipped.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>, ProbeError> {
        let max = self.options().flow_table_size as usize;
        // One syscall per 16,384 flows where the kernel has batch lookups (5.6 and later),
        // instead of two per flow.
        if let Some(map) = self.flow_map_data()?
            && let Some(all) = super::batch::lookup_all(MAP_FLOWS, map, max)?
        {
            return Ok(all);
        }
        let map = self.flow_table()?;
        Ok(distinct_walk(map.iter(), max))
    }

    /// One step of a walk of the flow table in parts (`peerwarden_ipfix::parts`): the flows
    /// of the buckets from token `from` (`None`: the first) until at least `budget` of them,
    /// and where to resume (`None`: the table's end). `Ok(None)` where the kernel has no
    /// batch lookups (the caller walks the whole table with [`Probe::flows`]).
    pub fn flows_part(
        &self,
        from: Option<u64>,
        budget: usize,
    ) -> Result<Option<FlowPart>, ProbeError> {
        match self.flow_map_data()? {
            Some(map) => super::batch::lookup_part(MAP_FLOWS, map, from, budget),
            None => Ok(None),
        }
    }

    /// [`Probe::flows_part`] into `buf`, kept by the caller from one step to the next (no
    /// allocation a step): its entries become the part's, and the answer is where to
    /// resume (`Some(None)`: the table's end). `Ok(None)` where the kernel has no batch
    /// lookups.
    pub fn flows_part_into(
        &self,
        from: Option<u64>,
        budget: usize,
        buf: &mut FlowBuf,
    ) -> Result<Option<Option<u64>>, ProbeError> {
        match self.flow_map_data()? {
            Some(map) => super::batch::lookup_part_into(MAP_FLOWS, map, from, budget, buf),
            None => Ok(None),
        }
    }

    /// The flow table's map (an LRU hash, or a plain hash in tests' loads).
    fn flow_map_data(&self) -> Result<Option<&MapData>, ProbeError> {
        Ok(match self.held_map(MAP_FLOWS)? {
            aya::maps::Map::LruHashMap(m) | aya::maps::Map::HashMap(m) => Some(m),
            _ => None,
        })
    }

    /// The flow table, read in place.
    fn flow_table(&self) -> Result<HashMap<&MapData, FlowKey, FlowValue>, ProbeError> {
        HashMap::try_from(self.held_map(MAP_FLOWS)?).map_err(map_err(MAP_FLOWS))
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
