//! DNS (and its multicast/link-local cousins): a header whose counts fit the datagram.

/// A DNS message over UDP: 12-byte header, opcode 0..=5, one question or more for queries,
/// counts that could fit in the message, and a first name made of sane labels.
pub fn udp(p: &[u8]) -> bool {
    if p.len() < 17 {
        return false;
    }
    let flags = u16::from_be_bytes([p[2], p[3]]);
    let opcode = (flags >> 11) & 0x0f;
    let qd = u16::from_be_bytes([p[4], p[5]]) as usize;
    let an = u16::from_be_bytes([p[6], p[7]]) as usize;
    let ns = u16::from_be_bytes([p[8], p[9]]) as usize;
    let ar = u16::from_be_bytes([p[10], p[11]]) as usize;
    if opcode > 5 || flags & 0x0040 != 0 || qd > 16 || qd + an + ns + ar == 0 {
        return false;
    }
    // Each record needs 5 bytes at least.
    if (qd + an + ns + ar) * 5 > p.len() - 12 {
        return false;
    }
    if qd == 0 {
        // Responses without the question (mDNS announcements) start with a name too.
        return name_ok(&p[12..]);
    }
    name_ok(&p[12..])
}

/// A name of length-prefixed labels (or a compression pointer) that ends within `p`.
fn name_ok(p: &[u8]) -> bool {
    let mut o = 0;
    for _ in 0..128 {
        let Some(&l) = p.get(o) else { return false };
        if l == 0 {
            return true;
        }
        if l & 0xc0 == 0xc0 {
            return p.len() > o + 1;
        }
        if l > 63 || o + 1 + l as usize > p.len() {
            return false;
        }
        o += 1 + l as usize;
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_and_garbage() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        assert!(super::udp(&q));
        assert!(!super::udp(&q[..14]));
        let mut bad = q.clone();
        bad[12] = 90; // label longer than 63
        assert!(!super::udp(&bad));
        assert!(!super::udp(&[0xff; 40]));
    }
}
