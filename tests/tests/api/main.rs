//! The daemon's API and dashboard from the outside, against the real daemon on a lab
//! gateway: its security over HTTPS, and the dashboard in headless Chromium. Needs root and
//! the peerwarden binary:
//! `cargo build -p peerwarden && cargo test -p peerwarden-tests --test api -- --test-threads=1`.

mod api_security;
mod dashboard;
