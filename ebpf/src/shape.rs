//! TC egress programs for `shape` rules: they find the packet's flow (which the XDP probe
//! created on ingress) and set `skb->priority` to the subscriber's HTB class, which the
//! HTB qdisc the daemon installed on the interface honours: `1:minor` on a single-queue
//! interface; on a multi-queue one, the class in the HTB of the subscriber's transmit
//! queue, and `queue_mapping` to that queue (steer.rs, common/src/shape.rs). Packets
//! without a shape rule keep priority 0, which HTB sends through its default (unshaped)
//! path.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use peerwarden_common::Direction;

use crate::{
    flow,
    parse::{self, Parsed},
    policy, steer,
};

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
        && let Some(class) = policy::shape_class(f, dir)
        && let Some((queue, id, multi)) = steer::place_class(class, dir)
    {
        let skb = ctx.skb.skb;
        // SAFETY: skb is the live __sk_buff of this program run; priority and
        // queue_mapping are writable in TC.
        unsafe {
            (*skb).priority = id;
            if multi {
                // The kernel picks the transmit queue after this program: with no XPS map
                // on the device, a forwarded skb's queue is its recorded queue_mapping
                // minus one (skb_tx_hash), so queue `q` is written as `q + 1`, as for a
                // received skb. The daemon clears XPS on the interfaces it shapes.
                (*skb).queue_mapping = queue + 1;
            }
        }
    }
    TC_ACT_OK as i32
}
