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
use peerwarden_common::deep::{DEEP_BUDGET, SAMPLE_BYTES};
use peerwarden_swarms::{InfoHash, Sighting, Source, Transport, sighting};

type Endpoint = (IpAddr, u16);

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
    let mut budget: BTreeMap<(u8, Endpoint, Endpoint), u8> = BTreeMap::new();
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
