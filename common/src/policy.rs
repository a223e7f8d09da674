//! Policy enforcement maps, filled by the daemon from a validated policy.
//!
//! A subscriber-side address finds its subscriber by longest-prefix match (`SubscriberRef`);
//! the subscriber's plan maps each label to a rule slot; a rule per (plan, slot, direction)
//! says what to do; token buckets live per (subscriber, slot, direction). The lookup maps
//! hold two sets (0 and 1: a leading key byte in the tries, an offset of one set's size in
//! the arrays), so the daemon fills a new policy in the idle set while the old one runs,
//! then flips [`PolicyControl::active_set`] in one write: no packet sees half a policy.

/// Rule slots per plan; slot 0 is the plan's total rate, slots 1.. its class/label rules.
pub const RULE_SLOTS: u32 = 8;
/// Plans a policy may define.
pub const MAX_PLANS: u32 = 256;
/// Rules in one set: per (plan, slot, direction).
pub const RULES_PER_SET: u32 = MAX_PLANS * RULE_SLOTS * 2;
/// Subscribers the kernel maps are sized for unless the config says otherwise.
pub const DEFAULT_MAX_SUBSCRIBERS: u32 = 65_536;
/// Entries of the per-subscriber counter array per subscriber: one [`SubUsage`] each.
pub const SUB_COUNTER_SLOTS: u32 = 1;
/// Label slots per subscriber in [`SubUsage::labels`]: every label id there is (ids at or
/// past it, which a newer kernel side could write, count as `unknown`).
pub const SUB_LABELS: usize = crate::label::ALL_LABELS.len();
/// Classes per subscriber in [`SubUsage::policy`].
pub const SUB_CLASSES: usize = 4;
/// `BPF_F_MMAPABLE`: the per-subscriber counter array can be mapped into the daemon's
/// memory and read there without a system call per entry.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Rule actions.
pub const ACTION_NONE: u8 = 0;
/// Token bucket: drop what exceeds rate + burst.
pub const ACTION_POLICE: u8 = 1;
/// Steer into the subscriber's HTB class on egress (TC sets the class).
pub const ACTION_SHAPE: u8 = 2;
/// Rewrite DSCP.
pub const ACTION_MARK: u8 = 3;
/// Drop.
pub const ACTION_BLOCK: u8 = 4;

/// Value of the single-entry control array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyControl {
    /// 0: no policy (everything passes); otherwise bumped on every swap.
    pub generation: u32,
    /// Which set of lookup maps is live: 0 = A, 1 = B.
    pub active_set: u32,
    /// 1 if the live set has a `shape` rule: the TC egress programs look for the packet's
    /// flow only then (a policy without shaping costs them one array read a packet).
    pub shaping: u32,
    pub _reserved: u32,
}

/// Value of the subscriber LPM tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberRef {
    /// Stable index of the subscriber (bucket and counter slots), kept across reloads.
    pub index: u32,
    /// Plan index in this set.
    pub plan: u32,
}

/// Per plan: which rule slot applies to each label (0 = slot 0 only, the plan total).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanSlots {
    /// Indexed by label id.
    pub slot_of_label: [u8; crate::label::MAX_LABELS as usize],
}

impl Default for PlanSlots {
    fn default() -> Self {
        PlanSlots {
            slot_of_label: [0; crate::label::MAX_LABELS as usize],
        }
    }
}

/// One rule, per (plan, slot, direction): index [`rule_index`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Bytes per second for police (0: no limit).
    pub rate_bytes_per_sec: u64,
    /// Bucket depth in bytes.
    pub burst_bytes: u64,
    /// `ACTION_*`.
    pub action: u8,
    /// DSCP to write (with `ACTION_MARK`, or alongside police/shape when non-zero + `mark_too`).
    pub dscp: u8,
    /// Non-zero: also rewrite DSCP on packets that pass.
    pub mark_too: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// Non-zero with `ACTION_SHAPE`: steer into the subscriber's HTB class for this slot,
    /// minor `sub * RULE_SLOTS + slot + 1` under major 1.
    pub htb_minor: u32,
}

/// A police bucket, per (subscriber, slot, direction): index [`bucket_index`].
///
/// Kept as the time the bucket would be empty again (the generic cell rate algorithm's
/// theoretical arrival time): a frame passes when taking its cost in time (`len / rate`)
/// leaves that time at most the burst's worth (`burst / rate`) ahead of now. One word, so
/// CPUs taking from the same bucket at once settle it with a compare-and-swap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Unused; keeps the layout of the maps pinned by earlier builds (bytes left, then).
    pub _reserved: u64,
    /// When the bucket is full again, `bpf_ktime_get_coarse_ns()`; 0 (or any time past) is
    /// full.
    pub empty_until_ns: u64,
}

/// Packets and bytes of one (subscriber, label, direction).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Packets seen (the policy's drops included).
    pub packets: u64,
    /// Bytes on the wire (whole frames).
    pub bytes: u64,
}

/// What the policy did to one (subscriber, class, direction).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCount {
    /// Packets dropped by police or block.
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// Packets whose DSCP was rewritten.
    pub marked_packets: u64,
}

/// Everything the kernel counts for one subscriber: the value of the per-subscriber array
/// (one entry per subscriber index, 1,248 bytes).
///
/// Why this layout: one shared (not per-CPU) array entry per subscriber, updated with
/// atomic adds, is exact, costs one array lookup (inlined by the verifier: no hash) and
/// two or three atomic adds per packet, and its memory does not grow with the number of
/// CPUs (1,248 B per subscriber: 82 MB for 65,536, 10.5 GB for 8,388,608, where per-CPU
/// slots would multiply that by the CPUs). The array is `BPF_F_MMAPABLE`: the daemon maps
/// it and reads 100,000 subscribers as plain memory, with no system call per entry.
/// The label counters of `unknown` go down when a flow's earlier packets move to the
/// label it receives; they are wrapping sums, read with wrapping arithmetic.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubUsage {
    /// Per label id and direction (`[up, down]`).
    pub labels: [[Usage; 2]; SUB_LABELS],
    /// Per class (p2p, video, web, other) and direction.
    pub policy: [[PolicyCount; 2]; SUB_CLASSES],
}

impl Default for SubUsage {
    fn default() -> Self {
        SubUsage {
            labels: [[Usage::default(); 2]; SUB_LABELS],
            policy: [[PolicyCount::default(); 2]; SUB_CLASSES],
        }
    }
}

impl SubUsage {
    /// Per (class, direction): packets and bytes summed over the class's labels (wrapping,
    /// like the label counters), drops and marks as counted.
    pub fn classes(&self) -> [[SubCounter; 2]; SUB_CLASSES] {
        let mut out = [[SubCounter::default(); 2]; SUB_CLASSES];
        for (id, dirs) in self.labels.iter().enumerate() {
            let class = crate::label::Label::from_id(id as u16).class() as usize % SUB_CLASSES;
            for (d, u) in dirs.iter().enumerate() {
                let c = &mut out[class][d];
                c.packets = c.packets.wrapping_add(u.packets);
                c.bytes = c.bytes.wrapping_add(u.bytes);
            }
        }
        for (class, dirs) in self.policy.iter().enumerate() {
            for (d, p) in dirs.iter().enumerate() {
                let c = &mut out[class][d];
                c.dropped_packets = p.dropped_packets;
                c.dropped_bytes = p.dropped_bytes;
                c.marked_packets = p.marked_packets;
            }
        }
        out
    }
}

/// A subscriber's counters per (class, direction), as user space reports them: packets
/// and bytes summed from the labels of the class, drops and marks from [`PolicyCount`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubCounter {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Packets dropped by police or block.
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// Packets whose DSCP was rewritten.
    pub marked_packets: u64,
}

/// A flow's policy decision, cached in its entry ([`crate::FlowValue::policy`]) so that a
/// packet whose stamp is current goes straight to its rules, buckets and counters: no
/// subscriber lookup (longest prefix), no read of the plan's slot table.
///
/// One word, written with one store, so that a CPU never reads half of a decision another
/// CPU was writing: the subscriber (index + 1, 0: none; at most 2^24 - 1, where the config
/// allows 8,000,000), its plan, the rule slot in force for `label`, the label it was
/// computed for and the low 16 bits of the policy generation it was computed in. The flow
/// keeps the whole generation beside it ([`crate::FlowValue::policy_gen`]): a packet uses
/// the word only when both match the control entry's generation and the word's label is
/// the flow's, so a word written by a CPU that still saw the previous generation, or before
/// a relabel, is never taken for current; it is computed again once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Subscriber index + 1 (0: no subscriber owns the address).
    pub sub_slot: u32,
    /// Plan index in the generation's set.
    pub plan: u32,
    /// Rule slot of `label` in the plan (0: the plan's total only).
    pub slot: u32,
    /// The label the slot is for.
    pub label: u16,
}

const GEN_BITS: u32 = 16;
const SUB_SHIFT: u32 = 16;
const SUB_MASK: u64 = (1 << 24) - 1;
const PLAN_SHIFT: u32 = 40;
const SLOT_SHIFT: u32 = 48;
const LABEL_SHIFT: u32 = 56;

impl Decision {
    /// The word for this decision made in policy generation `generation`.
    pub const fn pack(self, generation: u32) -> u64 {
        (generation as u64 & ((1 << GEN_BITS) - 1))
            | (self.sub_slot as u64 & SUB_MASK) << SUB_SHIFT
            | (self.plan as u64 & 0xff) << PLAN_SHIFT
            | (self.slot as u64 & 0xff) << SLOT_SHIFT
            | (self.label as u64 & 0xff) << LABEL_SHIFT
    }

    /// The decision a word holds, whatever its stamp.
    pub const fn unpack(word: u64) -> Decision {
        Decision {
            sub_slot: ((word >> SUB_SHIFT) & SUB_MASK) as u32,
            plan: ((word >> PLAN_SHIFT) & 0xff) as u32,
            slot: ((word >> SLOT_SHIFT) & 0xff) as u32,
            label: (word >> LABEL_SHIFT) as u16,
        }
    }

    /// Whether `word` was made in `generation` (its low 16 bits: see [`Decision`] for the
    /// full check).
    pub const fn stamped(word: u64, generation: u32) -> bool {
        word & ((1 << GEN_BITS) - 1) == generation as u64 & ((1 << GEN_BITS) - 1)
    }

    /// Whether `word` is current for a flow labelled `label` whose whole stamp is
    /// `policy_gen`, under the control entry's `generation`. Labels past 255 never match
    /// (there are fewer than 64), so such a flow is decided again on each packet.
    pub const fn current(word: u64, policy_gen: u32, generation: u32, label: u16) -> bool {
        policy_gen == generation
            && Decision::stamped(word, generation)
            && (word >> LABEL_SHIFT) == label as u64
    }
}

/// Index of a rule.
pub const fn rule_index(plan: u32, slot: u32, dir: u32) -> u32 {
    (plan * RULE_SLOTS + slot) * 2 + dir
}

/// Index of a bucket.
pub const fn bucket_index(sub: u32, slot: u32, dir: u32) -> u32 {
    (sub * RULE_SLOTS + slot) * 2 + dir
}

const _: () = assert!(core::mem::size_of::<PolicyControl>() == 16);
const _: () = assert!(core::mem::size_of::<SubscriberRef>() == 8);
const _: () = assert!(core::mem::size_of::<PlanSlots>() == 64);
const _: () = assert!(core::mem::size_of::<PolicyControl>() == 16);
const _: () = assert!(core::mem::size_of::<Rule>() == 24);
const _: () = assert!(core::mem::size_of::<Bucket>() == 16);
const _: () = assert!(core::mem::size_of::<SubCounter>() == 40);
const _: () = assert!(core::mem::size_of::<Usage>() == 16);
const _: () = assert!(core::mem::size_of::<PolicyCount>() == 24);
const _: () = assert!(core::mem::size_of::<SubUsage>() == 1248);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), sizes asserted, explicit padding, every bit pattern valid.
    unsafe impl aya::Pod for super::PolicyControl {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SubscriberRef {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PlanSlots {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Rule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Bucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SubCounter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SubUsage {}
}

#[cfg(test)]
mod tests {
    use super::Decision;

    const D: Decision = Decision {
        sub_slot: 7_999_999 + 1,
        plan: 255,
        slot: 7,
        label: 63,
    };

    #[test]
    fn a_decision_survives_its_word_at_the_largest_values_the_config_allows() {
        assert_eq!(Decision::unpack(D.pack(0xdead_beef)), D);
        let none = Decision {
            sub_slot: 0,
            plan: 3,
            slot: 0,
            label: 1,
        };
        assert_eq!(Decision::unpack(none.pack(1)), none);
    }

    #[test]
    fn a_word_is_current_only_for_its_generation_and_label() {
        let w = D.pack(70_000);
        assert!(Decision::current(w, 70_000, 70_000, 63));
        // A reload or a schedule switch: the next generation.
        assert!(!Decision::current(w, 70_000, 70_001, 63));
        // An idle flow's word 65,536 generations old: its 16 bits match, its whole stamp
        // does not.
        assert!(!Decision::current(w, 70_000, 70_000 + 65_536, 63));
        // The whole stamp and the word from two CPUs that saw two generations.
        assert!(!Decision::current(w, 70_001, 70_001, 63));
        // A relabel.
        assert!(!Decision::current(w, 70_000, 70_000, 62));
        assert!(!Decision::current(w, 70_000, 70_000, 63 + 256));
        // A new flow's zero word is never current for a live policy (generation >= 1).
        assert!(!Decision::current(0, 0, 1, 0));
    }
}
