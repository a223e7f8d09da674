//! The `peerwarden` binary's offline commands, run as an operator runs them. Needs the
//! peerwarden binary, and root for the namespace cases:
//! `cargo build -p peerwarden && cargo test -p peerwarden-tests --test cli -- --test-threads=1`.

mod config_check;
