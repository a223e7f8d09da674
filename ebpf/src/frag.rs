//! Packets without ports: IP fragments and the IP protocols other than TCP and UDP.
//!
//! A datagram split into fragments carries its TCP or UDP header in the first fragment
//! only. The probe remembers, for each first fragment it sees, the flow key it was filed
//! under, by (addresses, protocol, IP identification), in a small LRU map; a later fragment
//! of the same datagram is filed under that key and counted and policed as a packet of
//! that flow (its bytes are not inspected). A later fragment whose first fragment was not
//! seen (lost, reordered, evicted, or never sent) is filed under the addresses and protocol
//! with ports 0: a flow of its own, final and `unknown` (class `other`), charged to the
//! subscriber all the same.
//!
//! ESP, AH, GRE, ICMP, SCTP and every other protocol without ports are flows keyed by
//! (addresses, protocol, ports 0), labelled from the protocol number when they are created
//! and final at once: no payload inspection. See docs/policies.md.

use aya_ebpf::{macros::map, maps::LruHashMap};
use peerwarden_common::{
    Confidence, FlowKey, Label,
    flow::{PROTO_AH, PROTO_ESP, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP},
};

/// First fragments remembered at once. A datagram's fragments arrive within
/// milliseconds of each other, so this covers thousands of datagrams in flight; an entry
/// pushed out early costs only that datagram's later fragments their flow (they are
/// charged to the subscriber's `other` instead).
const FRAG_ENTRIES: u32 = 16384;

/// A datagram: its addresses (as filed in the flow key, subscriber side first), protocol
/// and IP identification (16 bits in IPv4, 32 in IPv6).
#[repr(C)]
struct DatagramKey {
    sub_addr: [u8; 16],
    remote_addr: [u8; 16],
    id: u32,
    proto: u8,
    family: u8,
    _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<DatagramKey>() == 40);

/// The flow key of each first fragment seen lately. Not pinned: what it holds is a few
/// milliseconds old, and a daemon that starts again loses only the datagrams in flight.
#[map]
static FRAGMENTS: LruHashMap<DatagramKey, FlowKey> = LruHashMap::with_max_entries(FRAG_ENTRIES, 0);

#[inline(always)]
fn datagram(key: &FlowKey, id: u32) -> DatagramKey {
    DatagramKey {
        sub_addr: key.sub_addr,
        remote_addr: key.remote_addr,
        id,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// Remembers the flow of a first fragment (`key`, already filed from the subscriber's
/// side, with its ports) under its datagram.
// Not inlined: the map key's 40 bytes stay off the probe's stack frame.
#[inline(never)]
pub fn remember(key: &FlowKey, id: u32) {
    let d = datagram(key, id);
    // Nothing to do if it fails: the later fragments go to the subscriber's `other`.
    let _ = FRAGMENTS.insert(&d, key, 0);
}

/// Files a later fragment (`key`: its addresses and protocol, ports 0) under its first
/// fragment's flow, if that was seen; otherwise leaves the key as it is.
// Not inlined, as `remember`.
#[inline(never)]
pub fn resolve(key: &mut FlowKey, id: u32) {
    let d = datagram(key, id);
    // SAFETY: a plain-data value copied out at once.
    if let Some(k) = unsafe { FRAGMENTS.get(&d) }.copied() {
        *key = k;
    }
}

/// The label and confidence a flow gets when it is created, final at once, if its key
/// says it will never be inspected: a protocol without ports (named by its number, or
/// `unknown`), or a TCP/UDP key with both ports 0 (a later fragment whose first was not
/// seen, or a packet whose TCP/UDP header is broken; port 0 is not a real endpoint).
#[inline(always)]
pub fn fixed_label(key: &FlowKey) -> Option<(u16, u8)> {
    let label = match key.proto {
        PROTO_TCP | PROTO_UDP => {
            if key.sub_port != 0 || key.remote_port != 0 {
                return None;
            }
            return Some((Label::Unknown as u16, Confidence::None as u8));
        }
        PROTO_ESP | PROTO_AH => Label::VpnIpsec,
        PROTO_GRE => Label::Gre,
        PROTO_ICMP | PROTO_ICMPV6 => Label::Icmp,
        _ => return Some((Label::Unknown as u16, Confidence::None as u8)),
    };
    // The IP header's protocol field is the packet's own statement, as a payload match is.
    Some((label as u16, Confidence::Payload as u8))
}
