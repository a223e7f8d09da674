//! The DNS-assisted labels through `classify`: a capture built here, in which a subscriber
//! resolves a video service's name and then opens flows to the answered address.

use super::*;
use crate::capture::pcap::tests::pcap_le;
use crate::packet::tests::{eth, ipv4, tcp, udp};
use crate::protocols::dns_message::tests::{https_response, query, response};
use crate::protocols::{quic, tls};

const ALICE: [u8; 4] = [100, 64, 1, 10];
const BOB: [u8; 4] = [100, 64, 1, 11];
const RESOLVER: [u8; 4] = [198, 51, 100, 53];
/// Answered for Netflix to Alice.
const EDGE: [u8; 4] = [198, 51, 100, 9];
/// Answered to no one.
const OTHER: [u8; 4] = [198, 51, 100, 10];
/// "Answered" for YouTube to Bob, by an answer to no query of his.
const FORGED: [u8; 4] = [198, 51, 100, 11];

fn hello(sni: Option<&str>) -> Vec<u8> {
    tls::tests::records(&tls::tests::client_hello_msg(sni), 1400)
}

/// A hello offering ECH (real or GREASE: the same on the wire) with `outer` as its SNI.
fn ech_to(from: [u8; 4], sport: u16, to: [u8; 4], outer: &str) -> Vec<u8> {
    let h = tls::tests::records(&tls::tests::client_hello_ech(Some(outer), true), 1400);
    eth(0x0800, &ipv4(6, from, to, &tcp(sport, 443, 1, 0x18, &h)))
}

fn tls_to(from: [u8; 4], sport: u16, to: [u8; 4], sni: Option<&str>) -> Vec<u8> {
    eth(
        0x0800,
        &ipv4(6, from, to, &tcp(sport, 443, 1, 0x18, &hello(sni))),
    )
}

/// A DNS datagram between a subscriber's port and the resolver's port 53.
fn dns(sub: [u8; 4], port: u16, up: bool, msg: &[u8]) -> Vec<u8> {
    let l4 = if up {
        udp(port, 53, msg)
    } else {
        udp(53, port, msg)
    };
    let (from, to) = if up { (sub, RESOLVER) } else { (RESOLVER, sub) };
    eth(0x0800, &ipv4(17, from, to, &l4))
}

fn label_of(flows: &[FlowRecord], src: [u8; 4], sport: u16) -> String {
    let src = SocketAddr::from((src, sport));
    flows
        .iter()
        .find(|f| f.key.src == src)
        .map(|f| f.verdict.to_string())
        .unwrap_or_else(|| panic!("no flow from {src}"))
}

#[test]
fn an_answered_address_labels_nameless_flows_of_the_asking_subscriber_only() {
    let answer = response(
        0x55,
        "www.netflix.com",
        &["www.dradis.netflix.com", "ipv4-c001.nflxvideo.net"],
        &[EDGE.into()],
        300,
    );
    let quic_nameless =
        quic::tests::initial(1, &[7; 8], &[(0, &tls::tests::client_hello_msg(None))]);
    let frames: Vec<Vec<u8>> = vec![
        // Alice asks her resolver; it answers.
        dns(ALICE, 40000, true, &query(0x55, "www.netflix.com")),
        dns(ALICE, 40000, false, &answer),
        // Her HTTPS query: the service offers ECH behind the public name cover.example.net.
        dns(ALICE, 40001, true, &query(0x56, "www.netflix.com")),
        dns(
            ALICE,
            40001,
            false,
            &https_response(0x56, "www.netflix.com", Some("cover.example.net"), 300),
        ),
        // Bob is "answered" without asking (forged, or a stray copy).
        dns(
            BOB,
            40000,
            false,
            &response(9, "www.youtube.com", &[], &[FORGED.into()], 300),
        ),
        // Alice: TLS with no server name (what ECH-less clients without SNI and bare-IP
        // connections look like), QUIC whose hello names no server, TLS naming another site.
        tls_to(ALICE, 41000, EDGE, None),
        eth(
            0x0800,
            &ipv4(17, ALICE, EDGE, &udp(41001, 443, &quic_nameless)),
        ),
        tls_to(ALICE, 41002, EDGE, Some("www.example.org")),
        tls_to(ALICE, 41003, OTHER, None),
        // Alice, ECH: outer SNI the service's front (real ECH), or a real name (GREASE).
        ech_to(ALICE, 41004, EDGE, "cover.example.net"),
        ech_to(ALICE, 41005, EDGE, "www.example.org"),
        // Bob: to the address Alice was answered, and to the one of the forged answer.
        tls_to(BOB, 42000, EDGE, None),
        tls_to(BOB, 42001, FORGED, None),
        ech_to(BOB, 42002, EDGE, "cover.example.net"),
    ];
    let packets: Vec<(u32, u32, &[u8])> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (1_700_000_000 + i as u32, 0, &f[..]))
        .collect();
    let file = pcap_le(1, &packets);
    let out = classify_reader(
        CaptureReader::new(&file[..]).expect("pcap"),
        EngineConfig::default(),
        &[],
    );
    assert!(out.error.is_none());
    let f = &out.flows;
    assert_eq!(label_of(f, ALICE, 40000), "dns");
    assert_eq!(label_of(f, ALICE, 41000), "video.netflix");
    assert_eq!(label_of(f, ALICE, 41001), "video.netflix");
    // A name of its own wins: the answered address may be a CDN edge serving others too.
    assert_eq!(label_of(f, ALICE, 41002), "tls");
    assert_eq!(label_of(f, ALICE, 41003), "tls");
    // ECH: the outer SNI is the front the service's HTTPS record named, so it is not the
    // flow's name; with GREASE ECH the SNI is a real name, and it wins.
    assert_eq!(label_of(f, ALICE, 41004), "video.netflix");
    assert_eq!(label_of(f, ALICE, 41005), "tls");
    // Another subscriber's answer never labels Bob's flows, nor does an unasked one.
    assert_eq!(label_of(f, BOB, 42000), "tls");
    assert_eq!(label_of(f, BOB, 42001), "tls");
    assert_eq!(label_of(f, BOB, 42002), "tls");
}

#[test]
fn without_the_answer_the_same_flows_are_not_video() {
    // The control: the same nameless flows with no DNS before them.
    let frames = [
        tls_to(ALICE, 41000, EDGE, None),
        ech_to(ALICE, 41004, EDGE, "cover.example.net"),
        eth(
            0x0800,
            &ipv4(
                17,
                ALICE,
                EDGE,
                &udp(
                    41001,
                    443,
                    &quic::tests::initial(1, &[7; 8], &[(0, &tls::tests::client_hello_msg(None))]),
                ),
            ),
        ),
    ];
    let packets: Vec<(u32, u32, &[u8])> =
        frames.iter().map(|f| (1_700_000_000, 0, &f[..])).collect();
    let file = pcap_le(1, &packets);
    let out = classify_reader(
        CaptureReader::new(&file[..]).expect("pcap"),
        EngineConfig::default(),
        &[],
    );
    assert_eq!(label_of(&out.flows, ALICE, 41000), "tls");
    assert_eq!(label_of(&out.flows, ALICE, 41001), "quic");
    assert_eq!(label_of(&out.flows, ALICE, 41004), "tls");
}
