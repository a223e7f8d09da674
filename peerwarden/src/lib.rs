//! peerwarden: traffic classification and per-subscriber policy for ISP gateways.
//!
//! The kernel probe ([`probe`]) labels flows in XDP; the daemon ([`daemon`]) reads its maps
//! every second into [`state`] and serves the REST API ([`api`]) with reports built by
//! [`report`]; [`lab`] builds a demo gateway in network namespaces with real clients.

pub mod api;
pub mod config;
pub mod daemon;
pub mod ipfix;
pub mod ktime;
pub mod lab;
pub mod pin;
pub mod policy_clock;
pub mod policy_store;
pub mod probe;
pub mod report;
pub mod shaping;
pub mod state;
pub mod subscribers;

/// The history store, a crate of its own (`history/`); re-exported so `peerwarden::history`
/// paths keep working.
pub use peerwarden_history as history;
