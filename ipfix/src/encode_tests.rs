//! The encoder's output read back by a decoder written from RFC 7011's figures (message
//! header, figure F; set header, figure I; template record, figures K and M; variable
//! length, figure R), not from the encoder's code.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::*;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A field value as read: a number (1 to 8 bytes), an address or bytes.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(u64),
    Addr(IpAddr),
    Bytes(Vec<u8>),
}

/// A decoded message: header fields, templates (id -> [(ie, pen, len)]), records as
/// `(template, {(ie, pen): value})`.
#[derive(Debug)]
struct Decoded {
    version: u16,
    length: u16,
    export_time: u32,
    sequence: u32,
    domain: u32,
    templates: HashMap<u16, Vec<(u16, u32, u16)>>,
    records: Vec<(u16, Record)>,
}

/// A data record's fields by `(element id, enterprise number)`.
type Record = HashMap<(u16, u32), Value>;

/// Decodes one message; `known` holds templates from earlier messages.
fn decode(m: &[u8], known: &HashMap<u16, Vec<(u16, u32, u16)>>) -> Decoded {
    assert!(m.len() >= 16, "a message header is 16 octets");
    let mut d = Decoded {
        version: be16(m, 0),
        length: be16(m, 2),
        export_time: be32(m, 4),
        sequence: be32(m, 8),
        domain: be32(m, 12),
        templates: HashMap::new(),
        records: Vec::new(),
    };
    assert_eq!(
        usize::from(d.length),
        m.len(),
        "length covers the whole message"
    );
    let mut at = 16;
    while at < m.len() {
        let set_id = be16(m, at);
        let set_len = usize::from(be16(m, at + 2));
        assert!(
            set_len >= 4 && at + set_len <= m.len(),
            "set inside the message"
        );
        let body = &m[at + 4..at + set_len];
        if set_id == 2 {
            let mut p = 0;
            while p + 4 <= body.len() {
                let tid = be16(body, p);
                let count = be16(body, p + 2);
                p += 4;
                let mut fields = Vec::new();
                for _ in 0..count {
                    let raw = be16(body, p);
                    let len = be16(body, p + 2);
                    p += 4;
                    let pen = if raw & 0x8000 != 0 {
                        p += 4;
                        be32(body, p - 4)
                    } else {
                        0
                    };
                    fields.push((raw & 0x7fff, pen, len));
                }
                d.templates.insert(tid, fields);
            }
        } else if set_id >= 256 {
            let t = d
                .templates
                .get(&set_id)
                .or_else(|| known.get(&set_id))
                .unwrap_or_else(|| panic!("data set {set_id} before its template"))
                .clone();
            let mut p = 0;
            // Records until the set ends (this encoder pads nothing).
            while p < body.len() {
                let mut rec = HashMap::new();
                for &(ie, pen, len) in &t {
                    let n = if len == 65535 {
                        let first = usize::from(body[p]);
                        p += 1;
                        if first == 255 {
                            p += 2;
                            usize::from(be16(body, p - 2))
                        } else {
                            first
                        }
                    } else {
                        usize::from(len)
                    };
                    let raw = &body[p..p + n];
                    p += n;
                    let v = match (ie, n) {
                        (8 | 12, 4) => Value::Addr(IpAddr::V4(Ipv4Addr::from(
                            <[u8; 4]>::try_from(raw).expect("4"),
                        ))),
                        (27 | 28, 16) => Value::Addr(IpAddr::V6(Ipv6Addr::from(
                            <[u8; 16]>::try_from(raw).expect("16"),
                        ))),
                        (95 | 96 | 371 | 372, _) => Value::Bytes(raw.to_vec()),
                        (_, 1..=8) => {
                            Value::Num(raw.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
                        }
                        _ => Value::Bytes(raw.to_vec()),
                    };
                    rec.insert((ie, pen), v);
                }
                d.records.push((set_id, rec));
            }
        } else {
            panic!("unexpected set id {set_id}");
        }
        at += set_len;
    }
    d
}

fn flow(i: u16, v6: bool) -> FlowExport {
    let (src, dst) = if v6 {
        (
            "2001:db8:1::10".parse().expect("addr"),
            "2001:db8:ff::7".parse().expect("addr"),
        )
    } else {
        (
            IpAddr::from([100, 64, 1, 10]),
            IpAddr::from([198, 51, 100, 7]),
        )
    };
    FlowExport {
        proto: 6,
        src,
        sport: 40000 + i,
        dst,
        dport: 6881,
        bytes: [1000 + u64::from(i), 5_000_000_000 + u64::from(i)],
        packets: [10, 3_500_000],
        start_ms: 1_790_000_000_000,
        end_ms: 1_790_000_012_345,
        reason: EndReason::Idle,
        label_id: 2,
        label: "bittorrent.utp".into(),
        class: "p2p".into(),
        subscriber: "alice".into(),
    }
}

fn s(v: &str) -> Value {
    Value::Bytes(v.as_bytes().to_vec())
}

#[test]
fn header_templates_and_one_record_read_back() {
    let mut e = Encoder::new(7, 1400);
    let out = e.encode(&[flow(1, false)], true, 1_790_000_100);
    assert_eq!(out.len(), 1);
    let (m, n) = &out[0];
    assert_eq!(*n, 1);
    let d = decode(m, &HashMap::new());
    assert_eq!(
        (d.version, d.export_time, d.sequence, d.domain),
        (10, 1_790_000_100, 0, 7)
    );
    // Template 256: 16 fields, the reverse counters under PEN 29305.
    let t = &d.templates[&256];
    assert_eq!(t.len(), 16);
    assert_eq!(t[0], (8, 0, 4));
    assert_eq!(t[7], (1, 29305, 8));
    assert_eq!(t[8], (2, 29305, 8));
    assert_eq!(t[13], (96, 0, 65535));
    assert_eq!(d.templates[&257][0], (27, 0, 16));
    let (tid, r) = &d.records[0];
    assert_eq!(*tid, 256);
    assert_eq!(r[&(8, 0)], Value::Addr(IpAddr::from([100, 64, 1, 10])));
    assert_eq!(r[&(12, 0)], Value::Addr(IpAddr::from([198, 51, 100, 7])));
    assert_eq!(
        (r[&(7, 0)].clone(), r[&(11, 0)].clone()),
        (Value::Num(40001), Value::Num(6881))
    );
    assert_eq!(r[&(4, 0)], Value::Num(6));
    assert_eq!(r[&(1, 0)], Value::Num(1001));
    assert_eq!(r[&(2, 0)], Value::Num(10));
    assert_eq!(r[&(1, 29305)], Value::Num(5_000_000_001));
    assert_eq!(r[&(2, 29305)], Value::Num(3_500_000));
    assert_eq!(r[&(152, 0)], Value::Num(1_790_000_000_000));
    assert_eq!(r[&(153, 0)], Value::Num(1_790_000_012_345));
    assert_eq!(r[&(136, 0)], Value::Num(1));
    assert_eq!(r[&(95, 0)], Value::Bytes(vec![6, 0, 0, 2]));
    assert_eq!(r[&(96, 0)], s("bittorrent.utp"));
    assert_eq!(r[&(372, 0)], s("p2p"));
    assert_eq!(r[&(371, 0)], s("alice"));
}

#[test]
fn template_set_bytes_follow_the_rfc_layout() {
    let t = template_set();
    // Set header: id 2, length of the whole set.
    assert_eq!(&t[..2], &[0, 2]);
    assert_eq!(usize::from(be16(&t, 2)), t.len());
    // Template record header: id 256, 16 fields; first field sourceIPv4Address, 4 octets.
    assert_eq!(&t[4..12], &[1, 0, 0, 16, 0, 8, 0, 4]);
    // Two templates of 16 fields, two of them enterprise-specific (8 octets each).
    assert_eq!(t.len(), 4 + 2 * (4 + 14 * 4 + 2 * 8));
    // The reverse octetDeltaCount: enterprise bit + id 1, length 8, PEN 29305.
    let rev = [0x80, 0x01, 0, 8, 0, 0, 0x72, 0x79];
    assert!(
        t.windows(8).any(|w| w == rev),
        "reverse octetDeltaCount specifier"
    );
}

#[test]
fn messages_stay_under_the_size_and_sequence_counts_records() {
    let mut e = Encoder::new(1, 600);
    let flows: Vec<FlowExport> = (0..40).map(|i| flow(i, i % 2 == 1)).collect();
    let mut sorted = flows.clone();
    sorted.sort_by_key(FlowExport::template);
    let out = e.encode(&sorted, true, 1);
    assert!(
        out.len() > 5,
        "40 records in 600-byte messages: {}",
        out.len()
    );
    let mut known = HashMap::new();
    let mut expected_seq = 0u32;
    let mut got = Vec::new();
    for (m, n) in &out {
        assert!(m.len() <= 600, "message of {} bytes", m.len());
        let d = decode(m, &known);
        known.extend(d.templates.clone());
        assert_eq!(
            d.sequence, expected_seq,
            "sequence = records before the message"
        );
        assert_eq!(d.records.len() as u32, *n);
        expected_seq += n;
        for (tid, r) in d.records {
            let Value::Num(sport) = r[&(7, 0)] else {
                panic!("port")
            };
            got.push((tid, sport as u16 - 40000));
        }
    }
    assert_eq!(e.sequence(), 40);
    let mut ids: Vec<u16> = got.iter().map(|g| g.1).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..40).collect::<Vec<_>>(), "every record once");
    assert!(
        got.iter()
            .all(|(t, i)| *t == if i % 2 == 1 { 257 } else { 256 })
    );
    // The next batch continues the sequence; no templates asked for, none sent.
    let out = e.encode(&[flow(99, false)], false, 2);
    let d = decode(&out[0].0, &known);
    assert_eq!(d.sequence, 40);
    assert!(d.templates.is_empty());
}

#[test]
fn long_strings_are_cut_on_a_character_boundary() {
    let mut f = flow(1, true);
    f.subscriber = "é".repeat(200); // 400 bytes, cut on a character boundary
    let mut e = Encoder::new(1, MIN_MESSAGE);
    let out = e.encode(&[f], true, 1);
    // The templates did not fit beside the record: a message of their own first.
    let mut known = HashMap::new();
    let mut records = Vec::new();
    for (m, _) in &out {
        assert!(m.len() <= MIN_MESSAGE);
        let d = decode(m, &known);
        known.extend(d.templates);
        records.extend(d.records);
    }
    assert_eq!(records.len(), 1);
    let Value::Bytes(user) = &records[0].1[&(371, 0)] else {
        panic!("userName")
    };
    assert_eq!(user.len(), MAX_STRING);
    assert!(std::str::from_utf8(user).is_ok());
    // Figure R: one length octet (strings are cut below 255).
    let mut v = Vec::new();
    put_varlen(&mut v, &"x".repeat(300));
    assert_eq!((v[0], v.len()), (128, 129));
    let mut v = Vec::new();
    put_varlen(&mut v, "bittorrent");
    assert_eq!(v[0], 10);
}

#[test]
fn nothing_to_send_sends_nothing() {
    let mut e = Encoder::new(1, 1400);
    assert!(e.encode(&[], false, 1).is_empty());
    let out = e.encode(&[], true, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 0);
    assert_eq!(decode(&out[0].0, &HashMap::new()).templates.len(), 2);
}
