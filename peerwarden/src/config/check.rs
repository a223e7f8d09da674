//! Every problem of a configuration file, each with its line and column, for
//! `peerwarden config check`. [`Config::parse`] (the daemon's loader) stops at the first.
//!
//! The verdict is the loader's own: the same deserializer (read by
//! [`peerwarden_policies::every_error`], which finds the errors after the first) and the
//! same [`Config::problems`], so `config check` and `run` never disagree about a file. The
//! checks of values run on what was read; a check that read an entry that held an error is
//! dropped, since the default standing in for it would make the problem up.

use peerwarden_policies::every_error::{self, Read};

use super::Config;

pub use peerwarden_policies::every_error::Problem;

/// A configuration read, with every problem found.
pub type Checked = Read<Config>;

/// Checks configuration text; `origin` names it in the problems.
pub fn check(text: &str, origin: &str) -> Checked {
    // `interfaces` is the one required section.
    let mut checked: Checked =
        every_error::read_all(text, origin, &[("interfaces", "interfaces: {}")]);
    let found: Vec<_> = checked
        .value
        .as_ref()
        .map(Config::problems)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| checked.readable(p.key()) && p.needs.iter().all(|k| checked.readable(k)))
        .collect();
    for p in found {
        checked.push(p.key(), &p.message, "");
    }
    checked
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
