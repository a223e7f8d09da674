//! Real-time communication: STUN/TURN (RFC 8489, RFC 8656) and DTLS (RFC 6347/9147) as
//! WebRTC uses them, SIP (RFC 3261) and RTP/RTCP (RFC 3550) for VoIP. Pure parsers; the
//! pairing across packets and directions is in [`crate::everyday`].

/// A STUN message: whether it is a request (class 00) or an indication, and its
/// transaction id (which the answer echoes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stun {
    /// Class: request or indication (the asking side) rather than a success/error response.
    pub request: bool,
    /// The 96-bit transaction id.
    pub txid: [u8; 12],
}

/// The STUN magic cookie.
const COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Parses a STUN message: the two top bits clear, a length that is a multiple of 4 and
/// fills the datagram, the magic cookie.
pub fn stun(p: &[u8]) -> Option<Stun> {
    if p.len() < 20 || p[0] & 0xc0 != 0 || p[4..8] != COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([p[2], p[3]]) as usize;
    if !len.is_multiple_of(4) || len + 20 != p.len() {
        return None;
    }
    let ty = u16::from_be_bytes([p[0], p[1]]);
    // The class bits are 0x0100 and 0x0010: 00 request, 01 indication, 10/11 responses.
    let class = ((ty >> 7) & 0b10) | ((ty >> 4) & 0b01);
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&p[8..20]);
    Some(Stun {
        request: class < 2,
        txid,
    })
}

/// TURN ChannelData (RFC 8656 section 12.4): a channel number 0x4000..=0x4fff and the
/// length of the data that follows (over UDP, padding to 4 bytes is allowed).
pub fn turn_channel_data(p: &[u8]) -> bool {
    if p.len() < 4 || !(0x40..=0x4f).contains(&p[0]) {
        return false;
    }
    let len = u16::from_be_bytes([p[2], p[3]]) as usize;
    len + 4 == p.len() || (len + 4).next_multiple_of(4) == p.len()
}

/// A DTLS 1.0/1.2 record header (content type 20..=23, version 0xfeff or 0xfefd, epoch,
/// 48-bit sequence, length fitting the datagram), or a DTLS 1.3 unified header's fixed
/// bits (`001` then the flags).
pub fn dtls(p: &[u8]) -> bool {
    if p.len() >= 13 && (20..=23).contains(&p[0]) && p[1] == 0xfe && matches!(p[2], 0xff | 0xfd) {
        let len = u16::from_be_bytes([p[11], p[12]]) as usize;
        return len > 0 && 13 + len <= p.len();
    }
    false
}

/// SIP request methods (RFC 3261 and extensions) as they start a request line.
const SIP_METHODS: &[&[u8]] = &[
    b"INVITE sip:",
    b"REGISTER sip:",
    b"OPTIONS sip:",
    b"ACK sip:",
    b"BYE sip:",
    b"NOTIFY sip:",
    b"SUBSCRIBE sip:",
    b"MESSAGE sip:",
    b"CANCEL sip:",
    b"INFO sip:",
    b"PUBLISH sip:",
    b"PRACK sip:",
    b"UPDATE sip:",
    b"REFER sip:",
];

/// A SIP request line.
pub fn sip_request(p: &[u8]) -> bool {
    SIP_METHODS.iter().any(|m| p.starts_with(m))
}

/// A SIP status line.
pub fn sip_response(p: &[u8]) -> bool {
    p.starts_with(b"SIP/2.0 ")
}

/// An RTP header's fields: SSRC, sequence number, payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// Payload type (0..=127 minus the RTCP-conflicting 72..=76).
    pub pt: u8,
}

/// Parses an RTP header: version 2, a payload type outside 72..=76 (where RTCP's packet
/// types land when the marker bit is read as such), the header with its CSRCs inside.
pub fn rtp(p: &[u8]) -> Option<Rtp> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let pt = p[1] & 0x7f;
    let cc = (p[0] & 0x0f) as usize;
    if (72..=76).contains(&pt) || 12 + 4 * cc > p.len() {
        return None;
    }
    Some(Rtp {
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        seq: u16::from_be_bytes([p[2], p[3]]),
        pt,
    })
}

/// An RTCP packet (SR, RR, SDES, BYE, APP: types 200..=204, or feedback 205/206) with
/// version 2 and a length that fits: the sender's SSRC.
pub fn rtcp(p: &[u8]) -> Option<u32> {
    if p.len() < 8 || p[0] >> 6 != 2 || !(200..=206).contains(&p[1]) {
        return None;
    }
    let words = u16::from_be_bytes([p[2], p[3]]) as usize;
    if (words + 1) * 4 > p.len() {
        return None;
    }
    Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn stun_msg(ty: u16, txid: [u8; 12], attrs: usize) -> Vec<u8> {
        let mut p = ty.to_be_bytes().to_vec();
        p.extend_from_slice(&((attrs * 4) as u16).to_be_bytes());
        p.extend_from_slice(&COOKIE);
        p.extend_from_slice(&txid);
        p.resize(20 + attrs * 4, 0);
        p
    }

    pub(crate) fn rtp_pkt(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.resize(len, 0xd5);
        p
    }

    #[test]
    fn stun_requests_and_responses() {
        let req = stun_msg(0x0001, [1; 12], 2);
        let ok = stun_msg(0x0101, [1; 12], 3);
        assert_eq!(stun(&req).map(|s| s.request), Some(true));
        assert_eq!(
            stun(&ok).map(|s| (s.request, s.txid)),
            Some((false, [1; 12]))
        );
        assert_eq!(stun(&req[..22]), None);
        let mut no_cookie = req.clone();
        no_cookie[5] = 0;
        assert_eq!(stun(&no_cookie), None);
        assert!(turn_channel_data(&[0x40, 0x01, 0, 4, 1, 2, 3, 4]));
        assert!(!turn_channel_data(&[0x40, 0x01, 0, 9, 1, 2, 3, 4]));
        // A DHT query is not STUN.
        assert_eq!(
            stun(b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"),
            None
        );
    }

    #[test]
    fn dtls_sip_rtp_rtcp() {
        let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 10];
        rec.extend_from_slice(&[1; 10]);
        assert!(dtls(&rec));
        assert!(!dtls(&rec[..20]));
        assert!(
            !dtls(&[22, 3, 3, 0, 10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            "TLS, not DTLS"
        );
        assert!(sip_request(b"INVITE sip:bob@example.org SIP/2.0\r\n"));
        assert!(sip_response(b"SIP/2.0 200 OK\r\n"));
        assert!(!sip_request(b"GET / HTTP/1.1\r\n"));
        let r = rtp(&rtp_pkt(0xdead_beef, 7, 172)).expect("rtp");
        assert_eq!((r.ssrc, r.seq, r.pt), (0xdead_beef, 7, 0));
        // uTP, QUIC short header, STUN and RTCP are not RTP.
        assert_eq!(rtp(&[0x41, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(rtp(&[0x45; 40]), None);
        assert_eq!(rtp(&stun_msg(1, [0; 12], 0)), None);
        let rr = [
            0x81, 201, 0, 7, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0,
        ];
        assert_eq!(rtcp(&rr), Some(0x0102_0304));
        assert_eq!(rtp(&rr), None);
        assert_eq!(rtcp(&rr[..20]), None);
    }
}
