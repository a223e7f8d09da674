//! The flow map's key and value.
//!
//! Both directions of a flow map to one entry: the key is written from the subscriber's
//! side (`sub_*`) and the internet side (`remote_*`), and the interface a packet arrived
//! on says which is which (the downlink carries `Up` packets from subscribers, the uplink
//! carries `Down` packets towards them).

/// A packet's direction, relative to the subscriber.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the subscriber towards the internet (arrives on the downlink).
    Up = 0,
    /// From the internet towards the subscriber (arrives on the uplink).
    Down = 1,
}

impl Direction {
    /// Index into `[up, down]` arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Address family values stored in [`FlowKey::family`].
pub const FAMILY_V4: u8 = 4;
/// IPv6.
pub const FAMILY_V6: u8 = 6;

/// IP protocol numbers the probe tracks flows for.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// ICMP: a flow without ports (addresses and protocol), like the protocols below.
pub const PROTO_ICMP: u8 = 1;
/// GRE.
pub const PROTO_GRE: u8 = 47;
/// IPsec ESP.
pub const PROTO_ESP: u8 = 50;
/// IPsec AH (in IPv6 an extension header, walked as one).
pub const PROTO_AH: u8 = 51;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// Key of the LRU flow map. IPv4 addresses sit in the first 4 bytes, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Subscriber-side address.
    pub sub_addr: [u8; 16],
    /// Internet-side address.
    pub remote_addr: [u8; 16],
    /// Subscriber-side port, host order.
    pub sub_port: u16,
    /// Internet-side port, host order.
    pub remote_port: u16,
    /// IP protocol ([`PROTO_TCP`] or [`PROTO_UDP`]).
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding, always zero (part of the hashed key).
    pub _pad: [u8; 2],
}

impl FlowKey {
    /// The subscriber-side address as an [`IpAddr`](core::net::IpAddr).
    pub fn sub_ip(&self) -> core::net::IpAddr {
        ip(self.family, &self.sub_addr)
    }

    /// The internet-side address as an [`IpAddr`](core::net::IpAddr).
    pub fn remote_ip(&self) -> core::net::IpAddr {
        ip(self.family, &self.remote_addr)
    }
}

/// An address as the key stores it: IPv4 in the first four bytes when `family` is
/// [`FAMILY_V4`], else all sixteen.
fn ip(family: u8, raw: &[u8; 16]) -> core::net::IpAddr {
    if family == FAMILY_V4 {
        core::net::IpAddr::from([raw[0], raw[1], raw[2], raw[3]])
    } else {
        core::net::IpAddr::from(*raw)
    }
}

/// `FlowValue::flags`: a uTP-shaped header was seen going up; `utp_conn_id[0]` holds its id.
pub const FLAG_UTP_UP: u32 = 1 << 0;
/// A uTP-shaped header was seen going down; `utp_conn_id[1]` holds its id.
pub const FLAG_UTP_DOWN: u32 = 1 << 1;
/// Inspection ended: the label is final.
pub const FLAG_FINAL: u32 = 1 << 2;
/// The label was written by user space (the deep classifier), not the kernel.
pub const FLAG_USER_LABEL: u32 = 1 << 3;
/// Samples of this flow went to the deep classifier: look for its verdict.
pub const FLAG_DEEP_PENDING: u32 = 1 << 4;
/// Every packet of the flow so far was counted under the subscriber in `sub_slot` (set on
/// the flow's first packet, kept while policy reloads find the same subscriber): its label
/// counters can take the move of the flow's earlier packets when it is labelled.
pub const FLAG_SUB_COUNTED: u32 = 1 << 5;
/// The flow's final label was offered to `LABELLED` (kept, or refused for its subscriber's
/// budget): it is offered once, on the first packet after it is final and seen both ways.
pub const FLAG_OFFERED: u32 = 1 << 6;
/// Two bits: how many of the flow's latest payload datagrams in a row parsed as MPEG-TS
/// (`fingerprint::iptv::run_step`), `(flags >> FLAG_TS_RUN_SHIFT) & 3`.
pub const FLAG_TS_RUN_SHIFT: u32 = 7;
/// The bits of that run.
pub const FLAG_TS_RUN: u32 = 3 << FLAG_TS_RUN_SHIFT;
/// Three bits: swarm-only samples the flow may still send
/// (`(flags >> FLAG_SWARM_LEFT_SHIFT) & 7`), set when the kernel decides it as BitTorrent
/// with the swarm view on (`deep::SWARM_SAMPLES` less the deciding packet's), zero
/// otherwise.
pub const FLAG_SWARM_LEFT_SHIFT: u32 = 9;
/// The bits of that count.
pub const FLAG_SWARM_LEFT: u32 = 7 << FLAG_SWARM_LEFT_SHIFT;

/// How many payload packets the kernel inspects per flow before the label is final.
pub const INSPECT_BUDGET: u8 = 32;

/// Value of the LRU flow map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// Packets `[up, down]`.
    pub packets: [u64; 2],
    /// Bytes on the wire (whole frames) `[up, down]`.
    pub bytes: [u64; 2],
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC at the last tick) of the first packet.
    pub first_seen_ns: u64,
    /// `bpf_ktime_get_coarse_ns()` of the last packet.
    pub last_seen_ns: u64,
    /// [`crate::Label`] id.
    pub label: u16,
    /// [`crate::Confidence`] id.
    pub confidence: u8,
    /// Payload packets inspected so far.
    pub inspected: u8,
    /// uTP connection ids seen `[up, down]` (valid when the matching flag is set).
    pub utp_conn_id: [u16; 2],
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Policy generation `policy` was decided in (0: not yet).
    pub policy_gen: u32,
    /// The flow's policy decision, [`crate::policy::Decision`] packed in one word: its
    /// subscriber, plan and rule slot, for the label and generation it was made in.
    pub policy: u64,
    /// Payload samples sent to the deep classifier.
    pub samples: u8,
    /// Explicit padding.
    pub _pad: [u8; 7],
}

/// Value of the `LABELLED` map: the label a flow was given, kept apart from the flow table
/// (written once per flow, when it is labelled) so that a flow the table evicted, when it
/// sends again, starts its new entry labelled rather than unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LabelMemory {
    /// [`crate::Label`] id (never `Unknown`).
    pub label: u16,
    /// [`crate::Confidence`] id.
    pub confidence: u8,
    /// 1: the label came from the deep classifier ([`FLAG_USER_LABEL`]).
    pub user: u8,
    /// Explicit padding.
    pub _pad: [u8; 4],
}

/// The `LABELLED` map holds this fraction of the flow table's entries (at least one).
pub const LABELLED_PER_FLOWS: u32 = 4;

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowValue>() == 80);
const _: () = assert!(core::mem::size_of::<LabelMemory>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no implicit padding (sizes asserted above), every bit pattern valid.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LabelMemory {}
}
