//! pcapng: a sequence of blocks `<type:u32><length:u32><body><length:u32>`. A section header
//! block (SHB) sets the byte order for the blocks after it; interface description blocks
//! (IDB) give each interface its link type and timestamp resolution; packets come in
//! enhanced (EPB), simple (SPB) or obsolete (OPB) packet blocks. Other blocks are skipped.

use std::io::Read;

use super::{CaptureError, Fill, Frame, MAX_RECORD, Source, to_ns, wire_len};

/// Section header block type; the same in both byte orders.
pub(crate) const SHB_TYPE: u32 = 0x0a0d_0d0a;
const IDB_TYPE: u32 = 1;
const OPB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// More interfaces than this in one section means a corrupt file (and bounds our memory).
const MAX_INTERFACES: usize = 1 << 16;

struct Interface {
    link_type: u32,
    /// Timestamp units per second (`if_tsresol`, default microseconds).
    units_per_sec: u128,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_secs: i64,
}

pub(crate) struct PcapngReader<R> {
    src: Source<R>,
    big_endian: bool,
    interfaces: Vec<Interface>,
    buf: Vec<u8>,
    /// The first SHB's type has been read already (it was the file's magic).
    pending_shb: bool,
}

impl<R: Read> PcapngReader<R> {
    pub(crate) fn new(src: Source<R>, _magic: [u8; 4]) -> Result<Self, CaptureError> {
        let mut r = PcapngReader {
            src,
            big_endian: false,
            interfaces: Vec::new(),
            buf: Vec::new(),
            pending_shb: true,
        };
        // Read the first section header now, so a non-pcapng file fails at open.
        r.read_shb(0)?;
        r.pending_shb = false;
        Ok(r)
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    /// Reads an SHB whose type field (4 bytes at `at`) has been consumed.
    fn read_shb(&mut self, at: u64) -> Result<(), CaptureError> {
        let mut head = [0u8; 8];
        self.src.need(&mut head, at, "section header block")?;
        let bom = [head[4], head[5], head[6], head[7]];
        self.big_endian = if bom == BYTE_ORDER_MAGIC.to_be_bytes() {
            true
        } else if bom == BYTE_ORDER_MAGIC.to_le_bytes() {
            false
        } else {
            return Err(CaptureError::format(
                at,
                "section header block: bad byte-order magic",
            ));
        };
        let total = self.u32(&head[0..4]) as usize;
        if total < 28 || !total.is_multiple_of(4) || total > MAX_RECORD {
            return Err(CaptureError::format(
                at,
                format!("section header block: bad length {total}"),
            ));
        }
        self.buf.resize(total - 12, 0);
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.src.need(&mut buf, at, "section header block");
        self.buf = buf;
        res?;
        self.check_trailer(at, total)?;
        self.interfaces.clear();
        Ok(())
    }

    /// The body's last 4 bytes repeat the block length.
    fn check_trailer(&self, at: u64, total: usize) -> Result<(), CaptureError> {
        let n = self.buf.len();
        if n < 4 || self.u32(&self.buf[n - 4..]) as usize != total {
            return Err(CaptureError::format(
                at,
                "block length and trailing length differ",
            ));
        }
        Ok(())
    }

    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            let at = self.src.offset();
            let mut head = [0u8; 4];
            match self.src.fill(&mut head)? {
                Fill::Full => {}
                Fill::Eof => return Ok(None),
                Fill::Short(n) => {
                    return Err(CaptureError::format(
                        at,
                        format!("truncated block header ({n} of 8 bytes)"),
                    ));
                }
            }
            if head == SHB_TYPE.to_le_bytes() {
                self.read_shb(at)?;
                continue;
            }
            let block_type = self.u32(&head);
            let mut len = [0u8; 4];
            self.src.need(&mut len, at, "block header")?;
            let total = self.u32(&len) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_RECORD {
                return Err(CaptureError::format(
                    at,
                    format!("bad block length {total}"),
                ));
            }
            // Body plus the trailing length.
            self.buf.resize(total - 8, 0);
            let mut buf = std::mem::take(&mut self.buf);
            let res = self.src.need(&mut buf, at, "block");
            self.buf = buf;
            res?;
            self.check_trailer(at, total)?;
            let body_len = total - 12;
            match block_type {
                IDB_TYPE => self.read_idb(at, body_len)?,
                EPB_TYPE | OPB_TYPE | SPB_TYPE => {
                    let (iface, ts, start, cap, wire) =
                        self.packet_fields(at, block_type, body_len)?;
                    let Some(ifc) = self.interfaces.get(iface) else {
                        return Err(CaptureError::format(
                            at,
                            format!("packet on undeclared interface {iface}"),
                        ));
                    };
                    let ts_ns = if ifc.offset_secs >= 0 {
                        to_ns(ts, ifc.units_per_sec)
                            .saturating_add((ifc.offset_secs as u64).saturating_mul(1_000_000_000))
                    } else {
                        to_ns(ts, ifc.units_per_sec).saturating_sub(
                            ifc.offset_secs.unsigned_abs().saturating_mul(1_000_000_000),
                        )
                    };
                    let link_type = ifc.link_type;
                    return Ok(Some(Frame {
                        ts_ns,
                        link_type,
                        data: &self.buf[start..start + cap],
                        wire_len: wire_len(wire, cap),
                    }));
                }
                _ => {}
            }
        }
    }

    /// (interface, timestamp units, data start, captured length, wire length) of a packet
    /// block whose body is `self.buf[..body_len]`.
    fn packet_fields(
        &self,
        at: u64,
        block_type: u32,
        body_len: usize,
    ) -> Result<(usize, u128, usize, usize, u32), CaptureError> {
        let b = &self.buf[..body_len];
        let short = || CaptureError::format(at, "packet block too short for its fields");
        match block_type {
            SPB_TYPE => {
                if b.len() < 4 {
                    return Err(short());
                }
                let wire = self.u32(&b[0..4]);
                let cap = (wire as usize).min(b.len() - 4);
                Ok((0, 0, 4, cap, wire))
            }
            EPB_TYPE => {
                if b.len() < 20 {
                    return Err(short());
                }
                let iface = self.u32(&b[0..4]) as usize;
                let ts = ((self.u32(&b[4..8]) as u128) << 32) | self.u32(&b[8..12]) as u128;
                let cap = self.u32(&b[12..16]) as usize;
                let wire = self.u32(&b[16..20]);
                if cap > b.len() - 20 {
                    return Err(CaptureError::format(
                        at,
                        format!("captured length {cap} overruns its block"),
                    ));
                }
                Ok((iface, ts, 20, cap, wire))
            }
            _ => {
                if b.len() < 20 {
                    return Err(short());
                }
                let iface = self.u16(&b[0..2]) as usize;
                let ts = ((self.u32(&b[4..8]) as u128) << 32) | self.u32(&b[8..12]) as u128;
                let cap = self.u32(&b[12..16]) as usize;
                let wire = self.u32(&b[16..20]);
                if cap > b.len() - 20 {
                    return Err(CaptureError::format(
                        at,
                        format!("captured length {cap} overruns its block"),
                    ));
                }
                Ok((iface, ts, 20, cap, wire))
            }
        }
    }

    fn read_idb(&mut self, at: u64, body_len: usize) -> Result<(), CaptureError> {
        let b = &self.buf[..body_len];
        if b.len() < 8 {
            return Err(CaptureError::format(at, "interface block too short"));
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(CaptureError::format(at, "too many interfaces"));
        }
        let mut ifc = Interface {
            link_type: self.u16(&b[0..2]) as u32,
            units_per_sec: 1_000_000,
            offset_secs: 0,
        };
        // Options: <code:u16><len:u16><value, padded to 4>, ending with code 0.
        let mut o = 8;
        while o + 4 <= b.len() {
            let code = self.u16(&b[o..o + 2]);
            let len = self.u16(&b[o + 2..o + 4]) as usize;
            let v = o + 4;
            if code == 0 || v + len > b.len() {
                break;
            }
            match (code, len) {
                (9, 1) => {
                    let r = b[v];
                    let exp = (r & 0x7f) as u32;
                    // High bit: a negative power of 2; else of 10. Beyond 10^-19 or 2^-64
                    // the unit would not fit; such a file is nonsense, keep the default.
                    let units = if r & 0x80 != 0 {
                        2u128.checked_pow(exp).filter(|_| exp <= 64)
                    } else {
                        10u128.checked_pow(exp).filter(|_| exp <= 19)
                    };
                    if let Some(u) = units {
                        ifc.units_per_sec = u;
                    }
                }
                (14, 8) => {
                    let raw = [
                        b[v],
                        b[v + 1],
                        b[v + 2],
                        b[v + 3],
                        b[v + 4],
                        b[v + 5],
                        b[v + 6],
                        b[v + 7],
                    ];
                    ifc.offset_secs = if self.big_endian {
                        i64::from_be_bytes(raw)
                    } else {
                        i64::from_le_bytes(raw)
                    };
                }
                _ => {}
            }
            o = v + len.div_ceil(4) * 4;
        }
        self.interfaces.push(ifc);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::capture::CaptureReader;

    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = (body.len() + 12) as u32;
        let mut b = t.to_le_bytes().to_vec();
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&total.to_le_bytes());
        b
    }

    fn shb() -> Vec<u8> {
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(0x0a0d_0d0a, &body)
    }

    fn idb(link: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = link.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&65535u32.to_le_bytes());
        if let Some(r) = tsresol {
            body.extend_from_slice(&9u16.to_le_bytes());
            body.extend_from_slice(&1u16.to_le_bytes());
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        block(1, &body)
    }

    fn epb(iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = iface.to_le_bytes().to_vec();
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        block(6, &body)
    }

    /// A pcapng file with one interface per link type (microseconds) and EPBs.
    pub(crate) fn pcapng(links: &[u16], packets: &[(u32, u64, &[u8])]) -> Vec<u8> {
        let mut f = shb();
        for l in links {
            f.extend(idb(*l, None));
        }
        for (i, ts, d) in packets {
            f.extend(epb(*i, *ts, d));
        }
        f
    }

    #[test]
    fn interfaces_keep_their_link_types_and_resolutions() {
        let mut f = shb();
        f.extend(idb(1, None));
        f.extend(idb(101, Some(9)));
        f.extend(epb(0, 2_000_001, b"eth"));
        f.extend(block(5, b"stats")); // skipped
        f.extend(epb(1, 3_000_000_007, b"raw"));
        let mut spb = 3u32.to_le_bytes().to_vec();
        spb.extend_from_slice(b"spb");
        f.extend(block(3, &spb));
        let mut r = CaptureReader::new(&f[..]).expect("open");
        let a = r.next_frame().expect("ok").expect("a");
        assert_eq!(
            (a.link_type, a.ts_ns, a.data),
            (1, 2_000_001_000, &b"eth"[..])
        );
        let b = r.next_frame().expect("ok").expect("b");
        assert_eq!(
            (b.link_type, b.ts_ns, b.data),
            (101, 3_000_000_007, &b"raw"[..])
        );
        let c = r.next_frame().expect("ok").expect("c");
        assert_eq!((c.link_type, c.data), (1, &b"spb"[..]));
        assert!(r.next_frame().expect("eof").is_none());
    }

    #[test]
    fn bad_blocks_are_errors() {
        let mut f = shb();
        f.extend(epb(0, 1, b"x"));
        let mut r = CaptureReader::new(&f[..]).expect("open");
        let e = r.next_frame().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("offset 28: packet on undeclared interface 0")
        );
        let mut g = shb();
        g.extend(idb(1, None));
        let mut bad = epb(0, 1, b"abcd");
        bad[20] = 200; // captured length past the block
        g.extend(bad);
        let mut r = CaptureReader::new(&g[..]).expect("open");
        assert!(r.next_frame().is_err());
        let mut h = shb();
        h[8] = 0; // byte-order magic
        assert!(CaptureReader::new(&h[..]).is_err());
    }
}
