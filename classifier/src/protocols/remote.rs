//! Remote access: SSH (RFC 4253 section 4.2, the identification string) and RDP (TPKT,
//! RFC 1006, carrying an X.224 connection request/confirm, as MS-RDPBCGR 2.2.1.1/2.2.1.2
//! lay them out).

/// An SSH identification string at the start of a stream: `SSH-2.0-` or, for servers that
/// also speak protocol 1, `SSH-1.99-`.
pub fn ssh_banner(head: &[u8]) -> bool {
    head.starts_with(b"SSH-2.0-") || head.starts_with(b"SSH-1.99-")
}

/// Whether `head` may still become an SSH banner once more bytes arrive.
pub fn ssh_banner_prefix(head: &[u8]) -> bool {
    let n = head.len().min(8);
    n > 0 && (b"SSH-2.0-"[..n] == head[..n] || b"SSH-1.99-"[..n] == head[..n])
}

/// What an RDP stream starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdp {
    /// The client's X.224 Connection Request (code 0xE0).
    Request,
    /// The server's X.224 Connection Confirm (code 0xD0).
    Confirm,
}

/// A TPKT (version 3, reserved 0, length = the whole packet, at least 11) carrying an
/// X.224 CR or CC TPDU (length indicator = the rest of the TPKT, DST-REF 0, class 0).
/// A request must be RDP's: nothing after the X.224 header (old clients), or a
/// `Cookie: mstshash=` / `Cookie: msts=` line, or an RDP_NEG_REQ (type 1, length 8). ISO
/// transport users such as S7comm put 0xC0-0xC2 parameters there instead.
pub fn rdp(head: &[u8]) -> Option<Rdp> {
    if head.len() < 11 || head[0] != 3 || head[1] != 0 {
        return None;
    }
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    if len < 11 || len > head.len() || head[4] as usize != len - 5 {
        return None;
    }
    let code = head[5] & 0xf0;
    if head[6..8] != [0, 0] || head[10] & 0xf0 != 0 {
        return None;
    }
    let rest = &head[11..len];
    match code {
        0xe0 => {
            let neg = |r: &[u8]| r.len() == 8 && r[0] == 1 && r[2..4] == [8, 0];
            let ok = rest.is_empty()
                || rest.starts_with(b"Cookie: mstshash=")
                || rest.starts_with(b"Cookie: msts=")
                || neg(rest);
            ok.then_some(Rdp::Request)
        }
        0xd0 => {
            // Nothing, or an RDP_NEG_RSP (2) / RDP_NEG_FAILURE (3) of 8 bytes.
            let ok = rest.is_empty() || rest.len() == 8 && matches!(rest[0], 2 | 3);
            ok.then_some(Rdp::Confirm)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TPKT + X.224 CR/CC with `rest` after the 7-byte X.224 header.
    pub(crate) fn tpkt(code: u8, rest: &[u8]) -> Vec<u8> {
        let len = 11 + rest.len();
        let mut p = vec![3, 0];
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p.extend_from_slice(&[(len - 5) as u8, code, 0, 0, 0x12, 0x34, 0]);
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn ssh_banners() {
        assert!(ssh_banner(b"SSH-2.0-OpenSSH_9.6\r\n"));
        assert!(ssh_banner(b"SSH-1.99-Cisco-1.25\r\n"));
        assert!(!ssh_banner(b"SSH-1.5-old\r\n"));
        assert!(!ssh_banner(b"GET / HTTP/1.1\r\n"));
        assert!(ssh_banner_prefix(b"SS") && !ssh_banner_prefix(b"SX"));
    }

    #[test]
    fn rdp_request_and_confirm() {
        let cr = tpkt(
            0xe0,
            b"Cookie: mstshash=alice\r\n\x01\x00\x08\x00\x03\x00\x00\x00",
        );
        assert_eq!(rdp(&cr), Some(Rdp::Request));
        assert_eq!(
            rdp(&tpkt(0xe0, &[1, 0, 8, 0, 3, 0, 0, 0])),
            Some(Rdp::Request)
        );
        assert_eq!(
            rdp(&tpkt(0xd0, &[2, 0, 8, 0, 1, 0, 0, 0])),
            Some(Rdp::Confirm)
        );
        // S7comm's COTP connection request carries TSAP parameters.
        assert_eq!(
            rdp(&tpkt(0xe0, &[0xc1, 2, 1, 0, 0xc2, 2, 1, 2, 0xc0, 1, 10])),
            None
        );
        let mut bad_len = cr.clone();
        bad_len[3] += 1;
        assert_eq!(rdp(&bad_len), None);
        assert_eq!(rdp(b"\x13BitTorrent protocol"), None);
    }
}
