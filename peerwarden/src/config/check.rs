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

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Leaf)
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

    fn lines(c: &Checked) -> Vec<String> {
        c.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_file_has_no_problem_and_the_loaders_config() {
        let text = "interfaces: { downlink: eth1, uplink: eth0 }\nflow_table_size: 4096\n";
        let c = check(text, "c.yaml");
        assert!(c.problems.is_empty(), "{:?}", lines(&c));
        assert_eq!(c.config.as_ref().map(|c| c.flow_table_size), Some(4096));
        assert!(Config::parse(text, std::path::Path::new("c.yaml")).is_ok());
        assert_eq!(c.place("interfaces.uplink"), (1, 39));
        assert_eq!(c.place("interfaces.nothing"), (1, 13));
        assert_eq!(c.place("nothing"), (1, 1));
    }

    #[test]
    fn three_different_errors_are_all_reported_with_their_places() {
        // An unknown key, a value out of range and a collector that is not an address:
        // the loader stops at the first (line 2).
        let text = "interfaces: { downlink: eth1, uplink: eth0 }\n\
                    bogus: 1\n\
                    flow_table_size: 0\n\
                    ipfix:\n  collector: nowhere\n";
        let c = check(text, "c.yaml");
        let got = lines(&c);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("c.yaml:2:1: unknown key `bogus` (keys here: "),
            "{got:#?}"
        );
        assert_eq!(
            got[1],
            "c.yaml:3:18: flow_table_size: 0 is out of range (1 to 67108864)"
        );
        assert!(got[2].starts_with("c.yaml:5:14: "), "{got:#?}");
        assert!(
            got[2].contains("nowhere") || got[2].contains("address"),
            "{got:#?}"
        );
        let loader = Config::parse(text, std::path::Path::new("c.yaml")).expect_err("refused");
        assert!(loader.to_string().contains("bogus"), "{loader}");
    }

    #[test]
    fn values_of_several_sections_are_checked_together() {
        let text = "mode: observe\n\
                    interfaces: { downlink: a, uplink: b }\n\
                    subscriber_networks: [100.64.0.0/10]\n\
                    history_seconds: 10\n\
                    history:\n  minute_retention_days: 0\n\
                    ipfix: { collector: \"198.51.100.2:4739\", idle_timeout: soon }\n";
        let got = lines(&check(text, "c.yaml"));
        assert_eq!(
            got,
            [
                "c.yaml:2:13: interfaces: observe mode needs the mirror port: interfaces: { mirror: IFACE }",
                "c.yaml:2:13: interfaces: observe mode uses only the mirror port; remove downlink and uplink",
                "c.yaml:4:18: history_seconds: 10 is out of range (60 to 604800)",
                "c.yaml:6:26: history.minute_retention_days: 0 is out of range (1 to 366)",
            ]
            .into_iter()
            .chain(got.get(4).map(String::as_str))
            .collect::<Vec<_>>(),
            "{got:#?}"
        );
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(
            got[4].starts_with("c.yaml:7:") && got[4].contains("not a duration"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_broken_interfaces_section_does_not_make_up_mode_problems() {
        // `interfaces` unreadable: the mode's checks, which read it, are not run; the
        // other entries still are.
        let text = "interfaces: { downlink: a, uplink: b, tap: c }\nmax_subscribers: 0\n";
        let got = lines(&check(text, "c.yaml"));
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("c.yaml:1:") && got[0].contains("unknown key `tap`"),
            "{got:#?}"
        );
        assert_eq!(
            got[1],
            "c.yaml:2:18: max_subscribers: 0 is out of range (1 to 8000000)"
        );
        let missing = lines(&check("flow_table_size: 0\n", "c.yaml"));
        assert_eq!(missing.len(), 2, "{missing:#?}");
        assert!(
            missing.iter().any(|l| l.contains("interfaces")),
            "{missing:#?}"
        );
        assert!(
            missing
                .iter()
                .any(|l| l.starts_with("c.yaml:1:18: flow_table_size")),
            "{missing:#?}"
        );
    }

    #[test]
    fn errors_within_one_section_are_all_reported() {
        // Block style: each nested entry is on lines of its own and is blanked alone.
        let text = "interfaces:\n  downlink: eth1\n  uplink: eth0\n\
                    ipfix:\n  collector: nowhere\n  idle_timeout: soon\n\
                    history:\n  path: 5\n  keep: 1\n";
        let got = lines(&check(text, "c.yaml"));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("c.yaml:5:14: ipfix.collector: "),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("c.yaml:6:17: ipfix.idle_timeout: ")
                && got[1].contains("not a duration"),
            "{got:#?}"
        );
        // `path: 5` is a path to the loader (a string); `keep` is not a key. Blanking it
        // leaves a section of one key: nothing is made up about it.
        assert!(
            got[2].starts_with("c.yaml:9:3: unknown key `keep`"),
            "{got:#?}"
        );
        // All of a section's keys wrong: the section left empty says nothing more.
        let text = "interfaces: { downlink: a, uplink: b }\nmetrics:\n  series: 1\n";
        let got = lines(&check(text, "c.yaml"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("c.yaml:3:3: unknown key `series`"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_syntax_error_is_one_problem_with_its_place() {
        let c = check("interfaces: [\n", "c.yaml");
        assert!(c.config.is_none());
        assert_eq!(c.problems.len(), 1, "{:?}", lines(&c));
        assert!(c.problems[0].line >= 1, "{:?}", lines(&c));
        assert!(!lines(&c)[0].contains('\n'));
        // A flow mapping at the top: nothing to blank line by line, one problem.
        let c = check(
            "{interfaces: {downlink: a, uplink: b}, x: 1, y: 2}",
            "c.yaml",
        );
        assert_eq!(c.problems.len(), 1, "{:?}", lines(&c));
    }

    #[test]
    fn problems_display_like_policy_check() {
        let p = Problem {
            origin: "c.yaml".into(),
            line: 3,
            column: 7,
            message: "bad".into(),
            hint: "fix it".into(),
        };
        assert_eq!(p.to_string(), "c.yaml:3:7: bad (fix it)");
        let p = Problem {
            line: 0,
            hint: String::new(),
            ..p
        };
        assert_eq!(p.to_string(), "c.yaml: bad");
    }
}
