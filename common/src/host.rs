//! Host names as the classifier's catalogue and the policies' classes read them (TLS SNI,
//! QUIC SNI, HTTP `Host`).

/// One label of a host name: 1 to 63 letters, digits, `-` and `_` (`_` is seen in real
/// server names though RFC 1123 leaves it out), not starting or ending with `-`.
pub fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A host name: at most 253 characters, labels ([`is_label`]) separated by dots.
pub fn is_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(is_name("rr3---sn-a.googlevideo.com"));
        assert!(is_name("_dmarc.example.org"));
        for bad in [
            "", ".", "a..b", "-a.com", "a-.com", "a b.com", "a/b.com", "é.com",
        ] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(!is_label(&"a".repeat(64)));
    }
}
