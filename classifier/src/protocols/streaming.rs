//! RTMP and RTSP.

/// RTMP's handshake (Adobe RTMP spec §5.2): both sides open with version 3 (C0/S0) then a
/// 1536-byte random block (C1/S1). Both stream heads must start with 3 and have carried
/// C0+C1 / S0+S1 whole: 1537 bytes each at least.
pub fn rtmp(client: &[u8], server: &[u8]) -> bool {
    client.len() >= 1537 && server.len() >= 1537 && client[0] == 3 && server[0] == 3
}

/// RTSP methods (RFC 2326 §10, RFC 7826 §13).
const RTSP_METHODS: &[&[u8]] = &[
    b"OPTIONS ",
    b"DESCRIBE ",
    b"SETUP ",
    b"PLAY ",
    b"PAUSE ",
    b"TEARDOWN ",
    b"GET_PARAMETER ",
    b"SET_PARAMETER ",
    b"ANNOUNCE ",
    b"RECORD ",
    b"REDIRECT ",
];

/// An RTSP request line (`METHOD uri RTSP/1.0`) or status line (`RTSP/1.0 200 OK`).
pub fn rtsp(p: &[u8]) -> bool {
    if p.starts_with(b"RTSP/1.0 ") || p.starts_with(b"RTSP/2.0 ") {
        return p.get(9).is_some_and(|c| c.is_ascii_digit());
    }
    if !RTSP_METHODS.iter().any(|m| p.starts_with(m)) {
        return false;
    }
    let line_end = p
        .iter()
        .take(2048)
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(p.len().min(2048));
    let line = &p[..line_end];
    line.ends_with(b" RTSP/1.0") || line.ends_with(b" RTSP/2.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_handshake_sizes() {
        let mut c = vec![3u8];
        c.extend_from_slice(&[0x55; 1536]);
        let s = c.clone();
        assert!(rtmp(&c, &s));
        assert!(!rtmp(&c[..1536], &s), "C1 cut short");
        let mut other = c.clone();
        other[0] = 6;
        assert!(!rtmp(&other, &s));
    }

    #[test]
    fn rtsp_lines() {
        assert!(rtsp(
            b"OPTIONS rtsp://10.2.2.2:8554/s RTSP/1.0\r\nCSeq: 1\r\n"
        ));
        assert!(rtsp(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n"));
        assert!(!rtsp(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(!rtsp(b"PLAYLIST"));
    }
}
