//! Shaping on a multi-queue egress interface (issue 16 item 4): where a shaped packet
//! queues, and the XDP side's steering of it to that queue's CPU.
//!
//! The daemon writes [`SHAPE_LAYOUT`] (transmit queues per direction, CPUs) and fills
//! [`CPUS`], a cpumap with one entry per CPU. A shaped subscriber `s` on an interface
//! with `n > 1` queues belongs to queue `s % n` (HTB `(s % n + 1):`, see
//! common/src/shape.rs), which CPU `(s % n) % cpus` serves: the XDP probe redirects the
//! subscriber's shaped packets into the cpumap entry of that CPU, whose kthread builds the
//! skb and forwards it there, so all of the subscriber's shaped traffic in that direction
//! is queued by one CPU, into one HTB, and two CPUs never contend for one qdisc lock. The
//! TC egress program then names the transmit queue (`queue_mapping`) and the class.
//!
//! A direction with one queue (or none written) keeps one HTB `1:` and no redirect.

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{Array, CpuMap},
};
use peerwarden_common::{
    Direction, FlowKey,
    policy::RULE_SLOTS,
    shape::{MAX_CPUS, ShapeLayout, cpu_of_queue, place},
};

use crate::{flow, policy};

/// The queues of each direction's egress interface and the CPUs: one entry.
#[map]
static SHAPE_LAYOUT: Array<ShapeLayout> = Array::with_max_entries(1, 0);

/// One entry per CPU (the daemon sets those online); redirecting to a missing one passes.
#[map]
static CPUS: CpuMap = CpuMap::with_max_entries(MAX_CPUS, 0);

/// Transmit queues of `dir`'s egress interface, and the CPUs (0 when unset).
#[inline(always)]
fn layout(dir: Direction) -> (u32, u32) {
    match SHAPE_LAYOUT.get(0) {
        Some(l) => (l.queues[(dir as usize) & 1], l.cpus),
        None => (0, 0),
    }
}

/// The transmit queue and the HTB class id of the shaped class `class` (what
/// [`policy::shape_class`] returns: `sub * RULE_SLOTS + slot + 1`) going `dir`, and
/// whether the interface has several queues. `None` past the interface's capacity (the
/// daemon refuses such a policy, so it is not met).
#[inline(always)]
pub fn place_class(class: u32, dir: Direction) -> Option<(u32, u32, bool)> {
    let i = class.checked_sub(1)?;
    let (queues, _) = layout(dir);
    let (queue, id) = place(i / RULE_SLOTS, i % RULE_SLOTS, queues)?;
    Some((queue, id, queues > 1))
}

/// XDP: the action for a packet the probe passes. A shaped packet bound for a
/// multi-queue interface is redirected to its queue's CPU; everything else passes.
#[inline(always)]
pub fn to_queue_cpu(key: &FlowKey, dir: Direction) -> u32 {
    if !policy::shaping() {
        return xdp_action::XDP_PASS;
    }
    let (queues, cpus) = layout(dir);
    if queues < 2 || cpus == 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(f) = flow::get(key) else {
        return xdp_action::XDP_PASS;
    };
    let Some(class) = policy::shape_class(f, dir) else {
        return xdp_action::XDP_PASS;
    };
    let Some((queue, _, _)) = place_class(class, dir) else {
        return xdp_action::XDP_PASS;
    };
    // The low bits of the flags are the action when the entry is missing.
    match CPUS.redirect(cpu_of_queue(queue, cpus), u64::from(xdp_action::XDP_PASS)) {
        Ok(a) | Err(a) => a,
    }
}
