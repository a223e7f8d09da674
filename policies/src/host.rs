//! Host name patterns of user-defined classes: `example.com` or `*.example.com`.
//!
//! They match the host names the classifier sees (TLS SNI, QUIC, HTTP `Host`).

use std::fmt;

/// A host name, or with a leading `*.` every name below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Lower-case name without the `*.`.
    name: String,
    /// `*.name`: subdomains of `name`, not `name` itself.
    wildcard: bool,
}

impl HostPattern {
    /// Parses `example.com` or `*.example.com`. Labels are letters, digits, `-` and `_`,
    /// 1 to 63 characters, not starting or ending with `-`. Case is ignored.
    pub fn parse(s: &str) -> Option<HostPattern> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        peerwarden_common::host::is_name(name).then(|| HostPattern {
            name: name.to_owned(),
            wildcard,
        })
    }

    /// Whether `host` matches: equal for a plain name, a proper subdomain for `*.`.
    pub fn matches(&self, host: &str) -> bool {
        // Bytes, not str slices: a non-ASCII host must not split a character.
        let h = host.trim_end_matches('.').as_bytes();
        let n = self.name.as_bytes();
        if self.wildcard {
            h.len() > n.len() + 1
                && h[h.len() - n.len()..].eq_ignore_ascii_case(n)
                && h[h.len() - n.len() - 1] == b'.'
        } else {
            h.eq_ignore_ascii_case(n)
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        let w = HostPattern::parse("*.GoogleVideo.com").expect("valid");
        assert_eq!(w.to_string(), "*.googlevideo.com");
        assert!(w.matches("rr1---sn-abc.googlevideo.com"));
        assert!(!w.matches("googlevideo.com"));
        assert!(!w.matches("xgooglevideo.com"));
        let p = HostPattern::parse("steamcontent.com").expect("valid");
        assert!(p.matches("SteamContent.com."));
        assert!(!p.matches("cdn.steamcontent.com"));
        assert!(!p.matches("é.steamcontent.com"));
        assert!(w.matches("é.googlevideo.com"));
        assert!(!w.matches("éégooglevideo.com"));
    }

    #[test]
    fn rejects_what_is_not_a_host_name() {
        for bad in [
            "",
            "*",
            "*.",
            "*example.com",
            "a..b",
            "-a.com",
            "a b.com",
            "http://a.com",
            "a.*.com",
        ] {
            assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
        }
    }
}
