//! Where a shaped (subscriber, slot) queues: the transmit queue, the HTB qdisc and the
//! class, computed the same way by the daemon (which makes the classes) and by the kernel
//! programs (which steer packets into them).
//!
//! An egress interface with one transmit queue has one HTB root, handle `1:`, and the
//! class of (subscriber `s`, slot `k`) is `1:(s * RULE_SLOTS + k + 1)`, as before issue 16.
//! An interface with `n > 1` transmit queues gets an `mq` root (handle [`MQ_MAJOR`]`:`)
//! with one HTB per queue: queue `q` holds HTB `(q + 1):` under the mq leaf
//! `MQ_MAJOR:(q + 1)`. Subscriber `s` goes to queue `s % n`, and its class there is
//! `(s % n + 1):((s / n) * RULE_SLOTS + k + 1)`. A class minor is 16 bits, so one HTB
//! holds subscriber ranks `s / n` up to [`MAX_RANK`] (8,190): an interface holds
//! `8,191 * n` shaped subscribers on every slot ([`capacity`]); 100,000 subscribers with
//! all eight slots shaped (800,000 classes) need 13 queues.
//!
//! ```
//! use peerwarden_common::shape::{capacity, place};
//! // One queue: HTB 1:, alice (index 0) slot 1 is 1:2, as before.
//! assert_eq!(place(0, 1, 1), Some((0, 0x0001_0002)));
//! // Two queues: bob (index 5) goes to queue 1, HTB 2:, rank 2: minor 2 * 8 + 1 + 1.
//! assert_eq!(place(5, 1, 2), Some((1, 0x0002_0012)));
//! assert_eq!(capacity(16), 131_056);
//! assert_eq!(place(131_056, 0, 16), None);
//! ```

use crate::policy::RULE_SLOTS;

/// Handle major of the `mq` root on a multi-queue interface (HTB majors are queue + 1,
/// so they never meet it while queues stay below 32,766).
pub const MQ_MAJOR: u32 = 0x7fff;
/// Largest subscriber rank (index / queues) whose eight slots fit a 16-bit minor.
pub const MAX_RANK: u32 = (0xffff - RULE_SLOTS) / RULE_SLOTS;
/// Most transmit queues shaping uses (more are left to the kernel's own choice).
pub const MAX_QUEUES: u32 = 1024;
/// Entries of the kernel's cpumap: CPUs a shaped subscriber can be steered to.
pub const MAX_CPUS: u32 = 256;

/// Subscribers one interface with `queues` transmit queues can shape on every slot.
pub const fn capacity(queues: u32) -> u32 {
    let q = if queues == 0 { 1 } else { queues };
    (MAX_RANK + 1) * q
}

/// The transmit queue and the HTB class id (`major << 16 | minor`) of subscriber `sub`'s
/// slot `slot` on an interface with `queues` transmit queues (0 counts as 1); `None` past
/// [`capacity`].
pub const fn place(sub: u32, slot: u32, queues: u32) -> Option<(u32, u32)> {
    let q = if queues == 0 { 1 } else { queues };
    let rank = sub / q;
    if rank > MAX_RANK || slot >= RULE_SLOTS {
        return None;
    }
    let queue = sub % q;
    Some((queue, ((queue + 1) << 16) | (rank * RULE_SLOTS + slot + 1)))
}

/// The CPU that handles queue `queue`'s packets: queues are dealt to the CPUs in turn.
pub const fn cpu_of_queue(queue: u32, cpus: u32) -> u32 {
    if cpus == 0 { 0 } else { queue % cpus }
}

/// Value of the kernel's one-entry `SHAPE_LAYOUT` array, written by the daemon when it
/// sets shaping up: the transmit queues of each direction's egress interface (index
/// [`crate::Direction`]: 0 up = the uplink, 1 down = the downlink) and the CPUs to steer
/// to. A direction with fewer than two queues keeps one HTB and no steering.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShapeLayout {
    /// Transmit queues of the egress interface per direction.
    pub queues: [u32; 2],
    /// CPUs in the cpumap (queue `q` goes to CPU `q % cpus`).
    pub cpus: u32,
    /// Explicit padding.
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<ShapeLayout>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), size asserted, explicit padding, every bit pattern valid.
unsafe impl aya::Pod for ShapeLayout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_queue_keeps_the_old_classes() {
        for sub in [0, 1, 5, 8190] {
            for slot in 0..RULE_SLOTS {
                assert_eq!(
                    place(sub, slot, 1),
                    Some((0, (1 << 16) | (sub * RULE_SLOTS + slot + 1)))
                );
                assert_eq!(place(sub, slot, 0), place(sub, slot, 1));
            }
        }
        assert_eq!(capacity(1), 8191);
        assert_eq!(place(8191, 0, 1), None);
    }

    #[test]
    fn every_class_is_distinct_and_within_16_bits() {
        let queues = 13;
        let mut seen = [0u64; 1 << 16];
        let mut n = 0u32;
        for sub in 0..capacity(queues) {
            for slot in 0..RULE_SLOTS {
                let (q, id) = place(sub, slot, queues).expect("within capacity");
                let (major, minor) = (id >> 16, id & 0xffff);
                assert_eq!(major, q + 1);
                assert!(minor >= 1 && major < MQ_MAJOR && q < queues);
                // One bit per (major, minor): a class shared by two would be set twice.
                let bit = 1u64 << (major - 1);
                assert_eq!(seen[minor as usize] & bit, 0, "{sub} {slot}");
                seen[minor as usize] |= bit;
                n += 1;
            }
        }
        assert!(capacity(queues) >= 100_000);
        assert_eq!(n, capacity(queues) * RULE_SLOTS);
        assert_eq!(place(capacity(queues), 0, queues), None);
        assert_eq!(place(0, RULE_SLOTS, queues), None);
    }

    #[test]
    fn queues_are_dealt_to_cpus() {
        assert_eq!(cpu_of_queue(5, 2), 1);
        assert_eq!(cpu_of_queue(4, 2), 0);
        assert_eq!(cpu_of_queue(3, 0), 0);
    }
}
