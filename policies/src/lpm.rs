//! Longest-prefix match from an address to a subscriber, in plain Rust.
//!
//! The kernel does the same with an LPM trie map; this one serves the daemon, the API
//! and tests. One hash map per prefix length in use, probed from the longest length
//! down: at most 33 (IPv4) or 129 (IPv6) probes, usually a handful, since an ISP uses
//! few distinct lengths.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::prefix::{Prefix, bits, mask};

/// Prefixes of one family to values, for longest-prefix match.
#[derive(Clone, Debug, Default)]
struct Family {
    /// (length, network bits -> value), longest length first.
    by_len: Vec<(u8, HashMap<u128, usize>)>,
}

impl Family {
    fn insert(&mut self, prefix: &Prefix, value: usize) {
        let len = prefix.prefix_len();
        let at = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.by_len.insert(i, (len, HashMap::new()));
                i
            }
        };
        if let Some((_, map)) = self.by_len.get_mut(at) {
            map.insert(prefix.bits(), value);
        }
    }

    fn lookup(&self, addr: u128, width: u8) -> Option<usize> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&mask(addr, *len, width)).copied())
    }
}

/// A longest-prefix-match table from addresses to indices (of subscribers).
#[derive(Clone, Debug, Default)]
pub(crate) struct PrefixTable {
    v4: Family,
    v6: Family,
}

impl PrefixTable {
    /// Adds a prefix; a second insert of the same prefix replaces the value.
    pub(crate) fn insert(&mut self, prefix: &Prefix, value: usize) {
        if prefix.is_ipv4() {
            self.v4.insert(prefix, value);
        } else {
            self.v6.insert(prefix, value);
        }
    }

    /// The value of the longest prefix holding `addr`. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are looked up as IPv4.
    pub(crate) fn lookup(&self, addr: IpAddr) -> Option<usize> {
        let addr = addr.to_canonical();
        match addr {
            IpAddr::V4(_) => self.v4.lookup(bits(addr), 32),
            IpAddr::V6(_) => self.v6.lookup(bits(addr), 128),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(prefixes: &[&str]) -> PrefixTable {
        let mut t = PrefixTable::default();
        for (i, p) in prefixes.iter().enumerate() {
            t.insert(&p.parse().expect(p), i);
        }
        t
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&[
            "100.64.0.0/10",
            "100.64.1.0/24",
            "100.64.1.10/32",
            "0.0.0.0/0",
        ]);
        assert_eq!(t.lookup(ip("100.64.1.10")), Some(2));
        assert_eq!(t.lookup(ip("100.64.1.11")), Some(1));
        assert_eq!(t.lookup(ip("100.100.0.1")), Some(0));
        assert_eq!(t.lookup(ip("198.51.100.7")), Some(3));
    }

    #[test]
    fn families_are_separate() {
        let t = table(&["100.64.1.10/32", "2001:db8:1::/64", "2001:db8:1::10/128"]);
        assert_eq!(t.lookup(ip("2001:db8:1::10")), Some(2));
        assert_eq!(t.lookup(ip("2001:db8:1::11")), Some(1));
        assert_eq!(t.lookup(ip("2001:db8:2::1")), None);
        assert_eq!(t.lookup(ip("::ffff:100.64.1.10")), Some(0));
        assert_eq!(t.lookup(ip("100.64.1.11")), None);
    }

    #[test]
    fn empty_table_finds_nothing() {
        assert_eq!(PrefixTable::default().lookup(ip("10.0.0.1")), None);
    }
}
