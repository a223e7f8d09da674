//! Hostile traffic through the XDP probe with `BPF_PROG_TEST_RUN` (issue 6, item 2): random
//! bytes, every header truncated at every length, bogus lengths and offsets, IPv4 options,
//! IPv6 extension chains, fragments, tunnels the probe does not open, and VLAN stacks deeper
//! than it parses. Thousands of generated cases from fixed seeds (a failure names its case
//! and replays the same bytes), each run on one probe per test and checked on its own.
//!
//! Every case is judged against a model of the probe's contract written here from
//! `ebpf/src/parse.rs`'s rules (Ethernet, up to two VLAN tags, IPv4 whole and not a later
//! fragment, IPv6 with up to four extension headers, TCP/UDP lengths inside the packet):
//!
//! - the verdict is `XDP_PASS` (no policy is loaded);
//! - the frame counts once in `packets` and in exactly the statistic the model names
//!   (`malformed`, `non_ip`, `non_tcp_udp`, `fragments`), or in none of them for a flow;
//! - an untracked frame creates no flow and moves no label counter;
//! - a tracked frame moves exactly its flow's entry and exactly its label's counters by one
//!   packet and its length, creates a flow only for a 5-tuple not seen before, and is
//!   labelled only where the kernel's fingerprints (the shared `peerwarden_common` code)
//!   name a label for that very payload: garbage gets no p2p label.

use std::collections::HashMap;

use peerwarden_classifier::{Direction as LibDirection, FlowKey as LibKey};
use peerwarden_common::{
    CounterValue, Direction, FlowKey, FlowValue, Label,
    fingerprint::{self, SAMPLE_LEN},
    flow::{FAMILY_V4, FAMILY_V6, FLAG_FINAL, INSPECT_BUDGET, PROTO_TCP, PROTO_UDP},
};
use peerwarden_tests::{
    captures::{kernel_key, kernel_view},
    packets::{
        Conversation, ETH_HLEN, Family, TcpFlags, Vlan, ethernet, fix_ipv4_checksum, ip_frame,
        ipv4_fragment, ipv4_with_options, ipv6_fragment, ipv6_with_hop_by_hop, pad_to_minimum,
        tcp_segment, udp_datagram,
    },
    payloads::{INFO_HASH, PEER_ID, UDP_TRACKER_MAGIC, peer_wire_handshake, udp_tracker_connect},
    rng::SplitMix64,
    xdp::{Snapshot, TestProbe, XDP_PASS},
};
use pnet_packet::{
    ethernet::{EtherType, EtherTypes},
    ip::{IpNextHeaderProtocol, IpNextHeaderProtocols},
};

const UP: Direction = Direction::Up;
const DOWN: Direction = Direction::Down;
const PSH_ACK: u8 = TcpFlags::PSH | TcpFlags::ACK;

/// The statistics that say why a frame was not tracked.
const UNTRACKED_STATS: [&str; 4] = ["malformed", "non_ip", "non_tcp_udp", "fragments"];

/// What the probe must make of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A TCP/UDP packet of the flow `key` carrying `payload`; `first_fragment`: the IP
    /// identification of the datagram it begins.
    Flow {
        key: FlowKey,
        payload: Vec<u8>,
        first_fragment: Option<u32>,
    },
    /// A packet charged to its subscriber without ports (issue 11), counted in `stat`:
    /// another IP protocol, a later fragment (`later_fragment`: its datagram's
    /// identification, filed under the first fragment's flow if that was seen), or a packet
    /// broken above a sound IP header. `key` holds the addresses, protocol and ports 0.
    Charged {
        stat: &'static str,
        key: FlowKey,
        first_fragment: Option<u32>,
        later_fragment: Option<u32>,
    },
    /// Not tracked, counted in this statistic.
    Untracked(&'static str),
}

fn be16(f: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]))
}

/// An IP packet as parse.rs reads it, down to its upper-layer protocol.
struct IpWalk {
    key: FlowKey,
    l4: usize,
    end: usize,
    first_fragment: Option<u32>,
    later_fragment: Option<u32>,
    /// The IPv6 extension chain runs past the packet (`key.proto`: the next header read).
    broken_above: bool,
}

/// `Err` where the frame breaks before a sound IP header, `Ok(None)` for a frame that is
/// not IP after at most two tags and a PPPoE session or MPLS stack. Addresses are filed with the source first.
fn ip_walk(f: &[u8]) -> Result<Option<IpWalk>, ()> {
    let mut l3 = 14;
    let mut ethertype = be16(f, 12).ok_or(())?;
    for _ in 0..2 {
        let tagged = ethertype == 0x8100 || (l3 == 14 && ethertype == 0x88a8);
        if !tagged {
            break;
        }
        ethertype = be16(f, l3 + 2).ok_or(())?;
        l3 += 4;
    }
    // A PPPoE session or an MPLS stack of at most eight labels (issue 14).
    match ethertype {
        0x8864 => {
            let h = f.get(l3..l3 + 8).ok_or(())?;
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if len < 2 || l3 + 6 + len > f.len() {
                return Err(());
            }
            ethertype = match u16::from_be_bytes([h[6], h[7]]) {
                0x0021 => 0x0800,
                0x0057 => 0x86dd,
                _ => return Ok(None),
            };
            l3 += 8;
        }
        0x8847 | 0x8848 => {
            let mut labels = 0;
            loop {
                let e = f.get(l3..l3 + 4).ok_or(())?;
                (l3, labels) = (l3 + 4, labels + 1);
                if e[2] & 1 != 0 {
                    break;
                }
                if labels == 8 {
                    return Err(());
                }
            }
            ethertype = match f.get(l3..l3 + 2).ok_or(())?[0] >> 4 {
                4 => 0x0800,
                6 => 0x86dd,
                _ => return Ok(None),
            };
        }
        _ => {}
    }
    let mut key = FlowKey::default();
    let (mut first_fragment, mut later_fragment) = (None, None);
    match ethertype {
        0x0800 => {
            let h = f.get(l3..l3 + 20).ok_or(())?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if !(h[0] >> 4 == 4 && ihl >= 20 && total >= ihl && l3 + total <= f.len()) {
                return Err(());
            }
            key.family = FAMILY_V4;
            key.proto = h[9];
            key.sub_addr[..4].copy_from_slice(&h[12..16]);
            key.remote_addr[..4].copy_from_slice(&h[16..20]);
            let frag = u16::from_be_bytes([h[6], h[7]]);
            let id = u32::from(u16::from_be_bytes([h[4], h[5]]));
            if frag & 0x1fff != 0 {
                later_fragment = Some(id);
            } else if frag & 0x2000 != 0 {
                first_fragment = Some(id);
            }
            let (l4, end) = (l3 + ihl, l3 + total);
            Ok(Some(IpWalk {
                key,
                l4,
                end,
                first_fragment,
                later_fragment,
                broken_above: false,
            }))
        }
        0x86dd => {
            let h = f.get(l3..l3 + 40).ok_or(())?;
            let end = l3 + 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
            if h[0] >> 4 != 6 || end > f.len() {
                return Err(());
            }
            key.family = FAMILY_V6;
            key.proto = h[6];
            key.sub_addr.copy_from_slice(&h[8..24]);
            key.remote_addr.copy_from_slice(&h[24..40]);
            let mut at = l3 + 40;
            let mut broken_above = false;
            for _ in 0..4 {
                let (next, len) = match key.proto {
                    0 | 43 | 60 => match f.get(at..at + 2) {
                        Some(e) => (e[0], (usize::from(e[1]) + 1) * 8),
                        None => {
                            broken_above = true;
                            break;
                        }
                    },
                    51 => match f.get(at..at + 2) {
                        Some(e) => (e[0], (usize::from(e[1]) + 2) * 4),
                        None => {
                            broken_above = true;
                            break;
                        }
                    },
                    44 => {
                        let Some(e) = f.get(at..at + 8) else {
                            broken_above = true;
                            break;
                        };
                        let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                        let offset_more = u16::from_be_bytes([e[2], e[3]]);
                        if offset_more >> 3 != 0 {
                            key.proto = e[0];
                            later_fragment = Some(id);
                            break;
                        }
                        if offset_more & 1 != 0 {
                            first_fragment = Some(id);
                        }
                        (e[0], 8)
                    }
                    _ => break,
                };
                key.proto = next;
                at += len;
                if at > end {
                    broken_above = true;
                    break;
                }
            }
            Ok(Some(IpWalk {
                key,
                l4: at,
                end,
                first_fragment,
                later_fragment,
                broken_above,
            }))
        }
        _ => Ok(None),
    }
}

/// The model's outcome for `frame` arriving going `dir` (parse.rs's rules).
fn outcome(frame: &[u8], dir: Direction) -> Outcome {
    let ip = match ip_walk(frame) {
        Err(()) => return Outcome::Untracked("malformed"),
        Ok(None) => return Outcome::Untracked("non_ip"),
        Ok(Some(ip)) => ip,
    };
    let mut charged = ip.key;
    if dir == DOWN {
        std::mem::swap(&mut charged.sub_addr, &mut charged.remote_addr);
    }
    let charge = |stat| Outcome::Charged {
        stat,
        key: charged,
        first_fragment: ip.first_fragment,
        later_fragment: ip.later_fragment,
    };
    if ip.later_fragment.is_some() {
        return charge("fragments");
    }
    if ip.broken_above {
        return charge("malformed");
    }
    if ip.key.proto != PROTO_TCP && ip.key.proto != PROTO_UDP {
        // IPv6 Neighbor Discovery is passed uncharged (parse.rs).
        if ip.key.proto == 58
            && ip.first_fragment.is_none()
            && frame
                .get(ip.l4..ip.l4 + 8)
                .is_some_and(|h| (133..=137).contains(&h[0]))
        {
            return Outcome::Untracked("non_tcp_udp");
        }
        return charge("non_tcp_udp");
    }
    let flow = |key: FlowKey, payload: &[u8]| Outcome::Flow {
        key,
        payload: payload.to_vec(),
        first_fragment: ip.first_fragment,
    };
    if let Some(v) = kernel_view(frame) {
        let key = LibKey {
            proto: v.proto,
            src: v.src,
            dst: v.dst,
        };
        // The key is written from the subscriber's side: the sender of packets going up.
        let key = match dir {
            UP => key,
            DOWN => key.reversed(),
        };
        debug_assert_eq!(key.sender(LibDirection::Up), key.src);
        return flow(kernel_key(&key), v.payload);
    }
    // A first fragment's UDP length covers the whole datagram, past the packet's end
    // (`kernel_view` models whole datagrams): its payload ends with the packet.
    if ip.key.proto == PROTO_UDP
        && ip.first_fragment.is_some()
        && let (Some(sport), Some(dport), Some(ulen)) = (
            be16(frame, ip.l4),
            be16(frame, ip.l4 + 2),
            be16(frame, ip.l4 + 4),
        )
        && usize::from(ulen) >= 8
        && ip.l4 + 8 <= ip.end
    {
        let mut key = charged;
        (key.sub_port, key.remote_port) = if dir == UP {
            (sport, dport)
        } else {
            (dport, sport)
        };
        return flow(key, &frame[ip.l4 + 8..ip.end]);
    }
    charge("malformed")
}

/// The label a flow without ports gets when it is created, final (frag.rs's
/// `fixed_label`): by protocol, or `unknown` for a TCP/UDP key with both ports 0.
fn fixed_label(key: &FlowKey) -> Option<Label> {
    match key.proto {
        PROTO_TCP | PROTO_UDP if key.sub_port != 0 || key.remote_port != 0 => None,
        50 | 51 => Some(Label::VpnIpsec),
        47 => Some(Label::Gre),
        1 | 58 => Some(Label::Icmp),
        _ => Some(Label::Unknown),
    }
}

/// The key of a datagram in the probe's fragment map: addresses, protocol, identification.
type Datagram = ([u8; 16], [u8; 16], u8, u8, u32);

fn datagram(key: &FlowKey, id: u32) -> Datagram {
    (key.sub_addr, key.remote_addr, key.proto, key.family, id)
}

/// The label the kernel's fingerprints give a payload on their own (uTP pairing aside:
/// it needs ids from both directions, which [`Tally`] tracks).
fn fingerprint_label(proto: u8, payload: &[u8]) -> Option<Label> {
    let sample = &payload[..payload.len().min(SAMPLE_LEN)];
    match proto {
        PROTO_TCP => fingerprint::tcp(sample),
        _ => fingerprint::udp(sample),
    }
}

/// One generated frame.
struct Case {
    what: String,
    dir: Direction,
    frame: Vec<u8>,
}

impl Case {
    fn new(what: impl Into<String>, dir: Direction, frame: Vec<u8>) -> Case {
        Case {
            what: what.into(),
            dir,
            frame,
        }
    }
}

/// The flows the cases made so far, as the model tracks them, and what was seen.
#[derive(Default)]
struct Tally {
    flows: HashMap<FlowKey, FlowValue>,
    /// The probe's fragment map as the model keeps it: each first fragment's flow.
    fragments: HashMap<Datagram, FlowKey>,
    by_stat: HashMap<&'static str, usize>,
    labelled: HashMap<Label, usize>,
    cases: usize,
}

/// Returns `Err(message)` from the enclosing function when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn light_snapshot(probe: &TestProbe) -> Snapshot {
    Snapshot {
        counters: probe.counters(),
        stats: probe.stats(),
        flows: 0,
    }
}

/// Runs one case and checks it against the model.
fn check(probe: &mut TestProbe, tally: &mut Tally, case: &Case) -> Result<(), String> {
    let expect = outcome(&case.frame, case.dir);
    let len = case.frame.len() as u64;
    let before = light_snapshot(probe);
    // The flow the packet is filed under, its payload for the fingerprints, its statistic.
    let (target, stat, first_fragment) = match &expect {
        Outcome::Flow {
            key,
            payload,
            first_fragment,
        } => (Some((*key, payload.clone())), None, *first_fragment),
        Outcome::Charged {
            stat,
            key,
            first_fragment,
            later_fragment,
        } => {
            let key = later_fragment
                .and_then(|id| tally.fragments.get(&datagram(key, id)).copied())
                .unwrap_or(*key);
            (Some((key, Vec::new())), Some(*stat), *first_fragment)
        }
        Outcome::Untracked(s) => (None, Some(*s), None),
    };
    let flow_before = match &target {
        Some((key, _)) => probe.probe().flow(key).map_err(|e| e.to_string())?,
        None => None,
    };
    let verdict = probe.send(case.dir, &case.frame);
    ensure!(verdict == XDP_PASS, "verdict {verdict}, not XDP_PASS");
    let d = light_snapshot(probe).since(&before);
    ensure!(
        d.stat("packets") == 1,
        "packets moved by {}",
        d.stat("packets")
    );
    for s in UNTRACKED_STATS {
        let want = u64::from(stat == Some(s));
        ensure!(
            d.stat(s) == want,
            "expected {expect:?}: statistic {s} moved by {} (all changes: {:?})",
            d.stat(s),
            d.stats
        );
    }
    for s in [
        "flow_insert_failed",
        "verdicts_applied",
        "policy_drops",
        "policy_marks",
    ] {
        ensure!(d.stat(s) == 0, "statistic {s} moved by {}", d.stat(s));
    }
    *tally.by_stat.entry(stat.unwrap_or("flow")).or_default() += 1;
    let Some((key, payload)) = target else {
        ensure!(d.stat("flows_created") == 0, "a flow was created");
        ensure!(
            d.nonzero_counters().is_empty(),
            "counted under {:?}",
            d.nonzero_counters()
        );
        return Ok(());
    };
    // The model's entry before this packet must be the kernel's.
    let known = tally.flows.get(&key).copied();
    ensure!(
        flow_before.map(|f| (f.label, f.packets, f.bytes))
            == known.map(|f| (f.label, f.packets, f.bytes)),
        "flow {key:?} before the packet: kernel {flow_before:?}, model {known:?}"
    );
    let mut want = known.unwrap_or_default();
    let mut counters = vec![[CounterValue::default(); 2]; d.counters.len()];
    let unknown = usize::from(Label::Unknown.id());
    let i = case.dir.index();
    if known.is_none() {
        // A flow without ports is labelled and final when it is created (frag.rs).
        if let Some(label) = fixed_label(&key) {
            want.label = label.id();
            want.flags |= FLAG_FINAL;
        }
        counters[usize::from(want.label)][i].flows += 1;
    }
    if want.label == Label::Unknown.id()
        && want.flags & FLAG_FINAL == 0
        && !payload.is_empty()
        && want.inspected < INSPECT_BUDGET
    {
        // TCP fingerprints are read in a flow's first two payload packets only.
        let label = (key.proto != PROTO_TCP || want.inspected < 2)
            .then(|| fingerprint_label(key.proto, &payload))
            .flatten();
        if let Some(label) = label {
            // Labelled now: the flow's earlier packets move to the label.
            let l = usize::from(label.id());
            for dir in [UP, DOWN] {
                let j = dir.index();
                counters[unknown][j].packets =
                    counters[unknown][j].packets.wrapping_sub(want.packets[j]);
                counters[unknown][j].bytes = counters[unknown][j].bytes.wrapping_sub(want.bytes[j]);
                counters[l][j].packets += want.packets[j];
                counters[l][j].bytes += want.bytes[j];
            }
            counters[l][i].flows += 1;
            want.label = label.id();
            want.flags |= FLAG_FINAL;
            *tally.labelled.entry(label).or_default() += 1;
        } else {
            want.inspected += 1;
        }
    }
    let l = usize::from(want.label);
    counters[l][i].packets += 1;
    counters[l][i].bytes += len;
    want.packets[i] += 1;
    want.bytes[i] += len;
    ensure!(
        d.stat("flows_created") == u64::from(known.is_none()),
        "flows_created moved by {} for a {} flow",
        d.stat("flows_created"),
        if known.is_none() { "new" } else { "known" }
    );
    if d.counters != counters {
        let got = d.nonzero_counters();
        let wanted = Snapshot {
            counters,
            stats: Default::default(),
            flows: 0,
        };
        return Err(format!(
            "counters moved by {got:?}, expected {:?}",
            wanted.nonzero_counters()
        ));
    }
    let after = probe.probe().flow(&key).map_err(|e| e.to_string())?;
    let after = after.ok_or_else(|| format!("no flow entry for {key:?} after its packet"))?;
    ensure!(
        (after.label, after.packets, after.bytes) == (want.label, want.packets, want.bytes),
        "flow entry {after:?}, expected label {} packets {:?} bytes {:?}",
        want.label,
        want.packets,
        want.bytes
    );
    // Keep the kernel's entry (it holds fields the model does not track, like `inspected`).
    tally.flows.insert(key, after);
    if let Some(id) = first_fragment {
        tally.fragments.insert(datagram(&key, id), key);
    }
    Ok(())
}

/// Runs every case on one fresh probe, reports every failure (up to 20 in full), and checks
/// at the end that the flow table holds exactly the flows the model expects.
fn run_all(name: &str, cases: &[Case]) -> Tally {
    let mut probe = TestProbe::load();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        tally.cases += 1;
        if let Err(e) = check(&mut probe, &mut tally, case) {
            failures.push(format!(
                "case {n} ({}, {:?}, {} bytes {:02x?}): {e}",
                case.what,
                case.dir,
                case.frame.len(),
                &case.frame[..case.frame.len().min(80)]
            ));
        }
    }
    let in_table = probe.flows().len();
    println!(
        "{name}: {} cases, outcomes {:?}, labelled {:?}, {} flows in the table",
        tally.cases, tally.by_stat, tally.labelled, in_table
    );
    let shown: Vec<&String> = failures.iter().take(20).collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(in_table, tally.flows.len(), "{name}: flows in the table");
    tally
}

mod generators;
