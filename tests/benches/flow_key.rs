//! What a shorter flow key and a value of per-packet fields alone would save per packet: the
//! flow table's lookup and an established packet's updates (ebpf/src/bench.rs) in LRU hash
//! tables of four layouts, beside a bare `XDP_PASS` measured in the same run (STYLE.md 9:
//! ratios to a baseline, no timed assertion). See docs/benchmarks.md, "The flow key's size
//! and the value's hot fields".
//!
//! - `bench_key40`: today's 40-byte `FlowKey` and 80-byte `FlowValue`;
//! - `bench_key12`: a 12-byte IPv4 key (addresses and ports), the same value;
//! - `bench_key16`: the 12 bytes and the protocol (16 with padding), the same value;
//! - `bench_key12_hot`: the 12-byte key and a 64-byte value of the per-packet fields.
//!
//! Cases: one flow, its frame run `REPEAT` times (hot); 50,000 and 1,000,000 flows, each
//! frame run once per round (spread: the entries miss the CPU caches). Every table holds
//! `TABLE` entries and all the run's flows (inserted by a warm-up pass through the programs
//! themselves), so no case measures eviction; the rounds visit the flows in a shuffled order,
//! not the order of insertion. The programs rotate their order each round.
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench flow_key`.

use aya::{EbpfLoader, programs::Xdp};
use peerwarden::probe::FLOW_BENCH_OBJECT;
use peerwarden_tests::{
    rng::SplitMix64,
    xdp::{XDP_PASS, run_repeat},
};

/// `XDP_TX`: the bench programs' answer when they inserted the flow (a miss).
const XDP_TX: u32 = 3;
/// Runs per call in the hot case.
const REPEAT: u32 = 1_000_000;
/// Rounds; medians are reported.
const ROUNDS: usize = 5;
/// Entries of every table: room for all the run's flows, with no eviction.
const TABLE: u32 = 1 << 21;
/// The spread cases' flow counts.
const SPREADS: [usize; 2] = [50_000, 1_000_000];
/// A minimal TCP/IPv4 frame, padded to Ethernet's minimum.
const FRAME: usize = 64;

/// The baseline first, then the layouts: (program, map, key bytes, value bytes).
const PROGRAMS: [(&str, &str, usize, usize); 5] = [
    ("bench_pass", "", 0, 0),
    ("bench_key40", "BENCH_KEY40", 40, 80),
    ("bench_key12", "BENCH_KEY12", 12, 80),
    ("bench_key16", "BENCH_KEY16", 16, 80),
    ("bench_key12_hot", "BENCH_KEY12_HOT", 12, 64),
];

/// The size of one element of a preallocated hash map on Linux 6.18: the 48-byte
/// `struct htab_elem` header (BTF of the running kernel), then key and value, each rounded
/// up to 8 bytes.
fn element_size(key: usize, value: usize) -> usize {
    48 + key.next_multiple_of(8) + value.next_multiple_of(8)
}

/// The frame of flow `id`: subscriber 100.64.0.0 + `id`, to 203.0.113.7 port 6881.
fn frame(id: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&50u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    let sub = u32::from_be_bytes([100, 64, 0, 0]) + id;
    f[26..30].copy_from_slice(&sub.to_be_bytes());
    f[30..34].copy_from_slice(&[203, 0, 113, 7]);
    f[34..36].copy_from_slice(&40_000u16.to_be_bytes());
    f[36..38].copy_from_slice(&6881u16.to_be_bytes());
    f[46] = 0x50;
    f
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Mean ns per run of `prog` over `frames`, each run once; every run must find its flow.
fn once_each(prog: &Xdp, name: &str, frames: &[[u8; FRAME]]) -> f64 {
    let mut total = 0u128;
    for f in frames {
        let r = run_repeat(prog, name, f, 1);
        assert_eq!(
            r.return_value, XDP_PASS,
            "{name}: a flow missing from its table"
        );
        total += r.duration.as_nanos();
    }
    total as f64 / frames.len() as f64
}

fn main() {
    peerwarden_tests::lab::require_root();
    println!("load average at start: {}", load_average());
    let mut loader = EbpfLoader::new();
    for (_, map, ..) in PROGRAMS.iter().filter(|p| !p.1.is_empty()) {
        loader.map_max_entries(map, TABLE);
    }
    let mut ebpf = loader
        .load(FLOW_BENCH_OBJECT)
        .expect("loading the bench object");
    for (name, ..) in PROGRAMS {
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("no program {name}"))
            .try_into()
            .expect("an XDP program");
        prog.load()
            .unwrap_or_else(|e| panic!("loading {name}: {e} ({e:?})"));
    }
    let progs: Vec<&Xdp> = PROGRAMS
        .iter()
        .map(|(name, ..)| {
            ebpf.program(name)
                .expect("loaded")
                .try_into()
                .expect("an XDP program")
        })
        .collect();

    // Flow 0 is the hot case's; then each spread case's own flows.
    let hot = frame(0);
    let mut next = 1u32;
    let spreads: Vec<Vec<[u8; FRAME]>> = SPREADS
        .iter()
        .map(|&n| {
            let first = next;
            next += u32::try_from(n).expect("flow count");
            (first..next).map(frame).collect()
        })
        .collect();
    let flows = next as usize;
    // Room to spare: the LRU takes free entries in batches per CPU.
    assert!(
        flows <= TABLE as usize * 3 / 4,
        "the table must hold every flow"
    );

    // Warm-up: every flow inserted by its program's own miss path, once.
    for (i, (name, ..)) in PROGRAMS.iter().enumerate().skip(1) {
        let inserted = std::iter::once(&hot)
            .chain(spreads.iter().flatten())
            .filter(|f| run_repeat(progs[i], name, &f[..], 1).return_value == XDP_TX)
            .count();
        assert_eq!(inserted, flows, "{name}: every flow inserted once");
    }

    // The rounds visit the flows in an order unrelated to their insertion: inserted in a
    // row, their elements lie in a row in the table's memory, and visiting them in that
    // order would let the CPU's prefetcher fetch the next entry before it is asked for.
    let mut rng = SplitMix64::new(0x0f10_3e7a);
    let mut spreads = spreads;
    for frames in &mut spreads {
        for i in (1..frames.len()).rev() {
            frames.swap(i, rng.range(0, i));
        }
    }

    let cases = 1 + SPREADS.len();
    // samples[case][program]
    let mut samples = vec![vec![Vec::new(); PROGRAMS.len()]; cases];
    for round in 0..ROUNDS {
        for (case, row) in samples.iter_mut().enumerate() {
            for k in 0..PROGRAMS.len() {
                let p = (k + round) % PROGRAMS.len();
                let name = PROGRAMS[p].0;
                let ns = if case == 0 {
                    let r = run_repeat(progs[p], name, &hot, REPEAT);
                    assert_eq!(r.return_value, XDP_PASS, "{name}: the hot flow");
                    r.duration.as_nanos() as f64
                } else {
                    once_each(progs[p], name, &spreads[case - 1])
                };
                row[p].push(ns);
            }
        }
        println!("round {round} done, load average {}", load_average());
    }

    println!();
    println!("element: 48-byte header + key + value, each rounded up to 8 (Linux 6.18)");
    for (name, _, key, value) in PROGRAMS.iter().skip(1) {
        println!(
            "  {name:<16} key {key:>2} B, value {value:>2} B: element {} B",
            element_size(*key, *value)
        );
    }
    println!();
    println!(
        "{:<24} {:>16} {:>10} {:>10} {:>10}",
        "case", "program", "median ns", "x pass", "x key40"
    );
    let names: Vec<String> = std::iter::once("hot (1 flow)".to_string())
        .chain(SPREADS.iter().map(|n| format!("spread ({n} flows)")))
        .collect();
    for (case, row) in samples.into_iter().enumerate() {
        let med: Vec<f64> = row.iter().map(|v| median(v.clone())).collect();
        for (p, (name, ..)) in PROGRAMS.iter().enumerate() {
            let (lo, hi) = row[p]
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            println!(
                "{:<24} {:>16} {:>10.1} {:>10.2} {:>10.2}   ({lo:.0}-{hi:.0})",
                names[case],
                name,
                med[p],
                med[p] / med[0],
                med[p] / med[1],
            );
        }
    }
    println!();
    println!("load average at end: {}", load_average());
}
