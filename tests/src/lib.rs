//! Helpers for peerwarden's integration tests: frames built with `pnet_packet`
//! ([`packets`]), BitTorrent payloads and look-alikes ([`payloads`]), a fixed-seed generator
//! ([`rng`]), the loaded kernel probe run through `BPF_PROG_TEST_RUN` ([`xdp`]), and the
//! namespace labs ([`lab`]).
//!
//! ```no_run
//! use peerwarden_common::{Direction, Label, flow::PROTO_UDP};
//! use peerwarden_tests::{packets::{Conversation, Family}, payloads, xdp::{TestProbe, XDP_PASS}};
//!
//! let mut probe = TestProbe::load(); // needs root
//! let c = Conversation::new(Family::V4, 6881, 6881);
//! let rc = probe.send(Direction::Up, &c.udp(Direction::Up, &payloads::dht_ping_query(&[1; 20])));
//! assert_eq!(rc, XDP_PASS);
//! assert_eq!(probe.flow(&c.key(PROTO_UDP)).map(|f| f.label), Some(Label::BittorrentDht.id()));
//! ```

/// The adversarial corpus of issue 11: disguised BitTorrent, poisoned endpoints, look-alikes.
pub mod adversarial;
/// Captures replayed through the probe, and the frames of lab captures.
pub mod captures;
/// The daemon benches' policy, CPU readings, and its programs run by id.
pub mod daemon_load;
/// PPPoE sessions and MPLS label stacks around built frames (issue 14).
pub mod encap;
/// Floods of new flows, and the flow map's size and memory.
pub mod flood;
/// The Debian package built, installed and run as its systemd unit would run it.
pub mod installed;
pub mod iptv;
pub mod lab;
pub mod packets;
pub mod payloads;
/// The probe with a compiled policy installed, for the kernel tests of policies.
pub mod policy;
pub mod rng;
/// The stores and tables the scale benches fill (history, swarms).
pub mod scale;
/// Lab captures scored against their ground truth.
pub mod score;
/// Lab helpers of the shaping tests and benchmark: daemon config, iperf3 servers, tc.
pub mod shaping;
pub mod xdp;
