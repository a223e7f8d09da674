//! The offline driver: read a capture, decode its packets, track flows, run the engine, and
//! produce one record per flow in first-seen order.

use std::{collections::BTreeMap, fmt::Write as _, io::Read, net::SocketAddr, path::Path};

use crate::{
    capture::{CaptureError, CaptureReader},
    engine::{Engine, EngineConfig},
    flow::{Direction, FlowKey, FxMap},
    packet::{self, TCP},
    shape::Shape,
    verdict::{PacketMeta, Verdict},
};

/// One flow of a capture, as `peerwarden classify` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// The 5-tuple; `src` is the flow's initiator (the sender of its first packet).
    pub key: FlowKey,
    /// The final verdict.
    pub verdict: Verdict,
    /// Packets `[up, down]`; up is the initiator's direction.
    pub packets: [u64; 2],
    /// Bytes on the wire (whole frames) `[up, down]`.
    pub bytes: [u64; 2],
    /// Capture time of the first packet, ns since the Unix epoch.
    pub first_ns: u64,
    /// Capture time of the last packet.
    pub last_ns: u64,
}

impl FlowRecord {
    /// The flow JSON of DESIGN.md, one line, fields in a fixed order.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(320);
        let proto = if self.key.proto == TCP { "tcp" } else { "udp" };
        let _ = write!(
            s,
            r#"{{"proto":"{proto}","src":"{}","sport":{},"dst":"{}","dport":{},"label":"#,
            self.key.src.ip(),
            self.key.src.port(),
            self.key.dst.ip(),
            self.key.dst.port()
        );
        json_str(&mut s, &self.verdict.to_string());
        let _ = write!(
            s,
            r#","class":"{}","confidence":"{}","subscriber":null,"packets":[{},{}],"bytes":[{},{}],"first_seen":"{}","last_seen":"{}"}}"#,
            self.verdict.class().name(),
            self.verdict.confidence.name(),
            self.packets[0],
            self.packets[1],
            self.bytes[0],
            self.bytes[1],
            rfc3339(self.first_ns),
            rfc3339(self.last_ns)
        );
        s
    }
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 UTC with microseconds, e.g. `2014-03-12T10:11:12.123456Z`.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The result of reading one capture: its flows, and the error that stopped the reading
/// early, if one did (the flows seen before it are kept).
#[derive(Debug)]
pub struct CaptureOutcome {
    /// Flows in first-seen order.
    pub flows: Vec<FlowRecord>,
    /// Frames read.
    pub frames: u64,
    /// Their bytes on the wire.
    pub wire_bytes: u64,
    /// Their captured bytes (what the classifier could look at).
    pub captured_bytes: u64,
    /// Why the reading stopped early.
    pub error: Option<CaptureError>,
}

/// Labels every flow of a capture file. Fails if the file cannot be read to its end; see
/// [`classify_capture_partial`] to keep the flows read before an error.
pub fn classify_capture(path: &Path) -> Result<Vec<FlowRecord>, CaptureError> {
    let out = classify_capture_partial(path, EngineConfig::default(), &[]);
    match out.error {
        Some(e) => Err(e),
        None => Ok(out.flows),
    }
}

/// Labels every flow of a capture file with a fresh engine, extra video hosts added.
pub fn classify_capture_partial(
    path: &Path,
    cfg: EngineConfig,
    video_hosts: &[(String, String)],
) -> CaptureOutcome {
    match CaptureReader::open(path) {
        Ok(r) => classify_reader(r, cfg, video_hosts),
        Err(e) => CaptureOutcome {
            flows: Vec::new(),
            frames: 0,
            wire_bytes: 0,
            captured_bytes: 0,
            error: Some(e),
        },
    }
}

/// Canonical flow identity: the endpoints in sorted order.
#[derive(Hash, PartialEq, Eq)]
struct Canon(u8, SocketAddr, SocketAddr);

/// Labels every flow read from `reader`.
pub fn classify_reader<R: Read>(
    mut reader: CaptureReader<R>,
    cfg: EngineConfig,
    video_hosts: &[(String, String)],
) -> CaptureOutcome {
    let mut engine = Engine::new(cfg);
    for (s, n) in video_hosts {
        engine.add_video_host(s, n);
    }
    let mut flows: Vec<FlowRecord> = Vec::new();
    // Each flow's shape, from its packets' times and sizes on the wire (flows' order).
    let mut shapes: Vec<Shape> = Vec::new();
    let mut index: FxMap<Canon, usize> = FxMap::default();
    let (mut frames, mut wire_bytes, mut captured_bytes) = (0u64, 0u64, 0u64);
    let mut last_ts = 0u64;
    let error = loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        frames += 1;
        wire_bytes += frame.wire_len as u64;
        captured_bytes += frame.data.len() as u64;
        last_ts = last_ts.max(frame.ts_ns);
        let Ok(d) = packet::decode(frame.link_type, frame.data) else {
            continue;
        };
        let (s, t) = (
            SocketAddr::new(d.src, d.sport),
            SocketAddr::new(d.dst, d.dport),
        );
        let canon = if s <= t {
            Canon(d.proto, s, t)
        } else {
            Canon(d.proto, t, s)
        };
        let i = *index.entry(canon).or_insert_with(|| {
            flows.push(FlowRecord {
                key: FlowKey {
                    proto: d.proto,
                    src: s,
                    dst: t,
                },
                verdict: Verdict::unknown(),
                packets: [0; 2],
                bytes: [0; 2],
                first_ns: frame.ts_ns,
                last_ns: frame.ts_ns,
            });
            shapes.push(Shape::default());
            flows.len() - 1
        });
        let rec = &mut flows[i];
        let dir = if rec.key.src == s {
            Direction::Up
        } else {
            Direction::Down
        };
        rec.packets[dir.index()] += 1;
        rec.bytes[dir.index()] += frame.wire_len as u64;
        rec.first_ns = rec.first_ns.min(frame.ts_ns);
        rec.last_ns = rec.last_ns.max(frame.ts_ns);
        let wire = frame.wire_len as u64;
        match dir {
            Direction::Up => shapes[i].observe(frame.ts_ns, wire, 0),
            Direction::Down => shapes[i].observe(frame.ts_ns, 0, wire),
        }
        let key = rec.key;
        engine.on_packet(&PacketMeta {
            ts_ns: frame.ts_ns,
            key,
            dir,
            payload: d.payload,
            tcp_flags: d.tcp_flags,
            tcp_seq: d.tcp_seq,
        });
    };
    for (rec, shape) in flows.iter_mut().zip(&shapes) {
        rec.verdict = engine.finish(&rec.key, last_ts);
        if shape.is_video() && Shape::applies_to(&rec.verdict) {
            rec.verdict = Shape::verdict();
        }
    }
    CaptureOutcome {
        flows,
        frames,
        wire_bytes,
        captured_bytes,
        error,
    }
}

/// Per-label totals for the table format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LabelTotals {
    /// Flows.
    pub flows: u64,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes on the wire, both directions.
    pub bytes: u64,
}

/// Sums flows per printed label name (`video.youtube` separately from `video.netflix`),
/// sorted by class then name; each entry carries its class name.
pub fn summarize<'a>(
    flows: impl IntoIterator<Item = &'a FlowRecord>,
) -> Vec<(String, &'static str, LabelTotals)> {
    let mut m: BTreeMap<(u8, String), (&'static str, LabelTotals)> = BTreeMap::new();
    for f in flows {
        let class = f.verdict.class();
        let e = m
            .entry((class as u8, f.verdict.to_string()))
            .or_insert((class.name(), LabelTotals::default()));
        e.1.flows += 1;
        e.1.packets += f.packets[0] + f.packets[1];
        e.1.bytes += f.bytes[0] + f.bytes[1];
    }
    m.into_iter()
        .map(|((_, name), (class, t))| (name, class, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::pcap::tests::pcap_le;
    use crate::packet::tests::{eth, ipv4, tcp};

    #[test]
    fn pcapng_interfaces_with_their_own_link_types() {
        use crate::capture::pcapng::tests::pcapng;
        let l4 = crate::packet::tests::udp(40000, 53, b"x");
        let raw = ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], &l4);
        let eth_frame = eth(0x0800, &ipv4(17, [10, 0, 0, 3], [10, 0, 0, 4], &l4));
        let file = pcapng(
            &[101, 1],
            &[(0, 1_000_000, &raw), (1, 2_000_000, &eth_frame)],
        );
        let out = classify_reader(
            CaptureReader::new(&file[..]).expect("pcapng"),
            EngineConfig::default(),
            &[],
        );
        assert!(out.error.is_none());
        let srcs: Vec<String> = out.flows.iter().map(|f| f.key.src.to_string()).collect();
        assert_eq!(srcs, ["10.0.0.1:40000", "10.0.0.3:40000"]);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_394_619_072_123_456_789),
            "2014-03-12T10:11:12.123456Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn flows_in_first_seen_order_with_initiator_as_src() {
        let mut hs = vec![19u8];
        hs.extend_from_slice(b"BitTorrent protocol");
        hs.extend_from_slice(&[0; 48]);
        let a = [100, 64, 1, 10];
        let b = [198, 51, 100, 7];
        let p1 = eth(0x0800, &ipv4(6, a, b, &tcp(51413, 6881, 1, 0x18, &hs)));
        let p2 = eth(0x0800, &ipv4(6, b, a, &tcp(6881, 51413, 9, 0x18, &hs)));
        let p3 = eth(
            0x0800,
            &ipv4(
                6,
                a,
                b,
                &tcp(40000, 80, 1, 0x18, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ),
        );
        let file = pcap_le(
            1,
            &[
                (1_394_619_072, 0, &p1),
                (1_394_619_073, 5, &p2),
                (1_394_619_074, 0, &p3),
            ],
        );
        let r = CaptureReader::new(&file[..]).expect("pcap");
        let out = classify_reader(r, EngineConfig::default(), &[]);
        assert!(out.error.is_none());
        assert_eq!(out.flows.len(), 2);
        let j = out.flows[0].to_json();
        assert_eq!(
            j,
            format!(
                r#"{{"proto":"tcp","src":"100.64.1.10","sport":51413,"dst":"198.51.100.7","dport":6881,"label":"bittorrent","class":"p2p","confidence":"payload","subscriber":null,"packets":[1,1],"bytes":[{},{}],"first_seen":"2014-03-12T10:11:12.000000Z","last_seen":"2014-03-12T10:11:13.000005Z"}}"#,
                p1.len(),
                p2.len()
            )
        );
        assert_eq!(out.flows[1].verdict.to_string(), "http");
        let t = summarize(&out.flows);
        assert_eq!(
            t.iter()
                .map(|(n, c, _)| (n.as_str(), *c))
                .collect::<Vec<_>>(),
            [("bittorrent", "p2p"), ("http", "web")]
        );
    }

    /// A TLS flow to a name in no catalogue: a ClientHello, then `segments` fetches `period`
    /// seconds apart, each a 500-byte request and 800 packets of 1400 bytes back.
    fn tls_fetches(segments: u32, period: u32) -> Vec<u8> {
        let msg = crate::protocols::tls::tests::client_hello_msg(Some("media.unlisted.test"));
        let mut hello = vec![0x16, 3, 1];
        hello.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        hello.extend_from_slice(&msg);
        let (a, b) = ([100, 64, 1, 10], [198, 51, 100, 7]);
        let up = |seq, p: &[u8]| eth(0x0800, &ipv4(6, a, b, &tcp(50000, 443, seq, 0x18, p)));
        let down = |seq, p: &[u8]| eth(0x0800, &ipv4(6, b, a, &tcp(443, 50000, seq, 0x18, p)));
        let mut frames = vec![(1_700_000_000, 0, up(1, &hello))];
        let (request, data) = ([0x17u8; 500], [0x17u8; 1400]);
        for i in 0..segments {
            let t = 1_700_000_001 + i * period;
            frames.push((t, 0, up(2 + i, &request)));
            for k in 0..800u32 {
                frames.push((t, 20_000 + k * 300, down(k * 1400, &data)));
            }
        }
        let refs: Vec<(u32, u32, &[u8])> = frames
            .iter()
            .map(|(s, u, f)| (*s, *u, f.as_slice()))
            .collect();
        pcap_le(1, &refs)
    }

    #[test]
    fn tls_to_an_unknown_name_fetching_segments_is_video_by_its_shape() {
        let label = |segments, period| {
            let file = tls_fetches(segments, period);
            let out = classify_reader(
                CaptureReader::new(&file[..]).expect("pcap"),
                EngineConfig::default(),
                &[],
            );
            assert_eq!(out.flows.len(), 1);
            out.flows[0].verdict.to_string()
        };
        assert_eq!(label(6, 4), "video.behavioural");
        // Four segments are three cycles: not yet.
        assert_eq!(label(4, 4), "tls");
        // The same segments all fetched at once are one burst: a download.
        assert_eq!(label(6, 0), "tls");
    }
}

#[cfg(test)]
#[path = "offline_dns_tests.rs"]
mod dns_tests;
