//! Every problem of a configuration file, each with its line and column, for
//! `peerwarden config check`. [`Config::parse`] (the daemon's loader) stops at the first.
//!
//! The verdict is the loader's own: the same deserializer and the same
//! [`Config::problems`], so `config check` and `run` never disagree about a file. The serde
//! layer stops at its first error, so to find more the check reads the file again with the
//! top-level entry holding that error blanked out (its lines left empty, so every other
//! line and column stays where it was), until what is left parses. The checks of values
//! then run on what was read; a check that read an entry that was blanked out is dropped,
//! since the default standing in for it would make the problem up.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
};

use serde::{
    Deserialize,
    de::{Deserializer, MapAccess, SeqAccess, Visitor},
};
use serde_saphyr::{MessageFormatter as _, Spanned};

use super::Config;

/// One problem in a configuration file (or in a file it names), displayed like
/// `peerwarden policy check`'s errors: `FILE:LINE:COL: message (hint)`, one line; without
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

/// The outcome of [`check`].
#[derive(Debug)]
pub struct Checked {
    /// What could be read: the whole configuration when `problems` is empty, else the
    /// entries that parsed (the others at their defaults; see [`Checked::readable`]).
    /// `None` when nothing parsed (a YAML syntax error).
    pub config: Option<Config>,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    origin: String,
    /// Dotted key → 1-based (line, column) of its value.
    places: HashMap<String, (u32, u32)>,
    /// Top-level keys whose entry held a problem.
    troubled: BTreeSet<String>,
}

impl Checked {
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
    pub fn problem(
        &self,
        key: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.place(key);
        Problem {
            origin: self.origin.clone(),
            line,
            column,
            message: one_line(&message.into()),
            hint: one_line(&hint.into()),
        }
    }

    /// Whether the top-level entry `key` was read without a problem, so what it names
    /// (a file, an interface) is worth checking.
    pub fn readable(&self, key: &str) -> bool {
        self.config.is_some() && !self.troubled.contains(key)
    }
}

/// Checks configuration text; `origin` names it in the problems.
pub fn check(text: &str, origin: &str) -> Checked {
    let outline = Outline::read(text);
    let mut checked = Checked {
        config: None,
        problems: Vec::new(),
        origin: origin.to_owned(),
        places: outline.places.clone(),
        troubled: BTreeSet::new(),
    };
    let lines = text.split_inclusive('\n').count() as u64;
    let mut blank: BTreeSet<usize> = BTreeSet::new();
    // `interfaces` is the one required section: when it is blanked out (or missing) an
    // empty one stands in, after the last line, so the rest can still be read.
    let mut stand_in = false;
    loop {
        let attempt = masked(text, &outline.entries, &blank, stand_in);
        let error = match serde_saphyr::from_str::<Config>(&attempt) {
            Ok(config) => {
                checked.config = Some(config);
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
        if is_missing_interfaces(error) && !stand_in {
            checked.problems.push(problem);
            stand_in = true;
            checked.troubled.insert("interfaces".into());
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
        stand_in |= key == "interfaces";
        checked.troubled.insert(top_level(&key).to_owned());
    }
    if let Some(config) = &checked.config {
        let found: Vec<Problem> = config
            .problems()
            .into_iter()
            .filter(|p| {
                let own = top_level(p.key());
                !checked.troubled.contains(own)
                    && !p.needs.iter().any(|k| checked.troubled.contains(*k))
            })
            .map(|p| checked.problem(p.key(), &p.message, ""))
            .collect();
        for p in &found {
            checked
                .troubled
                .insert(top_level(&key_of(&p.message)).to_owned());
        }
        checked.problems.extend(found);
    }
    checked.problems.sort_by_key(|p| (p.line, p.column));
    checked
}

fn key_of(message: &str) -> String {
    message
        .split_once(": ")
        .map_or(message, |(k, _)| k)
        .to_owned()
}

fn top_level(key: &str) -> &str {
    key.split_once('.').map_or(key, |(k, _)| k)
}

/// `text` with the lines of the `blank` entries emptied (their line breaks kept), and an
/// empty `interfaces` section after the last line if `stand_in`.
fn masked(text: &str, entries: &[Entry], blank: &BTreeSet<usize>, stand_in: bool) -> String {
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
    if stand_in {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("interfaces: {}\n");
    }
    out
}

fn is_missing_interfaces(e: &serde_saphyr::Error) -> bool {
    e.to_string().contains("missing field `interfaces`")
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
#[path = "check_tests.rs"]
mod tests;
