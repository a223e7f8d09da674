//! The swarm view's extractors (swarms/src/extract.rs, tracker_http.rs, bencode.rs) on
//! arbitrary payloads: the first byte picks the transport (even TCP, odd UDP), the rest is a
//! payload as the deep tier samples it. None may panic; a hash found in a payload is found in
//! the kernel's sample of it, and a DHT message the strict reader accepts reads back whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerwarden_common::deep::SAMPLE_BYTES;
use peerwarden_swarms::{
    Source, Transport, bencode,
    extract::{self, dht_query, http_tracker_request, peer_wire_handshake, utp_handshake},
    sighting,
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, p)) = data.split_first() else {
        return;
    };
    let transport = if pick % 2 == 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let sample = &p[..p.len().min(SAMPLE_BYTES)];
    let whole = sighting(transport, p);
    let sampled = sighting(transport, sample);
    // A handshake (48 bytes) or a UDP announce (98) sits at the payload's start, well inside
    // a sample: the kernel's sample shows what the whole payload shows. (A DHT message or an
    // HTTP request line longer than a sample is beyond what the kernel can show.)
    if let Some(w) = whole {
        if matches!(w.source, Source::PeerWire | Source::UdpTracker) {
            assert_eq!(sampled, whole);
        }
    }
    // A handshake needs its first 48 bytes only.
    if let Some(h) = peer_wire_handshake(p) {
        assert_eq!(
            peer_wire_handshake(&p[..48]).map(|x| x.info_hash),
            Some(h.info_hash)
        );
    }
    let _ = utp_handshake(p);
    let _ = extract::udp_tracker_announce(p);
    let _ = dht_query(p);
    if let Some(t) = http_tracker_request(p) {
        assert!(!t.info_hashes.is_empty());
    }
    if let Ok(v) = bencode::parse(p) {
        walk(v, 0);
    }
});

/// Reads every value back: the lazy iterators must see what `parse` checked.
fn walk(v: bencode::Value<'_>, depth: usize) {
    assert!(depth <= bencode::MAX_DEPTH);
    match v {
        bencode::Value::Dict(d) => {
            assert!(d.iter().count() <= bencode::MAX_DICT_ENTRIES);
            for (_, x) in d.iter() {
                walk(x, depth + 1);
            }
        }
        bencode::Value::List(l) => l.iter().for_each(|x| walk(x, depth + 1)),
        _ => {}
    }
}
