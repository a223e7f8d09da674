//! The access networks' encapsulations around frames built by [`crate::packets`]: a PPPoE
//! session (RFC 2516) or an MPLS label stack (RFC 3032) between the Ethernet header (and its
//! VLAN tags) and the IP packet, as a broadband gateway sees a subscriber's traffic.
//!
//! ```
//! use peerwarden_common::Direction;
//! use peerwarden_tests::{encap::{Encap, encapsulate}, packets::{Conversation, Family, Vlan}};
//!
//! let c = Conversation::new(Family::V4, 40_000, 6881);
//! let plain = c.udp(Direction::Up, b"hello");
//! let framed = encapsulate(&plain, Vlan::Untagged, Encap::Pppoe);
//! assert_eq!(framed.len(), plain.len() + 8);
//! assert_eq!(framed[12..14], [0x88, 0x64]);
//! ```

use crate::packets::Vlan;

/// PPPoE session stage.
pub const ETH_P_PPP_SES: u16 = 0x8864;
/// PPPoE discovery stage.
pub const ETH_P_PPP_DISC: u16 = 0x8863;
/// MPLS unicast.
pub const ETH_P_MPLS_UC: u16 = 0x8847;
/// MPLS multicast.
pub const ETH_P_MPLS_MC: u16 = 0x8848;
/// PPP protocol numbers.
pub const PPP_IP: u16 = 0x0021;
/// PPP's IPv6.
pub const PPP_IPV6: u16 = 0x0057;
/// PPP's Link Control Protocol.
pub const PPP_LCP: u16 = 0xc021;
/// PPP's IP Control Protocol.
pub const PPP_IPCP: u16 = 0x8021;
/// Length of the PPPoE header and the PPP protocol field.
pub const PPPOE_HLEN: usize = 8;
/// The session id the builders write.
pub const SESSION_ID: u16 = 0x1a2b;
/// How many MPLS labels the kernel probe walks before giving up (`ebpf/src/parse.rs`).
pub const MPLS_MAX_LABELS: usize = 8;

/// What goes between the link header and the IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Nothing: the frame as built.
    Plain,
    /// A PPPoE session frame; the PPP protocol follows the IP version.
    Pppoe,
    /// An MPLS stack of this many labels (unicast), bottom of stack on the last.
    Mpls(usize),
}

impl Encap {
    /// One of each kind the probe parses, for tests that run them all.
    pub const ALL: [Encap; 4] = [Encap::Plain, Encap::Pppoe, Encap::Mpls(1), Encap::Mpls(3)];

    /// Bytes the encapsulation adds to a frame.
    pub const fn overhead(self) -> usize {
        match self {
            Encap::Plain => 0,
            Encap::Pppoe => PPPOE_HLEN,
            Encap::Mpls(n) => 4 * n,
        }
    }
}

/// `frame` (built with `vlan` tags around an IPv4 or IPv6 packet) with the IP packet moved
/// inside `encap`: the same addresses, tags and packet bytes.
pub fn encapsulate(frame: &[u8], vlan: Vlan, encap: Encap) -> Vec<u8> {
    let l3 = vlan.l3_offset();
    let ip = &frame[l3..];
    match encap {
        Encap::Plain => frame.to_vec(),
        Encap::Pppoe => {
            let proto = if ip[0] >> 4 == 6 { PPP_IPV6 } else { PPP_IP };
            let mut out = with_type(frame, l3, ETH_P_PPP_SES);
            out.extend_from_slice(&pppoe_header(proto, ip.len()));
            out.extend_from_slice(ip);
            out
        }
        Encap::Mpls(n) => {
            let mut out = with_type(frame, l3, ETH_P_MPLS_UC);
            for i in 0..n {
                out.extend_from_slice(&mpls_label(16 + i as u32, i + 1 == n));
            }
            out.extend_from_slice(ip);
            out
        }
    }
}

/// The link header of `frame` (its first `l3` bytes) with the innermost type set to `ty`.
fn with_type(frame: &[u8], l3: usize, ty: u16) -> Vec<u8> {
    let mut out = frame[..l3].to_vec();
    out[l3 - 2..l3].copy_from_slice(&ty.to_be_bytes());
    out
}

/// A PPPoE session header (version 1, type 1, code 0) and PPP protocol `proto`, for a PPP
/// payload of `payload_len` bytes after the protocol field.
pub fn pppoe_header(proto: u16, payload_len: usize) -> [u8; PPPOE_HLEN] {
    let len = u16::try_from(payload_len + 2).expect("PPPoE payload over 64 KiB");
    let [s0, s1] = SESSION_ID.to_be_bytes();
    let [l0, l1] = len.to_be_bytes();
    let [p0, p1] = proto.to_be_bytes();
    [0x11, 0x00, s0, s1, l0, l1, p0, p1]
}

/// One MPLS label stack entry: `label`, traffic class 0, TTL 64.
pub fn mpls_label(label: u32, bottom: bool) -> [u8; 4] {
    ((label << 12) | (u32::from(bottom) << 8) | 64).to_be_bytes()
}

/// Where the PPPoE header starts in a frame with `vlan` tags (the IP packet is
/// [`PPPOE_HLEN`] later).
pub const fn pppoe_offset(vlan: Vlan) -> usize {
    vlan.l3_offset()
}

/// A PPPoE session frame carrying PPP protocol `proto` with `payload` (LCP, IPCP, ...).
pub fn pppoe_frame(vlan: Vlan, proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut l2 = crate::packets::ethernet(vlan, pnet_packet::ethernet::EtherType(0), &[]);
    let l3 = vlan.l3_offset();
    l2[l3 - 2..l3].copy_from_slice(&ETH_P_PPP_SES.to_be_bytes());
    l2.extend_from_slice(&pppoe_header(proto, payload.len()));
    l2.extend_from_slice(payload);
    l2
}

/// A PPPoE Active Discovery Initiation (PADI), broadcast, with a Service-Name tag.
pub fn pppoe_padi(vlan: Vlan) -> Vec<u8> {
    let mut l2 = crate::packets::ethernet(vlan, pnet_packet::ethernet::EtherType(0), &[]);
    l2[..6].fill(0xff);
    let l3 = vlan.l3_offset();
    l2[l3 - 2..l3].copy_from_slice(&ETH_P_PPP_DISC.to_be_bytes());
    // Version/type, code PADI, session 0, length 4: one empty Service-Name tag.
    l2.extend_from_slice(&[0x11, 0x09, 0, 0, 0, 4, 0x01, 0x01, 0, 0]);
    l2
}

/// An LCP Configure-Request (MRU 1492, a magic number), as a PPP session opens with.
pub fn lcp_configure_request() -> Vec<u8> {
    vec![
        0x01, 0x01, 0x00, 0x0e, // Configure-Request, id 1, length 14
        0x01, 0x04, 0x05, 0xd4, // MRU 1492
        0x05, 0x06, 0x12, 0x34, 0x56, 0x78, // magic number
    ]
}

/// Writes Ethernet `frames` as a classic pcap (little-endian, microseconds), one millisecond
/// apart, for the library's reader.
pub fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    for field in [0xa1b2_c3d4_u32, 0x0004_0002, 0, 0, 65_535, 1] {
        // Magic, version 2.4 (minor, major as two little-endian halves), zone, sigfigs,
        // snap length, link type Ethernet.
        out.extend_from_slice(&field.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).expect("frame length");
        let ms = u32::try_from(i).expect("frame count");
        for field in [1_795_000_000 + ms / 1000, (ms % 1000) * 1000, len, len] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
