//! The adversarial corpus of issue 11: BitTorrent disguised, segmented and reordered (it must
//! still be p2p), innocent sessions after an endpoint was poisoned by one subscriber (they must
//! keep their own label), and client-server traffic that looks like a P2P node from afar.
//!
//! Every case is generated here as Ethernet frames with their direction, in IPv4 and IPv6,
//! on lab addresses only (subscribers in 100.64.0.0/10 and 2001:db8:1::/48-style prefixes,
//! the internet side in 198.51.100.0/24, 203.0.113.0/24 and 2001:db8:ffff::/48), with ports
//! of its own, so that no case's verdict can leak into another's through an endpoint cache.
//! [`corpus`] lists them in the order they are to be replayed: poisoning happens before the
//! innocent sessions it targets, inside the same case.
//!
//! The runners (`tests/tests/labs/adversarial.rs`) replay the frames through `peerwarden classify`,
//! through the kernel program alone (`BPF_PROG_TEST_RUN`) and through the gateway of a
//! namespace lab, and compare each [`Check`]'s flow label with its exact expectation.
//!
//! | case | expected | what it defends against |
//! | --- | --- | --- |
//! | A1 tls-record-prefix | `bittorrent` | a 10-byte TLS application-data record before the client's handshake: a first guess (`tls`) taken as final |
//! | A1b tls-record-prefix-both-ways | `bittorrent` | the same prefix in both directions, so neither handshake is at stream offset 0 |
//! | A2 http-youtube-prefix | `bittorrent` | an HTTP GET with `Host: www.youtube.com` first: video-by-host taken as final |
//! | A3 tls-sni-netflix-prefix | `bittorrent` | a ClientHello with SNI `www.netflix.com` first: video-by-SNI taken as final |
//! | A4 handshake-1-byte-segments | `bittorrent` | both handshakes in 1-byte TCP segments: matching per packet instead of per stream |
//! | A5 handshake-out-of-order | `bittorrent` | both handshakes in 17-byte segments sent 2nd, 4th, 1st, 3rd: in-order-only reassembly |
//! | A6a/A6b overlap-* | `bittorrent` | each handshake sent twice at one sequence number, junk and real, in either order: trusting one copy |
//! | A7 mid-flow-after-tls-record | `bittorrent` | a flow picked up mid-way (no SYN) whose first bytes are a TLS record, then peer-wire messages |
//! | A8 utp-after-junk-datagram | `bittorrent.utp` | a junk datagram before the uTP SYN/STATE pair: deciding on the first datagram |
//! | A9 dht-query-response | `bittorrent.dht` | (baseline) a KRPC ping answered by a response |
//! | B0 unpoisoned-* | `vpn.wireguard`, `vpn.openvpn`, `ssh` | controls: the sessions of B1-B3 with endpoints nobody lied about (tells a missing detector from poisoning) |
//! | B1 poisoned-wireguard | `vpn.wireguard` | unicast LSD datagrams (50 from 100.64.1.10, 10 each from three others) and an unanswered handshake to a WireGuard endpoint, then two other subscribers' WireGuard sessions there: an endpoint cache that learns from one direction, from LSD, across transports |
//! | B2 poisoned-openvpn | `vpn.openvpn` | the same against an OpenVPN (UDP) endpoint |
//! | B3 poisoned-ssh | `ssh` | the same against an SSH server, plus LSD as a TCP stream's first bytes |
//! | C1 dns-fan-out | `dns` | one local port to 20 DNS servers on port 53: behaviour taken from a port count |
//! | C2 ntp-fan-out | `unknown` | the same to 20 NTP servers (no label of its own: `unknown`, never `p2p.behavioural`) |
//! | C3 radius-fan-out | `unknown` | the same to 20 RADIUS servers on port 1812: both ports at or above 1024, as the behaviour rule's high-port condition asks |
//! | C4 http-body-quotes-handshake | `http` | a web page whose body segment starts with `\x13BitTorrent protocol`, one direction only: a fixed-offset match on any packet |

mod protocols;
mod stream;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use peerwarden_common::Direction;

use protocols::{dns_answer, ntp_exchange, radius_exchange};
pub use protocols::{http_get_youtube, lsd_announce, tls_app_data_record};
use stream::{Tcp, Udp};

use crate::{
    packets::{Family, TcpFlags},
    payloads::{
        INFO_HASH, PEER_ID, dht_get_peers_query, dht_ping_query, dht_response_with_ip,
        peer_wire_handshake, peer_wire_message, tls_client_hello, utp_packet, utp_syn, utp_type,
    },
    rng::SplitMix64,
};

/// What a case attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// BitTorrent hidden behind another protocol's first bytes, or cut and shuffled.
    Disguise,
    /// One subscriber teaches the classifier a lie about an endpoint; others then use it.
    Poisoning,
    /// Client-server traffic shaped like P2P (fan-out) or quoting P2P bytes.
    Lookalike,
}

impl Group {
    /// Short name for the results table.
    pub fn name(self) -> &'static str {
        match self {
            Group::Disguise => "disguise",
            Group::Poisoning => "poisoning",
            Group::Lookalike => "look-alike",
        }
    }
}

/// A flow whose label is checked, and the label it must have.
#[derive(Clone, Debug)]
pub struct Check {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// The subscriber's end.
    pub sub: SocketAddr,
    /// The internet end.
    pub remote: SocketAddr,
    /// The exact label (DESIGN.md's report name, e.g. `bittorrent.utp`).
    pub expected: &'static str,
}

/// One frame of a case.
#[derive(Clone, Debug)]
pub struct Sent {
    /// `Up`: from the subscriber side (arrives on the gateway's downlink); `Down`: from the
    /// internet side (arrives on the uplink).
    pub dir: Direction,
    /// The whole Ethernet frame (untagged; the runner may rewrite the MAC addresses).
    pub frame: Vec<u8>,
    /// Whether the gateway runner must leave time for a deep-tier verdict after this frame
    /// (the verdict is applied on the flow's next packet). Bulk poisoning is not paced.
    pub paced: bool,
}

/// One adversarial case in one address family.
#[derive(Clone, Debug)]
pub struct Case {
    /// What it is, e.g. `A1 tls-record-prefix`.
    pub name: String,
    /// What it attacks.
    pub group: Group,
    /// IPv4 or IPv6.
    pub family: Family,
    /// Every frame, in the order to replay them.
    pub frames: Vec<Sent>,
    /// The flows whose labels are checked (several for fan-out and poisoning cases).
    pub checks: Vec<Check>,
    /// Whether the kernel's own fingerprints hold the evidence for the exact label, so the
    /// kernel alone (no deep tier) must give it too.
    pub kernel_alone: bool,
}

impl Case {
    fn new(name: &str, group: Group, family: Family) -> Case {
        Case {
            name: name.to_string(),
            group,
            family,
            frames: Vec::new(),
            checks: Vec::new(),
            kernel_alone: false,
        }
    }

    fn push(&mut self, dir: Direction, frame: Vec<u8>) {
        self.frames.push(Sent {
            dir,
            frame,
            paced: true,
        });
    }

    fn push_bulk(&mut self, dir: Direction, frame: Vec<u8>) {
        self.frames.push(Sent {
            dir,
            frame,
            paced: false,
        });
    }

    fn check(
        &mut self,
        proto: &'static str,
        sub: SocketAddr,
        remote: SocketAddr,
        expected: &'static str,
    ) {
        self.checks.push(Check {
            proto,
            sub,
            remote,
            expected,
        });
    }
}

/// An address of the lab plan in `family`: `v4` for IPv4, else `v6` (the interface id).
fn host(family: Family, v4: [u8; 4], v6: [u16; 8]) -> IpAddr {
    match family {
        Family::V4 => Ipv4Addr::from(v4).into(),
        Family::V6 => Ipv6Addr::from(v6).into(),
    }
}

/// A subscriber: 100.64.`net`.`id` / 2001:db8:`net`::`id` (hex digits as written).
fn subscriber(family: Family, net: u8, id: u8) -> IpAddr {
    host(
        family,
        [100, 64, net, id],
        [0x2001, 0xdb8, u16::from(net), 0, 0, 0, 0, u16::from(id)],
    )
}

/// An internet host: 198.51.100.`id` / 2001:db8:ffff::`id`.
fn internet(family: Family, id: u8) -> IpAddr {
    host(
        family,
        [198, 51, 100, id],
        [0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, u16::from(id)],
    )
}

/// A server in the second internet range: 203.0.113.`id` / 2001:db8:ffff:113::`id`.
fn server(family: Family, id: u8) -> IpAddr {
    host(
        family,
        [203, 0, 113, id],
        [0x2001, 0xdb8, 0xffff, 0x113, 0, 0, 0, u16::from(id)],
    )
}

/// The peer-wire messages after both handshakes: interested, unchoke, a request and the
/// start of its piece, so that a verdict has packets to land on in both directions.
fn peer_wire_tail(tcp: &mut Tcp, case: &mut Case) {
    let mut request = Vec::new();
    for v in [0u32, 0, 16384] {
        request.extend_from_slice(&v.to_be_bytes());
    }
    let mut piece = vec![0u8; 8];
    piece.extend((0..1000u32).map(|i| (i * 7) as u8));
    tcp.send(case, Direction::Up, &peer_wire_message(2, &[]));
    tcp.send(case, Direction::Down, &peer_wire_message(1, &[]));
    tcp.send(case, Direction::Up, &peer_wire_message(6, &request));
    tcp.send(case, Direction::Down, &peer_wire_message(7, &piece));
}

/// Ports of the `i`-th disguise case: distinct for every case, both ends high.
fn disguise_ends(family: Family, i: u16) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(subscriber(family, 2, 0x10), 40_000 + i * 10),
        SocketAddr::new(internet(family, 100), 20_000 + i * 10),
    )
}

/// A peer-wire connection whose client stream starts with `prefix` (its own segment), then
/// the handshake; the server answers with its handshake; peer-wire messages follow.
fn prefixed_handshake(name: &str, family: Family, i: u16, prefix: &[u8]) -> Case {
    prefixed_both(name, family, i, prefix, None)
}

/// As [`prefixed_handshake`], and the server's stream starts with `server_prefix` if given.
fn prefixed_both(
    name: &str,
    family: Family,
    i: u16,
    prefix: &[u8],
    server_prefix: Option<&[u8]>,
) -> Case {
    let mut case = Case::new(name, Group::Disguise, family);
    let (sub, remote) = disguise_ends(family, i);
    let mut tcp = Tcp::new(sub, remote);
    tcp.open(&mut case);
    tcp.send(&mut case, Direction::Up, prefix);
    tcp.send(
        &mut case,
        Direction::Up,
        &peer_wire_handshake(&INFO_HASH, &PEER_ID),
    );
    if let Some(p) = server_prefix {
        tcp.send(&mut case, Direction::Down, p);
    }
    tcp.send(
        &mut case,
        Direction::Down,
        &peer_wire_handshake(&INFO_HASH, b"-TR4050-mnopqrstuvwx"),
    );
    peer_wire_tail(&mut tcp, &mut case);
    case.check("tcp", sub, remote, "bittorrent");
    case
}

/// A peer-wire connection whose handshakes, both ways, are cut into `size`-byte segments
/// sent in `order` (a handshake answered in one piece would give the game away by itself).
fn cut_handshake(name: &str, family: Family, i: u16, size: usize, order: &[usize]) -> Case {
    let mut case = Case::new(name, Group::Disguise, family);
    let (sub, remote) = disguise_ends(family, i);
    let mut tcp = Tcp::new(sub, remote);
    tcp.open(&mut case);
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    tcp.send_pieces(&mut case, Direction::Up, &hs, size, order);
    let answer = peer_wire_handshake(&INFO_HASH, b"-TR4050-mnopqrstuvwx");
    tcp.send_pieces(&mut case, Direction::Down, &answer, size, order);
    peer_wire_tail(&mut tcp, &mut case);
    case.check("tcp", sub, remote, "bittorrent");
    case
}

/// Each handshake sent twice at the same sequence number, once as junk and once for real,
/// in the order given (both directions alike).
fn overlapping_handshake(name: &str, family: Family, i: u16, junk_first: bool) -> Case {
    let mut case = Case::new(name, Group::Disguise, family);
    let (sub, remote) = disguise_ends(family, i);
    let mut tcp = Tcp::new(sub, remote);
    tcp.open(&mut case);
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let junk = SplitMix64::new(0xad_0006 + u64::from(i)).bytes(hs.len());
    let (first, second) = if junk_first {
        (&junk, &hs)
    } else {
        (&hs, &junk)
    };
    tcp.send_twice(&mut case, Direction::Up, first, second);
    let answer = peer_wire_handshake(&INFO_HASH, b"-TR4050-mnopqrstuvwx");
    let junk = SplitMix64::new(0xad_0106 + u64::from(i)).bytes(answer.len());
    let (first, second) = if junk_first {
        (&junk, &answer)
    } else {
        (&answer, &junk)
    };
    tcp.send_twice(&mut case, Direction::Down, first, second);
    peer_wire_tail(&mut tcp, &mut case);
    case.check("tcp", sub, remote, "bittorrent");
    case
}

/// A peer-wire connection picked up mid-flow (no SYN, no handshake seen) whose first client
/// bytes are a TLS record, then peer-wire messages both ways.
fn mid_flow_after_prefix(family: Family, i: u16) -> Case {
    let mut case = Case::new("A7 mid-flow-after-tls-record", Group::Disguise, family);
    let (sub, remote) = disguise_ends(family, i);
    let mut tcp = Tcp::new(sub, remote);
    let requests = |from: u32| -> Vec<u8> {
        (from..from + 3)
            .flat_map(|index| {
                let mut b = Vec::new();
                for v in [index, 0, 16384] {
                    b.extend_from_slice(&v.to_be_bytes());
                }
                peer_wire_message(6, &b)
            })
            .collect()
    };
    let haves = |from: u32| -> Vec<u8> {
        (from..from + 3)
            .flat_map(|k| peer_wire_message(4, &k.to_be_bytes()))
            .collect()
    };
    tcp.send(&mut case, Direction::Up, &tls_app_data_record());
    tcp.send(&mut case, Direction::Up, &requests(10));
    tcp.send(&mut case, Direction::Down, &haves(40));
    tcp.send(&mut case, Direction::Up, &requests(13));
    tcp.send(&mut case, Direction::Down, &haves(43));
    tcp.send(&mut case, Direction::Up, &requests(16));
    tcp.send(&mut case, Direction::Down, &haves(46));
    case.check("tcp", sub, remote, "bittorrent");
    case
}

/// uTP after a junk datagram on the same 5-tuple: SYN, STATE with the paired connection id,
/// then the peer-wire handshakes as uTP data.
fn utp_after_junk(family: Family, i: u16) -> Case {
    let mut case = Case::new("A8 utp-after-junk-datagram", Group::Disguise, family);
    let (sub, remote) = disguise_ends(family, i);
    let u = Udp { sub, remote };
    let recv_id: u16 = 0x3a51;
    case.push(
        Direction::Up,
        u.frame(Direction::Up, &SplitMix64::new(0xad_0008).bytes(40)),
    );
    case.push(Direction::Up, u.frame(Direction::Up, &utp_syn(recv_id)));
    case.push(
        Direction::Down,
        u.frame(
            Direction::Down,
            &utp_packet(utp_type::STATE, recv_id, 1200, 0x7001, 1, &[]),
        ),
    );
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    case.push(
        Direction::Up,
        u.frame(
            Direction::Up,
            &utp_packet(utp_type::DATA, recv_id + 1, 900, 2, 0x7001, &hs),
        ),
    );
    let hs2 = peer_wire_handshake(&INFO_HASH, b"-TR4050-mnopqrstuvwx");
    case.push(
        Direction::Down,
        u.frame(
            Direction::Down,
            &utp_packet(utp_type::DATA, recv_id, 800, 0x7002, 2, &hs2),
        ),
    );
    case.push(
        Direction::Up,
        u.frame(
            Direction::Up,
            &utp_packet(utp_type::STATE, recv_id + 1, 700, 3, 0x7002, &[]),
        ),
    );
    case.push(
        Direction::Down,
        u.frame(
            Direction::Down,
            &utp_packet(utp_type::STATE, recv_id, 600, 0x7003, 3, &[]),
        ),
    );
    case.check("udp", sub, remote, "bittorrent.utp");
    // uTP ids pairing across directions is a kernel rule.
    case.kernel_alone = true;
    case
}

/// A DHT ping answered by a response, then a get_peers.
fn dht_exchange(family: Family, i: u16) -> Case {
    let mut case = Case::new("A9 dht-query-response", Group::Disguise, family);
    let (sub, remote) = disguise_ends(family, i);
    let u = Udp { sub, remote };
    let node: [u8; 20] = *b"abcdefghij0123456789";
    let other: [u8; 20] = *b"mnopqrstuv9876543210";
    case.push(
        Direction::Up,
        u.frame(Direction::Up, &dht_ping_query(&node)),
    );
    case.push(
        Direction::Down,
        u.frame(Direction::Down, &dht_response_with_ip(sub, &other)),
    );
    case.push(
        Direction::Up,
        u.frame(Direction::Up, &dht_get_peers_query(&node, &INFO_HASH)),
    );
    case.push(
        Direction::Down,
        u.frame(Direction::Down, &dht_response_with_ip(sub, &other)),
    );
    case.check("udp", sub, remote, "bittorrent.dht");
    // KRPC in canonical key order is a kernel fingerprint.
    case.kernel_alone = true;
    case
}

/// Every disguise case in `family`.
pub fn disguise(family: Family) -> Vec<Case> {
    let hs_len = peer_wire_handshake(&INFO_HASH, &PEER_ID).len();
    let one_byte: Vec<usize> = (0..hs_len).collect();
    vec![
        prefixed_handshake("A1 tls-record-prefix", family, 1, &tls_app_data_record()),
        prefixed_handshake("A2 http-youtube-prefix", family, 2, &http_get_youtube()),
        prefixed_handshake(
            "A3 tls-sni-netflix-prefix",
            family,
            3,
            &tls_client_hello("www.netflix.com"),
        ),
        cut_handshake("A4 handshake-1-byte-segments", family, 4, 1, &one_byte),
        cut_handshake("A5 handshake-out-of-order", family, 5, 17, &[1, 3, 0, 2]),
        overlapping_handshake("A6a overlap-junk-then-handshake", family, 6, true),
        overlapping_handshake("A6b overlap-handshake-then-junk", family, 7, false),
        prefixed_both(
            "A1b tls-record-prefix-both-ways",
            family,
            11,
            &tls_app_data_record(),
            Some(&tls_app_data_record()),
        ),
        mid_flow_after_prefix(family, 8),
        utp_after_junk(family, 9),
        dht_exchange(family, 10),
    ]
}

/// The endpoints the poisoners lie about: a WireGuard server, an SSH server, an OpenVPN
/// server.
fn wireguard_server(family: Family) -> SocketAddr {
    SocketAddr::new(internet(family, 20), 51820)
}
fn ssh_server(family: Family) -> SocketAddr {
    SocketAddr::new(internet(family, 21), 22)
}
fn openvpn_server(family: Family) -> SocketAddr {
    SocketAddr::new(internet(family, 22), 1194)
}

/// Subscribers that poison: A (100.64.1.10, as in the issue) sends 50 of each lie, three
/// others 10 each.
const POISONERS: [(u8, usize); 4] = [(0x10, 50), (0x11, 10), (0x12, 10), (0x13, 10)];
/// The innocent subscribers B and C.
const INNOCENTS: [u8; 2] = [0x40, 0x41];

/// LSD datagrams from every poisoner to `target` (each from its own port), then one
/// BitTorrent handshake over TCP from A to `target`'s port that nobody answers, and for TCP
/// services an LSD announce as a TCP stream's first bytes.
fn poison(case: &mut Case, family: Family, target: SocketAddr, tcp_service: bool, base_port: u16) {
    for (id, count) in POISONERS {
        let addr = subscriber(family, 1, id);
        for k in 0..count {
            let u = Udp {
                sub: SocketAddr::new(addr, base_port + k as u16),
                remote: target,
            };
            case.push_bulk(
                Direction::Up,
                u.frame(Direction::Up, &lsd_announce(target.port())),
            );
        }
    }
    let a = subscriber(family, 1, 0x10);
    let mut hs = Tcp::new(SocketAddr::new(a, base_port + 100), target);
    case.push(
        Direction::Up,
        hs.segment(Direction::Up, TcpFlags::SYN, hs.next[0], &[]),
    );
    hs.next[0] += 1;
    let f = hs.segment(
        Direction::Up,
        TcpFlags::PSH | TcpFlags::ACK,
        hs.next[0],
        &peer_wire_handshake(&INFO_HASH, &PEER_ID),
    );
    case.push(Direction::Up, f);
    if tcp_service {
        let mut lsd = Tcp::new(SocketAddr::new(a, base_port + 101), target);
        lsd.open(case);
        lsd.send(case, Direction::Up, &lsd_announce(target.port()));
        lsd.send(case, Direction::Up, &lsd_announce(target.port()));
    }
}

/// A UDP session's messages framed in `u`.
fn udp_session(case: &mut Case, u: Udp, messages: Vec<(Direction, Vec<u8>)>) {
    for (dir, m) in messages {
        case.push(dir, u.frame(dir, &m));
    }
}

/// A TCP session: the connection's opening, then its messages as one segment each.
fn tcp_session(case: &mut Case, tcp: &mut Tcp, messages: Vec<(Direction, Vec<u8>)>) {
    tcp.open(case);
    for (dir, m) in messages {
        tcp.send(case, dir, &m);
    }
}

/// Every poisoning case in `family`: the lies first, then two innocent subscribers' sessions
/// with the endpoint lied about.
pub fn poisoning(family: Family) -> Vec<Case> {
    let mut out = Vec::new();
    // Controls: the same sessions with endpoints nobody lied about, so that a failure of
    // B1-B3 tells a missing detector (B0 fails too) from a poisoned one (only B1-B3 fail).
    let mut clean = Case::new("B0 unpoisoned-wireguard", Group::Poisoning, family);
    let sub = subscriber(family, 1, INNOCENTS[0]);
    let u = Udp {
        sub: SocketAddr::new(sub, 40_100),
        remote: SocketAddr::new(internet(family, 23), 51820),
    };
    udp_session(&mut clean, u, protocols::wireguard(0xb0));
    clean.check("udp", u.sub, u.remote, "vpn.wireguard");
    out.push(clean);
    let mut clean = Case::new("B0 unpoisoned-openvpn", Group::Poisoning, family);
    let u = Udp {
        sub: SocketAddr::new(sub, 40_101),
        remote: SocketAddr::new(internet(family, 24), 1194),
    };
    udp_session(&mut clean, u, protocols::openvpn(0xb0));
    clean.check("udp", u.sub, u.remote, "vpn.openvpn");
    out.push(clean);
    let mut clean = Case::new("B0 unpoisoned-ssh", Group::Poisoning, family);
    let (s, r) = (
        SocketAddr::new(sub, 40_102),
        SocketAddr::new(internet(family, 25), 22),
    );
    tcp_session(&mut clean, &mut Tcp::new(s, r), protocols::ssh(0xb0));
    clean.check("tcp", s, r, "ssh");
    out.push(clean);

    let mut wg = Case::new("B1 poisoned-wireguard", Group::Poisoning, family);
    let w = wireguard_server(family);
    poison(&mut wg, family, w, false, 30_000);
    for (k, id) in INNOCENTS.into_iter().enumerate() {
        let u = Udp {
            sub: SocketAddr::new(subscriber(family, 1, id), 41_000 + k as u16),
            remote: w,
        };
        udp_session(&mut wg, u, protocols::wireguard(0xb1 + k as u64));
        wg.check("udp", u.sub, u.remote, "vpn.wireguard");
    }
    out.push(wg);

    let mut ovpn = Case::new("B2 poisoned-openvpn", Group::Poisoning, family);
    let o = openvpn_server(family);
    poison(&mut ovpn, family, o, false, 31_000);
    for (k, id) in INNOCENTS.into_iter().enumerate() {
        let u = Udp {
            sub: SocketAddr::new(subscriber(family, 1, id), 42_000 + k as u16),
            remote: o,
        };
        udp_session(&mut ovpn, u, protocols::openvpn(0xb2 + k as u64));
        ovpn.check("udp", u.sub, u.remote, "vpn.openvpn");
    }
    out.push(ovpn);

    let mut ssh = Case::new("B3 poisoned-ssh", Group::Poisoning, family);
    let s = ssh_server(family);
    poison(&mut ssh, family, s, true, 32_000);
    for (k, id) in INNOCENTS.into_iter().enumerate() {
        let sub = SocketAddr::new(subscriber(family, 1, id), 43_000 + k as u16);
        let mut tcp = Tcp::new(sub, s);
        tcp_session(&mut ssh, &mut tcp, protocols::ssh(0xb3 + k as u64));
        ssh.check("tcp", sub, s, "ssh");
    }
    out.push(ssh);
    out
}

/// One local port talking to 20 servers on one well-known port, each a request and its
/// answer. `exchange(k)` gives the request and the answer for server `k`.
fn fan_out(
    name: &str,
    family: Family,
    local_port: u16,
    first_server: u8,
    port: u16,
    expected: &'static str,
    exchange: impl Fn(u16) -> (Vec<u8>, Vec<u8>),
) -> Case {
    let mut case = Case::new(name, Group::Lookalike, family);
    let sub = SocketAddr::new(subscriber(family, 3, 0x10), local_port);
    for k in 0..20u8 {
        let u = Udp {
            sub,
            remote: SocketAddr::new(server(family, first_server + k), port),
        };
        let (req, resp) = exchange(u16::from(k));
        case.push(Direction::Up, u.frame(Direction::Up, &req));
        case.push(Direction::Down, u.frame(Direction::Down, &resp));
        case.check("udp", u.sub, u.remote, expected);
    }
    case
}

/// A web page over plain HTTP whose body quotes the peer-wire protocol string at the start
/// of a segment, in the server's direction only.
fn http_quoting_bittorrent(family: Family) -> Case {
    let mut case = Case::new("C4 http-body-quotes-handshake", Group::Lookalike, family);
    let sub = SocketAddr::new(subscriber(family, 3, 0x10), 44_080);
    let remote = SocketAddr::new(server(family, 200), 80);
    let mut tcp = Tcp::new(sub, remote);
    tcp.open(&mut case);
    tcp.send(
        &mut case,
        Direction::Up,
        b"GET /wiki/BitTorrent HTTP/1.1\r\nHost: wiki.example.org\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    );
    let mut body = b"\x13BitTorrent protocol".to_vec();
    body.extend_from_slice(
        b" is how a peer-wire handshake starts: a length byte of 19, then the protocol name, \
          eight reserved bytes, the info hash and the peer id.</p></body></html>\n",
    );
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.send(&mut case, Direction::Down, head.as_bytes());
    tcp.send(&mut case, Direction::Down, &body);
    tcp.send(
        &mut case,
        Direction::Up,
        b"GET /favicon.ico HTTP/1.1\r\nHost: wiki.example.org\r\nUser-Agent: curl/8.5.0\r\n\r\n",
    );
    tcp.send(
        &mut case,
        Direction::Down,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    );
    case.check("tcp", sub, remote, "http");
    case
}

/// Every look-alike case in `family`.
pub fn lookalikes(family: Family) -> Vec<Case> {
    vec![
        fan_out("C1 dns-fan-out", family, 53_053, 101, 53, "dns", |k| {
            let q = crate::payloads::dns_query(0x1000 + k, &format!("host{k}.example.com"));
            let a = dns_answer(&q);
            (q, a)
        }),
        fan_out(
            "C2 ntp-fan-out",
            family,
            50_123,
            121,
            123,
            "unknown",
            ntp_exchange,
        ),
        fan_out(
            "C3 radius-fan-out",
            family,
            51_812,
            141,
            1812,
            "unknown",
            radius_exchange,
        ),
        http_quoting_bittorrent(family),
    ]
}

/// The whole corpus, in replay order: every case in IPv4, then every case in IPv6.
pub fn corpus() -> Vec<Case> {
    let mut out = Vec::new();
    for family in Family::ALL {
        out.extend(disguise(family));
        out.extend(poisoning(family));
        out.extend(lookalikes(family));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_checked_flow_is_distinct_and_every_case_has_frames() {
        let corpus = corpus();
        let mut seen = HashSet::new();
        for case in &corpus {
            assert!(!case.frames.is_empty(), "{}: no frames", case.name);
            assert!(!case.checks.is_empty(), "{}: nothing checked", case.name);
            for c in &case.checks {
                assert!(
                    seen.insert((c.proto, c.sub, c.remote)),
                    "{}: flow {} {} -> {} checked twice",
                    case.name,
                    c.proto,
                    c.sub,
                    c.remote
                );
            }
        }
        assert_eq!(corpus.len(), 2 * (11 + 6 + 4));
    }

    #[test]
    fn wireguard_messages_have_their_sizes() {
        let mut case = Case::new("t", Group::Poisoning, Family::V4);
        let u = Udp {
            sub: "100.64.1.40:1".parse().expect("addr"),
            remote: "198.51.100.20:51820".parse().expect("addr"),
        };
        udp_session(&mut case, u, protocols::wireguard(1));
        // Ethernet 14 + IPv4 20 + UDP 8 before the message.
        assert_eq!(case.frames[0].frame.len() - 42, 148);
        assert_eq!(case.frames[1].frame.len() - 42, 92);
        assert_eq!(case.frames[0].frame[42..46], [1, 0, 0, 0]);
        assert_eq!(
            case.frames[1].frame[42 + 8..42 + 12],
            case.frames[0].frame[42 + 4..42 + 8]
        );
    }

    #[test]
    fn lsd_announce_is_bep14() {
        let p = String::from_utf8(lsd_announce(51820)).expect("ascii");
        assert!(p.starts_with("BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51820\r\nInfohash: 123456789abcdef0"));
        assert!(p.ends_with("\r\n\r\n"));
    }
}
