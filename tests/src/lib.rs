//! Helpers for peerwarden's integration tests.

pub mod lab;
