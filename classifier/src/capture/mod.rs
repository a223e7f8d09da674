//! Capture files: classic pcap (both byte orders, micro- and nanosecond stamps) and pcapng
//! (section, interface, enhanced/simple/obsolete packet blocks; each interface with its own
//! link type and timestamp resolution).
//!
//! The reader streams: it holds one record at a time, so a capture of any size reads in
//! constant memory. Every length read from the file is checked against what is left and
//! against a ceiling before anything is allocated, so a corrupt or hostile file ends in a
//! [`CaptureError`] naming the byte offset, never in a panic or a huge allocation.

pub(crate) mod pcap;
pub(crate) mod pcapng;

use std::{
    fs::File,
    io::{self, BufReader, Read},
    path::Path,
};

/// Link-layer header types (the tcpdump.org LINKTYPE_ values) the packet decoder handles.
pub mod link {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II / 802.3.
    pub const ETHERNET: u32 = 1;
    /// PPP (RFC 1661 framing, optionally with the HDLC address and control bytes).
    pub const PPP: u32 = 9;
    /// Raw IP on some BSDs (the DLT_ value leaks into files).
    pub const RAW_BSD: u32 = 12;
    /// Raw IP (OpenBSD's DLT value).
    pub const RAW_OPENBSD: u32 = 14;
    /// Raw IP: the packet starts with an IPv4 or IPv6 header.
    pub const RAW: u32 = 101;
    /// PPP in HDLC-like framing.
    pub const PPP_HDLC: u32 = 50;
    /// Cisco HDLC: address, control, then an Ethernet type.
    pub const C_HDLC: u32 = 104;
    /// OpenBSD loopback: like NULL but the family is big-endian.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1 (`any` interface), 16-byte header.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2, 20-byte header.
    pub const LINUX_SLL2: u32 = 276;
}

/// No captured packet is larger than this; a larger length means a corrupt file. (libpcap
/// caps snapshot lengths at 256 KiB; pcapng blocks carry options too, hence the margin.)
pub const MAX_RECORD: usize = 1 << 20;

/// The largest believable on-the-wire length: a 64 KiB IP packet plus link headers, with
/// room for GSO/GRO super-packets that captures on the host show. A record claiming more
/// (fuzzed or corrupt files do) counts as its captured length instead.
pub const MAX_WIRE_LEN: u32 = 256 * 1024;

/// The on-the-wire length to count for a record.
pub(crate) fn wire_len(claimed: u32, captured: usize) -> u32 {
    let cap = captured as u32;
    if claimed > MAX_WIRE_LEN {
        cap
    } else {
        claimed.max(cap)
    }
}

/// One captured packet.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The link type of the interface it was captured on (see [`link`]).
    pub link_type: u32,
    /// The captured bytes (possibly cut short by the snapshot length).
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub wire_len: u32,
}

/// Why a capture could not be read (further). `offset` is the byte offset in the file of
/// the record (or header) that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened.
    #[error("cannot open: {source}")]
    Open {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading failed.
    #[error("offset {offset}: read failed: {source}")]
    Read {
        /// Where the read started.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The bytes do not make a valid capture.
    #[error("offset {offset}: {what}")]
    Format {
        /// Where the bad record or header starts.
        offset: u64,
        /// What is wrong with it.
        what: String,
    },
}

impl CaptureError {
    pub(crate) fn format(offset: u64, what: impl Into<String>) -> Self {
        CaptureError::Format {
            offset,
            what: what.into(),
        }
    }
}

/// Reads exactly what it is asked for and counts the offset; tells a clean end of file
/// (nothing left) from a truncated record.
pub(crate) struct Source<R> {
    inner: R,
    offset: u64,
}

/// The outcome of asking for `n` bytes.
pub(crate) enum Fill {
    /// All of them.
    Full,
    /// None: the file ended cleanly here.
    Eof,
    /// Some, then the file ended.
    Short(usize),
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source { inner, offset: 0 }
    }

    /// Current offset in the file.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Fills `buf` entirely if the file has that many bytes left.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, CaptureError> {
        let start = self.offset;
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Read {
                        offset: start,
                        source,
                    });
                }
            }
        }
        self.offset += got as u64;
        Ok(if got == buf.len() {
            Fill::Full
        } else if got == 0 {
            Fill::Eof
        } else {
            Fill::Short(got)
        })
    }

    /// Fills `buf` or fails with `what` (the end of the file is an error here).
    pub(crate) fn need(&mut self, buf: &mut [u8], at: u64, what: &str) -> Result<(), CaptureError> {
        match self.fill(buf)? {
            Fill::Full => Ok(()),
            Fill::Eof | Fill::Short(_) => Err(CaptureError::format(
                at,
                format!("truncated {what} ({} bytes wanted)", buf.len()),
            )),
        }
    }
}

enum Format<R> {
    Pcap(pcap::PcapReader<R>),
    Pcapng(pcapng::PcapngReader<R>),
}

/// A capture file being read, pcap or pcapng (told apart by the first four bytes).
pub struct CaptureReader<R> {
    format: Format<R>,
}

impl CaptureReader<BufReader<File>> {
    /// Opens a capture file.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Open { source })?;
        CaptureReader::new(BufReader::with_capacity(1 << 16, file))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header from `inner` and prepares to read packets.
    pub fn new(inner: R) -> Result<Self, CaptureError> {
        let mut src = Source::new(inner);
        let mut magic = [0u8; 4];
        match src.fill(&mut magic)? {
            Fill::Full => {}
            Fill::Eof => return Err(CaptureError::format(0, "empty file")),
            Fill::Short(_) => {
                return Err(CaptureError::format(
                    0,
                    "file too short for a capture header",
                ));
            }
        }
        let format = if magic == pcapng::SHB_TYPE.to_le_bytes() {
            Format::Pcapng(pcapng::PcapngReader::new(src, magic)?)
        } else if let Some(kind) = pcap::Magic::from_bytes(magic) {
            Format::Pcap(pcap::PcapReader::new(src, kind)?)
        } else {
            return Err(CaptureError::format(
                0,
                format!(
                    "not a pcap or pcapng file (magic {:02x}{:02x}{:02x}{:02x})",
                    magic[0], magic[1], magic[2], magic[3]
                ),
            ));
        };
        Ok(CaptureReader { format })
    }

    /// The next packet, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match &mut self.format {
            Format::Pcap(r) => r.next_frame(),
            Format::Pcapng(r) => r.next_frame(),
        }
    }
}

/// Seconds and a fraction in `units_per_sec` to nanoseconds, saturating.
pub(crate) fn to_ns(units: u128, units_per_sec: u128) -> u64 {
    if units_per_sec == 0 {
        return 0;
    }
    let secs = units / units_per_sec;
    let frac = units % units_per_sec;
    let ns = secs.saturating_mul(1_000_000_000) + frac * 1_000_000_000 / units_per_sec;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_empty() {
        let e = CaptureReader::new(&b""[..]).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("offset 0: empty file"));
        let e = CaptureReader::new(&b"GIF89a.."[..])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not a pcap")));
    }

    #[test]
    fn ns_conversion() {
        assert_eq!(to_ns(1_500_000, 1_000_000), 1_500_000_000);
        assert_eq!(to_ns(3, 2), 1_500_000_000);
        assert_eq!(to_ns(u128::MAX, 1), u64::MAX);
        assert_eq!(to_ns(5, 0), 0);
    }
}
