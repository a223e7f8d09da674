//! The adversarial corpus (issue 11), generated here, apart from the golden corpus: every
//! disguise, segmentation, poisoning and innocent case the issue names, in IPv4 and IPv6,
//! each with its exact label, through the engine and through `classify_capture` on a pcap.
//! docs/classifier.md ("Adversaries") says what each case defends against.

mod adversary;

use adversary::{Fam, Flow, after_handshake, check, handshake, net, random, run_engine, sub};
use peerwarden_classifier::{Direction, Engine, EngineConfig, PacketMeta};
use peerwarden_common::Confidence;

const FAMS: [Fam; 2] = [Fam::V4, Fam::V6];

fn lsd_datagram() -> Vec<u8> {
    b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\n\r\n\r\n".to_vec()
}

fn wg_init(sender: u32) -> Vec<u8> {
    let mut p = random(148, sender);
    p[..4].copy_from_slice(&[1, 0, 0, 0]);
    p[4..8].copy_from_slice(&sender.to_le_bytes());
    p
}

fn wg_response(sender: u32, receiver: u32) -> Vec<u8> {
    let mut p = random(92, sender);
    p[..4].copy_from_slice(&[2, 0, 0, 0]);
    p[4..8].copy_from_slice(&sender.to_le_bytes());
    p[8..12].copy_from_slice(&receiver.to_le_bytes());
    p
}

fn wg_data(receiver: u32, counter: u64) -> Vec<u8> {
    let mut p = random(16 + 16 * 20 + 16, receiver ^ counter as u32);
    p[..4].copy_from_slice(&[4, 0, 0, 0]);
    p[4..8].copy_from_slice(&receiver.to_le_bytes());
    p[8..16].copy_from_slice(&counter.to_le_bytes());
    p
}

/// A full WireGuard session: handshake, then transport data both ways.
fn wireguard(f: Flow, i: u32) -> Flow {
    let (a, b) = (0x100 + i, 0x9000 + i);
    let mut f = f.send(true, &wg_init(a)).send(false, &wg_response(b, a));
    for n in 0..4u64 {
        f = f.send(true, &wg_data(b, n)).send(false, &wg_data(a, n));
    }
    f
}

/// An SSH session: banners both ways, then key exchange and encrypted packets.
fn ssh(f: Flow, i: u32) -> Flow {
    f.send(false, b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")
        .send(true, b"SSH-2.0-OpenSSH_9.2p1\r\n")
        .send(true, &random(1400, i))
        .send(false, &random(1100, i + 7))
}

/// Item 1, learn only what was confirmed: a subscriber's one-way BitTorrent-looking packets to
/// a WireGuard endpoint and an SSH server (LSD, a DHT query, a uTP SYN, a handshake the SSH
/// server answers with its banner) teach nothing; twenty other subscribers' sessions with
/// those endpoints keep their own labels, however many attempts came first.
#[test]
fn poisoning_attempts_teach_nothing() {
    for fam in FAMS {
        let wg = net(fam, 50, 51820);
        let sshd = net(fam, 60, 22);
        let attacker = |port| sub(fam, 666, port);
        let mut dht = b"d1:ad2:id20:".to_vec();
        dht.extend_from_slice(&[b'a'; 20]);
        dht.extend_from_slice(b"6:target20:bbbbbbbbbbbbbbbbbbbbe1:q9:find_node1:t2:aa1:y1:qe");
        let mut utp_syn = vec![0x41, 0, 0x30, 0x39];
        utp_syn.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0]);
        let mut flows = Vec::new();
        for round in 0..3u16 {
            flows.push(
                Flow::udp("lsd to wg", attacker(6771 + round), wg, "bittorrent.lsd")
                    .send(true, &lsd_datagram()),
            );
            flows.push(
                Flow::udp("dht to wg", attacker(7000 + round), wg, "bittorrent.dht")
                    .send(true, &dht),
            );
            flows.push(
                Flow::udp(
                    "utp syn to wg",
                    attacker(7100 + round),
                    wg,
                    "bittorrent.utp",
                )
                .send(true, &utp_syn),
            );
            flows.push(
                Flow::tcp("lsd to sshd", attacker(7200 + round), sshd, "ssh")
                    .send(true, &lsd_datagram())
                    .send(false, b"SSH-2.0-OpenSSH_9.6\r\n"),
            );
            // A handshake the server answers with its banner: one-way, unconfirmed.
            flows.push(
                Flow::tcp(
                    "handshake to sshd",
                    attacker(7300 + round),
                    sshd,
                    "bittorrent",
                )
                .send(true, &handshake(1))
                .send(false, b"SSH-2.0-OpenSSH_9.6\r\n"),
            );
        }
        for i in 0..20u16 {
            flows.push(wireguard(
                Flow::udp(
                    "wireguard session",
                    sub(fam, 10 + i, 40000 + i),
                    wg,
                    "vpn.wireguard",
                ),
                i as u32,
            ));
            flows.push(ssh(
                Flow::tcp("ssh session", sub(fam, 10 + i, 41000 + i), sshd, "ssh"),
                i as u32,
            ));
            // Mid-flow: only encrypted data, no handshake or banner seen. Unknown, never
            // p2p: nothing confirmed ever spoke BitTorrent there.
            flows.push(
                Flow::udp("wg data only", sub(fam, 10 + i, 42000 + i), wg, "unknown")
                    .send(true, &random(200, i as u32))
                    .send(false, &random(120, i as u32 + 1)),
            );
        }
        check(&format!("poisoning {fam:?}"), &flows);
        let (e, _) = run_engine(&flows, EngineConfig::default());
        assert_eq!(e.cache_learned(), 0, "{fam:?}: nothing was confirmed");
    }
}

/// The cache learns from a confirmed flow, keyed by transport (with the responder's shared
/// BitTorrent listen port taught for UDP too); its label is provisional (never final) and
/// loses to any protocol the flow shows itself.
#[test]
fn confirmed_flows_teach_provisionally() {
    for fam in FAMS {
        let peer = net(fam, 70, 6881);
        let mut flows = vec![
            Flow::tcp(
                "confirmed peer wire",
                sub(fam, 1, 50000),
                peer,
                "bittorrent",
            )
            .send(true, &handshake(1))
            .send(false, &handshake(2))
            .send(false, &after_handshake()),
            Flow::udp(
                "unknown udp to the peer",
                sub(fam, 2, 50001),
                peer,
                "bittorrent.utp",
            )
            .send(true, &random(300, 3))
            .send(false, &random(200, 4)),
            Flow::tcp(
                "unknown tcp to the peer",
                sub(fam, 3, 50002),
                peer,
                "bittorrent",
            )
            .send(true, &random(300, 5)),
            wireguard(
                Flow::udp(
                    "wireguard to the peer's port",
                    sub(fam, 4, 50003),
                    peer,
                    "vpn.wireguard",
                ),
                1,
            ),
            ssh(
                Flow::tcp("ssh to the peer's port", sub(fam, 5, 50004), peer, "ssh"),
                2,
            ),
            // The peer's other ports and transports it was never seen on say nothing.
            Flow::udp(
                "another port",
                sub(fam, 6, 50005),
                net(fam, 70, 6882),
                "unknown",
            )
            .send(true, &random(300, 6))
            .send(false, &random(200, 7)),
        ];
        check(&format!("cache {fam:?}"), &flows);
        // Through the engine, flow by flow: the cache label is never final.
        let mut e = Engine::new(EngineConfig::default());
        let mut ts = 0;
        let mut feed = |e: &mut Engine, f: &Flow| {
            for p in &f.pkts {
                ts += 1000;
                e.on_packet(&PacketMeta {
                    ts_ns: ts,
                    key: f.key(),
                    dir: if p.up { Direction::Up } else { Direction::Down },
                    payload: &p.data,
                    tcp_flags: 0x18,
                    tcp_seq: 1 + p.seq,
                });
            }
        };
        feed(&mut e, &flows[0]);
        assert!(
            e.is_final(&flows[0].key()),
            "a confirmed handshake is final"
        );
        flows[1].pkts.truncate(1);
        feed(&mut e, &flows[1]);
        let v = e.verdict(&flows[1].key()).expect("held");
        assert_eq!(
            (v.to_string(), v.confidence),
            ("bittorrent.utp".into(), Confidence::Cache)
        );
        assert!(!e.is_final(&flows[1].key()), "a cache label is provisional");
    }
}

/// Confirmed peer-wire flows from one subscriber's port range to `n` peers.
fn confirmed_peers(subscriber: u16, n: u16, first_peer: u16) -> Vec<Flow> {
    (0..n)
        .map(|i| {
            let (a, b) = (
                sub(Fam::V4, subscriber, 50000 + i),
                net(Fam::V4, first_peer + i, 51413),
            );
            Flow::tcp("peer", a, b, "bittorrent")
                .send(true, &handshake(1))
                .send(false, &handshake(2))
        })
        .collect()
}

/// The learning budget: one subscriber confirming flows with many peers teaches at most
/// `learn_budget` endpoints a minute; the rest are refused and counted.
#[test]
fn learning_budget_per_subscriber() {
    let cfg = EngineConfig {
        learn_budget: 10,
        ..EngineConfig::default()
    };
    let flows = confirmed_peers(1, 30, 1);
    let (e, v) = run_engine(&flows, cfg.clone());
    assert!(v.iter().all(|v| v.to_string() == "bittorrent"));
    // Each flow teaches 3 endpoints (both TCP ends, the peer's port for UDP): 3 fit in 10.
    assert_eq!(e.cache_learned(), 9);
    assert_eq!(e.cache_refused(), 27 * 3);
    // Another subscriber has a budget of its own.
    let all: Vec<Flow> = flows
        .into_iter()
        .chain(confirmed_peers(2, 2, 100))
        .collect();
    let (e, _) = run_engine(&all, cfg);
    assert_eq!(e.cache_learned(), 9 + 6);
}

/// Item 4, streams, not packets: a handshake in one-byte segments, out of order, behind an
/// overlapping retransmission of junk, behind a TLS record or an HTTP request for a video
/// host: all bittorrent, in both families.
#[test]
fn disguised_and_segmented_bittorrent_is_bittorrent() {
    for fam in FAMS {
        let p = |i: u16| net(fam, 80 + i, 51413);
        let s = |i: u16| sub(fam, 20, 30000 + i);
        let hs = handshake(1);
        let reply = handshake(2);
        let mut tls_rec = vec![0x17, 3, 3, 0, 5];
        tls_rec.extend_from_slice(&random(5, 9));
        let get = b"GET /watch?v=dQw4w9WgXcQ HTTP/1.1\r\nHost: www.youtube.com\r\n\r\n";
        let mut flows = vec![
            Flow::tcp("one-byte segments", s(0), p(0), "bittorrent")
                .split(true, &hs, 1)
                .send(false, &reply),
            // 4 segments delivered 3, 1, 4, 2.
            Flow::tcp("out of order", s(1), p(1), "bittorrent")
                .seg(true, 34, &hs[34..51])
                .seg(true, 0, &hs[..17])
                .seg(true, 51, &hs[51..])
                .seg(true, 17, &hs[17..34])
                .send(false, &reply),
            // Junk the receiver never gets (a short TTL), then the real handshake over it.
            Flow::tcp("overlap, junk first", s(2), p(2), "bittorrent")
                .seg(true, 0, &random(68, 3))
                .seg(true, 0, &hs)
                .send(false, &reply),
            // Both sides play the trick: two-way evidence from the conflicting copies.
            Flow::tcp("overlap both ways", s(3), p(3), "bittorrent")
                .seg(true, 0, &random(68, 4))
                .seg(true, 0, &hs)
                .seg(false, 0, &random(68, 5))
                .seg(false, 0, &reply),
            Flow::tcp("tls record prefix", s(4), p(4), "bittorrent")
                .send(true, &tls_rec)
                .send(true, &hs)
                .send(false, &reply),
            Flow::tcp("http video prefix", s(5), p(5), "bittorrent")
                .send(true, get)
                .send(true, &hs)
                .send(false, &reply),
            // Prefixes both ways, so no side starts with the handshake.
            Flow::tcp("prefix both ways", s(6), p(6), "bittorrent")
                .send(true, &tls_rec)
                .send(true, &hs)
                .send(false, &tls_rec)
                .send(false, &reply),
            // A prefix one way, the other side answering with peer-wire messages only.
            Flow::tcp("prefix, answered by framing", s(7), p(7), "bittorrent")
                .send(true, &tls_rec)
                .send(true, &hs)
                .send(false, &after_handshake()),
            // The same handshake cut inside the prefix's segment.
            Flow::tcp("prefix glued to the handshake", s(8), p(8), "bittorrent")
                .split(true, &[&tls_rec[..], &hs[..]].concat(), 7)
                .send(false, &reply),
        ];
        // An SSH banner as a prefix, answered by the real peer: one-way SSH loses.
        flows.push(
            Flow::tcp("ssh banner prefix", s(9), p(9), "bittorrent")
                .send(true, b"SSH-2.0-OpenSSH_9.6\r\n")
                .send(true, &hs)
                .send(false, &reply),
        );
        check(&format!("disguises {fam:?}"), &flows);
    }
}

/// A provisional web label keeps the flow under inspection (is_final false) until the
/// handshake upgrades it.
#[test]
fn web_labels_are_provisional() {
    let k = Flow::tcp("x", sub(Fam::V4, 1, 40000), net(Fam::V4, 1, 80), "").key();
    let mut e = Engine::new(EngineConfig::default());
    let get = b"GET /v HTTP/1.1\r\nHost: rr1---sn-a.googlevideo.com\r\n\r\n";
    let mut pm = PacketMeta {
        ts_ns: 1,
        key: k,
        dir: Direction::Up,
        payload: get,
        tcp_flags: 0x18,
        tcp_seq: 100,
    };
    let v = e.on_packet(&pm).expect("labelled");
    assert_eq!(v.to_string(), "video.youtube");
    assert!(!e.is_final(&k));
    let hs = handshake(1);
    pm.payload = &hs;
    pm.tcp_seq = 100 + get.len() as u32;
    assert_eq!(
        e.on_packet(&pm),
        None,
        "after a prefix, one way is not enough"
    );
    let reply = handshake(2);
    pm.dir = Direction::Down;
    pm.payload = &reply;
    pm.tcp_seq = 9000;
    assert_eq!(
        e.on_packet(&pm).map(|v| v.to_string()).as_deref(),
        Some("bittorrent")
    );
    assert!(e.is_final(&k));
}

/// Innocent traffic that quotes the handshake, or shows one side of it, is not p2p.
#[test]
fn innocent_look_alikes_stay_innocent() {
    for fam in FAMS {
        let hs = handshake(1);
        let mut page =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 400\r\n\r\n<pre>"
                .to_vec();
        let quote_at = page.len();
        page.extend_from_slice(&hs);
        page.extend_from_slice(b"</pre>");
        let flows = vec![
            // The quote starts a segment of its own, as a kernel fingerprint would see it.
            Flow::tcp(
                "page quoting the handshake",
                sub(fam, 30, 40000),
                net(fam, 90, 80),
                "http",
            )
            .send(
                true,
                b"GET /bep_0003.html HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
            )
            .send(false, &page[..quote_at])
            .send(false, &page[quote_at..]),
            Flow::tcp(
                "tls then a quoted handshake",
                sub(fam, 30, 40001),
                net(fam, 91, 443),
                "tls",
            )
            .send(true, &[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5])
            .send(false, &[0x17, 3, 3, 0, 5, 6, 7, 8, 9, 10])
            .send(false, &hs),
        ];
        check(&format!("innocent {fam:?}"), &flows);
    }
}

/// Item 2, everyday protocols: each with its label, confirmed two ways; none becomes p2p.
#[test]
fn everyday_protocols_get_their_labels() {
    for fam in FAMS {
        let s = |i: u16| sub(fam, 40, 20000 + i);
        let mut ovpn_c = vec![7 << 3];
        ovpn_c.extend_from_slice(&[0x11; 8]);
        ovpn_c.extend_from_slice(&[0, 0, 0, 0, 0]);
        let mut ovpn_s = vec![8 << 3];
        ovpn_s.extend_from_slice(&[0x22; 8]);
        ovpn_s.extend_from_slice(&[1, 0, 0, 0, 0]);
        ovpn_s.extend_from_slice(&[0x11; 8]);
        ovpn_s.extend_from_slice(&[0, 0, 0, 0]);
        let framed = |p: &[u8]| [&(p.len() as u16).to_be_bytes()[..], p].concat();
        let ike = |resp: bool| {
            let mut p = [0x33u8; 8].to_vec();
            p.extend_from_slice(&if resp { [0x44; 8] } else { [0; 8] });
            p.extend_from_slice(&[33, 0x20, 34, if resp { 0x20 } else { 0x08 }, 0, 0, 0, 0]);
            p.extend_from_slice(&240u32.to_be_bytes());
            p.resize(240, 0x10);
            p
        };
        let esp = |spi: u32, seq: u32| {
            let mut p = spi.to_be_bytes().to_vec();
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend(random(120, seq));
            p
        };
        let stun = |ty: u16| {
            let mut p = ty.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 8, 0x21, 0x12, 0xa4, 0x42]);
            p.extend_from_slice(&[0x5c; 12]);
            p.extend_from_slice(&[0, 0x20, 0, 4, 1, 2, 3, 4]);
            p
        };
        let mut dtls = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40];
        dtls.extend(random(40, 4));
        let rtp = |ssrc: u32, seq: u16| {
            let mut p = vec![0x80, 0x08];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend(random(160, ssrc ^ seq as u32));
            p
        };
        let tpkt = |code: u8, rest: &[u8]| {
            let len = 11 + rest.len();
            let mut p = vec![3, 0];
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p.extend_from_slice(&[(len - 5) as u8, code, 0, 0, 0, 0, 0]);
            p.extend_from_slice(rest);
            p
        };
        let mc = {
            let host = b"mc.example.org";
            let mut body = vec![0u8, 0xfd, 0x05, host.len() as u8];
            body.extend_from_slice(host);
            body.extend_from_slice(&[0x63, 0xdd, 1]);
            [&[body.len() as u8][..], &body, &[1, 0]].concat()
        };
        let mut flows = vec![
            ssh(Flow::tcp("ssh", s(0), net(fam, 1, 22), "ssh"), 1),
            ssh(
                Flow::tcp("ssh on a high port", s(1), net(fam, 1, 2222), "ssh"),
                2,
            ),
            wireguard(
                Flow::udp("wireguard", s(2), net(fam, 2, 51820), "vpn.wireguard"),
                3,
            ),
            wireguard(
                Flow::udp(
                    "wireguard on 6881",
                    s(3),
                    net(fam, 2, 6881),
                    "vpn.wireguard",
                ),
                4,
            ),
            Flow::udp("openvpn udp", s(4), net(fam, 3, 1194), "vpn.openvpn")
                .send(true, &ovpn_c)
                .send(false, &ovpn_s),
            Flow::tcp("openvpn tcp", s(5), net(fam, 3, 443), "vpn.openvpn")
                .send(true, &framed(&ovpn_c))
                .send(false, &framed(&ovpn_s)),
            Flow::udp("ike", s(6), net(fam, 4, 500), "vpn.ipsec")
                .send(true, &ike(false))
                .send(false, &ike(true)),
            Flow::udp("esp in udp", s(7), net(fam, 4, 4500), "vpn.ipsec")
                .send(true, &esp(0x1111, 1))
                .send(false, &esp(0x2222, 1))
                .send(true, &esp(0x1111, 2))
                .send(false, &esp(0x2222, 2)),
            Flow::udp("stun then dtls", s(8), net(fam, 5, 3478), "webrtc")
                .send(true, &stun(0x0001))
                .send(false, &stun(0x0101))
                .send(true, &dtls),
            Flow::udp("sip", s(9), net(fam, 6, 5060), "voip")
                .send(
                    true,
                    b"INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
                )
                .send(false, b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP h\r\n\r\n"),
            Flow::tcp("rdp", s(10), net(fam, 7, 3389), "rdp")
                .send(true, &tpkt(0xe0, b"Cookie: mstshash=alice\r\n"))
                .send(false, &tpkt(0xd0, &[2, 0, 8, 0, 1, 0, 0, 0])),
            Flow::udp("source query", s(11), net(fam, 8, 27015), "game")
                .send(true, b"\xff\xff\xff\xffTSource Engine Query\0")
                .send(false, b"\xff\xff\xff\xffA\x0a\x0b\x0c\x0d"),
            Flow::udp("quake 3", s(12), net(fam, 8, 27960), "game")
                .send(true, b"\xff\xff\xff\xffgetstatus\n")
                .send(
                    false,
                    b"\xff\xff\xff\xffstatusResponse\n\\sv_hostname\\lab\n",
                ),
            Flow::tcp("minecraft", s(13), net(fam, 8, 25565), "game")
                .send(true, &mc)
                .send(false, b"\x20\x00\x1e{\"version\":{\"name\":\"1.20.4\"}}"),
        ];
        let mut call = Flow::udp("rtp both ways", s(14), net(fam, 9, 40000), "voip");
        for n in 0..4u16 {
            call = call
                .send(true, &rtp(0xaaaa, 100 + n))
                .send(false, &rtp(0xbbbb, 7 + n));
        }
        flows.push(call);
        check(&format!("everyday {fam:?}"), &flows);
    }
}

/// Items 3 and 7, behaviour is not a port count: a NAS talking RADIUS to many servers from one port,
/// with CoA requests coming back, and a game client querying many servers, stay unknown;
/// a P2P node with no payload signature at all is still p2p.behavioural.
#[test]
fn behaviour_needs_a_p2p_shape() {
    for fam in FAMS {
        let nas = |port| sub(fam, 50, port);
        let mut flows = Vec::new();
        for i in 0..30u16 {
            flows.push(
                Flow::udp("radius", nas(40000), net(fam, 1 + i, 1812), "unknown")
                    .send(true, &random(90, i as u32))
                    .send(false, &random(40, i as u32 + 100)),
            );
            flows.push(
                Flow::udp("coa", net(fam, 1 + i, 50000 + i), nas(3799 + 1), "unknown")
                    .send(true, &random(60, i as u32 + 200)),
            );
            flows.push(
                Flow::udp(
                    "game server poll",
                    sub(fam, 51, 45000),
                    net(fam, 100 + i, 27016),
                    "unknown",
                )
                .send(true, &random(25, i as u32 + 300))
                .send(false, &random(400, i as u32 + 400)),
            );
        }
        // A P2P node: outgoing flows to peers on their own ports, incoming ones to its port.
        let node = |port| sub(fam, 52, port);
        for i in 0..14u16 {
            flows.push(
                Flow::udp(
                    "p2p out",
                    node(51413),
                    net(fam, 200 + i, 10000 + i * 313),
                    "p2p.behavioural",
                )
                .send(true, &random(300, i as u32 + 500))
                .send(false, &random(300, i as u32 + 600)),
            );
        }
        for i in 0..6u16 {
            flows.push(
                Flow::udp(
                    "p2p in",
                    net(fam, 230 + i, 20000 + i * 7),
                    node(51413),
                    "p2p.behavioural",
                )
                .send(true, &random(300, i as u32 + 700))
                .send(false, &random(300, i as u32 + 800)),
            );
        }
        check(&format!("behaviour {fam:?}"), &flows);
    }
}
