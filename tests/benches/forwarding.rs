//! Forwarding throughput of the lab gateway: bare, with an `XDP_PASS` program on both
//! interfaces, and with peerwarden running a 100,000-subscriber policy, in the same run
//! (goal: peerwarden at least 0.95 of the bare gateway).
//!
//! The lab of `peerwarden lab up --no-daemon` (prefix `ps`, its own namespaces, lab
//! addresses only): iperf3 from alice (100.64.1.10) through the switch namespace and the
//! gateway namespace to an iperf3 server on the internet side (198.51.100.7), TCP, 4
//! streams and 1 stream, upload and download (`-R`), `SECONDS` each. Three cases:
//!
//! 1. bare: nothing attached to the gateway's interfaces;
//! 2. `XDP_PASS`: the probe's pass-only program attached (native mode) to `downlink` and
//!    `uplink` by this benchmark, to separate the cost of having any XDP program on a veth;
//! 3. peerwarden: `peerwarden run` with its probe (XDP on both interfaces, TC egress) and a
//!    policy of 100,000 generated subscribers (IPv4 /32 + IPv6 /64 each) plus the lab's
//!    alice and bob, on a plan with generous rates (a 16 gbit plan total, policed: the
//!    token bucket is consulted on every packet; the kernel's bucket arithmetic takes rates
//!    below 2^31 bytes/s), and class rules (p2p marked, video policed); alice's traffic is
//!    matched and counted, and her policy drops printed (checked through the API after
//!    each round).
//!
//! The cases are interleaved and rotated, `REPEATS` rounds; medians and the ratios
//! peerwarden / bare and peerwarden / XDP_PASS are printed. On veth, any XDP program in
//! native mode changes the receive path (frames go through the veth's NAPI and XDP instead
//! of being handed over as whole GSO/GRO skbs), so case 2 against case 1 is the price of XDP
//! on veth itself, not of peerwarden's program.
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench forwarding` (about 7 minutes).
//! The machine's load moves every figure; compare cases within one run only.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use peerwarden::probe::{PROG_PASS, Probe, ProbeOptions};
use peerwarden_tests::{
    daemon_load::{big_policy_daemon_config, cpu_use, thread_cpu},
    lab::{
        Daemon, Lab, TempDir, attachments, require_root, run_bounded, wait_listening, xdp_attached,
    },
};

const PREFIX: &str = "ps";
const API_PORT: u16 = 9611;
/// Seconds per iperf3 run.
const SECONDS: u32 = 10;
/// Rounds of every case.
const REPEATS: usize = 3;
/// Generated subscribers besides alice and bob.
const SUBSCRIBERS: u32 = 100_000;
const SERVER: &str = "198.51.100.7";
const IPERF_PORT: u16 = 5201;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    Bare,
    XdpPass,
    Peerwarden,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Bare => "bare gateway",
            Case::XdpPass => "XDP_PASS on both",
            Case::Peerwarden => "peerwarden, 100k policy",
        }
    }
}

/// The probe's `XDP_PASS` program on the gateway's two interfaces, held by a thread that
/// entered the gateway's namespace; detached when dropped.
struct PassAttached {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PassAttached {
    fn attach(netns: &str) -> PassAttached {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let netns = netns.to_string();
        let thread = thread::spawn(move || {
            let attached = (|| -> Result<Probe, String> {
                peerwarden::daemon::preflight::enter_netns(&netns).map_err(|e| format!("{e:#}"))?;
                let mut probe = Probe::load_with(ProbeOptions {
                    flow_table_size: 1024,
                    max_subscribers: 16,
                })
                .map_err(|e| e.to_string())?;
                for iface in ["downlink", "uplink"] {
                    let a = probe
                        .attach(PROG_PASS, iface)
                        .map_err(|e| format!("{iface}: {e}"))?;
                    if a.mode != "native" {
                        return Err(format!("{iface}: XDP mode {}", a.mode));
                    }
                }
                Ok(probe)
            })();
            match attached {
                Ok(probe) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.recv();
                    // Dropping the probe detaches and unloads it.
                    drop(probe);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        let mut me = PassAttached {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => me,
            Ok(Err(e)) => panic!("attaching XDP_PASS: {e}"),
            Err(e) => {
                me.stop = None;
                panic!("attaching XDP_PASS: no answer ({e})")
            }
        }
    }
}

impl Drop for PassAttached {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The iperf3 server on the internet side; killed (by its pid) when dropped.
struct Server(Child);

impl Server {
    fn start(netns: &str) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "iperf3", "-s", "-B", SERVER])
            .args(["-p", &IPERF_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting iperf3 -s");
        let server = Server(child);
        wait_listening(netns, IPERF_PORT);
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One iperf3 run from alice: Gbit/s received, with `streams` streams, download if
/// `reverse`.
fn iperf(lab: &Lab, streams: u32, reverse: bool) -> f64 {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &lab.netns("alice"),
        "iperf3",
        "-J",
        "-c",
        SERVER,
    ])
    .args(["-p", &IPERF_PORT.to_string()])
    .args(["-t", &SECONDS.to_string(), "-P", &streams.to_string()]);
    if reverse {
        cmd.arg("-R");
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(u64::from(SECONDS) + 30));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let bps = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 gave no result: {json}"));
    bps / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What a case leaves running while iperf3 measures.
enum Running {
    Nothing,
    Pass(PassAttached),
    Daemon(Daemon),
}

fn set_up(case: Case, lab: &Lab, config: &Path, log: &Path) -> Running {
    let gw = lab.netns("gw");
    assert_eq!(xdp_attached(&gw), 0, "something is still attached in {gw}");
    let running = match case {
        Case::Bare => Running::Nothing,
        Case::XdpPass => Running::Pass(PassAttached::attach(&gw)),
        Case::Peerwarden => Running::Daemon(Daemon::start(config, log, lab.api_addr())),
    };
    let want = if case == Case::Bare { 0 } else { 2 };
    assert_eq!(xdp_attached(&gw), want, "XDP programs in {gw} for {case:?}");
    running
}

/// alice's usage as the daemon reports it (bytes up and down), which must have grown by
/// the traffic of the round.
fn alice_bytes(lab: &Lab) -> [u64; 3] {
    let v = lab.api("/api/v1/subscribers/alice");
    assert_eq!(v["in_policy"], true, "{v}");
    let classes = v["usage"]["classes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let sum = |key: &str, dir: usize| -> u64 {
        classes
            .values()
            .map(|c| c[key][dir].as_u64().unwrap_or(0))
            .sum()
    };
    [
        sum("bytes", 0),
        sum("bytes", 1),
        sum("dropped_packets", 0) + sum("dropped_packets", 1),
    ]
}

/// `bpftool -j ARGS`, as JSON.
fn bpftool(args: &[&str]) -> serde_json::Value {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool");
    assert!(
        out.status.success(),
        "bpftool {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bpftool JSON")
}

/// Packets the probe attached in `gw` has seen, per CPU: its per-CPU `STATS` map, slot 0
/// (found through the XDP program attached there).
fn packets_per_cpu(gw: &str) -> Vec<u64> {
    let (_, net) = attachments(gw);
    let prog = net
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["xdp"].as_array().cloned().unwrap_or_default())
        .find_map(|x| x["id"].as_u64())
        .expect("an XDP program in the gateway");
    let maps = bpftool(&["prog", "show", "id", &prog.to_string()]);
    let stats = maps["map_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_u64)
        .find(|id| bpftool(&["map", "show", "id", &id.to_string()])["name"] == "STATS")
        .expect("the probe's STATS map");
    let dump = bpftool(&["map", "dump", "id", &stats.to_string()]);
    let slot0 = dump
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["key"]
                .as_array()
                .is_some_and(|k| k.iter().all(|b| b == "0x00"))
        })
        .expect("slot 0");
    // Each CPU's value as eight little-endian bytes in hex.
    slot0["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            v["value"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .filter_map(|b| b.as_str())
                .filter_map(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16).ok())
                .fold(0u64, |acc, b| (acc << 8) | b)
        })
        .collect()
}

fn main() {
    require_root();
    let dir = TempDir::new("forwarding");
    let lab = Lab::up(PREFIX, API_PORT, &["--no-daemon", "--no-policy"]);
    let config = big_policy_daemon_config(&lab, &dir.0, SUBSCRIBERS, 65_536, "");
    let log = dir.0.join("daemon.log");
    let _server = Server::start(&lab.netns("net"));

    let runs = [(4u32, false), (4, true), (1, false), (1, true)];
    let cases = [Case::Bare, Case::XdpPass, Case::Peerwarden];
    let mut results: BTreeMap<(u32, bool, Case), Vec<f64>> = BTreeMap::new();
    let mut per_cpu = Vec::new();
    let mut daemon_cpu = Vec::new();
    let ncpus = thread::available_parallelism().map_or(1, |n| n.get());
    for round in 0..REPEATS {
        for k in 0..cases.len() {
            // Rotated, so no case always follows the same one.
            let case = cases[(k + round) % cases.len()];
            let mut running = set_up(case, &lab, &config, &log);
            let before = matches!(running, Running::Daemon(_)).then(|| alice_bytes(&lab));
            let pid = match &mut running {
                Running::Daemon(d) => Some(d.pid()),
                _ => None,
            };
            let cpu0 = (Instant::now(), pid.map(thread_cpu).unwrap_or_default());
            for &(streams, reverse) in &runs {
                let gbps = iperf(&lab, streams, reverse);
                eprintln!(
                    "round {round}: {:<24} -P {streams} {:<8} {gbps:6.2} Gbit/s",
                    case.name(),
                    if reverse { "download" } else { "upload" }
                );
                results
                    .entry((streams, reverse, case))
                    .or_default()
                    .push(gbps);
            }
            if let Some(pid) = pid {
                let (total, threads) = cpu_use(&cpu0.1, &thread_cpu(pid), cpu0.0.elapsed());
                eprintln!(
                    "round {round}: daemon CPU during the iperf3 runs: {:.1}% of one core ({:.1}% of {} cores): {threads}",
                    total * 100.0,
                    total * 100.0 / ncpus as f64,
                    ncpus
                );
                daemon_cpu.push(total);
            }
            match running {
                Running::Daemon(d) => {
                    // The daemon reads the kernel's counters every second.
                    thread::sleep(Duration::from_secs(2));
                    let [up0, down0, drops0] = before.unwrap_or_default();
                    let [up1, down1, drops1] = alice_bytes(&lab);
                    eprintln!(
                        "round {round}: alice counted {:.1} GB up, {:.1} GB down by peerwarden, {} packets dropped by the policy",
                        (up1 - up0) as f64 / 1e9,
                        (down1 - down0) as f64 / 1e9,
                        drops1 - drops0
                    );
                    assert!(
                        up1 > up0 && down1 > down0,
                        "alice's traffic was not counted: {up0}/{down0} -> {up1}/{down1}"
                    );
                    let cpus = packets_per_cpu(&lab.netns("gw"));
                    let total: u64 = cpus.iter().sum();
                    eprintln!(
                        "round {round}: packets through the probe per CPU: {}",
                        cpus.iter()
                            .map(|n| format!(
                                "{n} ({:.0}%)",
                                *n as f64 * 100.0 / total.max(1) as f64
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    per_cpu.push(cpus);
                    let status = d.terminate(Duration::from_secs(30));
                    assert!(status.success(), "daemon exit: {status}");
                }
                Running::Pass(p) => drop(p),
                Running::Nothing => {}
            }
        }
    }

    println!(
        "\nforwarding through the lab gateway, Gbit/s, median of {REPEATS} rounds of {SECONDS} s (iperf3 TCP, IPv4, alice <-> {SERVER})"
    );
    println!(
        "| run | bare | XDP_PASS | peerwarden, 100k policy | peerwarden / bare | peerwarden / XDP_PASS | XDP_PASS / bare |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &(streams, reverse) in &runs {
        let m = |c: Case| median(results[&(streams, reverse, c)].clone());
        let (bare, pass, pw) = (m(Case::Bare), m(Case::XdpPass), m(Case::Peerwarden));
        println!(
            "| -P {streams} {} | {bare:.2} | {pass:.2} | {pw:.2} | {:.3} | {:.3} | {:.3} |",
            if reverse { "download" } else { "upload" },
            pw / bare,
            pw / pass,
            pass / bare
        );
    }
    println!(
        "\ndaemon CPU during the iperf3 runs, each round: {} of one core (machine: {ncpus} cores)",
        daemon_cpu
            .iter()
            .map(|c| format!("{:.1}%", c * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\npackets through peerwarden's probe per CPU, each round: {per_cpu:?} (its per-CPU STATS map)"
    );
    println!("\nevery round (Gbit/s):");
    for ((streams, reverse, case), v) in &results {
        println!(
            "  -P {streams} {:<8} {:<24} {}",
            if *reverse { "download" } else { "upload" },
            case.name(),
            v.iter()
                .map(|g| format!("{g:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
