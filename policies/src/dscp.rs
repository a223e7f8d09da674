//! DSCP codepoints by name (RFC 2474, 2597, 3246, 5865, 8622) or number.

use std::fmt;

/// A DSCP codepoint, 0..=63.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dscp(u8);

/// Why a DSCP value did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DscpError {
    /// Neither a known name nor a number.
    Unknown,
    /// A number above 63.
    OutOfRange,
}

const NAMES: &[(&str, u8)] = &[
    ("DF", 0),
    ("BE", 0),
    ("LE", 1),
    ("CS0", 0),
    ("CS1", 8),
    ("CS2", 16),
    ("CS3", 24),
    ("CS4", 32),
    ("CS5", 40),
    ("CS6", 48),
    ("CS7", 56),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("VA", 44),
    ("EF", 46),
];

impl Dscp {
    /// The codepoint, 0..=63 (the top six bits of the IP TOS / traffic class byte).
    pub const fn value(self) -> u8 {
        self.0
    }

    /// The codepoint with this value, if it fits in six bits.
    pub const fn new(value: u8) -> Option<Dscp> {
        if value < 64 { Some(Dscp(value)) } else { None }
    }

    /// The usual name of the codepoint, if it has one (`DF` for 0).
    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(_, v)| *v == self.0).map(|(n, _)| *n)
    }
}

impl std::str::FromStr for Dscp {
    type Err = DscpError;

    /// A name (case-insensitive: `LE`, `cs1`, `AF41`, `EF`) or a number 0..=63.
    fn from_str(s: &str) -> Result<Dscp, DscpError> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u8>()
                .ok()
                .and_then(Dscp::new)
                .ok_or(DscpError::OutOfRange);
        }
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, v)| Dscp(*v))
            .ok_or(DscpError::Unknown)
    }
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = |s: &str| s.parse::<Dscp>().map(Dscp::value);
        assert_eq!(d("LE"), Ok(1));
        assert_eq!(d("cs1"), Ok(8));
        assert_eq!(d("AF11"), Ok(10));
        assert_eq!(d("AF43"), Ok(38));
        assert_eq!(d("EF"), Ok(46));
        assert_eq!(d("46"), Ok(46));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("63"), Ok(63));
        assert_eq!(d("64"), Err(DscpError::OutOfRange));
        assert_eq!(d("999"), Err(DscpError::OutOfRange));
        assert_eq!(d("AF14"), Err(DscpError::Unknown));
        assert_eq!(d("-1"), Err(DscpError::Unknown));
        assert_eq!(Dscp(1).to_string(), "LE");
        assert_eq!(Dscp(3).to_string(), "3");
    }
}
