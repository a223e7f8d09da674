//! TC egress programs for `shape` rules: they find the packet's flow (which the XDP probe
//! created on ingress) and set `skb->priority` to the subscriber's HTB class, `1:minor`,
//! which the HTB qdisc the daemon installed on the interface honours. Packets without a
//! shape rule keep priority 0, which HTB sends through its default (unshaped) path.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use peerwarden_common::Direction;

use crate::{
    flow,
    parse::{self, Parsed},
    policy,
};

/// HTB major handle the daemon gives its root qdisc.
const HTB_MAJOR: u32 = 1;

/// Egress of the uplink: packets from subscribers (up).
#[classifier]
pub fn tc_uplink_egress(ctx: TcContext) -> i32 {
    steer(&ctx, Direction::Up)
}

/// Egress of the downlink: packets towards subscribers (down).
#[classifier]
pub fn tc_downlink_egress(ctx: TcContext) -> i32 {
    steer(&ctx, Direction::Down)
}

#[inline(always)]
fn steer(ctx: &TcContext, dir: Direction) -> i32 {
    // Most policies shape nothing: then a packet costs one array read here, not a parse
    // and a flow lookup (1.25% of the machine's CPU in the forwarding bench's profile).
    if !policy::shaping() {
        return TC_ACT_OK as i32;
    }
    if let Parsed::Flow(pkt) | Parsed::Charged(_, pkt) = parse::parse(ctx, dir)
        && let Some(f) = flow::get(&pkt.key)
        && let Some(minor) = policy::shape_class(f, dir)
    {
        // SAFETY: skb is the live __sk_buff of this program run; priority is writable in TC.
        unsafe { (*ctx.skb.skb).priority = (HTB_MAJOR << 16) | minor };
    }
    TC_ACT_OK as i32
}
