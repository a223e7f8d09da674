//! The daemon's API and dashboard from the outside, against the real daemon on a lab
//! gateway: its security over HTTPS, the dashboard in headless Chromium, and the ALTO
//! server as an RFC 7285 client sees it. Needs root and
//! the peerwarden binary:
//! `cargo build -p peerwarden && cargo test -p peerwarden-tests --test api -- --test-threads=1`.

mod alto;
mod api_security;
mod dashboard;
