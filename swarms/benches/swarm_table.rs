//! What the swarm view adds to the daemon's once-a-second flow walk and to its sample loop,
//! against what the daemon already does there, measured in the same run:
//!
//! - walk: `SwarmTable::account` for every flow of a 200,000-flow table (half of them in
//!   10,000 swarms), against the baseline of keeping each flow's byte deltas in a map keyed
//!   by the flow key (the walk's own bookkeeping);
//! - samples: `sighting` on full-size samples (handshakes, DHT queries, and payloads that are
//!   neither), against the baseline of copying the sample out of the ring buffer.
//!
//! `cargo bench -p peerwarden-swarms --bench swarm_table`

use std::{collections::HashMap, hint::black_box, net::IpAddr, time::Instant};

use peerwarden_common::{
    Direction, FlowKey,
    deep::SAMPLE_BYTES,
    flow::{FAMILY_V4, PROTO_TCP},
};
use peerwarden_swarms::{
    InfoHash, ListenPort, Sighting, Source, SwarmTable, SwarmsConfig, Transport, sighting,
};

const FLOWS: u32 = 200_000;
const SWARMS: u32 = 10_000;
const ROUNDS: usize = 5;

fn key(i: u32) -> FlowKey {
    let mut k = FlowKey {
        proto: PROTO_TCP,
        family: FAMILY_V4,
        sub_port: 10_000 + (i % 50_000) as u16,
        remote_port: 6881,
        ..FlowKey::default()
    };
    // 1,000 subscribers in 100.64/10; every tenth flow goes to another subscriber.
    let sub = i % 1000;
    k.sub_addr[..4].copy_from_slice(&[100, 64, (sub >> 8) as u8, sub as u8]);
    let remote = if i.is_multiple_of(10) {
        [100, 65, (i >> 8) as u8, i as u8]
    } else {
        [203, 0, (i >> 8) as u8, i as u8]
    };
    k.remote_addr[..4].copy_from_slice(&remote);
    k
}

fn is_sub(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v) if v.octets()[0] == 100 && (64..128).contains(&v.octets()[1]))
}

fn best<F: FnMut()>(mut f: F) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let keys: Vec<FlowKey> = (0..FLOWS).map(key).collect();
    let config = SwarmsConfig {
        enabled: true,
        max_flows: FLOWS as usize,
        ..SwarmsConfig::default()
    };
    let mut table = SwarmTable::new(&config, None).expect("config");
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&((i as u32 / 2) % SWARMS).to_be_bytes());
        let s = Sighting {
            info_hash: InfoHash(h),
            source: Source::PeerWire,
            listen_port: ListenPort::None,
        };
        table.observe(k, Direction::Up, &s, 1, &is_sub);
    }
    println!("table: {} swarms, {} flows", table.len(), table.flows());

    let mut deltas: HashMap<FlowKey, (u64, u64)> = HashMap::new();
    let base = best(|| {
        for (i, k) in keys.iter().enumerate() {
            let e = deltas.entry(*k).or_default();
            e.0 += i as u64 & 0xff;
            e.1 += 1500;
        }
        black_box(&deltas);
    });
    let mut now = 2;
    let walk = best(|| {
        now += 1;
        for (i, k) in keys.iter().enumerate() {
            black_box(table.account(k, i as u64 & 0xff, 1500, now, &is_sub));
        }
    });
    let per = |s: f64| s * 1e9 / f64::from(FLOWS);
    println!(
        "walk of {FLOWS} flows: baseline (delta map) {:.1} ns/flow, account {:.1} ns/flow, ratio {:.2}x",
        per(base),
        per(walk),
        walk / base
    );

    // Samples: a handshake, a DHT get_peers, and 1,504-byte payloads of neither.
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&[7; 20]);
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    let dht = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe".to_vec();
    // Bytes without structure: a multiplicative hash of the position (Knuth's constant).
    let noise: Vec<u8> = (0..SAMPLE_BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut get = b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.example\r\n".to_vec();
    get.resize(SAMPLE_BYTES, b'a');
    let samples: Vec<(Transport, Vec<u8>)> = vec![
        (Transport::Tcp, hs),
        (Transport::Udp, dht),
        (Transport::Tcp, noise.clone()),
        (Transport::Udp, noise),
        (Transport::Tcp, get),
    ];
    const N: usize = 100_000;
    let mut buf = vec![0u8; SAMPLE_BYTES];
    let copy = best(|| {
        for i in 0..N {
            let (_, p) = &samples[i % samples.len()];
            buf[..p.len()].copy_from_slice(p);
            black_box(&buf);
        }
    });
    let extract = best(|| {
        for i in 0..N {
            let (t, p) = &samples[i % samples.len()];
            black_box(sighting(*t, black_box(p)));
        }
    });
    let per = |s: f64| s * 1e9 / N as f64;
    println!(
        "samples: baseline (copy out) {:.1} ns/sample, sighting {:.1} ns/sample, ratio {:.2}x",
        per(copy),
        per(extract),
        extract / copy
    );
}
