//! Flow floods through the XDP probe with `BPF_PROG_TEST_RUN` (issue 6, item 3): millions of
//! new 5-tuples against a flow table a fraction of their number. The LRU table must stay at
//! its size and its kernel memory must not move, and BitTorrent flows labelled before the
//! flood, still sending during it, must come out labelled and still under their
//! subscriber's policy (a block rule on p2p). And the default table (1,048,576 entries)
//! must hold a million concurrent flows.
//!
//! Bounded: the flood is a fixed count of frames (2,000,000 and 1,100,000), a few seconds
//! each. Needs root (it loads the probe). The new-flows-per-second figure is measured by the
//! bench `flow_flood` (docs/reliability.md), not here.

use peerwarden_common::{Direction, FlowKey, FlowValue, Label, flow::PROTO_TCP};
use peerwarden_policies::Weekday;
use peerwarden_policies::compile::{SubscriberIndex, compile};
use peerwarden_tests::{
    flood::{FloodFrames, flow_map_info},
    packets::{Conversation, Family, TcpFlags},
    payloads::{INFO_HASH, PEER_ID, peer_wire_handshake},
    xdp::{TestProbe, XDP_PASS},
};

const XDP_DROP: u32 = 1;
const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;

/// alice's p2p is blocked; everyone else (the flood's addresses) has no rule that applies.
const POLICY: &str = r#"
plans:
  test:
    rate: { down: 10gbit, up: 10gbit }
    classes:
      p2p: { action: block }
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32], plan: test }
default_plan: test
"#;

/// A probe with a table of `entries` flows and [`POLICY`] installed.
fn probe_with_policy(entries: u32) -> TestProbe {
    let mut p = TestProbe::load_with_flow_table(entries);
    let policy = peerwarden_policies::load_str(POLICY, "flood.yaml")
        .unwrap_or_else(|e| panic!("the test policy is invalid: {:?}", e.errors()));
    let mut index = SubscriberIndex::default();
    let options = p.probe().compile_options();
    let c = compile(&policy, Weekday::Mon, 0, &mut index, &options).expect("the policy compiles");
    p.probe().install_policy(&c).expect("install_policy");
    p
}

/// alice's BitTorrent conversations: the handshake labels each, and the block applies.
struct Labelled {
    conversations: Vec<Conversation>,
}

impl Labelled {
    fn start(probe: &mut TestProbe, n: u16) -> Labelled {
        let conversations: Vec<Conversation> = (0..n)
            .map(|i| Conversation::new(Family::V4, 40_000 + i, 6881))
            .collect();
        let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
        let ack = TcpFlags::PSH | TcpFlags::ACK;
        for c in &conversations {
            probe.send(UP, &c.tcp(UP, ack, &hs));
        }
        let l = Labelled { conversations };
        l.assert_labelled(probe, "after the handshakes");
        l.assert_blocked(probe, "before the flood");
        l
    }

    /// Every conversation's flow is in the table, labelled BitTorrent.
    fn assert_labelled(&self, probe: &mut TestProbe, when: &str) {
        let missing: Vec<u16> = self
            .conversations
            .iter()
            .filter(|c| {
                let f = probe.probe().flow(&c.key(PROTO_TCP)).expect("flow lookup");
                f.map(|f| f.label) != Some(Label::Bittorrent.id())
            })
            .map(|c| c.sub.port())
            .collect();
        assert!(
            missing.is_empty(),
            "{when}: {} of {} labelled flows lost their label (subscriber ports {:?})",
            missing.len(),
            self.conversations.len(),
            &missing[..missing.len().min(20)]
        );
    }

    /// A data packet each way on every conversation is dropped by the p2p block.
    fn assert_blocked(&self, probe: &mut TestProbe, when: &str) {
        for c in &self.conversations {
            for dir in [UP, DOWN] {
                let v = probe.send(dir, &c.tcp(dir, TcpFlags::ACK, &[0u8; 200]));
                assert_eq!(v, XDP_DROP, "{when}: {dir:?} packet of {:?} passed", c.sub);
            }
        }
    }
}

#[test]
fn two_million_new_flows_keep_the_table_at_size_and_labelled_flows_blocked() {
    const TABLE: u32 = 65_536;
    const FLOOD: u64 = 2_000_000;
    let mut probe = probe_with_policy(TABLE);
    let map_before = flow_map_info(TABLE).expect("the flow map in /proc/self/fdinfo");
    let labelled = Labelled::start(&mut probe, 64);
    let mut frames = FloodFrames::new();
    let created_before = probe.stat("flows_created");
    for i in 0..FLOOD {
        assert_eq!(probe.send(UP, frames.up(i)), XDP_PASS, "flood packet {i}");
        // The transfers go on during the flood: a packet on each every 5,000 flood packets,
        // which the block drops.
        if i % 5_000 == 4_999 {
            labelled.assert_blocked(&mut probe, &format!("{} packets into the flood", i + 1));
        }
    }
    let created = probe.stat("flows_created") - created_before;
    let failed = probe.stat("flow_insert_failed");
    let in_table = probe.flows().len();
    let map_after = flow_map_info(TABLE).expect("the flow map in /proc/self/fdinfo");
    println!(
        "flood of {FLOOD}: {created} flows created, {failed} insert failures, {in_table} in the \
         {TABLE}-entry table; flow map memlock {} -> {} bytes",
        map_before.memlock, map_after.memlock
    );
    assert_eq!(created, FLOOD, "every flood tuple is a new flow");
    assert_eq!(
        failed, 0,
        "an LRU table evicts rather than refusing new flows"
    );
    assert!(
        in_table <= TABLE as usize,
        "{in_table} flows in a {TABLE}-entry table"
    );
    assert!(
        in_table >= TABLE as usize * 9 / 10,
        "the table should be (nearly) full: {in_table}"
    );
    assert_eq!(
        map_after, map_before,
        "the flow map's size or memory changed"
    );
    labelled.assert_labelled(&mut probe, "after the flood");
    labelled.assert_blocked(&mut probe, "after the flood");
}

/// The flow table of the eviction tests.
const EVICTING_TABLE: u32 = 16_384;

/// Floods twice [`EVICTING_TABLE`] in new tuples past `labelled`'s idle flows, and checks
/// the premise of what follows: every one of them was evicted.
fn flood_out(probe: &mut TestProbe, labelled: &Labelled) {
    let flood = 2 * u64::from(EVICTING_TABLE);
    let mut frames = FloodFrames::new();
    for i in 0..flood {
        assert_eq!(probe.send(UP, frames.up(i)), XDP_PASS, "flood packet {i}");
    }
    let evicted = labelled
        .conversations
        .iter()
        .filter(|c| {
            let f = probe.probe().flow(&c.key(PROTO_TCP)).expect("flow lookup");
            f.is_none()
        })
        .count();
    assert_eq!(
        evicted,
        labelled.conversations.len(),
        "a flood of {flood} new flows into a {EVICTING_TABLE}-entry table evicts every idle flow"
    );
}

/// Idle labelled flows are the ones an LRU table evicts first: a flood of twice the table's
/// entries in new tuples pushes every one of them out. When they send again each must be
/// BitTorrent from its first packet and its subscriber's p2p block must drop that packet,
/// rather than the flow starting over unlabelled (and unblocked) as a new one.
#[test]
fn idle_labelled_flows_evicted_by_a_flood_are_labelled_and_blocked_when_they_resume() {
    let mut probe = probe_with_policy(EVICTING_TABLE);
    let labelled = Labelled::start(&mut probe, 64);
    flood_out(&mut probe, &labelled);
    // The first packet of each after the flood goes up (the subscriber resumes), and the
    // next down: both dropped.
    labelled.assert_blocked(&mut probe, "the first packets after the flood");
    labelled.assert_labelled(&mut probe, "after the flood");
}

/// A TCP SYN on the 5-tuple of an evicted labelled flow opens a new connection: it starts
/// unlabelled like any new flow (and passes), rather than inheriting the old label.
#[test]
fn a_new_connection_on_an_evicted_labelled_flows_tuple_starts_unlabelled() {
    let mut probe = probe_with_policy(EVICTING_TABLE);
    let labelled = Labelled::start(&mut probe, 8);
    flood_out(&mut probe, &labelled);
    for c in &labelled.conversations {
        let v = probe.send(UP, &c.tcp(UP, TcpFlags::SYN, &[]));
        assert_eq!(v, XDP_PASS, "the SYN of {:?}", c.sub);
        let f = probe.probe().flow(&c.key(PROTO_TCP)).expect("flow lookup");
        assert_eq!(
            f.map(|f| f.label),
            Some(Label::Unknown.id()),
            "the new connection of {:?}",
            c.sub
        );
    }
}

#[test]
fn the_default_table_holds_a_million_concurrent_flows() {
    const TABLE: u32 = 1 << 20;
    const FLOWS: u64 = 1_100_000;
    let mut probe = TestProbe::load_with_flow_table(TABLE);
    let info = flow_map_info(TABLE).expect("the flow map in /proc/self/fdinfo");
    let mut frames = FloodFrames::new();
    for i in 0..FLOWS {
        assert_eq!(probe.send(UP, frames.up(i)), XDP_PASS, "packet {i}");
    }
    let flows = probe.flows();
    let after = flow_map_info(TABLE).expect("the flow map in /proc/self/fdinfo");
    println!(
        "{FLOWS} new flows into the default table: {} held of {TABLE}; flow map memlock {} bytes \
         ({:.1} MiB, {} bytes per entry)",
        flows.len(),
        after.memlock,
        after.memlock as f64 / (1 << 20) as f64,
        after.memlock / u64::from(TABLE)
    );
    assert_eq!(after, info, "the flow map's size or memory changed");
    assert!(flows.len() <= TABLE as usize);
    // The LRU map starts evicting a little before it is full (per-CPU free lists).
    assert!(
        flows.len() >= TABLE as usize * 99 / 100,
        "only {} flows held in a {TABLE}-entry table",
        flows.len()
    );
    // The flows held are the newest: every one of the last 10,000 sent is there.
    let evicted = (FLOWS - 10_000..FLOWS)
        .filter(|&i| {
            let f = probe
                .probe()
                .flow(&FloodFrames::key(i))
                .expect("flow lookup");
            f.is_none()
        })
        .count();
    assert_eq!(
        evicted, 0,
        "of the newest 10,000 flows, {evicted} were evicted"
    );
}

/// The daemon's walk of the flow table (`Probe::flows`, batches of 16,384 flows a syscall)
/// lists every flow once, with its counts, across several batches.
#[test]
fn the_flow_walk_lists_every_flow_once_with_its_counts() {
    let probe = flooded();
    let flows = probe.flows();
    assert_eq!(flows.len(), WALKED as usize, "flows listed");
    let listed: std::collections::HashMap<_, _> = flows.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(listed.len(), flows.len(), "a flow listed twice");
    assert_walked_counts(&listed);
}

/// Flows in the walk tests' table.
const WALKED: u64 = 40_000;

/// A 65,536-entry table with [`WALKED`] flows, every tenth of them with a second packet.
fn flooded() -> TestProbe {
    let mut probe = TestProbe::load_with_flow_table(1 << 16);
    let mut frames = FloodFrames::new();
    for i in 0..WALKED {
        assert_eq!(probe.send(UP, frames.up(i)), XDP_PASS, "packet {i}");
    }
    // Every tenth flow a second packet.
    for i in (0..WALKED).step_by(10) {
        assert_eq!(probe.send(UP, frames.up(i)), XDP_PASS, "packet {i}");
    }
    probe
}

/// Every flow of [`flooded`] is in `listed` with its packets.
fn assert_walked_counts(listed: &std::collections::HashMap<FlowKey, FlowValue>) {
    for i in 0..WALKED {
        let v = listed
            .get(&FloodFrames::key(i))
            .unwrap_or_else(|| panic!("flow {i} not listed"));
        let want = if i % 10 == 0 { 2 } else { 1 };
        assert_eq!(v.packets.iter().sum::<u64>(), want, "flow {i}'s packets");
    }
}

/// The walk of a large table in parts (`Probe::flows_part`: a part a second, resumed at the
/// kernel's bucket token) lists every flow once in a pass over the buckets, with its counts,
/// in parts of at least the budget each.
#[test]
fn the_flow_walk_in_parts_lists_every_flow_once_a_pass() {
    let mut probe = flooded();
    let mut listed = std::collections::HashMap::new();
    let (mut from, mut parts) = (None, Vec::new());
    loop {
        let (part, next) = probe
            .probe()
            .flows_part(from, 10_000)
            .unwrap_or_else(|e| panic!("reading a part: {e}"))
            .expect("this kernel has batch lookups");
        parts.push(part.len());
        for (k, v) in part {
            assert!(listed.insert(k, v).is_none(), "a flow listed twice");
        }
        match next {
            Some(token) => from = Some(token),
            None => break,
        }
        assert!(parts.len() < 40, "the walk does not end: {parts:?}");
    }
    assert!(parts.len() >= 2, "one part: {parts:?}");
    let (last, whole) = parts.split_last().expect("a part");
    assert!(whole.iter().all(|&n| n >= 10_000), "{parts:?}");
    assert!(*last <= WALKED as usize, "{parts:?}");
    assert_eq!(listed.len(), WALKED as usize, "flows listed: {parts:?}");
    assert_walked_counts(&listed);
}

/// A conversation of subscriber `sub` (an IPv4 address in 100.64.0.0/10) on `port`.
fn of(sub: [u8; 4], port: u16, remote_port: u16) -> Conversation {
    let c = Conversation::new(Family::V4, port, remote_port);
    Conversation {
        sub: std::net::SocketAddr::from((sub, port)),
        ..c
    }
}

const BOB: [u8; 4] = [100, 64, 1, 20];
const MALLORY: [u8; 4] = [100, 64, 1, 66];

/// Issue 11, item 6: `LABELLED` (the labels of flows the table may evict) takes only final
/// labels of flows seen both ways, within a per-subscriber budget. Mallory floods it with
/// 20,000 answered handshakes (more than its 16,384 entries) and 20,000 one-way DHT
/// queries; bob's 50 BitTorrent flows, evicted from the flow table by a flood of new tuples
/// afterwards, still resume labelled, and mallory's resume labelled only within her budget.
#[test]
fn one_subscribers_flood_cannot_push_others_labels_out() {
    let mut probe = TestProbe::load_with_flow_table(65_536);
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let ack = TcpFlags::PSH | TcpFlags::ACK;
    let bob: Vec<Conversation> = (0..50).map(|i| of(BOB, 41_000 + i, 6881)).collect();
    for c in &bob {
        probe.send(UP, &c.tcp(UP, ack, &hs));
        probe.send(DOWN, &c.tcp(DOWN, ack, &hs));
    }
    // Answered handshakes: each a confirmed flow, each asking to be remembered.
    let answered: Vec<Conversation> = (0..20_000u16)
        .map(|i| of(MALLORY, 1024 + i, 6881))
        .collect();
    let t0 = std::time::Instant::now();
    for c in &answered {
        probe.send(UP, &c.tcp(UP, ack, &hs));
        probe.send(DOWN, &c.tcp(DOWN, ack, &hs));
    }
    // Her budget refills at 64 a second while the handshakes go in (about a second here,
    // longer on a loaded machine): what she may have remembered is the burst plus that.
    let budget = 1_024 + (64.0 * t0.elapsed().as_secs_f64()).ceil() as usize + 1;
    let refused = probe.stat("labelled_refused");
    // One-way DHT queries to new ports: final labels, never remembered.
    let dht = peerwarden_tests::payloads::dht_ping_query(&[7; 20]);
    let one_way: Vec<Conversation> = (0..20_000u16)
        .map(|i| of(MALLORY, 30_000, 1024 + i))
        .collect();
    for c in &one_way {
        probe.send(UP, &c.udp(UP, &dht));
    }
    // Evict everything from the flow table with unlabelled tuples, then the flows resume
    // with packets no fingerprint reads (an empty datagram, a keep-alive message).
    let mut flood = FloodFrames::new();
    for i in 0..200_000u64 {
        probe.send(UP, flood.up(i));
    }
    // The table's LRU is approximate (per-CPU free lists): a flow can outlive the flood,
    // and one that did resumes labelled without `LABELLED`. Those are not remembered ones.
    let survived = answered
        .iter()
        .filter(|c| matches!(probe.probe().flow(&c.key(PROTO_TCP)), Ok(Some(_))))
        .count();
    let keepalive = [0u8, 0, 0, 0];
    let mut resumed = |cs: &[Conversation], tcp: bool| {
        cs.iter()
            .filter(|c| {
                let (frame, proto) = if tcp {
                    (c.tcp(UP, ack, &keepalive), PROTO_TCP)
                } else {
                    (c.udp(UP, b""), peerwarden_common::flow::PROTO_UDP)
                };
                probe.send(UP, &frame);
                let f = probe.probe().flow(&c.key(proto)).expect("flow lookup");
                f.is_some_and(|f| f.label != Label::Unknown.id())
            })
            .count()
    };
    let (bob_back, answered_back, one_way_back) = (
        resumed(&bob, true),
        resumed(&answered, true),
        resumed(&one_way[..2_000], false),
    );
    println!(
        "refused {refused}; resumed labelled: bob {bob_back}/50, mallory's answered {answered_back}/20000 ({survived} outlived the flood; budget {budget}), one-way {one_way_back}/2000"
    );
    assert_eq!(
        bob_back,
        bob.len(),
        "bob's flows resume labelled after mallory's flood"
    );
    assert!(
        answered_back - survived <= budget && refused >= 20_000 - budget as u64,
        "mallory's answered flows past her budget (1,024 at once, 64 a second) are not remembered"
    );
    assert_eq!(one_way_back, 0, "one-way flows are never remembered");
}

/// Issue 11, item 6: the deep tier's ring is shared, so each subscriber has a sample
/// budget. Mallory's 10,000 new undecided flows get their samples up to hers (2,000 at
/// once, 1,000 a second) and no further, counted as over budget; the ring is not full, and
/// bob's undecided flow is sampled at once.
#[test]
fn one_subscribers_flood_of_samples_leaves_the_ring_to_everyone_else() {
    let mut probe = TestProbe::load_with_flow_table(65_536);
    let junk: Vec<u8> = (0..600u32).map(|i| (i * 97 + 13) as u8).collect();
    let sent_before = probe.stat("samples_sent");
    let t0 = std::time::Instant::now();
    for i in 0..10_000u32 {
        let c = of(MALLORY, 20_000, 1024 + i as u16);
        probe.send(UP, &c.udp(UP, &junk));
    }
    let secs = t0.elapsed().as_secs_f64();
    let sent = probe.stat("samples_sent") - sent_before;
    let over = probe.stat("samples_over_budget");
    // The budget refills at 1,000 a second on a clock that moves in ticks (4 ms here).
    let allowed = 2_000 + (1_000.0 * (secs + 0.01)).ceil() as u64;
    println!(
        "mallory: {sent} samples sent in {secs:.3} s (allowed {allowed}), {over} over budget, ring drops {}",
        probe.stat("ring_drops")
    );
    assert!(
        (2_000..=allowed).contains(&sent),
        "mallory's samples stop at her budget: {sent} sent, {allowed} allowed"
    );
    assert_eq!(
        sent + over,
        10_000,
        "every sample is sent or counted over budget"
    );
    assert_eq!(probe.stat("ring_drops"), 0, "the ring never filled");
    let b = of(BOB, 50_000, 9999);
    probe.send(UP, &b.udp(UP, &junk));
    let f = probe
        .flow(&b.key(peerwarden_common::flow::PROTO_UDP))
        .expect("bob's flow");
    assert_eq!(
        f.samples, 1,
        "bob's flow is sampled despite mallory's flood"
    );
}
