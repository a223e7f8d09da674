//! Tests of `swarms.rs`: off builds nothing; the key is made once; samples and walks reach
//! the store's minute rows.

use std::{os::unix::fs::PermissionsExt as _, path::Path};

use peerwarden_common::flow::{FAMILY_V4, PROTO_TCP};
use peerwarden_history::Retention;

use super::*;

fn config(dir: &Path, swarms: &str) -> Config {
    let text = format!(
        "interfaces: {{ downlink: eth1, uplink: eth0 }}\nhistory: {{ path: {} }}\nswarms: {swarms}\n",
        dir.join("history.db").display()
    );
    Config::parse(&text, Path::new("t.yaml")).expect("valid")
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pw-swarms-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn handshake(hash: u8) -> Vec<u8> {
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&[hash; 20]);
    hs.extend_from_slice(b"-XX0001-abcdefghijkl");
    hs
}

/// A policy whose one subscriber is 100.64.0.1.
fn one_subscriber() -> Policy {
    peerwarden_policies::load_str(
        "plans: { p: { rate: { down: 10mbit, up: 1mbit } } }\n\
         subscribers:\n\
         - { id: a, prefixes: [100.64.0.1/32], plan: p }\n\
         default_plan: p\n",
        "test",
    )
    .expect("policy")
}

/// A swarm view on with a store in `d`, the policy's one subscriber, and a TCP flow from it
/// (port `sub_port`) to a remote peer whose handshake for swarm `[hash; 20]` was sampled at
/// `t0`; `flow(up, down)` is that flow as a walk reads it.
struct OneFlow {
    s: Arc<Swarms>,
    store: History,
    key: FlowKey,
}

impl OneFlow {
    fn new(d: &Path, sub_port: u16, hash: u8, t0: u64) -> OneFlow {
        let c = config(d, "{ enabled: true }");
        let s = Swarms::from_config(&c).expect("built").expect("on");
        let store = History::open(&d.join("history.db"), "i", Retention::default()).expect("store");
        let mut key = FlowKey {
            proto: PROTO_TCP,
            family: FAMILY_V4,
            sub_port,
            remote_port: 6881,
            ..FlowKey::default()
        };
        key.sub_addr[..4].copy_from_slice(&[100, 64, 0, 1]);
        key.remote_addr[..4].copy_from_slice(&[203, 0, 113, 9]);
        s.set_policy(Some(Arc::new(one_subscriber())));
        s.sample_at(&key, Direction::Up, &handshake(hash), t0);
        OneFlow { s, store, key }
    }

    fn flow(&self, up: u64, down: u64) -> Vec<(FlowKey, FlowValue)> {
        vec![(
            self.key,
            FlowValue {
                bytes: [up, down],
                ..FlowValue::default()
            },
        )]
    }
}

#[test]
fn off_builds_nothing_and_makes_no_key() {
    let d = temp("off");
    let c = config(&d, "{ enabled: false, pseudonymize: true }");
    assert!(Swarms::from_config(&c).expect("off").is_none());
    assert!(!c.swarms_key_path().exists());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn the_pseudonym_key_is_made_once_and_gives_the_same_ids_after_a_restart() {
    let d = temp("key");
    let c = config(&d, "{ enabled: true, pseudonymize: true }");
    let ids = || {
        let s = Swarms::from_config(&c).expect("built").expect("on");
        s.with_table(|t| t.swarm_id(&peerwarden_swarms::InfoHash([3; 20])).to_hex())
    };
    let first = ids();
    let meta = std::fs::metadata(c.swarms_key_path()).expect("key file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(ids(), first, "same key after a restart");
    assert_ne!(first, "03".repeat(20), "a pseudonym, not the hash");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn samples_and_walks_reach_the_minute_rows_of_the_store() {
    let d = temp("rows");
    let t0 = 1_800_000_000u64; // a minute boundary
    let one = OneFlow::new(&d, 50000, 0xcd, t0);
    let (s, store) = (&one.s, &one.store);
    s.walk_at(&one.flow(500, 20_000), Some(store), t0 + 1);
    s.walk_at(&one.flow(700, 30_000), Some(store), t0 + 30);
    s.walk_at(&one.flow(900, 40_000), Some(store), t0 + 61);
    let rows = store
        .swarm_totals(t0 as i64 - 600, t0 as i64 + 600)
        .expect("read");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].swarm, [0xcd; 20]);
    assert_eq!((rows[0].transit_up, rows[0].transit_down), (900, 40_000));
    let listed = s.with_table(|t| t.summaries());
    assert_eq!(listed[0].subscribers, 1);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_peer_flow_the_kernel_labelled_unsampled_joins_through_its_endpoints_announce() {
    let d = temp("endpoint");
    let s = Swarms::from_config(&config(&d, "{ enabled: true }"))
        .expect("built")
        .expect("on");
    let t0 = 1_800_000_000u64;
    // The subscriber's UDP tracker announce (sampled: the deep tier sees it), port 51413.
    let mut announce = FlowKey {
        proto: peerwarden_common::flow::PROTO_UDP,
        family: FAMILY_V4,
        sub_port: 40000,
        remote_port: 6969,
        ..FlowKey::default()
    };
    announce.sub_addr[..4].copy_from_slice(&[100, 64, 0, 1]);
    announce.remote_addr[..4].copy_from_slice(&[198, 51, 100, 2]);
    let mut p = vec![0u8; 98];
    p[..8].copy_from_slice(&[9; 8]);
    p[8..12].copy_from_slice(&1u32.to_be_bytes());
    p[16..36].copy_from_slice(&[0xee; 20]);
    p[36..56].copy_from_slice(b"-XX0001-abcdefghijkl");
    p[92..96].copy_from_slice(&(-1i32).to_be_bytes());
    p[96..98].copy_from_slice(&51413u16.to_be_bytes());
    s.set_policy(Some(Arc::new(one_subscriber())));
    s.sample_at(&announce, Direction::Up, &p, t0);
    // The peer flow from that port, labelled `bittorrent` by the kernel with no sample.
    let mut peer = announce;
    peer.proto = PROTO_TCP;
    peer.sub_port = 51413;
    peer.remote_port = 6881;
    peer.remote_addr[..4].copy_from_slice(&[203, 0, 113, 9]);
    let v = FlowValue {
        bytes: [300, 4_000],
        label: Label::Bittorrent.id(),
        ..FlowValue::default()
    };
    s.walk_at(&[(peer, v)], None, t0 + 1);
    let listed = s.with_table(|t| t.summaries());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "ee".repeat(20));
    assert_eq!(listed[0].bytes.transit(), 4_300);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn the_part_minute_before_a_stop_reaches_the_store() {
    let d = temp("finish");
    let t0 = 1_800_000_000u64; // a minute boundary
    let one = OneFlow::new(&d, 50001, 0xce, t0);
    let (s, store) = (&one.s, &one.store);
    s.walk_at(&one.flow(500, 20_000), Some(store), t0 + 1);
    s.walk_at(&one.flow(900, 40_000), Some(store), t0 + 61);
    // 29 s into the next minute the daemon stops: its last walk sees the final counts.
    s.finish_at(&one.flow(1_200, 55_000), Some(store), t0 + 90);
    let total = store
        .swarm_totals(t0 as i64 - 600, t0 as i64 + 600)
        .expect("read");
    assert_eq!(total.len(), 1, "{total:?}");
    assert_eq!(
        (total[0].transit_up, total[0].transit_down),
        (1_200, 55_000)
    );
    // The part-minute is stored under the minute it belongs to.
    let second = store
        .swarm_totals(t0 as i64 + 60, t0 as i64 + 120)
        .expect("read");
    assert_eq!(
        (second[0].transit_up, second[0].transit_down),
        (300, 15_000),
        "{second:?}"
    );
    std::fs::remove_dir_all(&d).ok();
}
