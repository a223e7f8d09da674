//! The one-line reader against the YAML parser: wherever the reader takes a line, it
//! must read what the parser reads, at the same positions; where the two could differ,
//! it must leave the line to the parser.

use super::*;
use crate::document::{parse, parse_whole};

/// What the YAML parser reads from the `subscribers:` section of `src`.
fn by_parser(src: &str) -> Option<Vec<Entry<'static>>> {
    parse_whole(src, "t.yaml")
        .ok()
        .map(|mut d| d.take_subscribers())
}

/// Each line as the only entry: the reader takes it and agrees with the parser.
const TAKEN: &[&str] = &[
    "  - { id: s0, prefixes: [100.64.0.1/32, \"2001:db8::/64\"], plan: plan-0 }",
    "  - {id: 123, prefixes: [ '::1/128' ,100.64.0.1/32 ], plan: 0x1F}  # comment",
    "- { id: 1e3, prefixes: [::/0], plan: true }",
    "- { id: 007, prefixes: [2001:db8::/32] }",
    "    -   {  plan: home ,  prefixes:   [100.64.1.10/32],id:   alice   }",
    "  - { id: a.b-c_d@e+f/g, prefixes: [\"100.64.0.0/10\", '2001:db8:1::/48'] }",
    "  - { id: \"quoted-id\", prefixes: [100.64.0.1], plan: 'home' }",
    "  - { id: s1, prefixes: [100.64.0.1/32] }\r",
    "  - { id: s1, prefixes: [100.64.0.1/33, 1.2.3, ::1] }",
    "  - { prefixes: [100.64.0.1/32] }",
    "  - { id: s1 }",
    "  - { id: \"\", prefixes: [100.64.0.1/32] }",
    "  - { id: s1, prefixes: [\"\"] }",
];

/// Lines the reader must leave to the parser (it would read them otherwise, or they
/// are not the shape it reads).
const LEFT: &[&str] = &[
    "  - { id: null, prefixes: [100.64.0.1/32] }",
    "  - { id: NULL, prefixes: [100.64.0.1/32] }",
    "  - { id: ~, prefixes: [100.64.0.1/32] }",
    "  - { id: john smith, prefixes: [100.64.0.1/32] }",
    "  - { id: -x, prefixes: [100.64.0.1/32] }",
    "  - { id: s1, prefixes: [100.64.0.1/32], }",
    "  - { id: s1, prefixes: [100.64.0.1/32,] }",
    "  - { id: s1, prefixes: [] }",
    "  - { id: s1, prefixes: [2001:db8::], plan: p }",
    "  - { id: s1, prefixes: [100.64.0.1/32, nonsense] }",
    "  - { id: s1, id: s2, prefixes: [100.64.0.1/32] }",
    "  - { id: s1, prefix: [100.64.0.1/32] }",
    "  - { id: s1, prefixes: [100.64.0.1/32] } x",
    "  - { id: s1, prefixes: [100.64.0.1/32] }# c",
    "  - { id: &a s1, prefixes: [100.64.0.1/32] }",
    "  - { id: \"s\\x31\", prefixes: [100.64.0.1/32] }",
    "  - { id: 'it''s', prefixes: [100.64.0.1/32] }",
    "  - { id: sübscriber, prefixes: [100.64.0.1/32] }",
    "  - { id: s1, prefixes: [100.64.0.1/32]",
    "  - id: s1",
    "  -{ id: s1, prefixes: [100.64.0.1/32] }",
    "  - { id: s1, prefixes: 100.64.0.1/32 }",
    "  - { id: s1, prefixes: [[100.64.0.1/32]] }",
    "  - { id:s1, prefixes: [100.64.0.1/32] }",
    "  - { id: s1 # c, prefixes: [100.64.0.1/32] }",
];

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

#[test]
fn taken_lines_read_as_the_parser_reads_them() {
    for line in TAKEN {
        let src = format!("subscribers:\n{line}\n");
        let mine = entry(line.strip_suffix('\r').unwrap_or(line), 2, indent_of(line))
            .unwrap_or_else(|| panic!("the reader should take {line:?}"));
        let parser = by_parser(&src).unwrap_or_else(|| panic!("the parser refuses {line:?}"));
        assert_eq!(parser, vec![mine], "{line:?}");
    }
}

#[test]
fn other_lines_are_left_to_the_parser() {
    for line in LEFT {
        assert_eq!(entry(line, 2, indent_of(line)), None, "{line:?}");
    }
}

/// Whole files: read with the one-line reader where it applies, the same result as
/// the parser alone, for the subscribers and for the rest of the document.
fn same_both_ways(src: &str) {
    let fast = parse(src, "t.yaml");
    let whole = parse_whole(src, "t.yaml");
    match (fast, whole) {
        (Ok(mut f), Ok(mut w)) => {
            assert_eq!(f.take_subscribers(), w.take_subscribers(), "{src}");
            assert_eq!(
                (f.doc.default_plan.map(|t| (t.value, t.referenced.line()))),
                (w.doc.default_plan.map(|t| (t.value, t.referenced.line()))),
                "{src}"
            );
            assert_eq!(f.doc.plans.is_some(), w.doc.plans.is_some(), "{src}");
        }
        (Err(f), Err(w)) => assert_eq!(f.to_string(), w.to_string(), "{src}"),
        (f, w) => panic!("{src}\nreader: {:?}\nparser: {:?}", f.err(), w.err()),
    }
}

const HEAD: &str = "timezone: UTC\nplans:\n  home:\n    rate: { down: 10mbit, up: 1mbit }\n";

#[test]
fn files_read_the_same_both_ways() {
    let s1 = "  - { id: a, prefixes: [100.64.0.1/32] }";
    let s2 = "  - { id: b, prefixes: [\"2001:db8::/64\"], plan: home }";
    let files = [
        // The section last, with and without a final newline.
        format!("{HEAD}default_plan: home\nsubscribers:\n{s1}\n{s2}\n"),
        format!("{HEAD}default_plan: home\nsubscribers:\n{s1}\n{s2}"),
        // In the middle, with blank lines and comments, and keys after it.
        format!("{HEAD}subscribers:\n\n  # the first\n{s1}\n\n{s2}\n# end\ndefault_plan: home\n"),
        // Dashes at column 0.
        format!(
            "{HEAD}subscribers:\n- {{ id: a, prefixes: [100.64.0.1/32] }}\ndefault_plan: home\n"
        ),
        // CRLF line ends.
        format!("{HEAD}default_plan: home\nsubscribers:\n{s1}\n{s2}\n").replace('\n', "\r\n"),
        // Mixed with block-style entries: the parser reads all.
        format!(
            "{HEAD}default_plan: home\nsubscribers:\n{s1}\n  - id: c\n    prefixes: [100.64.0.3/32]\n"
        ),
        // Different indentation: the parser (which refuses it).
        format!(
            "{HEAD}default_plan: home\nsubscribers:\n{s1}\n    - {{ id: c, prefixes: [100.64.0.3/32] }}\n"
        ),
        // A key twice: the parser's error.
        format!("{HEAD}default_plan: home\nsubscribers:\n{s1}\nsubscribers:\n{s2}\n"),
        // An error elsewhere in the file: the parser's error, with its line.
        format!("{HEAD}default_plan: [home\nsubscribers:\n{s1}\n"),
        format!("{HEAD}default_plan: home\nbogus: 1\nsubscribers:\n{s1}\n"),
        // `subscribers:` inside a quoted string: not a key.
        format!("{HEAD}default_plan: \"home\nsubscribers:\n{s1}\n\"\n"),
        // A document marker after the section.
        format!("{HEAD}default_plan: home\nsubscribers:\n{s1}\n---\n"),
        // An empty section.
        format!("{HEAD}default_plan: home\nsubscribers:\n\ntimezone: UTC\n"),
    ];
    for f in &files {
        same_both_ways(f);
    }
    // The first five are read by the reader.
    for f in &files[..5] {
        assert!(split(f).is_some(), "{f}");
    }
}

#[test]
fn the_rest_keeps_its_lines() {
    let src = format!(
        "{HEAD}subscribers:\n  - {{ id: a, prefixes: [100.64.0.1/32] }}\n\ndefault_plan: home\n"
    );
    let (rest, entries, key_line) = split(&src).expect("one-line entries");
    assert_eq!(key_line, 5);
    assert_eq!(entries.len(), 1);
    assert_eq!(rest.lines().count(), src.lines().count());
    assert_eq!(rest.lines().nth(7), Some("default_plan: home"));
}
