//! Per-CPU counters: per (label, direction), and the probe's own statistics.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use peerwarden_common::{
    CounterValue, Direction, Stat,
    stats::{COUNTER_SLOTS, STAT_SLOTS, counter_index},
};

#[map]
static COUNTERS: PerCpuArray<CounterValue> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

#[inline(always)]
pub fn stat(s: Stat) {
    if let Some(p) = STATS.get_ptr_mut(s as u32) {
        // SAFETY: a per-CPU slot; nothing else on this CPU runs while we hold it.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn slot(label: u16, dir: Direction) -> Option<&'static mut CounterValue> {
    // SAFETY: as in `stat`.
    COUNTERS
        .get_ptr_mut(counter_index(label, dir))
        .map(|p| unsafe { &mut *p })
}

/// Counts one packet of `bytes` under `label` going `dir`.
#[inline(always)]
pub fn count(label: u16, dir: Direction, bytes: u64) {
    if let Some(c) = slot(label, dir) {
        c.packets += 1;
        c.bytes += bytes;
    }
}

/// Counts one new flow under `label`.
#[inline(always)]
pub fn count_flow(label: u16, dir: Direction) {
    if let Some(c) = slot(label, dir) {
        c.flows += 1;
    }
}

/// Takes one flow back from `label` (a provisional label the flow leaves); the per-CPU slot
/// may go below zero, and user space sums flows with wrapping arithmetic.
#[inline(always)]
pub fn uncount_flow(label: u16, dir: Direction) {
    if let Some(c) = slot(label, dir) {
        c.flows = c.flows.wrapping_sub(1);
    }
}

/// Moves a flow's earlier packets and bytes from `from` to `to` when it is labelled, so the
/// mix shows the whole flow under its label. Per-CPU slots may go below zero on one CPU;
/// user space sums them with wrapping arithmetic, and the sum is right.
#[inline(always)]
pub fn relabel(from: u16, to: u16, packets: &[u64; 2], bytes: &[u64; 2]) {
    for dir in [Direction::Up, Direction::Down] {
        let i = dir.index();
        if let Some(c) = slot(from, dir) {
            c.packets = c.packets.wrapping_sub(packets[i]);
            c.bytes = c.bytes.wrapping_sub(bytes[i]);
        }
        if let Some(c) = slot(to, dir) {
            c.packets = c.packets.wrapping_add(packets[i]);
            c.bytes = c.bytes.wrapping_add(bytes[i]);
        }
    }
}
