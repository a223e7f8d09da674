//! eDonkey/eMule over TCP and UDP, and Kad (eMule's Kademlia DHT over UDP).
//!
//! TCP messages are `<protocol:u8><length:u32 LE><opcode:u8><payload>` where the protocol byte
//! is 0xe3 (eDonkey), 0xc5 (eMule extensions) or 0xd4 (zlib-packed); UDP datagrams are
//! `<protocol:u8><opcode:u8><payload>` with 0xe3/0xc5 and 0xe4/0xe5 for Kad (plain/packed).

/// eDonkey's client hello (0x01, with a 16-byte user hash: the next byte is 16) and hello
/// answer (0x4c).
const OP_HELLO: u8 = 0x01;
const OP_HELLO_ANSWER: u8 = 0x4c;

/// How sure one TCP packet makes us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tcp {
    /// The framing fits (protocol byte and a length matching the packet).
    Framed,
    /// A hello or hello answer: framing plus the opcode and hash size.
    Hello,
}

/// Checks the first packet of a TCP direction.
pub fn tcp(p: &[u8]) -> Option<Tcp> {
    if p.len() < 6 || !matches!(p[0], 0xe3 | 0xc5 | 0xd4) {
        return None;
    }
    let len = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
    if len == 0 || len > 1 << 21 {
        return None;
    }
    // The message fills the packet, or the packet is a chain of whole messages, or the
    // message continues in the next segment.
    let framed = if len + 5 == p.len() {
        true
    } else if len + 5 < p.len() {
        let next = &p[len + 5..];
        next.len() >= 6 && matches!(next[0], 0xe3 | 0xc5 | 0xd4)
    } else {
        len <= 1 << 16 && p.len() >= 512
    };
    if !framed {
        return None;
    }
    let op = p[5];
    if p[0] == 0xe3
        && (op == OP_HELLO && p.get(6) == Some(&16) || op == OP_HELLO_ANSWER && p.len() >= 22)
    {
        return Some(Tcp::Hello);
    }
    Some(Tcp::Framed)
}

/// Kad 2 opcodes (eMule's `KADEMLIA2_*`): bootstrap, hello, request/response, searches,
/// publishes, firewall checks, ping/pong.
const KAD_OPS: &[u8] = &[
    0x01, 0x09, 0x11, 0x19, 0x1a, 0x21, 0x22, 0x29, 0x33, 0x34, 0x35, 0x3b, 0x43, 0x44, 0x45, 0x4b,
    0x4c, 0x53, 0x58, 0x59, 0x60, 0x61, 0x62,
];

/// eDonkey server/client UDP opcodes (`OP_GLOBSEARCHREQ`, `OP_GLOBGETSOURCES`, status
/// requests, callbacks, `OP_REASKFILEPING` and answers...).
const ED_UDP_OPS: &[u8] = &[
    0x90, 0x91, 0x92, 0x93, 0x94, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0xa2, 0xa3, 0xa4, 0xa5, 0x90,
    0x91, 0x92, 0x93, 0x94, 0x95,
];

/// One UDP datagram's shape; a flow needs two of them (see the engine), as two bytes of
/// header are weak evidence alone.
pub fn udp(p: &[u8]) -> bool {
    if p.len() < 2 {
        return false;
    }
    match p[0] {
        0xe4 => KAD_OPS.contains(&p[1]) && p.len() >= 18,
        // Packed Kad: the opcode, then a zlib stream (0x78 header).
        0xe5 => KAD_OPS.contains(&p[1]) && p.get(2) == Some(&0x78),
        0xe3 => ED_UDP_OPS.contains(&p[1]) && p.len() >= 6,
        0xc5 => (0x90..=0xa0).contains(&p[1]) && p.len() >= 6,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Vec<u8> {
        let mut body = vec![OP_HELLO, 16];
        body.extend_from_slice(&[0xab; 16 + 6 + 4]);
        let mut p = vec![0xe3];
        p.extend_from_slice(&(body.len() as u32).to_le_bytes());
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn tcp_hello_and_look_alikes() {
        assert_eq!(tcp(&hello()), Some(Tcp::Hello));
        let mut h = hello();
        h[1] += 1; // length off by one
        assert_eq!(tcp(&h), None);
        let mut h = hello();
        h[6] = 20; // not a 16-byte hash
        assert_eq!(tcp(&h), Some(Tcp::Framed));
        assert_eq!(tcp(b"\xe3\x00\x00\x00\x00\x01"), None);
        assert_eq!(tcp(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn udp_shapes() {
        let mut kad = vec![0xe4, 0x11];
        kad.extend_from_slice(&[0; 20]);
        assert!(udp(&kad));
        assert!(!udp(&[0xe4, 0x07, 0, 0]));
        assert!(udp(&[0xe3, 0x96, 1, 2, 3, 4]));
        assert!(!udp(&[0x16, 0x03]));
    }
}
