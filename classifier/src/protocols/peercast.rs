//! PeerCast (P2P TV): its PCP protocol starts with the `pcp\n` atom (4-byte length 4, then
//! the version); channel relays over HTTP are matched in [`super::http`].

/// A PCP connection's first atom.
pub fn pcp(p: &[u8]) -> bool {
    p.len() >= 12 && p.starts_with(b"pcp\n") && p[4..8] == [4, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    #[test]
    fn pcp_atom() {
        assert!(super::pcp(b"pcp\n\x04\x00\x00\x00\x01\x00\x00\x00"));
        assert!(!super::pcp(b"pcp\n\x05\x00\x00\x00\x01\x00\x00\x00"));
        assert!(!super::pcp(b"pcp\n"));
    }
}
