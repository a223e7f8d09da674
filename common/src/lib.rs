//! Types shared by peerwarden's kernel programs and its user-space side, and the
//! fixed-offset fingerprints both tiers run.
//!
//! Everything here is `no_std`, `#[repr(C)]` plain data with explicit padding, so the
//! XDP program and the daemon read the same bytes out of the same maps. Sizes are
//! asserted at compile time: a layout drift fails the build instead of misreading a map.
//!
//! ```
//! use peerwarden_common::{fingerprint, label::Label};
//! let mut hs = [0u8; 68];
//! hs[0] = 19;
//! hs[1..20].copy_from_slice(b"BitTorrent protocol");
//! assert_eq!(fingerprint::tcp(&hs), Some(Label::Bittorrent));
//! ```
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod deep;
pub mod fingerprint;
pub mod flow;
pub mod host;
pub mod label;
pub mod observe;
pub mod policy;
pub mod shape;
pub mod stats;

pub use flow::{Direction, FlowKey, FlowValue};
pub use label::{Class, Confidence, Label};
pub use stats::{CounterValue, Stat};
