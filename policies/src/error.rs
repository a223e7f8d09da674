//! Policy errors: each one names the file, the line and column of the offending value,
//! what is wrong and what to do about it.

use std::fmt;
use std::sync::Arc;

use serde_saphyr::Location;

/// A place in the file: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    /// Line 1, column 1: where problems of the whole file are reported.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl From<Location> for Pos {
    fn from(loc: Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// One problem in a policy file.
///
/// Displays as `FILE:LINE:COL: message (hint)`, one line. `line` and `column` are
/// 1-based; both are 0 when the problem has no place in the file (it could not be read),
/// and then the display is `FILE: message (hint)`.
#[derive(Clone, Debug)]
pub struct PolicyError {
    /// The file (or other origin) the policy came from.
    pub origin: String,
    /// 1-based line of the offending value, 0 if unknown.
    pub line: u32,
    /// 1-based column (in characters) of the offending value, 0 if unknown.
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// The I/O error behind a file that could not be read.
    source: Option<Arc<std::io::Error>>,
}

impl PolicyError {
    /// An error at a place in the file.
    pub fn new(
        origin: &str,
        line: u32,
        column: u32,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            origin: origin.to_owned(),
            line,
            column,
            message: one_line(message.into()),
            hint: one_line(hint.into()),
            source: None,
        }
    }

    /// An error at a place in the file.
    pub(crate) fn at(
        origin: &str,
        pos: impl Into<Pos>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> PolicyError {
        let pos = pos.into();
        PolicyError::new(origin, pos.line, pos.column, message, hint)
    }

    /// The file could not be read.
    pub(crate) fn io(origin: &str, err: std::io::Error) -> PolicyError {
        let mut e = PolicyError::new(
            origin,
            0,
            0,
            format!("cannot read the policy file: {err}"),
            "check the path and its permissions",
        );
        e.source = Some(Arc::new(err));
        e
    }

    /// 1-based line of the offending value, 0 if unknown.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// 1-based column of the offending value, 0 if unknown.
    pub fn column(&self) -> u32 {
        self.column
    }

    /// What is wrong, without place or hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it.
    pub fn hint(&self) -> &str {
        &self.hint
    }
}

/// Messages quote the operator's text, which may hold control characters or Unicode
/// line separators; the display promise is one line per error.
fn one_line(s: String) -> String {
    let breaks = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if s.chars().any(breaks) {
        s.chars().map(|c| if breaks(c) { ' ' } else { c }).collect()
    } else {
        s
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {} ({})", self.origin, self.message, self.hint)
        } else {
            write!(
                f,
                "{}:{}:{}: {} ({})",
                self.origin, self.line, self.column, self.message, self.hint
            )
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Every problem found in a policy file, in file order. Never empty.
///
/// Displays one error per line (no trailing newline).
#[derive(Clone, Debug)]
pub struct PolicyErrors {
    errors: Vec<PolicyError>,
}

impl PolicyErrors {
    /// Wraps errors, sorted by place in the file. Callers pass at least one.
    pub(crate) fn new(mut errors: Vec<PolicyError>) -> PolicyErrors {
        // Stable: two errors at one place keep the order they were found in.
        errors.sort_by_key(|e| (e.line, e.column));
        PolicyErrors { errors }
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[PolicyError] {
        &self.errors
    }
}

/// Reads like a slice of errors: `len()`, `iter()`, `[0]`, `first()`.
impl std::ops::Deref for PolicyErrors {
    type Target = [PolicyError];
    fn deref(&self) -> &[PolicyError] {
        &self.errors
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl From<PolicyError> for PolicyErrors {
    fn from(e: PolicyError) -> PolicyErrors {
        PolicyErrors { errors: vec![e] }
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errors
            .first()
            .and_then(|e| e.source.as_deref())
            .map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_place_message_and_hint_on_one_line() {
        let e = PolicyError::new("p.yaml", 3, 7, "bad\nthing\u{2028}here", "fix it");
        assert_eq!(e.to_string(), "p.yaml:3:7: bad thing here (fix it)");
        let io = PolicyError::io("p.yaml", std::io::Error::other("gone"));
        assert_eq!(
            io.to_string(),
            "p.yaml: cannot read the policy file: gone (check the path and its permissions)"
        );
        assert!(std::error::Error::source(&io).is_some());
    }

    #[test]
    fn errors_sort_by_place_and_print_one_per_line() {
        let errs = PolicyErrors::new(vec![
            PolicyError::new("f", 9, 1, "b", "h"),
            PolicyError::new("f", 2, 5, "a", "h"),
        ]);
        assert_eq!(errs.to_string(), "f:2:5: a (h)\nf:9:1: b (h)");
        assert_eq!(errs.errors()[0].line(), 2);
        assert_eq!((errs.len(), errs[1].message()), (2, "b"));
    }
}
