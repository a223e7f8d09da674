//! Frames built with `pnet_packet`: Ethernet with no, one (802.1Q) or two (QinQ) VLAN tags,
//! IPv4 or IPv6, TCP or UDP, with lengths and checksums filled in; ARP and ICMP for the
//! frames the probe does not track; and the offsets a test needs to corrupt one header field
//! on purpose.
//!
//! [`Conversation`] is the usual entry point: a subscriber and a remote host, framed in one
//! encapsulation, that builds either direction's packets and the flow key the probe should
//! file them under.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use peerwarden_common::{
    Direction, FlowKey,
    flow::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP},
};
use pnet_base::MacAddr;
use pnet_packet::{
    MutablePacket as _,
    arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket},
    ethernet::{EtherType, EtherTypes, MutableEthernetPacket},
    icmp::{self, IcmpTypes, echo_request::MutableEchoRequestPacket},
    icmpv6::{self, Icmpv6Types, MutableIcmpv6Packet},
    ip::{IpNextHeaderProtocol, IpNextHeaderProtocols},
    ipv4::{self, Ipv4Flags, MutableIpv4Packet},
    ipv6::MutableIpv6Packet,
    tcp::{self, MutableTcpPacket},
    udp::{self, MutableUdpPacket},
    vlan::MutableVlanPacket,
};

pub use pnet_packet::tcp::TcpFlags;

/// Length of an untagged Ethernet header.
pub const ETH_HLEN: usize = 14;
/// The shortest Ethernet frame on the wire without its FCS: shorter ones are padded.
pub const ETH_MIN_FRAME: usize = 60;
/// Length of the IPv4 header the builders write (no options).
pub const IPV4_HLEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// Length of the TCP header the builders write (no options).
pub const TCP_HLEN: usize = 20;
/// Length of the UDP header.
pub const UDP_HLEN: usize = 8;

/// The subscriber's IPv4 address (DESIGN.md's lab plan: subscribers in 100.64.0.0/10).
pub const SUB_V4: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 10);
/// An internet host (198.51.100.0/24, documentation space).
pub const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The subscriber's IPv6 address.
pub const SUB_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// An internet host over IPv6.
pub const REMOTE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7);

const SUB_MAC: MacAddr = MacAddr(0x02, 0x00, 0x00, 0x00, 0x00, 0x0a);
const GATEWAY_MAC: MacAddr = MacAddr(0x02, 0x00, 0x00, 0x00, 0x00, 0x01);

/// IPv6 extension header numbers used by [`ipv6_with_hop_by_hop`] and [`ipv6_fragment`].
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_FRAGMENT: u8 = 44;

/// How a frame is tagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vlan {
    /// Plain Ethernet.
    Untagged,
    /// One 802.1Q tag (TPID 0x8100).
    Dot1q(u16),
    /// QinQ: an 802.1ad service tag (TPID 0x88a8) around an 802.1Q customer tag.
    QinQ {
        /// Service (outer) VLAN id.
        outer: u16,
        /// Customer (inner) VLAN id.
        inner: u16,
    },
    /// Two 802.1Q tags (TPID 0x8100 twice), as switches that predate 802.1ad stack them.
    DoubleDot1q {
        /// Outer VLAN id.
        outer: u16,
        /// Inner VLAN id.
        inner: u16,
    },
}

impl Vlan {
    /// One of each kind, for tests that run every encapsulation.
    pub const ALL: [Vlan; 3] = [
        Vlan::Untagged,
        Vlan::Dot1q(100),
        Vlan::QinQ {
            outer: 200,
            inner: 300,
        },
    ];

    /// Where the IP header starts in a frame with these tags.
    pub const fn l3_offset(self) -> usize {
        match self {
            Vlan::Untagged => ETH_HLEN,
            Vlan::Dot1q(_) => ETH_HLEN + 4,
            Vlan::QinQ { .. } | Vlan::DoubleDot1q { .. } => ETH_HLEN + 8,
        }
    }

    /// `(TPID, VLAN id)` of each tag, outermost first.
    fn tags(self) -> Vec<(EtherType, u16)> {
        match self {
            Vlan::Untagged => vec![],
            Vlan::Dot1q(id) => vec![(EtherTypes::Vlan, id)],
            Vlan::QinQ { outer, inner } => {
                vec![(EtherTypes::PBridge, outer), (EtherTypes::Vlan, inner)]
            }
            Vlan::DoubleDot1q { outer, inner } => {
                vec![(EtherTypes::Vlan, outer), (EtherTypes::Vlan, inner)]
            }
        }
    }
}

/// An Ethernet frame around `l3`, tagged as `vlan` says.
pub fn ethernet(vlan: Vlan, ethertype: EtherType, l3: &[u8]) -> Vec<u8> {
    let tags = vlan.tags();
    let mut buf = vec![0u8; vlan.l3_offset() + l3.len()];
    {
        let mut eth = MutableEthernetPacket::new(&mut buf).expect("room for an Ethernet header");
        eth.set_destination(GATEWAY_MAC);
        eth.set_source(SUB_MAC);
        eth.set_ethertype(tags.first().map_or(ethertype, |t| t.0));
    }
    let mut off = ETH_HLEN;
    for (i, &(_, id)) in tags.iter().enumerate() {
        // Each tag carries the type of what follows it: the next tag's TPID or the payload's.
        let next = tags.get(i + 1).map_or(ethertype, |t| t.0);
        let mut tag = MutableVlanPacket::new(&mut buf[off..]).expect("room for a VLAN tag");
        tag.set_vlan_identifier(id);
        tag.set_ethertype(next);
        off += 4;
    }
    buf[off..].copy_from_slice(l3);
    buf
}

/// An IPv4 packet (no options, DF set) around `l4`, header checksum filled in.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpNextHeaderProtocol, l4: &[u8]) -> Vec<u8> {
    ipv4_with_options(src, dst, proto, &[], l4)
}

/// An IPv4 packet whose header carries `options` (a multiple of 4 bytes, at most 40).
pub fn ipv4_with_options(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpNextHeaderProtocol,
    options: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "IPv4 options: {options:?}"
    );
    let hlen = IPV4_HLEN + options.len();
    let mut buf = vec![0u8; hlen + l4.len()];
    buf[IPV4_HLEN..hlen].copy_from_slice(options);
    let mut ip = MutableIpv4Packet::new(&mut buf).expect("room for an IPv4 header");
    ip.set_version(4);
    ip.set_header_length((hlen / 4) as u8);
    ip.set_total_length(u16::try_from(hlen + l4.len()).expect("IPv4 packet over 64 KiB"));
    ip.set_identification(0x4242);
    ip.set_flags(Ipv4Flags::DontFragment);
    ip.set_ttl(64);
    ip.set_next_level_protocol(proto);
    ip.set_source(src);
    ip.set_destination(dst);
    ip.set_payload(l4);
    let sum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(sum);
    buf
}

/// IPv4 Router Alert (RFC 2113), the option routers see most: type 148, length 4, value 0.
pub const IPV4_ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

/// An IPv6 packet around `l4`, `next` naming what `l4` starts with.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: IpNextHeaderProtocol, l4: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; IPV6_HLEN + l4.len()];
    let mut ip = MutableIpv6Packet::new(&mut buf).expect("room for an IPv6 header");
    ip.set_version(6);
    ip.set_payload_length(u16::try_from(l4.len()).expect("IPv6 payload over 64 KiB"));
    ip.set_next_header(next);
    ip.set_hop_limit(64);
    ip.set_source(src);
    ip.set_destination(dst);
    ip.set_payload(l4);
    buf
}

/// A TCP segment from `src` to `dst` (no options), checksum over the pseudo-header.
pub fn tcp_segment(src: SocketAddr, dst: SocketAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_segment_with_options(src, dst, flags, &[], payload)
}

/// TCP timestamps (RFC 7323) after two NOPs, as Linux sends on every segment: 12 bytes.
pub const TCP_TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0x12, 0x34, 0x56, 0, 0x65, 0x43, 0x21];

/// A TCP segment whose header carries `options` (a multiple of 4 bytes, at most 40).
pub fn tcp_segment_with_options(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "TCP options: {options:?}"
    );
    let hlen = TCP_HLEN + options.len();
    let mut buf = vec![0u8; hlen + payload.len()];
    buf[TCP_HLEN..hlen].copy_from_slice(options);
    let mut t = MutableTcpPacket::new(&mut buf).expect("room for a TCP header");
    t.set_source(src.port());
    t.set_destination(dst.port());
    t.set_sequence(0x1000_0000);
    t.set_acknowledgement(if flags & TcpFlags::ACK != 0 {
        0x2000_0000
    } else {
        0
    });
    t.set_data_offset((hlen / 4) as u8);
    t.set_flags(flags);
    t.set_window(64240);
    t.set_payload(payload);
    let sum = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&t.to_immutable(), &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&t.to_immutable(), &s, &d),
        _ => panic!("mixed address families: {src} -> {dst}"),
    };
    t.set_checksum(sum);
    buf
}

/// A UDP datagram from `src` to `dst`, checksum over the pseudo-header.
pub fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; UDP_HLEN + payload.len()];
    let mut u = MutableUdpPacket::new(&mut buf).expect("room for a UDP header");
    u.set_source(src.port());
    u.set_destination(dst.port());
    u.set_length(u16::try_from(UDP_HLEN + payload.len()).expect("UDP datagram over 64 KiB"));
    u.set_payload(payload);
    let sum = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => udp::ipv4_checksum(&u.to_immutable(), &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => udp::ipv6_checksum(&u.to_immutable(), &s, &d),
        _ => panic!("mixed address families: {src} -> {dst}"),
    };
    u.set_checksum(sum);
    buf
}

/// A whole frame: `l4` in IPv4 or IPv6 (after the addresses' family) in Ethernet.
pub fn ip_frame(
    vlan: Vlan,
    src: IpAddr,
    dst: IpAddr,
    proto: IpNextHeaderProtocol,
    l4: &[u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ethernet(vlan, EtherTypes::Ipv4, &ipv4(s, d, proto, l4)),
        (IpAddr::V6(s), IpAddr::V6(d)) => ethernet(vlan, EtherTypes::Ipv6, &ipv6(s, d, proto, l4)),
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// A whole TCP frame.
pub fn tcp_frame(
    vlan: Vlan,
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = tcp_segment(src, dst, flags, payload);
    ip_frame(vlan, src.ip(), dst.ip(), IpNextHeaderProtocols::Tcp, &seg)
}

/// A whole UDP frame.
pub fn udp_frame(vlan: Vlan, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let dgram = udp_datagram(src, dst, payload);
    ip_frame(vlan, src.ip(), dst.ip(), IpNextHeaderProtocols::Udp, &dgram)
}

/// An ARP who-has request.
pub fn arp_request(vlan: Vlan, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; 28];
    let mut arp = MutableArpPacket::new(&mut buf).expect("room for ARP");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(SUB_MAC);
    arp.set_sender_proto_addr(sender);
    arp.set_target_hw_addr(MacAddr::zero());
    arp.set_target_proto_addr(target);
    ethernet(vlan, EtherTypes::Arp, &buf)
}

/// An ICMP echo request over IPv4.
pub fn icmp_echo(vlan: Vlan, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; 8 + 32];
    {
        let mut e = MutableEchoRequestPacket::new(&mut buf).expect("room for ICMP");
        e.set_icmp_type(IcmpTypes::EchoRequest);
        e.set_identifier(7);
        e.set_sequence_number(1);
        e.payload_mut().fill(0xab);
    }
    let sum = icmp::checksum(&icmp::IcmpPacket::new(&buf).expect("an ICMP packet"));
    buf[2..4].copy_from_slice(&sum.to_be_bytes());
    ip_frame(
        vlan,
        src.into(),
        dst.into(),
        IpNextHeaderProtocols::Icmp,
        &buf,
    )
}

/// An ICMPv6 echo request.
pub fn icmpv6_echo(vlan: Vlan, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut buf = vec![0u8; 8 + 32];
    {
        let mut e = MutableIcmpv6Packet::new(&mut buf).expect("room for ICMPv6");
        e.set_icmpv6_type(Icmpv6Types::EchoRequest);
        e.payload_mut()[4..].fill(0xab);
    }
    let sum = icmpv6::checksum(
        &icmpv6::Icmpv6Packet::new(&buf).expect("an ICMPv6 packet"),
        &src,
        &dst,
    );
    buf[2..4].copy_from_slice(&sum.to_be_bytes());
    ip_frame(
        vlan,
        src.into(),
        dst.into(),
        IpNextHeaderProtocols::Icmpv6,
        &buf,
    )
}

/// An IPv4 fragment of `l4` data: `offset` in 8-byte units, `more` for the MF flag.
pub fn ipv4_fragment(
    vlan: Vlan,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpNextHeaderProtocol,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    ipv4_fragment_with_id(vlan, src, dst, proto, 0x4242, offset, more, data)
}

/// [`ipv4_fragment`] with the datagram's identification `id`.
#[expect(
    clippy::too_many_arguments,
    reason = "one per header field a test sets"
)]
pub fn ipv4_fragment_with_id(
    vlan: Vlan,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpNextHeaderProtocol,
    id: u16,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut ip = ipv4(src, dst, proto, data);
    {
        let mut h = MutableIpv4Packet::new(&mut ip).expect("an IPv4 header");
        h.set_identification(id);
        h.set_flags(if more { Ipv4Flags::MoreFragments } else { 0 });
        h.set_fragment_offset(offset);
        h.set_checksum(0);
        let sum = ipv4::checksum(&h.to_immutable());
        h.set_checksum(sum);
    }
    ethernet(vlan, EtherTypes::Ipv4, &ip)
}

/// An IPv6 packet whose upper layer follows a fragment header (`offset` in 8-byte units).
pub fn ipv6_fragment(
    vlan: Vlan,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: IpNextHeaderProtocol,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    ipv6_fragment_with_id(vlan, src, dst, proto, 0x0bad_cafe, offset, more, data)
}

/// [`ipv6_fragment`] with the datagram's identification `id` (32 bits in IPv6).
#[expect(
    clippy::too_many_arguments,
    reason = "one per header field a test sets"
)]
pub fn ipv6_fragment_with_id(
    vlan: Vlan,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: IpNextHeaderProtocol,
    id: u32,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut ext = vec![proto.0, 0];
    ext.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    ext.extend_from_slice(&id.to_be_bytes());
    ext.extend_from_slice(data);
    ethernet(
        vlan,
        EtherTypes::Ipv6,
        &ipv6(src, dst, IpNextHeaderProtocol(IPV6_FRAGMENT), &ext),
    )
}

/// An IPv6 TCP frame with a hop-by-hop options header (one PadN option) before the TCP header.
pub fn ipv6_with_hop_by_hop(
    vlan: Vlan,
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("hop-by-hop options are IPv6: {src} -> {dst}");
    };
    // Next header TCP, length 0 (8 bytes), PadN of 4 filling the rest.
    let mut ext = vec![IpNextHeaderProtocols::Tcp.0, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&tcp_segment(src, dst, flags, payload));
    ethernet(
        vlan,
        EtherTypes::Ipv6,
        &ipv6(s, d, IpNextHeaderProtocol(IPV6_HOP_BY_HOP), &ext),
    )
}

/// An ESP packet (RFC 4303) as the IP payload: SPI, sequence number, then `len` bytes
/// standing for the encrypted payload and trailer.
pub fn esp_payload(spi: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut p = spi.to_be_bytes().to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)));
    p
}

/// A GRE packet (RFC 2784, no options) carrying `inner`, an IPv4 packet.
pub fn gre_payload(inner: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 0, 0x08, 0x00];
    p.extend_from_slice(inner);
    p
}

/// An SCTP packet (RFC 9260) from port `sport` to `dport`: the common header (checksum
/// left 0) and one INIT chunk.
pub fn sctp_init(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = sport.to_be_bytes().to_vec();
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    // INIT: type 1, flags 0, length 20, initiate tag, a_rwnd, streams out/in, initial TSN.
    p.extend_from_slice(&[
        1, 0, 0, 20, 0, 0, 0, 7, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1,
    ]);
    p
}

/// `frame` padded with zeros to the 60-byte minimum, as a NIC delivers a short frame.
pub fn pad_to_minimum(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f.len() < ETH_MIN_FRAME {
        f.resize(ETH_MIN_FRAME, 0);
    }
    f
}

/// Recomputes the IPv4 header checksum of the header at `l3` in `frame` after a test
/// changed a field, so that the field is the only thing wrong with the packet. The header
/// length used is 20 bytes when the IHL field is too small to be a header at all.
pub fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let hlen = ihl.max(IPV4_HLEN).min(frame.len() - l3);
    frame[l3 + 10..l3 + 12].fill(0);
    let sum = pnet_packet::util::checksum(&frame[l3..l3 + hlen], 5);
    frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
}

/// Address family of a [`Conversation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families, for tests that run each.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
}

/// The other direction.
pub const fn reverse(dir: Direction) -> Direction {
    match dir {
        Direction::Up => Direction::Down,
        Direction::Down => Direction::Up,
    }
}

/// A subscriber and an internet host talking in one encapsulation. `Up` packets go from
/// the subscriber to the remote host (they arrive on the downlink), `Down` packets the other
/// way (they arrive on the uplink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The subscriber's end.
    pub sub: SocketAddr,
    /// The internet host's end.
    pub remote: SocketAddr,
    /// How the frames are tagged.
    pub vlan: Vlan,
}

impl Conversation {
    /// The lab's subscriber and remote host in `family`, on the given ports, untagged.
    pub fn new(family: Family, sub_port: u16, remote_port: u16) -> Conversation {
        let (sub, remote): (IpAddr, IpAddr) = match family {
            Family::V4 => (SUB_V4.into(), REMOTE_V4.into()),
            Family::V6 => (SUB_V6.into(), REMOTE_V6.into()),
        };
        Conversation {
            sub: SocketAddr::new(sub, sub_port),
            remote: SocketAddr::new(remote, remote_port),
            vlan: Vlan::Untagged,
        }
    }

    /// The same conversation tagged as `vlan`.
    pub fn with_vlan(self, vlan: Vlan) -> Conversation {
        Conversation { vlan, ..self }
    }

    /// The same conversation with another subscriber-side port (a distinct flow).
    pub fn with_sub_port(self, port: u16) -> Conversation {
        Conversation {
            sub: SocketAddr::new(self.sub.ip(), port),
            ..self
        }
    }

    /// The same conversation with another remote address (a distinct flow).
    pub fn with_remote_ip(self, ip: IpAddr) -> Conversation {
        Conversation {
            remote: SocketAddr::new(ip, self.remote.port()),
            ..self
        }
    }

    /// `(source, destination)` of a packet going `dir`.
    pub fn ends(&self, dir: Direction) -> (SocketAddr, SocketAddr) {
        match dir {
            Direction::Up => (self.sub, self.remote),
            Direction::Down => (self.remote, self.sub),
        }
    }

    /// Where the IP header starts in this conversation's frames.
    pub fn l3_offset(&self) -> usize {
        self.vlan.l3_offset()
    }

    /// Where the TCP or UDP header starts in this conversation's frames.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset()
            + match self.sub {
                SocketAddr::V4(_) => IPV4_HLEN,
                SocketAddr::V6(_) => IPV6_HLEN,
            }
    }

    /// A TCP frame going `dir`.
    pub fn tcp(&self, dir: Direction, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = self.ends(dir);
        tcp_frame(self.vlan, src, dst, flags, payload)
    }

    /// A UDP frame going `dir`.
    pub fn udp(&self, dir: Direction, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = self.ends(dir);
        udp_frame(self.vlan, src, dst, payload)
    }

    /// A frame of IP protocol `proto` carrying `l4` going `dir` (ESP, GRE, SCTP, ...).
    pub fn ip(&self, dir: Direction, proto: u8, l4: &[u8]) -> Vec<u8> {
        let (src, dst) = self.ends(dir);
        ip_frame(
            self.vlan,
            src.ip(),
            dst.ip(),
            IpNextHeaderProtocol(proto),
            l4,
        )
    }

    /// The fragments of the UDP datagram carrying `payload` going `dir`, with
    /// identification `id`, each fragment carrying `chunk` bytes of the datagram (a
    /// multiple of 8) except the last: the first holds the UDP header, whose length covers
    /// the whole datagram.
    pub fn udp_fragments(
        &self,
        dir: Direction,
        payload: &[u8],
        id: u32,
        chunk: usize,
    ) -> Vec<Vec<u8>> {
        assert!(
            chunk >= 8 && chunk.is_multiple_of(8),
            "fragment size {chunk}"
        );
        let (src, dst) = self.ends(dir);
        let dgram = udp_datagram(src, dst, payload);
        let udp = IpNextHeaderProtocols::Udp;
        let pieces: Vec<&[u8]> = dgram.chunks(chunk).collect();
        let last = pieces.len() - 1;
        pieces
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let offset = u16::try_from(i * chunk / 8).expect("offset over 13 bits");
                let more = i < last;
                match (src.ip(), dst.ip()) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        let id = u16::try_from(id).expect("IPv4 identification is 16 bits");
                        ipv4_fragment_with_id(self.vlan, s, d, udp, id, offset, more, data)
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        ipv6_fragment_with_id(self.vlan, s, d, udp, id, offset, more, data)
                    }
                    _ => panic!("mixed address families: {src} -> {dst}"),
                }
            })
            .collect()
    }

    /// The key the probe files this conversation's packets without ports under: IP
    /// protocol `proto` other than TCP and UDP, or fragments and broken TCP/UDP headers
    /// charged to the subscriber with ports 0.
    pub fn key_without_ports(&self, proto: u8) -> FlowKey {
        FlowKey {
            sub_port: 0,
            remote_port: 0,
            proto,
            ..self.key(PROTO_TCP)
        }
    }

    /// The flow key the probe files this conversation under for `proto`
    /// ([`PROTO_TCP`] or [`PROTO_UDP`]).
    pub fn key(&self, proto: u8) -> FlowKey {
        assert!(
            proto == PROTO_TCP || proto == PROTO_UDP,
            "not a tracked protocol: {proto}"
        );
        let mut key = FlowKey {
            sub_port: self.sub.port(),
            remote_port: self.remote.port(),
            proto,
            ..FlowKey::default()
        };
        match (self.sub.ip(), self.remote.ip()) {
            (IpAddr::V4(s), IpAddr::V4(r)) => {
                key.family = FAMILY_V4;
                key.sub_addr[..4].copy_from_slice(&s.octets());
                key.remote_addr[..4].copy_from_slice(&r.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(r)) => {
                key.family = FAMILY_V6;
                key.sub_addr = s.octets();
                key.remote_addr = r.octets();
            }
            _ => panic!("mixed address families: {} / {}", self.sub, self.remote),
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::{
        Packet as _, ethernet::EthernetPacket, ipv4::Ipv4Packet, udp::UdpPacket, vlan::VlanPacket,
    };

    #[test]
    fn qinq_frame_nests_two_tags_then_ipv4() {
        let c =
            Conversation::new(Family::V4, 1000, 2000).with_vlan(Vlan::QinQ { outer: 5, inner: 6 });
        let f = c.udp(Direction::Up, b"hello");
        let eth = EthernetPacket::new(&f).expect("ethernet");
        assert_eq!(eth.get_ethertype(), EtherTypes::PBridge);
        let outer = VlanPacket::new(eth.payload()).expect("outer tag");
        assert_eq!(
            (outer.get_vlan_identifier(), outer.get_ethertype()),
            (5, EtherTypes::Vlan)
        );
        let inner = VlanPacket::new(outer.payload()).expect("inner tag");
        assert_eq!(
            (inner.get_vlan_identifier(), inner.get_ethertype()),
            (6, EtherTypes::Ipv4)
        );
        let ip = Ipv4Packet::new(&f[c.l3_offset()..]).expect("ipv4");
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
        assert_eq!(usize::from(ip.get_total_length()), f.len() - c.l3_offset());
        let u = UdpPacket::new(&f[c.l4_offset()..]).expect("udp");
        assert_eq!(
            (u.get_source(), u.get_destination(), u.get_length()),
            (1000, 2000, 13)
        );
        assert_eq!(
            u.get_checksum(),
            udp::ipv4_checksum(&u, &SUB_V4, &REMOTE_V4)
        );
        assert_eq!(u.payload(), b"hello");
    }

    #[test]
    fn down_packets_swap_the_ends_but_not_the_key() {
        let c = Conversation::new(Family::V6, 1000, 2000);
        let up = c.tcp(Direction::Up, TcpFlags::SYN, b"");
        let down = c.tcp(Direction::Down, TcpFlags::SYN | TcpFlags::ACK, b"");
        assert_eq!(up[22..38], SUB_V6.octets());
        assert_eq!(down[22..38], REMOTE_V6.octets());
        assert_eq!(c.key(PROTO_TCP).sub_addr, SUB_V6.octets());
        assert_eq!(c.key(PROTO_TCP).family, FAMILY_V6);
    }

    #[test]
    fn options_lengthen_the_headers_and_keep_checksums_valid() {
        use pnet_packet::tcp::TcpPacket;
        let (src, dst): (SocketAddr, SocketAddr) = (
            "100.64.1.10:1".parse().expect("src"),
            "198.51.100.7:2".parse().expect("dst"),
        );
        let seg = tcp_segment_with_options(src, dst, TcpFlags::ACK, &TCP_TIMESTAMPS, b"data");
        let t = TcpPacket::new(&seg).expect("tcp");
        assert_eq!((t.get_data_offset(), t.payload()), (8, &b"data"[..]));
        assert_eq!(
            t.get_checksum(),
            tcp::ipv4_checksum(&t, &SUB_V4, &REMOTE_V4)
        );
        let ip = ipv4_with_options(
            SUB_V4,
            REMOTE_V4,
            IpNextHeaderProtocols::Tcp,
            &IPV4_ROUTER_ALERT,
            &seg,
        );
        let h = Ipv4Packet::new(&ip).expect("ipv4");
        assert_eq!((h.get_header_length(), h.payload()), (6, &seg[..]));
        assert_eq!(h.get_checksum(), ipv4::checksum(&h));
    }

    #[test]
    fn fixing_the_checksum_after_an_edit_gives_a_valid_header() {
        let c = Conversation::new(Family::V4, 1, 2);
        let mut f = c.udp(Direction::Up, b"x");
        f[c.l3_offset() + 8] = 3; // TTL
        fix_ipv4_checksum(&mut f, c.l3_offset());
        let ip = Ipv4Packet::new(&f[c.l3_offset()..]).expect("ipv4");
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
    }
}
