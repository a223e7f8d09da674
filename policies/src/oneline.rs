//! A quick reader for the usual shape of a big `subscribers:` list: one subscriber a
//! line in flow style, as a provisioning system writes it,
//!
//! ```yaml
//! subscribers:
//!   - { id: s1, prefixes: [100.64.0.1/32, "2001:db8::/64"], plan: home }
//! ```
//!
//! The YAML parser takes about 15 µs per such line (1.5 s for 100,000 subscribers); this
//! reads one in well under a microsecond. It reads only a strict subset: plain or quoted
//! values of a few safe characters, the keys `id`, `prefixes` and `plan` once each,
//! every line of the section such an entry, a blank line or a comment. Anything else,
//! anywhere in the section, and the whole file goes to the YAML parser as before, so the
//! two always agree (the tests compare them value by value and position by position).
//!
//! [`split`] cuts the section out: the rest of the text, with the section's lines left
//! empty and the key written `subscribers: []`, still goes through the YAML parser (the
//! line and column of everything else stay where they were).

use std::borrow::Cow;

use crate::error::Pos;

/// A value and where it starts: borrowed from the text when read here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    pub value: Cow<'a, str>,
    pub at: Pos,
}

/// One entry of `subscribers:`, whichever reader read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// The entry (its `{`, or its first key in block style).
    pub at: Pos,
    pub id: Option<Item<'a>>,
    /// The list and where it starts.
    pub prefixes: Option<(Vec<Item<'a>>, Pos)>,
    pub plan: Option<Item<'a>>,
}

/// The text with the `subscribers:` section cut out, the entries read from it, and the
/// line of the `subscribers:` key. `None` when the section is not entirely one-line
/// entries (or there is none, or more than one).
pub(crate) fn split(src: &str) -> Option<(String, Vec<Entry<'_>>, u32)> {
    const KEY: &str = "subscribers:";
    let mut key_at = None;
    let mut offset = 0;
    for (no, line) in src.split('\n').enumerate() {
        if line
            .strip_prefix(KEY)
            .is_some_and(|r| r.trim_end().is_empty())
        {
            if key_at.is_some() {
                return None;
            }
            key_at = Some((no, offset, offset + line.len()));
        }
        offset += line.len() + 1;
    }
    let (key_no, key_start, key_end) = key_at?;
    let mut entries = Vec::new();
    let mut indent = None;
    let mut section_end = src.len();
    let mut offset = key_end + 1;
    for (i, line) in src.get(key_end + 1..)?.split('\n').enumerate() {
        let no = u32::try_from(key_no + 2 + i).ok()?;
        let body = line.strip_suffix('\r').unwrap_or(line);
        if body
            .bytes()
            .next()
            .is_some_and(|b| b != b' ' && b != b'-' && b != b'#')
        {
            // The next top-level key (or a document marker, a tab, ...): the section ended.
            section_end = offset;
            break;
        }
        let trimmed = body.trim_start_matches(' ');
        if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            let spaces = body.len() - trimmed.len();
            if *indent.get_or_insert(spaces) != spaces {
                return None;
            }
            entries.push(entry(body, no, spaces)?);
        }
        offset += line.len() + 1;
    }
    if entries.is_empty() {
        return None;
    }
    // The rest: the section's lines left empty, so every other line keeps its number.
    let section = src.get(key_end..section_end)?;
    let breaks = section.bytes().filter(|b| *b == b'\n').count();
    let mut rest = String::with_capacity(src.len() - section.len() + breaks + 16);
    rest.push_str(src.get(..key_start)?);
    rest.push_str("subscribers: []");
    rest.extend(std::iter::repeat_n('\n', breaks));
    rest.push_str(src.get(section_end..)?);
    Some((rest, entries, u32::try_from(key_no + 1).ok()?))
}

/// Reads `line` (number `no`) as `- { id: .., prefixes: [..], plan: .. }` with its dash
/// at column `indent + 1`, or `None` if it is anything else.
pub(crate) fn entry(line: &str, no: u32, indent: usize) -> Option<Entry<'_>> {
    if !line.is_ascii() {
        return None;
    }
    let mut r = Reader {
        b: line.as_bytes(),
        s: line,
        i: indent,
        no,
    };
    r.expect(b'-')?;
    if r.spaces() == 0 {
        return None;
    }
    let at = r.pos()?;
    r.expect(b'{')?;
    let mut e = Entry {
        at,
        id: None,
        prefixes: None,
        plan: None,
    };
    loop {
        r.spaces();
        let key_start = r.i;
        while r.peek().is_some_and(|b| b.is_ascii_lowercase()) {
            r.i += 1;
        }
        let key = &r.b[key_start..r.i];
        r.expect(b':')?;
        if r.spaces() == 0 {
            return None;
        }
        match key {
            b"id" if e.id.is_none() => e.id = Some(r.value(Kind::Name)?),
            b"plan" if e.plan.is_none() => e.plan = Some(r.value(Kind::Name)?),
            b"prefixes" if e.prefixes.is_none() => e.prefixes = Some(r.list()?),
            _ => return None,
        }
        r.spaces();
        match r.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    // After the mapping: nothing, or a comment after a space.
    let spaced = r.spaces() > 0;
    match r.peek() {
        None => Some(e),
        Some(b'#') if spaced => Some(e),
        _ => None,
    }
}

/// Characters of ids and plan names read here (others go to the YAML parser).
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'@' | b'+')
}

/// Characters of prefixes read here.
fn is_prefix_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/')
}

/// What a value holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Name,
    Prefix,
}

struct Reader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    no: u32,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i - start
    }

    fn pos(&self) -> Option<Pos> {
        Some(Pos {
            line: self.no,
            column: u32::try_from(self.i + 1).ok()?,
        })
    }

    /// A plain scalar of `kind`'s characters, or one quoted with `"` or `'` (no escapes).
    fn value(&mut self, kind: Kind) -> Option<Item<'a>> {
        let at = self.pos()?;
        let quote = self.peek().filter(|b| *b == b'"' || *b == b'\'');
        if quote.is_some() {
            self.i += 1;
        }
        let start = self.i;
        let ok = match kind {
            Kind::Name => is_name_char,
            Kind::Prefix => is_prefix_char,
        };
        while self.peek().is_some_and(ok) {
            self.i += 1;
        }
        // ASCII, so any byte is a character boundary.
        let value = self.s.get(start..self.i)?;
        match quote {
            Some(q) => self.expect(q)?,
            None => {
                // What YAML would read as something else than this string: nothing,
                // null, a `key:`, an indicator in front of a name.
                let first = value.bytes().next()?;
                if matches!(value, "null" | "Null" | "NULL")
                    || value.ends_with(':')
                    || kind == Kind::Name && !(first.is_ascii_alphanumeric() || first == b'_')
                {
                    return None;
                }
            }
        }
        Some(Item {
            value: Cow::Borrowed(value),
            at,
        })
    }

    /// `[a, b, ...]`, at least one item, no trailing comma.
    fn list(&mut self) -> Option<(Vec<Item<'a>>, Pos)> {
        let at = self.pos()?;
        self.expect(b'[')?;
        let mut items = Vec::with_capacity(2);
        loop {
            self.spaces();
            items.push(self.value(Kind::Prefix)?);
            self.spaces();
            match self.next()? {
                b',' => continue,
                b']' => return Some((items, at)),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
