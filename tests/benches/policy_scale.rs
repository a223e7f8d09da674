//! A policy for 100,000 subscribers, each with an IPv4 and an IPv6 prefix: how long it
//! takes to validate, compile and load into the kernel maps, and what it adds to the XDP
//! probe's per-packet cost, beside a bare `XDP_PASS` and the probe without a policy in the
//! same run (STYLE.md 9: ratios to a baseline, no timing assertion).
//!
//! Load: the YAML text is generated as one file (5 plans, one subscriber a line, each with
//! an IPv4 /32 and an IPv6 /64), then `peerwarden_policies::load_str` (parse and validate),
//! `peerwarden_policies::compile::compile` (map entries) and `Probe::install_policy` (fill
//! the idle map set, flip) are timed, the probe loaded with `max_subscribers: 131072` as the daemon's config
//! would size it, and their sum set against the goal of 1 s. The first install fills an
//! empty set; from the third on, the set still holds the policy of two installs ago, as on
//! every reload of a running gateway. Then `peerwarden policy check` on the same text as a
//! file, the whole command.
//!
//! Per packet, through `BPF_PROG_TEST_RUN` as in xdp_per_packet.rs: 50,000 BitTorrent flows
//! of 50,000 different subscribers (labelled by their handshake, so class p2p with a DSCP
//! rule, plus the plan's total), a 1514-byte frame of each run once per round, IPv4 and
//! IPv6; with the 100k policy, and in a second probe with the same flows and no policy
//! (generation 0: the probe returns before any policy lookup), rounds interleaved. The
//! first round after a swap also pays each flow's subscriber lookup (longest-prefix
//! match), once per flow and policy generation; it is shown apart.
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench policy_scale`.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use aya::programs::{TestRun as _, TestRunOptions};
use peerwarden::probe::{PROG_PASS, Probe, ProbeOptions};
use peerwarden_common::Direction;
use peerwarden_policies::{
    Weekday,
    compile::{SubscriberIndex, compile},
};
use peerwarden_tests::{
    lab::require_root,
    packets::{TcpFlags, Vlan, tcp_frame},
    payloads::{INFO_HASH, PEER_ID, peer_wire_handshake, peer_wire_message},
    xdp::program_for,
};

/// Subscribers in the policy.
const SUBSCRIBERS: u32 = 100_000;
/// What the daemon's `max_subscribers` would be for them.
const MAX_SUBSCRIBERS: u32 = 131_072;
/// Flows (one per subscriber) in the per-packet cases, per address family.
const FLOWS: u32 = 50_000;
/// Rounds per case; the median is reported.
const ROUNDS: usize = 7;
/// Policy loads timed.
const LOADS: usize = 5;
const XDP_PASS: u32 = 2;
const MTU_FRAME: usize = 1514;

/// The policy's text: five plans with class rules, `SUBSCRIBERS` subscribers.
fn policy_yaml(subscribers: std::ops::Range<u32>) -> String {
    let mut y = String::with_capacity(12 << 20);
    y.push_str("timezone: UTC\nplans:\n");
    for (i, down) in [50, 100, 200, 500, 1000].iter().enumerate() {
        let _ = write!(
            y,
            "  plan-{i}:\n    rate: {{ down: 10gbit, up: 10gbit }}\n    classes:\n      \
             p2p: {{ dscp: LE }}\n      video: {{ down: {down}mbit, dscp: AF41 }}\n      \
             bittorrent.dht: {{ action: block }}\n    schedule:\n      \
             - {{ days: [mon-fri], hours: \"18:00-23:00\", classes: {{ video: {{ down: 25mbit }} }} }}\n"
        );
    }
    y.push_str("default_plan: plan-0\nsubscribers:\n");
    for i in subscribers {
        let (v4, v6) = (sub_v4(i), sub_v6(i));
        let _ = writeln!(
            y,
            "  - {{ id: s{i}, prefixes: [{v4}/32, \"{v6}/64\"], plan: plan-{} }}",
            i % 5
        );
    }
    y
}

/// Subscriber `i`'s IPv4 address: 100.64.0.1 onwards.
fn sub_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i)
}

/// Subscriber `i`'s IPv6 /64: 2001:db8:<i / 65536>:<i % 65536>::.
fn sub_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        (i >> 16) as u16,
        (i & 0xffff) as u16,
        0,
        0,
        0,
        0,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `prog` once on each frame; mean ns per run as the kernel measures it.
fn once_each(probe: &mut Probe, prog: &'static str, frames: &[Vec<u8>]) -> f64 {
    let p = probe.program(prog).expect("program");
    let mut total = 0u128;
    for f in frames {
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(f),
                ..TestRunOptions::new()
            })
            .expect("test_run");
        assert_eq!(r.return_value, XDP_PASS, "{prog}");
        total += r.duration.as_nanos();
    }
    total as f64 / frames.len() as f64
}

/// Flow `i`'s ends in `v6` or IPv4: subscriber `i * 2` (every other one, across the whole
/// table) and a remote host.
fn ends(i: u32, v6: bool) -> (SocketAddr, SocketAddr) {
    let sub = i * 2;
    let port = 20_000 + (i % 40_000) as u16;
    if v6 {
        let mut seg = sub_v6(sub).segments();
        seg[7] = 0x10;
        (
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(seg)), port),
            "[2001:db8:ff::7]:6881".parse().expect("addr"),
        )
    } else {
        (
            SocketAddr::new(IpAddr::V4(sub_v4(sub)), port),
            "198.51.100.7:6881".parse().expect("addr"),
        )
    }
}

/// Labels each flow with a handshake going up; returns a full-size piece frame per flow
/// going down.
fn flows(probe: &mut Probe, v6: bool) -> Vec<Vec<u8>> {
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let up = program_for(Direction::Up);
    let mut frames = Vec::new();
    for i in 0..FLOWS {
        let (sub, remote) = ends(i, v6);
        let f = tcp_frame(
            Vlan::Untagged,
            sub,
            remote,
            TcpFlags::PSH | TcpFlags::ACK,
            &hs,
        );
        let p = probe.program(up).expect("program");
        p.test_run(TestRunOptions {
            data_in: Some(&f),
            ..TestRunOptions::new()
        })
        .expect("handshake");
        let header = 14 + if v6 { 40 } else { 20 } + 20 + 5;
        let piece = peer_wire_message(7, &vec![0xab; MTU_FRAME - header]);
        frames.push(tcp_frame(
            Vlan::Untagged,
            remote,
            sub,
            TcpFlags::ACK,
            &piece,
        ));
    }
    frames
}

fn main() {
    require_root();
    let t = Instant::now();
    let yaml = policy_yaml(0..SUBSCRIBERS);
    println!(
        "policy: {SUBSCRIBERS} subscribers, {} IPv4 + {} IPv6 prefixes, 5 plans, {:.1} MB of YAML (generated in {:.0} ms)",
        SUBSCRIBERS,
        SUBSCRIBERS,
        yaml.len() as f64 / 1e6,
        ms(t.elapsed())
    );
    let mut probe = Probe::load_with(ProbeOptions {
        flow_table_size: 1 << 18,
        max_subscribers: MAX_SUBSCRIBERS,
    })
    .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"));

    // A second probe with the same flows that never gets a policy (generation 0: the
    // probe returns before any policy lookup): the rounds of the three programs are
    // interleaved, so the machine's load moves them together.
    let mut bare_probe = Probe::load_with(ProbeOptions {
        flow_table_size: 1 << 18,
        max_subscribers: MAX_SUBSCRIBERS,
    })
    .unwrap_or_else(|e| panic!("loading the probe: {e} ({e:?})"));
    let down = program_for(Direction::Down);
    let mut cases = Vec::new();
    for v6 in [false, true] {
        let frames = flows(&mut probe, v6);
        assert_eq!(flows(&mut bare_probe, v6), frames);
        cases.push((v6, frames));
    }

    // The whole policy in one file, as an operator would write it.
    let (mut validate, mut compiled, mut install) = (Vec::new(), Vec::new(), Vec::new());
    let mut index = SubscriberIndex::default();
    let options = probe.compile_options();
    for _ in 0..LOADS {
        let t = Instant::now();
        let policy = peerwarden_policies::load_str(&yaml, "bench.yaml")
            .unwrap_or_else(|e| panic!("the {SUBSCRIBERS}-subscriber file is refused: {e}"));
        validate.push(t.elapsed());
        let t = Instant::now();
        // Monday noon: off-peak, the schedule is evaluated but not in force.
        let c = compile(&policy, Weekday::Mon, 12 * 60, &mut index, &options).expect("compiles");
        compiled.push(t.elapsed());
        assert_eq!(
            (c.v4.len(), c.v6.len()),
            (SUBSCRIBERS as usize, SUBSCRIBERS as usize)
        );
        let t = Instant::now();
        probe.install_policy(&c).expect("install_policy");
        install.push(t.elapsed());
        // The old policy is dropped outside the timed steps, as the daemon drops it
        // after the swap.
        drop((policy, c));
    }
    println!(
        "\nload of one {SUBSCRIBERS}-subscriber file, ms (run 1 fills an empty set; from run 3 each install overwrites its set's old entries)"
    );
    println!("| step | run 1 | run 2 | median of runs 3-{LOADS} |");
    println!("| --- | --- | --- | --- |");
    let steady = |v: &[Duration]| median(v[2..].iter().map(|d| ms(*d)).collect());
    for (name, v) in [
        ("validate (parse + check)", &validate),
        ("compile", &compiled),
        ("install_policy", &install),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            ms(v[0]),
            ms(v[1]),
            steady(v)
        );
    }
    let total: Vec<Duration> = (0..LOADS)
        .map(|i| validate[i] + compiled[i] + install[i])
        .collect();
    println!(
        "| **total** | {:.0} | {:.0} | {:.0} |",
        ms(total[0]),
        ms(total[1]),
        steady(&total)
    );
    let worst = total.iter().max().copied().unwrap_or_default();
    println!(
        "goal: validate + compile + install under 1000 ms: {} (median of runs 3-{LOADS} {:.0} ms, slowest run {:.0} ms)",
        if steady(&total) < 1000.0 {
            "met"
        } else {
            "NOT met"
        },
        steady(&total),
        ms(worst)
    );
    policy_check(&yaml);

    for (v6, frames) in &cases {
        let first = once_each(&mut probe, down, frames);
        let (mut pass, mut bare, mut with) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            pass.push(once_each(&mut probe, PROG_PASS, frames));
            bare.push(once_each(&mut bare_probe, down, frames));
            with.push(once_each(&mut probe, down, frames));
        }
        print_row(*v6, median(pass), median(bare), first, median(with));
    }
}

/// `peerwarden policy check` on the policy as a file: the whole command (start, read,
/// validate, print), as an operator runs it.
fn policy_check(yaml: &str) {
    let dir = std::env::temp_dir().join(format!("policy_scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, yaml).expect("write policy");
    let bin = peerwarden_tests::lab::peerwarden_bin();
    let mut runs = Vec::new();
    let mut said = String::new();
    for _ in 0..LOADS {
        let t = Instant::now();
        let out = std::process::Command::new(bin)
            .args(["policy", "check"])
            .arg(&file)
            .output()
            .expect("running peerwarden policy check");
        runs.push(ms(t.elapsed()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n`peerwarden policy check` on the file: median {:.0} ms of {LOADS} runs ({})",
        median(runs),
        said.rsplit(": ").next().unwrap_or_default()
    );
}

fn print_row(v6: bool, pass: f64, bare: f64, first: f64, policy: f64) {
    if !v6 {
        println!(
            "\nper packet, ns (BPF_PROG_TEST_RUN, each frame once per round, median of {ROUNDS} rounds)"
        );
        println!(
            "| case | XDP_PASS | probe, no policy | probe, 100k policy | ratio to XDP_PASS | policy adds | first round after the swap |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
    }
    let family = if v6 { "IPv6" } else { "IPv4" };
    println!(
        "| {FLOWS} flows of {FLOWS} subscribers, {family} | {pass:.0} | {bare:.0} | {policy:.0} | {:.2}x (no policy {:.2}x) | {:.0} | {first:.0} |",
        policy / pass,
        bare / pass,
        policy - bare,
    );
}
