//! Every error of a YAML document against a serde type, each with its line and column.
//!
//! serde stops at the first error. To find more, the text is read again with the mapping
//! entry holding that error blanked out (its lines left empty, so every other line and
//! column stays where it was), the innermost entry first, until what is left parses. The
//! type's own `Deserialize` decides throughout, so a document this reads without a problem
//! is one `serde_saphyr::from_str` reads too. Entries that share a line (a flow mapping)
//! cannot be blanked apart: the error in them is found, the next one in them is not.
//! `peerwarden config check` is the user: the daemon's configuration, its checks of values
//! added on what was read.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
};

use serde::{
    Deserialize,
    de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor},
};
use serde_saphyr::{MessageFormatter as _, Spanned};

/// One problem in a file, displayed like [`PolicyError`](crate::PolicyError): `FILE:LINE:COL: message (hint)`, one line; without
/// a place (line 0), `FILE: message (hint)`. The hint is left out when empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub origin: String,
    /// 1-based line, 0 if the problem has no place in the file.
    pub line: u32,
    /// 1-based column, 0 if unknown.
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// What to do about it (may be empty).
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.origin)?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        write!(f, " {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, " ({})", self.hint)?;
        }
        Ok(())
    }
}

/// What [`read_all`] read, and every problem it found.
#[derive(Debug)]
pub struct Read<T> {
    /// The value when `problems` is empty; else the value of what was left after blanking
    /// (see [`Read::readable`]); `None` when nothing parsed (a YAML syntax error).
    pub value: Option<T>,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    origin: String,
    /// Dotted key → 1-based (line, column) of its value.
    places: HashMap<String, (u32, u32)>,
    /// Top-level keys whose entry held a problem.
    troubled: BTreeSet<String>,
}

impl<T> Read<T> {
    /// Where `key` (dotted, `api.tls.cert`) is written, else its nearest written parent,
    /// else line 1, column 1.
    pub fn place(&self, key: &str) -> (u32, u32) {
        let mut k = key;
        loop {
            if let Some(p) = self.places.get(k) {
                return *p;
            }
            match k.rsplit_once('.') {
                Some((parent, _)) => k = parent,
                None => return (1, 1),
            }
        }
    }

    /// A problem at `key`'s place in this file.
    pub fn problem(&self, key: &str, message: &str, hint: &str) -> Problem {
        let (line, column) = self.place(key);
        Problem {
            origin: self.origin.clone(),
            line,
            column,
            message: one_line(message),
            hint: one_line(hint),
        }
    }

    /// Whether the top-level entry `key` was read without a problem (its value is the
    /// file's, not a default standing in for it).
    pub fn readable(&self, key: &str) -> bool {
        self.value.is_some() && !self.troubled.contains(top_level(key))
    }

    /// Adds a problem about `key` found in the value, and marks its top-level entry.
    pub fn push(&mut self, key: &str, message: &str, hint: &str) {
        let p = self.problem(key, message, hint);
        self.troubled.insert(top_level(key).to_owned());
        self.problems.push(p);
        self.problems.sort_by_key(|p| (p.line, p.column));
    }
}

/// Reads `text` as a `T`, finding every error it can; `origin` names the text in the
/// problems. `required` are top-level keys `T` cannot do without, each with an empty
/// value for them (`interfaces: {{}}`) that stands in, after the last line, when the key is
/// missing or blanked out, so the rest can still be read.
pub fn read_all<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    required: &[(&str, &str)],
) -> Read<T> {
    let outline = Outline::read(text);
    let mut checked = Read {
        value: None,
        problems: Vec::new(),
        origin: origin.to_owned(),
        places: outline.places.clone(),
        troubled: BTreeSet::new(),
    };
    let lines = text.split_inclusive('\n').count() as u64;
    let mut blank: BTreeSet<usize> = BTreeSet::new();
    let mut stand_in: BTreeSet<usize> = BTreeSet::new();
    loop {
        let attempt = masked(text, &outline.entries, &blank, &stand_in, required);
        let error = match serde_saphyr::from_str::<T>(&attempt) {
            Ok(value) => {
                checked.value = Some(value);
                break;
            }
            Err(e) => e,
        };
        let error = error.without_snippet();
        let at = error.location().map(|l| l.line());
        // An error in the stand-in is of this check's making.
        if at.is_some_and(|l| l > lines) {
            break;
        }
        let mut problem = serde_problem(error, origin);
        // The key the value belongs to, as in the checks' messages (an unknown key is its
        // own subject).
        if !problem.message.starts_with("unknown key")
            && let Some(key) = outline.key_at((problem.line, problem.column))
        {
            problem.message = format!("{key}: {}", problem.message);
        }
        let missing = error.to_string();
        if let Some(r) = (0..required.len()).find(|&r| {
            !stand_in.contains(&r)
                && missing.contains(&format!("missing field `{}`", required[r].0))
        }) {
            checked.problems.push(problem);
            stand_in.insert(r);
            checked.troubled.insert(required[r].0.to_owned());
            continue;
        }
        // The innermost entry holding the error is blanked next.
        let Some(index) = at
            .and_then(|l| u32::try_from(l).ok())
            .and_then(|l| outline.innermost(l))
        else {
            checked.problems.push(problem);
            break;
        };
        let key = outline.entries[index].key.clone();
        // An error in an entry some of whose lines were blanked (a section left empty) is
        // of this check's making: the entry goes without a word.
        let made_up = blank
            .iter()
            .any(|&b| outline.entries[b].key.starts_with(&format!("{key}.")));
        if !made_up && !checked.problems.contains(&problem) {
            checked.problems.push(problem);
        }
        if !blank.insert(index) {
            break; // no progress
        }
        if let Some(r) = required.iter().position(|(k, _)| *k == key) {
            stand_in.insert(r);
        }
        checked.troubled.insert(top_level(&key).to_owned());
    }
    checked.problems.sort_by_key(|p| (p.line, p.column));
    checked
}

fn top_level(key: &str) -> &str {
    key.split_once('.').map_or(key, |(k, _)| k)
}

/// `text` with the lines of the `blank` entries emptied (their line breaks kept), and the
/// `stand_in` required keys' empty values after the last line.
fn masked(
    text: &str,
    entries: &[Entry],
    blank: &BTreeSet<usize>,
    stand_in: &BTreeSet<usize>,
    required: &[(&str, &str)],
) -> String {
    let blanked = |line: u32| blank.iter().any(|&i| entries[i].lines.contains(&line));
    let mut out = String::with_capacity(text.len() + 16);
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let n = u32::try_from(n + 1).unwrap_or(u32::MAX);
        if blanked(n) {
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    for &r in stand_in {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(required[r].1);
        out.push('\n');
    }
    out
}

/// A deserializer error as a problem at its place.
fn serde_problem(err: &serde_saphyr::Error, origin: &str) -> Problem {
    use serde_saphyr::Error as E;
    let mut inner = err;
    while let E::AliasError { error, .. } = inner {
        inner = error;
    }
    let (message, hint) = match inner {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown key `{field}`"),
            format!("keys here: {}", expected.join(", ")),
        ),
        other => (
            serde_saphyr::DefaultMessageFormatter
                .format_message(other)
                .into_owned(),
            String::new(),
        ),
    };
    let (line, column) = err.location().map_or((0, 0), |l| {
        (
            u32::try_from(l.line()).unwrap_or(u32::MAX),
            u32::try_from(l.column()).unwrap_or(u32::MAX),
        )
    });
    Problem {
        origin: origin.to_owned(),
        line,
        column,
        message: one_line(&message),
        hint: one_line(&hint),
    }
}

/// The operator's text may hold line breaks; a problem is one line.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
        .filter(|p| !p.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where each key's value is written, and the entries that can be blanked line by line.
#[derive(Default)]
struct Outline {
    places: HashMap<String, (u32, u32)>,
    /// Mapping entries whose lines hold no sibling: dotted key, first line, the line after
    /// their last (the next sibling's, or their parent's end).
    entries: Vec<Entry>,
}

struct Entry {
    key: String,
    lines: std::ops::Range<u32>,
}

impl Outline {
    /// The outline of `text`; empty when it is not a mapping of plain keys.
    fn read(text: &str) -> Outline {
        let Ok(root) = serde_saphyr::from_str::<Spanned<Node>>(text) else {
            return Outline::default();
        };
        let mut outline = Outline::default();
        outline.walk("", &root.value, Some(u32::MAX));
        outline
    }

    /// Records the places below `node`, and its entries if `end` (the line after the last
    /// of `node`) is known: not inside siblings sharing a line.
    fn walk(&mut self, prefix: &str, node: &Node, end: Option<u32>) {
        let Node::Map(entries) = node else { return };
        let starts: Vec<u32> = entries.iter().map(|(k, _)| pos(&k.referenced).0).collect();
        // Siblings sharing a line (a flow mapping) cannot be blanked apart.
        let apart = end.is_some() && starts.windows(2).all(|w| w[0] < w[1]);
        for (i, (key, value)) in entries.iter().enumerate() {
            let path = if prefix.is_empty() {
                key.value.clone()
            } else {
                format!("{prefix}.{}", key.value)
            };
            self.places.insert(path.clone(), pos(&value.referenced));
            let next = match (apart, end) {
                (true, Some(end)) => Some(starts.get(i + 1).copied().unwrap_or(end)),
                _ => None,
            };
            if let Some(next) = next {
                self.entries.push(Entry {
                    key: path.clone(),
                    lines: starts[i]..next,
                });
            }
            self.walk(&path, &value.value, next);
        }
    }

    /// The innermost entry holding `line`.
    fn innermost(&self, line: u32) -> Option<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].lines.contains(&line))
            .max_by_key(|&i| self.entries[i].key.matches('.').count())
    }

    /// The key whose value starts at `at`.
    fn key_at(&self, at: (u32, u32)) -> Option<&str> {
        self.places
            .iter()
            .filter(|(_, p)| **p == at)
            .map(|(k, _)| k.as_str())
            .max_by_key(|k| k.len())
    }
}

fn pos(l: &serde_saphyr::Location) -> (u32, u32) {
    (
        u32::try_from(l.line()).unwrap_or(u32::MAX),
        u32::try_from(l.column()).unwrap_or(u32::MAX),
    )
}

/// A YAML node with the places of the keys and values of its mappings; scalars and lists
/// are not looked into (no key below them is checked on its own).
enum Node {
    Leaf,
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

/// Scalars are leaves, whatever their type.
macro_rules! leaves {
    ($($visit:ident: $t:ty),* $(,)?) => {
        $(fn $visit<E>(self, _: $t) -> Result<Node, E> {
            Ok(Node::Leaf)
        })*
    };
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    leaves! {
        visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128, visit_u128: u128,
        visit_f64: f64, visit_str: &str, visit_bytes: &[u8],
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Node::Leaf)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        size: u32,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        a: u8,
        #[serde(default)]
        b: u8,
    }

    #[test]
    fn every_entry_with_an_error_is_reported_and_the_rest_read() {
        let text = "size: many\nextra: 1\ninner:\n  a: 300\n  b: 2\n  c: 3\n";
        let read: Read<Doc> = read_all(text, "d.yaml", &[("name", "name: x")]);
        let got: Vec<String> = read.problems.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("d.yaml:1:7: size: "), "{got:#?}");
        assert!(
            got[1].starts_with("d.yaml:2:1: unknown key `extra`"),
            "{got:#?}"
        );
        // serde notices a missing key where it stops reading the mapping.
        assert!(got[2].ends_with(": missing field `name`"), "{got:#?}");
        assert!(got[3].starts_with("d.yaml:4:6: inner.a: "), "{got:#?}");
        assert!(
            got[4].starts_with("d.yaml:6:3: unknown key `c`"),
            "{got:#?}"
        );
        // What was left is read: `inner.b`, nothing made up about the others.
        assert!(!read.readable("name") && !read.readable("inner.b") && read.readable("x"));
        let doc = read.value.as_ref().expect("the rest parses");
        // `a` was blanked out: its default stands in.
        assert_eq!(doc.inner.as_ref().map(|i| (i.a, i.b)), Some((0, 2)));
        assert_eq!(read.place("inner.b"), (5, 6));
    }

    #[test]
    fn a_document_without_errors_is_serdes_own_reading() {
        let read: Read<Doc> = read_all("name: n\nsize: 3\n", "d.yaml", &[]);
        assert!(read.problems.is_empty());
        assert_eq!(read.value.map(|d| (d.name, d.size)), Some(("n".into(), 3)));
        assert!(serde_saphyr::from_str::<Doc>("name: n\nsize: 3\n").is_ok());
    }
}
