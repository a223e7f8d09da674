//! Per-subscriber counting per (subscriber, label, direction) in the XDP program, run on
//! crafted frames through `BPF_PROG_TEST_RUN` (DESIGN.md, test level 2): a policy names
//! the subscribers (alice, bob), frames of their flows go through `xdp_downlink` (up) and
//! `xdp_uplink` (down), and the kernel's per-subscriber array is read as the daemon reads
//! it (the mapped `SUB_COUNTERS`).
//!
//! What is checked: packets and bytes land under the subscriber, the flow's label and the
//! direction; when a flow is labelled after some packets, those packets move from
//! `unknown` to the label for the subscriber too, so the subscriber's per-label totals
//! equal the flow's; a flow that began before the policy knew its subscriber moves
//! nothing (its first packets were never the subscriber's), so no counter goes below what
//! was counted; an address no subscriber owns counts nowhere; the per-class view sums the
//! class's labels.
//!
//! Needs root (it loads the probe); panics saying so otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use peerwarden::probe::{Probe, ProbeOptions};
use peerwarden_common::{
    Class, Confidence, Direction, Label,
    deep::Verdict,
    flow::PROTO_TCP,
    policy::{SubUsage, Usage},
};
use peerwarden_policies::{
    Weekday,
    compile::{SubscriberIndex, compile},
};
use peerwarden_tests::{
    lab::require_root,
    packets::{Conversation, Family, TcpFlags},
    payloads::{INFO_HASH, PEER_ID, dht_get_peers_query, peer_wire_handshake},
    xdp::{XDP_PASS, program_for},
};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;
const ACK: u8 = TcpFlags::ACK;

/// Alice by both families (the frame builders' subscriber addresses), bob by IPv4, on a
/// plan whose limits no test comes near.
const POLICY: &str = r#"
plans:
  test:
    rate: { down: 10gbit, up: 10gbit }
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32, "2001:db8:1::/64"], plan: test }
  - { id: bob, prefixes: [100.64.1.20/32], plan: test }
default_plan: test
"#;

struct UsageProbe {
    probe: Probe,
    index: SubscriberIndex,
    owners: Vec<(String, u32)>,
}

impl UsageProbe {
    fn load() -> UsageProbe {
        require_root();
        let probe = Probe::load_with(ProbeOptions {
            flow_table_size: 4096,
            max_subscribers: 64,
        })
        .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"));
        UsageProbe {
            probe,
            index: SubscriberIndex::default(),
            owners: Vec::new(),
        }
    }

    fn install(&mut self) {
        let policy = peerwarden_policies::load_str(POLICY, "test.yaml").expect("valid");
        let options = self.probe.compile_options();
        let c = compile(&policy, Weekday::Mon, 0, &mut self.index, &options).expect("compiles");
        self.probe.install_policy(&c).expect("install_policy");
        self.owners = c.subscribers.clone();
    }

    /// Runs `frame` through the program for `dir`; every frame here passes.
    fn send(&mut self, dir: Direction, frame: &[u8]) -> u64 {
        let prog = self.probe.program(program_for(dir)).expect("program");
        let r = aya::programs::TestRun::test_run(
            prog,
            aya::programs::TestRunOptions {
                data_in: Some(frame),
                ..aya::programs::TestRunOptions::new()
            },
        )
        .expect("test_run");
        assert_eq!(r.return_value, XDP_PASS);
        frame.len() as u64
    }

    fn usage(&self, id: &str) -> SubUsage {
        let (_, index) = self
            .owners
            .iter()
            .find(|(o, _)| o == id)
            .unwrap_or_else(|| panic!("{id} is not in the policy"));
        self.probe.subscriber_usage(*index).expect("usage")
    }

    fn label(&self, id: &str, label: Label, dir: Direction) -> Usage {
        self.usage(id).labels[label.id() as usize][dir.index()]
    }
}

fn usage(packets: u64, bytes: u64) -> Usage {
    Usage { packets, bytes }
}

/// `c` from another subscriber-side IPv4 address.
fn from(c: Conversation, ip: [u8; 4]) -> Conversation {
    Conversation {
        sub: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), c.sub.port()),
        ..c
    }
}

/// The peer-wire handshake going up on `c` (labels the flow `bittorrent`).
/// The deep tier's verdict on `c` (final `bittorrent`), applied by the kernel on the flow's
/// next packet: the way a TCP flow is labelled after its first two payload packets, whose
/// handshake the kernel's fixed offsets no longer read (issue 11).
fn deep_says_bittorrent(p: &UsageProbe, c: &Conversation) {
    put(p, c, Label::Bittorrent, Confidence::Payload);
}

fn handshake(c: &Conversation) -> Vec<u8> {
    c.tcp(
        UP,
        TcpFlags::PSH | ACK,
        &peer_wire_handshake(&INFO_HASH, &PEER_ID),
    )
}

/// A TCP frame of `n` zero bytes (no fingerprint matches: the flow stays undecided).
fn zeros(c: &Conversation, dir: Direction, n: usize) -> Vec<u8> {
    c.tcp(dir, ACK, &vec![0u8; n])
}

#[test]
fn a_flow_labelled_late_moves_its_earlier_packets_to_the_label_for_its_subscriber() {
    let mut p = UsageProbe::load();
    p.install();
    let c = Conversation::new(Family::V4, 40001, 6881);
    // Three undecided packets, then the flow is labelled (by the deep tier's verdict,
    // applied with the handshake packet).
    let mut up = p.send(UP, &zeros(&c, UP, 100));
    up += p.send(UP, &zeros(&c, UP, 300));
    let mut down = p.send(DOWN, &zeros(&c, DOWN, 200));
    assert_eq!(
        p.label("alice", Label::Unknown, UP),
        usage(2, up),
        "undecided packets count as unknown"
    );
    assert_eq!(p.label("alice", Label::Unknown, DOWN), usage(1, down));
    deep_says_bittorrent(&p, &c);
    up += p.send(UP, &handshake(&c));
    down += p.send(DOWN, &zeros(&c, DOWN, 1000));
    down += p.send(DOWN, &zeros(&c, DOWN, 1400));
    let flow = p.probe.flows().expect("flows");
    let (_, f) = flow
        .iter()
        .find(|(k, _)| *k == c.key(PROTO_TCP))
        .expect("the flow");
    assert_eq!(Label::from_id(f.label), Label::Bittorrent);
    assert_eq!(p.label("alice", Label::Bittorrent, UP), usage(3, up));
    assert_eq!(p.label("alice", Label::Bittorrent, DOWN), usage(3, down));
    assert_eq!(
        p.label("alice", Label::Unknown, UP),
        usage(0, 0),
        "moved to the label"
    );
    assert_eq!(p.label("alice", Label::Unknown, DOWN), usage(0, 0));
    // The subscriber's label totals are the flow's.
    assert_eq!(f.packets, [3, 3]);
    assert_eq!(f.bytes, [up, down]);
    // The class view sums the class's labels; bob saw nothing.
    let classes = p.usage("alice").classes();
    assert_eq!(classes[Class::P2p as usize][UP.index()].bytes, up);
    assert_eq!(classes[Class::P2p as usize][DOWN.index()].bytes, down);
    assert_eq!(classes[Class::Other as usize][UP.index()].bytes, 0);
    assert_eq!(p.usage("bob"), SubUsage::default());
}

#[test]
fn each_subscriber_label_and_direction_has_its_own_counter() {
    let mut p = UsageProbe::load();
    p.install();
    // Bob: a DHT query (labelled on its first packet) up, the reply down.
    let bob = from(Conversation::new(Family::V4, 6881, 6881), [100, 64, 1, 20]);
    let q = dht_get_peers_query(&PEER_ID, &INFO_HASH);
    let up = p.send(UP, &bob.udp(UP, &q)) + p.send(UP, &bob.udp(UP, &q));
    let down = p.send(DOWN, &bob.udp(DOWN, &q));
    // Alice over IPv6: an undecided flow, both ways.
    let alice = Conversation::new(Family::V6, 40002, 443);
    let a_up = p.send(UP, &zeros(&alice, UP, 500));
    let a_down = p.send(DOWN, &zeros(&alice, DOWN, 700)) + p.send(DOWN, &zeros(&alice, DOWN, 10));
    // Nobody's: an address outside the policy.
    let stranger = from(Conversation::new(Family::V4, 40003, 80), [100, 64, 9, 9]);
    p.send(UP, &zeros(&stranger, UP, 900));
    p.send(DOWN, &zeros(&stranger, DOWN, 900));

    assert_eq!(p.label("bob", Label::BittorrentDht, UP), usage(2, up));
    assert_eq!(p.label("bob", Label::BittorrentDht, DOWN), usage(1, down));
    assert_eq!(p.label("alice", Label::Unknown, UP), usage(1, a_up));
    assert_eq!(p.label("alice", Label::Unknown, DOWN), usage(2, a_down));
    let total = |u: &SubUsage| -> (u64, u64) {
        u.labels
            .iter()
            .flatten()
            .fold((0, 0), |(p, b), x| (p + x.packets, b + x.bytes))
    };
    assert_eq!(
        total(&p.usage("bob")),
        (3, up + down),
        "bob: nothing elsewhere"
    );
    assert_eq!(total(&p.usage("alice")), (3, a_up + a_down));
    // Every index of the array: only alice's and bob's hold anything.
    let owned: Vec<u32> = p.owners.iter().map(|(_, i)| *i).collect();
    for i in 0..p.probe.usage_map().entries() {
        if !owned.contains(&i) {
            assert_eq!(
                p.probe.subscriber_usage(i).expect("usage"),
                SubUsage::default(),
                "index {i} belongs to nobody"
            );
        }
    }
}

#[test]
fn a_flow_older_than_the_policy_moves_nothing_when_labelled() {
    let mut p = UsageProbe::load();
    let c = Conversation::new(Family::V4, 40004, 6881);
    // Two packets before any policy: no subscriber is known, nothing is counted for one.
    p.send(UP, &zeros(&c, UP, 100));
    p.send(DOWN, &zeros(&c, DOWN, 100));
    p.install();
    let counted = p.send(UP, &zeros(&c, UP, 200));
    assert_eq!(p.label("alice", Label::Unknown, UP), usage(1, counted));
    deep_says_bittorrent(&p, &c);
    let hs = p.send(UP, &handshake(&c));
    // The flow's three earlier packets were not all alice's: no move, so no counter goes
    // below what it counted; the handshake itself counts under the label.
    assert_eq!(p.label("alice", Label::Unknown, UP), usage(1, counted));
    assert_eq!(p.label("alice", Label::Bittorrent, UP), usage(1, hs));
    assert_eq!(p.label("alice", Label::Unknown, DOWN), usage(0, 0));
    // A flow that starts under the policy is moved as usual.
    let d = Conversation::new(Family::V4, 40005, 6881);
    let first = p.send(UP, &zeros(&d, UP, 300));
    let hs2 = p.send(UP, &handshake(&d));
    assert_eq!(p.label("alice", Label::Unknown, UP), usage(1, counted));
    assert_eq!(
        p.label("alice", Label::Bittorrent, UP),
        usage(3, hs + first + hs2)
    );
}

#[test]
fn a_reinstalled_policy_keeps_counting_under_the_same_index() {
    let mut p = UsageProbe::load();
    p.install();
    let c = Conversation::new(Family::V4, 40006, 6881);
    let mut up = p.send(UP, &zeros(&c, UP, 100));
    // A reload (new generation) between the undecided packets and the label: the flow
    // looks its subscriber up again, finds the same one, and still moves its packets.
    p.install();
    up += p.send(UP, &zeros(&c, UP, 100));
    deep_says_bittorrent(&p, &c);
    up += p.send(UP, &handshake(&c));
    assert_eq!(p.label("alice", Label::Bittorrent, UP), usage(3, up));
    assert_eq!(p.label("alice", Label::Unknown, UP), usage(0, 0));
}

#[test]
fn a_subscribers_counters_changing_sets_its_flag_until_the_daemon_takes_it() {
    let mut p = UsageProbe::load();
    p.install();
    let index = |id: &str| p.owners.iter().find(|(o, _)| o == id).expect("owner").1;
    let (alice, bob) = (index("alice"), index("bob"));
    // The indexes whose change flag is set (without taking them).
    let flagged =
        |p: &UsageProbe| -> Vec<u32> { (0..64).filter(|i| p.probe.seen_map().peek(*i)).collect() };
    assert_eq!(flagged(&p), Vec::<u32>::new(), "no traffic yet");

    // Bob sends: his flag is set, and only his.
    let bob_c = from(Conversation::new(Family::V4, 6881, 6881), [100, 64, 1, 20]);
    let q = dht_get_peers_query(&PEER_ID, &INFO_HASH);
    p.send(UP, &bob_c.udp(UP, &q));
    assert_eq!(flagged(&p), vec![bob]);
    let seen = p.probe.seen_map();
    // Taking it answers true once and clears it; more traffic sets it again.
    assert!(seen.take(bob));
    assert!(!seen.take(bob), "taken twice");
    let before = p.probe.subscriber_usage(bob).expect("usage");
    p.send(DOWN, &bob_c.udp(DOWN, &q));
    let seen = p.probe.seen_map();
    assert!(seen.peek(bob), "a packet after the take flags bob again");
    assert_ne!(p.probe.subscriber_usage(bob).expect("usage"), before);
    assert!(seen.take(bob));

    // A flow of alice's labelled late: its packets move to the label (the counters change
    // without a new packet being counted elsewhere) and her flag is set by each step.
    let alice_c = Conversation::new(Family::V4, 40010, 6881);
    p.send(UP, &zeros(&alice_c, UP, 100));
    let seen = p.probe.seen_map();
    assert!(seen.take(alice));
    p.send(UP, &handshake(&alice_c));
    let seen = p.probe.seen_map();
    assert!(seen.peek(alice), "labelling flags alice");
    assert!(!seen.peek(bob), "alice's traffic leaves bob's flag alone");
    assert_eq!(p.label("alice", Label::Unknown, UP), usage(0, 0));

    // Traffic of an address nobody owns flags nobody.
    assert!(seen.take(alice));
    let stranger = from(Conversation::new(Family::V4, 40003, 80), [100, 64, 9, 9]);
    p.send(UP, &zeros(&stranger, UP, 900));
    assert_eq!(flagged(&p), Vec::<u32>::new());
}

/// A final verdict of `label` on `c` for the kernel.
fn put(p: &UsageProbe, c: &Conversation, label: Label, confidence: Confidence) {
    let v = Verdict {
        label: label.id(),
        confidence: confidence as u8,
        final_: 1,
    };
    p.probe
        .put_verdict(&c.key(PROTO_TCP), v)
        .expect("put_verdict");
}

/// Issue 12 item 3: a final `tls` flow that the daemon's walk of the flow table found to be
/// adaptive streaming (`video.behavioural`) takes that verdict on one of its next 64
/// packets one way, and its earlier packets move to video for its subscriber; a verdict
/// of any other label on a final flow is dropped (the shape names video only).
#[test]
fn a_shape_verdict_turns_a_final_tls_flow_into_video() {
    let mut p = UsageProbe::load();
    p.install();
    let c = Conversation::new(Family::V4, 40011, 443);
    // Undecided, sampled; then the deep tier's final `tls`, applied on the next packet.
    let mut up = p.send(UP, &zeros(&c, UP, 100));
    put(&p, &c, Label::Tls, Confidence::Payload);
    up += p.send(UP, &zeros(&c, UP, 100));
    assert_eq!(p.label("alice", Label::Tls, UP), usage(2, up));
    // Another label is not the shape's: dropped on the first poll (the first packet down).
    put(&p, &c, Label::Bittorrent, Confidence::Behaviour);
    let mut down = 0;
    for _ in 0..64 {
        down += p.send(DOWN, &zeros(&c, DOWN, 1000));
    }
    let label = |p: &UsageProbe| {
        let f = p
            .probe
            .flow(&c.key(PROTO_TCP))
            .expect("flow")
            .expect("held");
        Label::from_id(f.label)
    };
    assert_eq!(label(&p), Label::Tls);
    assert_eq!(p.label("alice", Label::Tls, DOWN), usage(64, down));
    assert_eq!(p.label("alice", Label::Bittorrent, DOWN), usage(0, 0));
    // The shape's verdict: applied on the next poll (the 65th packet down), everything
    // the flow carried moves to video.
    put(&p, &c, Label::VideoService, Confidence::Behaviour);
    for _ in 0..64 {
        down += p.send(DOWN, &zeros(&c, DOWN, 1000));
    }
    assert_eq!(label(&p), Label::VideoService);
    assert_eq!(
        p.label("alice", Label::VideoService, DOWN),
        usage(128, down)
    );
    assert_eq!(p.label("alice", Label::VideoService, UP), usage(2, up));
    assert_eq!(p.label("alice", Label::Tls, DOWN), usage(0, 0));
    assert_eq!(p.label("alice", Label::Tls, UP), usage(0, 0));
}
