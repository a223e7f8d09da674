//! peerwarden: traffic classification and per-subscriber policy for ISP gateways.
//!
//! The kernel probe ([`probe`]) labels flows in XDP; the daemon ([`daemon`]) reads its maps
//! every second and serves the REST API ([`api`]); [`lab`] builds a demo gateway in network
//! namespaces with real clients.

pub mod probe;
