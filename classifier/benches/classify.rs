//! `classify` over the reference corpus beside nDPI's `ndpiReader` (Debian's libndpi-bin)
//! on the same files, in the same run: packets/s, Gbit/s, CPU time and peak memory
//! (getrusage's maxrss of each as a child process), and the ratios.
//!
//! Both run single-threaded over every capture `LOOPS` times (ndpiReader's `-l`), reading
//! the files from the page cache. Our side runs as a child process too (this binary
//! re-executed), so both maxrss figures are whole processes.
//!
//! ```text
//! cargo bench -p peerwarden-classifier --bench classify            # LOOPS=10
//! PW_BENCH_LOOPS=30 PW_BENCH_CORPUS=/path/to/pcaps cargo bench -p peerwarden-classifier --bench classify
//! ```

use std::{
    env,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use peerwarden_classifier::{EngineConfig, classify_capture_partial};

const CHILD: &str = "PW_BENCH_CHILD_PLAYLIST";

fn main() {
    let loops: u32 = env::var("PW_BENCH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if let Ok(playlist) = env::var(CHILD) {
        child(Path::new(&playlist), loops);
        return;
    }
    let corpus = env::var_os("PW_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ndpi/pcap")
        });
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&corpus) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => {
            eprintln!("bench: no corpus at {}: {e}", corpus.display());
            return;
        }
    };
    files.sort();
    let playlist = env::temp_dir().join(format!("peerwarden-bench-{}.txt", std::process::id()));
    let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    std::fs::write(&playlist, list).expect("write playlist");

    println!(
        "corpus: {} ({} captures), {loops} loops, one thread each",
        corpus.display(),
        files.len()
    );
    let exe = env::current_exe().expect("own path");
    let mut ours_cmd = Command::new(exe);
    ours_cmd
        .env(CHILD, &playlist)
        .env("PW_BENCH_LOOPS", loops.to_string());
    let ours = run(ours_cmd);
    // Our child prints `frames captured_bytes flows` (per loop). Gbit/s counts the captured
    // bytes: what either classifier actually reads (snap lengths cut some frames short).
    let counts: Vec<u64> = ours
        .stdout
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let (frames, bytes, flows) = match counts[..] {
        [f, b, n] => (f, b, n),
        _ => panic!("unexpected child output {:?}", ours.stdout),
    };
    println!("packets per loop: {frames}, captured bytes per loop: {bytes}, flows: {flows}");
    let total_pkts = frames as f64 * loops as f64;
    let total_bits = bytes as f64 * 8.0 * loops as f64;
    let line = |name: &str, m: &Measured| {
        println!(
            "{name:<22} wall {:>7.3} s  cpu {:>7.3} s  {:>8.3} Mpkt/s  {:>7.3} Gbit/s  maxrss {:>7} KiB",
            m.wall,
            m.cpu,
            total_pkts / m.wall / 1e6,
            total_bits / m.wall / 1e9,
            m.maxrss_kib
        );
    };
    line("peerwarden classify", &ours);
    let mut ndpi_cmd = Command::new("ndpiReader");
    ndpi_cmd
        .args(["-i"])
        .arg(&playlist)
        .args(["-q", "-t", "-l", &loops.to_string()]);
    match try_run(ndpi_cmd) {
        Some(n) => {
            line("ndpiReader", &n);
            println!(
                "ratio (peerwarden / ndpiReader): packets/s x{:.2} (wall), x{:.2} (cpu); peak memory x{:.2}",
                n.wall / ours.wall,
                n.cpu / ours.cpu,
                ours.maxrss_kib as f64 / n.maxrss_kib.max(1) as f64
            );
        }
        None => {
            println!("ndpiReader not found (apt-get install libndpi-bin): no baseline this run")
        }
    }
    let _ = std::fs::remove_file(&playlist);
}

/// The measured child: classify every capture of the playlist `loops` times.
fn child(playlist: &Path, loops: u32) {
    let list = std::fs::read_to_string(playlist).expect("playlist");
    let files: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    let (mut frames, mut bytes, mut flows) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    for i in 0..loops {
        for f in &files {
            let out = classify_capture_partial(Path::new(f), EngineConfig::default(), &[]);
            if i == 0 {
                frames += out.frames;
                bytes += out.captured_bytes;
                flows += out.flows.len() as u64;
            }
            std::hint::black_box(&out.flows);
        }
    }
    let _ = start.elapsed();
    println!("{frames} {bytes} {flows}");
}

struct Measured {
    wall: f64,
    cpu: f64,
    maxrss_kib: i64,
    stdout: String,
}

fn run(cmd: Command) -> Measured {
    try_run(cmd).expect("bench child runs")
}

/// Runs a child to completion; wall time, CPU time and peak RSS from wait4's rusage.
fn try_run(mut cmd: Command) -> Option<Measured> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into locals that outlive the call. The
    // `Child` is not waited on again (it would find no child; dropping it does not wait).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed().as_secs_f64();
    if rc != pid {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(Measured {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss,
        stdout,
    })
}
