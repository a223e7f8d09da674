//! peerwarden's XDP probe.
//!
//! Two entry points share one body: `xdp_downlink` sits on the interface towards the
//! subscribers (packets going up), `xdp_uplink` on the interface towards the internet
//! (packets coming down). Every packet is parsed, keyed to its flow, fingerprinted while the
//! flow is undecided (samples go to the daemon's deep classifier), counted, and put through
//! its subscriber's policy (pass, police, mark, block). `tc_uplink_egress` and
//! `tc_downlink_egress` steer shaped flows into HTB classes; on a multi-queue interface
//! the probe first redirects a shaped packet to its queue's CPU (steer.rs).
//! `xdp_observe` is the observe-only entry point for a mirror port (observe.rs).
//! `xdp_pass` is a bare `XDP_PASS` program, the baseline of the per-packet benchmark.
#![no_std]
#![no_main]
// Atomic adds on map values (see flow.rs); the kernel crate is built with RUSTC_BOOTSTRAP.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only atomic add on bpf"
)]

mod counters;
mod deep;
mod flow;
mod frag;
mod observe;
mod parse;
mod policy;
mod quota;
mod shape;
mod steer;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use peerwarden_common::{Direction, Stat};

use crate::parse::Parsed;

#[xdp]
pub fn xdp_downlink(ctx: XdpContext) -> u32 {
    probe(&ctx, Direction::Up)
}

#[xdp]
pub fn xdp_uplink(ctx: XdpContext) -> u32 {
    probe(&ctx, Direction::Down)
}

/// Observe-only mode: one mirror interface with copies of both directions; see observe.rs.
#[xdp]
pub fn xdp_observe(ctx: XdpContext) -> u32 {
    observe::observe(&ctx)
}

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn probe(ctx: &XdpContext, dir: Direction) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    counters::stat(Stat::Packets);
    // Every IP packet whose addresses could be read is charged to a flow, so to its
    // subscriber: other protocols, fragments and packets broken above the IP header too.
    let pkt = match parse::parse(ctx, dir) {
        Parsed::Flow(pkt) => pkt,
        Parsed::Charged(s, pkt) => {
            counters::stat(s);
            pkt
        }
        other => {
            not_a_flow(other);
            return xdp_action::XDP_PASS;
        }
    };
    if pkt.frag == parse::FRAG_FIRST {
        frag::remember(&pkt.key, pkt.frag_id);
    }
    match flow::track(ctx, &pkt, dir, frame_len) {
        // A shaped packet bound for a multi-queue interface goes to its queue's CPU.
        xdp_action::XDP_PASS => steer::to_queue_cpu(&pkt.key, dir),
        action => action,
    }
}

/// Counts a frame the probe does not track in its statistic (it is passed untouched).
/// The observe-only entry point tracks TCP and UDP flows only: it counts its charged
/// packets here too.
#[inline(always)]
fn not_a_flow(p: Parsed) {
    match p {
        Parsed::Flow(_) => {}
        Parsed::Charged(s, _) => counters::stat(s),
        Parsed::NonIp => counters::stat(Stat::NonIp),
        Parsed::NeighborDiscovery => counters::stat(Stat::NonTcpUdp),
        Parsed::Malformed => counters::stat(Stat::Malformed),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here
    // with an unbounded loop, so every read is bounds-checked before it is made.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
