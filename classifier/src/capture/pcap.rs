//! Classic pcap: a 24-byte file header, then records of a 16-byte header and the bytes.

use std::io::Read;

use super::{CaptureError, Fill, Frame, MAX_RECORD, Source, to_ns, wire_len};

/// The four magic numbers: byte order × timestamp resolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Magic {
    big_endian: bool,
    nanos: bool,
}

impl Magic {
    pub(crate) fn from_bytes(b: [u8; 4]) -> Option<Magic> {
        let (big_endian, nanos) = match b {
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            _ => return None,
        };
        Some(Magic { big_endian, nanos })
    }

    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

pub(crate) struct PcapReader<R> {
    src: Source<R>,
    magic: Magic,
    link_type: u32,
    buf: Vec<u8>,
}

impl<R: Read> PcapReader<R> {
    /// `src` has just read the magic.
    pub(crate) fn new(mut src: Source<R>, magic: Magic) -> Result<Self, CaptureError> {
        let mut rest = [0u8; 20];
        src.need(&mut rest, 0, "pcap file header")?;
        // rest: version (2+2), thiszone, sigfigs, snaplen, then the link type whose upper
        // bits may carry FCS information (pcap-linktype(7)): keep the low 28.
        let link_type = magic.u32(&rest[16..20]) & 0x0fff_ffff;
        Ok(PcapReader {
            src,
            magic,
            link_type,
            buf: Vec::new(),
        })
    }

    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let at = self.src.offset();
        let mut hdr = [0u8; 16];
        match self.src.fill(&mut hdr)? {
            Fill::Full => {}
            Fill::Eof => return Ok(None),
            Fill::Short(n) => {
                return Err(CaptureError::format(
                    at,
                    format!("truncated record header ({n} of 16 bytes)"),
                ));
            }
        }
        let m = self.magic;
        let (secs, frac) = (m.u32(&hdr[0..4]) as u128, m.u32(&hdr[4..8]) as u128);
        let incl = m.u32(&hdr[8..12]) as usize;
        let claimed = m.u32(&hdr[12..16]);
        if incl > MAX_RECORD {
            return Err(CaptureError::format(
                at,
                format!("record length {incl} exceeds {MAX_RECORD}"),
            ));
        }
        self.buf.resize(incl, 0);
        self.src.need(&mut self.buf, at, "record")?;
        let per_sec: u128 = if m.nanos { 1_000_000_000 } else { 1_000_000 };
        Ok(Some(Frame {
            ts_ns: to_ns(secs * per_sec + frac, per_sec),
            link_type: self.link_type,
            data: &self.buf,
            wire_len: wire_len(claimed, incl),
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::capture::CaptureReader;

    /// A little-endian microsecond pcap with the given link type and packets.
    pub(crate) fn pcap_le(link: u32, packets: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&link.to_le_bytes());
        for (s, us, data) in packets {
            f.extend_from_slice(&s.to_le_bytes());
            f.extend_from_slice(&us.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn reads_both_byte_orders_and_resolutions() {
        let le = pcap_le(1, &[(10, 500_000, b"abc")]);
        let mut r = CaptureReader::new(&le[..]).expect("header");
        let f = r.next_frame().expect("frame").expect("one");
        assert_eq!(
            (f.ts_ns, f.link_type, f.data, f.wire_len),
            (10_500_000_000, 1, &b"abc"[..], 3)
        );
        assert!(r.next_frame().expect("eof").is_none());

        // Big-endian, nanoseconds.
        let mut be = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
        be.extend_from_slice(&[0; 8]);
        be.extend_from_slice(&65535u32.to_be_bytes());
        be.extend_from_slice(&101u32.to_be_bytes());
        for v in [7u32, 9, 2, 60] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        be.extend_from_slice(b"xy");
        let mut r = CaptureReader::new(&be[..]).expect("header");
        let f = r.next_frame().expect("frame").expect("one");
        assert_eq!(
            (f.ts_ns, f.link_type, f.data, f.wire_len),
            (7_000_000_009, 101, &b"xy"[..], 60)
        );
    }

    #[test]
    fn truncation_names_the_offset() {
        let le = pcap_le(1, &[(1, 0, b"abcdef")]);
        let cut = &le[..le.len() - 2];
        let mut r = CaptureReader::new(cut).expect("header");
        let e = r.next_frame().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("offset 24: truncated record (6 bytes wanted)")
        );
        let mut huge = pcap_le(1, &[]);
        huge.extend_from_slice(&[0; 8]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        let mut r = CaptureReader::new(&huge[..]).expect("header");
        assert!(r.next_frame().is_err());
        assert!(CaptureReader::new(&le[..10]).is_err());
    }
}
