//! Capture files in the integration tests.
//!
//! - [`replay`]: a capture's TCP/UDP packets as Ethernet frames for the kernel probe
//!   (`BPF_PROG_TEST_RUN`), each with its direction relative to the flow's initiator, so a
//!   test can run the kernel tier and the library on the same packets and compare them.
//! - [`ethernet_frames`] and [`flow_frames`]: the frames of a lab capture (tcpdump on the
//!   lab's veths), read with the classifier's reader and decoder.
//!
//! ```no_run
//! use std::path::Path;
//! use peerwarden_tests::captures;
//!
//! let r = captures::replay(Path::new("trace.pcap"))?;
//! for p in &r.packets {
//!     // p.frame is an Ethernet frame; p.dir is Up for the initiator's packets.
//!     let _ = (&r.flows[p.flow], p.dir, &p.frame);
//! }
//! # Ok::<(), peerwarden_classifier::CaptureError>(())
//! ```

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use peerwarden_classifier::{
    CaptureError, CaptureReader, Direction, FlowKey,
    capture::link,
    packet::{self, Decoded, TCP, UDP},
};
use peerwarden_common::flow::{FAMILY_V4, FAMILY_V6};
use pnet_packet::{
    ip::IpNextHeaderProtocols,
    tcp::{self, MutableTcpPacket},
};

use crate::packets::{self, Vlan};

/// The longest frame handed to `BPF_PROG_TEST_RUN`. An XDP program without frags support
/// sees only the linear part of a test frame, one page less headroom (256) and the shared
/// info (320 on x86-64): about 3.5 KB. Captures taken on a host with GRO hold longer
/// frames; those are rebuilt with their payload cut to fit, which the fingerprints never
/// notice (they read the first [`peerwarden_common::fingerprint::SAMPLE_LEN`] bytes).
pub const MAX_TEST_FRAME: usize = 3000;

/// How a packet's frame was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Framing {
    /// The captured Ethernet frame, byte for byte.
    AsCaptured,
    /// The captured IP packet behind a made-up Ethernet header (raw IP, Linux cooked and
    /// loopback captures).
    EthernetAdded,
    /// A fresh Ethernet/IP/TCP-or-UDP frame carrying the decoded packet's addresses, ports,
    /// TCP flags and sequence number and its captured payload: for packets the probe would
    /// parse differently from the library (tunnels, MPLS stacks past eight labels, three VLAN tags, IP lengths
    /// past the captured bytes, frames longer than [`MAX_TEST_FRAME`], PPP links).
    Rebuilt,
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Framing::AsCaptured => "as captured",
            Framing::EthernetAdded => "Ethernet header added",
            Framing::Rebuilt => "rebuilt",
        })
    }
}

/// One TCP/UDP packet of a capture, ready for the probe.
#[derive(Clone, Debug)]
pub struct ReplayPacket {
    /// Index into [`Replay::flows`].
    pub flow: usize,
    /// `Up` when the flow's initiator sent it (the probe's downlink program takes those).
    pub dir: Direction,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// How the frame was made.
    pub framing: Framing,
}

/// A capture's TCP/UDP packets in capture order, and its flows.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// Flows in first-seen order, keyed as the library keys them (`src` is the initiator,
    /// the sender of the first packet), which is also how the probe keys them when the
    /// initiator's packets go to the downlink program.
    pub flows: Vec<FlowKey>,
    /// The packets.
    pub packets: Vec<ReplayPacket>,
    /// Frames the library decoder did not turn into a TCP/UDP packet (ARP, ICMP,
    /// non-first fragments, unknown link types): not sent.
    pub skipped: u64,
}

impl Replay {
    /// Packets per framing kind.
    pub fn framing_counts(&self) -> BTreeMap<Framing, u64> {
        let mut m = BTreeMap::new();
        for p in &self.packets {
            *m.entry(p.framing).or_insert(0) += 1;
        }
        m
    }
}

/// Reads a capture with the library's reader and decoder and turns every TCP/UDP packet
/// into a frame the probe parses to the same 5-tuple and payload (see [`Framing`]).
/// Flows are tracked as `peerwarden classify` tracks them, so [`Replay::flows`] lines up
/// with its records. A read error ends the replay with what was read before it, as the
/// library does; the error is returned alongside.
pub fn replay_partial(path: &Path) -> (Replay, Option<CaptureError>) {
    let mut out = Replay::default();
    let mut reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(e) => return (out, Some(e)),
    };
    let mut index: BTreeMap<(u8, SocketAddr, SocketAddr), usize> = BTreeMap::new();
    let error = loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        let Ok(d) = packet::decode(frame.link_type, frame.data) else {
            out.skipped += 1;
            continue;
        };
        let s = SocketAddr::new(d.src, d.sport);
        let t = SocketAddr::new(d.dst, d.dport);
        let canon = if s <= t {
            (d.proto, s, t)
        } else {
            (d.proto, t, s)
        };
        let flow = *index.entry(canon).or_insert_with(|| {
            out.flows.push(FlowKey {
                proto: d.proto,
                src: s,
                dst: t,
            });
            out.flows.len() - 1
        });
        let dir = if out.flows[flow].src == s {
            Direction::Up
        } else {
            Direction::Down
        };
        let (frame_bytes, framing) = frame_for(frame.link_type, frame.data, &d);
        out.packets.push(ReplayPacket {
            flow,
            dir,
            frame: frame_bytes,
            framing,
        });
    };
    (out, error)
}

/// [`replay_partial`], failing on a capture that cannot be read to its end.
pub fn replay(path: &Path) -> Result<Replay, CaptureError> {
    match replay_partial(path) {
        (r, None) => Ok(r),
        (_, Some(e)) => Err(e),
    }
}

/// One frame of an Ethernet capture: its bytes as captured and its length on the wire.
#[derive(Clone, Debug)]
pub struct EthernetFrame {
    /// The captured bytes (cut at the capture's snapshot length).
    pub data: Vec<u8>,
    /// The frame's length on the wire (Ethernet header included, no FCS on veth).
    pub wire_len: u32,
}

/// Every frame of capture `path` (what `tcpdump -w` writes on the lab's veths), read with
/// the classifier's capture reader (pcap, either byte order and time unit, or pcapng).
/// Panics unless the whole file reads and every frame is Ethernet.
pub fn ethernet_frames(path: &Path) -> Vec<EthernetFrame> {
    let mut reader =
        CaptureReader::open(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut frames = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => {
                assert_eq!(
                    f.link_type,
                    link::ETHERNET,
                    "{}: link type {}, expected Ethernet",
                    path.display(),
                    f.link_type
                );
                frames.push(EthernetFrame {
                    data: f.data.to_vec(),
                    wire_len: f.wire_len,
                });
            }
            Ok(None) => return frames,
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }
}

/// A TCP or UDP frame's `(proto, src, sport, dst, dport)`, the protocol as `"tcp"` or
/// `"udp"`.
pub type Tuple = (&'static str, IpAddr, u16, IpAddr, u16);

/// One frame of a lab capture: its length on the wire and the flow it belongs to, if TCP
/// or UDP over IPv4 or IPv6.
#[derive(Clone, Debug)]
pub struct FlowFrame {
    /// The frame's length on the wire (Ethernet header included, no FCS on veth).
    pub len: u32,
    /// The flow as captured, decoded by the classifier's packet decoder.
    pub tuple: Option<Tuple>,
}

/// Every frame of Ethernet capture `path` with its flow ([`ethernet_frames`], each
/// decoded by the classifier).
pub fn flow_frames(path: &Path) -> Vec<FlowFrame> {
    ethernet_frames(path)
        .into_iter()
        .map(|f| FlowFrame {
            len: f.wire_len,
            tuple: packet::decode(link::ETHERNET, &f.data).ok().and_then(|d| {
                let proto = match d.proto {
                    TCP => "tcp",
                    UDP => "udp",
                    _ => return None,
                };
                Some((proto, d.src, d.sport, d.dst, d.dport))
            }),
        })
        .collect()
}

/// The frame to run the probe on for decoded packet `d` of a frame of `link_type`.
fn frame_for(link_type: u32, data: &[u8], d: &Decoded<'_>) -> (Vec<u8>, Framing) {
    let candidate = match link_type {
        link::ETHERNET => Some((data.to_vec(), Framing::AsCaptured)),
        link::RAW | link::RAW_BSD | link::RAW_OPENBSD | link::IPV4 | link::IPV6 => {
            with_ethernet(data).map(|f| (f, Framing::EthernetAdded))
        }
        link::LINUX_SLL => data
            .get(16..)
            .and_then(with_ethernet)
            .map(|f| (f, Framing::EthernetAdded)),
        link::LINUX_SLL2 => data
            .get(20..)
            .and_then(with_ethernet)
            .map(|f| (f, Framing::EthernetAdded)),
        link::NULL | link::LOOP => data
            .get(4..)
            .and_then(with_ethernet)
            .map(|f| (f, Framing::EthernetAdded)),
        _ => None,
    };
    if let Some((f, how)) = candidate
        && f.len() <= MAX_TEST_FRAME
        && kernel_view(&f).is_some_and(|k| k.matches(d))
    {
        return (f, how);
    }
    let f = rebuild(d);
    debug_assert!(kernel_view(&f).is_some_and(|k| k.matches(d) || f.len() == MAX_TEST_FRAME));
    (f, Framing::Rebuilt)
}

/// An IP packet behind an Ethernet header whose type follows the IP version.
fn with_ethernet(ip: &[u8]) -> Option<Vec<u8>> {
    let ethertype = match ip.first()? >> 4 {
        4 => pnet_packet::ethernet::EtherTypes::Ipv4,
        6 => pnet_packet::ethernet::EtherTypes::Ipv6,
        _ => return None,
    };
    Some(packets::ethernet(Vlan::Untagged, ethertype, ip))
}

/// A fresh untagged frame for `d`, the payload cut so the frame fits [`MAX_TEST_FRAME`].
fn rebuild(d: &Decoded<'_>) -> Vec<u8> {
    let (src, dst) = (
        SocketAddr::new(d.src, d.sport),
        SocketAddr::new(d.dst, d.dport),
    );
    let l3 = match d.src {
        IpAddr::V4(_) => packets::IPV4_HLEN,
        IpAddr::V6(_) => packets::IPV6_HLEN,
    };
    let l4 = if d.proto == TCP {
        packets::TCP_HLEN
    } else {
        packets::UDP_HLEN
    };
    let room = MAX_TEST_FRAME - packets::ETH_HLEN - l3 - l4;
    let payload = &d.payload[..d.payload.len().min(room)];
    if d.proto == TCP {
        let mut seg = packets::tcp_segment(src, dst, d.tcp_flags, payload);
        set_tcp_seq(&mut seg, src.ip(), dst.ip(), d.tcp_seq);
        packets::ip_frame(
            Vlan::Untagged,
            src.ip(),
            dst.ip(),
            IpNextHeaderProtocols::Tcp,
            &seg,
        )
    } else {
        packets::udp_frame(Vlan::Untagged, src, dst, payload)
    }
}

/// Sets a built segment's sequence number and redoes its checksum.
fn set_tcp_seq(seg: &mut [u8], src: IpAddr, dst: IpAddr, seq: u32) {
    let Some(mut t) = MutableTcpPacket::new(seg) else {
        return;
    };
    t.set_sequence(seq);
    let sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&t.to_immutable(), &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&t.to_immutable(), &s, &d),
        _ => return,
    };
    t.set_checksum(sum);
}

/// What the probe's parser (`ebpf/src/parse.rs`) makes of a frame: the 5-tuple and the
/// payload bytes, or `None` when it would not track it (not IP, not TCP/UDP, a non-first
/// fragment, malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelView<'a> {
    /// IP protocol.
    pub proto: u8,
    /// Source endpoint.
    pub src: SocketAddr,
    /// Destination endpoint.
    pub dst: SocketAddr,
    /// The payload, ending where the IP packet (TCP) or the UDP datagram ends.
    pub payload: &'a [u8],
}

impl KernelView<'_> {
    /// Whether the library's decoding of the same packet saw the same thing.
    pub fn matches(&self, d: &Decoded<'_>) -> bool {
        self.proto == d.proto
            && self.src == SocketAddr::new(d.src, d.sport)
            && self.dst == SocketAddr::new(d.dst, d.dport)
            && self.payload == d.payload
    }
}

fn be16(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]))
}

/// Parses `f` the way the probe does: Ethernet, then an 802.1ad or 802.1Q tag optionally
/// followed by an 802.1Q tag, then optionally a PPPoE session (PPP's IPv4 or IPv6, its
/// length within the frame) or an MPLS stack of at most eight labels, IPv4 (the whole
/// packet in the frame; no fragment offset) or IPv6 with up to four extension headers, then
/// TCP or UDP whose lengths fit the packet.
pub fn kernel_view(f: &[u8]) -> Option<KernelView<'_>> {
    const ETH_HLEN: usize = 14;
    let mut off = ETH_HLEN;
    let mut ethertype = be16(f, 12)?;
    if ethertype == 0x88a8 || ethertype == 0x8100 {
        ethertype = be16(f, off + 2)?;
        off += 4;
        if ethertype == 0x8100 {
            ethertype = be16(f, off + 2)?;
            off += 4;
        }
    }
    match ethertype {
        0x8864 => {
            let len = usize::from(be16(f, off + 4)?);
            if len < 2 || off + 6 + len > f.len() {
                return None;
            }
            ethertype = match be16(f, off + 6)? {
                0x0021 => 0x0800,
                0x0057 => 0x86dd,
                _ => return None,
            };
            off += 8;
        }
        0x8847 | 0x8848 => {
            let mut labels = 0;
            loop {
                let e = f.get(off..off + 4)?;
                off += 4;
                labels += 1;
                if e[2] & 1 != 0 {
                    break;
                }
                if labels == 8 {
                    return None;
                }
            }
            ethertype = match f.get(off)? >> 4 {
                4 => 0x0800,
                6 => 0x86dd,
                _ => return None,
            };
        }
        _ => {}
    }
    let (proto, src, dst, l4, ip_end) = match ethertype {
        0x0800 => {
            let h = f.get(off..off + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl || off + total > f.len() {
                return None;
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
            (h[9], src, dst, off + ihl, off + total)
        }
        0x86dd => {
            let h = f.get(off..off + 40)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let ip_end = off + 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
            if ip_end > f.len() {
                return None;
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[8..24]);
            let src = IpAddr::V6(Ipv6Addr::from(a));
            a.copy_from_slice(&h[24..40]);
            let dst = IpAddr::V6(Ipv6Addr::from(a));
            let (mut next, mut o) = (h[6], off + 40);
            for _ in 0..4 {
                let len = match next {
                    0 | 43 | 60 => {
                        let e = f.get(o..o + 2)?;
                        next = e[0];
                        (usize::from(e[1]) + 1) * 8
                    }
                    51 => {
                        let e = f.get(o..o + 2)?;
                        next = e[0];
                        (usize::from(e[1]) + 2) * 4
                    }
                    44 => {
                        let e = f.get(o..o + 4)?;
                        if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                            return None;
                        }
                        next = e[0];
                        8
                    }
                    _ => break,
                };
                o += len;
                if o > ip_end {
                    return None;
                }
            }
            (next, src, dst, o, ip_end)
        }
        _ => return None,
    };
    let (sport, dport) = (be16(f, l4)?, be16(f, l4 + 2)?);
    let (start, end) = match proto {
        TCP => {
            let doff = usize::from(*f.get(l4 + 12)? >> 4) * 4;
            f.get(l4..l4 + 20)?;
            if doff < 20 || l4 + doff > ip_end {
                return None;
            }
            (l4 + doff, ip_end)
        }
        UDP => {
            let ulen = usize::from(be16(f, l4 + 4)?);
            if ulen < 8 || l4 + ulen > ip_end {
                return None;
            }
            (l4 + 8, l4 + ulen)
        }
        _ => return None,
    };
    Some(KernelView {
        proto,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload: f.get(start..end)?,
    })
}

/// The probe's flow key for a library flow key whose `src` is the subscriber side.
pub fn kernel_key(k: &FlowKey) -> peerwarden_common::FlowKey {
    let mut key = peerwarden_common::FlowKey {
        sub_port: k.src.port(),
        remote_port: k.dst.port(),
        proto: k.proto,
        ..Default::default()
    };
    match (k.src.ip(), k.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            key.family = FAMILY_V4;
            key.sub_addr[..4].copy_from_slice(&s.octets());
            key.remote_addr[..4].copy_from_slice(&d.octets());
        }
        (s, d) => {
            key.family = FAMILY_V6;
            key.sub_addr = v6_bytes(s);
            key.remote_addr = v6_bytes(d);
        }
    }
    key
}

fn v6_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// The two captures that see what the gateway's probe sees at XDP ingress: switch port `gw`
/// in `<prefix>-sw` outbound (its frames enter `downlink`: up, and subscriber to subscriber
/// when hairpinned) and `eth0` in `<prefix>-net` outbound (its frames enter `uplink`: down).
/// Each frame once, whole, with offloads off on lab veths.
pub struct IngressCaptures {
    up: crate::lab::Capture,
    down: crate::lab::Capture,
}

impl IngressCaptures {
    /// Starts both with BPF `filter`, into `dir/up.pcap` and `dir/down.pcap`.
    pub fn start(lab: &crate::lab::Lab, filter: &str, dir: &Path) -> IngressCaptures {
        let start = |role: &str, iface: &str, file: &str| {
            crate::lab::Capture::start(&lab.netns(role), iface, "out", filter, &dir.join(file))
        };
        IngressCaptures {
            up: start("sw", "gw", "up.pcap"),
            down: start("net", "eth0", "down.pcap"),
        }
    }

    /// Lets tcpdump drain its buffer into the files (run at this test's priority, it lags
    /// on a busy machine), stops both, and panics unless neither dropped a packet: the
    /// ground truth is complete. Returns the frames (up, down).
    pub fn stop(self) -> (Vec<FlowFrame>, Vec<FlowFrame>) {
        let size = |c: &crate::lab::Capture| std::fs::metadata(&c.path).map_or(0, |m| m.len());
        crate::lab::until_still(
            || (size(&self.up), size(&self.down)),
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(30),
        );
        let (up, down) = (self.up.path.clone(), self.down.path.clone());
        assert_eq!(self.up.stop(), 0, "tcpdump (up) dropped packets");
        assert_eq!(self.down.stop(), 0, "tcpdump (down) dropped packets");
        (flow_frames(&up), flow_frames(&down))
    }
}
