//! Packet parsing and every protocol matcher behind it: a run of frames (each prefixed by a
//! 2-byte length; the first input byte picks the link type) decoded down to TCP/UDP through
//! VLAN tags, tunnels and IPv6 extension headers, keyed to flows and fed to the deep
//! classifier's engine, as `peerwarden classify` does for a capture. The frames travel in a
//! pcap made in memory, so the fuzzer mutates packets without breaking the file's framing.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

mod link_types;
use link_types::LINK_TYPES;
use peerwarden_classifier::{
    CaptureReader, EngineConfig, offline,
    packet::{self, TCP, UDP},
};

fuzz_target!(|p: &[u8]| {
    let Some((&pick, mut rest)) = p.split_first() else {
        return;
    };
    let link_type = LINK_TYPES[pick as usize % LINK_TYPES.len()];
    let mut pcap = Vec::with_capacity(p.len() + 24 + 16 * (p.len() / 16 + 1));
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&link_type.to_le_bytes());
    let mut ts = 1_700_000_000u32;
    while rest.len() >= 2 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        // The decoder on its own: a payload lies inside its frame.
        if let Ok(d) = packet::decode(link_type, frame) {
            assert!(d.proto == TCP || d.proto == UDP);
            assert!(d.payload.len() <= frame.len());
        }
        ts += 1;
        pcap.extend_from_slice(&ts.to_le_bytes());
        pcap.extend_from_slice(&0u32.to_le_bytes());
        pcap.extend_from_slice(&(len as u32).to_le_bytes());
        pcap.extend_from_slice(&(len as u32).to_le_bytes());
        pcap.extend_from_slice(frame);
    }
    let reader = match CaptureReader::new(Cursor::new(&pcap[..])) {
        Ok(r) => r,
        Err(e) => panic!("a well-formed pcap header was refused: {e}"),
    };
    let out = offline::classify_reader(reader, EngineConfig::default(), &[]);
    if let Some(e) = out.error {
        panic!("a well-formed pcap was refused: {e}");
    }
    for rec in &out.flows {
        assert!(rec.packets[0] + rec.packets[1] >= 1);
        let _ = rec.to_json();
    }
});
