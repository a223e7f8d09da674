//! The swarm view (issue 15): which BitTorrent swarms the subscribers take part in, and how
//! much of each swarm's traffic stays inside the network (subscriber to subscriber) and how
//! much crosses the transit link.
//!
//! ```
//! use peerwarden_common::{Direction, FlowKey, flow::{FAMILY_V4, PROTO_TCP}};
//! use peerwarden_swarms::{SwarmTable, SwarmsConfig, Transport, sighting};
//!
//! // A peer-wire handshake from subscriber 100.64.0.1 to a remote peer.
//! let mut hs = b"\x13BitTorrent protocol".to_vec();
//! hs.extend_from_slice(&[0; 8]);
//! hs.extend_from_slice(&[0xab; 20]); // info_hash
//! hs.extend_from_slice(b"-XX0001-abcdefghijkl"); // peer_id
//! let s = sighting(Transport::Tcp, &hs).expect("a handshake");
//!
//! let mut key = FlowKey { proto: PROTO_TCP, family: FAMILY_V4, sub_port: 51413, remote_port: 6881, ..FlowKey::default() };
//! key.sub_addr[..4].copy_from_slice(&[100, 64, 0, 1]);
//! key.remote_addr[..4].copy_from_slice(&[203, 0, 113, 9]);
//! let is_sub = |a: std::net::IpAddr| a.to_string().starts_with("100.64.");
//!
//! let config = SwarmsConfig { enabled: true, ..SwarmsConfig::default() };
//! let mut table = SwarmTable::new(&config, None).expect("valid config");
//! let id = table.swarm_id(&s.info_hash);
//! table.observe(&key, Direction::Up, &s, 1_000, &is_sub);
//! table.account(&key, 5_000, 120_000, 1_010, &is_sub); // a flow walk's deltas
//! let swarm = table.get(&id).expect("listed");
//! assert_eq!(swarm.bytes.transit_down, 120_000);
//! assert_eq!(swarm.subscribers.len(), 1);
//! ```
//!
//! # Pieces
//!
//! - [`extract`]: the info-hash from one payload sample, one function per source (peer-wire
//!   handshake over TCP or uTP, HTTP and UDP tracker announces and scrapes, DHT
//!   `get_peers`/`announce_peer`), and [`sighting`] which tries those that fit.
//! - [`bencode`]: the strict, allocation-free bencode reader the DHT extractor uses.
//! - [`endpoint`]: attribution of encrypted (MSE/PE) flows through their endpoint's
//!   plaintext announces, and when that is sound.
//! - [`SwarmTable`]: flows → swarms, per-swarm accounting, caps, retention, pseudonyms.
//! - [`SwarmsConfig`]: the `swarms` config section.
//!
//! # Wiring (for the daemon)
//!
//! Nothing here reads the kernel, a clock or the store; the daemon feeds it:
//!
//! 1. At start, when `swarms.enabled`: load or create the installation's [`PseudonymKey`]
//!    (32 bytes, e.g. a file beside the history store, mode 0600) if `pseudonymize` is on,
//!    and build one [`SwarmTable::new`]. With `enabled: false` build nothing, so nothing is
//!    extracted, kept or served.
//! 2. In the deep classifier's sample loop (the ring buffer's `Sample`s), for TCP/UDP
//!    samples of flows labelled BitTorrent (or still undecided): `sighting(transport,
//!    &sample.data[..sample.captured])`; on `Some(s)`, `table.observe(&sample.key,
//!    direction, &s, now_unix_secs, &subscribers)`. `direction` is the sample's `dir`.
//! 3. For flows the classifier labels as encrypted BitTorrent (MSE/PE), once when the label
//!    is decided: `table.attribute_by_endpoint(&key, now, &subscribers)`; count its
//!    `Ambiguous`/`Unknown` results as unattributed (they are also in [`TableStats`]).
//! 4. In the flow-table walk that already computes per-flow byte deltas: `table.account(&key,
//!    up_delta, down_delta, now, &subscribers)` for every flow (it returns `None` at once for
//!    flows of no swarm); `table.forget_flow(&key)` when a flow leaves the kernel's map.
//!    Deltas of walks before a flow's attribution are not counted: the handshake is the
//!    flow's first payload packet, so that is the TCP setup at most if samples are handled
//!    before the next walk (an encrypted flow loses the bytes until step 3 runs).
//! 5. Every minute (the store's interval): write `table.take_interval()` (per-swarm byte
//!    deltas) as the store's rows, then `table.expire(now)` (in that order, so an expiring
//!    swarm's last bytes are written), and publish the totals of [`SwarmTable::summaries`]
//!    and [`TableStats`] as gauges (no info-hash labels). A swarm evicted at `max_swarms`
//!    loses the bytes since the last interval (counted in `evicted_swarms`).
//! 6. The API reads [`SwarmTable::summaries`] / [`SwarmTable::get`] for the live view and
//!    the store for windows; subscriber addresses ([`Swarm::subscribers`]) only to a caller
//!    with the read token.
//!
//! Known limits: a uTP socket is also its client's DHT socket, so DHT datagrams on the same
//! address and port pair as an attributed uTP connection count in its swarm; a DHT crawler
//! on a subscriber's address (`get_peers` for thousands of hashes) appears in each swarm it
//! queries; a subscriber address shared by NAT is one participant.
//!
//! `subscribers` is anything implementing [`Subscribers`], a closure `Fn(IpAddr) -> bool`
//! included: the policy's subscriber prefixes.

pub mod bencode;
pub mod config;
pub mod endpoint;
pub mod extract;
pub mod feed;
pub mod infohash;
pub mod keyfile;
mod lru;
pub mod table;
mod tracker_http;

pub use config::{ConfigError, SwarmsConfig};
pub use endpoint::Attribution;
pub use extract::{ListenPort, Sighting, Source, Transport, sighting};
pub use feed::Feed;
pub use infohash::{InfoHash, PseudonymKey, SwarmId};
pub use table::{
    Bytes, Observed, Share, Subscribers, Swarm, SwarmSummary, SwarmTable, TableError, TableStats,
};
