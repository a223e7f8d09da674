//! IPFIX (RFC 7011) for peerwarden's flow export: the record encoder ([`encode`]: message
//! header, the two flow templates, biflow data records with the label, cut into messages of
//! a bounded size), the tracker ([`tracker`]: which flows of the kernel's table are due
//! and how much of each, so every byte goes into exactly one record) and the daemon's
//! flow-table snapshot, cut in the tracker's slices ([`snapshot`]), and the flow reader's walk
//! of a large table in parts ([`parts`]).
//!
//! It depends on `peerwarden-common` only. The exporter thread that drives both (reads the
//! daemon's flow snapshot every second, sends the messages over UDP) is the daemon's, in
//! `peerwarden/src/ipfix/`.

pub mod encode;
mod keyhash;
pub mod parts;
mod positions;
pub mod snapshot;
pub mod tracker;

/// The smallest message size the encoder cuts (and the config accepts): room for the
/// header, a set header and the largest record (IPv6, three strings at their limit).
pub const MIN_MESSAGE: usize = 512;
