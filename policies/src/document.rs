//! The policy file as written: serde types mirroring the YAML, every value wrapped in
//! [`Spanned`] so validation can point at it.
//!
//! Scalars are kept as strings here (`50mbit`, `LE`, `18:00-23:00`) and parsed in
//! `validate`, which collects every problem instead of stopping at the first. Unknown
//! keys, wrong shapes and YAML syntax errors stop the parse (serde reports one).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use crate::error::{PolicyError, Pos};
use crate::oneline::{self, Entry, Item};
use crate::suggest::suggest;

/// A spanned string scalar.
pub(crate) type Text = Spanned<String>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    pub timezone: Option<Text>,
    pub link: Option<Spanned<Directions>>,
    pub classes: Option<Spanned<Entries<Text, Spanned<UserClassDoc>>>>,
    pub plans: Option<Spanned<Entries<Text, Spanned<PlanDoc>>>>,
    pub subscribers: Option<Spanned<Vec<Spanned<SubscriberDoc>>>>,
    pub default_plan: Option<Text>,
}

/// The parsed text: the document, and the subscribers if [`oneline`] read them (then
/// the document's `subscribers` is empty).
pub(crate) struct Parsed<'a> {
    pub doc: Document,
    pub one_line: Option<Vec<Entry<'a>>>,
}

impl<'a> Parsed<'a> {
    /// The subscribers' entries, from whichever reader read them.
    pub(crate) fn take_subscribers(&mut self) -> Vec<Entry<'a>> {
        if let Some(entries) = self.one_line.take() {
            return entries;
        }
        self.doc
            .subscribers
            .take()
            .map(|s| s.value.into_iter().map(Entry::from).collect())
            .unwrap_or_default()
    }
}

fn item(t: Text) -> Item<'static> {
    Item {
        value: t.value.into(),
        at: t.referenced.into(),
    }
}

impl From<Spanned<SubscriberDoc>> for Entry<'static> {
    fn from(s: Spanned<SubscriberDoc>) -> Entry<'static> {
        let doc = s.value;
        Entry {
            at: s.referenced.into(),
            id: doc.id.map(item),
            prefixes: doc
                .prefixes
                .map(|p| (p.value.into_iter().map(item).collect(), p.referenced.into())),
            plan: doc.plan.map(item),
        }
    }
}

/// `{ down: RATE, up: RATE }`, for `link` and a plan's `rate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Directions {
    pub down: Option<Text>,
    pub up: Option<Text>,
}

/// An entry of top-level `classes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserClassDoc {
    pub labels: Option<Vec<Text>>,
    pub hosts: Option<Vec<Text>>,
}

/// An entry of `plans:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanDoc {
    pub rate: Option<Spanned<Directions>>,
    pub classes: Option<Spanned<Entries<Text, Spanned<RuleDoc>>>>,
    pub schedule: Option<Vec<Spanned<ScheduleDoc>>>,
}

/// A class rule, in a plan or a schedule entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDoc {
    pub down: Option<Text>,
    pub up: Option<Text>,
    pub burst: Option<Text>,
    pub action: Option<Text>,
    pub dscp: Option<Text>,
}

/// An entry of a plan's `schedule:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleDoc {
    pub days: Option<Spanned<Vec<Text>>>,
    pub hours: Option<Text>,
    pub classes: Option<Spanned<Entries<Text, Spanned<RuleDoc>>>>,
}

/// An entry of `subscribers:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriberDoc {
    pub id: Option<Text>,
    pub prefixes: Option<Spanned<Vec<Text>>>,
    pub plan: Option<Text>,
}

/// A YAML mapping kept in file order, keys with their spans. (A `BTreeMap` would sort
/// the entries and need `Ord` on spanned keys; the parser already rejects duplicates.)
#[derive(Debug)]
pub(crate) struct Entries<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Entries<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<K, V> {
            type Value = Entries<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        d.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// The largest policy text accepted: 32 MiB. A policy of 100,000 subscribers, each with
/// an IPv4 and an IPv6 prefix, is about 9 MB written one subscriber a line.
pub const MAX_POLICY_BYTES: usize = 32 << 20;

/// At most this many values may come out of aliases (`*name`) in one file: plenty for
/// plans sharing class blocks, far too few for a "billion laughs" of nested aliases.
pub const MAX_ALIAS_VALUES: usize = 100_000;

/// The parser's budget for a text of `len` bytes. serde-saphyr's defaults (250,000
/// nodes, 1,000,000 events) stop a one-line-per-subscriber file near 27,000
/// subscribers; these grow with the text instead. Without aliases a node takes at least
/// a few bytes of text (a policy's densest, a subscriber's prefix list, about 7), so one
/// node per 4 bytes and two events per node cover any policy text within
/// [`MAX_POLICY_BYTES`] while bounding what the parser builds to a multiple of the
/// input. What aliases add is counted apart ([`MAX_ALIAS_VALUES`]).
fn options_for(len: usize) -> serde_saphyr::Options {
    let nodes = 250_000 + len / 4;
    serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_nodes: nodes,
            max_events: 1_000_000 + 2 * nodes,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_VALUES,
        },
    }
}

/// Parses the YAML into a [`Document`]. A syntax or shape error stops the parse; it is
/// translated into operator words with a hint. A text over [`MAX_POLICY_BYTES`] is
/// refused before parsing.
pub(crate) fn parse<'a>(src: &'a str, origin: &str) -> Result<Parsed<'a>, PolicyError> {
    if src.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::new(
            origin,
            0,
            0,
            format!(
                "the policy is {:.1} MiB; at most {} MiB is accepted",
                src.len() as f64 / (1 << 20) as f64,
                MAX_POLICY_BYTES >> 20
            ),
            "100,000 subscribers with two prefixes each take about 9 MB; check that this is the policy file",
        ));
    }
    // One subscriber a line: those lines are read apart, the rest by the YAML parser. If
    // the rest does not parse, or does not hold the section where it was found, the whole
    // text goes to the parser, whose errors then name the original lines.
    if let Some((rest, entries, key_line)) = oneline::split(src)
        && let Ok(doc) =
            serde_saphyr::from_str_with_options::<Document>(&rest, options_for(rest.len()))
        && doc
            .subscribers
            .as_ref()
            .is_some_and(|s| s.value.is_empty() && Pos::from(s.referenced).line == key_line)
    {
        return Ok(Parsed {
            doc,
            one_line: Some(entries),
        });
    }
    parse_whole(src, origin)
}

/// Parses the whole text with the YAML parser (no [`oneline`] reading).
pub(crate) fn parse_whole(src: &str, origin: &str) -> Result<Parsed<'static>, PolicyError> {
    serde_saphyr::from_str_with_options::<Document>(src, options_for(src.len()))
        .map(|doc| Parsed {
            doc,
            one_line: None,
        })
        .map_err(|e| translate(e.without_snippet(), origin))
}

fn translate(err: &serde_saphyr::Error, origin: &str) -> PolicyError {
    use serde_saphyr::Error as E;
    // An error met while replaying an alias comes wrapped with the alias's locations;
    // the message is the wrapped error's, the position still the outer one's.
    let mut inner = err;
    while let E::AliasError { error, .. } = inner {
        inner = error;
    }
    let (message, hint) = match inner {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let keys = expected.join(", ");
            let hint = match suggest(field, expected.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? keys here: {keys}"),
                None => format!("keys here: {keys}"),
            };
            (format!("unknown key `{field}`"), hint)
        }
        E::DuplicateMappingKey { key, .. } => (
            match key {
                Some(k) => format!("duplicate key `{k}`"),
                None => "duplicate key".to_owned(),
            },
            "a key may appear once in a mapping; merge the two entries or rename one".to_owned(),
        ),
        E::Unexpected { expected, .. } => match *expected {
            "mapping start" => (
                "expected a mapping here".to_owned(),
                "write `key: value` pairs, e.g. { down: 5mbit, up: 1mbit }".to_owned(),
            ),
            "sequence start" => (
                "expected a list here".to_owned(),
                "write a list as [a, b] or as lines starting with `- `".to_owned(),
            ),
            "string scalar" => (
                "expected a single value here, not a list or mapping".to_owned(),
                "quote values holding `: ` or ending in `:`, such as IPv6 prefixes ending in `::`"
                    .to_owned(),
            ),
            other => (format!("expected {other} here"), SYNTAX_HINT.to_owned()),
        },
        E::NullIntoString { .. } => (
            "empty value".to_owned(),
            "write a value after the colon, or remove the key".to_owned(),
        ),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::Budget {
            breach:
                serde_saphyr::budget::BudgetBreach::Aliases { .. }
                | serde_saphyr::budget::BudgetBreach::AliasAnchorRatio { .. }
                | serde_saphyr::budget::BudgetBreach::RecordedAnchorEvents { .. }
                | serde_saphyr::budget::BudgetBreach::RecordedAnchorBytes { .. },
            ..
        } => (
            format!("aliases expand to too much: at most {MAX_ALIAS_VALUES} values may come from aliases (`*name`)"),
            "write repeated parts out, or share fewer of them through anchors; nested aliases multiply".to_owned(),
        ),
        E::Budget { breach, .. } => (
            format!("the YAML is too large or too deeply nested for a policy ({breach:?})"),
            "a policy is plans and a list of subscribers, a few levels deep; check that this is the policy file".to_owned(),
        ),
        other => {
            let message = serde_saphyr::DefaultMessageFormatter.format_message(other);
            (format!("invalid YAML: {message}"), SYNTAX_HINT.to_owned())
        }
    };
    match err.location() {
        Some(loc) => PolicyError::at(origin, loc, message, hint),
        None => PolicyError::new(origin, 0, 0, message, hint),
    }
}

const SYNTAX_HINT: &str = "check the YAML near here: indent with spaces, close quotes and brackets, quote values holding `: ` or `#`";
