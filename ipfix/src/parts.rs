//! The flow reader's walk of a large table in parts: a part of it a second instead of the
//! whole table every second.
//!
//! The kernel's batch lookup (`BPF_MAP_LOOKUP_BATCH`) walks a hash map bucket by bucket and
//! hands back a token, the next bucket, so a walk can stop after any call and resume there
//! the next second. A flow always hashes to the same bucket, so one pass over the buckets
//! (a **cycle**) meets every flow that stayed in the table the whole time exactly once.
//!
//! [`PartWalk`] keeps where the walk stands ([`PartWalk::step`]) and lands each part in the
//! daemon's [`Snapshot`] in place ([`PartWalk::land`]): the flows of a part replace their
//! earlier readings, and at the end of a cycle the flows it did not meet are dropped (they
//! left the table). The snapshot is not rebuilt: only the part's flows are written (a
//! rebuild of a 1,000,000-flow snapshot a second cost more than the kernel's copy saved). What that means for the readers of the result:
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

use peerwarden_common::{FlowKey, FlowValue};

use crate::snapshot::{Index, Snapshot};

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

/// A walk of the flow table in parts, landing in a [`Snapshot`] (each flow's latest reading).
#[derive(Debug)]
pub struct PartWalk {
    budget: usize,
    /// Where the next step starts (`None`: a new cycle).
    token: Option<u64>,
    /// The cycle under way (0: the first, read whole).
    cycle: u64,
    /// Where each flow is in the snapshot, and the cycle of its latest reading.
    index: Index,
}

impl PartWalk {
    /// A walk that reads at least `budget` flows a step (at least one).
    pub fn new(budget: usize) -> PartWalk {
        PartWalk {
            budget: budget.max(1),
            token: None,
            cycle: 0,
            index: Index::default(),
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

    /// Lands the flows `part` the step read into `snapshot` (always the same one: the walk
    /// keeps where each flow is in it) and where the step stopped: `Some(token)` to resume
    /// from, `None` when it reached the table's end (the cycle ends: the flows it did not
    /// meet are dropped). Returns whether a cycle ended.
    pub fn land(
        &mut self,
        snapshot: &Snapshot,
        part: &[(FlowKey, FlowValue)],
        next: Option<u64>,
    ) -> bool {
        let end = next.is_none();
        snapshot.merge(&mut self.index, part, self.cycle, end);
        self.token = next;
        if end {
            self.cycle += 1;
        }
        end
    }

    /// Whether the snapshot holds `key` (as of the last step).
    pub fn holds(&self, key: &FlowKey) -> bool {
        self.index.holds(key)
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
