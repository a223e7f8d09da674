//! The sharded deep tier without a kernel: samples through the reader's dispatch and the
//! workers, as the daemon runs them.

use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use peerwarden_common::{Direction, Label, deep::SAMPLE_BYTES, flow::FAMILY_V4};

use super::*;
use crate::{config::Config, supervision::Threads};

/// A DNS message for `name`: a query, or its answer with `addr` (an A record, TTL 300).
fn dns(id: u16, name: &str, answer: Option<[u8; 4]>) -> Vec<u8> {
    let flags: u16 = if answer.is_some() { 0x8180 } else { 0x0100 };
    let mut m = Vec::new();
    for w in [id, flags, 1, u16::from(answer.is_some()), 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(a) = answer {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
        m.extend_from_slice(&a);
    }
    m
}

/// A sample of the UDP flow from subscriber 100.64.`sub.0`.`sub.1`:40000 to a resolver.
fn sample(sub: (u8, u8), up: bool, payload: &[u8], ts_ns: u64) -> Sample {
    let mut key = FlowKey {
        proto: 17,
        family: FAMILY_V4,
        sub_port: 40000,
        remote_port: 53,
        ..Default::default()
    };
    key.sub_addr[..4].copy_from_slice(&[100, 64, sub.0, sub.1]);
    key.remote_addr[..4].copy_from_slice(&[198, 51, 100, 53]);
    let mut data = [0u8; SAMPLE_BYTES];
    data[..payload.len()].copy_from_slice(payload);
    Sample {
        key,
        ts_ns,
        tcp_seq: 0,
        payload_len: payload.len() as u16,
        captured: payload.len() as u16,
        dir: if up { Direction::Up } else { Direction::Down } as u8,
        tcp_flags: 0,
        flags: 0,
        _pad: [0; 5],
        data,
    }
}

/// 300 subscribers each ask for www.netflix.com and are answered, the flows interleaved,
/// through `n` shards: the deep state and the verdicts handed to the kernel.
fn run(n: usize) -> (Arc<DeepState>, Vec<(FlowKey, Verdict)>) {
    let deep = Arc::new(DeepState::default());
    let cfg = shard::engine_config(1 << 16);
    let shared = cfg.shared();
    let (mut feed, queues) = Feed::new(n);
    let verdicts = Arc::new(Mutex::new(Vec::new()));
    let (threads, stop) = (Threads::default(), AtomicBool::new(false));
    thread::scope(|scope| {
        for (i, queue) in queues.into_iter().enumerate() {
            let shard = Shard::new(cfg.clone(), shared.clone(), 1024);
            let (deep, verdicts, hb) = (
                &deep,
                &verdicts,
                threads.register(&format!("deep-{i}"), STALL_BOUND),
            );
            let stop = &stop;
            scope.spawn(move || {
                let put = |k: &FlowKey, v: Verdict| verdicts.lock().expect("lock").push((*k, v));
                work(&hb, shard, &queue, deep, stop, put);
            });
        }
        let subs: Vec<(u8, u8)> = (0..300u16)
            .map(|i| ((i / 250) as u8, (i % 250) as u8))
            .collect();
        // Each query just before its answer, on the same queue: an answer taken first would
        // answer no query seen, and count as unsolicited.
        for (i, sub) in subs.iter().enumerate() {
            let id = i as u16;
            let ts = i as u64 * 1000;
            for s in [
                sample(*sub, true, &dns(id, "www.netflix.com", None), ts),
                sample(
                    *sub,
                    false,
                    &dns(id, "www.netflix.com", Some([198, 51, 100, 9])),
                    ts + 1,
                ),
            ] {
                assert!(feed.push(s), "the worker is there");
            }
        }
        assert!(feed.flush(), "the workers are there");
        drop(feed);
    });
    let v = std::mem::take(&mut *verdicts.lock().expect("lock"));
    (deep, v)
}

#[test]
fn each_flows_samples_are_classified_in_order_over_several_shards() {
    for n in [1, 3] {
        let (deep, verdicts) = run(n);
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            load(&deep.dns_unsolicited),
            0,
            "{n} shards: no answer before its query"
        );
        assert_eq!(
            load(&deep.dns_hints),
            300,
            "{n} shards: every answer remembered, shared"
        );
        let finals: Vec<_> = verdicts.iter().filter(|(_, v)| v.final_ == 1).collect();
        assert_eq!(finals.len(), 300, "{n} shards: each flow final once");
        assert!(
            finals.iter().all(|(_, v)| v.label == Label::Dns.id()),
            "{n} shards"
        );
        // The workers' flows add up (all ended: none held).
        assert_eq!(load(&deep.tracked), 0, "{n} shards");
    }
}

#[test]
fn deep_threads_defaults_to_half_the_cpus_and_is_bounded() {
    let parse = |extra: &str| {
        let text = format!("interfaces: {{ downlink: a, uplink: b }}\n{extra}");
        Config::parse(&text, Path::new("test.yaml"))
    };
    let c = parse("").expect("valid");
    assert_eq!(c.deep_threads, None);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(threads(c.deep_threads), (cpus / 2).clamp(1, 8));
    let c = parse("deep_threads: 1\n").expect("valid");
    assert_eq!(threads(c.deep_threads), 1);
    assert_eq!(
        threads(parse("deep_threads: 64\n").expect("valid").deep_threads),
        64
    );
    for bad in ["0", "65", "1000000"] {
        let e = parse(&format!("deep_threads: {bad}\n")).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!("test.yaml: deep_threads: {bad} is out of range (1 to 64)")
        );
    }
    assert!(parse("deep_threads: -1\n").is_err(), "not a count");
}

/// A peer-wire handshake for swarm `hash` (each byte of the info-hash `hash`).
fn handshake(hash: u8) -> Vec<u8> {
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&[hash; 20]);
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    hs
}

#[test]
fn a_swarm_only_sample_reaches_the_swarm_view_and_never_the_engine_or_the_kernel() {
    use peerwarden_common::deep::SAMPLE_SWARM_ONLY;
    use peerwarden_swarms::{InfoHash, SwarmTable, SwarmsConfig};

    let table = SwarmTable::new(&SwarmsConfig::default(), None).expect("table");
    let subs = peerwarden_policies::Prefix::new([100, 64, 0, 0].into(), 10).expect("prefix");
    let swarms = Arc::new(crate::swarms::Swarms::new(table, vec![subs], 3600));
    let deep = DeepState {
        swarms: Some(swarms.clone()),
        ..DeepState::default()
    };
    let cfg = shard::engine_config(1024);
    let mut shard = Shard::new(cfg.clone(), cfg.shared(), 64);
    let mut verdicts: Vec<(FlowKey, Verdict)> = Vec::new();
    let mut put = |k: &FlowKey, v: Verdict| verdicts.push((*k, v));

    // A handshake the kernel decided and sent for the view alone.
    let mut swarm_only = sample((0, 1), true, &handshake(7), 1);
    swarm_only.key.proto = 6;
    swarm_only.key.remote_port = 6881;
    swarm_only.flags = SAMPLE_SWARM_ONLY;
    shard.take(&swarm_only, &deep, &mut put);
    shard.tick(&deep);
    let hash = InfoHash([7; 20]);
    let seen = swarms.with_table(|t| t.get(&t.swarm_id(&hash)).is_some());
    assert!(seen, "the swarm view has the handshake's swarm");
    assert_eq!(
        deep.tracked.load(Ordering::Relaxed),
        0,
        "the engine holds no flow"
    );

    // The same bytes as an ordinary sample of another flow: the engine decides it, and the
    // verdict goes to the kernel, so the contrast shows the flag is what kept them apart.
    let mut ordinary = swarm_only;
    ordinary.flags = 0;
    ordinary.key.sub_port += 1;
    shard.take(&ordinary, &deep, &mut put);
    assert_eq!(verdicts.len(), 1, "only the ordinary sample is answered");
    assert_eq!(verdicts[0].0, ordinary.key);
    assert_eq!(Label::from_id(verdicts[0].1.label), Label::Bittorrent);
}
