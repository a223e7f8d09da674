//! The extractors over real packets: the reference corpus's captures (`shared/corpus`, cloned
//! beside the repository), read with the classifier's capture reader and frame decoder, each
//! flow sampled as the kernel samples it (its first `DEEP_BUDGET` payload packets, each cut
//! to `SAMPLE_BYTES`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use peerwarden_classifier::{
    CaptureReader,
    packet::{self, TCP, UDP},
};
use peerwarden_common::{
    Direction, FlowKey,
    deep::{DEEP_BUDGET, SAMPLE_BYTES},
    flow::{FAMILY_V4, FAMILY_V6},
};
use peerwarden_swarms::{
    InfoHash, Sighting, Source, SwarmTable, SwarmsConfig, Transport, sighting,
};

type Endpoint = (IpAddr, u16);
/// A flow as the capture shows it: protocol and its two endpoints.
type FlowId = (u8, Endpoint, Endpoint);
/// A kernel key's byte counters: [up, down] so far, and as of the last walk.
type Counters = BTreeMap<FlowId, (FlowKey, [u64; 2], [u64; 2])>;

/// One sighting: the flow (endpoints in a fixed order, protocol), its sender, what was seen.
#[derive(Debug)]
struct Seen {
    flow: (u8, Endpoint, Endpoint),
    from: Endpoint,
    sighting: Sighting,
}

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ndpi/pcap");
    assert!(
        dir.is_dir(),
        "the reference corpus is missing: expected {} (the repository is cloned beside shared/)",
        dir.display()
    );
    dir
}

/// Every sighting in a capture's samples.
fn sightings(path: &Path) -> Vec<Seen> {
    let Ok(mut reader) = CaptureReader::open(path) else {
        return Vec::new();
    };
    let mut budget: BTreeMap<FlowId, u8> = BTreeMap::new();
    let mut out = Vec::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        let Ok(p) = packet::decode(frame.link_type, frame.data) else {
            continue;
        };
        if p.payload.is_empty() || (p.proto != TCP && p.proto != UDP) {
            continue;
        }
        let (src, dst) = ((p.src, p.sport), (p.dst, p.dport));
        let flow = (p.proto, src.min(dst), src.max(dst));
        let used = budget.entry(flow).or_default();
        if *used >= DEEP_BUDGET {
            continue;
        }
        *used += 1;
        let sample = &p.payload[..p.payload.len().min(SAMPLE_BYTES)];
        let transport = if p.proto == TCP {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        if let Some(s) = sighting(transport, sample) {
            out.push(Seen {
                flow,
                from: src,
                sighting: s,
            });
        }
    }
    out
}

#[test]
fn handshakes_in_the_bittorrent_capture_name_one_swarm_from_both_sides() {
    let seen = sightings(&corpus().join("bittorrent.pcap"));
    let handshakes: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.sighting.source == Source::PeerWire)
        .collect();
    // Per flow: the hash each side's handshake carried.
    let mut sides: BTreeMap<_, BTreeMap<Endpoint, BTreeSet<InfoHash>>> = BTreeMap::new();
    for s in &handshakes {
        sides
            .entry(s.flow)
            .or_default()
            .entry(s.from)
            .or_default()
            .insert(s.sighting.info_hash);
    }
    let both: Vec<_> = sides.iter().filter(|(_, by)| by.len() == 2).collect();
    println!(
        "bittorrent.pcap: {} handshakes in {} flows, {} flows with both sides",
        handshakes.len(),
        sides.len(),
        both.len()
    );
    assert!(
        both.len() >= 5,
        "expected several flows with a handshake each way, got {}",
        both.len()
    );
    for (flow, by) in &both {
        let hashes: BTreeSet<_> = by.values().flatten().collect();
        assert_eq!(hashes.len(), 1, "{flow:?}: the two sides named {hashes:?}");
    }
    // The capture is one client downloading one torrent: every handshake names it.
    let all: BTreeSet<_> = handshakes.iter().map(|s| s.sighting.info_hash).collect();
    assert_eq!(all.len(), 1, "several swarms in one download: {all:?}");
}

#[test]
fn the_http_tracker_capture_shows_its_announce() {
    let seen = sightings(&corpus().join("bt-http.pcapng"));
    let announces: Vec<_> = seen
        .iter()
        .filter(|s| s.sighting.source == Source::HttpTracker)
        .collect();
    println!("bt-http.pcapng: {announces:?}");
    assert_eq!(announces.len(), 1, "{seen:?}");
    assert_eq!(announces[0].from.1, 46882, "the client sent it");
}

#[test]
fn no_capture_makes_an_extractor_panic_and_non_bittorrent_ones_show_no_hash() {
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(corpus())
        .expect("corpus readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let n = sightings(&path).len();
        if n > 0 {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            found.insert(name.unwrap_or_default(), n);
        }
    }
    println!("captures with sightings: {found:?}");
    // Only captures whose flows nDPI calls BitTorrent (truth.csv) may show a hash.
    let truth = std::fs::read_to_string(corpus().join("../truth.csv")).expect("truth.csv");
    let bittorrent: BTreeSet<&str> = truth
        .lines()
        .filter(|l| l.contains("BitTorrent"))
        .filter_map(|l| l.split(',').next())
        .collect();
    let strays: Vec<_> = found
        .keys()
        .filter(|k| !bittorrent.contains(k.as_str()))
        .collect();
    assert!(
        strays.is_empty(),
        "hashes in non-BitTorrent captures: {strays:?}"
    );
    assert!(found.contains_key("bittorrent.pcap"), "{found:?}");
}

#[test]
fn the_utp_capture_shows_its_handshake_both_ways_beside_dht_queries() {
    let seen = sightings(&corpus().join("bittorrent_utp.pcap"));
    let client: Endpoint = ("192.168.1.5".parse().expect("ip"), 40959);
    let peer: Endpoint = ("82.243.113.43".parse().expect("ip"), 64969);
    let hs = |from: Endpoint| -> BTreeSet<InfoHash> {
        seen.iter()
            .filter(|s| s.sighting.source == Source::PeerWire && s.from == from)
            .map(|s| s.sighting.info_hash)
            .collect()
    };
    let (a, b) = (hs(client), hs(peer));
    assert_eq!(a.len(), 1, "{seen:?}");
    assert_eq!(a, b, "the two sides of the uTP handshake disagree");
    // The peer's DHT node queries the client's on the same socket: other swarms, by get_peers.
    let dht: Vec<_> = seen
        .iter()
        .filter(|s| s.sighting.source == Source::DhtGetPeers)
        .collect();
    assert!(!dht.is_empty(), "{seen:?}");
    assert!(
        dht.iter()
            .all(|s| s.from == peer && !a.contains(&s.sighting.info_hash))
    );
}

/// The kernel's key of a packet between the client (the one subscriber) and a peer, and the
/// packet's direction.
fn kernel_key(p: &packet::Decoded<'_>, client: IpAddr) -> (FlowKey, Direction) {
    let up = p.src == client;
    let (sub, sp, remote, rp) = if up {
        (p.src, p.sport, p.dst, p.dport)
    } else {
        (p.dst, p.dport, p.src, p.sport)
    };
    let mut k = FlowKey {
        proto: p.proto,
        sub_port: sp,
        remote_port: rp,
        ..FlowKey::default()
    };
    match (sub, remote) {
        (IpAddr::V4(s), IpAddr::V4(r)) => {
            k.family = FAMILY_V4;
            k.sub_addr[..4].copy_from_slice(&s.octets());
            k.remote_addr[..4].copy_from_slice(&r.octets());
        }
        (s, r) => {
            k.family = FAMILY_V6;
            k.sub_addr = match s {
                IpAddr::V6(v) => v.octets(),
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
            k.remote_addr = match r {
                IpAddr::V6(v) => v.octets(),
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
        }
    }
    (k, if up { Direction::Up } else { Direction::Down })
}

#[test]
fn the_bittorrent_capture_through_the_table_counts_its_flows_bytes() {
    // The capture as the daemon would see it: 192.168.1.3 the subscriber, samples to the
    // extractors, a flow walk with byte deltas every second of capture time.
    let client: IpAddr = "192.168.1.3".parse().expect("ip");
    let is_sub = |a: IpAddr| a == client;
    let config = SwarmsConfig {
        enabled: true,
        ..SwarmsConfig::default()
    };
    let mut table = SwarmTable::new(&config, None).expect("config");
    let mut reader = CaptureReader::open(&corpus().join("bittorrent.pcap")).expect("open");
    // Per kernel key: [up, down] bytes so far, at the last walk, and bytes before the flow's
    // first payload packet (what a walk may count before the handshake names the swarm).
    let mut counters: Counters = BTreeMap::new();
    let mut before_payload: BTreeMap<FlowId, u64> = BTreeMap::new();
    let mut samples: BTreeMap<FlowId, u8> = BTreeMap::new();
    let (mut next_walk, mut now) = (0u64, 0u64);
    let walk = |table: &mut SwarmTable, counters: &mut Counters, now| {
        for (key, total, walked) in counters.values_mut() {
            let (up, down) = (total[0] - walked[0], total[1] - walked[1]);
            *walked = *total;
            table.account(key, up, down, now, &is_sub);
        }
    };
    while let Ok(Some(frame)) = reader.next_frame() {
        let Ok(p) = packet::decode(frame.link_type, frame.data) else {
            continue;
        };
        if p.src != client && p.dst != client {
            continue;
        }
        now = frame.ts_ns / 1_000_000_000;
        if now >= next_walk {
            walk(&mut table, &mut counters, now);
            next_walk = now + 1;
        }
        let (key, dir) = kernel_key(&p, client);
        let id = (
            key.proto,
            (key.sub_ip(), key.sub_port),
            (key.remote_ip(), key.remote_port),
        );
        let c = counters.entry(id).or_insert((key, [0; 2], [0; 2]));
        c.1[dir.index()] += u64::from(frame.wire_len);
        let seen = samples.entry(id).or_default();
        if p.payload.is_empty() && *seen == 0 {
            *before_payload.entry(id).or_default() += u64::from(frame.wire_len);
        }
        if !p.payload.is_empty() && *seen < DEEP_BUDGET {
            *seen += 1;
            let t = if p.proto == TCP {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let sample = &p.payload[..p.payload.len().min(SAMPLE_BYTES)];
            if let Some(s) = sighting(t, sample) {
                table.observe(&key, dir, &s, now, &is_sub);
            }
        }
    }
    walk(&mut table, &mut counters, now + 1);

    assert_eq!(table.len(), 1, "one torrent");
    let (_, swarm) = table.iter().next().expect("swarm");
    // Ground truth: every byte of the flows whose handshake was seen.
    let handshaken: BTreeSet<_> = sightings(&corpus().join("bittorrent.pcap"))
        .into_iter()
        .filter(|s| s.sighting.source == Source::PeerWire)
        .map(|s| s.flow)
        .collect();
    let (mut up, mut down, mut slack) = (0, 0, 0);
    for (id, (_, total, _)) in &counters {
        let flow = (id.0, id.1.min(id.2), id.1.max(id.2));
        if handshaken.contains(&flow) {
            up += total[0];
            down += total[1];
            slack += before_payload.get(id).copied().unwrap_or(0);
        }
    }
    let counted = swarm.bytes.transit_up + swarm.bytes.transit_down;
    println!(
        "swarm: up {} down {} (flows with a handshake: up {up} down {down}, {slack} bytes before their first payload)",
        swarm.bytes.transit_up, swarm.bytes.transit_down
    );
    assert_eq!(swarm.bytes.local, 0);
    assert!(swarm.bytes.transit_up <= up && swarm.bytes.transit_down <= down);
    assert!(
        up + down - counted <= slack,
        "missed {} bytes, more than the {slack} before the flows' first payloads",
        up + down - counted
    );
    assert!(counted > 250_000, "{counted}");
    assert_eq!(swarm.subscribers.len(), 1);
    assert_eq!(
        swarm.remote_peers(),
        handshaken
            .iter()
            .map(|f| if f.1.0 == client { f.2.0 } else { f.1.0 })
            .collect::<BTreeSet<_>>()
            .len()
    );
}
