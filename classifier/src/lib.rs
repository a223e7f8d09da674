//! peerwarden's deep classifier: what the daemon runs on flows the kernel's fixed-offset
//! fingerprints left undecided, and what `peerwarden classify` runs on capture files.
//!
//! The data flow follows the crate's modules: [`capture`] reads pcap/pcapng frames,
//! [`packet`] decodes them to TCP/UDP packets, [`Engine`] keeps per-flow inspection state
//! and shared context (video host names, endpoint cache, per-host behaviour) and returns
//! [`Verdict`]s, and [`offline`] glues them into one record per flow.
//!
//! ```no_run
//! use std::path::Path;
//! let flows = peerwarden_classifier::classify_capture(Path::new("trace.pcap"))?;
//! for f in &flows {
//!     println!("{}", f.to_json()); // {"proto":"tcp",...,"label":"bittorrent","class":"p2p",...}
//! }
//! # Ok::<(), peerwarden_classifier::CaptureError>(())
//! ```

pub mod behaviour;
pub mod cache;
pub mod capture;
pub mod catalogue;
pub mod dns_hints;
pub mod engine;
mod everyday;
pub mod flow;
pub mod hosts;
mod inspect;
mod learning;
pub mod offline;
pub mod packet;
pub mod protocols;
pub mod shape;
pub mod shape_walk;
pub mod shards;
pub mod shared;
pub mod stream;
mod verdict;

pub use capture::{CaptureError, CaptureReader, Frame};
pub use engine::{Engine, EngineConfig};
pub use flow::{Direction, FlowKey};
pub use offline::{
    CaptureOutcome, FlowRecord, classify_capture, classify_capture_partial, summarize,
};
pub use verdict::{PacketMeta, Verdict};
