//! Engines sharing one context: what one learns, another applies.

use std::sync::Arc;

use peerwarden_common::{Confidence, Label};

use super::Shared;
use crate::{
    Direction::{self, Down, Up},
    Engine, EngineConfig, FlowKey, PacketMeta,
    protocols::{dns_message::tests as dns, quic, tls},
};

const S: u64 = 1_000_000_000;

fn key(proto: u8, src: &str, dst: &str) -> FlowKey {
    FlowKey {
        proto,
        src: src.parse().expect("src"),
        dst: dst.parse().expect("dst"),
    }
}

fn packet(e: &mut Engine, k: FlowKey, dir: Direction, payload: &[u8], ts_ns: u64) {
    e.on_packet(&PacketMeta {
        ts_ns,
        key: k,
        dir,
        payload,
        tcp_flags: 0x18,
        tcp_seq: 1,
    });
}

fn pair() -> (Engine, Engine, Arc<Shared>) {
    let cfg = EngineConfig::default();
    let shared = cfg.shared();
    let a = Engine::with_shared(cfg.clone(), shared.clone());
    (a, Engine::with_shared(cfg, shared.clone()), shared)
}

/// A QUIC flow whose hello names no server, from `sub` to `edge`, finished: its label.
fn nameless_quic(e: &mut Engine, sub: &str, edge: &str) -> String {
    let flow = key(17, sub, edge);
    let hello = quic::tests::initial(1, &[7; 8], &[(0, &tls::tests::client_hello_msg(None))]);
    packet(e, flow, Up, &hello, S);
    e.finish(&flow, 2 * S).to_string()
}

#[test]
fn a_dns_answer_seen_by_one_engine_names_a_flow_another_inspects() {
    let (mut a, mut b, shared) = pair();
    let resolver = key(17, "100.64.1.10:40000", "198.51.100.53:53");
    let edge = "198.51.100.9".parse().expect("ip");
    let answer = dns::response(0x55, "www.netflix.com", &[], &[edge], 300);
    packet(
        &mut a,
        resolver,
        Up,
        &dns::query(0x55, "www.netflix.com"),
        0,
    );
    packet(&mut a, resolver, Down, &answer, S / 100);
    assert_eq!(shared.dns().len(), 1, "A remembered the answer");
    assert_eq!(b.dns_hints().len(), 1, "B reads the same answers");
    assert_eq!(
        nameless_quic(&mut b, "100.64.1.10:41000", "198.51.100.9:443"),
        "video.netflix"
    );
    // The control: an engine with its own context never saw the answer.
    let mut alone = Engine::new(EngineConfig::default());
    assert_eq!(
        nameless_quic(&mut alone, "100.64.1.10:41000", "198.51.100.9:443"),
        "quic"
    );
    // And the answer still labels only its own subscriber's flows.
    assert_eq!(
        nameless_quic(&mut b, "100.64.1.11:41000", "198.51.100.9:443"),
        "quic"
    );
}

fn handshake() -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 48]);
    h
}

#[test]
fn an_endpoint_learned_by_one_engine_labels_a_flow_of_another() {
    let (mut a, mut b, shared) = pair();
    let bt = key(6, "100.64.1.10:40000", "198.51.100.7:6881");
    packet(&mut a, bt, Up, &handshake(), 0);
    packet(&mut a, bt, Down, &handshake(), 1000);
    assert_eq!(a.finish(&bt, 2000).label, Label::Bittorrent);
    assert_eq!(shared.cache_learned(), b.cache_learned());
    assert!(b.cache_learned() > 0, "A taught the shared cache");
    // B has never seen the peer: a UDP flow to it takes the cached label at once.
    let to_peer = key(17, "100.64.1.20:30000", "198.51.100.7:6881");
    let v = b
        .on_packet(&PacketMeta {
            ts_ns: 3000,
            key: to_peer,
            dir: Up,
            payload: &[0x5a; 300],
            tcp_flags: 0,
            tcp_seq: 0,
        })
        .expect("cached at once");
    assert_eq!(
        (v.label, v.confidence),
        (Label::BittorrentUtp, Confidence::Cache)
    );
    // The control: alone, the same flow is unknown.
    let mut alone = Engine::new(EngineConfig::default());
    packet(&mut alone, to_peer, Up, &[0x5a; 300], 3000);
    assert_eq!(
        alone.verdict(&to_peer).map(|v| v.label),
        Some(Label::Unknown)
    );
}

#[test]
fn engines_on_threads_share_what_they_learn() {
    let (a, b, shared) = pair();
    let peers: Vec<std::thread::JoinHandle<()>> = [(a, 0u8), (b, 1u8)]
        .into_iter()
        .map(|(mut e, t)| {
            std::thread::spawn(move || {
                for i in 0..200u16 {
                    let bt = key(
                        6,
                        &format!("100.64.{t}.{}:40000", i % 250),
                        &format!("198.51.100.{}:{}", i % 250, 7000 + i),
                    );
                    packet(&mut e, bt, Up, &handshake(), u64::from(i));
                    packet(&mut e, bt, Down, &handshake(), u64::from(i) + 1);
                    e.finish(&bt, u64::from(i) + 2);
                }
            })
        })
        .collect();
    for p in peers {
        p.join().expect("no panic");
    }
    // 400 confirmed flows from 400 subscriber addresses, two endpoints each (the responder's
    // high port for both transports): every one landed in the one cache.
    assert!(shared.cache_learned() >= 800, "{}", shared.cache_learned());
}
