//! Case generators: every header cut, bogus lengths and offsets, fragments, options,
//! tunnels and deep VLAN stacks, random bytes and damage.

use super::*;

/// Every tag layout: none, 802.1Q, QinQ (802.1ad + 802.1Q) and two 802.1Q tags.
const VLANS: [Vlan; 4] = [
    Vlan::Untagged,
    Vlan::Dot1q(100),
    Vlan::QinQ {
        outer: 200,
        inner: 300,
    },
    Vlan::DoubleDot1q {
        outer: 400,
        inner: 500,
    },
];

/// Hands out subscriber ports, so that each base frame is a flow of its own.
struct Ports(u16);

impl Ports {
    fn next(&mut self) -> u16 {
        self.0 += 1;
        self.0
    }
}

/// A well-formed frame the damage starts from, with where its headers lie.
struct Base {
    what: String,
    dir: Direction,
    frame: Vec<u8>,
    l3: usize,
    l4: usize,
    family: Family,
    proto: u8,
}

/// The handshake over TCP and the tracker connect over UDP in every family, tag layout and
/// direction, plus IPv4 with a full 40 bytes of options and IPv6 with a hop-by-hop header.
fn bases(ports: &mut Ports) -> Vec<Base> {
    let handshake = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let connect = udp_tracker_connect(UDP_TRACKER_MAGIC, 0x0bad_f00d);
    let mut out = Vec::new();
    for family in Family::ALL {
        for vlan in VLANS {
            for dir in [UP, DOWN] {
                let c = Conversation::new(family, ports.next(), 6881).with_vlan(vlan);
                let (l3, l4) = (c.l3_offset(), c.l4_offset());
                let what = |w: &str| format!("{w} {family:?} {vlan:?}");
                out.push(Base {
                    what: what("handshake"),
                    dir,
                    frame: c.tcp(dir, PSH_ACK, &handshake),
                    l3,
                    l4,
                    family,
                    proto: PROTO_TCP,
                });
                let c = c.with_sub_port(ports.next());
                out.push(Base {
                    what: what("tracker connect"),
                    dir,
                    frame: c.udp(dir, &connect),
                    l3,
                    l4,
                    family,
                    proto: PROTO_UDP,
                });
                let c = c.with_sub_port(ports.next());
                let (src, dst) = c.ends(dir);
                let seg = tcp_segment(src, dst, PSH_ACK, &handshake);
                let (frame, l4) = match (src.ip(), dst.ip()) {
                    (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                        let opts = [1u8; 40]; // 40 bytes of NOPs: IHL 15
                        let ip = ipv4_with_options(s, d, IpNextHeaderProtocols::Tcp, &opts, &seg);
                        (ethernet(vlan, EtherTypes::Ipv4, &ip), l4 + 40)
                    }
                    _ => (
                        ipv6_with_hop_by_hop(vlan, src, dst, PSH_ACK, &handshake),
                        l4 + 8,
                    ),
                };
                out.push(Base {
                    what: what("handshake behind IP options"),
                    dir,
                    frame,
                    l3,
                    l4,
                    family,
                    proto: PROTO_TCP,
                });
            }
        }
    }
    out
}

#[test]
fn every_header_cut_at_every_length_passes_and_counts_as_malformed() {
    let mut ports = Ports(10_000);
    let mut cases = Vec::new();
    for b in bases(&mut ports) {
        // Shortest first, the whole frame last: each cut is a frame of its own. The kernel
        // runs no XDP program on less than an Ethernet header (test_run refuses it with
        // EINVAL, as no driver delivers it), so cuts start at 14 bytes: the ethertype.
        for len in ETH_HLEN..=b.frame.len() {
            cases.push(Case::new(
                format!("{} cut to {len}", b.what),
                b.dir,
                b.frame[..len].to_vec(),
            ));
        }
    }
    let tally = run_all("cuts", &cases);
    // Every cut but the whole frame breaks a length the headers claim.
    let bases = cases
        .iter()
        .filter(|c| c.what.ends_with(" cut to 14"))
        .count();
    assert_eq!(
        tally.by_stat.get("flow"),
        Some(&bases),
        "only whole frames make flows"
    );
    assert_eq!(
        tally.by_stat.get("malformed").copied(),
        Some(cases.len() - bases)
    );
    // The whole handshakes are labelled: what kept the cuts unlabelled was the damage.
    assert_eq!(
        tally.labelled.get(&Label::Bittorrent),
        Some(&(bases * 2 / 3))
    );
}

/// `frame` with the 16-bit field at `off` set to `v`.
fn with_u16(frame: &[u8], off: usize, v: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[off..off + 2].copy_from_slice(&v.to_be_bytes());
    f
}

/// Values around `actual` and the extremes, for a length field.
fn length_sweep(actual: usize, rng: &mut SplitMix64) -> Vec<u16> {
    let mut v: Vec<u16> = vec![0, 1, 7, 8, 19, 20, 39, 40, 0x7fff, 0xffff];
    for d in 0..=3 {
        v.push(actual.saturating_sub(d) as u16);
        v.push((actual + d) as u16);
    }
    v.extend((0..8).map(|_| rng.range(0, 0xffff) as u16));
    v
}

#[test]
fn bogus_lengths_and_offsets_pass_and_never_label() {
    let mut rng = SplitMix64::new(0x6b6f_6775_7321);
    let mut ports = Ports(20_000);
    let mut cases = Vec::new();
    for b in bases(&mut ports) {
        let f = &b.frame;
        let mut push = |what: String, frame: Vec<u8>| {
            cases.push(Case::new(format!("{}: {what}", b.what), b.dir, frame));
        };
        match b.family {
            Family::V4 => {
                for ihl in 0..=15u8 {
                    let mut g = f.clone();
                    g[b.l3] = 0x40 | ihl;
                    fix_ipv4_checksum(&mut g, b.l3);
                    push(format!("IHL {ihl}"), g);
                }
                for version in [0u8, 5, 6, 15] {
                    let mut g = f.clone();
                    g[b.l3] = (version << 4) | (g[b.l3] & 0x0f);
                    push(format!("IP version {version}"), g);
                }
                for total in length_sweep(f.len() - b.l3, &mut rng) {
                    let mut g = with_u16(f, b.l3 + 2, total);
                    fix_ipv4_checksum(&mut g, b.l3);
                    push(format!("total length {total}"), g);
                }
            }
            Family::V6 => {
                for plen in length_sweep(f.len() - b.l3 - 40, &mut rng) {
                    push(
                        format!("payload length {plen}"),
                        with_u16(f, b.l3 + 4, plen),
                    );
                }
                if b.l4 > b.l3 + 40 {
                    // The hop-by-hop header's length byte, every value.
                    for hlen in 0..=255u8 {
                        let mut g = f.clone();
                        g[b.l3 + 41] = hlen;
                        push(format!("hop-by-hop length {hlen}"), g);
                    }
                }
            }
        }
        match b.proto {
            PROTO_TCP => {
                for doff in 0..=15u8 {
                    let mut g = f.clone();
                    g[b.l4 + 12] = (doff << 4) | (g[b.l4 + 12] & 0x0f);
                    push(format!("TCP data offset {doff}"), g);
                }
            }
            _ => {
                for ulen in length_sweep(f.len() - b.l4, &mut rng) {
                    push(format!("UDP length {ulen}"), with_u16(f, b.l4 + 4, ulen));
                }
            }
        }
        // Padding after a whole packet (a NIC pads short frames; some pad more).
        let mut g = pad_to_minimum(f);
        let pad = rng.range(1, 64);
        g.extend_from_slice(&rng.bytes(pad));
        push("trailing padding".into(), g);
    }
    let tally = run_all("lengths", &cases);
    for label in tally.labelled.keys() {
        assert!(
            matches!(label, Label::Bittorrent | Label::BittorrentTracker),
            "a damaged frame was labelled {label:?}"
        );
    }
}

/// An Ethernet frame with the given tag TPIDs (outermost first) before `ethertype`.
fn tagged(tpids: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = ethernet(Vlan::Untagged, EtherType(ethertype), &[]);
    f.truncate(12);
    for (i, tpid) in tpids.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

#[test]
fn fragments_options_tunnels_and_deep_vlan_stacks_pass_unlabelled_or_as_their_flow() {
    let mut rng = SplitMix64::new(0x7475_6e6e_656c);
    let handshake = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let mut cases = Vec::new();
    let mut port = 30_000u16;
    for dir in [UP, DOWN] {
        for family in Family::ALL {
            port += 1;
            let c = Conversation::new(family, port, 6881);
            let (src, dst) = c.ends(dir);
            let seg = tcp_segment(src, dst, PSH_ACK, &handshake);
            let inner = c.tcp(dir, PSH_ACK, &handshake);
            let inner_ip = inner[14..].to_vec();
            let ip = |proto: u8, l4: &[u8]| -> Vec<u8> {
                ip_frame(
                    Vlan::Untagged,
                    src.ip(),
                    dst.ip(),
                    IpNextHeaderProtocol(proto),
                    l4,
                )
            };
            // Fragments: the first carries the ports (a flow), later ones do not.
            for (offset, more) in [(0u16, true), (1, true), (8, false), (0x1fff, false)] {
                let f = match (src.ip(), dst.ip()) {
                    (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => ipv4_fragment(
                        Vlan::Untagged,
                        s,
                        d,
                        IpNextHeaderProtocols::Tcp,
                        offset,
                        more,
                        &seg,
                    ),
                    (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => ipv6_fragment(
                        Vlan::Untagged,
                        s,
                        d,
                        IpNextHeaderProtocols::Tcp,
                        offset,
                        more,
                        &seg,
                    ),
                    _ => unreachable!("one family"),
                };
                cases.push(Case::new(
                    format!("{family:?} fragment at {offset}"),
                    dir,
                    f,
                ));
            }
            // Tunnels the probe does not open: GRE, IP-in-IP, IPv6-in-IP, ESP, SCTP.
            let mut gre = vec![0, 0, 0x08, 0x00];
            gre.extend_from_slice(&inner_ip);
            for (name, proto, l4) in [
                ("GRE", 47u8, gre.clone()),
                ("IP-in-IP", 4, inner_ip.clone()),
                ("IPv6-in-IP", 41, inner_ip.clone()),
                ("ESP", 50, rng.bytes(80)),
                ("SCTP", 132, rng.bytes(60)),
            ] {
                cases.push(Case::new(format!("{family:?} {name}"), dir, ip(proto, &l4)));
            }
            // UDP tunnels: a flow on the outer ports, not labelled by the inner handshake.
            let mut vxlan = vec![0x08, 0, 0, 0, 0, 0x12, 0x34, 0];
            vxlan.extend_from_slice(&inner);
            let mut gtp = vec![0x30, 0xff];
            gtp.extend_from_slice(&(inner_ip.len() as u16).to_be_bytes());
            gtp.extend_from_slice(&[0, 0, 0, 1]);
            gtp.extend_from_slice(&inner_ip);
            for (name, tport, body) in [("VXLAN", 4789u16, vxlan), ("GTP-U", 2152, gtp)] {
                port += 1;
                let (mut s, mut d) = (src, dst);
                s.set_port(if dir == UP { port } else { tport });
                d.set_port(if dir == UP { tport } else { port });
                let l4 = udp_datagram(s, d, &body);
                cases.push(Case::new(format!("{family:?} {name}"), dir, ip(17, &l4)));
            }
            // IPv4 options of every length, NOPs and random bytes: skipped to the payload.
            if let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) {
                for words in 1..=10usize {
                    for random in [false, true] {
                        port += 1;
                        let (s2, d2) = c.with_sub_port(port).ends(dir);
                        let seg = tcp_segment(s2, d2, PSH_ACK, &handshake);
                        let opts = if random {
                            rng.bytes(words * 4)
                        } else {
                            vec![1; words * 4]
                        };
                        let ip = ipv4_with_options(s, d, IpNextHeaderProtocols::Tcp, &opts, &seg);
                        let what =
                            format!("{} bytes of IPv4 options (random: {random})", words * 4);
                        cases.push(Case::new(
                            what,
                            dir,
                            ethernet(Vlan::Untagged, EtherTypes::Ipv4, &ip),
                        ));
                    }
                }
            }
            // IPv6 extension chains from one to six headers (the probe follows four).
            if let (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) = (src.ip(), dst.ip()) {
                for depth in 1..=6usize {
                    port += 1;
                    let (s2, d2) = c.with_sub_port(port).ends(dir);
                    let mut body = tcp_segment(s2, d2, PSH_ACK, &handshake);
                    let mut next = PROTO_TCP;
                    for k in 0..depth {
                        let ty = [60u8, 0, 43, 51, 60, 60][k];
                        let mut ext = if ty == 51 {
                            vec![next, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
                        } else {
                            vec![next, 0, 1, 4, 0, 0, 0, 0]
                        };
                        ext.extend_from_slice(&body);
                        body = ext;
                        next = ty;
                    }
                    let ip =
                        peerwarden_tests::packets::ipv6(s, d, IpNextHeaderProtocol(next), &body);
                    let what = format!("IPv6 with {depth} extension headers");
                    cases.push(Case::new(
                        what,
                        dir,
                        ethernet(Vlan::Untagged, EtherTypes::Ipv6, &ip),
                    ));
                }
            }
            // Tag stacks past what the probe parses, and link types it does not.
            for tpids in [
                &[0x8100u16, 0x8100, 0x8100][..],
                &[0x88a8, 0x88a8],
                &[0x88a8, 0x8100, 0x8100],
                &[0x9100],
                &[0x8100, 0x88a8],
            ] {
                let et = if family == Family::V4 { 0x0800 } else { 0x86dd };
                let what = format!("tags {tpids:04x?} around {family:?}");
                cases.push(Case::new(what, dir, tagged(tpids, et, &inner_ip)));
            }
            for et in [0x8847u16, 0x8864, 0x0806, 0x88cc, 0x0000, 0xffff] {
                cases.push(Case::new(
                    format!("ethertype {et:04x}"),
                    dir,
                    tagged(&[], et, &inner_ip),
                ));
            }
        }
    }
    let tally = run_all("tunnels", &cases);
    for label in tally.labelled.keys() {
        assert_eq!(
            *label,
            Label::Bittorrent,
            "only plain handshakes are labelled"
        );
    }
    assert!(tally.by_stat.get("fragments").copied().unwrap_or(0) >= 12);
    assert!(tally.by_stat.get("non_tcp_udp").copied().unwrap_or(0) >= 20);
}

#[test]
fn random_bytes_and_random_damage_pass_and_label_nothing() {
    let mut rng = SplitMix64::new(0x6761_7262_6167);
    let mut ports = Ports(40_000);
    let bases = bases(&mut ports);
    let mut cases = Vec::new();
    for n in 0..2500 {
        let dir = if n % 2 == 0 { UP } else { DOWN };
        // Bytes and nothing else.
        let len = rng.range(ETH_HLEN, 256);
        cases.push(Case::new("random bytes", dir, rng.bytes(len)));
        // An Ethernet header and an IP-ish ethertype, then random bytes; every fourth with an
        // IPv4 or IPv6 version nibble and a TCP or UDP protocol, to get past the first checks.
        let et = [0x0800u16, 0x86dd, 0x8100, 0x88a8][rng.range(0, 3)];
        let len = rng.range(0, 200);
        let mut f = tagged(&[], et, &rng.bytes(len));
        if n % 4 == 0 && f.len() > 40 {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[23] = [PROTO_TCP, PROTO_UDP][rng.range(0, 1)];
        }
        cases.push(Case::new(format!("ethertype {et:04x} then random"), dir, f));
        // A well-formed frame with 1 to 8 random bytes overwritten.
        let b = &bases[rng.range(0, bases.len() - 1)];
        let mut g = b.frame.clone();
        for _ in 0..rng.range(1, 8) {
            let at = rng.range(0, g.len() - 1);
            g[at] = rng.next_u64() as u8;
        }
        cases.push(Case::new(format!("{} damaged", b.what), b.dir, g));
    }
    let tally = run_all("random", &cases);
    // Only damaged frames whose payload survived may carry a label; random bytes never do.
    for label in tally.labelled.keys() {
        assert!(
            matches!(label, Label::Bittorrent | Label::BittorrentTracker),
            "random bytes labelled {label:?}"
        );
    }
}
