//! DNS answers reach the deep tier (issue 12 item 2), through `BPF_PROG_TEST_RUN` as root,
//! with the engine driven as the daemon's deep thread drives it (`daemon/deep.rs`): each
//! packet the probe samples goes to the engine, and the engine's verdict goes back through
//! `VERDICTS`, final only when `Engine::is_final` says so.
//!
//! The kernel has no DNS rule, so a DNS flow is sampled until the deep tier calls it final.
//! A query leaves it provisional, so the answer is sampled too; the answer then makes it
//! final, and nothing after is sampled. Had the query been final at once (as before), the
//! answer would not have reached the deep tier: the contrast is checked as well. A flow to
//! the answered address with no name of its own then comes back `video.<service>`.

use std::net::IpAddr;

use peerwarden_classifier::{Engine, EngineConfig, PacketMeta};
use peerwarden_common::{
    Confidence, Direction, Label,
    deep::Verdict,
    flow::{FLAG_FINAL, PROTO_TCP, PROTO_UDP},
};
use peerwarden_tests::{
    packets::{Conversation, Family, TcpFlags},
    payloads::{dns_answer, dns_query},
    xdp::{TestProbe, XDP_PASS},
};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;

/// The deep thread's half for one sampled payload: the engine's verdict on it, handed to
/// the kernel (final when the engine's inspection ended). Returns the verdict's name.
fn deep_tier(
    probe: &mut TestProbe,
    engine: &mut Engine,
    c: &Conversation,
    proto: u8,
    dir: Direction,
    payload: &[u8],
    ts_ns: u64,
) -> Option<String> {
    let key = c.key(proto);
    let meta = PacketMeta {
        ts_ns,
        key: peerwarden_classifier::FlowKey::from_kernel(&key),
        dir: if dir == UP {
            peerwarden_classifier::Direction::Up
        } else {
            peerwarden_classifier::Direction::Down
        },
        payload,
        tcp_flags: if proto == PROTO_TCP { TcpFlags::ACK } else { 0 },
        tcp_seq: 0,
    };
    let v = engine.on_packet(&meta);
    let final_ = engine.is_final(&meta.key);
    let v = if final_ {
        engine.finish(&meta.key, ts_ns)
    } else {
        v?
    };
    let out = Verdict {
        label: v.label.id(),
        confidence: v.confidence as u8,
        final_: u8::from(final_),
    };
    probe.probe().put_verdict(&key, out).expect("put_verdict");
    Some(v.to_string())
}

#[test]
fn a_dns_answer_is_sampled_while_the_query_is_open_and_labels_a_nameless_flow() {
    let mut probe = TestProbe::load();
    let mut engine = Engine::new(EngineConfig::default());
    let resolver = Conversation::new(Family::V4, 40053, 53);
    let IpAddr::V4(edge) = resolver.remote.ip() else {
        panic!("an IPv4 conversation")
    };
    let query = dns_query(0x4242, "www.twitch.tv");
    let answer = dns_answer(0x4242, "www.twitch.tv", edge, 300);
    let sent = |p: &TestProbe| p.stat("samples_sent");

    let before = sent(&probe);
    assert_eq!(probe.send(UP, &resolver.udp(UP, &query)), XDP_PASS);
    assert_eq!(sent(&probe), before + 1, "the query is sampled");
    let v = deep_tier(&mut probe, &mut engine, &resolver, PROTO_UDP, UP, &query, 0);
    assert_eq!(v.as_deref(), Some("dns"));
    assert!(
        !engine.is_final(&peerwarden_classifier::FlowKey::from_kernel(
            &resolver.key(PROTO_UDP)
        ))
    );
    assert_eq!(probe.send(DOWN, &resolver.udp(DOWN, &answer)), XDP_PASS);
    assert_eq!(sent(&probe), before + 2, "the answer is sampled");
    let v = deep_tier(
        &mut probe,
        &mut engine,
        &resolver,
        PROTO_UDP,
        DOWN,
        &answer,
        1_000_000,
    );
    assert_eq!(v.as_deref(), Some("dns"));
    // Final now: the next packet takes the verdict and is not sampled.
    assert_eq!(probe.send(UP, &resolver.udp(UP, &query)), XDP_PASS);
    assert_eq!(sent(&probe), before + 2);
    let f = probe.flow(&resolver.key(PROTO_UDP)).expect("the DNS flow");
    assert_eq!(Label::from_id(f.label), Label::Dns);
    assert_ne!(f.flags & FLAG_FINAL, 0);

    // The contrast: a query made final at once leaves its answer unsampled.
    let other = Conversation::new(Family::V4, 40054, 53);
    let before = sent(&probe);
    assert_eq!(probe.send(UP, &other.udp(UP, &query)), XDP_PASS);
    let at_once = Verdict {
        label: Label::Dns.id(),
        confidence: Confidence::Payload as u8,
        final_: 1,
    };
    probe
        .probe()
        .put_verdict(&other.key(PROTO_UDP), at_once)
        .expect("put_verdict");
    assert_eq!(probe.send(DOWN, &other.udp(DOWN, &answer)), XDP_PASS);
    assert_eq!(sent(&probe), before + 1, "only the query was sampled");

    // A flow from the same subscriber to the answered address, no name of its own (bytes
    // no detector knows): video.twitch from the deep tier, applied on its next packet.
    let nameless = Conversation::new(Family::V4, 41000, 443);
    let bytes = vec![0x17u8; 64];
    assert_eq!(
        probe.send(UP, &nameless.tcp(UP, TcpFlags::ACK, &bytes)),
        XDP_PASS
    );
    let v = deep_tier(
        &mut probe,
        &mut engine,
        &nameless,
        PROTO_TCP,
        UP,
        &bytes,
        2_000_000,
    );
    assert_eq!(v.as_deref(), Some("video.twitch"));
    assert_eq!(
        probe.send(DOWN, &nameless.tcp(DOWN, TcpFlags::ACK, &bytes)),
        XDP_PASS
    );
    let f = probe.flow(&nameless.key(PROTO_TCP)).expect("the flow");
    assert_eq!(Label::from_id(f.label), Label::VideoService);
    assert_eq!(
        f.flags & FLAG_FINAL,
        0,
        "a host-name label stays provisional"
    );
}
