//! The daemon's CPU in steady state with a full flow table and many active subscribers
//! (issue 16's goal: at most 10% of one core at 1,048,576 flows and 100,000 active
//! subscribers), per thread, so the pass that costs most is named.
//!
//! The lab of `peerwarden lab up --no-daemon` (prefix `dk`, its own namespaces, lab
//! addresses only, removed at the end) and `peerwarden run` on its gateway with the
//! 1,048,576-entry flow table, the 100,000-subscriber policy of the forwarding bench, the
//! history store, and IPFIX export to `nfcapd` in the lab's internet namespace. The flows
//! are not sent over the wire (a veth does not carry a million new flows a second here):
//! the bench runs the daemon's own loaded XDP program (`xdp_downlink`, opened by its id)
//! through `BPF_PROG_TEST_RUN` on UDP frames from the generated subscribers' addresses,
//! which fills the daemon's own maps as packets would (each a BitTorrent DHT query, labelled
//! at once and final: a settled table, no flow still sending payload samples to the deep
//! tier). First `FLOWS` flows (flow `i` from
//! subscriber `i % SUBSCRIBERS`), then, for the rest of the run, one packet a second for
//! each subscriber (a tenth of the flows each second, every flow every 10 s): every
//! subscriber's counters move every second, no flow goes idle. After `WARM_UP` the daemon's
//! CPU time (all threads, /proc/PID/task/*/stat) is read over `WINDOW`, and printed as % of
//! one core against the goal, with every thread's share.
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench daemon_cpu` (about 3 minutes, most
//! of it the daemon installing the policy). The injecting thread runs the probe in this
//! process, not in the daemon's: what is printed is the daemon's own work.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use peerwarden_tests::{
    daemon_load::{FIRST_GENERATED, ProgById, big_policy_daemon_config, cpu_use, thread_cpu},
    lab::{Daemon, Lab, Procs, TempDir, attachments, require_root, spawn_in},
    packets::{Vlan, udp_frame},
    payloads::dht_ping_query,
    xdp::XDP_PASS,
};

const PREFIX: &str = "dk";
const API_PORT: u16 = 9617;
const TABLE: u32 = 1_048_576;
/// Flows put in the table (of `TABLE` entries: the LRU map evicts before it is quite full).
const FLOWS: u64 = 1_000_000;
const SUBSCRIBERS: u32 = 100_000;
const WARM_UP: Duration = Duration::from_secs(20);
const WINDOW: Duration = Duration::from_secs(60);
const GOAL: f64 = 0.10;
const COLLECTOR: &str = "198.51.100.2";
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);

/// Offsets in an untagged IPv4 UDP frame: source address, source port.
const SRC_ADDR: usize = 14 + 12;
const SRC_PORT: usize = 14 + 20;

/// Flow `i`'s frame, up from subscriber `i % SUBSCRIBERS`, source port 1024 + the flow's
/// rank among that subscriber's flows (checksums left stale: the probe does not check
/// them).
fn flow_frame(template: &mut [u8], i: u64) -> &[u8] {
    let sub = (i % u64::from(SUBSCRIBERS)) as u32;
    let port = 1024 + (i / u64::from(SUBSCRIBERS)) as u16;
    let addr = u32::from(FIRST_GENERATED) + sub;
    template[SRC_ADDR..SRC_ADDR + 4].copy_from_slice(&addr.to_be_bytes());
    template[SRC_PORT..SRC_PORT + 2].copy_from_slice(&port.to_be_bytes());
    template
}

/// The id of the XDP program attached to `dev` in namespace `ns`.
fn xdp_prog_id(ns: &str, dev: &str) -> u32 {
    let (_, net) = attachments(ns);
    net.as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["xdp"].as_array().cloned().unwrap_or_default())
        .find(|x| x["devname"] == dev)
        .and_then(|x| x["id"].as_u64())
        .unwrap_or_else(|| panic!("no XDP program on {dev} in {ns}: {net}")) as u32
}

fn main() {
    require_root();
    let dir = TempDir::new("daemon-cpu");
    let lab = Lab::up(PREFIX, API_PORT, &["--no-daemon", "--no-policy"]);
    let store = dir.0.join("nfcapd");
    std::fs::create_dir_all(&store).expect("nfcapd dir");
    let _collector = Procs(vec![(
        "nfcapd".into(),
        spawn_in(
            &lab.netns("net"),
            &[
                "nfcapd",
                "-b",
                COLLECTOR,
                "-p",
                "4739",
                "-w",
                &store.to_string_lossy(),
                "-t",
                "3600",
            ],
            &dir.0.join("nfcapd.log"),
        ),
    )]);
    let config = big_policy_daemon_config(
        &lab,
        &dir.0,
        SUBSCRIBERS,
        TABLE,
        &format!("ipfix: {{ collector: \"{COLLECTOR}:4739\" }}\n"),
    );
    let log = dir.0.join("daemon.log");
    let started = Instant::now();
    let mut daemon = Daemon::start_within(&config, &log, lab.api_addr(), Duration::from_secs(300));
    let pid = daemon.pid();
    println!(
        "daemon healthy after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let prog = ProgById::open(xdp_prog_id(&lab.netns("gw"), "downlink"))
        .expect("opening the daemon's xdp_downlink");
    let src: SocketAddr = (FIRST_GENERATED, 1024).into();
    // A DHT query: labelled at its flow's first packet, final, so the flows are settled
    // (no more payload samples to the deep tier) as most of a real table's flows are.
    let query = dht_ping_query(&[7; 20]);
    let mut template = udp_frame(Vlan::Untagged, src, (SERVER, 6881).into(), &query);

    let fill = Instant::now();
    for i in 0..FLOWS {
        let rc = prog.run(flow_frame(&mut template, i)).expect("test run");
        assert_eq!(rc, XDP_PASS, "flow {i}");
    }
    println!(
        "{FLOWS} flows of {SUBSCRIBERS} subscribers put in the daemon's table in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    // One packet a second for each subscriber, a tenth of the flows each second.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let keep = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let second = Instant::now();
                for _ in 0..SUBSCRIBERS {
                    prog.run(flow_frame(&mut template, next)).expect("test run");
                    next = (next + 1) % FLOWS;
                }
                sent.fetch_add(u64::from(SUBSCRIBERS), Ordering::Relaxed);
                if let Some(rest) = Duration::from_secs(1).checked_sub(second.elapsed()) {
                    thread::sleep(rest);
                }
            }
        })
    };
    thread::sleep(WARM_UP);
    let status = lab.api("/api/v1/status");
    println!("flow table after the warm-up: {}", status["maps"]["flows"]);
    let (sent0, cpu0, at0) = (
        sent.load(Ordering::Relaxed),
        thread_cpu(pid),
        Instant::now(),
    );
    thread::sleep(WINDOW);
    let (total, threads) = cpu_use(&cpu0, &thread_cpu(pid), at0.elapsed());
    let packets = sent.load(Ordering::Relaxed) - sent0;
    stop.store(true, Ordering::Relaxed);
    keep.join().expect("the injecting thread");
    let status = lab.api("/api/v1/status");
    let sample = lab.api("/api/v1/subscribers/s54321");
    println!(
        "flow table at the end: {}; subscriber s54321's p2p usage: {}",
        status["maps"]["flows"], sample["usage"]["classes"]["p2p"]
    );
    println!(
        "\ndaemon CPU over {} s, steady state, {FLOWS} flows: {} packets a second injected, one \
         for each of the {SUBSCRIBERS} subscribers in turn (each active every {:.1} s)",
        WINDOW.as_secs(),
        packets / WINDOW.as_secs(),
        WINDOW.as_secs_f64() * f64::from(SUBSCRIBERS) / packets.max(1) as f64
    );
    println!(
        "  {:.1}% of one core (goal: at most {:.0}%: {})",
        total * 100.0,
        GOAL * 100.0,
        if total <= GOAL { "met" } else { "NOT met" }
    );
    println!("  threads: {threads}");
    let status = daemon.terminate(Duration::from_secs(60));
    assert!(status.success(), "daemon exit: {status}");
}
