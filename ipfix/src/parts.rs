//! The flow reader's walk of a large table in parts: a part of it a second instead of the
//! whole table every second.
//!
//! The kernel's batch lookup (`BPF_MAP_LOOKUP_BATCH`) walks a hash map bucket by bucket and
//! hands back a token, the next bucket, so a walk can stop after any call and resume there
//! the next second. A flow always hashes to the same bucket, so one pass over the buckets
//! (a **cycle**) meets every flow that stayed in the table the whole time exactly once.
//!
//! [`PartWalk`] keeps where the walk stands ([`PartWalk::step`]) and the table as of the
//! latest reading of each flow ([`PartWalk::land`]): the flows of a part replace their
//! earlier readings, and at the end of a cycle the flows it did not meet are dropped (they
//! left the table). What that means for the readers of the result:
//!
//! - a flow's reading is at most one cycle old ([`CYCLE_SECONDS`] seconds at most);
//! - a flow that left the table stays listed until the end of the next cycle to end;
//! - counters only grow, so a reader that takes differences (the IPFIX tracker, the swarm
//!   view) counts every byte once: an older reading gives a smaller difference now and the
//!   rest later.
//!
//! The first cycle is read whole in one step, so the first result is the whole table (the
//! IPFIX exporter adopts a table inherited from an earlier daemon from it), and a table
//! of at most [`STEP_FLOWS`] entries ([`is_parted`] is false) is not walked in parts at all.

use std::collections::HashMap;

use peerwarden_common::{FlowKey, FlowValue};

/// The fewest flows read in a step: a table this size or smaller is read whole each second.
pub const STEP_FLOWS: usize = 131_072;

/// A cycle takes at most about this many steps (seconds): larger tables read more a step.
pub const CYCLE_SECONDS: usize = 8;

/// Flows read in a step for a table of `table` entries.
pub fn step_budget(table: usize) -> usize {
    STEP_FLOWS.max(table.div_ceil(CYCLE_SECONDS))
}

/// Whether a table of `table` entries is walked in parts (larger than one step).
pub fn is_parted(table: usize) -> bool {
    table > step_budget(table)
}

/// Where a step starts and how much it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The batch token to resume from; `None`: the table's first bucket.
    pub from: Option<u64>,
    /// Read whole buckets until at least this many flows (or the table's end).
    pub budget: usize,
}

/// A walk of the flow table in parts, and the table as of each flow's latest reading.
#[derive(Debug)]
pub struct PartWalk {
    budget: usize,
    /// Where the next step starts (`None`: a new cycle).
    token: Option<u64>,
    /// The cycle under way (0: the first, read whole).
    cycle: u64,
    /// Each flow's latest reading and the cycle that made it.
    flows: HashMap<FlowKey, (FlowValue, u64)>,
}

impl PartWalk {
    /// A walk that reads at least `budget` flows a step (at least one).
    pub fn new(budget: usize) -> PartWalk {
        PartWalk {
            budget: budget.max(1),
            token: None,
            cycle: 0,
            flows: HashMap::new(),
        }
    }

    /// A walk of a table of `table` entries ([`step_budget`]).
    pub fn for_table(table: usize) -> PartWalk {
        PartWalk::new(step_budget(table))
    }

    /// The next step: where it starts and how many flows it reads (no bound in the first
    /// cycle, which is read whole).
    pub fn step(&self) -> Step {
        Step {
            from: self.token,
            budget: if self.cycle == 0 {
                usize::MAX
            } else {
                self.budget
            },
        }
    }

    /// Cycles ended so far.
    pub fn cycles(&self) -> u64 {
        self.cycle
    }

    /// Lands the flows `part` the step read and where it stopped: `Some(token)` to resume
    /// from, `None` when it reached the table's end (the cycle ends: the flows it did not
    /// meet are dropped). Returns whether a cycle ended.
    pub fn land(
        &mut self,
        part: impl IntoIterator<Item = (FlowKey, FlowValue)>,
        next: Option<u64>,
    ) -> bool {
        let cycle = self.cycle;
        for (k, v) in part {
            self.flows.insert(k, (v, cycle));
        }
        self.token = next;
        if next.is_some() {
            return false;
        }
        self.flows.retain(|_, (_, seen)| *seen == cycle);
        self.cycle += 1;
        true
    }

    /// Lands a whole walk of the table (a kernel without batch lookups): the flows it did
    /// not list are dropped, and the next step starts a new cycle.
    pub fn land_whole(&mut self, all: impl IntoIterator<Item = (FlowKey, FlowValue)>) {
        // What parts of this cycle read before is older than the whole walk.
        self.flows.clear();
        self.land(all, None);
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The table as of each flow's latest reading (in no order).
    pub fn flows(&self) -> Vec<(FlowKey, FlowValue)> {
        self.flows.iter().map(|(k, (v, _))| (*k, *v)).collect()
    }
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
