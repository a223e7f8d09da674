//! Helpers for peerwarden's integration tests.
