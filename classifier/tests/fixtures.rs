//! Real client traffic: captures of two python3-libtorrent sessions swapping a file over
//! loopback (how they were made: `tests/data/libtorrent_pair.py`). They check the detectors
//! on what a real client sends, not only on crafted bytes.

use std::path::{Path, PathBuf};

use peerwarden_classifier::{
    CaptureReader, Direction, Engine, EngineConfig, FlowKey, PacketMeta, classify_capture, packet,
};
use peerwarden_common::{Confidence, Label};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn labels(name: &str) -> Vec<(String, Confidence)> {
    classify_capture(&data(name))
        .expect("fixture reads")
        .iter()
        .map(|f| (f.verdict.to_string(), f.verdict.confidence))
        .collect()
}

#[test]
fn message_stream_encryption_over_tcp_is_inferred() {
    assert_eq!(
        labels("libtorrent_mse_tcp.pcap"),
        [("bittorrent.encrypted".to_string(), Confidence::Payload)]
    );
}

#[test]
fn encrypted_peer_wire_over_utp_is_utp() {
    assert_eq!(
        labels("libtorrent_mse_utp.pcap"),
        [("bittorrent.utp".to_string(), Confidence::Payload)]
    );
}

#[test]
fn plaintext_peer_wire_from_the_handshake_and_mid_flow() {
    assert_eq!(
        labels("libtorrent_plain_tcp.pcap"),
        [("bittorrent".to_string(), Confidence::Payload)]
    );
    // The same connection picked up after both handshakes (frames 4 and 6) went by: the
    // peer-wire message framing alone must label it.
    let mut reader = CaptureReader::open(&data("libtorrent_plain_tcp.pcap")).expect("opens");
    let mut engine = Engine::new(EngineConfig::default());
    let mut key: Option<FlowKey> = None;
    let mut verdict = None;
    let mut n = 0;
    while let Some(frame) = reader.next_frame().expect("reads") {
        n += 1;
        let Ok(d) = packet::decode(frame.link_type, frame.data) else {
            continue;
        };
        if n <= 7 {
            continue;
        }
        let (src, dst) = ((d.src, d.sport).into(), (d.dst, d.dport).into());
        let k = *key.get_or_insert(FlowKey {
            proto: d.proto,
            src,
            dst,
        });
        let dir = if k.src == src {
            Direction::Up
        } else {
            Direction::Down
        };
        if let Some(v) = engine.on_packet(&PacketMeta {
            ts_ns: frame.ts_ns,
            key: k,
            dir,
            payload: d.payload,
            tcp_flags: d.tcp_flags,
            tcp_seq: d.tcp_seq,
        }) {
            verdict = Some(v);
        }
    }
    assert_eq!(verdict.map(|v| v.label), Some(Label::Bittorrent));
}
