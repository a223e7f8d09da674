//! Builds the adversarial corpus in memory: flows of lab addresses (IPv4 and IPv6), played
//! through the [`Engine`] and written to a pcap that `classify_capture` reads back.

#![allow(dead_code, reason = "each test uses part of this module")]

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use peerwarden_classifier::{
    Direction, Engine, EngineConfig, FlowKey, PacketMeta, Verdict, classify_capture,
};

pub const SYN: u8 = 0x02;
pub const SYNACK: u8 = 0x12;
pub const PSH: u8 = 0x18;

/// Address families the corpus runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fam {
    V4,
    V6,
}

/// A subscriber address (100.64.0.0/10, or 2001:db8:100::/48).
pub fn sub(f: Fam, host: u16, port: u16) -> SocketAddr {
    let ip = match f {
        Fam::V4 => IpAddr::V4(Ipv4Addr::new(100, 64, (host >> 8) as u8, host as u8)),
        Fam::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, host)),
    };
    SocketAddr::new(ip, port)
}

/// An internet address (198.51.100.0/24 or 203.0.113.0/24; 2001:db8:5100::/48,
/// 2001:db8:203::/48).
pub fn net(f: Fam, host: u16, port: u16) -> SocketAddr {
    let ip = match f {
        Fam::V4 if host < 256 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, host as u8)),
        Fam::V4 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, host as u8)),
        Fam::V6 if host < 256 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x5100, 0, 0, 0, 0, host)),
        Fam::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x203, 0, 0, 0, 0, host)),
    };
    SocketAddr::new(ip, port)
}

/// One packet of a flow: its direction (up = from `a`), TCP flags, sequence number relative
/// to the direction's first data byte, payload.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub up: bool,
    pub flags: u8,
    pub seq: u32,
    pub data: Vec<u8>,
}

/// A flow from `a` (its initiator, the subscriber side) to `b`, with the label it must get.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub proto: u8,
    pub a: SocketAddr,
    pub b: SocketAddr,
    /// TCP: open with SYN and SYN-ACK.
    pub syn: bool,
    pub pkts: Vec<Pkt>,
    pub want: &'static str,
}

const ISN_UP: u32 = 0x1000_0000;
const ISN_DOWN: u32 = 0x7000_0000;

impl Flow {
    pub fn tcp(name: &str, a: SocketAddr, b: SocketAddr, want: &'static str) -> Flow {
        Flow {
            name: name.into(),
            proto: 6,
            a,
            b,
            syn: true,
            pkts: Vec::new(),
            want,
        }
    }

    pub fn udp(name: &str, a: SocketAddr, b: SocketAddr, want: &'static str) -> Flow {
        Flow {
            proto: 17,
            syn: false,
            ..Flow::tcp(name, a, b, want)
        }
    }

    /// Adds a segment at an explicit relative sequence number.
    pub fn seg(mut self, up: bool, seq: u32, data: &[u8]) -> Flow {
        self.pkts.push(Pkt {
            up,
            flags: PSH,
            seq,
            data: data.to_vec(),
        });
        self
    }

    /// Adds a packet that continues its direction's stream.
    pub fn send(self, up: bool, data: &[u8]) -> Flow {
        let seq = self.next_seq(up);
        self.seg(up, seq, data)
    }

    /// Sends `data` in segments of `n` bytes.
    pub fn split(mut self, up: bool, data: &[u8], n: usize) -> Flow {
        for c in data.chunks(n) {
            self = self.send(up, c);
        }
        self
    }

    fn next_seq(&self, up: bool) -> u32 {
        self.pkts
            .iter()
            .filter(|p| p.up == up)
            .map(|p| p.seq + p.data.len() as u32)
            .max()
            .unwrap_or(0)
    }

    pub fn key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.a,
            dst: self.b,
        }
    }

    /// The packets on the wire: (direction up, flags, absolute seq, payload).
    fn wire(&self) -> Vec<(bool, u8, u32, &[u8])> {
        let mut v = Vec::new();
        if self.proto == 6 && self.syn {
            v.push((true, SYN, ISN_UP, &[][..]));
            v.push((false, SYNACK, ISN_DOWN, &[][..]));
        }
        for p in &self.pkts {
            let isn = if p.up { ISN_UP } else { ISN_DOWN };
            let seq = if self.proto == 6 {
                isn.wrapping_add(1).wrapping_add(p.seq)
            } else {
                0
            };
            v.push((p.up, p.flags, seq, &p.data[..]));
        }
        v
    }
}

/// Plays the flows one after the other through an engine, then ends them all, as
/// `classify` does at the end of a capture. Verdicts in the flows' order.
pub fn run_engine(flows: &[Flow], cfg: EngineConfig) -> (Engine, Vec<Verdict>) {
    let mut e = Engine::new(cfg);
    let mut ts = 1_000_000_000u64;
    for f in flows {
        for (up, flags, seq, data) in f.wire() {
            ts += 1_000_000;
            e.on_packet(&PacketMeta {
                ts_ns: ts,
                key: f.key(),
                dir: if up { Direction::Up } else { Direction::Down },
                payload: data,
                tcp_flags: flags,
                tcp_seq: seq,
            });
        }
    }
    let v = flows.iter().map(|f| e.finish(&f.key(), ts)).collect();
    (e, v)
}

fn ip_packet(f: &Flow, up: bool, flags: u8, seq: u32, data: &[u8]) -> Vec<u8> {
    let (s, d) = if up { (f.a, f.b) } else { (f.b, f.a) };
    let mut l4 = Vec::new();
    l4.extend_from_slice(&s.port().to_be_bytes());
    l4.extend_from_slice(&d.port().to_be_bytes());
    if f.proto == 6 {
        l4.extend_from_slice(&seq.to_be_bytes());
        l4.extend_from_slice(&0u32.to_be_bytes());
        l4.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(data);
    let mut ip = Vec::new();
    match (s.ip(), d.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            ip.extend_from_slice(&[0x45, 0]);
            ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 1, 0x40, 0, 64, f.proto, 0, 0]);
            ip.extend_from_slice(&a.octets());
            ip.extend_from_slice(&b.octets());
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            ip.extend_from_slice(&[0x60, 0, 0, 0]);
            ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[f.proto, 64]);
            ip.extend_from_slice(&a.octets());
            ip.extend_from_slice(&b.octets());
        }
        _ => panic!("mixed families in {}", f.name),
    }
    ip.extend(l4);
    ip
}

/// Writes the flows (one after the other) to a raw-IP pcap in the temp dir.
pub fn write_pcap(name: &str, flows: &[Flow]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "peerwarden-adversarial-{}-{name}.pcap",
        std::process::id()
    ));
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    let mut usec = 0u32;
    for f in flows {
        for (up, flags, seq, data) in f.wire() {
            usec += 1000;
            let pkt = ip_packet(f, up, flags, seq, data);
            out.extend_from_slice(&(1_700_000_000 + usec / 1_000_000).to_le_bytes());
            out.extend_from_slice(&(usec % 1_000_000).to_le_bytes());
            out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            out.extend(pkt);
        }
    }
    let mut file = std::fs::File::create(&path).expect("temp pcap");
    file.write_all(&out).expect("write pcap");
    path
}

/// Labels the flows through `classify_capture` on a pcap of them: one label per flow.
pub fn run_pcap(name: &str, flows: &[Flow]) -> Vec<String> {
    let path = write_pcap(name, flows);
    let records = classify_capture(&path);
    let _ = std::fs::remove_file(&path);
    let records = records.expect("the pcap reads");
    flows
        .iter()
        .map(|f| {
            records
                .iter()
                .find(|r| {
                    r.key.proto == f.proto
                        && (r.key.src == f.a && r.key.dst == f.b
                            || r.key.src == f.b && r.key.dst == f.a)
                })
                .map_or_else(|| "missing".into(), |r| r.verdict.to_string())
        })
        .collect()
}

/// Runs flows both ways and checks every label; the message lists every mismatch.
pub fn check(name: &str, flows: &[Flow]) {
    let (_, verdicts) = run_engine(flows, EngineConfig::default());
    let from_pcap = run_pcap(name, flows);
    let mut bad = Vec::new();
    for ((f, v), p) in flows.iter().zip(&verdicts).zip(&from_pcap) {
        if v.to_string() != f.want || *p != f.want {
            bad.push(format!(
                "{} ({} -> {}): want {}, engine {} ({:?}), pcap {p}",
                f.name, f.a, f.b, f.want, v, v.confidence
            ));
        }
    }
    assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
}

/// The peer-wire handshake with an info hash and peer id.
pub fn handshake(peer: u8) -> Vec<u8> {
    let mut h = vec![19u8];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    h.extend_from_slice(&[0xab; 20]);
    h.extend_from_slice(b"-TR4050-");
    h.extend_from_slice(&[peer; 12]);
    h
}

/// A bitfield and an interested message: what follows a handshake.
pub fn after_handshake() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 9, 5];
    m.extend_from_slice(&[0xff; 8]);
    m.extend_from_slice(&[0, 0, 0, 1, 2]);
    m
}

/// Random-looking bytes (xorshift).
pub fn random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}
