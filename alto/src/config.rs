//! The `alto` section of the daemon's configuration:
//!
//! ```yaml
//! alto:
//!   costs: { local: 1, transit: 10 }    # routingcost: subscriber↔subscriber, subscriber↔elsewhere
//!   pids:                               # optional: PIDs of your own instead of one per plan
//!     pop-north: [100.64.0.0/16, "2001:db8:1::/48"]
//!     pop-south: [100.65.0.0/16]
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use peerwarden_policies::{Prefix, PrefixError};

use crate::network::{DEFAULT_PID, valid_pid_name};

/// The `alto` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AltoConfig {
    /// PID name → prefixes. Absent: one PID per plan, of its subscribers' prefixes.
    #[serde(default)]
    pub pids: Option<BTreeMap<String, Vec<String>>>,
    /// The `routingcost` values.
    #[serde(default)]
    pub costs: Costs,
}

/// The `routingcost` between PIDs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// Between two PIDs of the network (subscribers, or `alto.pids`), the same one included.
    #[serde(default = "default_local")]
    pub local: f64,
    /// Between a PID of the network and `default` (the rest of the internet, over transit).
    #[serde(default = "default_transit")]
    pub transit: f64,
}

fn default_local() -> f64 {
    1.0
}

fn default_transit() -> f64 {
    10.0
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            local: default_local(),
            transit: default_transit(),
        }
    }
}

/// The largest cost accepted (costs stay exact integers in a JSON double up to 2^53).
pub const MAX_COST: f64 = 1e15;

impl AltoConfig {
    /// Every problem, each one line starting with its dotted key
    /// (`alto.pids.north: "100.64.0.1/8" is not a network (host bits set ...)`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, v) in [
            ("alto.costs.local", self.costs.local),
            ("alto.costs.transit", self.costs.transit),
        ] {
            if !(0.0..=MAX_COST).contains(&v) {
                out.push(format!("{key}: {v} is out of range (0 to {MAX_COST})"));
            }
        }
        let Some(pids) = &self.pids else {
            return out;
        };
        let mut owner: HashMap<Prefix, &str> = HashMap::new();
        for (name, prefixes) in pids {
            if !valid_pid_name(name) {
                out.push(format!(
                    "alto.pids: {name:?} is not a PID name (at most 64 of A-Z a-z 0-9 - : @ _, RFC 7285 section 10.1)"
                ));
                continue;
            }
            if name == DEFAULT_PID {
                out.push(format!(
                    "alto.pids.{name}: the name is reserved for everything outside the other PIDs"
                ));
                continue;
            }
            if prefixes.is_empty() {
                out.push(format!("alto.pids.{name}: no prefix; list at least one"));
            }
            for text in prefixes {
                let p = match text.parse::<Prefix>() {
                    Ok(p) => p,
                    Err(e) => {
                        let why = match e {
                            PrefixError::Syntax => "expected ADDRESS/LENGTH".to_string(),
                            PrefixError::LengthTooLong { max } => {
                                format!("the length is at most {max}")
                            }
                            PrefixError::HostBits { network } => {
                                format!("host bits set; did you mean {network}?")
                            }
                        };
                        out.push(format!(
                            "alto.pids.{name}: {text:?} is not a network ({why})"
                        ));
                        continue;
                    }
                };
                if p.prefix_len() == 0 {
                    out.push(format!(
                        "alto.pids.{name}: {text} is the whole address space, which the default PID holds"
                    ));
                } else if let Some(other) = owner.insert(p, name) {
                    out.push(format!(
                        "alto.pids.{name}: {text} is also in PID {other:?}; a prefix may be in one PID only (RFC 7285 section 11.2.2)"
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section's problems; written as JSON (a subset of YAML) so the crate's tests
    /// need no YAML parser.
    fn problems(json: &str) -> Vec<String> {
        let c: AltoConfig = serde_json::from_str(json).expect("the test's section parses");
        c.problems()
    }

    #[test]
    fn defaults_are_one_and_ten_with_pids_by_plan() {
        let c = AltoConfig::default();
        assert_eq!((c.costs.local, c.costs.transit), (1.0, 10.0));
        assert!(c.pids.is_none());
        assert!(c.problems().is_empty());
    }

    #[test]
    fn every_bad_pid_and_cost_is_named_with_its_key() {
        let p = problems(
            r#"{"costs": {"local": -1, "transit": 5},
                "pids": {"default": ["10.0.0.0/8"], "a b": ["10.1.0.0/16"],
                         "north": ["100.64.0.1/8", "100.64.0.0/10", "::/0"],
                         "south": ["100.64.0.0/10"], "empty": []}}"#,
        );
        let want = [
            "alto.costs.local: -1 is out of range",
            "alto.pids: \"a b\" is not a PID name",
            "alto.pids.default: the name is reserved",
            "alto.pids.empty: no prefix",
            "alto.pids.north: \"100.64.0.1/8\" is not a network (host bits set; did you mean 100.0.0.0/8?)",
            "alto.pids.north: ::/0 is the whole address space",
            "alto.pids.south: 100.64.0.0/10 is also in PID \"north\"",
        ];
        assert_eq!(p.len(), want.len(), "{p:#?}");
        for w in want {
            assert!(p.iter().any(|m| m.starts_with(w)), "no {w:?} in {p:#?}");
        }
    }
}
