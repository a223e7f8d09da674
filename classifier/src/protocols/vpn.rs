//! VPNs that must never be mistaken for P2P: WireGuard, OpenVPN (UDP and TCP) and IPsec
//! (IKEv1/IKEv2 on UDP 500 and 4500, ESP in UDP on 4500). Pure parsers over one payload;
//! the two-way pairing (an answer echoing the question's ids) is kept by
//! [`crate::everyday`].
//!
//! Layouts: WireGuard's whitepaper (section 5.4, message types 1-4, little-endian indices),
//! OpenVPN's `ssl_pkt.h`/protocol notes (opcode in the top 5 bits, key id in the low 3,
//! an 8-byte session id, then the ACK array that echoes the peer's session id), RFC 7296
//! (IKEv2 header), RFC 2408 (ISAKMP header), RFC 3948 (UDP encapsulation of ESP, the
//! four-zero-byte non-ESP marker and the one-byte NAT keepalive).

/// A WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wg {
    /// Handshake initiation (type 1, 148 bytes): the initiator's sender index.
    Init { sender: [u8; 4] },
    /// Handshake response (type 2, 92 bytes): its sender index and the echoed initiator's.
    Response { sender: [u8; 4], receiver: [u8; 4] },
    /// Cookie reply (type 3, 64 bytes): the index of the message it answers.
    Cookie { receiver: [u8; 4] },
    /// Transport data (type 4): receiver index and the 64-bit counter.
    Data { receiver: [u8; 4], counter: u64 },
}

fn idx(p: &[u8], o: usize) -> [u8; 4] {
    [p[o], p[o + 1], p[o + 2], p[o + 3]]
}

/// Parses a WireGuard message: the type byte, three reserved zero bytes, and the exact size
/// of its type (transport data: a 16-byte header and a sealed packet padded to 16 bytes,
/// 32 bytes for a keepalive).
pub fn wireguard(p: &[u8]) -> Option<Wg> {
    if p.len() < 32 || p[1..4] != [0, 0, 0] {
        return None;
    }
    match (p[0], p.len()) {
        (1, 148) => Some(Wg::Init { sender: idx(p, 4) }),
        (2, 92) => Some(Wg::Response {
            sender: idx(p, 4),
            receiver: idx(p, 8),
        }),
        (3, 64) => Some(Wg::Cookie {
            receiver: idx(p, 4),
        }),
        (4, n) if n % 16 == 0 => {
            let mut c = [0u8; 8];
            c.copy_from_slice(&p[8..16]);
            Some(Wg::Data {
                receiver: idx(p, 4),
                counter: u64::from_le_bytes(c),
            })
        }
        _ => None,
    }
}

/// OpenVPN opcodes (the top five bits of the first byte).
pub mod op {
    /// P_CONTROL_HARD_RESET_CLIENT_V2.
    pub const RESET_CLIENT_V2: u8 = 7;
    /// P_CONTROL_HARD_RESET_SERVER_V2.
    pub const RESET_SERVER_V2: u8 = 8;
    /// P_CONTROL_HARD_RESET_CLIENT_V3 (tls-crypt-v2).
    pub const RESET_CLIENT_V3: u8 = 10;
}

/// An OpenVPN control packet: opcode, key id and the sender's session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OvpnControl {
    /// Opcode (3..=5, 7, 8, 10, 11: the control and ACK opcodes, which carry a session id).
    pub opcode: u8,
    /// Key id (0 for the hard resets).
    pub key_id: u8,
    /// The sender's session id.
    pub session: [u8; 8],
}

/// Parses one OpenVPN control packet (UDP datagram, or TCP packet after its 2-byte length).
/// The session id must not be all zeros. Data packets (opcodes 6 and 9) carry no session
/// id and are not parsed here.
pub fn openvpn_control(p: &[u8]) -> Option<OvpnControl> {
    if p.len() < 14 {
        return None;
    }
    let (opcode, key_id) = (p[0] >> 3, p[0] & 7);
    if !matches!(opcode, 3..=5 | 7 | 8 | 10 | 11) {
        return None;
    }
    // The hard resets start a key exchange on key id 0.
    if matches!(opcode, 7 | 8 | 10) && key_id != 0 {
        return None;
    }
    let mut session = [0u8; 8];
    session.copy_from_slice(&p[1..9]);
    if session == [0; 8] {
        return None;
    }
    Some(OvpnControl {
        opcode,
        key_id,
        session,
    })
}

/// Whether the server's reset `p` echoes the client session id `client` in its ACK array
/// (the remote session id follows the acked packet ids; tls-auth puts an HMAC, a packet id
/// and a time before the array, so the echo is searched for in the first 96 bytes).
pub fn openvpn_echoes(p: &[u8], client: &[u8; 8]) -> bool {
    p.get(9..p.len().min(96))
        .is_some_and(|rest| rest.windows(8).any(|w| w == client))
}

/// An OpenVPN-over-TCP packet at the start of `head`: a 2-byte length prefix that fits the
/// protocol's packets (14..=1600 bytes), then the packet, possibly cut by the stream's end.
pub fn openvpn_tcp(head: &[u8]) -> Option<(OvpnControl, &[u8])> {
    let n = u16::from_be_bytes([*head.first()?, *head.get(1)?]) as usize;
    if !(14..=1600).contains(&n) {
        return None;
    }
    let pkt = head.get(2..head.len().min(2 + n))?;
    Some((openvpn_control(pkt)?, pkt))
}

/// An IKE message (ISAKMP header, RFC 2408 / RFC 7296).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ike {
    /// Initiator SPI (cookie), never zero.
    pub ispi: [u8; 8],
    /// Responder SPI: zero in the exchange's first message.
    pub rspi: [u8; 8],
    /// Whether this is IKEv2's response flag (bit 5) or, for IKEv1, a non-zero responder SPI.
    pub response: bool,
}

/// Parses an IKE header at the start of `p`, whose length field must equal `p`'s length:
/// version 1.0 (IKEv1: exchange types 1..=5, 32, 33) or 2.0 (IKEv2: 34..=37, 43), and a
/// known first payload type.
pub fn ike(p: &[u8]) -> Option<Ike> {
    if p.len() < 28 {
        return None;
    }
    let mut ispi = [0u8; 8];
    ispi.copy_from_slice(&p[0..8]);
    let mut rspi = [0u8; 8];
    rspi.copy_from_slice(&p[8..16]);
    let (next, version, exchange, flags) = (p[16], p[17], p[18], p[19]);
    let len = u32::from_be_bytes([p[24], p[25], p[26], p[27]]) as usize;
    if ispi == [0; 8] || len != p.len() {
        return None;
    }
    let response = match version {
        0x20 => {
            // IKEv2 payload types 33..=53 (SA .. ), 0 for none.
            if !matches!(exchange, 34..=37 | 43) || !(next == 0 || (33..=53).contains(&next)) {
                return None;
            }
            flags & 0x20 != 0
        }
        0x10 => {
            if !matches!(exchange, 1..=5 | 32 | 33) || next > 20 {
                return None;
            }
            rspi != [0; 8]
        }
        _ => return None,
    };
    Some(Ike {
        ispi,
        rspi,
        response,
    })
}

/// What a datagram on UDP 4500 carries (RFC 3948).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatT {
    /// An IKE message after the non-ESP marker.
    Ike(Ike),
    /// An ESP packet: SPI (never 1..=255 or 0) and sequence number.
    Esp { spi: u32, seq: u32 },
    /// The one-byte NAT keepalive.
    Keepalive,
}

/// Parses a UDP 4500 payload.
pub fn nat_t(p: &[u8]) -> Option<NatT> {
    if p == [0xff] {
        return Some(NatT::Keepalive);
    }
    if p.len() >= 4 && p[..4] == [0, 0, 0, 0] {
        return ike(&p[4..]).map(NatT::Ike);
    }
    // SPI, sequence, at least an 8-byte IV-less payload and a 12-byte ICV.
    if p.len() < 8 + 8 + 12 {
        return None;
    }
    let spi = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let seq = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    (spi > 255 && seq > 0).then_some(NatT::Esp { spi, seq })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn wg_init(sender: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x5au8; 148];
        p[..4].copy_from_slice(&[1, 0, 0, 0]);
        p[4..8].copy_from_slice(&sender);
        p
    }

    pub(crate) fn wg_response(sender: [u8; 4], receiver: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0xa5u8; 92];
        p[..4].copy_from_slice(&[2, 0, 0, 0]);
        p[4..8].copy_from_slice(&sender);
        p[8..12].copy_from_slice(&receiver);
        p
    }

    pub(crate) fn wg_data(receiver: [u8; 4], counter: u64, len: usize) -> Vec<u8> {
        let mut p = vec![0x33u8; len];
        p[..4].copy_from_slice(&[4, 0, 0, 0]);
        p[4..8].copy_from_slice(&receiver);
        p[8..16].copy_from_slice(&counter.to_le_bytes());
        p
    }

    /// An OpenVPN hard reset without tls-auth: opcode, session id, ACK array, packet id.
    pub(crate) fn ovpn_reset(opcode: u8, session: [u8; 8], ack_of: Option<[u8; 8]>) -> Vec<u8> {
        let mut p = vec![opcode << 3];
        p.extend_from_slice(&session);
        match ack_of {
            Some(remote) => {
                p.push(1);
                p.extend_from_slice(&0u32.to_be_bytes());
                p.extend_from_slice(&remote);
            }
            None => p.push(0),
        }
        p.extend_from_slice(&0u32.to_be_bytes());
        p
    }

    pub(crate) fn ike_sa_init(ispi: [u8; 8], rspi: [u8; 8], response: bool) -> Vec<u8> {
        let mut p = ispi.to_vec();
        p.extend_from_slice(&rspi);
        p.extend_from_slice(&[33, 0x20, 34, if response { 0x20 } else { 0x08 }]);
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&300u32.to_be_bytes());
        p.resize(300, 0x11);
        p
    }

    #[test]
    fn wireguard_messages_and_look_alikes() {
        assert_eq!(
            wireguard(&wg_init([1, 2, 3, 4])),
            Some(Wg::Init {
                sender: [1, 2, 3, 4]
            })
        );
        assert_eq!(
            wireguard(&wg_response([5; 4], [1, 2, 3, 4])),
            Some(Wg::Response {
                sender: [5; 4],
                receiver: [1, 2, 3, 4]
            })
        );
        assert!(matches!(
            wireguard(&wg_data([9; 4], 7, 32)),
            Some(Wg::Data { counter: 7, .. })
        ));
        // Wrong size for the type, reserved bytes set, a uTP SYN (type 4 | version 1).
        assert_eq!(wireguard(&wg_init([1; 4])[..147]), None);
        let mut bad = wg_init([1; 4]);
        bad[2] = 1;
        assert_eq!(wireguard(&bad), None);
        assert_eq!(wireguard(&wg_data([9; 4], 7, 40)), None, "not padded");
        let mut utp = vec![0x41u8, 0, 0x12, 0x34];
        utp.resize(20, 0);
        assert_eq!(wireguard(&utp), None);
    }

    #[test]
    fn openvpn_resets_echo_the_session() {
        let c = ovpn_reset(op::RESET_CLIENT_V2, [7; 8], None);
        let s = ovpn_reset(op::RESET_SERVER_V2, [8; 8], Some([7; 8]));
        let cc = openvpn_control(&c).expect("client reset");
        assert_eq!((cc.opcode, cc.session), (7, [7; 8]));
        assert_eq!(openvpn_control(&s).map(|s| s.opcode), Some(8));
        assert!(openvpn_echoes(&s, &[7; 8]));
        assert!(!openvpn_echoes(&s, &[9; 8]));
        // TCP: a 2-byte length first.
        let mut t = (c.len() as u16).to_be_bytes().to_vec();
        t.extend_from_slice(&c);
        assert_eq!(openvpn_tcp(&t).map(|(c, _)| c.opcode), Some(7));
        // A reset on key id 3, a zero session id, a data opcode, a BitTorrent handshake.
        let mut k3 = c.clone();
        k3[0] |= 3;
        assert_eq!(openvpn_control(&k3), None);
        assert_eq!(openvpn_control(&ovpn_reset(7, [0; 8], None)), None);
        assert_eq!(openvpn_control(&[9 << 3; 40]), None);
        assert_eq!(
            openvpn_tcp(b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0"),
            None
        );
    }

    #[test]
    fn ike_and_nat_t() {
        let req = ike_sa_init([3; 8], [0; 8], false);
        let resp = ike_sa_init([3; 8], [4; 8], true);
        assert_eq!(ike(&req).map(|i| i.response), Some(false));
        assert_eq!(
            ike(&resp).map(|i| (i.ispi, i.response)),
            Some(([3; 8], true))
        );
        assert_eq!(ike(&req[..299]), None, "length field must match");
        let mut marked = vec![0u8; 4];
        marked.extend_from_slice(&req);
        assert!(matches!(nat_t(&marked), Some(NatT::Ike(_))));
        let mut esp = 0x1000u32.to_be_bytes().to_vec();
        esp.extend_from_slice(&5u32.to_be_bytes());
        esp.resize(60, 0x77);
        assert_eq!(
            nat_t(&esp),
            Some(NatT::Esp {
                spi: 0x1000,
                seq: 5
            })
        );
        assert_eq!(nat_t(&[0xff]), Some(NatT::Keepalive));
        assert_eq!(
            ike(b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"),
            None
        );
    }
}
