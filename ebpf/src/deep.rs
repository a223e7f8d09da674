//! The deep tier's kernel half: payload samples of undecided flows go to user space through
//! a ring buffer, and verdicts come back through `VERDICTS`, applied on the flow's next
//! packet (so every change to a flow's label and counters is made here, in one place).

use aya_ebpf::{
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_load_bytes},
    macros::map,
    maps::{LruHashMap, RingBuf},
    programs::XdpContext,
};
use peerwarden_common::{
    Direction, FlowKey, FlowValue, Stat,
    deep::{DEEP_BUDGET, RING_BYTES, SAMPLE_BYTES, Sample, Verdict},
    flow::FLAG_DEEP_PENDING,
};

use crate::{counters, parse::Packet, quota};

#[map]
static SAMPLES: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Written by the daemon, read and removed here.
#[map]
static VERDICTS: LruHashMap<FlowKey, Verdict> = LruHashMap::with_max_entries(65_536, 0);

/// Sends this packet's payload to the deep classifier, while the flow's budget lasts.
#[inline(always)]
pub fn sample(ctx: &XdpContext, pkt: &Packet, dir: Direction, f: &mut FlowValue) {
    if f.samples >= DEEP_BUDGET || pkt.payload_len == 0 {
        return;
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if !quota::take(&quota::SAMPLES, &pkt.key, now) {
        counters::stat(Stat::SamplesOverBudget);
        return;
    }
    let Some(mut entry) = SAMPLES.reserve::<Sample>(0) else {
        counters::stat(Stat::RingDrops);
        return;
    };
    let len = if pkt.payload_len < SAMPLE_BYTES {
        pkt.payload_len
    } else {
        SAMPLE_BYTES
    };
    let s = entry.as_mut_ptr();
    // SAFETY: `s` points at a reserved, exclusively ours ring-buffer record of one Sample;
    // 0 < len <= SAMPLE_BYTES (payload_len > 0 checked above).
    let rc = unsafe {
        (*s).key = pkt.key;
        (*s).ts_ns = now;
        (*s).tcp_seq = pkt.tcp_seq;
        (*s).payload_len = pkt.payload_len as u16;
        (*s).captured = len as u16;
        (*s).dir = dir as u8;
        (*s).tcp_flags = pkt.tcp_flags;
        (*s)._pad = [0; 6];
        bpf_xdp_load_bytes(
            ctx.ctx,
            pkt.payload_off as u32,
            (*s).data.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if rc != 0 {
        entry.discard(0);
        return;
    }
    entry.submit(0);
    f.samples += 1;
    f.flags |= FLAG_DEEP_PENDING;
    counters::stat(Stat::SamplesSent);
}

/// The deep classifier's verdict on this flow, if one arrived; it is consumed.
#[inline(always)]
pub fn take_verdict(key: &FlowKey) -> Option<Verdict> {
    // SAFETY: a plain-data value copied out at once.
    let v = unsafe { VERDICTS.get(key) }.copied()?;
    let _ = VERDICTS.remove(key);
    Some(v)
}
