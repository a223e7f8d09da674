//! New flows per second through the XDP probe under a flood, beside a bare `XDP_PASS`
//! program run on the same frames in the same run (a ratio, never a timed assertion), and
//! what a flood does to labelled flows that are idle meanwhile (docs/reliability.md).
//!
//! Through `BPF_PROG_TEST_RUN`, one frame per call, each a 5-tuple never seen before
//! (tests/src/flood.rs), into a 65,536-entry flow table that is already full: every packet
//! creates an entry and makes the LRU map evict one. Two figures per case: the kernel's own
//! time per run (the program alone), and the wall-clock rate of the calls (the program plus
//! a syscall and the test-run set-up per frame, which a NIC does not pay).
//!
//! Run as root: `cargo bench -p peerwarden-tests --bench flow_flood`.

use std::time::{Duration, Instant};

use peerwarden::probe::PROG_PASS;
use peerwarden_common::{Direction, Label, flow::PROTO_TCP};
use peerwarden_tests::{
    flood::{FloodFrames, flow_map_info},
    packets::{Conversation, Family, TcpFlags},
    payloads::{INFO_HASH, PEER_ID, peer_wire_handshake},
    xdp::{TestProbe, XDP_PASS, program_for},
};

const TABLE: u32 = 65_536;
/// New flows per measured round.
const ROUND: u64 = 200_000;
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `prog` once on each of `n` new-flow frames from `next`; returns the kernel's mean ns
/// per run and the wall-clock calls per second.
fn flood(
    probe: &mut TestProbe,
    prog: &'static str,
    frames: &mut FloodFrames,
    next: &mut u64,
    n: u64,
) -> (f64, f64) {
    let mut kernel = Duration::ZERO;
    let start = Instant::now();
    for _ in 0..n {
        let r = probe.run_repeat(prog, frames.up(*next), 1);
        assert_eq!(r.return_value, XDP_PASS);
        kernel += r.duration;
        *next += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    (kernel.as_nanos() as f64 / n as f64, n as f64 / wall)
}

/// Labels `n` BitTorrent flows (alice's, ports from `first_port`), floods `times` x the
/// table with new flows without touching them, and returns how many still hold their label
/// in the flow table, and how many are labelled BitTorrent after one more packet each (a
/// resumed flow the flood evicted is labelled again only by the `LABELLED` map: the packet
/// carries no handshake).
fn idle_survivors(times: f64, n: u16, first_port: u16) -> (usize, usize) {
    let mut probe = TestProbe::load_with_flow_table(TABLE);
    let up = program_for(Direction::Up);
    let hs = peer_wire_handshake(&INFO_HASH, &PEER_ID);
    let conv: Vec<Conversation> = (0..n)
        .map(|i| Conversation::new(Family::V4, first_port + i, 6881))
        .collect();
    for c in &conv {
        probe.send(
            Direction::Up,
            &c.tcp(Direction::Up, TcpFlags::PSH | TcpFlags::ACK, &hs),
        );
    }
    let mut frames = FloodFrames::new();
    let mut next = 0;
    flood(
        &mut probe,
        up,
        &mut frames,
        &mut next,
        (f64::from(TABLE) * times) as u64,
    );
    let labelled = |probe: &mut TestProbe| {
        conv.iter()
            .filter(|c| {
                let f = probe.probe().flow(&c.key(PROTO_TCP)).expect("flow lookup");
                f.map(|f| f.label) == Some(Label::Bittorrent.id())
            })
            .count()
    };
    let held = labelled(&mut probe);
    for c in &conv {
        probe.send(
            Direction::Up,
            &c.tcp(Direction::Up, TcpFlags::ACK, &[0u8; 200]),
        );
    }
    (held, labelled(&mut probe))
}

fn main() {
    let mut probe = TestProbe::load_with_flow_table(TABLE);
    let up = program_for(Direction::Up);
    let mut frames = FloodFrames::new();
    let mut next = 0u64;
    // Fill the table twice over first: every measured packet then evicts.
    flood(&mut probe, up, &mut frames, &mut next, u64::from(TABLE) * 2);
    let (mut pk, mut pw, mut bk, mut bw) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (k, w) = flood(&mut probe, PROG_PASS, &mut frames, &mut next, ROUND);
        bk.push(k);
        bw.push(w);
        let (k, w) = flood(&mut probe, up, &mut frames, &mut next, ROUND);
        pk.push(k);
        pw.push(w);
    }
    let (pk, pw, bk, bw) = (median(pk), median(pw), median(bk), median(bw));
    let held = probe.flows().len();
    let info = flow_map_info(TABLE).expect("the flow map");
    println!(
        "flow flood: {ROUNDS} rounds of {ROUND} new flows into a full {TABLE}-entry table (median)"
    );
    println!(
        "  probe, new flow + eviction: {pk:7.1} ns/run in the kernel = {:>10.0} new flows/s per CPU; {pw:>9.0} calls/s wall",
        1e9 / pk
    );
    println!("  XDP_PASS, same frames:      {bk:7.1} ns/run in the kernel; {bw:>9.0} calls/s wall");
    println!(
        "  ratio probe/pass: kernel {:.2}x, wall {:.2}x",
        pk / bk,
        bw / pw
    );
    println!(
        "  table after {next} new flows: {held} entries held, memlock {} bytes",
        info.memlock
    );
    for times in [0.5, 1.0, 2.0] {
        let n = 64;
        let (held, resumed) = idle_survivors(times, n, 40_000);
        println!(
            "  idle labelled flows after a flood of {times} x the table: {held} of {n} still \
             in the table labelled; {resumed} of {n} labelled on their first packet after it"
        );
    }
}
