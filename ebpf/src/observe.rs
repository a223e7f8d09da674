//! Observe-only mode: `xdp_observe` on one interface that receives copies of both
//! directions (a mirror or SPAN port). The direction of a packet comes from the subscriber
//! side: a source address inside a subscriber network (`OBSERVE_V4`/`OBSERVE_V6`, filled
//! by the daemon from the config's `subscriber_networks` and the policy's prefixes) goes up,
//! a destination inside one goes down, anything else is counted as unmatched and not
//! tracked. Flow packets then take the inline path (flow table, fingerprints, deep-tier
//! samples, counters, the policy's subscriber accounting), and whatever the policy decides
//! is only counted: every frame leaves with `XDP_PASS`, unchanged. (The daemon compiles
//! policies without DSCP rewrites in this mode, see `peerwarden_policies::compile`, so
//! nothing in the shared path writes to the frame.)

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use peerwarden_common::{
    Direction, FlowKey, Stat,
    flow::FAMILY_V4,
    observe::{MAX_OBSERVE_NETWORKS, OBSERVE_STAT_SLOTS, ObserveStat},
};

use crate::{
    counters, flow,
    parse::{self, Parsed},
};

/// `BPF_F_NO_PREALLOC`, which the kernel requires of LPM tries.
const NO_PREALLOC: u32 = 1;

/// Subscriber networks, IPv4: key the address bytes, value unused.
#[map]
static OBSERVE_V4: LpmTrie<[u8; 4], u8> =
    LpmTrie::with_max_entries(MAX_OBSERVE_NETWORKS, NO_PREALLOC);
/// Subscriber networks, IPv6.
#[map]
static OBSERVE_V6: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(MAX_OBSERVE_NETWORKS, NO_PREALLOC);
/// Per CPU, indexed by [`ObserveStat`].
#[map]
static OBSERVE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(OBSERVE_STAT_SLOTS, 0);

#[inline(always)]
fn stat(s: ObserveStat) {
    if let Some(p) = OBSERVE_STATS.get_ptr_mut(s as u32) {
        // SAFETY: a per-CPU slot; nothing else on this CPU runs while we hold it.
        unsafe { *p += 1 };
    }
}

/// Whether `addr` (16 bytes, IPv4 in the first 4) lies in a subscriber network.
#[inline(always)]
fn is_subscriber(family: u8, addr: &[u8; 16]) -> bool {
    if family == FAMILY_V4 {
        OBSERVE_V4
            .get(&Key::new(32, [addr[0], addr[1], addr[2], addr[3]]))
            .is_some()
    } else {
        OBSERVE_V6.get(&Key::new(128, *addr)).is_some()
    }
}

/// The direction of a packet parsed as going up (source in `sub_addr`), if either end is a
/// subscriber's; the source is asked first, as the downlink program would see it.
#[inline(always)]
fn direction(key: &FlowKey) -> Option<Direction> {
    if is_subscriber(key.family, &key.sub_addr) {
        Some(Direction::Up)
    } else if is_subscriber(key.family, &key.remote_addr) {
        Some(Direction::Down)
    } else {
        None
    }
}

/// Observes one frame; always `XDP_PASS`.
#[inline(always)]
pub fn observe(ctx: &XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    counters::stat(Stat::Packets);
    // Parsed as if going up: source address and port on the subscriber side of the key.
    match parse::parse(ctx, Direction::Up) {
        Parsed::Flow(mut pkt) => match direction(&pkt.key) {
            Some(dir) => {
                if dir == Direction::Down {
                    // The key as the uplink program files it: subscriber side first.
                    let k = &mut pkt.key;
                    core::mem::swap(&mut k.sub_addr, &mut k.remote_addr);
                    core::mem::swap(&mut k.sub_port, &mut k.remote_port);
                    stat(ObserveStat::Down);
                } else {
                    stat(ObserveStat::Up);
                }
                if flow::track(ctx, &pkt, dir, frame_len) == xdp_action::XDP_DROP {
                    stat(ObserveStat::WouldDrop);
                }
            }
            None => stat(ObserveStat::Unmatched),
        },
        other => crate::not_a_flow(other),
    }
    stat(ObserveStat::Passed);
    xdp_action::XDP_PASS
}
