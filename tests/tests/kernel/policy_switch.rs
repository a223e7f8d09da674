//! The policy decision each flow caches (issue 16, item 1) against the policy swaps that
//! make it stale: a reload (`Probe::install_policy` of a new policy) and a schedule
//! switch (the same policy compiled for another time of day and installed, as the
//! daemon's schedule tick does it). Through `BPF_PROG_TEST_RUN`, one established
//! BitTorrent flow of alice's: a packet meets the rule in force, the policy is swapped,
//! and the very next packet must meet the new rule, never the one its flow had cached:
//! block against pass (reloads, schedule switches) and two police rules with different
//! rates and marks (reloads), 200 swaps each, both directions in turn. A relabel (the flow's label changes under
//! one policy) must likewise meet the new label's rule from the packet that labels it.
//!
//! Needs root (it loads the probe); panics saying so otherwise.

use peerwarden_common::Direction;
use peerwarden_policies::Weekday;
use peerwarden_tests::{
    packets::{Conversation, Family, TcpFlags},
    payloads::{INFO_HASH, PEER_ID, peer_wire_handshake, peer_wire_message},
    policy::PolicyProbe,
    xdp::XDP_PASS,
};

const XDP_DROP: u32 = 1;
const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;
/// Swaps per test, each followed at once by a packet that must meet the new rule.
const SWAPS: usize = 200;

/// The plans' common total: far above anything a test sends.
const TOTAL: &str = "    rate: { down: 10gbit, up: 10gbit }\n";

/// A full-size `piece` frame of `c` going `dir`.
fn piece(c: &Conversation, dir: Direction) -> Vec<u8> {
    c.tcp(
        dir,
        TcpFlags::ACK,
        &peer_wire_message(7, &vec![0xab; 1514 - 14 - 20 - 20 - 5]),
    )
}

/// Alice's BitTorrent flow on `port`, labelled by its handshake both ways (the
/// handshakes themselves meet whatever policy is installed).
fn bittorrent_flow(p: &mut PolicyProbe, port: u16) -> Conversation {
    let c = Conversation::new(Family::V4, port, 6881);
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    for dir in [UP, DOWN] {
        p.verdict(dir, &c.tcp(dir, TcpFlags::ACK, &hs));
    }
    c
}

/// The DSCP of an IPv4 frame as it left the program.
fn dscp(c: &Conversation, frame: &[u8]) -> u8 {
    frame[c.l3_offset() + 1] >> 2
}

/// The direction of the `i`th swap's packets: both, in turn.
fn dir_of(i: usize) -> Direction {
    if i.is_multiple_of(2) { UP } else { DOWN }
}

/// [`SWAPS`] swaps between a policy that passes `c`'s packets and one that blocks them,
/// `swap(p, blocked)` installing the one asked for: a packet before each meets the rule in
/// force, and the packet right after it must meet the new one.
fn alternate(
    p: &mut PolicyProbe,
    c: &Conversation,
    what: &str,
    mut swap: impl FnMut(&mut PolicyProbe, bool),
) {
    let mut blocked = false;
    for i in 0..SWAPS {
        let dir = dir_of(i);
        let before = p.verdict(dir, &piece(c, dir));
        assert_eq!(
            before == XDP_DROP,
            blocked,
            "{what} {i}: the rule in force before"
        );
        blocked = !blocked;
        swap(p, blocked);
        let after = p.verdict(dir, &piece(c, dir));
        assert_eq!(
            after,
            if blocked { XDP_DROP } else { XDP_PASS },
            "{what} {i} ({dir:?}): the first packet after the {what} met the old rule"
        );
    }
}

#[test]
fn after_a_reload_the_next_packet_meets_the_new_rule() {
    let block = format!("{TOTAL}    classes:\n      p2p: {{ action: block }}\n");
    let pass = TOTAL.to_string();
    let mut p = PolicyProbe::load(&pass);
    let c = bittorrent_flow(&mut p, 45_001);
    // Warm: the flow's decision is cached for the pass policy.
    for _ in 0..3 {
        assert_eq!(p.verdict(UP, &piece(&c, UP)), XDP_PASS);
    }
    alternate(&mut p, &c, "reload", |p, blocked| {
        p.install(if blocked { &block } else { &pass });
    });
}

#[test]
fn after_a_reload_the_next_packet_meets_the_new_rate_and_mark() {
    // Both police p2p at rates far above the traffic (the buckets carry over a reload, so
    // a narrow rate would decide by what the wide one left in them), each with its own
    // DSCP (AF41 = 34, CS1 = 8): the mark says which rule a packet met.
    let rule = |rate: &str, dscp: &str| {
        format!(
            "{TOTAL}    classes:\n      p2p: {{ down: {rate}, up: {rate}, dscp: {dscp}, action: police }}\n"
        )
    };
    let (af41, cs1) = (rule("5gbit", "AF41"), rule("4gbit", "CS1"));
    let mut p = PolicyProbe::load(&cs1);
    let c = bittorrent_flow(&mut p, 45_002);
    let mut want = 8;
    for i in 0..SWAPS {
        let dir = dir_of(i);
        let (verdict, out) = p.run(dir, &piece(&c, dir));
        assert_eq!(
            (verdict, dscp(&c, &out)),
            (XDP_PASS, want),
            "swap {i}: before"
        );
        want = if want == 8 { 34 } else { 8 };
        p.install(if want == 34 { &af41 } else { &cs1 });
        let (verdict, out) = p.run(dir, &piece(&c, dir));
        assert_eq!(
            (verdict, dscp(&c, &out)),
            (XDP_PASS, want),
            "swap {i} ({dir:?}): the first packet after the reload met the old rule's mark"
        );
    }
}

#[test]
fn after_a_schedule_switch_the_next_packet_meets_the_new_rule() {
    // Evenings block p2p; at noon the plan's total alone applies.
    let plan = format!(
        "{TOTAL}    schedule:\n      - {{ days: [mon], hours: 18:00-23:00, classes: {{ p2p: {{ action: block }} }} }}\ntimezone: UTC\n"
    );
    let (noon, evening) = (12 * 60, 19 * 60);
    let mut p = PolicyProbe::load(&plan);
    p.install_at(&plan, Weekday::Mon, noon);
    let c = bittorrent_flow(&mut p, 45_003);
    alternate(&mut p, &c, "schedule switch", |p, blocked| {
        p.install_at(&plan, Weekday::Mon, if blocked { evening } else { noon });
    });
}

#[test]
fn a_relabelled_flow_meets_its_new_labels_rule_from_the_labelling_packet() {
    // `other` passes, p2p is blocked: the flow's decision is cached for `unknown` (class
    // other) until its handshake names it BitTorrent.
    let mut p = PolicyProbe::load(&format!(
        "{TOTAL}    classes:\n      p2p: {{ action: block }}\n"
    ));
    for (n, port) in (45_100..45_120).enumerate() {
        let c = Conversation::new(Family::V4, port, 6881);
        // Two bare ACKs and one payload the fingerprints do not know: the handshake after
        // them is the flow's second payload packet, which the kernel still fingerprints.
        for payload in [&[][..], &[], &[0u8; 200]] {
            let f = c.tcp(UP, TcpFlags::ACK, payload);
            assert_eq!(
                p.verdict(UP, &f),
                XDP_PASS,
                "flow {n}: unlabelled, class other"
            );
        }
        let dir = dir_of(n);
        let hs = c.tcp(
            dir,
            TcpFlags::ACK,
            &peer_wire_handshake(&INFO_HASH, &PEER_ID),
        );
        assert_eq!(
            p.verdict(dir, &hs),
            XDP_DROP,
            "flow {n}: the packet that labels the flow p2p met the rule of its old label"
        );
        assert_eq!(p.verdict(UP, &piece(&c, UP)), XDP_DROP, "flow {n}: after");
    }
}
