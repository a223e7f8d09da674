//! The access networks' encapsulations in the XDP probe (issue 14, item 8), run on crafted
//! frames through `BPF_PROG_TEST_RUN`: BitTorrent inside a PPPoE session (IPv4 and IPv6)
//! and inside MPLS label stacks (one and three labels), behind no tags and behind an S-tag
//! and C-tag, is labelled under the inner addresses, charged to the subscriber who owns
//! them, and a policy's `block` and `police` act on it exactly as on the same packets over
//! plain Ethernet (`mark` rewrites the inner header's DSCP and nothing else); the
//! observe-only program files such flows as the inline ones do. Broken encapsulations (a cut PPPoE header, a PPPoE length past the
//! frame, nine labels, no bottom of stack) pass as malformed, and the sessions' own
//! signalling (discovery, LCP, IPCP) passes as non-IP: never labelled, never charged.
//!
//! And as a subscriber trying to slip out of a plan would: the same flow in another
//! wrapping, or in PPPoE frames with odd version/type/code bytes (Linux's PPPoE receive
//! does not check them), is the same flow of the same subscriber, held by the same rule.
//!
//! Needs root (it loads the probe); panics saying so otherwise.

use std::time::Instant;

use peerwarden::probe::{PROG_OBSERVE, Probe, ProbeOptions};
use peerwarden_common::{
    Class, Confidence, Direction, FlowKey, Label,
    flow::{PROTO_TCP, PROTO_UDP},
};
use peerwarden_policies::{
    Weekday,
    compile::{SubscriberIndex, compile},
};
use peerwarden_tests::{
    encap::{
        self, Encap, MPLS_MAX_LABELS, PPP_IP, PPP_IPCP, PPP_LCP, PPPOE_HLEN, encapsulate,
        mpls_label, pppoe_frame,
    },
    lab::require_root,
    packets::{Conversation, Family, TcpFlags, Vlan},
    payloads::{peer_wire_handshake, peer_wire_message, utp_syn},
    xdp::{Snapshot, TestProbe, XDP_PASS, program_for, run_with_output},
};

const XDP_DROP: u32 = 1;
const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;
const SYN: u8 = TcpFlags::SYN;
const SYN_ACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
const ACK: u8 = TcpFlags::ACK;
const PSH_ACK: u8 = TcpFlags::PSH | TcpFlags::ACK;
const INFO_HASH: [u8; 20] = *b"pppoe-mpls-infohash!";
const PEER_ID: [u8; 20] = *b"-LT2080-encapsulated";
const PEER_ID_B: [u8; 20] = *b"-qB4620-remote-peer!";

/// The tag layouts an access network uses: none, and a BNG's S-tag and C-tag per line.
const TAGS: [Vlan; 2] = [
    Vlan::Untagged,
    Vlan::QinQ {
        outer: 200,
        inner: 300,
    },
];
/// The encapsulations under test (plain Ethernet is the reference they are held to).
const WRAPPED: [Encap; 3] = [Encap::Pppoe, Encap::Mpls(1), Encap::Mpls(3)];

fn fresh_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(30_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn reverse(d: Direction) -> Direction {
    match d {
        UP => DOWN,
        DOWN => UP,
    }
}

/// A TCP conversation's frames, each going a direction.
type Exchange = Vec<(Direction, Vec<u8>)>;

/// A BitTorrent peer-wire connection opened from `fwd`'s side: three-way handshake, both
/// handshakes, `interested`. The flow is labelled by the fourth packet's handshake.
fn peer_wire(c: &Conversation, fwd: Direction, encap: Encap) -> Exchange {
    let rev = reverse(fwd);
    let plain = vec![
        (fwd, c.tcp(fwd, SYN, &[])),
        (rev, c.tcp(rev, SYN_ACK, &[])),
        (fwd, c.tcp(fwd, ACK, &[])),
        (
            fwd,
            c.tcp(fwd, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID)),
        ),
        (
            rev,
            c.tcp(rev, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID_B)),
        ),
        (fwd, c.tcp(fwd, PSH_ACK, &peer_wire_message(2, &[]))),
    ];
    plain
        .into_iter()
        .map(|(d, f)| (d, encapsulate(&f, c.vlan, encap)))
        .collect()
}

/// Index of the packet that labels a [`peer_wire`] exchange.
const DECIDED_AT: usize = 3;

#[test]
fn bittorrent_in_pppoe_and_mpls_is_labelled_under_the_inner_addresses() {
    let mut probe = TestProbe::load();
    let mut failures = Vec::new();
    let mut cases = 0;
    for encap in WRAPPED {
        for family in Family::ALL {
            for vlan in TAGS {
                for first in [UP, DOWN] {
                    cases += 1;
                    let c = Conversation::new(family, fresh_port(), 6881).with_vlan(vlan);
                    if let Err(e) = run_peer_wire(&mut probe, &c, first, encap) {
                        failures.push(format!("  {encap:?} {family:?} {vlan:?} {first:?}: {e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn run_peer_wire(
    probe: &mut TestProbe,
    c: &Conversation,
    first: Direction,
    encap: Encap,
) -> Result<(), String> {
    let key = c.key(PROTO_TCP);
    let exchange = peer_wire(c, first, encap);
    let before = probe.snapshot();
    let (mut packets, mut bytes) = ([0u64; 2], [0u64; 2]);
    for (i, (dir, frame)) in exchange.iter().enumerate() {
        let rc = probe.send(*dir, frame);
        if rc != XDP_PASS {
            return Err(format!("packet {i} returned {rc}"));
        }
        packets[dir.index()] += 1;
        bytes[dir.index()] += frame.len() as u64;
        let got = probe.flow(&key).map(|f| Label::from_id(f.label));
        let want = if i >= DECIDED_AT {
            Label::Bittorrent
        } else {
            Label::Unknown
        };
        if got != Some(want) {
            return Err(format!(
                "after packet {i} the flow is {got:?}, want {want:?}"
            ));
        }
    }
    let d = probe.snapshot().since(&before);
    let v = probe
        .flow(&key)
        .ok_or("no flow under the inner addresses")?;
    // Whole frames are counted, the encapsulation's bytes with them (what the link carries).
    if v.packets != packets || v.bytes != bytes {
        return Err(format!(
            "flow counted {:?}/{:?}, sent {packets:?}/{bytes:?}",
            v.packets, v.bytes
        ));
    }
    if v.confidence != Confidence::Payload as u8 {
        return Err(format!("confidence {}", v.confidence));
    }
    for dir in [UP, DOWN] {
        let l = d.counter(Label::Bittorrent, dir);
        if l.packets != packets[dir.index()] || l.bytes != bytes[dir.index()] {
            return Err(format!("{dir:?}: label counters {l:?}"));
        }
    }
    let want_stats = [
        ("packets", exchange.len() as u64),
        ("flows_created", 1),
        ("flows_labelled", 1),
        ("malformed", 0),
        ("non_ip", 0),
    ];
    for (s, n) in want_stats {
        if d.stat(s) != n {
            return Err(format!(
                "statistic {s} changed by {}: {:?}",
                d.stat(s),
                d.stats
            ));
        }
    }
    Ok(())
}

#[test]
fn utp_in_pppoe_and_mpls_is_labelled_at_once() {
    let mut probe = TestProbe::load();
    for encap in WRAPPED {
        for family in Family::ALL {
            for vlan in TAGS {
                let c = Conversation::new(family, fresh_port(), 6881).with_vlan(vlan);
                let f = encapsulate(&c.udp(UP, &utp_syn(0x3039)), vlan, encap);
                assert_eq!(probe.send(UP, &f), XDP_PASS);
                let got = probe
                    .flow(&c.key(PROTO_UDP))
                    .map(|v| Label::from_id(v.label));
                assert_eq!(
                    got,
                    Some(Label::BittorrentUtp),
                    "{encap:?} {family:?} {vlan:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Policy: block and police act on the inner flow, as over plain Ethernet.
// ---------------------------------------------------------------------------------------

/// Alice owns the frame builders' subscriber addresses, in both families.
const SUBSCRIBERS: &str = r#"
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32, "2001:db8:1::/64"], plan: test }
default_plan: test
"#;
const ALICE: u32 = 0;

/// A freshly loaded probe with one plan (`plan`, the YAML of a plan named `test`).
fn policy_probe(plan: &str) -> Probe {
    require_root();
    let probe = Probe::load_with(ProbeOptions {
        flow_table_size: 4096,
        max_subscribers: 16,
    })
    .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"));
    let yaml = format!("plans:\n  test:\n{plan}{SUBSCRIBERS}");
    let policy = peerwarden_policies::load_str(&yaml, "test.yaml")
        .unwrap_or_else(|e| panic!("the test policy is invalid: {:?}\n{yaml}", e.errors()));
    let options = probe.compile_options();
    let compiled = compile(
        &policy,
        Weekday::Mon,
        0,
        &mut SubscriberIndex::default(),
        &options,
    )
    .expect("compiles");
    probe.install_policy(&compiled).expect("install_policy");
    probe
}

fn verdict(probe: &mut Probe, dir: Direction, frame: &[u8]) -> u32 {
    run_with_output(probe, program_for(dir), frame).0
}

/// Alice's p2p counters going `dir`.
fn p2p(probe: &Probe, dir: Direction) -> peerwarden_common::policy::SubCounter {
    probe.subscriber_counters(ALICE).expect("counters")[Class::P2p as usize][dir.index()]
}

/// The verdicts of a peer-wire connection followed by `more` data packets each way.
fn verdicts(probe: &mut Probe, c: &Conversation, encap: Encap, more: usize) -> Vec<u32> {
    let mut x = peer_wire(c, UP, encap);
    for i in 0..more {
        let dir = if i % 2 == 0 { UP } else { DOWN };
        let piece = peer_wire_message(7, &[0x5a; 600]);
        x.push((
            dir,
            encapsulate(&c.tcp(dir, PSH_ACK, &piece), c.vlan, encap),
        ));
    }
    x.iter().map(|(d, f)| verdict(probe, *d, f)).collect()
}

#[test]
fn block_on_p2p_drops_bittorrent_in_pppoe_and_mpls_as_over_ethernet() {
    let mut probe = policy_probe(
        "    rate: { down: 10gbit, up: 10gbit }\n    classes:\n      p2p: { action: block }\n",
    );
    for family in Family::ALL {
        for vlan in TAGS {
            let c = Conversation::new(family, fresh_port(), 6881).with_vlan(vlan);
            let reference = verdicts(&mut probe, &c, Encap::Plain, 4);
            // Not vacuous: once labelled, the flow is dropped both ways.
            assert!(
                reference[DECIDED_AT + 1..].iter().all(|v| *v == XDP_DROP),
                "plain {family:?} {vlan:?}: {reference:?}"
            );
            for encap in WRAPPED {
                let before = p2p(&probe, UP).dropped_packets + p2p(&probe, DOWN).dropped_packets;
                let c = Conversation::new(family, fresh_port(), 6881).with_vlan(vlan);
                let got = verdicts(&mut probe, &c, encap, 4);
                assert_eq!(got, reference, "{encap:?} {family:?} {vlan:?}: verdicts");
                let after = p2p(&probe, UP).dropped_packets + p2p(&probe, DOWN).dropped_packets;
                let dropped = reference.iter().filter(|v| **v == XDP_DROP).count() as u64;
                assert_eq!(
                    after - before,
                    dropped,
                    "{encap:?} {family:?} {vlan:?}: alice's p2p drops"
                );
            }
        }
    }
}

#[test]
fn police_on_p2p_holds_bittorrent_in_pppoe_and_mpls_to_its_bucket() {
    // 1 mbit/s (125,000 bytes/s) with a bucket of 15,140 bytes, on alice's uploads.
    const RATE: f64 = 125_000.0;
    const DEPTH: f64 = 15_140.0;
    for encap in Encap::ALL {
        let mut probe = policy_probe(
            "    rate: { down: 10gbit, up: 10gbit }\n    classes:\n      p2p: { up: 1mbit, burst: 15140, action: police }\n",
        );
        let c = Conversation::new(Family::V4, fresh_port(), 6881);
        // Labelled, with a few hundred bytes taken from the bucket by the handshake.
        let opening: u64 = peer_wire(&c, UP, encap)
            .iter()
            .map(|(d, f)| {
                assert_eq!(verdict(&mut probe, *d, f), XDP_PASS, "{encap:?}: opening");
                if *d == UP { f.len() as u64 } else { 0 }
            })
            .sum();
        let piece = peer_wire_message(7, &[0x5a; 1400]);
        let frame = encapsulate(&c.tcp(UP, PSH_ACK, &piece), c.vlan, encap);
        let len = frame.len() as f64;
        let t0 = Instant::now();
        let passed = (0..40)
            .filter(|_| verdict(&mut probe, UP, &frame) == XDP_PASS)
            .count();
        let took = t0.elapsed();
        // The bucket, less at most the opening's uploads (those sent once the flow was
        // p2p took from it), plus what refilled while the 40 were sent; the coarse clock
        // gives one frame of slack each side.
        let most = ((DEPTH + took.as_secs_f64() * RATE) / len).ceil() as usize + 1;
        let least = (((DEPTH - opening as f64) / len).floor() as usize).saturating_sub(1);
        assert!(
            (least..=most).contains(&passed),
            "{encap:?}: {passed} of 40 {len}-byte frames passed a {DEPTH}-byte bucket in \
             {took:?} (expected {least}..={most})"
        );
        let counted = p2p(&probe, UP);
        assert_eq!(
            counted.dropped_packets as usize,
            40 - passed,
            "{encap:?}: alice's p2p drops agree with the verdicts"
        );
        // The other direction has no rule.
        let down = encapsulate(&c.tcp(DOWN, PSH_ACK, &piece), c.vlan, encap);
        for _ in 0..20 {
            assert_eq!(
                verdict(&mut probe, DOWN, &down),
                XDP_PASS,
                "{encap:?}: down"
            );
        }
    }
}

#[test]
fn rewrapping_a_flow_or_odd_pppoe_header_bytes_do_not_escape_a_block() {
    let mut probe = policy_probe(
        "    rate: { down: 10gbit, up: 10gbit }\n    classes:\n      p2p: { action: block }\n",
    );
    let vlan = Vlan::QinQ {
        outer: 200,
        inner: 300,
    };
    let c = Conversation::new(Family::V4, fresh_port(), 6881).with_vlan(vlan);
    // Labelled in a PPPoE session...
    for (d, f) in peer_wire(&c, UP, Encap::Pppoe).iter().take(DECIDED_AT + 1) {
        verdict(&mut probe, *d, f);
    }
    // ...then carried plain, in MPLS, or in session frames whose version, type and code
    // say something else: the same flow of the same subscriber, dropped every time.
    let data = c.tcp(UP, PSH_ACK, &peer_wire_message(7, &[1; 500]));
    let mut odd = encapsulate(&data, vlan, Encap::Pppoe);
    let at = encap::pppoe_offset(vlan);
    odd[at] = 0x22; // version 2, type 2
    odd[at + 1] = 0x07; // a discovery code in a session frame
    let forms = [
        ("plain", encapsulate(&data, vlan, Encap::Plain)),
        ("MPLS, 2 labels", encapsulate(&data, vlan, Encap::Mpls(2))),
        ("PPPoE, odd version/type/code", odd),
    ];
    for (what, f) in &forms {
        let before = p2p(&probe, UP);
        assert_eq!(verdict(&mut probe, UP, f), XDP_DROP, "{what}");
        let after = p2p(&probe, UP);
        assert_eq!(after.dropped_packets, before.dropped_packets + 1, "{what}");
        assert_eq!(
            after.dropped_bytes,
            before.dropped_bytes + f.len() as u64,
            "{what}"
        );
    }
    let flows = probe.flows().expect("flows");
    assert!(
        flows
            .iter()
            .any(|(k, v)| *k == c.key(PROTO_TCP) && Label::from_id(v.label) == Label::Bittorrent),
        "the flow was labelled in PPPoE: {flows:?}"
    );
    let ours: Vec<_> = flows
        .iter()
        .filter(|(k, _)| k.sub_port == c.sub.port())
        .collect();
    assert_eq!(ours.len(), 1, "one flow whatever the wrapping: {ours:?}");
    assert_eq!(Label::from_id(ours[0].1.label), Label::Bittorrent);
}

// ---------------------------------------------------------------------------------------
// Broken encapsulations and the sessions' signalling: passed, counted, never charged.
// ---------------------------------------------------------------------------------------

const ERROR_STATS: [&str; 4] = ["malformed", "non_ip", "non_tcp_udp", "fragments"];

/// `frame` going `dir` must pass, count once in `stat` and in no other error statistic,
/// and leave no flow and no label counter behind.
fn assert_untracked(probe: &mut TestProbe, what: &str, dir: Direction, frame: &[u8], stat: &str) {
    let before: Snapshot = probe.snapshot();
    assert_eq!(probe.send(dir, frame), XDP_PASS, "{what}: verdict");
    let d = probe.snapshot().since(&before);
    for s in ERROR_STATS {
        assert_eq!(
            d.stat(s),
            u64::from(s == stat),
            "{what}: statistic {s} ({:?})",
            d.stats
        );
    }
    assert_eq!(d.flows, 0, "{what}: the flow table grew");
    assert!(
        d.nonzero_counters().is_empty(),
        "{what}: counted under {:?}",
        d.nonzero_counters()
    );
}

/// A labelled handshake frame from alice in `encap` behind `vlan`, and its flow key.
fn handshake(family: Family, vlan: Vlan, encap: Encap) -> (Vec<u8>, FlowKey) {
    let c = Conversation::new(family, fresh_port(), 6881).with_vlan(vlan);
    let f = c.tcp(UP, PSH_ACK, &peer_wire_handshake(&INFO_HASH, &PEER_ID));
    (encapsulate(&f, vlan, encap), c.key(PROTO_TCP))
}

#[test]
fn broken_pppoe_and_mpls_frames_pass_as_malformed() {
    let mut probe = TestProbe::load();
    for family in Family::ALL {
        for vlan in TAGS {
            let at = encap::pppoe_offset(vlan);
            let case = |what: &str| format!("{what} ({family:?}, {vlan:?})");
            // PPPoE header cut short: the frame ends inside it.
            let (f, _) = handshake(family, vlan, Encap::Pppoe);
            for cut in at..at + PPPOE_HLEN {
                let what = case(&format!("PPPoE header cut at {} bytes", cut - at));
                assert_untracked(&mut probe, &what, UP, &f[..cut], "malformed");
            }
            // PPPoE length past the frame, and below the protocol field.
            for len in [(f.len() - at - 6 + 1) as u16, 0xffff, 0, 1] {
                let mut bad = f.clone();
                bad[at + 4..at + 6].copy_from_slice(&len.to_be_bytes());
                let what = case(&format!("PPPoE length {len}"));
                assert_untracked(&mut probe, &what, UP, &bad, "malformed");
            }
            // PPP says IPv4, the packet is IPv6 (or the other way round).
            let mut bad = f.clone();
            let other = if family == Family::V4 {
                0x0057u16
            } else {
                PPP_IP
            };
            bad[at + 6..at + 8].copy_from_slice(&other.to_be_bytes());
            assert_untracked(
                &mut probe,
                &case("PPP protocol of the other IP version"),
                UP,
                &bad,
                "malformed",
            );
            // Nine labels, the bottom on the ninth: past the probe's bound.
            let (f, _) = handshake(family, vlan, Encap::Mpls(MPLS_MAX_LABELS + 1));
            assert_untracked(&mut probe, &case("nine MPLS labels"), UP, &f, "malformed");
            // No bottom of stack at all: every label says more follow.
            let (mut f, _) = handshake(family, vlan, Encap::Mpls(MPLS_MAX_LABELS));
            let last = at + 4 * (MPLS_MAX_LABELS - 1);
            f[last + 2] &= !1;
            assert_untracked(
                &mut probe,
                &case("MPLS without bottom of stack"),
                UP,
                &f,
                "malformed",
            );
            // A stack cut short.
            let (f, _) = handshake(family, vlan, Encap::Mpls(3));
            assert_untracked(
                &mut probe,
                &case("MPLS stack cut short"),
                UP,
                &f[..at + 6],
                "malformed",
            );
            // Eight labels, the bottom on the eighth: the longest stack parsed.
            let (f, key) = handshake(family, vlan, Encap::Mpls(MPLS_MAX_LABELS));
            assert_eq!(probe.send(UP, &f), XDP_PASS);
            let got = probe.flow(&key).map(|v| Label::from_id(v.label));
            assert_eq!(
                got,
                Some(Label::Bittorrent),
                "{}",
                case("eight MPLS labels")
            );
        }
    }
}

#[test]
fn every_truncation_of_an_encapsulated_handshake_passes_unlabelled() {
    let mut probe = TestProbe::load();
    for encap in WRAPPED {
        for family in Family::ALL {
            let (f, key) = handshake(family, TAGS[1], encap);
            // (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.)
            for cut in 14..f.len() {
                let what = format!("{encap:?} {family:?} cut at {cut} of {}", f.len());
                // Cut anywhere, the IP packet runs past the frame: broken before its
                // addresses, so charged to no one.
                assert_untracked(&mut probe, &what, UP, &f[..cut], "malformed");
            }
            assert!(probe.flow(&key).is_none(), "{encap:?} {family:?}");
            assert_eq!(probe.send(UP, &f), XDP_PASS);
            let got = probe.flow(&key).map(|v| Label::from_id(v.label));
            assert_eq!(got, Some(Label::Bittorrent), "{encap:?} {family:?}: whole");
        }
    }
}

#[test]
fn pppoe_signalling_and_mpls_over_other_payloads_pass_as_non_ip() {
    let mut probe = TestProbe::load();
    for vlan in TAGS {
        let lcp = pppoe_frame(vlan, PPP_LCP, &encap::lcp_configure_request());
        assert_untracked(&mut probe, &format!("LCP ({vlan:?})"), UP, &lcp, "non_ip");
        assert_untracked(
            &mut probe,
            &format!("LCP down ({vlan:?})"),
            DOWN,
            &lcp,
            "non_ip",
        );
        // IPCP Configure-Request for 100.64.1.10.
        let ipcp = pppoe_frame(vlan, PPP_IPCP, &[1, 1, 0, 10, 3, 6, 100, 64, 1, 10]);
        assert_untracked(&mut probe, &format!("IPCP ({vlan:?})"), UP, &ipcp, "non_ip");
        let padi = encap::pppoe_padi(vlan);
        assert_untracked(&mut probe, &format!("PADI ({vlan:?})"), UP, &padi, "non_ip");
        // An Ethernet pseudowire's control word (first nibble 0) under the label.
        let (f, _) = handshake(Family::V4, vlan, Encap::Plain);
        let at = vlan.l3_offset();
        let mut pw = f[..at].to_vec();
        pw[at - 2..at].copy_from_slice(&encap::ETH_P_MPLS_UC.to_be_bytes());
        pw.extend_from_slice(&mpls_label(100, true));
        pw.extend_from_slice(&[0, 0, 0, 0]);
        pw.extend_from_slice(&f);
        assert_untracked(
            &mut probe,
            &format!("MPLS pseudowire ({vlan:?})"),
            UP,
            &pw,
            "non_ip",
        );
    }
}

#[test]
fn mark_rewrites_the_inner_dscp_and_leaves_the_encapsulation_alone() {
    // AF41 = 34 on p2p: the label is decided by the handshake, so the frame after it is
    // marked.
    let mut probe = policy_probe(
        "    rate: { down: 10gbit, up: 10gbit }\n    classes:\n      p2p: { dscp: AF41 }\n",
    );
    for encap in WRAPPED {
        for family in Family::ALL {
            let c = Conversation::new(family, fresh_port(), 6881).with_vlan(TAGS[1]);
            for (d, f) in peer_wire(&c, UP, encap).iter().take(DECIDED_AT + 1) {
                verdict(&mut probe, *d, f);
            }
            let f = encapsulate(
                &c.tcp(UP, PSH_ACK, &peer_wire_message(2, &[])),
                c.vlan,
                encap,
            );
            let (rc, out) = run_with_output(&mut probe, program_for(UP), &f);
            let what = format!("{encap:?} {family:?}");
            assert_eq!(rc, XDP_PASS, "{what}");
            let l3 = TAGS[1].l3_offset() + encap.overhead();
            let dscp = match family {
                Family::V4 => out[l3 + 1] >> 2,
                Family::V6 => ((out[l3] & 0x0f) << 2) | (out[l3 + 1] >> 6),
            };
            assert_eq!(dscp, 34, "{what}: the inner header's DSCP");
            if family == Family::V4 {
                let mut sum: u32 = out[l3..l3 + 20]
                    .chunks(2)
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum();
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                assert_eq!(sum, 0xffff, "{what}: IPv4 header checksum");
            }
            assert_eq!(out[..l3], f[..l3], "{what}: link header and encapsulation");
            assert_eq!(out[l3 + 20..], f[l3 + 20..], "{what}: past the IP header");
        }
    }
}

#[test]
fn observe_mode_files_pppoe_and_mpls_flows_like_plain_ones() {
    // A mirror port sees both directions in the same wrapping; the direction comes from the
    // inner addresses, as for plain frames.
    require_root();
    let mut probe = Probe::load_with(ProbeOptions {
        flow_table_size: 4096,
        max_subscribers: 16,
    })
    .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"));
    probe.observe_only();
    let networks: Vec<(std::net::IpAddr, u8)> = vec![
        (std::net::Ipv4Addr::new(100, 64, 0, 0).into(), 10),
        (
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0).into(),
            48,
        ),
    ];
    probe
        .set_observe_networks(&networks)
        .expect("set_observe_networks");
    for encap in WRAPPED {
        for family in Family::ALL {
            let c = Conversation::new(family, fresh_port(), 6881).with_vlan(TAGS[1]);
            // Opened from the internet side: four frames down, two up.
            for (_, f) in peer_wire(&c, DOWN, encap) {
                let (rc, out) = run_with_output(&mut probe, PROG_OBSERVE, &f);
                assert_eq!(
                    (rc, &out),
                    (XDP_PASS, &f),
                    "{encap:?} {family:?}: unchanged"
                );
            }
            let flows = probe.flows().expect("flows");
            let v = flows
                .iter()
                .find(|(k, _)| *k == c.key(PROTO_TCP))
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("{encap:?} {family:?}: no flow: {flows:?}"));
            assert_eq!(
                Label::from_id(v.label),
                Label::Bittorrent,
                "{encap:?} {family:?}"
            );
            assert_eq!(
                v.packets,
                [2, 4],
                "{encap:?} {family:?}: packets [up, down]"
            );
        }
    }
}
