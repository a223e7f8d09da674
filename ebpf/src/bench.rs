//! Bench-only kernel programs: the flow table's lookup and per-packet updates with other key
//! and value layouts, measured by `tests/benches/flow_key.rs` (docs/benchmarks.md, "The
//! flow key's size and the value's hot fields").
//!
//! A separate object (the `flow_bench` binary of this crate, built beside `peerwarden` by
//! aya-build): the daemon's object has none of these programs or maps, so its load does not
//! create, verify or pin anything for them. Each map is declared with one entry; the bench
//! sizes them at load time, as the daemon sizes `FLOWS`.
//!
//! Every program reads a flow's IPv4 addresses and ports from a TCP/IPv4 frame (the
//! subscriber is the source), builds its key, looks it up and does what the probe's
//! established path does to the entry on every packet (flow.rs `track`, policy.rs): reads
//! the flags, the label and the cached policy word with its generation, adds the packet and
//! its bytes atomically, writes the last-seen time. A miss inserts the flow (`XDP_TX`, the
//! bench's warm-up pass, and the new-flow case: a lookup that misses and an insert, which
//! evicts in a full table); a hit returns `XDP_PASS`.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only atomic add on bpf"
)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::{BPF_F_NO_COMMON_LRU, BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::LruHashMap,
    programs::XdpContext,
};
use peerwarden_common::{
    FlowKey, FlowValue,
    flow::{FAMILY_V4, FLAG_FINAL},
};

/// An IPv4 flow's key in 12 bytes: addresses and ports, no protocol (a table per protocol,
/// or the protocol kept elsewhere).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Key12 {
    sub_addr: [u8; 4],
    remote_addr: [u8; 4],
    sub_port: u16,
    remote_port: u16,
}

/// An IPv4 flow's key with its protocol: 13 bytes of content, 16 with padding (the element
/// rounds a 12-byte key up to 16 as well, so this differs from [`Key12`] only in the bytes
/// hashed and compared).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Key16 {
    sub_addr: [u8; 4],
    remote_addr: [u8; 4],
    sub_port: u16,
    remote_port: u16,
    proto: u8,
    _pad: [u8; 3],
}

/// The flow value's per-packet fields alone, 64 bytes: with a 12-byte key the element is
/// 48 + 16 + 64 = 128 bytes, two cache lines. The fields read only while a flow is
/// classified or created (first seen, samples sent) would live in another table.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HotValue {
    packets: [u64; 2],
    bytes: [u64; 2],
    last_seen_ns: u64,
    policy: u64,
    policy_gen: u32,
    flags: u32,
    label: u16,
    confidence: u8,
    inspected: u8,
    utp_conn_id: [u16; 2],
}

const _: () = assert!(core::mem::size_of::<Key12>() == 12);
const _: () = assert!(core::mem::size_of::<Key16>() == 16);
const _: () = assert!(core::mem::size_of::<HotValue>() == 64);

/// (a) Today's table: the 40-byte key, the 80-byte value.
#[map]
static BENCH_KEY40: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(1, 0);
/// (a') Today's table with an LRU list per CPU (`BPF_F_NO_COMMON_LRU`): each possible CPU
/// gets `max_entries / possible CPUs` of the entries and evicts only its own. Lookups are the
/// same code as (a); inserts take no shared lock. The bench also loads (a) and (a') alone,
/// sized like the daemon's table, for new flows into a full table.
#[map]
static BENCH_KEY40_PCPU: LruHashMap<FlowKey, FlowValue> =
    LruHashMap::with_max_entries(1, BPF_F_NO_COMMON_LRU);
/// (b) A 12-byte key, the same value.
#[map]
static BENCH_KEY12: LruHashMap<Key12, FlowValue> = LruHashMap::with_max_entries(1, 0);
/// (b') A 16-byte key (12 and the protocol), the same value.
#[map]
static BENCH_KEY16: LruHashMap<Key16, FlowValue> = LruHashMap::with_max_entries(1, 0);
/// (c) A 12-byte key, the per-packet fields only.
#[map]
static BENCH_KEY12_HOT: LruHashMap<Key12, HotValue> = LruHashMap::with_max_entries(1, 0);

/// The per-packet work on a flow's value, whatever its layout.
trait Entry: Sized {
    /// A new flow's value: labelled and final, as an established flow's is.
    fn fresh(now: u64) -> Self;
    /// The established path's reads and writes; false if the flow is not final.
    fn touch(&mut self, frame_len: u64, now: u64) -> bool;
}

/// The reads and writes of one established packet on fields that every layout has.
macro_rules! touch_fields {
    ($v:expr, $frame_len:expr, $now:expr) => {{
        let v = $v;
        // SAFETY: reads and atomic adds of fields of a live map value, aligned.
        unsafe {
            if v.flags & FLAG_FINAL == 0 || v.label == 0 {
                return false;
            }
            // The cached decision and its stamp (policy.rs reads both on every packet).
            let word = core::ptr::read_volatile(&v.policy);
            let generation = core::ptr::read_volatile(&v.policy_gen);
            if word == u64::MAX && generation == u32::MAX {
                return false;
            }
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut v.packets[0], 1);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&mut v.bytes[0], $frame_len);
        }
        v.last_seen_ns = $now;
        true
    }};
}

impl Entry for FlowValue {
    #[inline(always)]
    fn fresh(now: u64) -> Self {
        let z = zero();
        FlowValue {
            packets: [z, z],
            bytes: [z, z],
            first_seen_ns: now,
            last_seen_ns: now,
            label: 1,
            confidence: z as u8,
            inspected: z as u8,
            utp_conn_id: [z as u16; 2],
            flags: FLAG_FINAL,
            policy_gen: z as u32,
            policy: z,
            samples: z as u8,
            _pad: [z as u8; 7],
        }
    }

    #[inline(always)]
    fn touch(&mut self, frame_len: u64, now: u64) -> bool {
        touch_fields!(self, frame_len, now)
    }
}

impl Entry for HotValue {
    #[inline(always)]
    fn fresh(now: u64) -> Self {
        let z = zero();
        HotValue {
            packets: [z, z],
            bytes: [z, z],
            last_seen_ns: now,
            policy: z,
            policy_gen: z as u32,
            flags: FLAG_FINAL,
            label: 1,
            confidence: z as u8,
            inspected: z as u8,
            utp_conn_id: [z as u16; 2],
        }
    }

    #[inline(always)]
    fn touch(&mut self, frame_len: u64, now: u64) -> bool {
        touch_fields!(self, frame_len, now)
    }
}

/// A zero LLVM cannot fold into a call to `memset` (a byte loop on bpf; see parse.rs).
#[inline(always)]
fn zero() -> u64 {
    let z = 0u64;
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&z) }
}

/// The flow fields of a TCP/IPv4 frame without options: source and destination address
/// (network order, as the probe's key holds them), source and destination port (host
/// order), the protocol.
struct Tuple {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    proto: u8,
}

#[inline(always)]
fn tuple(ctx: &XdpContext) -> Option<Tuple> {
    let start = ctx.data();
    if start + 38 > ctx.data_end() {
        return None;
    }
    let p = start as *const u8;
    // SAFETY: the 38 bytes read are inside the frame (checked above).
    unsafe {
        Some(Tuple {
            proto: *p.add(23),
            src: core::ptr::read_unaligned(p.add(26).cast()),
            dst: core::ptr::read_unaligned(p.add(30).cast()),
            sport: u16::from_be(core::ptr::read_unaligned(p.add(34).cast())),
            dport: u16::from_be(core::ptr::read_unaligned(p.add(36).cast())),
        })
    }
}

/// Looks `key` up in `map` and does the packet's work; inserts the flow on a miss.
#[inline(always)]
fn established<K, V: Entry>(ctx: &XdpContext, map: &LruHashMap<K, V>, key: &K) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match map.get_ptr_mut(key) {
        // SAFETY: a live map value.
        Some(v) if unsafe { &mut *v }.touch(frame_len, now) => xdp_action::XDP_PASS,
        Some(_) => xdp_action::XDP_ABORTED,
        None => match map.insert(key, &V::fresh(now), BPF_NOEXIST as u64) {
            Ok(()) => xdp_action::XDP_TX,
            Err(_) => xdp_action::XDP_DROP,
        },
    }
}

/// The baseline: a bare `XDP_PASS`.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The probe's key of an IPv4 tuple: addresses in the first 4 bytes of 16, as the probe's
/// parse fills them (two 8-byte stores each, no `memset`).
#[inline(always)]
fn key40(t: &Tuple) -> FlowKey {
    let wide = |a: [u8; 4]| (u32::from_ne_bytes(a) as u128 | (zero() as u128)).to_ne_bytes();
    FlowKey {
        sub_addr: wide(t.src),
        remote_addr: wide(t.dst),
        sub_port: t.sport,
        remote_port: t.dport,
        proto: t.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

#[xdp]
pub fn bench_key40(ctx: XdpContext) -> u32 {
    let Some(t) = tuple(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    established(&ctx, &BENCH_KEY40, &key40(&t))
}

#[xdp]
pub fn bench_key40_pcpu(ctx: XdpContext) -> u32 {
    let Some(t) = tuple(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    established(&ctx, &BENCH_KEY40_PCPU, &key40(&t))
}

#[xdp]
pub fn bench_key12(ctx: XdpContext) -> u32 {
    let Some(t) = tuple(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let key = Key12 {
        sub_addr: t.src,
        remote_addr: t.dst,
        sub_port: t.sport,
        remote_port: t.dport,
    };
    established(&ctx, &BENCH_KEY12, &key)
}

#[xdp]
pub fn bench_key16(ctx: XdpContext) -> u32 {
    let Some(t) = tuple(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let key = Key16 {
        sub_addr: t.src,
        remote_addr: t.dst,
        sub_port: t.sport,
        remote_port: t.dport,
        proto: t.proto,
        _pad: [0; 3],
    };
    established(&ctx, &BENCH_KEY16, &key)
}

#[xdp]
pub fn bench_key12_hot(ctx: XdpContext) -> u32 {
    let Some(t) = tuple(&ctx) else {
        return xdp_action::XDP_ABORTED;
    };
    let key = Key12 {
        sub_addr: t.src,
        remote_addr: t.dst,
        sub_port: t.sport,
        remote_port: t.dport,
    };
    established(&ctx, &BENCH_KEY12_HOT, &key)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program (see main.rs).
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
