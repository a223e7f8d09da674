//! IPFIX messages (RFC 7011): the message header, template sets and data sets of the two
//! flow templates, cut into messages no larger than a configured size.
//!
//! One data record per flow and export, as a biflow (RFC 5103): the forward direction is
//! the subscriber's (`up`), the reverse direction (`down`) is carried by the reverse
//! information elements, private enterprise number 29305 with the forward element's id.
//!
//! | element | id | length |
//! | --- | --- | --- |
//! | sourceIPv4Address / sourceIPv6Address (the subscriber side) | 8 / 27 | 4 / 16 |
//! | destinationIPv4Address / destinationIPv6Address | 12 / 28 | 4 / 16 |
//! | sourceTransportPort, destinationTransportPort | 7, 11 | 2 |
//! | protocolIdentifier | 4 | 1 |
//! | octetDeltaCount, packetDeltaCount (up) | 1, 2 | 8 |
//! | reverse octetDeltaCount, reverse packetDeltaCount (down; PEN 29305) | 1, 2 | 8 |
//! | flowStartMilliseconds, flowEndMilliseconds | 152, 153 | 8 |
//! | flowEndReason | 136 | 1 |
//! | applicationId (RFC 6759: engine 6 "user defined", 3-byte selector = label id) | 95 | 4 |
//! | applicationName (the label, e.g. `bittorrent.utp`, `video.youtube`) | 96 | variable |
//! | applicationCategoryName (the class: p2p, video, web, other) | 372 | variable |
//! | userName (the subscriber id of the policy; empty when none) | 371 | variable |

use std::net::IpAddr;

use crate::MIN_MESSAGE;

/// IPFIX's version number in the message header.
pub const VERSION: u16 = 10;
/// Set id of a template set.
pub const TEMPLATE_SET: u16 = 2;
/// Template id of IPv4 flows.
pub const TEMPLATE_V4: u16 = 256;
/// Template id of IPv6 flows.
pub const TEMPLATE_V6: u16 = 257;
/// The enterprise number of reverse information elements (RFC 5103, section 6.1).
pub const REVERSE_PEN: u32 = 29305;
/// The field length that says "variable".
pub const VARIABLE: u16 = 65535;
/// applicationId's classification engine: "User Defined" (RFC 6759, section 4.1).
pub const ENGINE_USER_DEFINED: u8 = 6;
/// Strings (label, class, subscriber id) are cut to this many bytes.
pub const MAX_STRING: usize = 128;
/// Bytes of the message header.
pub const HEADER_LEN: usize = 16;
/// Bytes of a set header.
pub const SET_HEADER_LEN: usize = 4;

/// Information element ids used in the templates.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const APPLICATION_ID: u16 = 95;
    pub const APPLICATION_NAME: u16 = 96;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    pub const USER_NAME: u16 = 371;
    pub const APPLICATION_CATEGORY_NAME: u16 = 372;
}

/// Why a record was exported (flowEndReason, RFC 5102 / IANA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// No packet for `idle_timeout`.
    Idle = 1,
    /// Still active after `active_timeout` since the last export.
    Active = 2,
    /// The daemon stopped cleanly ("forced end").
    Forced = 4,
    /// The kernel's LRU table replaced the flow ("lack of resources").
    LackOfResources = 5,
}

/// One template field: element id, length, enterprise number.
type Field = (u16, u16, Option<u32>);

/// The fields of a template, in order.
pub fn template_fields(v6: bool) -> Vec<Field> {
    let (src, dst, alen) = if v6 {
        (ie::SOURCE_IPV6_ADDRESS, ie::DESTINATION_IPV6_ADDRESS, 16)
    } else {
        (ie::SOURCE_IPV4_ADDRESS, ie::DESTINATION_IPV4_ADDRESS, 4)
    };
    vec![
        (src, alen, None),
        (dst, alen, None),
        (ie::SOURCE_TRANSPORT_PORT, 2, None),
        (ie::DESTINATION_TRANSPORT_PORT, 2, None),
        (ie::PROTOCOL_IDENTIFIER, 1, None),
        (ie::OCTET_DELTA_COUNT, 8, None),
        (ie::PACKET_DELTA_COUNT, 8, None),
        (ie::OCTET_DELTA_COUNT, 8, Some(REVERSE_PEN)),
        (ie::PACKET_DELTA_COUNT, 8, Some(REVERSE_PEN)),
        (ie::FLOW_START_MILLISECONDS, 8, None),
        (ie::FLOW_END_MILLISECONDS, 8, None),
        (ie::FLOW_END_REASON, 1, None),
        (ie::APPLICATION_ID, 4, None),
        (ie::APPLICATION_NAME, VARIABLE, None),
        (ie::APPLICATION_CATEGORY_NAME, VARIABLE, None),
        (ie::USER_NAME, VARIABLE, None),
    ]
}

/// What one data record says about a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowExport {
    /// `tcp` is 6, `udp` 17.
    pub proto: u8,
    /// Subscriber side (the record's source).
    pub src: IpAddr,
    pub sport: u16,
    /// Internet side.
    pub dst: IpAddr,
    pub dport: u16,
    /// Bytes since the previous record of this flow, `[up, down]`.
    pub bytes: [u64; 2],
    /// Packets since the previous record, `[up, down]`.
    pub packets: [u64; 2],
    /// First packet of the flow, ms since the Unix epoch.
    pub start_ms: u64,
    /// Last packet so far, ms since the Unix epoch.
    pub end_ms: u64,
    pub reason: EndReason,
    /// The label's id (applicationId's selector).
    pub label_id: u16,
    /// The label's name.
    pub label: String,
    /// The label's class.
    pub class: String,
    /// The subscriber id, empty when the address is no policy subscriber's.
    pub subscriber: String,
}

/// `s` cut to at most [`MAX_STRING`] bytes on a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_STRING {
        return s;
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A variable-length field (RFC 7011, section 7): strings are cut to [`MAX_STRING`]
/// bytes, below 255, so the one-octet length form always applies.
fn put_varlen(out: &mut Vec<u8>, s: &str) {
    const _: () = assert!(MAX_STRING < 255);
    let b = cut(s).as_bytes();
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

impl FlowExport {
    /// The template this record uses.
    pub fn template(&self) -> u16 {
        if self.src.is_ipv6() {
            TEMPLATE_V6
        } else {
            TEMPLATE_V4
        }
    }

    /// The data record's bytes, in the template's order.
    pub fn record(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(128);
        put_addr(&mut r, self.src);
        put_addr(&mut r, self.dst);
        r.extend_from_slice(&self.sport.to_be_bytes());
        r.extend_from_slice(&self.dport.to_be_bytes());
        r.push(self.proto);
        for d in 0..2 {
            r.extend_from_slice(&self.bytes[d].to_be_bytes());
            r.extend_from_slice(&self.packets[d].to_be_bytes());
        }
        r.extend_from_slice(&self.start_ms.to_be_bytes());
        r.extend_from_slice(&self.end_ms.to_be_bytes());
        r.push(self.reason as u8);
        r.push(ENGINE_USER_DEFINED);
        r.extend_from_slice(&u32::from(self.label_id).to_be_bytes()[1..]);
        put_varlen(&mut r, &self.label);
        put_varlen(&mut r, &self.class);
        put_varlen(&mut r, &self.subscriber);
        r
    }
}

/// The template set announcing both templates.
pub fn template_set() -> Vec<u8> {
    let mut s = vec![0, 0, 0, 0];
    s[..2].copy_from_slice(&TEMPLATE_SET.to_be_bytes());
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let fields = template_fields(v6);
        s.extend_from_slice(&id.to_be_bytes());
        s.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (ie, len, pen) in fields {
            let id = if pen.is_some() { ie | 0x8000 } else { ie };
            s.extend_from_slice(&id.to_be_bytes());
            s.extend_from_slice(&len.to_be_bytes());
            if let Some(pen) = pen {
                s.extend_from_slice(&pen.to_be_bytes());
            }
        }
    }
    let len = s.len() as u16;
    s[2..4].copy_from_slice(&len.to_be_bytes());
    s
}

/// Builds the messages of one observation domain, keeping its sequence number (the
/// number of data records sent before each message, modulo 2^32).
#[derive(Debug)]
pub struct Encoder {
    domain: u32,
    sequence: u32,
    max_message: usize,
}

/// A message being filled.
struct Message {
    bytes: Vec<u8>,
    /// Where the open data set's header starts, and its template.
    open_set: Option<(usize, u16)>,
    records: u32,
}

impl Encoder {
    /// An encoder for `domain`, messages of at most `max_message` bytes (at least
    /// [`MIN_MESSAGE`]).
    pub fn new(domain: u32, max_message: usize) -> Encoder {
        Encoder {
            domain,
            sequence: 0,
            max_message: max_message.max(MIN_MESSAGE),
        }
    }

    /// The sequence number the next message will carry.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    fn start(&self) -> Message {
        let mut bytes = Vec::with_capacity(self.max_message);
        bytes.extend_from_slice(&VERSION.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]); // length, set when finished
        bytes.extend_from_slice(&[0; 4]); // export time, set when finished
        bytes.extend_from_slice(&[0; 4]); // sequence number, set when finished
        bytes.extend_from_slice(&self.domain.to_be_bytes());
        Message {
            bytes,
            open_set: None,
            records: 0,
        }
    }

    fn close_set(m: &mut Message) {
        if let Some((at, _)) = m.open_set.take() {
            let len = (m.bytes.len() - at) as u16;
            m.bytes[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn finish(&mut self, mut m: Message, export_secs: u32, out: &mut Vec<(Vec<u8>, u32)>) {
        Self::close_set(&mut m);
        let len = m.bytes.len() as u16;
        m.bytes[2..4].copy_from_slice(&len.to_be_bytes());
        m.bytes[4..8].copy_from_slice(&export_secs.to_be_bytes());
        m.bytes[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(m.records);
        out.push((m.bytes, m.records));
    }

    /// The messages carrying `records` (IPv4 and IPv6 may be mixed), each with its number
    /// of data records, with the template set at the front of the first one when
    /// `templates` is set. No records and no templates: no message.
    pub fn encode(
        &mut self,
        records: &[FlowExport],
        templates: bool,
        export_secs: u32,
    ) -> Vec<(Vec<u8>, u32)> {
        let mut out = Vec::new();
        if records.is_empty() && !templates {
            return out;
        }
        let mut m = self.start();
        if templates {
            m.bytes.extend_from_slice(&template_set());
        }
        for r in records {
            let data = r.record();
            let template = r.template();
            let same_set = m.open_set.is_some_and(|(_, t)| t == template);
            let need = data.len() + if same_set { 0 } else { SET_HEADER_LEN };
            if m.bytes.len() + need > self.max_message && m.bytes.len() > HEADER_LEN {
                self.finish(m, export_secs, &mut out);
                m = self.start();
            }
            if m.open_set.is_none_or(|(_, t)| t != template) {
                Self::close_set(&mut m);
                m.open_set = Some((m.bytes.len(), template));
                m.bytes.extend_from_slice(&template.to_be_bytes());
                m.bytes.extend_from_slice(&[0, 0]);
            }
            m.bytes.extend_from_slice(&data);
            m.records += 1;
        }
        self.finish(m, export_secs, &mut out);
        out
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
