use std::collections::HashMap;

use super::*;
use crate::tracker::Slicer;

fn key(i: u32) -> FlowKey {
    crate::snapshot::tests::flow(i).0
}

fn value(down: u64) -> FlowValue {
    FlowValue {
        bytes: [down / 10, down],
        packets: [1, 1],
        ..FlowValue::default()
    }
}

/// A hash table as the kernel's batch lookup walks it: buckets in order, each read whole.
struct Table {
    buckets: Vec<Vec<(FlowKey, FlowValue)>>,
}

impl Table {
    fn new(buckets: usize) -> Table {
        Table {
            buckets: vec![Vec::new(); buckets],
        }
    }

    fn bucket(&self, i: u32) -> usize {
        (i as usize).wrapping_mul(2_654_435_761) % self.buckets.len()
    }

    fn put(&mut self, i: u32, v: FlowValue) {
        let b = self.bucket(i);
        let bucket = &mut self.buckets[b];
        match bucket.iter_mut().find(|(k, _)| *k == key(i)) {
            Some(e) => e.1 = v,
            None => bucket.push((key(i), v)),
        }
    }

    fn remove(&mut self, i: u32) {
        let b = self.bucket(i);
        self.buckets[b].retain(|(k, _)| *k != key(i));
    }

    fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// One step: whole buckets from `step.from` until `step.budget` flows are read, and the
    /// token of the next bucket (`None` at the end).
    fn read(&self, step: Step) -> (Vec<(FlowKey, FlowValue)>, Option<u64>) {
        let mut b = step.from.unwrap_or(0) as usize;
        let mut out = Vec::new();
        while b < self.buckets.len() && out.len() < step.budget {
            out.extend(self.buckets[b].iter().copied());
            b += 1;
        }
        (out, (b < self.buckets.len()).then_some(b as u64))
    }

    fn sorted(&self) -> Vec<(FlowKey, FlowValue)> {
        let mut all: Vec<_> = self.buckets.iter().flatten().copied().collect();
        all.sort_by_key(|f| (f.0.remote_addr, f.0.sub_port));
        all
    }
}

fn sorted(mut flows: Vec<(FlowKey, FlowValue)>) -> Vec<(FlowKey, FlowValue)> {
    flows.sort_by_key(|f| (f.0.remote_addr, f.0.sub_port));
    flows
}

/// A table of `n` flows in 256 buckets, and a walk of 40 flows a step that has read it once.
fn read_once(n: u32) -> (Table, Walk) {
    let mut table = Table::new(256);
    for i in 0..n {
        table.put(i, value(1));
    }
    let mut walk = Walk::new(40);
    step(&mut walk, &table);
    (table, walk)
}

/// A walk and the snapshot it lands in (four slices).
struct Walk {
    walk: PartWalk,
    snap: Snapshot,
}

impl Walk {
    fn new(budget: usize) -> Walk {
        Walk {
            walk: PartWalk::new(budget),
            snap: Snapshot::new(Slicer::new(4)),
        }
    }

    fn step(&self) -> Step {
        self.walk.step()
    }

    fn land(&mut self, part: Vec<(FlowKey, FlowValue)>, next: Option<u64>) -> bool {
        self.walk.land(&self.snap, &part, next)
    }

    fn flows(&self) -> Vec<(FlowKey, FlowValue)> {
        assert_eq!(self.snap.len(), self.walk.len());
        self.snap.iter().map(|e| (*e.key(), *e.value())).collect()
    }

    fn len(&self) -> usize {
        self.flows().len()
    }

    fn cycles(&self) -> u64 {
        self.walk.cycles()
    }
}

fn step(walk: &mut Walk, table: &Table) -> bool {
    let (part, next) = table.read(walk.step());
    walk.land(part, next)
}

#[test]
fn the_budget_reads_small_tables_whole_and_large_ones_in_at_most_eight_steps() {
    assert!(!is_parted(65_536));
    assert!(!is_parted(STEP_FLOWS));
    assert!(is_parted(STEP_FLOWS + 1));
    assert_eq!(step_budget(1_048_576), STEP_FLOWS);
    assert_eq!(step_budget(4_194_304), 524_288);
    assert!(4_194_304usize.div_ceil(step_budget(4_194_304)) <= CYCLE_SECONDS);
}

#[test]
fn a_table_below_the_budget_is_read_whole_every_step() {
    let mut table = Table::new(64);
    for i in 0..50 {
        table.put(i, value(u64::from(i)));
    }
    let mut walk = Walk::new(100);
    for round in 0..3u64 {
        let s = walk.step();
        assert_eq!(s.from, None, "every step starts a cycle");
        assert!(step(&mut walk, &table), "and ends it");
        assert_eq!(walk.cycles(), round + 1);
        assert_eq!(sorted(walk.flows()), table.sorted());
        table.remove(round as u32);
    }
}

#[test]
fn the_first_cycle_is_read_whole_then_a_part_a_step() {
    let mut table = Table::new(1024);
    for i in 0..1000 {
        table.put(i, value(1));
    }
    let mut walk = Walk::new(100);
    assert_eq!(walk.step().budget, usize::MAX);
    assert!(step(&mut walk, &table));
    assert_eq!(walk.len(), 1000);
    // Every flow moves; each step lands only the part it read, the rest keep their reading.
    for i in 0..1000 {
        table.put(i, value(2));
    }
    let mut steps = 0;
    loop {
        let s = walk.step();
        assert_eq!(s.budget, 100);
        let (part, next) = table.read(s);
        assert!(part.len() >= 100 || next.is_none(), "{}", part.len());
        let ended = walk.land(part, next);
        steps += 1;
        let flows = walk.flows();
        assert_eq!(flows.len(), 1000, "no flow lost between parts");
        let fresh = flows.iter().filter(|f| f.1.bytes[1] == 2).count();
        if ended {
            assert_eq!(fresh, 1000);
            break;
        }
        assert!(
            fresh < 1000 && fresh >= 100 * steps,
            "step {steps}: {fresh}"
        );
    }
    assert!((10..=11).contains(&steps), "{steps}");
    assert_eq!(
        walk.step().from,
        None,
        "the next cycle starts at the first bucket"
    );
}

#[test]
fn a_flow_that_left_is_dropped_when_a_cycle_ends_without_it_and_a_new_one_is_met() {
    let (mut table, mut walk) = read_once(200);
    table.remove(7);
    table.put(500, value(9));
    // Until a whole cycle has ended after the change, the old flow may still be listed;
    // after it, the snapshot is the table.
    while !step(&mut walk, &table) {}
    assert_eq!(sorted(walk.flows()), table.sorted());
    assert_eq!(walk.len(), 200);
    assert!(walk.flows().iter().all(|f| f.0 != key(7)));
}

#[test]
fn differences_taken_each_step_count_every_byte_once() {
    // A reader that adds each flow's growth since its last look (the IPFIX tracker, the
    // swarm view) sees the table's totals however stale the parts are.
    let mut table = Table::new(512);
    let mut walk = Walk::new(50);
    let mut last: HashMap<FlowKey, u64> = HashMap::new();
    let mut counted = 0u64;
    let mut sent = 0u64;
    for round in 0..60u32 {
        // Flows grow by 1..=3 bytes a round; a new flow every other round.
        for i in 0..300u32 {
            if round == 0 || i % 3 == round % 3 {
                let now = table
                    .buckets
                    .iter()
                    .flatten()
                    .find(|f| f.0 == key(i))
                    .map_or(0, |f| f.1.bytes[1]);
                let grow = u64::from(1 + i % 3);
                table.put(i, value(now + grow));
                sent += grow;
            }
        }
        if round % 2 == 0 {
            table.put(1000 + round, value(5));
            sent += 5;
        }
        step(&mut walk, &table);
        for (k, v) in walk.flows() {
            let before = last.insert(k, v.bytes[1]).unwrap_or(0);
            counted += v.bytes[1] - before;
        }
    }
    // The cycle under way ends, and the next, read whole after the last change, brings
    // every flow's last reading in.
    while !step(&mut walk, &table) {}
    while !step(&mut walk, &table) {}
    for (k, v) in walk.flows() {
        let before = last.insert(k, v.bytes[1]).unwrap_or(0);
        counted += v.bytes[1] - before;
    }
    assert_eq!(sorted(walk.flows()), table.sorted());
    assert_eq!(table.len(), 330);
    assert_eq!(counted, sent);
}

#[test]
fn a_reader_keeps_the_slice_it_holds_while_a_part_lands_and_the_rest_change_in_place() {
    let (mut table, mut walk) = read_once(200);
    let held = walk.snap.slice(0);
    let other = std::sync::Arc::as_ptr(&walk.snap.slice(1));
    for i in 0..200 {
        table.put(i, value(7));
    }
    while !step(&mut walk, &table) {}
    assert!(
        held.iter().all(|f| f.1.bytes[1] == 1),
        "the held slice changed"
    );
    assert!(walk.snap.slice(0).iter().all(|f| f.1.bytes[1] == 7));
    assert_eq!(
        std::sync::Arc::as_ptr(&walk.snap.slice(1)),
        other,
        "slice 1 was copied"
    );
    assert!(walk.walk.holds(&key(5)) && !walk.walk.holds(&key(500)));
    assert_eq!(sorted(walk.flows()), table.sorted());
}
