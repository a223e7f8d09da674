//! The probe with a compiled policy installed as the daemon installs it, run on crafted
//! frames through `BPF_PROG_TEST_RUN` (the kernel tests of policies and of what bypasses
//! them).

use peerwarden::probe::{Probe, ProbeOptions};
use peerwarden_common::{
    Class, Direction, FlowKey, FlowValue,
    policy::{SubCounter, SubUsage},
};
use peerwarden_policies::{
    Weekday,
    compile::{Compiled, SubscriberIndex, compile},
};

use crate::{
    lab::require_root,
    xdp::{program_for, run_with_output},
};

/// Every policy's subscribers: alice by both families (the frame builders' subscriber
/// addresses), bob by IPv4 only, so that a packet charged to the wrong subscriber would
/// show. Both are on the plan `test`.
pub const SUBSCRIBERS: &str = r#"
subscribers:
  - { id: alice, prefixes: [100.64.1.10/32, "2001:db8:1::/64"], plan: test }
  - { id: bob, prefixes: [100.64.1.20/32], plan: test }
default_plan: test
"#;
/// Alice's subscriber index (the first in [`SUBSCRIBERS`]).
pub const ALICE: u32 = 0;
/// Bob's subscriber index.
pub const BOB: u32 = 1;

/// A probe with the policy `plan` (the YAML of one plan named `test`) installed.
pub struct PolicyProbe {
    /// The loaded probe, for what the helpers below do not cover.
    pub probe: Probe,
    index: SubscriberIndex,
}

impl PolicyProbe {
    /// Loads the probe (a 4096-flow table, 64 subscribers) and installs `plan` for
    /// [`SUBSCRIBERS`]. Panics without root.
    pub fn load(plan: &str) -> PolicyProbe {
        require_root();
        let probe = Probe::load_with(ProbeOptions {
            flow_table_size: 4096,
            max_subscribers: 64,
        })
        .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"));
        let mut p = PolicyProbe {
            probe,
            index: SubscriberIndex::default(),
        };
        p.install(plan);
        p
    }

    /// Compiles `plan` for [`SUBSCRIBERS`], keeping the subscriber indices of earlier
    /// compilations.
    pub fn compile(&mut self, plan: &str) -> Compiled {
        // No schedules in these policies: any time will do.
        self.compile_at(plan, Weekday::Mon, 0)
    }

    /// Compiles `plan` for [`SUBSCRIBERS`] with the schedules in force on `day` at
    /// `minute` (of the policy's time zone), as the daemon's schedule tick compiles it.
    pub fn compile_at(&mut self, plan: &str, day: Weekday, minute: u16) -> Compiled {
        let yaml = format!("plans:\n  test:\n{plan}{SUBSCRIBERS}");
        let policy = peerwarden_policies::load_str(&yaml, "test.yaml")
            .unwrap_or_else(|e| panic!("the test policy is invalid: {:?}\n{yaml}", e.errors()));
        let options = self.probe.compile_options();
        compile(&policy, day, minute, &mut self.index, &options).expect("compiles")
    }

    /// Compiles `plan` for `day` and `minute` ([`PolicyProbe::compile_at`]) and installs
    /// it: a schedule switch as the daemon makes it. The installed policy's generation.
    pub fn install_at(&mut self, plan: &str, day: Weekday, minute: u16) -> u32 {
        let c = self.compile_at(plan, day, minute);
        self.probe.install_policy(&c).expect("install_policy")
    }

    /// Compiles and installs `plan`; the installed policy's generation.
    pub fn install(&mut self, plan: &str) -> u32 {
        let c = self.compile(plan);
        self.probe.install_policy(&c).expect("install_policy")
    }

    /// Runs the program for `dir` on `frame`; the verdict and the frame as it left.
    pub fn run(&mut self, dir: Direction, frame: &[u8]) -> (u32, Vec<u8>) {
        run_with_output(&mut self.probe, program_for(dir), frame)
    }

    /// Runs the program for `dir` on `frame`; the verdict.
    pub fn verdict(&mut self, dir: Direction, frame: &[u8]) -> u32 {
        self.run(dir, frame).0
    }

    /// Subscriber `sub`'s kernel counters.
    pub fn usage(&self, sub: u32) -> SubUsage {
        self.probe
            .subscriber_usage(sub)
            .expect("subscriber counters")
    }

    /// Alice's kernel counters for class `other` going `dir`.
    pub fn other(&self, dir: Direction) -> SubCounter {
        self.probe.subscriber_counters(ALICE).expect("counters")[Class::Other as usize][dir.index()]
    }

    /// The flow table's entry for `key`.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        let flows = self.probe.flows().expect("flows");
        flows.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The probe's statistic `name`.
    pub fn stat(&self, name: &str) -> u64 {
        self.probe.stats().expect("stats")[name]
    }
}
