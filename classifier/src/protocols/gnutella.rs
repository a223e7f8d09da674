//! Gnutella: the 0.6 handshake over TCP, HTTP file requests by hash, and descriptors over
//! UDP (`<guid:16><type:u8><ttl:u8><hops:u8><length:u32 LE><payload>`).

/// The handshake lines: connect request, and the responses to it.
pub fn tcp(p: &[u8]) -> bool {
    p.starts_with(b"GNUTELLA CONNECT/")
        || p.starts_with(b"GNUTELLA/0.6 ")
        || p.starts_with(b"GNUTELLA OK")
        // A download by hash (HUGE, `/uri-res/N2R?urn:sha1:`) or Gnutella's push-proxy GIV.
        || p.starts_with(b"GET /uri-res/N2R?urn:sha1:")
        || p.starts_with(b"GIV ") && p.len() > 40 && p.iter().take(64).any(|&b| b == b':')
}

/// A Gnutella descriptor over UDP: a known type, a sane TTL and hop count, and a length that
/// is exactly the rest of the datagram.
pub fn udp(p: &[u8]) -> bool {
    if p.len() < 23 {
        return false;
    }
    let len = u32::from_le_bytes([p[19], p[20], p[21], p[22]]) as usize;
    matches!(p[16], 0x00 | 0x01 | 0x02 | 0x31 | 0x32 | 0x40 | 0x80 | 0x81)
        && p[17] <= 16
        && p[18] <= 16
        && (p[17] as u16 + p[18] as u16) >= 1
        && len + 23 == p.len()
        // A GUID of zeros is what garbage looks like, not a client.
        && p[..16].iter().any(|&b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_and_descriptors() {
        assert!(tcp(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: LimeWire\r\n\r\n"));
        assert!(tcp(b"GNUTELLA/0.6 200 OK\r\n"));
        assert!(!tcp(b"GNUTELLA"));
        assert!(!tcp(b"GET / HTTP/1.1\r\n"));
        let mut ping = vec![7u8; 16];
        ping.extend_from_slice(&[0x00, 1, 0, 0, 0, 0, 0]);
        assert!(udp(&ping));
        ping[19] = 1; // length says one more byte
        assert!(!udp(&ping));
        assert!(!udp(&[0u8; 23]));
    }
}
