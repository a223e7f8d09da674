//! IPTV: an MPEG transport stream (ISO/IEC 13818-1) carried in UDP datagrams, bare or behind
//! an RTP header (RFC 3550) with the static payload type 33, MP2T (RFC 3551), packed as
//! RFC 2250 says: a whole number of 188-byte TS packets per datagram.
//!
//! A TS packet's grammar is nearly free to check at fixed offsets: the sync byte `0x47`
//! every 188 bytes, the transport error indicator clear, a PID outside the reserved
//! `0x0004..=0x000F`, an `adaptation_field_control` other than the reserved `00`, and an
//! adaptation field length that fits the packet. The payload length must be exactly the
//! RTP header plus 1 to 7 such packets. One datagram of that shape is still weak evidence
//! (a 188-byte datagram of random bytes passes about once in 1,200; a QUIC short header
//! starts with `0x47` one time in 32), so a flow is labelled only when [`IPTV_RUN`]
//! datagrams in a row parse ([`run_step`]).
//!
//! The reads go through [`Payload`]: user space hands a slice, the kernel reads the frame
//! with `bpf_xdp_load_bytes` at the same offsets (a TS packet's header lies past the
//! kernel's 128-byte copy from the second packet on).

/// Bytes of one TS packet.
pub const TS_PACKET: usize = 188;
/// TS packets one datagram carries at most: 7 × 188 = 1,316 bytes, what fits an Ethernet
/// frame behind IP, UDP and RTP headers (ffmpeg's and most head-ends' packing).
pub const TS_MAX_PACKETS: usize = 7;
/// Datagrams in a row that must parse as TS before the flow is labelled `iptv`.
pub const IPTV_RUN: u8 = 3;

/// The sync byte every TS packet starts with.
const SYNC: u8 = 0x47;
/// RFC 3551's static payload type for MPEG-2 transport streams.
const RTP_MP2T: u8 = 33;
/// The fixed RTP header's size, before CSRCs and an extension.
const RTP_HEADER: usize = 12;
/// The TS packet header bytes checked: 4, and the adaptation field length after them.
const TS_HEAD: usize = 5;

/// A datagram's payload, read at offsets: a slice in user space, the frame in the kernel.
pub trait Payload {
    /// Bytes in the whole payload (not only those at hand).
    fn size(&self) -> usize;
    /// `N` bytes at `off`; `None` if they are not all inside the payload (or unreadable).
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
}

impl Payload for [u8] {
    #[inline(always)]
    fn size(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let s = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
}

/// How a datagram carries its TS packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carriage {
    /// TS packets from the first byte.
    Bare,
    /// Behind an RTP header with payload type 33.
    Rtp,
}

/// If `p` is a datagram of 1 to 7 whole, plausible TS packets, bare or behind an RTP/MP2T
/// header (CSRCs, an extension and padding allowed), how it carries them.
#[inline(always)]
pub fn mpegts<P: Payload + ?Sized>(p: &P) -> Option<Carriage> {
    let [b0, b1] = p.bytes::<2>(0)?;
    let size = p.size();
    let (carriage, start, end) = if b0 == SYNC {
        (Carriage::Bare, 0, size)
    } else {
        let (start, end) = rtp_mp2t(p, b0, b1, size)?;
        (Carriage::Rtp, start, end)
    };
    let body = end.checked_sub(start)?;
    let n = body / TS_PACKET;
    if n == 0 || n > TS_MAX_PACKETS || n * TS_PACKET != body {
        return None;
    }
    let mut i = 0;
    while i < TS_MAX_PACKETS {
        if i == n {
            break;
        }
        if !ts_header(p.bytes::<TS_HEAD>(start + i * TS_PACKET)?) {
            return None;
        }
        i += 1;
    }
    Some(carriage)
}

/// An RTP header of version 2 and payload type 33: where its payload starts and ends (the
/// CSRC list and a header extension skipped, padding cut off).
#[inline(always)]
fn rtp_mp2t<P: Payload + ?Sized>(p: &P, b0: u8, b1: u8, size: usize) -> Option<(usize, usize)> {
    if b0 >> 6 != 2 || b1 & 0x7f != RTP_MP2T {
        return None;
    }
    let mut start = RTP_HEADER + 4 * (b0 & 0x0f) as usize;
    if b0 & 0x10 != 0 {
        // The extension: 16 bits defined by the profile, then its length in 32-bit words
        // (not counting these four bytes).
        let [_, _, hi, lo] = p.bytes::<4>(start)?;
        start += 4 + 4 * u16::from_be_bytes([hi, lo]) as usize;
    }
    let mut end = size;
    if b0 & 0x20 != 0 {
        // Padding: its last byte counts the padding bytes, itself included.
        let [pad] = p.bytes::<1>(size.checked_sub(1)?)?;
        if pad == 0 {
            return None;
        }
        end = size.checked_sub(pad as usize)?;
    }
    (start < end).then_some((start, end))
}

/// A plausible TS packet header (its first [`TS_HEAD`] bytes).
#[inline(always)]
fn ts_header(h: [u8; TS_HEAD]) -> bool {
    let pid = u16::from_be_bytes([h[1] & 0x1f, h[2]]);
    let adaptation = (h[3] >> 4) & 0x3;
    h[0] == SYNC
        // transport_error_indicator: a packet the sender knows is damaged is not sent on.
        && h[1] & 0x80 == 0
        && !(0x0004..=0x000f).contains(&pid)
        && match adaptation {
            // Reserved.
            0 => false,
            // Adaptation field only: it fills the 184 bytes after the header.
            2 => h[4] == 183,
            // Adaptation field, then payload: at most 182 bytes of it.
            3 => h[4] <= 182,
            _ => true,
        }
}

/// One step of a flow's run of TS datagrams: the run after a datagram that did (`Some`) or
/// did not parse, and whether it reached [`IPTV_RUN`]. Both tiers keep the run per flow,
/// both directions together (the kernel in two flag bits).
#[inline(always)]
pub fn run_step(run: u8, parsed: bool) -> (u8, bool) {
    if !parsed {
        return (0, false);
    }
    let run = if run < IPTV_RUN { run + 1 } else { IPTV_RUN };
    (run, run >= IPTV_RUN)
}

#[cfg(test)]
mod tests;
