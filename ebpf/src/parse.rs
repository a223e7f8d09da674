//! Header parsing: Ethernet, 802.1Q/QinQ, the access networks' PPPoE sessions and MPLS
//! label stacks, IPv4, IPv6 with its common extension headers, TCP and UDP; other IP
//! protocols and fragments down to their addresses and protocol. Every read goes through
//! [`ptr_at`]; lengths in headers are checked against each other and against the frame, and
//! the payload ends where the IP packet ends (not at the frame's end, which may carry
//! Ethernet padding).

use aya_ebpf::programs::{TcContext, XdpContext};
use peerwarden_common::{
    Direction, FlowKey, Stat,
    flow::{FAMILY_V4, FAMILY_V6, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;
/// PPPoE session stage (RFC 2516); discovery (0x8863) is the link's signalling, not IP.
const ETH_P_PPP_SES: u16 = 0x8864;
const ETH_P_MPLS_UC: u16 = 0x8847;
const ETH_P_MPLS_MC: u16 = 0x8848;
/// PPP protocol numbers of IPv4 and IPv6 (RFC 1332, RFC 5072); LCP, IPCP and the rest are
/// the session's signalling.
const PPP_IP: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
/// PPPoE header (version/type, code, session id, length) and the PPP protocol.
const PPPOE_HLEN: usize = 8;
/// Labels read before giving up on a stack: the verifier needs a constant bound, and access
/// and core networks push two or three (transport, service, maybe entropy).
pub const MPLS_MAX_LABELS: usize = 8;

/// A frame in memory: XDP's and TC's contexts both give its bounds.
pub trait Frame {
    fn start(&self) -> usize;
    fn end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

/// An IP packet charged to a flow: its flow key, and where its headers and payload lie in
/// the frame. TCP and UDP packets carry their ports; other IP protocols, later fragments
/// and packets broken above the IP header carry ports 0 and no payload to inspect (see
/// docs/policies.md, "What is charged and what is not parsed").
pub struct Packet {
    pub key: FlowKey,
    /// Offset of the IP header (for DSCP rewrites).
    pub ip_off: usize,
    pub payload_off: usize,
    pub payload_len: usize,
    /// TCP flags and sequence number (0 for UDP), for the deep classifier's reassembly.
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    /// [`FRAG_NONE`], [`FRAG_FIRST`] or [`FRAG_LATER`].
    pub frag: u8,
    /// The IP identification of a fragment (IPv4's 16 bits, IPv6's 32).
    pub frag_id: u32,
}

/// Not a fragment (or an IPv6 atomic fragment: offset 0, no more to come).
pub const FRAG_NONE: u8 = 0;
/// The first fragment of a datagram: it carries the upper-layer header.
pub const FRAG_FIRST: u8 = 1;
/// A later fragment: no upper-layer header; its flow is the first fragment's (frag.rs).
pub const FRAG_LATER: u8 = 2;

/// What a frame turned out to be.
pub enum Parsed {
    /// A whole TCP or UDP packet (or a first fragment of one).
    Flow(Packet),
    /// A packet charged to its subscriber without a TCP/UDP payload to look at, and the
    /// statistic it also counts in: another IP protocol (`NonTcpUdp`), a later fragment
    /// (`Fragments`), or a packet whose IP header is sound but whose TCP/UDP header or
    /// IPv6 extension chain is not (`Malformed`).
    Charged(Stat, Packet),
    /// Not IPv4 or IPv6 after at most two VLAN tags: ARP, PPPoE discovery and a session's
    /// LCP/IPCP/IPv6CP, an MPLS stack over something else than IP.
    NonIp,
    /// IPv6 Neighbor Discovery (ICMPv6 types 133-137): the link's own signalling, counted
    /// in `NonTcpUdp` and passed untouched, never charged nor policed (a subscriber whose
    /// plan is full must still reach its router).
    NeighborDiscovery,
    /// Broken before its IP header was whole (no addresses to charge), or broken at the IP
    /// layer, which the kernel's own IP input drops (bad version, header length, or a
    /// total length past the frame): counted, passed, charged to no one.
    Malformed,
}

/// Zero, as a value LLVM cannot see through. A struct literal of constant zeroes becomes a
/// call to `memset`, and on bpf that is compiler-builtins' loop of one-byte stores: 74 of
/// them for a `Packet`, on every packet the probe sees (docs/benchmarks.md, "Fast path
/// (issue 16)"). Fields set from this value are plain stores of a register instead.
#[inline(always)]
pub fn opaque_zero() -> u64 {
    let z = 0u64;
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&z) }
}

/// A pointer to a `T` at `off` in the frame, if the frame holds all of it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &impl Frame, off: usize) -> Option<*const T> {
    let start = ctx.start();
    let end = ctx.end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &impl Frame, off: usize) -> Option<T> {
    // SAFETY: ptr_at checked that the frame holds a whole T at off.
    ptr_at::<T>(ctx, off).map(|p| unsafe { p.read_unaligned() })
}

#[inline(always)]
fn be16(ctx: &impl Frame, off: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, off).map(u16::from_be_bytes)
}

/// Parses a frame going `dir`. The key is filed from the subscriber's side; a later
/// fragment takes its datagram's flow key when the first fragment was seen (frag.rs).
#[inline(always)]
pub fn parse(ctx: &impl Frame, dir: Direction) -> Parsed {
    // All zero (see `opaque_zero`): no addresses or ports yet, no payload.
    let z = opaque_zero();
    let addr = [z.to_ne_bytes(), z.to_ne_bytes()];
    // SAFETY: two arrays of 8 bytes are 16 bytes.
    let addr: [u8; 16] = unsafe { core::mem::transmute(addr) };
    let mut pkt = Packet {
        key: FlowKey {
            sub_addr: addr,
            remote_addr: addr,
            sub_port: z as u16,
            remote_port: z as u16,
            proto: z as u8,
            family: z as u8,
            _pad: [z as u8; 2],
        },
        ip_off: z as usize,
        payload_off: z as usize,
        payload_len: z as usize,
        tcp_flags: z as u8,
        tcp_seq: z as u32,
        frag: FRAG_NONE,
        frag_id: z as u32,
    };
    let stat = match try_parse(ctx, dir, &mut pkt) {
        Ok(Upper::Flow) => None,
        Ok(Upper::Charged(s)) => Some(s),
        Ok(Upper::NonIp) => return Parsed::NonIp,
        Ok(Upper::NeighborDiscovery) => return Parsed::NeighborDiscovery,
        Err(Broken::BeforeAddresses) => return Parsed::Malformed,
        Err(Broken::AfterAddresses) => {
            // Sound IP header, broken above it: routers forward it, so it is charged.
            opaque(&mut pkt);
            Some(Stat::Malformed)
        }
    };
    if dir == Direction::Down {
        core::mem::swap(&mut pkt.key.sub_addr, &mut pkt.key.remote_addr);
    }
    match stat {
        None => Parsed::Flow(pkt),
        Some(s) => {
            if pkt.frag == FRAG_LATER {
                crate::frag::resolve(&mut pkt.key, pkt.frag_id);
            }
            Parsed::Charged(s, pkt)
        }
    }
}

/// A packet with no ports and no payload for the classifiers: keyed by its addresses and
/// protocol alone.
#[inline(always)]
fn opaque(pkt: &mut Packet) {
    pkt.key.sub_port = 0;
    pkt.key.remote_port = 0;
    pkt.payload_off = pkt.ip_off;
    pkt.payload_len = 0;
    pkt.tcp_flags = 0;
    pkt.tcp_seq = 0;
}

/// What the layers above Ethernet held.
enum Upper {
    /// A TCP or UDP packet with its ports.
    Flow,
    /// Charged without ports, counted in this statistic too.
    Charged(Stat),
    NonIp,
    NeighborDiscovery,
}

/// Where a frame broke.
enum Broken {
    /// Before a sound IP header (addresses and protocol) was read.
    BeforeAddresses,
    /// Above a sound IP header: `pkt.key` holds the addresses and the protocol as read.
    AfterAddresses,
}

#[inline(always)]
fn try_parse(ctx: &impl Frame, dir: Direction, pkt: &mut Packet) -> Result<Upper, Broken> {
    use Broken::{AfterAddresses, BeforeAddresses};
    let mut off = ETH_HLEN;
    let mut ethertype = be16(ctx, 12).ok_or(BeforeAddresses)?;
    // Up to two VLAN tags (802.1Q, or QinQ with an 802.1ad outer tag).
    if ethertype == ETH_P_8021AD || ethertype == ETH_P_8021Q {
        ethertype = be16(ctx, off + 2).ok_or(BeforeAddresses)?;
        off += 4;
        if ethertype == ETH_P_8021Q {
            ethertype = be16(ctx, off + 2).ok_or(BeforeAddresses)?;
            off += 4;
        }
    }
    // The access networks' encapsulations, inside the tags (an S-tag and C-tag, then PPPoE,
    // as a BNG sees a subscriber's session): the IP packet within is parsed as over plain
    // Ethernet, its addresses the subscriber's.
    let ethertype = match ethertype {
        ETH_P_PPP_SES => {
            // Version, type and code are not checked: Linux's PPPoE receive does not check
            // them either (only the length, against the frame), so a session frame with odd
            // ones still reaches the subscriber's PPP unit and must be charged like any other.
            let h: [u8; PPPOE_HLEN] = read(ctx, off).ok_or(BeforeAddresses)?;
            let len = u16::from_be_bytes([h[4], h[5]]) as usize;
            if len < 2 || off + 6 + len > ctx.end() - ctx.start() {
                return Err(BeforeAddresses);
            }
            off = blur(ctx, off + PPPOE_HLEN)?;
            match u16::from_be_bytes([h[6], h[7]]) {
                PPP_IP => ETH_P_IP,
                PPP_IPV6 => ETH_P_IPV6,
                _ => return Ok(Upper::NonIp),
            }
        }
        ETH_P_MPLS_UC | ETH_P_MPLS_MC => {
            off = blur(ctx, skip_mpls_labels(ctx, off)?)?;
            // No protocol field: the version nibble tells IPv4 from IPv6, as Linux's MPLS
            // routing tells them when it pops the last label. Anything else (a pseudowire's
            // control word or Ethernet) is not opened.
            // (Two bytes: the verifier does not follow the bounds check LLVM makes of a
            // one-byte read at a variable offset, `>=` against the frame's end.)
            let v: [u8; 2] = read(ctx, off).ok_or(BeforeAddresses)?;
            match v[0] >> 4 {
                4 => ETH_P_IP,
                6 => ETH_P_IPV6,
                _ => return Ok(Upper::NonIp),
            }
        }
        t => t,
    };
    let key = &mut pkt.key;
    pkt.ip_off = off;
    // Addresses go straight into the key (source in `sub_addr`, swapped by `parse` for
    // packets coming down): no copies on the stack, which the deep tier's and the policy's
    // calls share with this frame.
    let (proto, l4, ip_end) = match ethertype {
        ETH_P_IP => {
            let h: [u8; 20] = read(ctx, off).ok_or(BeforeAddresses)?;
            let ihl = ((h[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return Err(BeforeAddresses);
            }
            let ip_end = off + total;
            if ip_end > ctx.end() - ctx.start() {
                return Err(BeforeAddresses);
            }
            key.family = FAMILY_V4;
            key.proto = h[9];
            key.sub_addr[..4].copy_from_slice(&h[12..16]);
            key.remote_addr[..4].copy_from_slice(&h[16..20]);
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if frag & 0x3fff != 0 {
                pkt.frag_id = u16::from_be_bytes([h[4], h[5]]) as u32;
                if frag & 0x1fff != 0 {
                    pkt.frag = FRAG_LATER;
                    opaque(pkt);
                    return Ok(Upper::Charged(Stat::Fragments));
                }
                pkt.frag = FRAG_FIRST;
            }
            (h[9], off + ihl, ip_end)
        }
        ETH_P_IPV6 => {
            let h: [u8; 8] = read(ctx, off).ok_or(BeforeAddresses)?;
            if h[0] >> 4 != 6 {
                return Err(BeforeAddresses);
            }
            let ip_end = off + 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
            if ip_end > ctx.end() - ctx.start() {
                return Err(BeforeAddresses);
            }
            key.family = FAMILY_V6;
            key.sub_addr = read(ctx, off + 8).ok_or(BeforeAddresses)?;
            key.remote_addr = read(ctx, off + 24).ok_or(BeforeAddresses)?;
            key.proto = h[6];
            let (next, l4) = skip_ipv6_extensions(ctx, pkt, off + 40, ip_end)?;
            if pkt.frag == FRAG_LATER {
                opaque(pkt);
                return Ok(Upper::Charged(Stat::Fragments));
            }
            (next, l4, ip_end)
        }
        _ => return Ok(Upper::NonIp),
    };
    let key = &mut pkt.key;
    key.proto = proto;
    let (payload_off, payload_end) = match proto {
        PROTO_TCP => {
            let t: [u8; 20] = read(ctx, l4).ok_or(AfterAddresses)?;
            let doff = ((t[12] >> 4) as usize) * 4;
            if doff < 20 || l4 + doff > ip_end {
                return Err(AfterAddresses);
            }
            set_ports(key, dir, &t);
            pkt.tcp_flags = t[13];
            pkt.tcp_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            (l4 + doff, ip_end)
        }
        PROTO_UDP => {
            let u: [u8; 8] = read(ctx, l4).ok_or(AfterAddresses)?;
            let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
            if ulen < 8 || l4 + 8 > ip_end {
                return Err(AfterAddresses);
            }
            // A first fragment's UDP length covers the whole datagram, past this packet.
            let udp_end = l4 + ulen;
            let end = if udp_end <= ip_end {
                udp_end
            } else if pkt.frag == FRAG_FIRST {
                ip_end
            } else {
                return Err(AfterAddresses);
            };
            let mut ports = [0u8; 20];
            ports[..4].copy_from_slice(&u[..4]);
            set_ports(key, dir, &ports);
            (l4 + 8, end)
        }
        _ => {
            // Every ND message has at least the 8 bytes read here (the verifier also
            // takes this read where it refused a one-byte one at a variable offset).
            if proto == PROTO_ICMPV6
                && pkt.frag == FRAG_NONE
                && let Some(t) = read::<[u8; 8]>(ctx, l4)
                && (ND_FIRST..=ND_LAST).contains(&t[0])
            {
                return Ok(Upper::NeighborDiscovery);
            }
            opaque(pkt);
            return Ok(Upper::Charged(Stat::NonTcpUdp));
        }
    };
    pkt.payload_off = payload_off;
    pkt.payload_len = payload_end - payload_off;
    Ok(Upper::Flow)
}

/// `off` as it is, but known to the verifier only as some offset below 256. Each tag
/// layout and each depth of an encapsulation puts the IP header at another constant offset,
/// and the verifier walks everything after the parse once per constant it was given (it
/// stopped at its million instructions with PPPoE and eight MPLS depths behind three tag
/// layouts): blurred, every encapsulated frame takes one walk. The blur is an exclusive or
/// with a frame byte, undone by a second, volatile read of the same byte, which the
/// verifier cannot tell is equal and the compiler may not fold.
#[inline(always)]
fn blur(ctx: &impl Frame, off: usize) -> Result<usize, Broken> {
    let p = ptr_at::<u8>(ctx, 0).ok_or(Broken::BeforeAddresses)?;
    // SAFETY: ptr_at checked the frame holds the byte; nothing else writes the frame.
    let (a, b) = unsafe { (p.read_volatile(), p.read_volatile()) };
    Ok((off ^ a as usize) ^ b as usize)
}

/// The offset past an MPLS label stack starting at `off`: labels up to the one with the
/// bottom-of-stack bit. A stack cut short by the frame, or with no bottom within
/// [`MPLS_MAX_LABELS`], is broken before any address (passed and counted malformed).
#[inline(always)]
fn skip_mpls_labels(ctx: &impl Frame, mut off: usize) -> Result<usize, Broken> {
    for _ in 0..MPLS_MAX_LABELS {
        let e: [u8; 4] = read(ctx, off).ok_or(Broken::BeforeAddresses)?;
        off += 4;
        if e[2] & 1 != 0 {
            return Ok(off);
        }
    }
    Err(Broken::BeforeAddresses)
}

/// Source and destination ports from the first four bytes of a TCP or UDP header.
#[inline(always)]
fn set_ports(key: &mut FlowKey, dir: Direction, l4: &[u8; 20]) {
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let (sub, remote) = match dir {
        Direction::Up => (sport, dport),
        Direction::Down => (dport, sport),
    };
    key.sub_port = sub;
    key.remote_port = remote;
}

/// ICMPv6 Router Solicitation .. Redirect: Neighbor Discovery (RFC 4861).
const ND_FIRST: u8 = 133;
const ND_LAST: u8 = 137;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers followed before giving up; real traffic carries one or two.
const IPV6_MAX_EXTENSIONS: usize = 4;

/// Walks IPv6 extension headers from the fixed header's next header (`pkt.key.proto`) at
/// `off`. Returns the upper-layer protocol and its offset; marks a fragment in `pkt` (a
/// later one stops the walk: what follows is not a header). A header running past the
/// packet is an error above the addresses, `pkt.key.proto` then holding the next header
/// as read.
#[inline(always)]
fn skip_ipv6_extensions(
    ctx: &impl Frame,
    pkt: &mut Packet,
    mut off: usize,
    ip_end: usize,
) -> Result<(u8, usize), Broken> {
    let mut next = pkt.key.proto;
    let mut i = 0;
    while i < IPV6_MAX_EXTENSIONS {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let e: [u8; 2] = read(ctx, off).ok_or(Broken::AfterAddresses)?;
                next = e[0];
                (e[1] as usize + 1) * 8
            }
            IPV6_AUTH => {
                let e: [u8; 2] = read(ctx, off).ok_or(Broken::AfterAddresses)?;
                next = e[0];
                (e[1] as usize + 2) * 4
            }
            IPV6_FRAGMENT => {
                let e: [u8; 8] = read(ctx, off).ok_or(Broken::AfterAddresses)?;
                next = e[0];
                let offset_more = u16::from_be_bytes([e[2], e[3]]);
                pkt.frag_id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                if offset_more >> 3 != 0 {
                    pkt.frag = FRAG_LATER;
                    pkt.key.proto = next;
                    return Ok((next, off + 8));
                }
                if offset_more & 1 != 0 {
                    pkt.frag = FRAG_FIRST;
                }
                8
            }
            _ => break,
        };
        pkt.key.proto = next;
        off += len;
        if off > ip_end {
            return Err(Broken::AfterAddresses);
        }
        i += 1;
    }
    Ok((next, off))
}
