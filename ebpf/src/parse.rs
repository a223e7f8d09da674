//! Header parsing: Ethernet, 802.1Q/QinQ, IPv4, IPv6 with its common extension headers,
//! TCP and UDP. Every read goes through [`ptr_at`]; lengths in headers are checked against
//! each other and against the frame, and the payload ends where the IP packet ends (not at
//! the frame's end, which may carry Ethernet padding).

use aya_ebpf::programs::{TcContext, XdpContext};
use peerwarden_common::{
    Direction, FlowKey,
    flow::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;

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

/// A TCP or UDP packet: its flow key, and where its headers and payload lie in the frame.
pub struct Packet {
    pub key: FlowKey,
    /// Offset of the IP header (for DSCP rewrites).
    pub ip_off: usize,
    pub payload_off: usize,
    pub payload_len: usize,
    /// TCP flags and sequence number (0 for UDP), for the deep classifier's reassembly.
    pub tcp_flags: u8,
    pub tcp_seq: u32,
}

/// What a frame turned out to be.
pub enum Parsed {
    Flow(Packet),
    NonIp,
    NonTcpUdp,
    Fragment,
    Malformed,
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

#[inline(always)]
pub fn parse(ctx: &impl Frame, dir: Direction) -> Parsed {
    match try_parse(ctx, dir) {
        Ok(p) => p,
        Err(()) => Parsed::Malformed,
    }
}

#[inline(always)]
fn try_parse(ctx: &impl Frame, dir: Direction) -> Result<Parsed, ()> {
    let mut off = ETH_HLEN;
    let mut ethertype = be16(ctx, 12).ok_or(())?;
    // Up to two VLAN tags (802.1Q, or QinQ with an 802.1ad outer tag).
    if ethertype == ETH_P_8021AD || ethertype == ETH_P_8021Q {
        ethertype = be16(ctx, off + 2).ok_or(())?;
        off += 4;
        if ethertype == ETH_P_8021Q {
            ethertype = be16(ctx, off + 2).ok_or(())?;
            off += 4;
        }
    }
    let mut key = FlowKey::default();
    let ip_off = off;
    let (mut tcp_flags, mut tcp_seq) = (0u8, 0u32);
    // Addresses go straight into the key (source in `sub_addr`, swapped below for packets
    // coming down): no copies on the stack, which the deep tier's and the policy's calls
    // share with this frame.
    let (proto, l4, ip_end) = match ethertype {
        ETH_P_IP => {
            let h: [u8; 20] = read(ctx, off).ok_or(())?;
            let ihl = ((h[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return Err(());
            }
            let ip_end = off + total;
            if ip_end > ctx.end() - ctx.start() {
                return Err(());
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return Ok(Parsed::Fragment);
            }
            key.family = FAMILY_V4;
            key.sub_addr[..4].copy_from_slice(&h[12..16]);
            key.remote_addr[..4].copy_from_slice(&h[16..20]);
            (h[9], off + ihl, ip_end)
        }
        ETH_P_IPV6 => {
            let h: [u8; 8] = read(ctx, off).ok_or(())?;
            if h[0] >> 4 != 6 {
                return Err(());
            }
            let ip_end = off + 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
            if ip_end > ctx.end() - ctx.start() {
                return Err(());
            }
            key.family = FAMILY_V6;
            key.sub_addr = read(ctx, off + 8).ok_or(())?;
            key.remote_addr = read(ctx, off + 24).ok_or(())?;
            let (next, l4) = match skip_ipv6_extensions(ctx, h[6], off + 40, ip_end)? {
                Some(v) => v,
                None => return Ok(Parsed::Fragment),
            };
            (next, l4, ip_end)
        }
        _ => return Ok(Parsed::NonIp),
    };
    let (payload_off, payload_end) = match proto {
        PROTO_TCP => {
            let t: [u8; 20] = read(ctx, l4).ok_or(())?;
            let doff = ((t[12] >> 4) as usize) * 4;
            if doff < 20 || l4 + doff > ip_end {
                return Err(());
            }
            key.proto = PROTO_TCP;
            set_ports(&mut key, dir, &t);
            tcp_flags = t[13];
            tcp_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            (l4 + doff, ip_end)
        }
        PROTO_UDP => {
            let u: [u8; 8] = read(ctx, l4).ok_or(())?;
            let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
            if ulen < 8 || l4 + ulen > ip_end {
                return Err(());
            }
            key.proto = PROTO_UDP;
            let mut ports = [0u8; 20];
            ports[..4].copy_from_slice(&u[..4]);
            set_ports(&mut key, dir, &ports);
            (l4 + 8, l4 + ulen)
        }
        _ => return Ok(Parsed::NonTcpUdp),
    };
    if dir == Direction::Down {
        core::mem::swap(&mut key.sub_addr, &mut key.remote_addr);
    }
    Ok(Parsed::Flow(Packet {
        key,
        ip_off,
        payload_off,
        payload_len: payload_end - payload_off,
        tcp_flags,
        tcp_seq,
    }))
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

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers followed before giving up; real traffic carries one or two.
const IPV6_MAX_EXTENSIONS: usize = 4;

/// Walks IPv6 extension headers from `next` at `off`. Returns the upper-layer protocol and
/// its offset, `None` for a non-first fragment (no ports), or an error when a header runs
/// past the packet.
#[inline(always)]
fn skip_ipv6_extensions(
    ctx: &impl Frame,
    mut next: u8,
    mut off: usize,
    ip_end: usize,
) -> Result<Option<(u8, usize)>, ()> {
    let mut i = 0;
    while i < IPV6_MAX_EXTENSIONS {
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let e: [u8; 2] = read(ctx, off).ok_or(())?;
                next = e[0];
                (e[1] as usize + 1) * 8
            }
            IPV6_AUTH => {
                let e: [u8; 2] = read(ctx, off).ok_or(())?;
                next = e[0];
                (e[1] as usize + 2) * 4
            }
            IPV6_FRAGMENT => {
                let e: [u8; 4] = read(ctx, off).ok_or(())?;
                if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                    return Ok(None);
                }
                next = e[0];
                8
            }
            _ => break,
        };
        off += len;
        if off > ip_end {
            return Err(());
        }
        i += 1;
    }
    Ok(Some((next, off)))
}
