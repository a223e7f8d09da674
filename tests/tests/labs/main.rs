//! Namespace labs running the real daemon (`peerwarden lab up`, or the daemon started by
//! the test), one module per topic. Each lab has its own prefix and API port, and is
//! removed when its test ends, also on failure. Needs root and the peerwarden binary:
//! `cargo build -p peerwarden && cargo test -p peerwarden-tests --test labs -- --test-threads=1`,
//! or one module with a filter (`... --test labs crash_restart::`).

mod adversarial;
mod bypass;
mod crash_restart;
mod daemon_lifecycle;
mod dns_lab;
mod fleet_lab;
mod history_restart;
mod installed;
mod ipfix_lab;
mod iptv_lab;
mod lab_captures;
mod lab_flood;
mod lab_swarm;
mod observe_lab;
mod policy_lab;
mod pppoe_lab;
mod restart_report;
mod shape_lab;
mod shape_queues;
mod supervision;
mod swarm_hairpin_lab;
mod swarm_view_lab;
