//! Shaped throughput on one transmit queue against two (issue 16 item 4), in the same run.
//!
//! Two labs of `peerwarden lab up --no-daemon` (prefixes `sq1` and `sq2`, their own
//! namespaces, lab addresses only), the same but for the gateway's veths: one queue each
//! way in `sq1` (shaping gets one HTB root `1:`, today's layout) and two in `sq2` (an `mq`
//! root with HTB `1:` and `2:`, and the XDP probe redirecting each shaped subscriber's
//! packets through the cpumap to its queue's CPU). In each, `peerwarden run` with a policy
//! shaping alice (index 0: queue 0) and bob (index 1: queue 1 on two queues) down at
//! [`RATE`] each, far above what the machine forwards, so every packet goes through HTB
//! but the rate never limits: what is measured is the cost of the queueing. Both download
//! at once (iperf3 `-R`, [`STREAMS`] streams each, [`SECONDS`] s) from servers on the
//! internet side; the sum of their received rates is the case's throughput.
//!
//! The cases alternate, [`REPEATS`] rounds; medians and the ratio two queues / one queue
//! are printed, with each HTB's bytes sent (both must carry traffic on two queues).
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench shaping_queues` (about 3 minutes).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use peerwarden_tests::{
    lab::{Daemon, Lab, TempDir},
    shaping::{IperfServers, gateway_tc, tc_sent, write_daemon_config},
};

const SERVER: &str = "203.0.113.10";
/// The shaped rate of each subscriber: above the lab's forwarding rate.
const RATE: &str = "4gbit";
const SECONDS: u32 = 10;
const STREAMS: u32 = 2;
const REPEATS: usize = 3;
const PORTS: [u16; 2] = [5401, 5402];

fn policy() -> String {
    format!(
        "timezone: UTC\n\
         plans:\n\
         \x20 lab: {{ rate: {{ down: 10gbit, up: 10gbit }}, classes: {{ other: {{ down: {RATE}, action: shape }} }} }}\n\
         default_plan: lab\n\
         subscribers:\n\
         \x20 - {{ id: alice, prefixes: [100.64.1.10/32], plan: lab }}\n\
         \x20 - {{ id: bob, prefixes: [100.64.1.20/32], plan: lab }}\n"
    )
}

/// One lab with its daemon and iperf3 servers (killed by pid when dropped).
struct Case {
    name: &'static str,
    _servers: IperfServers,
    daemon: Option<Daemon>,
    _dir: TempDir,
    lab: Lab,
}

impl Case {
    fn up(name: &'static str, prefix: &str, port: u16, queues: u32) -> Case {
        let q = queues.to_string();
        let lab = Lab::up(
            prefix,
            port,
            &["--no-daemon", "--no-policy", "--gateway-queues", &q],
        );
        let dir = TempDir::new(&format!("shaping-bench-{queues}"));
        let config = write_daemon_config(&lab, &dir.0, &policy(), 1024);
        let daemon = Daemon::start(&config, &dir.0.join("daemon.log"), lab.api_addr());
        let servers = IperfServers::start(&lab.netns("net"), SERVER, &PORTS);
        Case {
            name,
            _servers: servers,
            daemon: Some(daemon),
            _dir: dir,
            lab,
        }
    }

    /// Alice and bob download at once; Gbit/s received, summed.
    fn round(&self) -> f64 {
        let clients: Vec<Child> = ["alice", "bob"]
            .iter()
            .zip(PORTS)
            .map(|(who, port)| {
                Command::new("ip")
                    .args(["netns", "exec", &self.lab.netns(who), "iperf3", "-J", "-R"])
                    .args(["-c", SERVER, "-p", &port.to_string()])
                    .args(["-t", &SECONDS.to_string(), "-P", &STREAMS.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("starting iperf3 -c")
            })
            .collect();
        clients
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().expect("iperf3 -c");
                let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("{}: iperf3 -J: {e}", self.name));
                json["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{}: iperf3 gave no result: {json}", self.name))
                    / 1e9
            })
            .sum()
    }

    /// `tc -s qdisc show dev downlink` in the gateway.
    fn qdiscs(&self) -> String {
        gateway_tc(&self.lab, "qdisc", "downlink")
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.terminate(Duration::from_secs(30));
        }
    }
}

/// Bytes sent by HTB `major:` in `tc -s qdisc` output.
fn htb_sent(qdiscs: &str, major: u32) -> u64 {
    tc_sent(qdiscs, &format!("qdisc htb {major:x}:")).unwrap_or(0)
}

/// CPU seconds the kernel's cpumap threads (`cpumap/<cpu>/map:<id>`) have used: they
/// build and forward the redirected frames, so they grow only when the XDP side steers.
fn cpumap_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(cpumap/"))
        .filter_map(|stat| {
            // Fields after the command's closing parenthesis: utime and stime are the
            // 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / hz)
        })
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let one = Case::up("one queue (HTB 1:)", "sq1", 9631, 1);
    let two = Case::up("two queues (mq, HTB per queue, cpumap)", "sq2", 9632, 2);
    let mut results: [Vec<f64>; 2] = Default::default();
    for r in 0..REPEATS {
        // Rotate which case goes first.
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let case = [&one, &two][i];
            let cpumap = cpumap_cpu_seconds();
            let g = case.round();
            println!(
                "round {r}: {}: {g:.3} Gbit/s (cpumap threads: {:.2} s of CPU)",
                case.name,
                cpumap_cpu_seconds() - cpumap
            );
            results[i].push(g);
        }
    }
    for case in [&one, &two] {
        let q = case.qdiscs();
        println!(
            "{}: HTB 1: sent {} bytes, HTB 2: sent {} bytes",
            case.name,
            htb_sent(&q, 1),
            htb_sent(&q, 2)
        );
    }
    let [a, b] = results.map(median);
    println!(
        "median Gbit/s (alice + bob, {STREAMS} streams each, {SECONDS} s, shaped at {RATE} each): \
         one queue {a:.3}, two queues {b:.3}; two / one = {:.2}",
        b / a
    );
}
