//! HTTP tracker requests (BEP 3 announces, BEP 48 scrapes): `GET <path>?info_hash=...&...`.
//!
//! What is accepted, and why:
//! - Any path. `/announce` is the convention, not a rule: a tracker's announce URL is
//!   whatever its torrent says (`/a`, `/announce.php`, `/<passkey>/announce`), so the path
//!   cannot be required. Instead an announce must carry BEP 3's other mandatory parameters
//!   too: `peer_id` (20 bytes) and `port` (a decimal port). A web page with `info_hash` in its
//!   query and not the rest (a torrent index's details page, say) is not an announce.
//! - A scrape is a request whose last path segment starts with `scrape` (BEP 48 derives the
//!   scrape URL by replacing `announce` there), with one or more `info_hash`.
//! - Parameters in any order; names and values percent-decoded (RFC 3986: `%XX` is one byte;
//!   `+` stays a `+`, as clients escape a `+` in binary bytes as `%2B`); a malformed escape
//!   or a repeated `info_hash` (announce), `peer_id` or `port` refuses the request.

use crate::infohash::{InfoHash, nibble as hex};

/// Info-hashes read from one scrape at most (the rest are ignored).
pub const MAX_SCRAPE_HASHES: usize = 32;

/// An HTTP tracker request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTracker {
    /// Announce (one hash) or scrape (one or more, at most [`MAX_SCRAPE_HASHES`]).
    pub info_hashes: Vec<InfoHash>,
    /// Which request.
    pub kind: HttpTrackerKind,
}

/// Announce or scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpTrackerKind {
    /// An announce: the client's id and listen port (0 when it says 0).
    Announce {
        /// `peer_id`.
        peer_id: [u8; 20],
        /// `port`.
        port: u16,
    },
    /// A scrape (statistics only).
    Scrape,
}

/// The tracker request at the start of `p` (an HTTP/1.x `GET` request line).
pub fn http_tracker_request(p: &[u8]) -> Option<HttpTracker> {
    let rest = p.strip_prefix(b"GET ")?;
    let end = rest.iter().position(|&c| c == b' ')?;
    if !rest[end..].starts_with(b" HTTP/1.") {
        return None;
    }
    let target = &rest[..end];
    let q = target.iter().position(|&c| c == b'?')?;
    let (path, query) = (&target[..q], &target[q + 1..]);
    let last = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    let scrape = last.starts_with(b"scrape");

    let mut hashes = Vec::new();
    let (mut peer_id, mut port) = (None, None);
    let mut name = [0u8; 16];
    let mut value = [0u8; 64];
    for pair in query.split(|&c| c == b'&') {
        let eq = pair.iter().position(|&c| c == b'=');
        let (raw_name, raw_value) = match eq {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        // A name or value longer than any we read is not ours; a malformed escape anywhere
        // refuses the request.
        let Some(n) = decode(raw_name, &mut name)? else {
            continue;
        };
        let v = decode(raw_value, &mut value)?;
        match (&name[..n], v) {
            (b"info_hash", v) => {
                let h = InfoHash::from_slice(&value[..v?])?;
                if !scrape && !hashes.is_empty() {
                    return None;
                }
                if hashes.len() < MAX_SCRAPE_HASHES {
                    hashes.push(h);
                }
            }
            (b"peer_id", v) => {
                let id: [u8; 20] = value[..v?].try_into().ok()?;
                if peer_id.replace(id).is_some() {
                    return None;
                }
            }
            (b"port", v) => {
                let digits = &value[..v?];
                if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let n = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
                if port.replace(u16::try_from(n).ok()?).is_some() {
                    return None;
                }
            }
            _ => {}
        }
    }
    if hashes.is_empty() {
        return None;
    }
    let kind = if scrape {
        HttpTrackerKind::Scrape
    } else {
        HttpTrackerKind::Announce {
            peer_id: peer_id?,
            port: port?,
        }
    };
    Some(HttpTracker {
        info_hashes: hashes,
        kind,
    })
}

/// Percent-decodes `raw` into `out`: `None` for a malformed escape, `Some(None)` when the
/// result would be longer than `out`, else `Some(Some(length))`.
fn decode(raw: &[u8], out: &mut [u8]) -> Option<Option<usize>> {
    let (mut i, mut n) = (0, 0);
    let mut fits = true;
    while i < raw.len() {
        let b = if raw[i] == b'%' {
            let hi = hex(*raw.get(i + 1)?)?;
            let lo = hex(*raw.get(i + 2)?)?;
            i += 3;
            (hi << 4) | lo
        } else {
            i += 1;
            raw[i - 1]
        };
        match out.get_mut(n) {
            Some(o) if fits => *o = b,
            _ => fits = false,
        }
        n += 1;
    }
    Some(fits.then_some(n))
}
