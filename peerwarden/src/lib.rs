//! peerwarden: traffic classification and per-subscriber policy for ISP gateways.
//!
//! The kernel probe ([`probe`]) labels flows in XDP; the daemon ([`daemon`]) reads its maps
//! every second into [`state`] and serves the REST API ([`api`]) with reports built by
//! [`report`]; the demo lab (`peerwarden lab`) is the crate `peerwarden-lab` (`lab/`).

pub mod api;
pub mod config;
pub mod daemon;
pub mod ipfix;
pub mod ktime;
pub mod policy_clock;
pub mod policy_store;
pub mod probe;
pub mod readings;
pub mod report;
pub mod shaping;
pub mod state;
pub mod swarms;

/// The history store, a crate of its own (`history/`); re-exported so `peerwarden::history`
/// paths keep working.
pub use peerwarden_history as history;
/// Thread supervision, a crate of its own (`supervise/`): the daemon's threads beat, panics
/// are recorded, stalls declared.
pub use peerwarden_supervise as supervision;
