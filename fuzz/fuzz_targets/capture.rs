//! A capture file of arbitrary bytes (pcap in either byte order and time resolution, or
//! pcapng) read to its end and classified, as `peerwarden classify FILE` does. Reading must
//! stop with an error or at the end, never panic; every flow record must print as JSON.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use peerwarden_classifier::{CaptureReader, EngineConfig, capture::MAX_RECORD, offline};

fuzz_target!(|file: &[u8]| {
    // The reader on its own: every frame it yields fits the record bound.
    if let Ok(mut r) = CaptureReader::new(Cursor::new(file)) {
        while let Ok(Some(f)) = r.next_frame() {
            assert!(f.data.len() <= MAX_RECORD && f.data.len() <= file.len());
        }
    }
    // And through the classifier.
    let Ok(reader) = CaptureReader::new(Cursor::new(file)) else {
        return;
    };
    let out = offline::classify_reader(reader, EngineConfig::default(), &[]);
    assert!(out.captured_bytes <= file.len() as u64);
    for rec in &out.flows {
        let line = rec.to_json();
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&line) {
            panic!("flow record is not JSON ({e}): {line}");
        }
    }
});
