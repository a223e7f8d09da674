//! The kernel ↔ deep-classifier channel: payload samples of undecided flows go up through a
//! ring buffer; verdicts come back through a map the kernel applies on the flow's next packet.

use crate::flow::FlowKey;

/// Payload bytes a sample carries at most: a whole 1500-byte frame's payload (rounded up
/// to a multiple of 8 so the struct has no tail padding), so a TLS
/// ClientHello's server name or a QUIC Initial fits in one sample.
pub const SAMPLE_BYTES: usize = 1504;

/// Payload packets per flow sent to the deep classifier (its own packet budget).
pub const DEEP_BUDGET: u8 = 32;

/// [`Sample::flags`]: a packet of a flow the kernel's fingerprints decided as BitTorrent,
/// sent only for the swarm view (issue 15): the deep classifier must not see it, nor answer
/// it with a verdict (the flow's label is final).
pub const SAMPLE_SWARM_ONLY: u8 = 1 << 0;

/// Swarm-only samples per flow at most: the packet that decided it and the next payload
/// packets either way (a peer-wire handshake's answer; a UDP tracker's connect, its
/// answer, the announce and its answer; a uTP SYN, its state, the handshakes each way).
pub const SWARM_SAMPLES: u8 = 4;

/// Value of the kernel's one-entry `SWARM_VIEW` array: non-zero when the swarm view is on
/// (`swarms.enabled`), written by the daemon at start. Zero (the default): no swarm-only
/// samples, and the kernel's path is today's but for one read of it when a flow is
/// decided as BitTorrent.
pub type SwarmView = u32;

/// Bytes of the ring buffer (a power of two, a multiple of the page size).
pub const RING_BYTES: u32 = 8 << 20;

/// One payload sample.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sample {
    /// The flow.
    pub key: FlowKey,
    /// `bpf_ktime_get_ns()` of the packet.
    pub ts_ns: u64,
    /// TCP sequence number (0 for UDP).
    pub tcp_seq: u32,
    /// Payload length of the packet (may exceed `captured`).
    pub payload_len: u16,
    /// Bytes of `data` filled.
    pub captured: u16,
    /// [`crate::Direction`] as u8.
    pub dir: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// `SAMPLE_*` bits ([`SAMPLE_SWARM_ONLY`]).
    pub flags: u8,
    /// Explicit padding.
    pub _pad: [u8; 5],
    /// The payload's first `captured` bytes.
    pub data: [u8; SAMPLE_BYTES],
}

/// A verdict written by user space for the kernel to apply to a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// [`crate::Label`] id.
    pub label: u16,
    /// [`crate::Confidence`] id.
    pub confidence: u8,
    /// Non-zero: inspection is over for this flow (the label is final).
    pub final_: u8,
}

const _: () =
    assert!(core::mem::size_of::<Sample>() == 40 + 8 + 4 + 2 + 2 + 1 + 1 + 6 + SAMPLE_BYTES);
const _: () = assert!(core::mem::size_of::<Verdict>() == 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), explicit padding, every bit pattern valid.
    unsafe impl aya::Pod for super::Verdict {}
}
