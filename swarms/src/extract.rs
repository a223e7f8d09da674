//! Info-hashes from the payloads the deep tier samples: one function per source, and
//! [`sighting`] that tries the ones that fit a packet.
//!
//! Each function takes one packet's payload as the kernel samples it (the first packets of a
//! flow, at most `peerwarden_common::deep::SAMPLE_BYTES` each, one direction at a time) and
//! reads it by the layout its specification gives, refusing anything that does not fit
//! exactly: a wrong length byte, a wrong action, a hash of 19 bytes, a missing mandatory
//! parameter. None panics or allocates more than the payload's size on any input.
//!
//! The metadata exchange (BEP 9 `ut_metadata` over the BEP 10 extension handshake) carries no
//! info-hash: it follows the peer-wire handshake on the same connection, whose hash names it,
//! so a flow's hash comes from its handshake and nothing is read from the messages after it.

use crate::{bencode, infohash::InfoHash};

pub use crate::tracker_http::{
    HttpTracker, HttpTrackerKind, MAX_SCRAPE_HASHES, http_tracker_request,
};

/// The peer-wire handshake's start (BEP 3): the length byte 19 and the protocol string.
const HANDSHAKE_START: &[u8; 20] = b"\x13BitTorrent protocol";
/// Bytes up to the end of the info-hash: 1 + 19 + 8 reserved + 20.
const HANDSHAKE_HASH_END: usize = 48;
/// The whole handshake, the peer id included.
const HANDSHAKE_LEN: usize = 68;
/// A UDP tracker announce request's fixed part (BEP 15), up to and including the port.
const UDP_ANNOUNCE_LEN: usize = 98;
/// BEP 15's `connect` request's protocol id: an announce never carries it.
const UDP_PROTOCOL_ID: u64 = 0x417_2710_1980;

/// A peer-wire handshake (BEP 3): `19 "BitTorrent protocol" reserved[8] info_hash[20]
/// peer_id[20]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The swarm.
    pub info_hash: InfoHash,
    /// The reserved bytes (extension bits: BEP 10 is bit 20 from the right, DHT the last).
    pub reserved: [u8; 8],
    /// The sender's peer id, when the packet holds the whole handshake (a client may send
    /// the first 48 bytes and wait for the other side's hash before sending its id).
    pub peer_id: Option<[u8; 20]>,
}

/// The peer-wire handshake at the start of `p`, if it is one.
pub fn peer_wire_handshake(p: &[u8]) -> Option<Handshake> {
    if p.len() < HANDSHAKE_HASH_END || !p.starts_with(HANDSHAKE_START) {
        return None;
    }
    let reserved = p[20..28].try_into().ok()?;
    let info_hash = InfoHash::from_slice(&p[28..48])?;
    let peer_id = p.get(48..HANDSHAKE_LEN).and_then(|b| b.try_into().ok());
    Some(Handshake {
        info_hash,
        reserved,
        peer_id,
    })
}

/// A UDP tracker announce request (BEP 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpAnnounce {
    /// The swarm.
    pub info_hash: InfoHash,
    /// The announcing peer's id.
    pub peer_id: [u8; 20],
    /// 0 none, 1 completed, 2 started, 3 stopped.
    pub event: u32,
    /// The port the client listens on (never 0).
    pub port: u16,
}

/// The UDP tracker announce request in `p`: connection_id 8, action 4 (= 1), transaction_id
/// 4, info_hash 20, peer_id 20, downloaded 8, left 8, uploaded 8, event 4, ip 4, key 4,
/// num_want 4, port 2, then optional BEP 41 extensions. The connection id is the tracker's
/// (random), so the fields that have a range are checked to tell an announce from another
/// datagram that happens to hold 1 at offset 8 (a DNS query with one additional record
/// does: 240 DNScrypt datagrams of the corpus): the event (0 to 3), `num_want` (-1 for the
/// tracker's default, else 0 to 10,000), byte counters that are not negative as the `i64`
/// BEP 15 makes them, a port that is not 0 (the announce says where to connect), a
/// connection id that is not the `connect` request's protocol id, and an info-hash and peer
/// id that are not all zero.
pub fn udp_tracker_announce(p: &[u8]) -> Option<UdpAnnounce> {
    if p.len() < UDP_ANNOUNCE_LEN {
        return None;
    }
    let be32 = |o: usize| u32::from_be_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
    let be64 = |o: usize| (u64::from(be32(o)) << 32) | u64::from(be32(o + 4));
    let event = be32(80);
    let num_want = be32(92) as i32;
    let port = u16::from_be_bytes([p[96], p[97]]);
    let counters_ok = [56, 64, 72].iter().all(|&o| be64(o) < 1 << 63);
    if be32(8) != 1
        || be64(0) == UDP_PROTOCOL_ID
        || event > 3
        || !(-1..=10_000).contains(&num_want)
        || !counters_ok
        || port == 0
    {
        return None;
    }
    let info_hash = InfoHash::from_slice(&p[16..36])?;
    let peer_id: [u8; 20] = p[36..56].try_into().ok()?;
    if info_hash.0 == [0; 20] || peer_id == [0; 20] {
        return None;
    }
    Some(UdpAnnounce {
        info_hash,
        peer_id,
        event,
        port,
    })
}

/// The DHT queries that name a swarm (BEP 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtMethod {
    /// `get_peers`: the sender looks for the swarm's peers.
    GetPeers,
    /// `announce_peer`: the sender says it is in the swarm, listening on a port.
    AnnouncePeer,
}

/// A DHT query naming a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhtQuery {
    /// Which query.
    pub method: DhtMethod,
    /// The swarm.
    pub info_hash: InfoHash,
    /// `announce_peer`'s `port` argument.
    pub port: Option<u16>,
    /// `announce_peer` with `implied_port` 1: the listen port is the datagram's source port
    /// (the caller knows it; the payload does not).
    pub implied_port: bool,
}

/// The DHT `get_peers` or `announce_peer` query in `p`: a bencoded dictionary with `y` = `q`,
/// `q` the method, `t` a transaction id, and `a` a dictionary whose `id` and `info_hash` are
/// 20-byte strings.
pub fn dht_query(p: &[u8]) -> Option<DhtQuery> {
    let msg = bencode::parse(p).ok()?.as_dict()?;
    if msg.get(b"y")?.as_bytes()? != b"q" {
        return None;
    }
    msg.get(b"t")?.as_bytes()?;
    let method = match msg.get(b"q")?.as_bytes()? {
        b"get_peers" => DhtMethod::GetPeers,
        b"announce_peer" => DhtMethod::AnnouncePeer,
        _ => return None,
    };
    let args = msg.get(b"a")?.as_dict()?;
    if args.get(b"id")?.as_bytes()?.len() != 20 {
        return None;
    }
    let info_hash = InfoHash::from_slice(args.get(b"info_hash")?.as_bytes()?)?;
    let (mut port, mut implied_port) = (None, false);
    if method == DhtMethod::AnnouncePeer {
        args.get(b"token")?.as_bytes()?;
        implied_port = match args.get(b"implied_port") {
            None => false,
            Some(v) => v.as_int()? != 0,
        };
        port = match args.get(b"port") {
            Some(v) => Some(u16::try_from(v.as_int()?).ok()?),
            None if implied_port => None,
            None => return None,
        };
    }
    Some(DhtQuery {
        method,
        info_hash,
        port,
        implied_port,
    })
}

/// Where a hash was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A peer-wire handshake: the flow itself belongs to the swarm.
    PeerWire,
    /// An HTTP tracker announce.
    HttpTracker,
    /// A UDP tracker announce.
    UdpTracker,
    /// A DHT `get_peers` query.
    DhtGetPeers,
    /// A DHT `announce_peer` query.
    DhtAnnouncePeer,
}

/// The port a sighting says its sender listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenPort {
    /// None given (a handshake, `get_peers`, an announce with port 0).
    None,
    /// This port.
    Port(u16),
    /// The packet's own source port (DHT `implied_port`).
    Source,
}

/// One info-hash seen in a packet, with what the swarm table needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// The swarm.
    pub info_hash: InfoHash,
    /// Where it was seen.
    pub source: Source,
    /// The port the sender says it listens on (announces only).
    pub listen_port: ListenPort,
}

/// The transport a payload came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP: handshakes and HTTP tracker requests.
    Tcp,
    /// UDP: tracker announces and DHT queries. (uTP carries the peer-wire handshake inside
    /// its own 20-byte header: see [`sighting`].)
    Udp,
}

/// Length of a uTP header without extensions (BEP 29).
const UTP_HEADER: usize = 20;

/// The info-hash `p` shows, trying every source that fits the transport. Tracker scrapes are
/// left out: asking a tracker about a swarm is no part in it (use [`http_tracker_request`]
/// to read them).
pub fn sighting(transport: Transport, p: &[u8]) -> Option<Sighting> {
    let port = |p: u16| {
        if p == 0 {
            ListenPort::None
        } else {
            ListenPort::Port(p)
        }
    };
    match transport {
        Transport::Tcp => {
            if let Some(h) = peer_wire_handshake(p) {
                return Some(Sighting {
                    info_hash: h.info_hash,
                    source: Source::PeerWire,
                    listen_port: ListenPort::None,
                });
            }
            let t = http_tracker_request(p)?;
            match t.kind {
                HttpTrackerKind::Announce { port: lp, .. } => Some(Sighting {
                    info_hash: *t.info_hashes.first()?,
                    source: Source::HttpTracker,
                    listen_port: port(lp),
                }),
                HttpTrackerKind::Scrape => None,
            }
        }
        Transport::Udp => {
            if let Some(a) = udp_tracker_announce(p) {
                return Some(Sighting {
                    info_hash: a.info_hash,
                    source: Source::UdpTracker,
                    listen_port: port(a.port),
                });
            }
            if let Some(q) = dht_query(p) {
                let (source, listen_port) = match q.method {
                    DhtMethod::GetPeers => (Source::DhtGetPeers, ListenPort::None),
                    DhtMethod::AnnouncePeer if q.implied_port => {
                        (Source::DhtAnnouncePeer, ListenPort::Source)
                    }
                    DhtMethod::AnnouncePeer => (Source::DhtAnnouncePeer, port(q.port.unwrap_or(0))),
                };
                return Some(Sighting {
                    info_hash: q.info_hash,
                    source,
                    listen_port,
                });
            }
            utp_handshake(p).map(|h| Sighting {
                info_hash: h.info_hash,
                source: Source::PeerWire,
                listen_port: ListenPort::None,
            })
        }
    }
}

/// The peer-wire handshake inside a uTP data packet (BEP 29): version 1, type ST_DATA (0),
/// then the header's extension chain, then the handshake.
pub fn utp_handshake(p: &[u8]) -> Option<Handshake> {
    let (&first, _) = p.split_first()?;
    if first != 0x01 || p.len() < UTP_HEADER {
        return None;
    }
    // Walk the extension chain: each extension is (next type, length, bytes).
    let (mut next, mut at) = (p[1], UTP_HEADER);
    let mut hops = 0;
    while next != 0 {
        let len = usize::from(*p.get(at + 1)?);
        next = *p.get(at)?;
        at = at.checked_add(2 + len)?;
        hops += 1;
        if hops > 8 {
            return None;
        }
    }
    peer_wire_handshake(p.get(at..)?)
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
