//! The flow map: one LRU entry per flow for both directions, updated on every packet, and
//! the kernel tier of classification while the flow is undecided.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_load_bytes},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use peerwarden_common::{
    Confidence, Direction, FlowKey, FlowValue, Label, Stat,
    deep::DEEP_BUDGET,
    fingerprint::{self, SAMPLE_LEN, iptv},
    flow::{
        FLAG_DEEP_PENDING, FLAG_FINAL, FLAG_OFFERED, FLAG_SWARM_LEFT, FLAG_TS_RUN,
        FLAG_TS_RUN_SHIFT, FLAG_USER_LABEL, FLAG_UTP_DOWN, FLAG_UTP_UP, INSPECT_BUDGET,
        LabelMemory, PROTO_TCP,
    },
};

use crate::{counters, deep, parse::Packet, policy, quota};

/// The flow entry of a key, if any (for the TC egress program).
#[inline(always)]
pub fn get(key: &FlowKey) -> Option<&'static FlowValue> {
    // SAFETY: a live map value, read only.
    FLOWS.get_ptr(key).map(|p| unsafe { &*p })
}

/// The fingerprints' copy of a payload's first bytes.
#[map]
static SCRATCH: PerCpuArray<[u8; SAMPLE_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Sized by the daemon at load time (`flow_table_size`); this is the default.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(1 << 20, 0);

/// The labels of labelled flows, so that a flow evicted from `FLOWS` (an idle one, under a
/// flood of new tuples) is labelled again from its first packet when it resumes. Written
/// once per flow, when it is labelled, and read only when `FLOWS` has no entry: a flood of
/// unlabelled tuples never writes it, so cannot churn it, and an established flow's packets
/// never touch it. Sized by the daemon at load time (`flow_table_size / LABELLED_PER_FLOWS`).
#[map]
static LABELLED: LruHashMap<FlowKey, LabelMemory> = LruHashMap::with_max_entries(1 << 18, 0);

const UNKNOWN: u16 = Label::Unknown as u16;
const TLS: u16 = Label::Tls as u16;
const QUIC: u16 = Label::Quic as u16;
const VIDEO_SERVICE: u16 = Label::VideoService as u16;
/// A TLS or QUIC flow with a final label looks for a shape verdict (user space's walk of
/// this table found it to be adaptive streaming) once per this many packets one way: a
/// lookup on 1 packet in 64 rather than on each.
const SHAPE_POLL_MASK: u64 = 63;
/// The SYN bit of the TCP flags.
const TCP_SYN: u8 = 0x02;

/// Tracks, classifies and counts one packet; returns the XDP action the policy decides.
#[inline(always)]
pub fn track(ctx: &XdpContext, pkt: &Packet, dir: Direction, frame_len: u64) -> u32 {
    // The coarse clock (CLOCK_MONOTONIC read at the last tick, 4 ms at HZ=250; kernel 5.11+)
    // is enough for first/last seen, idle expiry and token buckets refilled per tick, and
    // costs next to nothing, where bpf_ktime_get_ns was a fifth of an established flow's
    // per-packet cost (docs/benchmarks.md, "XDP probe: per-packet cost").
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // A SYN (or SYN-ACK) opens a new connection: it cannot resume a flow `LABELLED` knows.
    let opening = pkt.key.proto == PROTO_TCP && pkt.tcp_flags & TCP_SYN != 0;
    let Some(f) = lookup_or_create(&pkt.key, dir, now, opening) else {
        counters::stat(Stat::FlowInsertFailed);
        counters::count(UNKNOWN, dir, frame_len);
        return xdp_action::XDP_PASS;
    };
    // Labelled or not, a flow is inspected until its label is final: a label from a weak
    // signal (a host name, a web protocol, the endpoint cache, behaviour) is provisional,
    // and a P2P signature found on a later packet replaces it.
    if f.flags & FLAG_FINAL == 0 {
        classify(ctx, pkt, dir, f);
    } else if f.flags & FLAG_SWARM_LEFT != 0 {
        // A BitTorrent flow the kernel decided with the swarm view on: its next few
        // payload packets go to the view (deep.rs). Never set with the view off.
        deep::swarm_sample(ctx, pkt, dir, f, false);
    } else if (f.label == TLS || f.label == QUIC) && f.packets[dir.index()] & SHAPE_POLL_MASK == 0 {
        shape_verdict(&pkt.key, f, dir);
    }
    // A final label is remembered once the flow has been seen both ways.
    if f.flags & (FLAG_FINAL | FLAG_OFFERED) == FLAG_FINAL && f.label != UNKNOWN {
        remember(&pkt.key, f, dir);
    }
    let i = dir.index();
    // Packets of one flow can run on two CPUs at once: add atomically (BPF_XADD; the
    // stable `AtomicU64::fetch_add` is not offered on the bpf target, which has no CAS).
    // SAFETY: the pointers are into a live map value, aligned to 8.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut f.packets[i], 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut f.bytes[i], frame_len);
    }
    f.last_seen_ns = now;
    counters::count(f.label, dir, frame_len);
    policy::enforce(ctx, pkt, dir, f, frame_len)
}

/// Labels a flow whose label is not final yet: a verdict of the deep classifier if one came
/// back, else the kernel's own fingerprints on this payload, else a sample for the deep
/// classifier. A deep verdict may be provisional (inspection goes on) or final; a kernel
/// fingerprint is a protocol's own bytes (a P2P protocol's, or the MPEG-TS grammar over
/// three datagrams in a row) and is final at once. Only final labels are
/// kept in `LABELLED`.
/// Not inlined: as a BPF-to-BPF call the verifier walks it once per caller state instead of
/// carrying its many outcomes through the policy code that follows.
#[inline(never)]
fn classify(ctx: &XdpContext, pkt: &Packet, dir: Direction, f: &mut FlowValue) {
    // One place gives the flow its new label, and few values live across the calls: this
    // frame is on xdp_observe's deepest call chain, at the verifier's 512 bytes of stack
    // (so `now` is read again where it is needed rather than kept here).
    // The new label in the low 16 bits, its confidence above.
    let mut found: u32 = UNKNOWN as u32;
    if f.flags & FLAG_DEEP_PENDING != 0 {
        found = deep_verdict(&pkt.key, f);
    }
    // The kernel's fingerprints run while the flow has no label at all: once the deep tier
    // has named what the stream started with (a web protocol, say), a handshake found later
    // needs its two-way confirmation. For TCP, only in the flow's first two payload
    // packets: a fixed offset cannot tell a stream's start from a later segment that
    // begins with the same bytes (a web page quoting the handshake).
    if f.flags & FLAG_FINAL == 0 && pkt.payload_len != 0 && f.inspected < INSPECT_BUDGET {
        if f.label == UNKNOWN
            && found == UNKNOWN as u32
            && (pkt.key.proto != PROTO_TCP || f.inspected < 2)
            && let Some(l) = inspect(ctx, pkt, dir, f)
        {
            found = l as u32 | (Confidence::Payload as u32) << 16;
            f.flags = (f.flags & !FLAG_USER_LABEL) | FLAG_FINAL;
            counters::stat(Stat::FlowsLabelled);
            // The deep tier never sees a flow decided here: the swarm view gets the
            // deciding packet of a BitTorrent one (and the next few) when it is on.
            if matches!(
                l,
                Label::Bittorrent
                    | Label::BittorrentUtp
                    | Label::BittorrentDht
                    | Label::BittorrentTracker
            ) {
                deep::swarm_sample(ctx, pkt, dir, f, true);
            }
        } else {
            f.inspected += 1;
        }
    }
    let label = found as u16;
    if label != UNKNOWN && label != f.label {
        set_label(f, label, (found >> 16) as u8, dir);
        if f.flags & FLAG_USER_LABEL != 0 {
            counters::stat(Stat::VerdictsApplied);
        }
    }
    if f.flags & FLAG_FINAL != 0 {
        return;
    }
    deep::sample(ctx, pkt, dir, f);
    // Final once both tiers have had their budget and nothing is pending.
    if f.inspected >= INSPECT_BUDGET && f.samples >= DEEP_BUDGET && f.flags & FLAG_DEEP_PENDING == 0
    {
        f.flags |= FLAG_FINAL;
    }
}

/// The deep classifier's verdict on the flow, if one came back: its label (low 16 bits)
/// and confidence (above), `UNKNOWN` if none; sets the flow's flags it implies.
// Not inlined: its values stay off `classify`'s frame (see there).
#[inline(never)]
fn deep_verdict(key: &FlowKey, f: &mut FlowValue) -> u32 {
    let Some(v) = deep::take_verdict(key) else {
        return UNKNOWN as u32;
    };
    if v.final_ != 0 {
        f.flags |= FLAG_FINAL;
    }
    if v.label == UNKNOWN {
        return UNKNOWN as u32;
    }
    f.flags |= FLAG_USER_LABEL;
    v.label as u32 | (v.confidence as u32) << 16
}

/// A final TLS or QUIC flow's shape verdict, if user space wrote one (the daemon's flow
/// walk, `video.behavioural`): the flow becomes video, its earlier bytes moved with it.
/// Any other verdict is dropped: the shape names video only.
// Not inlined: its values stay off the caller's frame.
#[inline(never)]
fn shape_verdict(key: &FlowKey, f: &mut FlowValue, dir: Direction) {
    let Some(v) = deep::take_verdict(key) else {
        return;
    };
    if v.label == VIDEO_SERVICE {
        set_label(f, VIDEO_SERVICE, v.confidence, dir);
        counters::stat(Stat::VerdictsApplied);
    }
}

/// Gives a flow its (new) label, moving its earlier packets, bytes and its flow count from
/// the label it had (unknown, or a provisional one) to the new one.
#[inline(always)]
fn set_label(f: &mut FlowValue, label: u16, confidence: u8, dir: Direction) {
    let old = f.label;
    counters::relabel(old, label, &f.packets, &f.bytes);
    policy::relabel(f, old, label);
    if old != UNKNOWN {
        // The flow was counted under its provisional label; it now counts under the new one.
        counters::uncount_flow(old, dir);
    }
    f.label = label;
    f.confidence = confidence;
    counters::count_flow(label, dir);
}

/// Offers a flow's final label to `LABELLED` once the flow has been seen both ways (this
/// packet counts), within its subscriber's budget (quota.rs): a flood of one-way packets
/// that look labelled never writes it, and one subscriber's flood of answered ones cannot
/// push other flows' labels out.
// Not inlined: its values stay off the callers' frames.
#[inline(never)]
fn remember(key: &FlowKey, f: &mut FlowValue, dir: Direction) {
    let up = f.packets[0] != 0 || dir == Direction::Up;
    let down = f.packets[1] != 0 || dir == Direction::Down;
    if !(up && down) {
        return;
    }
    f.flags |= FLAG_OFFERED;
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if quota::take(&quota::LABELLED, key, now) {
        keep(
            key,
            f.label,
            f.confidence,
            u8::from(f.flags & FLAG_USER_LABEL != 0),
        );
    } else {
        counters::stat(Stat::LabelledRefused);
    }
}

#[inline(always)]
fn keep(key: &FlowKey, label: u16, confidence: u8, user: u8) {
    let m = LabelMemory {
        label,
        confidence,
        user,
        _pad: [0; 4],
    };
    // Nothing to do if it fails: the flow is labelled in `FLOWS` all the same.
    let _ = LABELLED.insert(key, &m, 0);
}

// Not inlined: its new entry's 72 bytes stay off the caller's stack frame, which the
// verifier adds to the deepest call chain's frames (512 bytes for all together).
#[inline(never)]
fn lookup_or_create(
    key: &FlowKey,
    dir: Direction,
    now: u64,
    opening: bool,
) -> Option<&'static mut FlowValue> {
    if let Some(p) = FLOWS.get_ptr_mut(key) {
        // SAFETY: a live map value; see `track` for concurrent updates.
        return Some(unsafe { &mut *p });
    }
    // Zeroes LLVM cannot fold into a call to the byte loop `memset` is on bpf (see
    // `parse::opaque_zero`).
    let z = crate::parse::opaque_zero();
    let mut fresh = FlowValue {
        packets: [z, z],
        bytes: [z, z],
        first_seen_ns: now,
        last_seen_ns: now,
        label: z as u16,
        confidence: z as u8,
        inspected: z as u8,
        utp_conn_id: [z as u16; 2],
        flags: z as u32,
        policy_gen: z as u32,
        policy: z,
        samples: z as u8,
        _pad: [z as u8; 7],
    };
    // A flow without ports (another IP protocol, an orphan fragment) is labelled from its
    // key and final at once (frag.rs), and never needs remembering.
    if let Some((label, confidence)) = crate::frag::fixed_label(key) {
        fresh.label = label;
        fresh.confidence = confidence;
        fresh.flags = FLAG_FINAL | FLAG_OFFERED;
    // A flow labelled before (and evicted since) starts labelled: `track` does not classify
    // it again, and its policy applies from this packet. Not for a connection's opening.
    // SAFETY: a plain-data value copied out at once.
    } else if !opening && let Some(m) = unsafe { LABELLED.get(key) }.copied() {
        fresh.label = m.label;
        fresh.confidence = m.confidence;
        // Only final labels are remembered: the resumed flow is not inspected again, nor
        // offered to `LABELLED` again.
        fresh.flags = FLAG_FINAL | FLAG_OFFERED;
        if m.user != 0 {
            fresh.flags |= FLAG_USER_LABEL;
        }
    }
    // NOEXIST: if another CPU created it first, keep theirs.
    if FLOWS.insert(key, &fresh, BPF_NOEXIST as u64).is_ok() {
        counters::stat(Stat::FlowsCreated);
        counters::count_flow(fresh.label, dir);
    }
    // SAFETY: as above.
    FLOWS.get_ptr_mut(key).map(|p| unsafe { &mut *p })
}

/// Runs the fixed-offset fingerprints on the first bytes of this packet's payload.
// A BPF-to-BPF call, not inlined: the verifier walks the fingerprints' bounded searches
// once per call rather than once per path through the rest of the program (with them
// inlined, the policy code after them pushed it past its 1M-instruction limit).
#[inline(never)]
fn inspect(ctx: &XdpContext, pkt: &Packet, dir: Direction, f: &mut FlowValue) -> Option<Label> {
    // A per-CPU scratch buffer: the 512-byte stack has no room for it beside the parse.
    // SAFETY: a per-CPU slot, ours for this program run.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let len = if pkt.payload_len < SAMPLE_LEN {
        pkt.payload_len
    } else {
        SAMPLE_LEN
    };
    if len == 0 {
        return None;
    }
    // SAFETY: buf holds SAMPLE_LEN bytes and 0 < len <= SAMPLE_LEN; the helper checks the
    // frame's bounds itself.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            pkt.payload_off as u32,
            buf.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if rc != 0 {
        return None;
    }
    let p = &buf[..len];
    if pkt.key.proto == PROTO_TCP {
        return fingerprint::tcp(p);
    }
    if let Some(label) = fingerprint::udp(p) {
        return Some(label);
    }
    if iptv_run(ctx, pkt, f) {
        return Some(Label::Iptv);
    }
    // uTP data and state packets: label once both directions carry ids that pair up.
    let id = fingerprint::utp_header(p)?;
    let (mine, theirs) = match dir {
        Direction::Up => (FLAG_UTP_UP, FLAG_UTP_DOWN),
        Direction::Down => (FLAG_UTP_DOWN, FLAG_UTP_UP),
    };
    if f.flags & mine == 0 {
        f.utp_conn_id[dir.index()] = id;
        f.flags |= mine;
    }
    if f.flags & theirs != 0 && fingerprint::utp_pair(f.utp_conn_id[0], f.utp_conn_id[1]) {
        return Some(Label::BittorrentUtp);
    }
    None
}

/// MPEG-TS datagrams in a row (fingerprint::iptv): whether this one makes the flow's run
/// long enough. The TS headers past the first lie beyond the fingerprints' 128-byte copy,
/// so they are read from the frame (5 bytes each, at most 7).
// Not inlined: its loop is walked once per call (see `inspect`).
#[inline(never)]
fn iptv_run(ctx: &XdpContext, pkt: &Packet, f: &mut FlowValue) -> bool {
    let frame = Frame {
        ctx,
        off: pkt.payload_off,
        len: pkt.payload_len,
    };
    let run = ((f.flags & FLAG_TS_RUN) >> FLAG_TS_RUN_SHIFT) as u8;
    let (run, hit) = iptv::run_step(run, iptv::mpegts(&frame).is_some());
    f.flags = (f.flags & !FLAG_TS_RUN) | ((run as u32) << FLAG_TS_RUN_SHIFT);
    hit
}

/// A packet's payload as the IPTV matcher reads it: straight from the frame.
struct Frame<'a> {
    ctx: &'a XdpContext,
    off: usize,
    len: usize,
}

impl iptv::Payload for Frame<'_> {
    #[inline(always)]
    fn size(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if off >= self.len || N > self.len - off {
            return None;
        }
        let mut out = [0u8; N];
        // SAFETY: `out` holds N bytes; the helper checks the frame's bounds itself.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                self.ctx.ctx,
                (self.off + off) as u32,
                out.as_mut_ptr().cast(),
                N as u32,
            )
        };
        (rc == 0).then_some(out)
    }
}
