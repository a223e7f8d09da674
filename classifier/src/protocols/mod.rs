//! Protocol detectors, one module per protocol family. Each is a set of pure functions over
//! payload bytes (the engine keeps the per-flow state), with unit tests on crafted payloads
//! and look-alikes beside it.

pub mod bittorrent;
pub mod dns;
pub mod dns_message;
pub mod edonkey;
pub mod game;
pub mod gnutella;
pub mod http;
pub mod p2ptv;
pub mod peercast;
pub mod quic;
pub mod remote;
pub mod rtc;
pub mod streaming;
pub mod tls;
pub mod vpn;
