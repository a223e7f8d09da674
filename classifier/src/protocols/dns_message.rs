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
/// HTTPS (RFC 9460), which carries a service's ECH configurations.
pub const TYPE_HTTPS: u16 = 65;
/// The `ech` SvcParamKey (RFC 9460 §14.3.2; its value is an ECHConfigList).
const SVC_ECH: u16 = 5;
/// ECH configurations read at most from one record.
const MAX_ECH_CONFIGS: usize = 4;

/// A record's data, as far as the labels need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An address (A or AAAA).
    Addr(IpAddr),
    /// A canonical name.
    Cname(String),
    /// An HTTPS record: the public names of the ECH configurations it offers (the outer
    /// SNI a client then sends in place of the service's name).
    Https(Vec<String>),
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
            (TYPE_HTTPS, _) => RData::Https(ech_public_names(rdata).unwrap_or_default()),
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

/// The ECH public names of an HTTPS record's data (SvcPriority, TargetName, SvcParams);
/// `None` when it is malformed, empty when it offers no ECH.
fn ech_public_names(rdata: &[u8]) -> Option<Vec<String>> {
    // The target name is never compressed (RFC 9460 §2.2): read it within the record.
    let (_, mut off) = read_name(rdata, 2)?;
    while off < rdata.len() {
        let key = u16::from_be_bytes(rdata.get(off..off + 2)?.try_into().ok()?);
        let len = u16::from_be_bytes(rdata.get(off + 2..off + 4)?.try_into().ok()?) as usize;
        let value = rdata.get(off + 4..off + 4 + len)?;
        if key == SVC_ECH {
            return ech_config_names(value);
        }
        off += 4 + len;
    }
    Some(Vec::new())
}

/// The public names of an ECHConfigList (draft-ietf-tls-esni §4: version 0xfe0d, then
/// the key config, the maximum name length and the public name).
fn ech_config_names(list: &[u8]) -> Option<Vec<String>> {
    let total = u16::from_be_bytes(list.get(..2)?.try_into().ok()?) as usize;
    let list = list.get(2..2 + total)?;
    let mut names = Vec::new();
    let mut off = 0;
    while off < list.len() && names.len() < MAX_ECH_CONFIGS {
        let version = u16::from_be_bytes(list.get(off..off + 2)?.try_into().ok()?);
        let len = u16::from_be_bytes(list.get(off + 2..off + 4)?.try_into().ok()?) as usize;
        let c = list.get(off + 4..off + 4 + len)?;
        off += 4 + len;
        if version != 0xfe0d {
            continue;
        }
        // config_id, kem_id, public_key <u16>, cipher_suites <u16>.
        let mut o = 3;
        for _ in 0..2 {
            let l = u16::from_be_bytes(c.get(o..o + 2)?.try_into().ok()?) as usize;
            o += 2 + l;
        }
        // maximum_name_length, then public_name <u8>.
        let l = *c.get(o + 1)? as usize;
        let name = c.get(o + 2..o + 2 + l)?;
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    Some(names)
}

/// What an answer says about its question: the names of the CNAME chain from the question
/// (the question first), and the A/AAAA addresses the chain ends at, with their TTLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// The question's name, then each CNAME target in order.
    pub names: Vec<String>,
    /// Addresses owned by a name of the chain, with their TTLs (seconds).
    pub addrs: Vec<(IpAddr, u32)>,
    /// ECH public names offered by HTTPS records owned by a name of the chain, with their
    /// TTLs.
    pub ech: Vec<(String, u32)>,
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
    let ech = msg
        .answers
        .iter()
        .filter(|r| names.contains(&r.name))
        .flat_map(|r| match &r.data {
            RData::Https(n) => n.iter().map(|n| (n.clone(), r.ttl)).collect(),
            _ => Vec::new(),
        })
        .collect();
    Some(Resolution { names, addrs, ech })
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
