//! IPv4 and IPv6 prefixes (CIDR) of subscribers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address prefix: the network address and the prefix length. Host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// Not an address, or a length that is not a number.
    Syntax,
    /// The length is beyond the family's width.
    LengthTooLong {
        /// 32 or 128.
        max: u8,
    },
    /// Bits beyond the length are set: `100.64.1.10/24`.
    HostBits {
        /// The prefix the operator probably meant, host bits cleared.
        network: Prefix,
    },
}

impl Prefix {
    /// A prefix from its parts; `None` if the length is too long or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let p = Prefix { addr, len };
        (len <= p.max_len() && p.masked() == p).then_some(p)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// 32 for IPv4, 128 for IPv6.
    pub fn max_len(&self) -> u8 {
        if self.is_ipv4() { 32 } else { 128 }
    }

    /// Whether `addr` lies in the prefix. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.is_ipv4()
            && mask(bits(addr), self.len, self.max_len()) == bits(self.addr)
    }

    /// Whether the two prefixes share any address (one holds the other).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.is_ipv4() == other.is_ipv4() && {
            let len = self.len.min(other.len);
            mask(bits(self.addr), len, self.max_len())
                == mask(bits(other.addr), len, self.max_len())
        }
    }

    /// The address as an integer, left-aligned in its family's width (IPv4 in the low 32 bits).
    pub(crate) fn bits(&self) -> u128 {
        bits(self.addr)
    }

    fn masked(&self) -> Prefix {
        let m = mask(bits(self.addr), self.len, self.max_len());
        Prefix {
            addr: from_bits(m, self.is_ipv4()),
            len: self.len,
        }
    }
}

pub(crate) fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(b: u128, v4: bool) -> IpAddr {
    if v4 {
        // Only called with values that came from a u32.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(b).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

/// Keeps the top `len` bits of a `width`-bit address.
pub(crate) fn mask(b: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let host = u32::from(width.saturating_sub(len));
    let keep = u128::MAX.checked_shl(host).unwrap_or(0);
    b & keep
}

impl std::str::FromStr for Prefix {
    type Err = PrefixError;

    /// `100.64.1.0/24`, `2001:db8:1::/64`; a bare address is a host prefix (/32, /128).
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::Syntax)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .map_err(|_| PrefixError::LengthTooLong { max })?,
            Some(_) => return Err(PrefixError::Syntax),
        };
        if len > max {
            return Err(PrefixError::LengthTooLong { max });
        }
        let p = Prefix { addr, len };
        let network = p.masked();
        if network != p {
            return Err(PrefixError::HostBits { network });
        }
        Ok(p)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().expect(s)
    }

    #[test]
    fn parses_both_families_and_bare_hosts() {
        assert_eq!(p("100.64.1.0/24").prefix_len(), 24);
        assert_eq!(p("2001:db8:1::/64").to_string(), "2001:db8:1::/64");
        assert_eq!(p("100.64.1.10").to_string(), "100.64.1.10/32");
        assert_eq!(p("2001:db8::1").prefix_len(), 128);
        assert_eq!(p("0.0.0.0/0").prefix_len(), 0);
    }

    #[test]
    fn rejects_bad_prefixes_with_the_reason() {
        assert_eq!(
            "100.64.1.300/32".parse::<Prefix>(),
            Err(PrefixError::Syntax)
        );
        assert_eq!("100.64.1.0/".parse::<Prefix>(), Err(PrefixError::Syntax));
        assert_eq!("100.64.1.0/+8".parse::<Prefix>(), Err(PrefixError::Syntax));
        assert_eq!(
            "100.64.1.0/33".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { max: 32 })
        );
        assert_eq!(
            "::/999".parse::<Prefix>(),
            Err(PrefixError::LengthTooLong { max: 128 })
        );
        assert_eq!(
            "100.64.1.10/24".parse::<Prefix>(),
            Err(PrefixError::HostBits {
                network: p("100.64.1.0/24")
            })
        );
        assert_eq!(
            "2001:db8:1::10/64".parse::<Prefix>(),
            Err(PrefixError::HostBits {
                network: p("2001:db8:1::/64")
            })
        );
    }

    #[test]
    fn containment_and_overlap() {
        let net = p("100.64.0.0/16");
        assert!(net.contains("100.64.1.10".parse().expect("addr")));
        assert!(!net.contains("100.65.0.1".parse().expect("addr")));
        assert!(net.contains("::ffff:100.64.9.9".parse().expect("mapped")));
        assert!(net.overlaps(&p("100.64.1.10/32")));
        assert!(p("100.64.1.10/32").overlaps(&net));
        assert!(!net.overlaps(&p("100.65.0.0/16")));
        assert!(!net.overlaps(&p("::/0")));
        assert!(p("2001:db8::/32").overlaps(&p("2001:db8:1::10/128")));
        assert!(p("0.0.0.0/0").contains("203.0.113.1".parse().expect("addr")));
    }

    #[test]
    fn new_checks_length_and_host_bits() {
        let a: IpAddr = "10.0.0.0".parse().expect("addr");
        assert!(Prefix::new(a, 8).is_some());
        assert!(Prefix::new(a, 33).is_none());
        assert!(Prefix::new("10.0.0.1".parse().expect("addr"), 8).is_none());
    }
}
