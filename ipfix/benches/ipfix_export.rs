//! What the IPFIX exporter costs per second with a full flow table: the tracker's pass over
//! the table's snapshot and the encoding of the records due, beside the copy of the
//! snapshot itself (the baseline: the exporter does it every second, like the flow
//! reader). Then the exporter's whole second (copy + tracker) the old way, the full walk,
//! against the way it runs now, one slice of the table per second
//! (`Tracker::tick_slice`), as the thread's CPU time per second over a round of slices,
//! both in this run. Prints figures; asserts nothing about time (docs/scale.md and
//! docs/benchmarks.md, "Daemon passes (issue 16)", have the figures).
//!
//! `cargo bench -p peerwarden-ipfix --bench ipfix_export` (PW_BENCH_FLOWS to change the count).

use std::{hint::black_box, net::IpAddr, time::Instant};

use dashmap::DashMap;
use peerwarden_common::{FlowKey, FlowValue};
use peerwarden_ipfix::{
    encode::{Encoder, EndReason, FlowExport},
    snapshot::Snapshot,
    tracker::{Slicer, Tracker, slices_for},
};

/// This thread's CPU time, ms.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

const S: u64 = 1_000_000_000;

fn key(i: u32) -> FlowKey {
    let b = i.to_be_bytes();
    let mut k = FlowKey {
        sub_port: 40000 + (i % 20000) as u16,
        remote_port: 443,
        proto: 6,
        family: 4,
        ..FlowKey::default()
    };
    k.sub_addr[..4].copy_from_slice(&[100, 64 + (b[1] & 0x3f), b[2], b[3]]);
    k.remote_addr[..4].copy_from_slice(&[198, 51, 100, b[3]]);
    k
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: u32 = std::env::var("PW_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    let table: DashMap<FlowKey, FlowValue> = DashMap::new();
    for i in 0..n {
        table.insert(
            key(i),
            FlowValue {
                packets: [10, 20],
                bytes: [1000, 20000],
                first_seen_ns: 100 * S,
                last_seen_ns: 100 * S,
                label: 1,
                ..FlowValue::default()
            },
        );
    }
    let mut tracker = Tracker::new(15 * S, 60 * S);
    // The first pass inserts every flow into the tracker; not timed.
    let snapshot: Vec<(FlowKey, FlowValue)> =
        table.iter().map(|e| (*e.key(), *e.value())).collect();
    black_box(tracker.tick(snapshot, 101 * S));

    let (mut copy_ms, mut tick_ms) = (Vec::new(), Vec::new());
    for round in 0..7u64 {
        let t = Instant::now();
        let snapshot: Vec<(FlowKey, FlowValue)> =
            table.iter().map(|e| (*e.key(), *e.value())).collect();
        copy_ms.push(t.elapsed().as_secs_f64() * 1e3);
        // Nothing due: every flow is active and young.
        let t = Instant::now();
        let due = tracker.tick(snapshot, (102 + round) * S);
        tick_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(due.is_empty());
    }
    // Encoding: 100,000 IPv4 records (a busy second's worth of finished flows).
    let records: Vec<FlowExport> = (0..100_000u32)
        .map(|i| FlowExport {
            proto: 6,
            src: IpAddr::from([100, 64, (i >> 8) as u8, i as u8]),
            sport: 40000,
            dst: IpAddr::from([198, 51, 100, 7]),
            dport: 443,
            bytes: [1000, 20000],
            packets: [10, 20],
            start_ms: 1_790_000_000_000,
            end_ms: 1_790_000_001_000,
            reason: EndReason::Idle,
            label_id: 18,
            label: "tls".into(),
            class: "web".into(),
            subscriber: format!("sub{i}"),
        })
        .collect();
    let mut enc_ms = Vec::new();
    let mut encoder = Encoder::new(1, 1400);
    let mut messages = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let out = encoder.encode(&records, true, 1);
        enc_ms.push(t.elapsed().as_secs_f64() * 1e3);
        messages = out.len();
        black_box(out);
    }
    // The exporter's second, full walk (before) against one slice (after): CPU per
    // second over one round of slices (16 s at the default table), three rounds each,
    // alternating.
    // (Timeouts of an hour: nothing falls due in the 100 s they run.)
    let slices = slices_for(n as usize);
    let snap = Snapshot::new(Slicer::new(slices));
    let walk: Vec<(FlowKey, FlowValue)> = table.iter().map(|e| (*e.key(), *e.value())).collect();
    snap.replace(walk.clone());
    let mut whole = Tracker::new(3600 * S, 3600 * S);
    let mut sliced = Tracker::with_slicer(3600 * S, 3600 * S, snap.slicer());
    for t in [&mut whole, &mut sliced] {
        let snapshot: Vec<(FlowKey, FlowValue)> =
            table.iter().map(|e| (*e.key(), *e.value())).collect();
        black_box(t.tick(snapshot, 101 * S));
    }
    let (mut full_cpu, mut slice_cpu, mut slice_worst) = (Vec::new(), Vec::new(), 0f64);
    let mut sec = 200u64;
    for _ in 0..3 {
        let t = cpu_ms();
        for _ in 0..slices {
            sec += 1;
            let reading: Vec<(FlowKey, FlowValue)> =
                table.iter().map(|e| (*e.key(), *e.value())).collect();
            assert!(whole.tick(reading, sec * S).is_empty());
        }
        full_cpu.push((cpu_ms() - t) / slices as f64);
        let t = cpu_ms();
        for _ in 0..slices {
            sec += 1;
            let one = cpu_ms();
            let slice = snap.slice(sliced.next_slice());
            assert!(sliced.tick_slice(slice.iter().copied(), sec * S).is_empty());
            slice_worst = slice_worst.max(cpu_ms() - one);
        }
        slice_cpu.push((cpu_ms() - t) / slices as f64);
    }
    let (full, slice) = (median(full_cpu), median(slice_cpu));
    // The flow reader's side: landing a walk of the table in the snapshot, the old way
    // (a set of the walk's keys, the map's flows not in it dropped, every flow inserted)
    // against the slices.
    let (mut land_map, mut land_slices) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let w = walk.clone();
        let t = cpu_ms();
        let live: std::collections::HashSet<FlowKey> = w.iter().map(|(k, _)| *k).collect();
        table.retain(|k, _| live.contains(k));
        for (k, v) in w {
            table.insert(k, v);
        }
        table.shrink_to_fit();
        land_map.push(cpu_ms() - t);
        let w = walk.clone();
        let t = cpu_ms();
        snap.replace(w);
        land_slices.push(cpu_ms() - t);
    }
    let (land_map, land_slices) = (median(land_map), median(land_slices));
    let (copy, tick, enc) = (median(copy_ms), median(tick_ms), median(enc_ms));
    println!("flows in the table: {n}");
    println!("snapshot copy (baseline):        {copy:8.1} ms");
    println!(
        "tracker pass, nothing due:       {tick:8.1} ms  ({:.2}x the copy)",
        tick / copy
    );
    println!(
        "encode 100,000 records:          {enc:8.1} ms  ({messages} messages of <= 1400 bytes, {:.2} M records/s)",
        0.1 / (enc / 1e3)
    );
    println!("exporter CPU per second, full walk (before):       {full:8.1} ms");
    println!(
        "exporter CPU per second, 1 of {slices} slices (after): {slice:8.1} ms  (worst second {slice_worst:.1} ms; {:.3}x the full walk, {:.1}x less)",
        slice / full,
        full / slice
    );
    println!(
        "a walk landing in the snapshot: map {land_map:.1} ms, slices {land_slices:.1} ms ({:.3}x)",
        land_slices / land_map
    );
}
