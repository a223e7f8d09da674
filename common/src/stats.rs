//! Per-CPU counters: per (label, direction), and the probe's own statistics.

use crate::flow::Direction;

/// Value of the per-CPU counter array, indexed by [`counter_index`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CounterValue {
    /// Packets.
    pub packets: u64,
    /// Bytes on the wire (whole frames).
    pub bytes: u64,
    /// Flows that received this label (counted in the direction of the deciding packet);
    /// for `Unknown`, flows created.
    pub flows: u64,
}

const _: () = assert!(core::mem::size_of::<CounterValue>() == 24);

/// Per-label counters, summed over CPUs: `[up, down]` per label id (user space: the
/// probe's reading and what the history store records).
#[cfg(feature = "alloc")]
pub type LabelCounters = alloc::vec::Vec<[CounterValue; 2]>;

/// Index of the (label, direction) slot in the counter array.
pub const fn counter_index(label: u16, dir: Direction) -> u32 {
    (label as u32) * 2 + dir as u32
}

/// Number of slots in the counter array.
pub const COUNTER_SLOTS: u32 = crate::label::MAX_LABELS * 2;

/// The probe's own statistics, per CPU (index into the stats array).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every packet the probe saw.
    Packets = 0,
    /// Frames that are not IPv4 or IPv6 (ARP, LLDP, ...): passed untouched.
    NonIp = 1,
    /// IP packets that are neither TCP nor UDP (ICMP, GRE, ESP, ...): flows without ports,
    /// charged to their subscriber.
    NonTcpUdp = 2,
    /// Truncated or inconsistent headers: passed without a label; charged to the subscriber
    /// (ports 0) when the IP header is sound.
    Malformed = 3,
    /// Non-first IP fragments: charged to their first fragment's flow, or to the subscriber's
    /// `other` when it was not seen.
    Fragments = 4,
    /// Flow entries created.
    FlowsCreated = 5,
    /// Flow entries that could not be created.
    FlowInsertFailed = 6,
    /// Flows labelled by the kernel fingerprints.
    FlowsLabelled = 7,
    /// Payload samples sent to the deep classifier.
    SamplesSent = 8,
    /// Samples lost because the ring buffer was full.
    RingDrops = 9,
    /// Verdicts of the deep classifier applied to flows.
    VerdictsApplied = 10,
    /// Packets dropped by policy (police or block).
    PolicyDrops = 11,
    /// Packets whose DSCP was rewritten by policy.
    PolicyMarks = 12,
    /// Samples not sent because their subscriber had used its sample budget (one
    /// subscriber's flood cannot fill the ring for everyone else): the flow is sampled on a
    /// later packet. The other cause of a lost sample, a full ring, is [`Stat::RingDrops`].
    SamplesOverBudget = 13,
    /// Final labels not kept in `LABELLED` because the flow's subscriber had used its
    /// budget of remembered flows. (A flow seen one way only is not refused: its label is
    /// offered once it has been seen both ways, and never if it is not.)
    LabelledRefused = 14,
}

/// Number of slots in the stats array.
pub const STAT_SLOTS: u32 = 15;

/// Every statistic with its report name.
pub const ALL_STATS: [(Stat, &str); STAT_SLOTS as usize] = [
    (Stat::Packets, "packets"),
    (Stat::NonIp, "non_ip"),
    (Stat::NonTcpUdp, "non_tcp_udp"),
    (Stat::Malformed, "malformed"),
    (Stat::Fragments, "fragments"),
    (Stat::FlowsCreated, "flows_created"),
    (Stat::FlowInsertFailed, "flow_insert_failed"),
    (Stat::FlowsLabelled, "flows_labelled"),
    (Stat::SamplesSent, "samples_sent"),
    (Stat::RingDrops, "ring_drops"),
    (Stat::VerdictsApplied, "verdicts_applied"),
    (Stat::PolicyDrops, "policy_drops"),
    (Stat::PolicyMarks, "policy_marks"),
    (Stat::SamplesOverBudget, "samples_over_budget"),
    (Stat::LabelledRefused, "labelled_refused"),
];

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C) of three u64, every bit pattern valid.
    unsafe impl aya::Pod for super::CounterValue {}
}
