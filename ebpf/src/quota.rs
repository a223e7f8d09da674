//! Per-subscriber budgets for the state every subscriber shares: the deep tier's ring
//! buffer (payload samples) and `LABELLED` (labels of flows the table may evict). Without
//! them one subscriber's flood of new flows fills the ring, so nobody else's flows are
//! classified, and pushes everyone else's remembered labels out.
//!
//! A budget is a rate with a burst, kept as one word per (budget, subscriber slot): the
//! time the slot's allowance is back to full (the generic cell rate algorithm, as the
//! police buckets). The slot is a hash of the subscriber-side address (IPv4) or of its /64
//! (IPv6: a subscriber cannot escape its budget by changing the low bits), so it needs no
//! policy and is known on a flow's first packet. Two subscribers can share a slot (one
//! chance in [`QUOTA_SLOTS`]); they then share its budget.
//!
//! Updates are plain read-modify-writes: two CPUs racing on one slot may both pass, which
//! lets a packet or two more through, never fewer.

use aya_ebpf::{macros::map, maps::Array};
use peerwarden_common::{FlowKey, flow::FAMILY_V4};

/// Slots per budget.
pub const QUOTA_SLOTS: u32 = 4096;

#[map]
static QUOTAS: Array<u64> = Array::with_max_entries(QUOTA_SLOTS * 2, 0);

/// A budget: its index and its rate (one take per `interval_ns`, `burst` takes at once).
pub struct Budget {
    index: u32,
    interval_ns: u64,
    burst: u64,
}

/// Payload samples to the deep tier: 1,000 a second per subscriber, 2,000 at once. The
/// ring holds about 5,000 samples; a flow needs a handful to be decided.
pub const SAMPLES: Budget = Budget {
    index: 0,
    interval_ns: 1_000_000,
    burst: 2_000,
};

/// Flows remembered in `LABELLED`: 64 a second per subscriber, 1,024 at once.
pub const LABELLED: Budget = Budget {
    index: 1,
    interval_ns: 15_625_000,
    burst: 1_024,
};

/// Takes one unit of `b` for the subscriber of `key` at `now`; false when it is spent.
// Inlined: a call of its own would add a frame to the deepest chain (xdp_observe's is at
// the verifier's 512 bytes).
#[inline(always)]
pub fn take(b: &Budget, key: &FlowKey, now: u64) -> bool {
    let slot = subscriber_hash(key) % QUOTA_SLOTS;
    let Some(p) = QUOTAS.get_ptr_mut(b.index * QUOTA_SLOTS + slot) else {
        return true;
    };
    // SAFETY: a live, 8-aligned array value; see the module's note on races.
    unsafe {
        let full_at = core::ptr::read_volatile(p);
        let start = if full_at > now { full_at } else { now };
        if start - now >= b.interval_ns * b.burst {
            return false;
        }
        core::ptr::write_volatile(p, start + b.interval_ns);
    }
    true
}

/// FNV-1a over the subscriber's IPv4 address or the first 8 bytes (the /64) of its IPv6 one.
#[inline(always)]
fn subscriber_hash(key: &FlowKey) -> u32 {
    let n = if key.family == FAMILY_V4 { 4 } else { 8 };
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < 8 {
        if i < n {
            h ^= key.sub_addr[i] as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
        i += 1;
    }
    h
}
