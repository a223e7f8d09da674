//! Policy enforcement in the data path: the subscriber of a flow by longest-prefix match,
//! then the rule for its plan, the flow's label and the direction: police (token bucket),
//! mark (DSCP), block, or shape (left to the TC egress program). Two sets of lookup maps
//! (A and B) are swapped by one write of `CONTROL`; see common/src/policy.rs.
//!
//! A flow caches its decision (subscriber, plan, the rule slot of its label) in one word of
//! its entry, stamped with the policy generation and the label it was made for
//! ([`Decision`]): an established flow's packet goes straight to its rules, bucket and
//! counters, and decides again once after a reload, a schedule switch or a relabel. The
//! rules themselves are read from the live set on every packet, so the packets after a
//! swap meet the new rates and actions.
//!
//! Every packet of a subscriber the policy knows is also counted for it, per (label,
//! direction), in `SUB_COUNTERS` (one shared, mmapable entry per subscriber; atomic adds),
//! with the policy's drops and marks per (class, direction); `relabel` moves a flow's
//! earlier packets to the label it receives, as the totals do.

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::XdpContext,
};
use peerwarden_common::{
    Direction, FlowKey, FlowValue, Label, Stat,
    flow::{FAMILY_V4, FLAG_SUB_COUNTED},
    policy::{
        ACTION_BLOCK, ACTION_MARK, ACTION_POLICE, BPF_F_MMAPABLE, Bucket, DEFAULT_MAX_SUBSCRIBERS,
        Decision, MAX_PLANS, PlanSlots, PolicyControl, RULE_SLOTS, RULES_PER_SET, Rule,
        SUB_COUNTER_SLOTS, SUB_LABELS, SubUsage, SubscriberRef, bucket_index, rule_index,
    },
};

use crate::{
    counters,
    parse::{Packet, ptr_at},
};

#[map]
static CONTROL: Array<PolicyControl> = Array::with_max_entries(1, 0);

// Both sets live in one map each, told apart by a leading set byte in the tries' keys
// (prefix length + 8) and by an offset of one set's size in the arrays: one lookup per
// packet whichever set is live, and no branch for the verifier to walk twice.
#[map]
static SUBS_V4: LpmTrie<[u8; 5], SubscriberRef> =
    LpmTrie::with_max_entries(DEFAULT_MAX_SUBSCRIBERS * 4, 1);
#[map]
static SUBS_V6: LpmTrie<[u8; 17], SubscriberRef> =
    LpmTrie::with_max_entries(DEFAULT_MAX_SUBSCRIBERS * 4, 1);
#[map]
static PLANS: Array<PlanSlots> = Array::with_max_entries(MAX_PLANS * 2, 0);
#[map]
static RULES: Array<Rule> = Array::with_max_entries(RULES_PER_SET * 2, 0);
/// Per (subscriber, slot, direction); the subscriber index is stable across reloads.
#[map]
static BUCKETS: Array<Bucket> =
    Array::with_max_entries(DEFAULT_MAX_SUBSCRIBERS * RULE_SLOTS * 2, 0);
/// Per subscriber index: packets and bytes per (label, direction), policy drops and marks
/// per (class, direction). Shared by all CPUs (atomic adds) and mmapable, so the daemon
/// reads it as memory; see [`SubUsage`] for why this layout.
#[map]
static SUB_COUNTERS: Array<SubUsage> =
    Array::with_max_entries(DEFAULT_MAX_SUBSCRIBERS * SUB_COUNTER_SLOTS, BPF_F_MMAPABLE);
/// Per subscriber index: 1 once its `SUB_COUNTERS` entry has changed since the daemon last
/// took the flag (it swaps it back to 0 and then reads the entry), so the daemon's
/// per-second pass reads only the subscribers that moved: 8 bytes a subscriber to scan
/// instead of 896 to copy. Written only when it is 0, so a busy subscriber's packets
/// read it without dirtying its cache line.
#[map]
static SUB_SEEN: Array<u64> = Array::with_max_entries(DEFAULT_MAX_SUBSCRIBERS, BPF_F_MMAPABLE);

/// Flags subscriber `sub`'s counters as changed. Called after the counters' atomic adds:
/// on x86-64 a locked add orders the load below after it, so a daemon that cleared the
/// flag before reading either reads the new counts or finds the flag set again.
#[inline(always)]
fn seen(sub: u32) {
    if let Some(p) = SUB_SEEN.get_ptr_mut(sub) {
        // SAFETY: a live, 8-aligned map value; plain loads and stores of a word.
        unsafe {
            if core::ptr::read_volatile(p) == 0 {
                core::ptr::write_volatile(p, 1);
            }
        }
    }
}

/// Adds `n` to a shared counter (BPF_XADD; see flow.rs).
#[inline(always)]
fn add(p: &mut u64, n: u64) {
    // SAFETY: a live, 8-aligned map value field.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
}

/// The label slot of a label id (ids past the table count as `unknown`).
#[inline(always)]
fn label_slot(label: u16) -> usize {
    // Through the stack, so LLVM cannot fold the bound into other compares (it did, with
    // `from == to`, into a form the verifier could not follow to the array's size).
    // SAFETY: a read of a local.
    let l = unsafe { core::ptr::read_volatile(&(label as usize)) };
    if l < SUB_LABELS { l } else { 0 }
}

/// Applies the policy to one packet of flow `f`; returns the XDP action. With no policy
/// loaded (generation 0) it returns at once, inline: the control entry is an array slot the
/// verifier turns into a direct load, so a packet without a policy makes no call.
#[inline(always)]
pub fn enforce(
    ctx: &XdpContext,
    pkt: &Packet,
    dir: Direction,
    f: &mut FlowValue,
    frame_len: u64,
) -> u32 {
    match CONTROL.get(0) {
        Some(ctl) if ctl.generation != 0 => enforce_policy(ctx, pkt, dir, f, frame_len),
        _ => xdp_action::XDP_PASS,
    }
}

/// Moves a labelled flow's earlier packets and bytes from `from` to `to` in its
/// subscriber's label counters, as `counters::relabel` does for the totals, so the
/// subscriber's per-label totals agree with its flows. Only when every packet of the flow
/// so far was counted under that subscriber ([`FLAG_SUB_COUNTED`]): a flow that began
/// before the policy knew its subscriber keeps its counted packets under `from`.
#[inline(always)]
pub fn relabel(f: &FlowValue, from: u16, to: u16) {
    let sub_slot = Decision::unpack(f.policy).sub_slot;
    if f.flags & FLAG_SUB_COUNTED == 0 || sub_slot == 0 {
        return;
    }
    // `to` is never `from` here (set_label is called only with a label the flow lacks).
    let (a, b) = (label_slot(from), label_slot(to));
    let Some(u) = SUB_COUNTERS.get_ptr_mut(sub_slot - 1) else {
        return;
    };
    // SAFETY: a live map value; every update of it is an atomic add.
    let u = unsafe { &mut *u };
    for i in 0..2 {
        let (packets, bytes) = (f.packets[i], f.bytes[i]);
        add(&mut u.labels[a][i].packets, packets.wrapping_neg());
        add(&mut u.labels[a][i].bytes, bytes.wrapping_neg());
        add(&mut u.labels[b][i].packets, packets);
        add(&mut u.labels[b][i].bytes, bytes);
    }
    seen(sub_slot - 1);
}

/// The policy proper, not inlined, like flow.rs's `classify`, so the verifier does not
/// carry every classification outcome through it.
#[inline(never)]
fn enforce_policy(
    ctx: &XdpContext,
    pkt: &Packet,
    dir: Direction,
    f: &mut FlowValue,
    frame_len: u64,
) -> u32 {
    let Some(ctl) = CONTROL.get(0) else {
        return xdp_action::XDP_PASS;
    };
    if ctl.generation == 0 {
        return xdp_action::XDP_PASS;
    }
    let generation = ctl.generation;
    let set = ctl.active_set;
    // The flow's cached decision, if it is current: one load of its word (see
    // `Decision` for why one word).
    // SAFETY: an 8-aligned field of a live map value.
    let mut word = unsafe { core::ptr::read_volatile(&f.policy) };
    if !Decision::current(word, f.policy_gen, generation, f.label) {
        word = decide(&pkt.key, f, word, generation, set);
    }
    let decision = Decision::unpack(word);
    if decision.sub_slot == 0 {
        return xdp_action::XDP_PASS;
    }
    let sub = decision.sub_slot - 1;
    let d = dir as u32;
    // The coarse clock, as in flow.rs (CLOCK_MONOTONIC at the last tick, 4 ms at HZ=250):
    // about a nanosecond, where the precise one cost about 50 here (a KVM guest) on every
    // policed packet. The daemon makes every bucket at least one tick deep, so a bucket
    // still refills at its rate (see `take_tokens`).
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let plan = decision.plan;
    let di = (d as usize) & 1;
    let usage = SUB_COUNTERS.get_ptr_mut(sub);
    if let Some(u) = usage {
        // SAFETY: a live map value; every update of it is an atomic add.
        let c = unsafe { &mut (*u).labels[label_slot(f.label)][di] };
        add(&mut c.packets, 1);
        add(&mut c.bytes, frame_len);
    }
    let slot = decision.slot % RULE_SLOTS;
    // The class or label rule first, then the plan's total (slot 0).
    let mut dropped = false;
    let mut marked = false;
    for (s, wanted) in [(slot, slot != 0), (0, true)] {
        if !wanted || dropped {
            continue;
        }
        let Some(rule) = RULES.get(set * RULES_PER_SET + rule_index(plan, s, d)) else {
            continue;
        };
        match apply(ctx, pkt, rule, bucket_index(sub, s, d), frame_len, now) {
            Applied::Drop => dropped = true,
            Applied::Marked => marked = true,
            Applied::Pass => {}
        }
    }
    let action = if dropped {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    };
    if let Some(u) = usage
        && (dropped || marked)
    {
        let class = (Label::from_id(f.label).class() as usize) & 3;
        // SAFETY: as above.
        let c = unsafe { &mut (*u).policy[class][di] };
        if dropped {
            add(&mut c.dropped_packets, 1);
            add(&mut c.dropped_bytes, frame_len);
        } else {
            add(&mut c.marked_packets, 1);
        }
    }
    if usage.is_some() {
        seen(sub);
    }
    if action == xdp_action::XDP_DROP {
        counters::stat(Stat::PolicyDrops);
    } else if marked {
        counters::stat(Stat::PolicyMarks);
    }
    action
}

/// Decides flow `f`'s policy again, its cached word `old` being stale: its subscriber by
/// longest prefix when the generation changed (the first packet after a reload or a
/// schedule switch, or the flow's first), the rule slot of its label in the plan (a
/// relabel needs only that); stores the new word, then the whole generation.
/// Not inlined: the trie lookup's key and the plan read stay off the established path.
#[inline(never)]
fn decide(key: &FlowKey, f: &mut FlowValue, old: u64, generation: u32, set: u32) -> u64 {
    let mut d = Decision::unpack(old);
    if f.policy_gen != generation || !Decision::stamped(old, generation) {
        let before = d.sub_slot;
        // Through a reference: an `Option` of the value copied out left its payload
        // undefined on `None`, and LLVM then read a register the verifier knew unset.
        match subscriber(key, set) {
            Some(r) => {
                d.sub_slot = r.index + 1;
                d.plan = r.plan;
            }
            None => {
                d.sub_slot = 0;
                d.plan = 0;
            }
        }
        // `track` counted this packet in the flow already: 1 means it is the first.
        let first = f.packets[0].wrapping_add(f.packets[1]) <= 1;
        if d.sub_slot != 0 && (first || (f.flags & FLAG_SUB_COUNTED != 0 && before == d.sub_slot)) {
            f.flags |= FLAG_SUB_COUNTED;
        } else {
            f.flags &= !FLAG_SUB_COUNTED;
        }
    }
    d.label = f.label;
    d.slot = if d.sub_slot == 0 {
        0
    } else {
        PLANS
            .get(set * MAX_PLANS + d.plan)
            .map_or(0, |s| s.slot_of_label[(f.label as usize) & 63] as u32)
            % RULE_SLOTS
    };
    let word = d.pack(generation);
    // SAFETY: as in `enforce_policy`: one store of the word.
    unsafe { core::ptr::write_volatile(&mut f.policy, word) };
    f.policy_gen = generation;
    word
}

enum Applied {
    Pass,
    Marked,
    Drop,
}

#[inline(always)]
fn apply(
    ctx: &XdpContext,
    pkt: &Packet,
    rule: &Rule,
    bucket: u32,
    frame_len: u64,
    now: u64,
) -> Applied {
    let passes = match rule.action {
        ACTION_BLOCK => return Applied::Drop,
        // The bucket is looked up here: a lookup needs its key on the stack, and
        // `take_tokens` is to have none (see there).
        ACTION_POLICE => match BUCKETS.get_ptr_mut(bucket) {
            Some(b) => take_tokens(rule, b, frame_len, now),
            None => true,
        },
        ACTION_MARK => true,
        // NONE, and SHAPE (the TC egress program sets the class).
        _ => return Applied::Pass,
    };
    if !passes {
        return Applied::Drop;
    }
    if (rule.action == ACTION_MARK || rule.mark_too != 0) && set_dscp(ctx, pkt, rule.dscp) {
        return Applied::Marked;
    }
    Applied::Pass
}

/// The police bucket `b` of `rule` (depth `rule.burst_bytes`, rate `rule.rate_bytes_per_sec`;
/// see [`Bucket`]): whether a frame of `frame_len` bytes fits at time `now`, taking it if
/// so.
///
/// Several CPUs take from one bucket at once (a NIC spreads a subscriber's flows over its
/// receive queues by 5-tuple), so the take is a compare-and-swap of the bucket's one word,
/// retried while another CPU moved it first.
///
/// `now` is the coarse clock, which stands still for a tick and then jumps by one: a tick
/// brings a tick's worth of the rate, and a bucket at least that deep keeps all of it,
/// so the rate holds exactly. A shallower bucket would pass no more than its depth per
/// tick; the daemon compiles every depth to at least one tick
/// (`peerwarden_policies::compile::bucket_depth`).
// Not inlined: the retry loop's values would spill onto `enforce_policy`'s stack, and
// the call chain's stacks must stay within 512 bytes together.
#[inline(never)]
fn take_tokens(rule: &Rule, b: *mut Bucket, frame_len: u64, now: u64) -> bool {
    const NS: u64 = 1_000_000_000;
    let rate = rule.rate_bytes_per_sec;
    if rate == 0 {
        return false;
    }
    // Frames are below 2^17 bytes and depths are capped at 8 GiB, so neither product
    // overflows; the policy's rates are at least 1 kbit/s.
    let cost = frame_len * NS / rate;
    let depth = rule.burst_bytes.min(1 << 33) * NS / rate;
    // SAFETY: a live, 8-aligned map value; the daemon never reads or writes buckets, and
    // the programs only through these atomics (the bpf target has no AtomicU64 with
    // compare-and-swap; the intrinsic compiles to BPF_CMPXCHG).
    let word = unsafe { &raw mut (*b).empty_until_ns };
    let mut seen = unsafe { core::ptr::read_volatile(word) };
    // Each failed swap means another CPU took from the bucket in between; two CPUs racing
    // settle within a few rounds. Past them the frame is dropped, as an empty bucket's.
    for _ in 0..4 {
        let next = seen.max(now) + cost;
        if next - now > depth {
            return false;
        }
        // SAFETY: as above.
        let (current, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::Relaxed }, { AtomicOrdering::Relaxed }>(
                word, seen, next,
            )
        };
        if swapped {
            return true;
        }
        seen = current;
    }
    false
}

#[inline(always)]
fn subscriber(key: &FlowKey, set: u32) -> Option<&'static SubscriberRef> {
    let set = set as u8;
    if key.family == FAMILY_V4 {
        let a = &key.sub_addr;
        SUBS_V4.get(&Key::new(8 + 32, [set, a[0], a[1], a[2], a[3]]))
    } else {
        let mut k = [0u8; 17];
        k[0] = set;
        k[1..].copy_from_slice(&key.sub_addr);
        SUBS_V6.get(&Key::new(8 + 128, k))
    }
}

/// Rewrites the DSCP of the packet's IP header, keeping ECN, with the IPv4 header checksum
/// updated incrementally (RFC 1624). IPv6 has no header checksum; TCP/UDP checksums do not
/// cover the traffic class.
#[inline(always)]
fn set_dscp(ctx: &XdpContext, pkt: &Packet, dscp: u8) -> bool {
    let Some(p) = ptr_at::<[u8; 12]>(ctx, pkt.ip_off) else {
        return false;
    };
    let h = p as *mut [u8; 12];
    // SAFETY: ptr_at checked the frame holds 12 bytes at ip_off; XDP frames are writable.
    unsafe {
        let b = &mut *h;
        if pkt.key.family == FAMILY_V4 {
            let old = u16::from_be_bytes([b[0], b[1]]);
            let tos = (dscp << 2) | (b[1] & 0x03);
            if tos == b[1] {
                return true;
            }
            b[1] = tos;
            let new = u16::from_be_bytes([b[0], b[1]]);
            let csum = u16::from_be_bytes([b[10], b[11]]);
            let mut sum = (!csum as u32) + (!old as u32) + (new as u32);
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            let csum = !(sum as u16);
            b[10..12].copy_from_slice(&csum.to_be_bytes());
        } else {
            // Version (4 bits) | traffic class (8) | flow label (20): DSCP is the class's top 6.
            let tc = ((b[0] & 0x0f) << 4) | (b[1] >> 4);
            let tc = (dscp << 2) | (tc & 0x03);
            b[0] = (b[0] & 0xf0) | (tc >> 4);
            b[1] = (b[1] & 0x0f) | (tc << 4);
        }
    }
    true
}

/// Whether the live policy has a `shape` rule (the TC egress programs' first question).
#[inline(always)]
pub fn shaping() -> bool {
    CONTROL
        .get(0)
        .is_some_and(|c| c.generation != 0 && c.shaping != 0)
}

/// The HTB minor class for a shaped packet of flow `f` going `dir`, if its rule shapes:
/// one class per (subscriber, slot), `sub * RULE_SLOTS + slot + 1`, which the daemon
/// creates on the egress interface of that direction.
#[inline(always)]
pub fn shape_class(f: &FlowValue, dir: Direction) -> Option<u32> {
    let ctl = CONTROL.get(0)?;
    let word = f.policy;
    if ctl.generation == 0
        || f.policy_gen != ctl.generation
        || !Decision::stamped(word, ctl.generation)
    {
        return None;
    }
    let d = Decision::unpack(word);
    if d.sub_slot == 0 {
        return None;
    }
    let (plan, set) = (d.plan, ctl.active_set);
    // The slot the XDP program cached for the flow's label, or the plan's if the label
    // changed since (the word is for another).
    let slot = if d.label == f.label {
        d.slot
    } else {
        PLANS.get(set * MAX_PLANS + plan)?.slot_of_label[(f.label as usize) & 63] as u32
    } % RULE_SLOTS;
    for (s, wanted) in [(slot, slot != 0), (0, true)] {
        if !wanted {
            continue;
        }
        let rule = RULES.get(set * RULES_PER_SET + rule_index(plan, s, dir as u32))?;
        if rule.action == peerwarden_common::policy::ACTION_SHAPE && rule.htb_minor != 0 {
            return Some((d.sub_slot - 1) * RULE_SLOTS + s + 1);
        }
    }
    None
}
