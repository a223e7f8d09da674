//! The kernel probe, loaded fresh and run on crafted frames through `BPF_PROG_TEST_RUN`.
//!
//! Loading programs and running them needs root (CAP_BPF and CAP_NET_ADMIN would do, but
//! the tests run as root like the namespace labs). [`TestProbe::load`] checks that first and
//! panics with a clear message instead of letting a verifier or permission error stand in
//! for a test failure, and instead of skipping silently.

use std::collections::BTreeMap;

use aya::programs::{TestRun as _, TestRunOptions};
use peerwarden::probe::{LabelCounters, PROG_DOWNLINK, PROG_UPLINK, Probe};
use peerwarden_common::{CounterValue, Direction, FlowKey, FlowValue, Label};

/// `XDP_PASS`: what the probe returns for every frame.
pub const XDP_PASS: u32 = 2;

/// Flow table size for tests: room for the random-payload test's flows without LRU
/// eviction (the LRU map evicts per CPU before it is full).
pub const TEST_FLOW_TABLE: u32 = 1 << 16;

/// The program that sees packets going `dir`: the downlink's for `Up` (from subscribers),
/// the uplink's for `Down` (from the internet).
pub const fn program_for(dir: Direction) -> &'static str {
    match dir {
        Direction::Up => PROG_DOWNLINK,
        Direction::Down => PROG_UPLINK,
    }
}

/// Runs program `name` of `probe` once on `frame`: its verdict and the frame as it left
/// (for checks that a program changed, or did not change, a byte). Panics on a run error.
pub fn run_with_output(probe: &mut Probe, name: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let prog = probe
        .program(name)
        .unwrap_or_else(|e| panic!("program {name}: {e}"));
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    };
    let r = prog
        .test_run(opts)
        .unwrap_or_else(|e| panic!("test_run of {name}: {e}"));
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// Runs `prog` (program `name`, for messages) `repeat` times on `frame`; panics on a run
/// error. Takes the program by shared reference, so threads can run it at once.
pub fn run_repeat(
    prog: &aya::programs::Xdp,
    name: &str,
    frame: &[u8],
    repeat: u32,
) -> aya::programs::TestRunResult {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    };
    match prog.test_run(opts) {
        Ok(r) => r,
        Err(e) => panic!(
            "test_run of {name} on a {}-byte frame: {e} ({e:?})",
            frame.len()
        ),
    }
}

/// A freshly loaded probe (its counters and flow table start empty).
pub struct TestProbe {
    probe: Probe,
}

impl TestProbe {
    /// Loads the embedded kernel object with a [`TEST_FLOW_TABLE`]-entry flow table.
    pub fn load() -> TestProbe {
        TestProbe::load_with_flow_table(TEST_FLOW_TABLE)
    }

    /// Loads the embedded kernel object with a flow table of `entries`.
    pub fn load_with_flow_table(entries: u32) -> TestProbe {
        crate::lab::require_root();
        match Probe::load(entries) {
            Ok(probe) => TestProbe { probe },
            Err(e) => panic!("loading the probe: {e} ({e:?})"),
        }
    }

    /// The underlying probe.
    pub fn probe(&mut self) -> &mut Probe {
        &mut self.probe
    }

    /// Runs program `name` once on `frame` and returns its verdict; panics on a run error.
    pub fn run(&mut self, name: &'static str, frame: &[u8]) -> u32 {
        self.run_repeat(name, frame, 1).return_value
    }

    /// Runs program `name` `repeat` times on `frame` (the kernel's average time per run is
    /// in the result's `duration`); panics on a run error.
    pub fn run_repeat(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> aya::programs::TestRunResult {
        let prog = match self.probe.program(name) {
            Ok(p) => p,
            Err(e) => panic!("program {name}: {e}"),
        };
        run_repeat(prog, name, frame, repeat)
    }

    /// Runs the program for `dir` on `frame` (see [`program_for`]) and returns its verdict.
    pub fn send(&mut self, dir: Direction, frame: &[u8]) -> u32 {
        self.run(program_for(dir), frame)
    }

    /// Every flow in the table.
    pub fn flows(&self) -> Vec<(FlowKey, FlowValue)> {
        self.probe
            .flows()
            .unwrap_or_else(|e| panic!("reading the flow table: {e}"))
    }

    /// The flow filed under `key`, if any.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        self.flows()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The probe's statistics by name.
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.probe
            .stats()
            .unwrap_or_else(|e| panic!("reading the statistics: {e}"))
    }

    /// One statistic; panics on a name the probe does not report.
    pub fn stat(&self, name: &str) -> u64 {
        *self
            .stats()
            .get(name)
            .unwrap_or_else(|| panic!("the probe reports no statistic {name:?}"))
    }

    /// The per-label counters, summed over CPUs.
    pub fn counters(&self) -> LabelCounters {
        self.probe
            .counters()
            .unwrap_or_else(|e| panic!("reading the counters: {e}"))
    }

    /// The counters, statistics and flow count as they are now, to compare with later.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counters: self.counters(),
            stats: self.stats(),
            flows: self.flows().len(),
        }
    }

    /// The counters of `label` going `dir`.
    pub fn counter(&self, label: Label, dir: Direction) -> CounterValue {
        self.counters()[usize::from(label.id())][dir.index()]
    }
}

/// The probe's counters, statistics and flow count at one moment. Tests that run many
/// cases on one probe (loading one takes about a second, most of it in the verifier) check
/// what each case changed with [`Snapshot::since`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Per-label counters, `[up, down]` per label id.
    pub counters: LabelCounters,
    /// Statistics by name.
    pub stats: BTreeMap<&'static str, u64>,
    /// Entries in the flow table.
    pub flows: usize,
}

impl Snapshot {
    /// What changed from `earlier` to `self`. Counters subtract with wrapping arithmetic,
    /// as the kernel's per-CPU slots do.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let counters = self
            .counters
            .iter()
            .zip(&earlier.counters)
            .map(|(now, then)| {
                [0, 1].map(|i| CounterValue {
                    packets: now[i].packets.wrapping_sub(then[i].packets),
                    bytes: now[i].bytes.wrapping_sub(then[i].bytes),
                    flows: now[i].flows.wrapping_sub(then[i].flows),
                })
            })
            .collect();
        let stats = self
            .stats
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    v.wrapping_sub(earlier.stats.get(k).copied().unwrap_or(0)),
                )
            })
            .collect();
        Snapshot {
            counters,
            stats,
            flows: self.flows.wrapping_sub(earlier.flows),
        }
    }

    /// The counters of `label` going `dir`.
    pub fn counter(&self, label: Label, dir: Direction) -> CounterValue {
        self.counters[usize::from(label.id())][dir.index()]
    }

    /// One statistic; panics on a name the probe does not report.
    pub fn stat(&self, name: &str) -> u64 {
        *self
            .stats
            .get(name)
            .unwrap_or_else(|| panic!("the probe reports no statistic {name:?}"))
    }

    /// Labels whose counters are not all zero, with their `[up, down]` values.
    pub fn nonzero_counters(&self) -> Vec<(Label, [CounterValue; 2])> {
        self.counters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.iter().any(|v| *v != CounterValue::default()))
            .map(|(id, c)| (Label::from_id(id as u16), *c))
            .collect()
    }
}
