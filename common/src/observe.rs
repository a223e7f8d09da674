//! Observe-only mode (a mirror or SPAN port): the statistics of the observe program and the
//! size of its subscriber-network tries.
//!
//! The observe program sees copies of both directions on one interface. A packet whose
//! source lies in a subscriber network goes up, one whose destination does goes down;
//! anything else is counted as unmatched. Every packet is passed unchanged.

/// Prefixes per family the daemon may give the observe program.
pub const MAX_OBSERVE_NETWORKS: u32 = 4096;

/// The observe program's own statistics, per CPU (index into its stats array).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserveStat {
    /// Flow packets whose source is a subscriber's: counted going up.
    Up = 0,
    /// Flow packets whose destination is a subscriber's: counted going down.
    Down = 1,
    /// Flow packets with neither address in a subscriber network: passed, not tracked.
    Unmatched = 2,
    /// Packets the policy would have dropped inline (police or block); passed here.
    WouldDrop = 3,
    /// Every frame the program returned `XDP_PASS` for.
    Passed = 4,
}

/// Number of slots in the observe stats array.
pub const OBSERVE_STAT_SLOTS: u32 = 5;

/// Every observe statistic with its report name.
pub const ALL_OBSERVE_STATS: [(ObserveStat, &str); OBSERVE_STAT_SLOTS as usize] = [
    (ObserveStat::Up, "observe_up"),
    (ObserveStat::Down, "observe_down"),
    (ObserveStat::Unmatched, "observe_unmatched"),
    (ObserveStat::WouldDrop, "observe_would_drop"),
    (ObserveStat::Passed, "observe_passed"),
];
