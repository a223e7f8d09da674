//! TLS: the ClientHello's server name (RFC 8446 §4.1.2, RFC 6066 §3), from the records of
//! a TCP stream head (the hello may span several records and segments), or from the
//! handshake bytes a QUIC Initial carries in CRYPTO frames.

/// What the bytes seen so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not a TLS handshake.
    No,
    /// TLS so far; the ClientHello is not complete yet.
    Partial,
    /// A complete ClientHello, with its server name if it has one.
    Done(Option<String>),
}

/// A TLS record layer header: handshake (22), a 3.x version, a sane length.
pub fn is_handshake_record(p: &[u8]) -> bool {
    p.len() >= 5
        && p[0] == 22
        && p[1] == 3
        && p[2] <= 4
        && u16::from_be_bytes([p[3], p[4]]) <= 16_640
}

/// Any TLS record header (change cipher spec, alert, handshake, application data).
pub fn is_record(p: &[u8]) -> bool {
    p.len() >= 5
        && (20..=23).contains(&p[0])
        && p[1] == 3
        && p[2] <= 4
        && u16::from_be_bytes([p[3], p[4]]) <= 18_432
}

/// Handshake records read at most for one ClientHello.
pub const MAX_RECORDS: usize = 16;

/// Parses the ClientHello out of a TCP stream head (TLS records).
pub fn from_records(stream: &[u8]) -> Hello {
    match handshake_bytes(stream) {
        Some(hs) => client_hello(&hs),
        None => Hello::No,
    }
}

/// Whether the ClientHello in a TCP stream head offers Encrypted Client Hello.
pub fn records_offer_ech(stream: &[u8]) -> bool {
    handshake_bytes(stream).is_some_and(|hs| offers_ech(&hs))
}

/// The `encrypted_client_hello` extension's code point (draft-ietf-tls-esni).
const EXT_ECH: u16 = 0xfe0d;

/// Whether a ClientHello handshake message carries an outer `encrypted_client_hello`
/// extension (type 0). Its SNI is then either the client-facing server's public name (real
/// ECH) or the real name (GREASE ECH, which browsers send to servers without ECH, and which
/// looks the same by design): only the DNS answers can tell the two apart
/// (`crate::dns_hints`).
pub fn offers_ech(hs: &[u8]) -> bool {
    if hs.first() != Some(&1) {
        return false;
    }
    let scan = || -> Option<bool> {
        let mut r = extensions(hs.get(4..)?)??;
        while r.o + 4 <= r.b.len() {
            let t = r.u16()?;
            let l = r.u16()? as usize;
            let v = r.take(l)?;
            if t == EXT_ECH {
                return Some(v.first() == Some(&0));
            }
        }
        Some(false)
    };
    scan().unwrap_or(false)
}

/// A stream head's handshake records' fragments, concatenated; `None` when it is not a
/// client's hello in TLS records.
fn handshake_bytes(stream: &[u8]) -> Option<Vec<u8>> {
    if !is_handshake_record(stream) {
        return None;
    }
    // Concatenate the handshake records' fragments, up to what is needed.
    let mut hs = Vec::with_capacity(stream.len());
    let mut o = 0;
    let mut records = 0;
    while o + 5 <= stream.len() && stream[o] == 22 {
        records += 1;
        if records > MAX_RECORDS {
            // Clients send a hello in one record, or a few when it is large (post-quantum
            // key shares): a stream of tiny records is not a client's hello.
            return None;
        }
        let len = u16::from_be_bytes([stream[o + 3], stream[o + 4]]) as usize;
        let end = (o + 5 + len).min(stream.len());
        hs.extend_from_slice(&stream[o + 5..end]);
        o += 5 + len;
    }
    Some(hs)
}

/// Parses a ClientHello handshake message (type 1, 24-bit length, body).
pub fn client_hello(hs: &[u8]) -> Hello {
    if hs.is_empty() {
        return Hello::Partial;
    }
    if hs[0] != 1 {
        return Hello::No;
    }
    if hs.len() < 4 {
        return Hello::Partial;
    }
    let len = ((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize;
    if !(38..=1 << 17).contains(&len) {
        return Hello::No;
    }
    if hs.len() < 4 + len {
        return Hello::Partial;
    }
    match sni(&hs[4..4 + len]) {
        Some(s) => Hello::Done(s),
        None => Hello::No,
    }
}

/// The server name of a ClientHello body; `None` if the body is malformed, `Some(None)`
/// if it is well formed and names no server.
fn sni(b: &[u8]) -> Option<Option<String>> {
    let Some(mut r) = extensions(b)? else {
        return Some(None); // no extensions
    };
    while r.o + 4 <= r.b.len() {
        let t = r.u16()?;
        let l = r.u16()? as usize;
        let v = r.take(l)?;
        if t == 0 {
            // server_name_list: <len:u16> { <type:u8 = 0 host_name> <len:u16> <name> }
            let mut s = Reader { b: v, o: 0 };
            s.u16()?;
            if s.u8()? != 0 {
                return Some(None);
            }
            let n = s.u16()? as usize;
            let name = s.take(n)?;
            if name.is_empty() || !name.iter().all(|c| c.is_ascii_graphic()) {
                return Some(None);
            }
            return Some(Some(String::from_utf8_lossy(name).into_owned()));
        }
    }
    Some(None)
}

/// A ClientHello body's extensions block, past the version, random, session id, cipher
/// suites and compression methods; `Some(None)` when the body ends before it, `None` when
/// the body is malformed.
fn extensions(b: &[u8]) -> Option<Option<Reader<'_>>> {
    let mut r = Reader { b, o: 0 };
    if r.u8()? != 3 {
        return None;
    }
    r.skip(1 + 32)?; // minor version, random
    let sid = r.u8()? as usize;
    r.skip(sid)?;
    let cs = r.u16()? as usize;
    r.skip(cs)?;
    let comp = r.u8()? as usize;
    r.skip(comp)?;
    if r.o == b.len() {
        return Some(None);
    }
    let ext_len = r.u16()? as usize;
    let block = r.take(ext_len)?;
    Some(Some(Reader { b: block, o: 0 }))
}

struct Reader<'a> {
    b: &'a [u8],
    o: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.o)?;
        self.o += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        let v = u16::from_be_bytes([*self.b.get(self.o)?, *self.b.get(self.o + 1)?]);
        self.o += 2;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.o..self.o.checked_add(n)?)?;
        self.o += n;
        Some(v)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello handshake message naming `host` (or none).
    pub(crate) fn client_hello_msg(host: Option<&str>) -> Vec<u8> {
        client_hello_ech(host, false)
    }

    /// The same, with an outer `encrypted_client_hello` extension if `ech`.
    pub(crate) fn client_hello_ech(host: Option<&str>, ech: bool) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0xaa; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0x00, 0x0b, 0, 2, 1, 0]); // ec_point_formats
        if ech {
            // outer, a cipher suite, config id, an empty enc, a 16-byte payload
            ext.extend_from_slice(&[0xfe, 0x0d, 0, 26, 0, 0, 1, 0, 1, 7, 0, 0, 0, 16]);
            ext.extend_from_slice(&[0x5a; 16]);
        }
        if let Some(h) = host {
            let n = h.len() as u16;
            ext.extend_from_slice(&[0, 0]);
            ext.extend_from_slice(&(n + 5).to_be_bytes());
            ext.extend_from_slice(&(n + 3).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&n.to_be_bytes());
            ext.extend_from_slice(h.as_bytes());
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut m = vec![1];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(&body);
        m
    }

    /// The message in TLS records of at most `max` bytes each.
    pub(crate) fn records(msg: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in msg.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(c.len() as u16).to_be_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    #[test]
    fn ech_offered_or_not() {
        let ech = client_hello_ech(Some("cover.example.net"), true);
        assert!(offers_ech(&ech));
        assert!(records_offer_ech(&records(&ech, 100)));
        // The outer SNI is still read.
        let want = Hello::Done(Some("cover.example.net".into()));
        assert_eq!(from_records(&records(&ech, 1000)), want);
        let plain = client_hello_msg(Some("www.example.org"));
        assert!(!offers_ech(&plain));
        assert!(!records_offer_ech(&records(&plain, 1000)));
        // A hello cut anywhere claims no ECH (and does not panic).
        for n in 0..ech.len() {
            assert!(!offers_ech(&ech[..n]), "cut at {n}");
        }
    }

    #[test]
    fn sni_from_one_or_many_records() {
        let m = client_hello_msg(Some("www.youtube.com"));
        let want = Hello::Done(Some("www.youtube.com".into()));
        assert_eq!(from_records(&records(&m, 1000)), want);
        assert_eq!(from_records(&records(&m, 7)), want, "split over records");
        let r = records(&m, 1000);
        assert_eq!(
            from_records(&r[..r.len() - 3]),
            Hello::Partial,
            "split over segments"
        );
        assert_eq!(
            from_records(&records(&client_hello_msg(None), 1000)),
            Hello::Done(None)
        );
    }

    #[test]
    fn look_alikes_are_not_tls() {
        assert_eq!(from_records(b"GET / HTTP/1.1\r\n"), Hello::No);
        assert_eq!(
            from_records(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Hello::No,
            "a ServerHello"
        );
        let mut m = client_hello_msg(Some("a.example"));
        m[4] = 2; // not TLS 1.x legacy version
        assert_eq!(client_hello(&m), Hello::No);
        for n in 0..m.len() {
            let _ = client_hello(&m[..n]);
            let _ = from_records(&records(&m[..n], 50));
        }
    }

    /// A hello cut into one-byte records is given up after MAX_RECORDS records, not
    /// reassembled over the whole stream head.
    #[test]
    fn record_floods_are_bounded() {
        let m = client_hello_msg(Some("www.example.org"));
        assert!(matches!(from_records(&records(&m, 1)), Hello::No));
        let few = records(&m, m.len().div_ceil(MAX_RECORDS));
        assert!(matches!(from_records(&few), Hello::Done(Some(_))));
    }
}
