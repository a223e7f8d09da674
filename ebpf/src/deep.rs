//! The deep tier's kernel half: payload samples of undecided flows (and, with the swarm view
//! on, of flows decided as BitTorrent, for the view alone) go to user space through a ring
//! buffer, and verdicts come back through `VERDICTS`, applied on the flow's next
//! packet (so every change to a flow's label and counters is made here, in one place).

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, LruHashMap, RingBuf},
    programs::XdpContext,
};
use peerwarden_common::{
    Direction, FlowKey, FlowValue, Stat,
    deep::{
        DEEP_BUDGET, RING_BYTES, SAMPLE_BYTES, SAMPLE_SWARM_ONLY, SWARM_SAMPLES, Sample, SwarmView,
        Verdict,
    },
    flow::{FLAG_DEEP_PENDING, FLAG_SWARM_LEFT, FLAG_SWARM_LEFT_SHIFT},
};

use crate::{counters, parse::Packet, quota};

#[map]
static SAMPLES: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// The swarm view's switch ([`SwarmView`]), written by the daemon at start.
#[map]
static SWARM_VIEW: Array<SwarmView> = Array::with_max_entries(1, 0);

/// Written by the daemon, read and removed here.
#[map]
static VERDICTS: LruHashMap<FlowKey, Verdict> = LruHashMap::with_max_entries(65_536, 0);

/// Sends this packet's payload to the deep classifier, while the flow's budget lasts.
#[inline(always)]
pub fn sample(ctx: &XdpContext, pkt: &Packet, dir: Direction, f: &mut FlowValue) {
    if f.samples >= DEEP_BUDGET || pkt.payload_len == 0 {
        return;
    }
    if send(ctx, pkt, dir, 0) {
        f.samples += 1;
        f.flags |= FLAG_DEEP_PENDING;
    }
}

/// A packet of a flow the kernel's fingerprints decided as BitTorrent, for the swarm view
/// (issue 15): with `first` the deciding packet, which starts the flow's count of
/// [`SWARM_SAMPLES`] when the view is on; else a later payload packet of a flow whose
/// count is not spent. Under the subscriber's sample budget like any sample.
// Not inlined: its values stay off `classify`'s frame, and `track` calls it only for the
// few flows with a count left.
#[inline(never)]
pub fn swarm_sample(
    ctx: &XdpContext,
    pkt: &Packet,
    dir: Direction,
    f: &mut FlowValue,
    first: bool,
) {
    let left = if first {
        match SWARM_VIEW.get(0) {
            Some(&on) if on != 0 => SWARM_SAMPLES as u32,
            _ => return,
        }
    } else {
        (f.flags & FLAG_SWARM_LEFT) >> FLAG_SWARM_LEFT_SHIFT
    };
    if left == 0 || pkt.payload_len == 0 {
        return;
    }
    // Counted whether or not the budget let it through: a flow's count ends either way.
    f.flags = (f.flags & !FLAG_SWARM_LEFT) | (((left - 1) & 7) << FLAG_SWARM_LEFT_SHIFT);
    send(ctx, pkt, dir, SAMPLE_SWARM_ONLY);
}

/// Puts this packet's payload on the ring, within its subscriber's budget; whether it did.
#[inline(always)]
fn send(ctx: &XdpContext, pkt: &Packet, dir: Direction, flags: u8) -> bool {
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if !quota::take(&quota::SAMPLES, &pkt.key, now) {
        counters::stat(Stat::SamplesOverBudget);
        return false;
    }
    let Some(mut entry) = SAMPLES.reserve::<Sample>(0) else {
        counters::stat(Stat::RingDrops);
        return false;
    };
    let len = if pkt.payload_len < SAMPLE_BYTES {
        pkt.payload_len
    } else {
        SAMPLE_BYTES
    };
    let s = entry.as_mut_ptr();
    // SAFETY: `s` points at a reserved, exclusively ours ring-buffer record of one Sample;
    // 0 < len <= SAMPLE_BYTES (the callers checked payload_len > 0).
    let rc = unsafe {
        (*s).key = pkt.key;
        (*s).ts_ns = now;
        (*s).tcp_seq = pkt.tcp_seq;
        (*s).payload_len = pkt.payload_len as u16;
        (*s).captured = len as u16;
        (*s).dir = dir as u8;
        (*s).tcp_flags = pkt.tcp_flags;
        (*s).flags = flags;
        (*s)._pad = [0; 5];
        bpf_xdp_load_bytes(
            ctx.ctx,
            pkt.payload_off as u32,
            (*s).data.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if rc != 0 {
        entry.discard(0);
        return false;
    }
    entry.submit(0);
    counters::stat(Stat::SamplesSent);
    true
}

/// The deep classifier's verdict on this flow, if one arrived; it is consumed.
#[inline(always)]
pub fn take_verdict(key: &FlowKey) -> Option<Verdict> {
    // SAFETY: a plain-data value copied out at once.
    let v = unsafe { VERDICTS.get(key) }.copied()?;
    let _ = VERDICTS.remove(key);
    Some(v)
}
