//! A small, strict bencode reader (BEP 3's encoding), for DHT KRPC messages.
//!
//! It borrows from the input and allocates nothing: [`parse`] walks the whole value once to
//! check it (nesting at most [`MAX_DEPTH`] deep, at most [`MAX_INPUT`] bytes, integers that
//! fit an `i64`, string lengths inside the input, no duplicate dictionary key, nothing after
//! the value), and lists and dictionaries are then read lazily through iterators over the
//! checked bytes. So a hostile packet costs at most a few walks of its own length, never a
//! panic or an allocation sized by a length field.
//!
//! Strict where the encoding is unambiguous (no leading zeros, no `-0`, no empty integer,
//! byte strings and keys as the spec writes them); dictionary key order is not enforced:
//! BEP 3 asks for sorted keys, but DHT messages with keys out of order occur in real traffic
//! (the classifier matches those too, `dht_any_order`), and the order changes no meaning. A
//! repeated key does change meaning (which one counts?), so it is refused.

/// Deepest nesting accepted (KRPC needs 3: message, arguments, a list of values).
pub const MAX_DEPTH: usize = 16;
/// Largest input accepted: a KRPC message fits one datagram.
pub const MAX_INPUT: usize = 64 * 1024;
/// Most entries in one dictionary (the duplicate check compares keys pairwise).
pub const MAX_DICT_ENTRIES: usize = 64;

/// Why bytes are not one bencoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended inside a value.
    #[error("bencode: truncated at byte {0}")]
    Truncated(usize),
    /// A byte that cannot start or continue a value here.
    #[error("bencode: unexpected byte at {0}")]
    Unexpected(usize),
    /// An integer or length with a leading zero, `-0`, no digits, or out of range.
    #[error("bencode: bad number at byte {0}")]
    BadNumber(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("bencode: nested deeper than {MAX_DEPTH} at byte {0}")]
    TooDeep(usize),
    /// Longer than [`MAX_INPUT`].
    #[error("bencode: input over {MAX_INPUT} bytes")]
    TooLong,
    /// A dictionary key that is not a byte string, repeated, or too many entries.
    #[error("bencode: bad dictionary key at byte {0}")]
    BadKey(usize),
    /// Bytes after the value.
    #[error("bencode: trailing bytes at {0}")]
    Trailing(usize),
}

/// One value, borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(&'a [u8]),
    /// `l...e`.
    List(List<'a>),
    /// `d...e`.
    Dict(Dict<'a>),
}

/// A checked list: its items, read on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List<'a> {
    /// The items' bytes (between `l` and `e`), already checked.
    body: &'a [u8],
}

/// A checked dictionary: its entries, read on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dict<'a> {
    /// The entries' bytes (between `d` and `e`), already checked.
    body: &'a [u8],
}

/// Reads `input` as exactly one bencoded value.
pub fn parse(input: &[u8]) -> Result<Value<'_>, Error> {
    if input.len() > MAX_INPUT {
        return Err(Error::TooLong);
    }
    let (v, end) = value(input, 0, 0)?;
    if end != input.len() {
        return Err(Error::Trailing(end));
    }
    Ok(v)
}

impl<'a> Value<'a> {
    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<Dict<'a>> {
        match self {
            Value::Dict(d) => Some(*d),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<List<'a>> {
        match self {
            Value::List(l) => Some(*l),
            _ => None,
        }
    }
}

impl<'a> Dict<'a> {
    /// The entries in the order they are written.
    pub fn iter(&self) -> DictIter<'a> {
        DictIter {
            body: self.body,
            pos: 0,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Value<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<'a> List<'a> {
    /// The items in order.
    pub fn iter(&self) -> ListIter<'a> {
        ListIter {
            body: self.body,
            pos: 0,
        }
    }
}

/// A dictionary's entries.
pub struct DictIter<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for DictIter<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // The body was checked by `parse`: a failure here cannot happen, and ends the walk.
        let (k, after_key) = value(self.body, self.pos, 0).ok()?;
        let (v, end) = value(self.body, after_key, 0).ok()?;
        self.pos = end;
        Some((k.as_bytes()?, v))
    }
}

/// A list's items.
pub struct ListIter<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (v, end) = value(self.body, self.pos, 0).ok()?;
        self.pos = end;
        Some(v)
    }
}

/// The value starting at `pos`, and where it ends. `depth` counts the containers around it.
fn value(b: &[u8], pos: usize, depth: usize) -> Result<(Value<'_>, usize), Error> {
    match *b.get(pos).ok_or(Error::Truncated(pos))? {
        b'i' => {
            let end = find_byte(b, pos + 1, b'e')?;
            let n = number(&b[pos + 1..end], true).ok_or(Error::BadNumber(pos))?;
            Ok((Value::Int(n), end + 1))
        }
        b'0'..=b'9' => {
            let colon = find_byte(b, pos, b':')?;
            let len = number(&b[pos..colon], false).ok_or(Error::BadNumber(pos))?;
            let start = colon + 1;
            let len = usize::try_from(len).map_err(|_| Error::BadNumber(pos))?;
            let end = start.checked_add(len).ok_or(Error::BadNumber(pos))?;
            let s = b.get(start..end).ok_or(Error::Truncated(b.len()))?;
            Ok((Value::Bytes(s), end))
        }
        c @ (b'l' | b'd') => {
            if depth >= MAX_DEPTH {
                return Err(Error::TooDeep(pos));
            }
            let mut at = pos + 1;
            // The keys seen so far, for the duplicate check: on the stack, so checking costs
            // key comparisons only and never walks a value twice (a walk per earlier key
            // would multiply with the nesting).
            let mut keys: [&[u8]; MAX_DICT_ENTRIES] = [&[]; MAX_DICT_ENTRIES];
            let mut entries = 0usize;
            loop {
                match b.get(at) {
                    None => return Err(Error::Truncated(at)),
                    Some(b'e') => break,
                    Some(_) => {}
                }
                if c == b'd' {
                    let key_at = at;
                    let (k, after) = value(b, at, depth + 1)?;
                    let Value::Bytes(key) = k else {
                        return Err(Error::BadKey(key_at));
                    };
                    if entries == MAX_DICT_ENTRIES || keys[..entries].contains(&key) {
                        return Err(Error::BadKey(key_at));
                    }
                    keys[entries] = key;
                    entries += 1;
                    at = after;
                }
                at = value(b, at, depth + 1)?.1;
            }
            let body = &b[pos + 1..at];
            let v = if c == b'l' {
                Value::List(List { body })
            } else {
                Value::Dict(Dict { body })
            };
            Ok((v, at + 1))
        }
        _ => Err(Error::Unexpected(pos)),
    }
}

/// The position of the first `byte` at or after `from`.
fn find_byte(b: &[u8], from: usize, byte: u8) -> Result<usize, Error> {
    // An integer or a length has at most 20 characters; looking further only burns time.
    let window = b.get(from..).ok_or(Error::Truncated(from))?;
    let window = &window[..window.len().min(22)];
    match window.iter().position(|&c| c == byte) {
        Some(i) => Ok(from + i),
        None if window.len() < 22 && from + window.len() == b.len() => {
            Err(Error::Truncated(b.len()))
        }
        None => Err(Error::BadNumber(from)),
    }
}

/// A decimal number as bencode writes it: digits without a leading zero (a lone `0` aside),
/// and, when `signed`, an optional `-` that is not followed by `0`.
fn number(digits: &[u8], signed: bool) -> Option<i64> {
    let (neg, d) = match digits.split_first() {
        Some((b'-', rest)) if signed => (true, rest),
        _ => (false, digits),
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) || (d[0] == b'0' && (d.len() > 1 || neg)) {
        return None;
    }
    let mut n: i64 = 0;
    for &c in d {
        let digit = i64::from(c - b'0');
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(digit)?
        } else {
            n.checked_add(digit)?
        };
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_krpc_query() {
        let m = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe";
        let d = parse(m).expect("valid").as_dict().expect("dict");
        assert_eq!(
            d.get(b"q").and_then(|v| v.as_bytes()),
            Some(&b"get_peers"[..])
        );
        let a = d.get(b"a").and_then(|v| v.as_dict()).expect("a");
        assert_eq!(
            a.get(b"info_hash").and_then(|v| v.as_bytes()),
            Some(&b"mnopqrstuvwxyz123456"[..])
        );
        assert_eq!(d.iter().count(), 4);
    }

    #[test]
    fn integers_and_lists() {
        assert_eq!(parse(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(parse(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(parse(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(parse(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(parse(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        let l = parse(b"l1:ai1ee").expect("list").as_list().expect("list");
        let items: Vec<_> = l.iter().collect();
        assert_eq!(items, vec![Value::Bytes(b"a"), Value::Int(1)]);
        assert_eq!(
            parse(b"le").map(|v| v.as_list().map(|l| l.iter().count())),
            Ok(Some(0))
        );
    }

    #[test]
    fn refuses_what_is_not_strict_bencode() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i9223372036854775808e",
            b"i1",
            b"01:a",
            b"5:abc",
            b"d1:ai1e1:ai2ee",
            b"di1ei2ee",
            b"l",
            b"d1:a",
            b"i1ei2e",
            b"x",
            b"",
            b"18446744073709551616:a",
            b"99999999999999999999999999:a",
        ] {
            assert!(
                parse(bad).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn keys_out_of_order_are_read_but_repeats_are_not() {
        let d = parse(b"d1:bi2e1:ai1ee")
            .expect("any order")
            .as_dict()
            .expect("dict");
        assert_eq!(d.get(b"a"), Some(Value::Int(1)));
        assert_eq!(parse(b"d1:ai1e1:bi2e1:ai3ee"), Err(Error::BadKey(13)));
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep: Vec<u8> = std::iter::repeat_n(b'l', MAX_DEPTH + 1)
            .chain(std::iter::repeat_n(b'e', MAX_DEPTH + 1))
            .collect();
        assert!(matches!(parse(&deep), Err(Error::TooDeep(_))));
        let ok: Vec<u8> = std::iter::repeat_n(b'l', MAX_DEPTH)
            .chain(std::iter::repeat_n(b'e', MAX_DEPTH))
            .collect();
        assert!(parse(&ok).is_ok());
        // A claimed length far beyond the input allocates nothing and fails.
        assert_eq!(parse(b"4294967295:ab"), Err(Error::Truncated(13)));
        let big = vec![b'i'; MAX_INPUT + 1];
        assert_eq!(parse(&big), Err(Error::TooLong));
        let mut many = b"d".to_vec();
        for i in 0..=MAX_DICT_ENTRIES {
            many.extend_from_slice(format!("3:k{i:02}i0e").as_bytes());
        }
        many.push(b'e');
        assert!(matches!(parse(&many), Err(Error::BadKey(_))));
    }

    #[test]
    fn nested_dictionaries_cost_a_walk_per_level_not_per_key() {
        // Each level: 63 small entries after a nested dictionary, 16 levels deep. Checking
        // duplicates by walking the earlier entries again would walk the innermost level
        // 63^15 times; with the keys kept aside this finishes at once.
        let mut m = b"i0e".to_vec();
        for _ in 0..MAX_DEPTH {
            let mut level = b"d1:".to_vec();
            level.push(b'!');
            level.extend_from_slice(&m);
            for i in 0..MAX_DICT_ENTRIES - 1 {
                level.extend_from_slice(format!("2:{i:02}i0e").as_bytes());
            }
            level.push(b'e');
            m = level;
        }
        assert!(m.len() < MAX_INPUT);
        let v = parse(&m).expect("valid");
        assert_eq!(
            v.as_dict().map(|d| d.iter().count()),
            Some(MAX_DICT_ENTRIES)
        );
    }
}
