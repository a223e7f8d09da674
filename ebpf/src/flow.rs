//! The flow map: one LRU entry per flow for both directions, updated on every packet, and
//! the kernel tier of classification while the flow is undecided.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns, helpers::bpf_xdp_load_bytes,
    macros::map, maps::LruHashMap, programs::XdpContext,
};
use peerwarden_common::{
    Confidence, Direction, FlowKey, FlowValue, Label, Stat,
    fingerprint::{self, SAMPLE_LEN},
    flow::{FLAG_FINAL, FLAG_UTP_DOWN, FLAG_UTP_UP, INSPECT_BUDGET, PROTO_TCP},
};

use crate::{counters, parse::Packet};

/// Sized by the daemon at load time (`flow_table_size`); this is the default.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(1 << 20, 0);

const UNKNOWN: u16 = Label::Unknown as u16;

#[inline(always)]
pub fn track(ctx: &XdpContext, pkt: &Packet, dir: Direction, frame_len: u64) {
    // The coarse clock (CLOCK_MONOTONIC read at the last tick, 4 ms at HZ=250; kernel 5.11+)
    // is enough for first/last seen and idle expiry, and costs next to nothing, where
    // bpf_ktime_get_ns was a fifth of an established flow's per-packet cost
    // (docs/benchmarks.md, "XDP probe: per-packet cost").
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let Some(f) = lookup_or_create(&pkt.key, dir, now) else {
        counters::stat(Stat::FlowInsertFailed);
        counters::count(UNKNOWN, dir, frame_len);
        return;
    };
    if f.label == UNKNOWN && f.flags & FLAG_FINAL == 0 && pkt.payload_len > 0 {
        match inspect(ctx, pkt, dir, f) {
            Some(label) => {
                let label = label as u16;
                counters::relabel(UNKNOWN, label, &f.packets, &f.bytes);
                f.label = label;
                f.confidence = Confidence::Payload as u8;
                counters::count_flow(label, dir);
                counters::stat(Stat::FlowsLabelled);
            }
            None => {
                f.inspected = f.inspected.saturating_add(1);
                if f.inspected >= INSPECT_BUDGET {
                    f.flags |= FLAG_FINAL;
                }
            }
        }
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
}

#[inline(always)]
fn lookup_or_create(key: &FlowKey, dir: Direction, now: u64) -> Option<&'static mut FlowValue> {
    if let Some(p) = FLOWS.get_ptr_mut(key) {
        // SAFETY: a live map value; see `track` for concurrent updates.
        return Some(unsafe { &mut *p });
    }
    let fresh = FlowValue {
        first_seen_ns: now,
        last_seen_ns: now,
        ..FlowValue::default()
    };
    // NOEXIST: if another CPU created it first, keep theirs.
    if FLOWS.insert(key, &fresh, BPF_NOEXIST as u64).is_ok() {
        counters::stat(Stat::FlowsCreated);
        counters::count_flow(UNKNOWN, dir);
    }
    // SAFETY: as above.
    FLOWS.get_ptr_mut(key).map(|p| unsafe { &mut *p })
}

/// Runs the fixed-offset fingerprints on the first bytes of this packet's payload.
#[inline(always)]
fn inspect(ctx: &XdpContext, pkt: &Packet, dir: Direction, f: &mut FlowValue) -> Option<Label> {
    let mut buf = [0u8; SAMPLE_LEN];
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
