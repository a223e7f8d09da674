//! The observe-only program, `xdp_observe`, run on crafted frames through
//! `BPF_PROG_TEST_RUN` (DESIGN.md, test level 2), beside the inline programs on a probe of
//! their own as the reference.
//!
//! What is checked: a conversation seen on one mirror port in both directions is filed
//! under the same flow keys, with the same labels and the same per-direction packets and
//! bytes, as the inline programs file it from two interfaces; addresses outside the
//! subscriber networks, non-IP, non-TCP/UDP and broken frames are passed and not tracked;
//! a policy that blocks and marks is counted (would-drop, the subscriber's counters) but
//! never applied. Every frame comes back `XDP_PASS`, byte for byte as it went in.
//!
//! Needs root (it loads the probe); panics saying so otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use peerwarden::probe::{PROG_OBSERVE, Probe, ProbeOptions};
use peerwarden_common::{Class, Direction, FlowKey, FlowValue, Label, flow::PROTO_TCP};
use peerwarden_policies::{
    Weekday,
    compile::{SubscriberIndex, compile},
};
use peerwarden_tests::{
    lab::require_root,
    packets::{Conversation, Family, TcpFlags, Vlan, arp_request, icmp_echo, tcp_frame},
    payloads::{INFO_HASH, PEER_ID, http_get_page, peer_wire_handshake, peer_wire_message},
    xdp::{XDP_PASS, program_for, run_with_output},
};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;
const ACK: u8 = TcpFlags::ACK;
const PSH_ACK: u8 = TcpFlags::PSH | TcpFlags::ACK;
const PEER_ID_B: [u8; 20] = *b"-TR4050-zyxwvutsrqpo";

/// The subscriber networks the observe probe is given: the frame builders' subscriber
/// addresses (100.64.1.10, 2001:db8:1::10) lie inside, their remote hosts outside.
fn subscriber_networks() -> Vec<(IpAddr, u8)> {
    vec![
        ("100.64.0.0".parse().unwrap(), 10),
        ("2001:db8:1::".parse().unwrap(), 48),
    ]
}

fn load() -> Probe {
    require_root();
    Probe::load_with(ProbeOptions {
        flow_table_size: 4096,
        max_subscribers: 64,
    })
    .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"))
}

/// A probe in observe-only mode with [`subscriber_networks`].
fn load_observe() -> Probe {
    let mut p = load();
    p.observe_only();
    p.set_observe_networks(&subscriber_networks())
        .expect("set_observe_networks");
    p
}

/// Runs `xdp_observe` on `frame` and checks it came back passed and unchanged.
fn observe(probe: &mut Probe, frame: &[u8], what: &str) {
    let (verdict, out) = run_with_output(probe, PROG_OBSERVE, frame);
    assert_eq!(
        verdict, XDP_PASS,
        "{what}: xdp_observe must pass every frame"
    );
    assert_eq!(out, frame, "{what}: the frame must leave unchanged");
}

fn flows(probe: &Probe) -> Vec<(FlowKey, FlowValue)> {
    let mut f = probe.flows().expect("flow table");
    f.sort_by_key(|(k, _)| (k.family, k.sub_addr, k.sub_port, k.remote_port));
    f
}

fn stat(probe: &Probe, name: &str) -> u64 {
    *probe
        .stats()
        .expect("stats")
        .get(name)
        .unwrap_or_else(|| panic!("no statistic {name}"))
}

/// A TCP handshake, then a BitTorrent peer-wire exchange, then data both ways; and an
/// HTTP request with its answer on another port, for each family.
fn exchange() -> Vec<(Direction, Vec<u8>)> {
    let mut x = Vec::new();
    for (i, family) in Family::ALL.into_iter().enumerate() {
        let bt = Conversation::new(family, 51413 + i as u16, 6881);
        x.push((UP, bt.tcp(UP, TcpFlags::SYN, &[])));
        x.push((DOWN, bt.tcp(DOWN, TcpFlags::SYN | ACK, &[])));
        x.push((UP, bt.tcp(UP, ACK, &[])));
        x.push((
            UP,
            bt.tcp(UP, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID)),
        ));
        x.push((
            DOWN,
            bt.tcp(DOWN, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID_B)),
        ));
        for n in 0..4 {
            x.push((
                DOWN,
                bt.tcp(DOWN, PSH_ACK, &peer_wire_message(7, &[n; 900])),
            ));
            x.push((UP, bt.tcp(UP, ACK, &[])));
        }
        let web = Conversation::new(family, 40000 + i as u16, 80).with_vlan(Vlan::Dot1q(7));
        x.push((UP, web.tcp(UP, PSH_ACK, &http_get_page())));
        x.push((DOWN, web.tcp(DOWN, PSH_ACK, &[b'x'; 1200])));
    }
    x
}

#[test]
fn one_mirror_port_files_flows_as_the_two_inline_programs_do() {
    let mut inline = load();
    let mut obs = load_observe();
    let x = exchange();
    for (i, (dir, frame)) in x.iter().enumerate() {
        assert_eq!(
            run_with_output(&mut inline, program_for(*dir), frame).0,
            XDP_PASS
        );
        observe(&mut obs, frame, &format!("frame {i} going {dir:?}"));
    }
    let (a, b) = (flows(&inline), flows(&obs));
    assert_eq!(a.len(), 4, "two flows per family inline: {a:?}");
    assert_eq!(
        a.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        b.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        "the same flow keys"
    );
    for ((key, i), (_, o)) in a.iter().zip(&b) {
        assert_eq!(
            (i.label, i.packets, i.bytes),
            (o.label, o.packets, o.bytes),
            "flow {key:?}: label, packets and bytes [up, down]"
        );
    }
    let labels: Vec<Label> = b.iter().map(|(_, v)| Label::from_id(v.label)).collect();
    assert_eq!(
        labels.iter().filter(|l| **l == Label::Bittorrent).count(),
        2,
        "the peer-wire flows are BitTorrent in both families: {labels:?}"
    );
    assert_eq!(
        inline.counters().expect("counters"),
        obs.counters().expect("counters"),
        "the per-label counters agree"
    );
    let ups = x.iter().filter(|(d, _)| *d == UP).count() as u64;
    assert_eq!(stat(&obs, "observe_up"), ups);
    assert_eq!(stat(&obs, "observe_down"), x.len() as u64 - ups);
    assert_eq!(stat(&obs, "observe_unmatched"), 0);
    assert_eq!(stat(&obs, "observe_passed"), x.len() as u64);
    assert_eq!(stat(&obs, "packets"), x.len() as u64);
    assert!(
        !inline
            .stats()
            .expect("stats")
            .contains_key("observe_passed"),
        "an inline probe reports no observe statistics"
    );
}

#[test]
fn frames_outside_the_subscriber_networks_pass_untracked() {
    let mut obs = load_observe();
    let internet = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), port);
    let other = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), port);
    let transit = tcp_frame(
        Vlan::Untagged,
        internet(443),
        other(5555),
        PSH_ACK,
        b"hello",
    );
    observe(&mut obs, &transit, "internet to internet");
    let sub = Conversation::new(Family::V4, 51413, 6881);
    let arp = arp_request(
        Vlan::Untagged,
        Ipv4Addr::new(100, 64, 1, 10),
        Ipv4Addr::new(100, 64, 1, 1),
    );
    observe(&mut obs, &arp, "ARP");
    observe(
        &mut obs,
        &icmp_echo(
            Vlan::Untagged,
            Ipv4Addr::new(100, 64, 1, 10),
            Ipv4Addr::new(198, 51, 100, 7),
        ),
        "ICMP",
    );
    let mut truncated = sub.tcp(UP, PSH_ACK, b"payload");
    truncated.truncate(14 + 20 + 10);
    observe(&mut obs, &truncated, "a TCP header cut short");
    assert!(flows(&obs).is_empty(), "nothing tracked: {:?}", flows(&obs));
    assert_eq!(stat(&obs, "observe_unmatched"), 1);
    assert_eq!(stat(&obs, "non_ip"), 1);
    assert_eq!(stat(&obs, "non_tcp_udp"), 1);
    assert_eq!(stat(&obs, "malformed"), 1);
    assert_eq!(stat(&obs, "observe_passed"), 4);
    assert_eq!(stat(&obs, "observe_up") + stat(&obs, "observe_down"), 0);

    // The networks are replaced, not added to: without the IPv4 one, the subscriber's
    // IPv4 packets are unmatched; its IPv6 ones still go up.
    obs.set_observe_networks(&subscriber_networks()[1..])
        .expect("set_observe_networks");
    observe(
        &mut obs,
        &sub.tcp(UP, ACK, &[]),
        "IPv4 after its network went",
    );
    assert_eq!(stat(&obs, "observe_unmatched"), 2);
    let v6 = Conversation::new(Family::V6, 51413, 6881);
    observe(&mut obs, &v6.tcp(DOWN, ACK, &[]), "IPv6 going down");
    assert_eq!(stat(&obs, "observe_down"), 1);
    let f = flows(&obs);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, v6.key(PROTO_TCP), "filed subscriber side first");
    assert_eq!(f[0].1.packets, [0, 1]);
}

#[test]
fn a_blocking_and_marking_policy_is_counted_never_applied() {
    let yaml = "plans:\n  test:\n    rate: { down: 1gbit, up: 1gbit }\n    classes:\n      \
                p2p: { action: block }\n      other: { dscp: LE }\n\
                subscribers:\n  - { id: alice, prefixes: [100.64.1.10/32, \"2001:db8:1::/64\"], plan: test }\n\
                default_plan: test\n";
    let policy = peerwarden_policies::load_str(yaml, "test.yaml")
        .unwrap_or_else(|e| panic!("the test policy is invalid: {:?}", e.errors()));
    // Each probe gets the policy compiled for it, as the daemon does: the observe probe's
    // without marks.
    let compiled = |p: &Probe| {
        let options = p.compile_options();
        compile(
            &policy,
            Weekday::Mon,
            0,
            &mut SubscriberIndex::default(),
            &options,
        )
        .expect("compiles")
    };
    // The reference: inline, the policy drops the peer wire and marks the rest.
    let mut inline = load();
    inline
        .install_policy(&compiled(&inline))
        .expect("install_policy");
    let mut obs = load_observe();
    obs.install_policy(&compiled(&obs)).expect("install_policy");
    let mut inline_drops = 0;
    let mut inline_changed = 0;
    for (i, (dir, frame)) in exchange().iter().enumerate() {
        let (verdict, out) = run_with_output(&mut inline, program_for(*dir), frame);
        inline_drops += u64::from(verdict != XDP_PASS);
        inline_changed += u64::from(verdict == XDP_PASS && out != *frame);
        observe(
            &mut obs,
            frame,
            &format!("frame {i} going {dir:?} under the policy"),
        );
    }
    assert!(
        inline_drops > 0 && inline_changed > 0,
        "the policy drops and marks inline ({inline_drops} dropped, {inline_changed} marked)"
    );
    assert_eq!(
        stat(&obs, "observe_would_drop"),
        inline_drops,
        "observe counts as would-drop what inline drops"
    );
    assert_eq!(
        stat(&obs, "policy_marks"),
        0,
        "no DSCP rewrites in observe mode"
    );
    let alice = obs.subscriber_counters(0).expect("subscriber counters");
    let p2p = alice[Class::P2p as usize];
    assert_eq!(
        p2p[0].dropped_packets + p2p[1].dropped_packets,
        inline_drops,
        "alice's would-drop accounting"
    );
    assert!(
        p2p[0].packets > 0 && p2p[1].packets > 0,
        "alice's p2p is counted both ways"
    );
}
