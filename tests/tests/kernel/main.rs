//! The kernel programs on crafted frames through `BPF_PROG_TEST_RUN`, one module per topic:
//! no daemon, no namespace, no peerwarden binary. Needs root (it loads the probe).
//!
//! One test binary for the family (each binary links the whole peerwarden library):
//! `cargo test -p peerwarden-tests --test kernel -- --test-threads=1`, or one module with
//! a filter (`... --test kernel xdp_hostile::`).

mod bypass;
mod dns_answers;
mod encapsulation;
mod flow_flood;
mod iptv;
mod kernel_library_agreement;
mod observe_test_run;
mod policy_switch;
mod policy_test_run;
mod sub_usage_test_run;
mod swarm_samples;
mod xdp_hostile;
mod xdp_test_run;
