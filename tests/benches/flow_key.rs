//! What a shorter flow key and a value of per-packet fields alone would save per packet, and
//! what a new flow costs with an LRU list per CPU: the flow table's lookup, an established
//! packet's updates and a new flow's insert (ebpf/src/bench.rs) in LRU hash tables of four
//! layouts, the first also with per-CPU LRU lists, beside a bare `XDP_PASS` measured in the
//! same run (STYLE.md 9: ratios to a baseline, no timed assertion). See docs/benchmarks.md,
//! "The flow key's size and the value's hot fields" and "New flows with an LRU list per CPU".
//!
//! - `bench_key40`: today's 40-byte `FlowKey` and 80-byte `FlowValue`;
//! - `bench_key12`: a 12-byte IPv4 key (addresses and ports), the same value;
//! - `bench_key16`: the 12 bytes and the protocol (16 with padding), the same value;
//! - `bench_key12_hot`: the 12-byte key and a 64-byte value of the per-packet fields;
//! - `bench_key40_pcpu`: (a) in an LRU hash with a list per CPU (`BPF_F_NO_COMMON_LRU`).
//!
//! Established cases: one flow, its frame run `REPEAT` times (hot); 50,000 and 1,000,000
//! flows, each frame run once per round (spread: the entries miss the CPU caches). Every
//! table holds `TABLE` entries and all the run's flows (inserted by a warm-up pass through
//! the programs themselves; the per-CPU table's from every CPU in turn, as RSS spreads flows,
//! so each CPU's share holds its part), so no case measures eviction; the rounds visit the
//! flows in a shuffled order, not the order of insertion. The programs rotate their order
//! each round.
//!
//! New-flow case (`new_flows`): (a) and (a') alone, for each of `NEW_TABLES`, frames of
//! flows never seen before run once each on `MEASURE_CPU` (the thread pinned there): every
//! run misses, inserts and makes the table evict, as the probe's table at capacity under a
//! flood. For a fair comparison both tables have the same `max_entries` (so the same
//! memory and number of buckets) and are filled to capacity before measuring, every CPU's
//! share of the per-CPU table from a thread pinned to that CPU, as RSS would fill it: both
//! then hold as many flows (hash chains as long), and the measuring CPU evicts from a full
//! table (common) or from its own full share (per-CPU). On the way the bench prints what the
//! per-CPU table holds when one CPU alone inserts as many flows as the table has entries.
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench flow_key` (both parts), or with
//! `-- established` or `-- new-flows` for one.

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, Map},
    programs::Xdp,
};
use peerwarden::probe::FLOW_BENCH_OBJECT;
use peerwarden_common::{FlowKey, FlowValue};
use peerwarden_tests::{
    flood::FloodFrames,
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
const PROGRAMS: [(&str, &str, usize, usize); 6] = [
    ("bench_pass", "", 0, 0),
    ("bench_key40", "BENCH_KEY40", 40, 80),
    ("bench_key12", "BENCH_KEY12", 12, 80),
    ("bench_key16", "BENCH_KEY16", 16, 80),
    ("bench_key12_hot", "BENCH_KEY12_HOT", 12, 64),
    ("bench_key40_pcpu", PCPU_MAP, 40, 80),
];
/// The per-CPU LRU table (`BPF_F_NO_COMMON_LRU`).
const PCPU_MAP: &str = "BENCH_KEY40_PCPU";
/// `BPF_F_NO_COMMON_LRU`, as the kernel reports it in the map's flags.
const NO_COMMON_LRU: u32 = 2;

/// The new-flow case's table sizes: `flow_flood`'s (the new-flow goal's figure) and the
/// daemon's default.
const NEW_TABLES: [u32; 2] = [65_536, 1 << 20];
/// New flows per program per round in the new-flow case.
const NEW_ROUND: u64 = 100_000;
/// The CPU the new-flow case measures on.
const MEASURE_CPU: usize = 0;
/// The new-flow case: the baseline, the common LRU, the per-CPU LRU (program, map).
const NEW_PROGRAMS: [(&str, &str); 3] = [
    ("bench_pass", ""),
    ("bench_key40", "BENCH_KEY40"),
    ("bench_key40_pcpu", PCPU_MAP),
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parts = ["established", "new-flows"];
    let chosen = |part: &str| {
        args.iter().any(|a| a == part) || !args.iter().any(|a| parts.contains(&a.as_str()))
    };
    let cpus = possible_cpus();
    println!("load average at start: {}", load_average());
    if chosen("established") {
        established(&cpus);
    }
    if chosen("new-flows") {
        for size in NEW_TABLES {
            new_flows(size, &cpus);
        }
    }
    println!();
    println!("load average at end: {}", load_average());
}

/// The CPUs of a kernel CPU list such as `0-1` or `0,2-3`.
fn cpu_list(path: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let n = |x: &str| {
            x.parse::<usize>()
                .unwrap_or_else(|_| panic!("{path}: {text:?}"))
        };
        out.extend(n(a)..=n(b));
    }
    out
}

/// The possible CPUs: the per-CPU LRU gives each a share of its table. All must be online,
/// so that the bench can fill every share.
fn possible_cpus() -> Vec<usize> {
    let possible = cpu_list("/sys/devices/system/cpu/possible");
    let online = cpu_list("/sys/devices/system/cpu/online");
    assert_eq!(
        possible, online,
        "the bench fills every possible CPU's share of the per-CPU table: all must be online"
    );
    assert!(possible.contains(&MEASURE_CPU), "no CPU {MEASURE_CPU}");
    possible
}

/// Pins the calling thread to `cpu` (`BPF_PROG_TEST_RUN` runs the program on the caller's
/// CPU).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is the empty set, `CPU_SET` writes inside it, and
    // `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, 0, "pinning to CPU {cpu}: {err}");
}

/// Calls `each` on every item from threads pinned to the CPUs in turn (item `i` on
/// `cpus[i % cpus.len()]`, as RSS spreads flows over receive queues); counts the trues.
fn spread_over<T: Sync>(cpus: &[usize], items: &[T], each: impl Fn(&T) -> bool + Sync) -> usize {
    std::thread::scope(|s| {
        let each = &each;
        let threads: Vec<_> = cpus
            .iter()
            .enumerate()
            .map(|(k, &cpu)| {
                s.spawn(move || {
                    pin_to(cpu);
                    let mine = items.iter().skip(k).step_by(cpus.len());
                    mine.filter(|x| each(x)).count()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a pinned thread"))
            .sum()
    })
}

/// The bench object with maps `sizes` (name, entries; the others keep their one declared
/// entry) and programs `names` loaded.
fn load(sizes: &[(&'static str, u32)], names: &[&str]) -> Ebpf {
    let mut loader = EbpfLoader::new();
    for &(map, entries) in sizes {
        loader.map_max_entries(map, entries);
    }
    let mut ebpf = loader
        .load(FLOW_BENCH_OBJECT)
        .expect("loading the bench object");
    for &name in names {
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("no program {name}"))
            .try_into()
            .expect("an XDP program");
        prog.load()
            .unwrap_or_else(|e| panic!("loading {name}: {e} ({e:?})"));
    }
    ebpf
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name)
        .unwrap_or_else(|| panic!("no program {name}"))
        .try_into()
        .expect("an XDP program")
}

/// The flow table `name` of `ebpf`.
fn table<'a>(ebpf: &'a Ebpf, name: &str) -> HashMap<&'a aya::maps::MapData, FlowKey, FlowValue> {
    let map = ebpf.map(name).unwrap_or_else(|| panic!("no map {name}"));
    HashMap::try_from(map).expect("an LRU hash of FlowKey to FlowValue")
}

/// The kernel's `max_entries` and flags of map `name`.
fn created(ebpf: &Ebpf, name: &str) -> (u32, u32) {
    let Some(Map::LruHashMap(data)) = ebpf.map(name) else {
        panic!("{name}: not an LRU hash");
    };
    let info = data.info().expect("the map's info");
    (info.max_entries(), info.map_flags())
}

/// Runs `prog` once on each of `n` new flows' frames from `*next`; every run must answer
/// `verdict`. Returns the kernel's mean ns per run.
fn new_each(prog: &Xdp, name: &str, next: &mut u64, n: u64, verdict: u32) -> f64 {
    let mut frames = FloodFrames::new();
    let mut total = 0u128;
    for _ in 0..n {
        let r = run_repeat(prog, name, frames.up(*next), 1);
        assert_eq!(r.return_value, verdict, "{name}: flow {next}");
        total += r.duration.as_nanos();
        *next += 1;
    }
    total as f64 / n as f64
}

/// Of flows `first..first + n`, how many `map` holds in the first half and in the second.
fn held_halves(
    map: &HashMap<&aya::maps::MapData, FlowKey, FlowValue>,
    first: u64,
    n: u64,
) -> (usize, usize) {
    let held = |range: std::ops::Range<u64>| {
        range
            .filter(|&i| map.get(&FloodFrames::key(i), 0).is_ok())
            .count()
    };
    (held(first..first + n / 2), held(first + n / 2..first + n))
}

/// New flows into full tables of `size` entries, the common LRU against the per-CPU one.
fn new_flows(size: u32, cpus: &[usize]) {
    let sizes: Vec<(&str, u32)> = NEW_PROGRAMS
        .iter()
        .filter(|p| !p.1.is_empty())
        .map(|p| (p.1, size))
        .collect();
    let ebpf = load(&sizes, &NEW_PROGRAMS.map(|p| p.0));
    let progs: Vec<&Xdp> = NEW_PROGRAMS.iter().map(|p| xdp(&ebpf, p.0)).collect();
    // As the kernel created them: the loader's sizing keeps the flag; the per-CPU table's
    // entries are rounded to a multiple of the possible CPUs and split evenly among them.
    let (common_entries, common_flags) = created(&ebpf, NEW_PROGRAMS[1].1);
    let (pcpu_entries, pcpu_flags) = created(&ebpf, PCPU_MAP);
    assert_eq!(common_flags & NO_COMMON_LRU, 0, "the common LRU's flags");
    assert_eq!(
        pcpu_flags & NO_COMMON_LRU,
        NO_COMMON_LRU,
        "BPF_F_NO_COMMON_LRU kept"
    );
    assert_eq!(common_entries, size);
    let share = u64::from(pcpu_entries) / cpus.len() as u64;
    println!();
    println!(
        "new flows into a full table of {size} entries (per-CPU LRU: {pcpu_entries} entries, \
         {share} for each of {} possible CPUs), measured on CPU {MEASURE_CPU}",
        cpus.len()
    );

    pin_to(MEASURE_CPU);
    let mut next = 0u64;
    let n = u64::from(size);
    for (p, (name, map)) in NEW_PROGRAMS.iter().enumerate().skip(1) {
        // One receive queue: `size` new flows from the measuring CPU into the empty table.
        let first = next;
        new_each(progs[p], name, &mut next, n, XDP_TX);
        let (early, late) = held_halves(&table(&ebpf, map), first, n);
        println!(
            "  {name:<16} {n} new flows from CPU {MEASURE_CPU} alone: {} held ({early} of the \
             first half, {late} of the second)",
            early + late
        );
        // Every other CPU fills its share twice over, then the measuring CPU inserts `size`
        // more: the table is at capacity and every insert evicts.
        for &cpu in cpus.iter().filter(|&&c| c != MEASURE_CPU) {
            std::thread::scope(|s| {
                s.spawn(|| {
                    pin_to(cpu);
                    new_each(progs[p], name, &mut next, 2 * share, XDP_TX)
                })
                .join()
                .expect("a pinned thread")
            });
        }
        new_each(progs[p], name, &mut next, n, XDP_TX);
        let held = table(&ebpf, map).keys().filter(Result::is_ok).count();
        println!("  {name:<16} filled from every CPU: {held} held");
    }

    // samples[program]
    let mut samples = vec![Vec::new(); NEW_PROGRAMS.len()];
    for round in 0..ROUNDS {
        for k in 0..NEW_PROGRAMS.len() {
            let p = (k + round) % NEW_PROGRAMS.len();
            let verdict = if p == 0 { XDP_PASS } else { XDP_TX };
            let name = NEW_PROGRAMS[p].0;
            samples[p].push(new_each(progs[p], name, &mut next, NEW_ROUND, verdict));
        }
        println!("  round {round} done, load average {}", load_average());
    }
    for (_, map) in NEW_PROGRAMS.iter().skip(1) {
        let held = table(&ebpf, map).keys().filter(Result::is_ok).count();
        println!("  {map} after the rounds: {held} held");
    }
    let med: Vec<f64> = samples.iter().map(|v| median(v.clone())).collect();
    println!(
        "  {ROUNDS} rounds of {NEW_ROUND} new flows a program, median kernel ns per new flow:"
    );
    println!(
        "  {:<16} {:>10} {:>12} {:>8} {:>9}",
        "program", "ns", "new flows/s", "x pass", "x common"
    );
    for (p, (name, _)) in NEW_PROGRAMS.iter().enumerate() {
        let (lo, hi) = samples[p]
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        println!(
            "  {name:<16} {:>10.1} {:>12.0} {:>8.2} {:>9.2}   ({lo:.0}-{hi:.0})",
            med[p],
            1e9 / med[p],
            med[p] / med[0],
            med[p] / med[1],
        );
    }
}

/// The established cases: hot and spread lookups in tables that hold every flow.
fn established(cpus: &[usize]) {
    let sizes: Vec<(&str, u32)> = PROGRAMS
        .iter()
        .filter(|p| !p.1.is_empty())
        .map(|p| (p.1, TABLE))
        .collect();
    let ebpf = load(&sizes, &PROGRAMS.map(|p| p.0));
    let progs: Vec<&Xdp> = PROGRAMS.iter().map(|p| xdp(&ebpf, p.0)).collect();

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

    // Warm-up: every flow inserted by its program's own miss path, once; into the per-CPU
    // table from every CPU in turn (one CPU's share is half the table here).
    let all: Vec<&[u8; FRAME]> = std::iter::once(&hot)
        .chain(spreads.iter().flatten())
        .collect();
    for (i, (name, map, ..)) in PROGRAMS.iter().enumerate().skip(1) {
        let miss = |f: &&[u8; FRAME]| run_repeat(progs[i], name, &f[..], 1).return_value == XDP_TX;
        let inserted = if *map == PCPU_MAP {
            spread_over(cpus, &all, miss)
        } else {
            all.iter().filter(|f| miss(f)).count()
        };
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
}
