//! An ALTO server (RFC 7285) over peerwarden's policy: the ISP publishes where its
//! subscribers are (the network map) and what reaching them costs (the cost maps), so
//! peer-to-peer clients can prefer peers inside the network to peers across transit.
//!
//! - [`network::NetworkMap`]: PIDs from the policy's subscriber prefixes, one per plan
//!   (`plan-<name>`), or the operator's own (`alto.pids`), plus `default` holding
//!   `0.0.0.0/0` and `::/0` for everything else; its version tag is a hash of its PIDs;
//! - [`cost`]: `routingcost`, numerical and ordinal: local↔local `alto.costs.local`,
//!   local↔default `alto.costs.transit`;
//! - [`request`]: the POST bodies (endpoint cost, filtered maps) read into requests or
//!   into the RFC's errors ([`error::AltoError`]);
//! - [`server::Alto`]: the responses, as JSON bytes, for the daemon's API to serve.
//!
//! ```
//! use peerwarden_alto::{AltoConfig, server::Alto};
//! let policy = peerwarden_policies::load_str(
//!     "plans: { home: { rate: { down: 10mbit, up: 1mbit } } }\n\
//!      default_plan: home\n\
//!      subscribers: [ { id: a, prefixes: [100.64.1.0/24], plan: home } ]\n",
//!     "policy.yaml",
//! ).unwrap();
//! let alto = Alto::new(AltoConfig::default());
//! let map = alto.maps(Some(&std::sync::Arc::new(policy)));
//! assert_eq!(map.network.pid_of("100.64.1.7".parse().unwrap()), "plan-home");
//! assert_eq!(map.network.pid_of("198.51.100.1".parse().unwrap()), "default");
//! ```

pub mod config;
pub mod cost;
pub mod error;
pub mod media;
pub mod model;
pub mod network;
pub mod request;
pub mod server;

pub use config::AltoConfig;
pub use error::AltoError;

#[cfg(test)]
mod tests;
