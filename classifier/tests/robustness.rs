//! Fuzz-ish robustness: random bytes, truncations and bit flips through the capture reader,
//! the packet decoder and the engine must never panic (nor allocate without bound).
//! Deterministic: a fixed-seed xorshift generator, so a failure reproduces.

mod support;

use peerwarden_classifier::{
    CaptureReader, Direction, Engine, EngineConfig, FlowKey, PacketMeta, offline::classify_reader,
    packet,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Reads a capture held in memory to its end (or its first error).
fn drain(bytes: &[u8]) {
    if let Ok(r) = CaptureReader::new(bytes) {
        let _ = classify_reader(r, EngineConfig::default(), &[]);
    }
}

#[test]
fn random_files_and_headers() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let headers: [&[u8]; 5] = [
        &[0xd4, 0xc3, 0xb2, 0xa1],
        &[0xa1, 0xb2, 0xc3, 0xd4],
        &[0x4d, 0x3c, 0xb2, 0xa1],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        &[],
    ];
    for i in 0..3000 {
        let mut f = headers[i % headers.len()].to_vec();
        let n = rng.below(600);
        f.extend(rng.bytes(n));
        drain(&f);
    }
}

#[test]
fn corpus_files_truncated_and_flipped() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let files = support::captures();
    // A spread of captures, kept small so the test stays quick in debug builds.
    for path in files.iter().step_by(7) {
        let Ok(data) = std::fs::read(path) else {
            continue;
        };
        if data.len() > 400_000 {
            continue;
        }
        for _ in 0..3 {
            let cut = rng.below(data.len() + 1);
            drain(&data[..cut]);
            let mut flipped = data.clone();
            for _ in 0..1 + rng.below(20) {
                let at = rng.below(flipped.len());
                flipped[at] ^= 1 << rng.below(8);
            }
            drain(&flipped);
        }
    }
}

#[test]
fn random_frames_through_every_link_type() {
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let n = rng.below(200);
        let mut f = rng.bytes(n);
        // Often a plausible start, so the decoder goes deep.
        match rng.below(4) {
            0 if f.len() > 14 => f[12..14].copy_from_slice(&[0x08, 0x00]),
            1 if f.len() > 14 => {
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                f[14] = 0x60;
            }
            2 if !f.is_empty() => f[0] = 0x45,
            _ => {}
        }
        for lt in [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 9999] {
            let _ = packet::decode(lt, &f);
        }
    }
}

#[test]
fn random_payloads_through_the_engine() {
    let mut rng = Rng(0xdead_beef);
    let prefixes: [&[u8]; 12] = [
        b"",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
        &[0xc3, 0, 0, 0, 1, 8],
        &[0xcd, 0x6b, 0x33, 0x43, 0xcf, 8],
        b"GET /a.m3u8 HTTP/1.1\r\nHost: ",
        b"HTTP/1.1 200 OK\r\nContent-Type: ",
        &[0, 0, 0, 13, 6],
        &[0xe3, 0x20, 0, 0, 0, 1, 16],
        b"\x13BitTorrent protocol",
        b"d1:ad2:id20:",
        &[0x41, 0, 0x12, 0x34],
        &[3],
    ];
    let mut engine = Engine::new(EngineConfig::default());
    for i in 0..40_000u64 {
        let proto = if rng.below(2) == 0 { 6 } else { 17 };
        let key = FlowKey {
            proto,
            src: (
                [100, 64, 0, rng.below(4) as u8],
                40000 + rng.below(8) as u16,
            )
                .into(),
            dst: (
                [198, 51, 100, rng.below(4) as u8],
                [443, 80, 6881, 30000][rng.below(4)],
            )
                .into(),
        };
        let mut payload = prefixes[rng.below(prefixes.len())].to_vec();
        let n = rng.below(1500);
        payload.extend(rng.bytes(n));
        let dir = if rng.below(2) == 0 {
            Direction::Up
        } else {
            Direction::Down
        };
        let _ = engine.on_packet(&PacketMeta {
            ts_ns: i * 1_000_000,
            key,
            dir,
            payload: &payload,
            tcp_flags: rng.next() as u8,
            tcp_seq: rng.next() as u32,
        });
        if i % 5000 == 0 {
            let _ = engine.expire(i * 1_000_000, 1_000_000_000);
        }
    }
    let _ = engine.finish_all(u64::MAX);
    assert_eq!(engine.flow_count(), 0);
}
