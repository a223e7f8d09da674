//! P2P TV over UDP beyond PeerCast: PPLive/PPTV, PPStream and TVAnts, from the public
//! descriptions of their packet headers (libprotoident's and OpenDPI's signatures).

/// PPLive/PPTV: a request starts with one of three 4-byte headers and the peer answers
/// with one of them too. One direction alone is not enough (4 bytes).
const PPLIVE_HEADS: [[u8; 4]; 3] = [
    [0xe9, 0x03, 0x41, 0x01],
    [0xe9, 0x03, 0x42, 0x01],
    [0x1c, 0x1c, 0x32, 0x01],
];

/// Whether a datagram starts with a PPLive header.
pub fn pplive_head(p: &[u8]) -> bool {
    p.len() >= 4 && PPLIVE_HEADS.iter().any(|h| p[..4] == *h)
}

/// TVAnts: version 4, a command 5..=7, the little-endian length of the whole datagram at
/// offset 4, and the `TVANTS` tag in the header's tail (offset 48, 49 or 51).
pub fn tvants(p: &[u8]) -> bool {
    p.len() > 57
        && p[0] == 0x04
        && p[1] == 0
        && (5..=7).contains(&p[2])
        && p[3] == 0
        && u16::from_le_bytes([p[4], p[5]]) as usize == p.len()
        && p[6] == 0
        && p[7] == 0
        && [48, 49, 51]
            .iter()
            .any(|&o| p.get(o..o + 6) == Some(b"TVANTS"))
}

/// PPStream's UDP port.
pub const PPSTREAM_PORT: u16 = 17788;

/// PPStream on its port: a little-endian length at offset 0 (of the datagram, or of what
/// follows a 4- or 6-byte header), and a command class 0x43, 0x44 or 0x55 at offset 2.
/// Weak alone: the engine wants two such datagrams.
pub fn ppstream(p: &[u8], sport: u16, dport: u16) -> bool {
    if p.len() <= 14 || (sport != PPSTREAM_PORT && dport != PPSTREAM_PORT) {
        return false;
    }
    let l = u16::from_le_bytes([p[0], p[1]]) as usize;
    (l == p.len() || l + 4 == p.len() || l + 6 == p.len()) && matches!(p[2], 0x43 | 0x44 | 0x55)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tvants_header() {
        let mut p = vec![0u8; 80];
        p[..4].copy_from_slice(&[4, 0, 6, 0]);
        p[4..6].copy_from_slice(&80u16.to_le_bytes());
        p[48..54].copy_from_slice(b"TVANTS");
        assert!(tvants(&p));
        p[4] = 81;
        assert!(!tvants(&p), "length must match");
        p[4] = 80;
        p[48] = b'X';
        assert!(!tvants(&p));
    }

    #[test]
    fn pplive_and_ppstream() {
        assert!(pplive_head(&[0xe9, 0x03, 0x41, 0x01, 9, 9]));
        assert!(!pplive_head(&[0xe9, 0x03, 0x43, 0x01]));
        let mut p = vec![0u8; 40];
        p[..2].copy_from_slice(&36u16.to_le_bytes());
        p[2] = 0x43;
        assert!(ppstream(&p, 17788, 5000));
        assert!(!ppstream(&p, 17789, 5000), "only on its port");
        p[2] = 0x10;
        assert!(!ppstream(&p, 17788, 5000));
    }
}
