//! Rates (bits per second) and burst sizes (bytes), as operators write them.
//!
//! Units follow tc(8): rates are SI (`1kbit` = 1000 bit/s), byte sizes are binary
//! (`1kb` = 1024 bytes), so a number moved between a policy and a `tc` command line
//! means the same thing.

use std::fmt;

/// A rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

impl Rate {
    /// A rate of `bits` bits per second.
    pub const fn from_bits_per_sec(bits: u64) -> Rate {
        Rate(bits)
    }

    /// Bits per second.
    pub const fn bits_per_sec(self) -> u64 {
        self.0
    }

    /// Bytes per second, rounded down (token buckets count bytes).
    pub const fn bytes_per_sec(self) -> u64 {
        self.0 / 8
    }
}

impl fmt::Display for Rate {
    /// The largest unit that shows the rate exactly: `50mbit`, `1500kbit`, `999bit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

/// Why a rate or size did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountError {
    /// Not a number with a known unit.
    Syntax,
    /// Does not fit in 64 bits.
    TooLarge,
    /// A fraction of the smallest unit (`0.5bit`).
    Fractional,
}

const RATE_UNITS: &[(&str, u64)] = &[
    ("bit", 1),
    ("kbit", 1_000),
    ("mbit", 1_000_000),
    ("gbit", 1_000_000_000),
    ("tbit", 1_000_000_000_000),
];

const BYTE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1 << 10),
    ("mb", 1 << 20),
    ("gb", 1 << 30),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

/// Parses `50mbit`, `1.5gbit`, `800kbit`, `64000bit` or a plain number of bits per
/// second. Units are case-insensitive; a space may separate number and unit.
pub fn parse_rate(s: &str) -> Result<Rate, AmountError> {
    parse_amount(s, RATE_UNITS).map(Rate)
}

/// Parses a size in bytes: `64kb`, `1mb`, `1.5mb`, `1500b` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, AmountError> {
    parse_amount(s, BYTE_UNITS)
}

/// `number [unit]`, where the number may have a decimal fraction. Exact integer
/// arithmetic: no float rounding decides whether `0.1gbit` is 100 mbit.
fn parse_amount(s: &str, units: &[(&str, u64)]) -> Result<u64, AmountError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim_start().to_ascii_lowercase();
    let scale = if unit.is_empty() {
        1
    } else {
        units
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or(AmountError::Syntax)?
    };
    let number = number.replace('_', "");
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number.as_str(), ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::Syntax);
    }
    if number.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return Err(AmountError::Syntax);
    }
    let whole = int
        .parse::<u64>()
        .map_err(|_| AmountError::TooLarge)?
        .checked_mul(scale)
        .ok_or(AmountError::TooLarge)?;
    // The fraction times the scale must come out whole: 1.5kbit is 1500 bit/s,
    // 1.0005kbit is not a rate.
    let mut part: u128 = 0;
    let mut denom: u128 = 1;
    for d in frac.bytes() {
        part = part * 10 + u128::from(d - b'0');
        denom *= 10;
        if denom > 1_000_000_000_000_000_000 {
            return Err(AmountError::Fractional);
        }
    }
    let scaled = part * u128::from(scale);
    if !scaled.is_multiple_of(denom) {
        return Err(AmountError::Fractional);
    }
    let extra = u64::try_from(scaled / denom).map_err(|_| AmountError::TooLarge)?;
    whole.checked_add(extra).ok_or(AmountError::TooLarge)
}

/// Shows a byte count the way burst sizes are written: `64kb`, `1mb`, `1500b`.
pub fn format_bytes(n: u64) -> String {
    for (unit, scale) in [("gb", 1u64 << 30), ("mb", 1 << 20), ("kb", 1 << 10)] {
        if n >= scale && n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}b")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_si_units() {
        let r = |s| parse_rate(s).map(Rate::bits_per_sec);
        assert_eq!(r("50mbit"), Ok(50_000_000));
        assert_eq!(r("10gbit"), Ok(10_000_000_000));
        assert_eq!(r("800kbit"), Ok(800_000));
        assert_eq!(r("64000"), Ok(64_000));
        assert_eq!(r("64000bit"), Ok(64_000));
        assert_eq!(r("1.5gbit"), Ok(1_500_000_000));
        assert_eq!(r("0.1gbit"), Ok(100_000_000));
        assert_eq!(r("5 Mbit"), Ok(5_000_000));
        assert_eq!(r("1_000_000"), Ok(1_000_000));
        assert_eq!(r("0mbit"), Ok(0));
    }

    #[test]
    fn rates_reject_bytes_and_nonsense() {
        for bad in [
            "5mb", "5mbps", "5 m", "", "mbit", ".5mbit", "5.mbit", "-5mbit", "5mbit/s", "1e6",
        ] {
            assert_eq!(parse_rate(bad), Err(AmountError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_rate("0.5bit"), Err(AmountError::Fractional));
        assert_eq!(parse_rate("1.0000005kbit"), Err(AmountError::Fractional));
        assert_eq!(
            parse_rate("99999999999999999999"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(parse_rate("20000000000gbit"), Err(AmountError::TooLarge));
    }

    #[test]
    fn rates_display_in_the_largest_exact_unit() {
        assert_eq!(Rate(50_000_000).to_string(), "50mbit");
        assert_eq!(Rate(1_500_000).to_string(), "1500kbit");
        assert_eq!(Rate(10_000_000_000).to_string(), "10gbit");
        assert_eq!(Rate(999).to_string(), "999bit");
        assert_eq!(Rate(0).to_string(), "0bit");
        assert_eq!(Rate(8_000).bytes_per_sec(), 1_000);
    }

    #[test]
    fn bytes_are_binary_like_tc() {
        assert_eq!(parse_bytes("64kb"), Ok(65_536));
        assert_eq!(parse_bytes("1mb"), Ok(1_048_576));
        assert_eq!(parse_bytes("1MiB"), Ok(1_048_576));
        assert_eq!(parse_bytes("1.5kb"), Ok(1_536));
        assert_eq!(parse_bytes("1500"), Ok(1_500));
        assert_eq!(parse_bytes("1500b"), Ok(1_500));
        assert_eq!(parse_bytes("64k"), Err(AmountError::Syntax));
        assert_eq!(parse_bytes("64kbit"), Err(AmountError::Syntax));
        assert_eq!(format_bytes(65_536), "64kb");
        assert_eq!(format_bytes(1_500), "1500b");
    }
}
