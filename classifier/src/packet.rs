//! Frame decoding: link layer (Ethernet with 802.1Q/QinQ tags, Linux cooked v1/v2, raw IP,
//! BSD loopback), IPv4/IPv6 (with extension headers), TCP/UDP, and the tunnels cheap to
//! open (GTP-U, VXLAN, GRE, IP-in-IP, PPPoE, MPLS): the innermost TCP/UDP packet is what
//! gets classified, as a gateway behind the tunnel endpoint would see it.
//!
//! Hand-written rather than `pnet_packet`: the decoder must take any byte string without
//! panicking and trim link-layer padding by the IP length fields, and it runs once per packet
//! on the benchmark's hot path; every read here is a checked slice access.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::capture::link;

/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;

/// GTP-U's registered port (3GPP TS 29.281).
const GTP_U_PORT: u16 = 2152;
/// VXLAN's registered port (RFC 7348).
const VXLAN_PORT: u16 = 4789;
/// How many encapsulations deep the decoder follows before giving up on a packet.
const MAX_DEPTH: u8 = 4;

/// A decoded TCP or UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// [`TCP`] or [`UDP`].
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Transport payload, trimmed to the IP length (link padding removed) and to what was
    /// captured.
    pub payload: &'a [u8],
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// TCP sequence number (0 for UDP).
    pub tcp_seq: u32,
}

/// Why a frame yielded no TCP/UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A link type the decoder does not know.
    LinkType,
    /// Not IP (ARP, LLDP, ...).
    NotIp,
    /// IP but neither TCP nor UDP (ICMP, ...), or a non-first fragment.
    NotTransport,
    /// Cut short or inconsistent headers.
    Malformed,
}

/// Decodes a frame of the given link type down to its innermost TCP/UDP packet.
pub fn decode(link_type: u32, data: &[u8]) -> Result<Decoded<'_>, Skip> {
    match link_type {
        link::ETHERNET => ethernet(data, 0),
        link::RAW | link::RAW_BSD | link::RAW_OPENBSD | link::IPV4 | link::IPV6 => ip(data, 0),
        link::LINUX_SLL => {
            let proto = be16(data, 14).ok_or(Skip::Malformed)?;
            ethertype(proto, data.get(16..).ok_or(Skip::Malformed)?, 0)
        }
        link::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(Skip::Malformed)?;
            ethertype(proto, data.get(20..).ok_or(Skip::Malformed)?, 0)
        }
        link::PPP | link::PPP_HDLC => ppp(data, 0),
        link::C_HDLC => {
            let proto = be16(data, 2).ok_or(Skip::Malformed)?;
            ethertype(proto, &data[4..], 0)
        }
        link::NULL | link::LOOP => {
            // The address family, in the capturing host's byte order (NULL) or big-endian
            // (LOOP). IPv4 is 2 everywhere; IPv6 is 24, 28 or 30 depending on the BSD.
            let b = data.get(0..4).ok_or(Skip::Malformed)?;
            let fam = if b[0] == 0 && b[1] == 0 {
                b[3] as u32
            } else {
                b[0] as u32
            };
            match fam {
                2 | 24 | 28 | 30 => ip(&data[4..], 0),
                _ => Err(Skip::NotIp),
            }
        }
        _ => Err(Skip::LinkType),
    }
}

fn be16(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]))
}

fn be32(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *d.get(off)?,
        *d.get(off + 1)?,
        *d.get(off + 2)?,
        *d.get(off + 3)?,
    ]))
}

fn ethernet(d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    let t = be16(d, 12).ok_or(Skip::Malformed)?;
    ethertype(t, &d[14..], depth)
}

fn ethertype(mut t: u16, mut d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    // 802.1Q, 802.1ad (QinQ) and the old 0x9100: 4-byte tags, any number of them.
    while matches!(t, 0x8100 | 0x88a8 | 0x9100) {
        t = be16(d, 2).ok_or(Skip::Malformed)?;
        d = d.get(4..).ok_or(Skip::Malformed)?;
    }
    match t {
        0x0800 | 0x86dd => ip(d, depth),
        // PPPoE session: 6-byte header, then the 2-byte PPP protocol.
        0x8864 => match be16(d, 6).ok_or(Skip::Malformed)? {
            0x0021 | 0x0057 => ip(d.get(8..).ok_or(Skip::Malformed)?, depth),
            _ => Err(Skip::NotIp),
        },
        // MPLS: labels until the bottom-of-stack bit, then IP (told by its version nibble).
        0x8847 | 0x8848 => {
            let mut o = 0;
            loop {
                let e = be32(d, o).ok_or(Skip::Malformed)?;
                o += 4;
                if e & 0x100 != 0 {
                    break;
                }
                if o > 64 {
                    return Err(Skip::Malformed);
                }
            }
            ip(&d[o..], depth)
        }
        _ => Err(Skip::NotIp),
    }
}

fn ip(d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    if depth > MAX_DEPTH {
        return Err(Skip::Malformed);
    }
    match d.first().map(|b| b >> 4) {
        Some(4) => ipv4(d, depth),
        Some(6) => ipv6(d, depth),
        _ => Err(Skip::NotIp),
    }
}

fn ipv4(d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    let ihl = ((d[0] & 0x0f) as usize) * 4;
    if ihl < 20 || d.len() < ihl {
        return Err(Skip::Malformed);
    }
    let total = be16(d, 2).ok_or(Skip::Malformed)? as usize;
    // Total length 0 happens with TSO captures; trust what was captured then.
    let end = if total == 0 {
        d.len()
    } else {
        total.min(d.len())
    };
    if end < ihl {
        return Err(Skip::Malformed);
    }
    let frag = be16(d, 6).ok_or(Skip::Malformed)?;
    if frag & 0x1fff != 0 {
        return Err(Skip::NotTransport);
    }
    let src = IpAddr::V4(Ipv4Addr::new(d[12], d[13], d[14], d[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(d[16], d[17], d[18], d[19]));
    transport(d[9], src, dst, &d[ihl..end], depth)
}

fn ipv6(d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    if d.len() < 40 {
        return Err(Skip::Malformed);
    }
    let plen = be16(d, 4).ok_or(Skip::Malformed)? as usize;
    // Payload length 0 with a hop-by-hop jumbo option; take what was captured.
    let end = if plen == 0 {
        d.len()
    } else {
        (40 + plen).min(d.len())
    };
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[8..24]);
    let src = IpAddr::V6(Ipv6Addr::from(a));
    a.copy_from_slice(&d[24..40]);
    let dst = IpAddr::V6(Ipv6Addr::from(a));
    let mut next = d[6];
    let mut o = 40;
    // Extension headers, a bounded number of them.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 | 135 | 139 | 140 => {
                let len = (*d.get(o + 1).ok_or(Skip::Malformed)? as usize + 1) * 8;
                next = *d.get(o).ok_or(Skip::Malformed)?;
                o += len;
            }
            44 => {
                let off = be16(d, o + 2).ok_or(Skip::Malformed)?;
                if off & 0xfff8 != 0 {
                    return Err(Skip::NotTransport);
                }
                next = *d.get(o).ok_or(Skip::Malformed)?;
                o += 8;
            }
            51 => {
                let len = (*d.get(o + 1).ok_or(Skip::Malformed)? as usize + 2) * 4;
                next = *d.get(o).ok_or(Skip::Malformed)?;
                o += len;
            }
            _ => break,
        }
    }
    if o > end {
        return Err(Skip::Malformed);
    }
    transport(next, src, dst, &d[o..end], depth)
}

fn transport<'a>(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    d: &'a [u8],
    depth: u8,
) -> Result<Decoded<'a>, Skip> {
    match proto {
        TCP => {
            let off = ((*d.get(12).ok_or(Skip::Malformed)? >> 4) as usize) * 4;
            if off < 20 || d.len() < off {
                return Err(Skip::Malformed);
            }
            Ok(Decoded {
                proto,
                src,
                dst,
                sport: be16(d, 0).ok_or(Skip::Malformed)?,
                dport: be16(d, 2).ok_or(Skip::Malformed)?,
                payload: &d[off..],
                tcp_flags: d[13],
                tcp_seq: be32(d, 4).ok_or(Skip::Malformed)?,
            })
        }
        UDP => {
            if d.len() < 8 {
                return Err(Skip::Malformed);
            }
            let sport = be16(d, 0).ok_or(Skip::Malformed)?;
            let dport = be16(d, 2).ok_or(Skip::Malformed)?;
            let ulen = be16(d, 4).ok_or(Skip::Malformed)? as usize;
            let end = if ulen >= 8 {
                ulen.min(d.len())
            } else {
                d.len()
            };
            let payload = &d[8..end];
            if let Some(inner) = udp_tunnel(sport, dport, payload, depth) {
                return Ok(inner);
            }
            Ok(Decoded {
                proto,
                src,
                dst,
                sport,
                dport,
                payload,
                tcp_flags: 0,
                tcp_seq: 0,
            })
        }
        // IP in IP (4) and IPv6 in IP (41).
        4 | 41 => ip(d, depth + 1),
        47 => gre(d, depth + 1),
        _ => Err(Skip::NotTransport),
    }
}

/// GTP-U G-PDUs and VXLAN frames carried over UDP: the inner packet, if it decodes.
fn udp_tunnel(sport: u16, dport: u16, p: &[u8], depth: u8) -> Option<Decoded<'_>> {
    if sport == GTP_U_PORT || dport == GTP_U_PORT {
        // GTPv1 (version bits 001, PT 1), message type 255 (G-PDU).
        let flags = *p.first()?;
        if flags & 0xf0 != 0x30 || *p.get(1)? != 0xff {
            return None;
        }
        let mut o = 8;
        if flags & 0x07 != 0 {
            // Sequence number, N-PDU number, next extension header type.
            let mut next = *p.get(11)?;
            o = 12;
            // Extension headers: length in 4-byte units, last byte is the next type.
            let mut n = 0;
            while next != 0 && n < 8 {
                let len = *p.get(o)? as usize * 4;
                if len == 0 {
                    return None;
                }
                next = *p.get(o + len - 1)?;
                o += len;
                n += 1;
            }
        }
        return ip(p.get(o..)?, depth + 1).ok();
    }
    if dport == VXLAN_PORT && p.len() >= 8 && p[0] & 0x08 != 0 {
        return ethernet(&p[8..], depth + 1).ok();
    }
    None
}

/// A PPP frame: optional HDLC address/control (0xff 0x03), then the protocol (one byte when
/// compressed, RFC 1661 §6.5), IPv4 0x0021 or IPv6 0x0057.
fn ppp(d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    let d = if d.starts_with(&[0xff, 0x03]) {
        &d[2..]
    } else {
        d
    };
    let first = *d.first().ok_or(Skip::Malformed)?;
    let (proto, rest) = if first & 1 == 1 {
        (first as u16, &d[1..])
    } else {
        (be16(d, 0).ok_or(Skip::Malformed)?, &d[2..])
    };
    match proto {
        0x21 | 0x57 => ip(rest, depth),
        _ => Err(Skip::NotIp),
    }
}

fn gre(d: &[u8], depth: u8) -> Result<Decoded<'_>, Skip> {
    let flags = be16(d, 0).ok_or(Skip::Malformed)?;
    let proto = be16(d, 2).ok_or(Skip::Malformed)?;
    if flags & 0x0007 == 1 {
        // PPTP's enhanced GRE (RFC 2637 §4.1): key (payload length, call id) always, sequence
        // number if S, acknowledgment if A (0x0080), then a PPP frame.
        let mut o = 8;
        if flags & 0x1000 != 0 {
            o += 4;
        }
        if flags & 0x0080 != 0 {
            o += 4;
        }
        if proto != 0x880b {
            return Err(Skip::NotTransport);
        }
        return ppp(d.get(o..).ok_or(Skip::Malformed)?, depth);
    }
    if flags & 0x0007 != 0 {
        return Err(Skip::NotTransport);
    }
    let mut o = 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        if flags & bit != 0 {
            o += 4;
        }
    }
    let inner = d.get(o..).ok_or(Skip::Malformed)?;
    match proto {
        0x0800 | 0x86dd => ip(inner, depth),
        0x6558 => ethernet(inner, depth),
        _ => Err(Skip::NotTransport),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4 header + `l4` (checksums left zero).
    pub(crate) fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    pub(crate) fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        t
    }

    pub(crate) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    pub(crate) fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut e = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        e.extend_from_slice(&ethertype.to_be_bytes());
        e.extend_from_slice(l3);
        e
    }

    #[test]
    fn ethernet_ipv4_tcp_with_padding() {
        let mut f = eth(
            0x0800,
            &ipv4(
                6,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                &tcp(1234, 80, 7, 0x18, b"hi"),
            ),
        );
        f.extend_from_slice(&[0; 10]); // Ethernet padding
        let d = decode(link::ETHERNET, &f).expect("decodes");
        assert_eq!(
            (d.proto, d.sport, d.dport, d.payload, d.tcp_seq),
            (6, 1234, 80, &b"hi"[..], 7)
        );
        assert_eq!(d.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn vlan_qinq_and_cooked() {
        let ip = ipv4(17, [1, 1, 1, 1], [2, 2, 2, 2], &udp(53, 5353, b"q"));
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        tagged.extend_from_slice(&ip);
        assert_eq!(
            decode(link::ETHERNET, &tagged).map(|d| d.payload),
            Ok(&b"q"[..])
        );
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_eq!(decode(link::LINUX_SLL, &sll).map(|d| d.dport), Ok(5353));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(decode(link::LINUX_SLL2, &sll2).map(|d| d.sport), Ok(53));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(decode(link::NULL, &null).map(|d| d.sport), Ok(53));
    }

    #[test]
    fn ipv6_extension_headers_and_fragments() {
        let l4 = udp(1000, 2000, b"v6");
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((8 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 64]); // next: hop-by-hop
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&l4);
        assert_eq!(decode(link::RAW, &p).map(|d| d.payload), Ok(&b"v6"[..]));
        // A non-first fragment has no transport header.
        let mut f = p.clone();
        f[6] = 44;
        f[40..48].copy_from_slice(&[17, 0, 0, 8, 0, 0, 0, 1]);
        assert_eq!(decode(link::RAW, &f), Err(Skip::NotTransport));
    }

    #[test]
    fn gtp_u_opens_to_the_inner_packet() {
        let inner = ipv4(
            6,
            [100, 64, 0, 1],
            [198, 51, 100, 1],
            &tcp(40000, 443, 1, 2, b""),
        );
        let mut gtp = vec![0x30, 0xff];
        gtp.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        gtp.extend_from_slice(&[0, 0, 0, 1]);
        gtp.extend_from_slice(&inner);
        let outer = ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], &udp(2152, 2152, &gtp));
        let d = decode(link::RAW, &outer).expect("inner");
        assert_eq!((d.proto, d.dport), (6, 443));
        assert_eq!(d.src, IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1)));
    }

    #[test]
    fn pptp_gre_and_ppp_links() {
        let inner = ipv4(
            17,
            [192, 168, 10, 210],
            [192, 168, 103, 40],
            &udp(5060, 5060, b"SIP/2.0 100 Trying"),
        );
        let mut g = vec![
            0x30, 0x81, 0x88, 0x0b, 0, 0, 0x98, 0x50, 0, 0, 0, 0x6a, 0, 0, 0, 0x8c, 0xff, 0x03,
            0x00, 0x21,
        ];
        g.extend_from_slice(&inner);
        let outer = ipv4(47, [109, 105, 228, 253], [10, 177, 98, 84], &g);
        assert_eq!(decode(link::RAW, &outer).map(|d| d.dport), Ok(5060));
        let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
        ppp.extend_from_slice(&inner);
        assert_eq!(decode(link::PPP, &ppp).map(|d| d.sport), Ok(5060));
        let mut hdlc = vec![0x0f, 0x00, 0x08, 0x00];
        hdlc.extend_from_slice(&inner);
        assert_eq!(decode(link::C_HDLC, &hdlc).map(|d| d.sport), Ok(5060));
    }

    #[test]
    fn truncations_never_panic() {
        let f = eth(
            0x0800,
            &ipv4(6, [1, 2, 3, 4], [5, 6, 7, 8], &tcp(1, 2, 3, 4, b"payload")),
        );
        for n in 0..f.len() {
            let _ = decode(link::ETHERNET, &f[..n]);
            let _ = decode(link::LINUX_SLL, &f[..n]);
            let _ = decode(link::PPP, &f[..n]);
            let _ = decode(link::C_HDLC, &f[..n]);
            let _ = decode(link::RAW, &f[14..14 + n.min(f.len() - 14)]);
        }
        assert_eq!(decode(999, &f), Err(Skip::LinkType));
    }
}
