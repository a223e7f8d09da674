//! DNS messages read in full (RFC 1035 §4): the header, the question, and the answer
//! section's A, AAAA and CNAME records, for the DNS-assisted labels (`crate::dns_hints`).
//!
//! Everything read comes from a subscriber's resolver or from anyone forging one, so the
//! work is bounded whatever the bytes say: at most [`MAX_RECORDS`] answer records, names of
//! at most 255 bytes, and a compression pointer must point strictly before the place it is
//! read from (a pointer loop is impossible, and the hops are counted anyway). Anything out
//! of bounds or malformed makes the whole message unreadable (`None`), never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Answer records read at most; the rest of a longer answer section is ignored.
pub const MAX_RECORDS: usize = 64;
/// A CNAME chain is followed for at most this many links.
pub const MAX_CHAIN: usize = 16;
const MAX_NAME: usize = 255;
const MAX_HOPS: usize = 32;

/// Record types read.
pub const TYPE_A: u16 = 1;
/// CNAME.
pub const TYPE_CNAME: u16 = 5;
/// AAAA.
pub const TYPE_AAAA: u16 = 28;

/// A record's data, as far as the labels need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An address (A or AAAA).
    Addr(IpAddr),
    /// A canonical name.
    Cname(String),
    /// Any other type (its number).
    Other(u16),
}

/// One answer record: owner name (lower case, no trailing dot), TTL in seconds, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name.
    pub name: String,
    /// Seconds the answer may be cached.
    pub ttl: u32,
    /// The data.
    pub data: RData,
}

/// A message's header fields, first question and (for responses) answer records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id.
    pub id: u16,
    /// QR: a response.
    pub response: bool,
    /// Response code (0: no error).
    pub rcode: u8,
    /// The first question's name (lower case, no trailing dot) and type.
    pub question: Option<(String, u16)>,
    /// The answer section's records (at most [`MAX_RECORDS`]).
    pub answers: Vec<Record>,
}

/// Reads a message. `None` if it is malformed anywhere it is read.
pub fn parse(m: &[u8]) -> Option<Message> {
    let h = m.get(..12)?;
    let flags = u16::from_be_bytes([h[2], h[3]]);
    let qd = u16::from_be_bytes([h[4], h[5]]);
    let an = u16::from_be_bytes([h[6], h[7]]) as usize;
    let mut off = 12;
    let mut question = None;
    for i in 0..qd.min(4) {
        let (name, next) = read_name(m, off)?;
        let qtype = u16::from_be_bytes(m.get(next..next + 2)?.try_into().ok()?);
        off = next + 4;
        if off > m.len() {
            return None;
        }
        if i == 0 {
            question = Some((name, qtype));
        }
    }
    if qd > 4 {
        // More questions than any resolver sends: not read further.
        return None;
    }
    let mut answers = Vec::new();
    for _ in 0..an.min(MAX_RECORDS) {
        let (name, next) = read_name(m, off)?;
        let fixed = m.get(next..next + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let start = next + 10;
        let rdata = m.get(start..start + rdlen)?;
        let data = match (rtype, rdlen) {
            (TYPE_A, 4) => RData::Addr(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let b: [u8; 16] = rdata.try_into().ok()?;
                RData::Addr(IpAddr::V6(Ipv6Addr::from(b)))
            }
            (TYPE_A | TYPE_AAAA, _) => return None,
            (TYPE_CNAME, _) => {
                let (target, end) = read_name(m, start)?;
                if end != start + rdlen {
                    return None;
                }
                RData::Cname(target)
            }
            (t, _) => RData::Other(t),
        };
        answers.push(Record { name, ttl, data });
        off = start + rdlen;
    }
    Some(Message {
        id: u16::from_be_bytes([h[0], h[1]]),
        response: flags & 0x8000 != 0,
        rcode: (flags & 0x000f) as u8,
        question,
        answers,
    })
}

/// Reads the name at `off`: the name (lower case, dot-separated, no trailing dot; the root
/// is "") and the offset just past it where it was read (past the first pointer, if any).
pub fn read_name(m: &[u8], off: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut pos = off;
    // Where reading resumes in the record: set at the first pointer.
    let mut end = None;
    // A pointer must point before the lowest place read so far: no loops.
    let mut floor = off;
    for _ in 0..MAX_HOPS + 128 {
        let l = *m.get(pos)?;
        match l & 0xc0 {
            0x00 => {
                if l == 0 {
                    return Some((name, end.unwrap_or(pos + 1)));
                }
                let label = m.get(pos + 1..pos + 1 + l as usize)?;
                if name.len() + label.len() + 1 > MAX_NAME {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &c in label {
                    // Names are compared as ASCII, case-insensitively; a byte that could not
                    // be in a host name makes the whole name useless for the catalogue.
                    if c == b'.' || !c.is_ascii_graphic() {
                        return None;
                    }
                    name.push(c.to_ascii_lowercase() as char);
                }
                pos += 1 + l as usize;
            }
            0xc0 => {
                let b = *m.get(pos + 1)?;
                let target = (((l & 0x3f) as usize) << 8) | b as usize;
                if target >= floor {
                    return None;
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            // 0x40 and 0x80: extended and reserved label types (RFC 6891 §5).
            _ => return None,
        }
    }
    None
}

/// What an answer says about its question: the names of the CNAME chain from the question
/// (the question first), and the A/AAAA addresses the chain ends at, with their TTLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// The question's name, then each CNAME target in order.
    pub names: Vec<String>,
    /// Addresses owned by a name of the chain, with their TTLs (seconds).
    pub addrs: Vec<(IpAddr, u32)>,
}

/// Follows the CNAME chain from the message's question through its answer records.
pub fn resolve(msg: &Message) -> Option<Resolution> {
    let (q, _) = msg.question.as_ref()?;
    let mut names = vec![q.clone()];
    for _ in 0..MAX_CHAIN {
        let last = names.last()?;
        let next = msg.answers.iter().find_map(|r| match &r.data {
            RData::Cname(t) if r.name == *last => Some(t.clone()),
            _ => None,
        });
        match next {
            Some(t) if !names.contains(&t) => names.push(t),
            _ => break,
        }
    }
    let addrs = msg
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::Addr(a) if names.contains(&r.name) => Some((a, r.ttl)),
            _ => None,
        })
        .collect();
    Some(Resolution { names, addrs })
}

/// DNS over TCP (RFC 1035 §4.2.2; RFC 7766): each message after a 2-byte length. Returns
/// the whole messages at the start of `stream` and how many bytes they took; a message not
/// yet complete stays for later.
pub fn tcp_messages(stream: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some(len) = stream.get(off..off + 2) {
        let n = u16::from_be_bytes([len[0], len[1]]) as usize;
        let Some(msg) = stream.get(off + 2..off + 2 + n) else {
            break;
        };
        out.push(msg);
        off += 2 + n;
    }
    (out, off)
}

#[cfg(test)]
#[path = "dns_message_tests.rs"]
pub(crate) mod tests;
