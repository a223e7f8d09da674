//! peerwarden's per-subscriber policies: the YAML an operator writes, validated into
//! a [`Policy`], and compiled ([`compile`]) into the kernel's map entries.
//!
//! ```
//! use std::net::IpAddr;
//! use peerwarden_policies::{load_str, Action, Target};
//! use peerwarden_common::Class;
//!
//! let yaml = "
//! subscribers:
//!   - id: alice
//!     prefixes: [100.64.1.10/32, 2001:db8:1::/64]
//!     plan: home-50
//! plans:
//!   home-50:
//!     rate: { down: 50mbit, up: 10mbit }
//!     classes:
//!       p2p: { down: 5mbit, up: 1mbit, dscp: LE }
//! default_plan: home-50
//! ";
//! let policy = load_str(yaml, "example.yaml").expect("a valid policy");
//! let addr: IpAddr = "2001:db8:1::42".parse()?;
//! let alice = policy.subscriber_for(addr).expect("alice owns the /64");
//! let plan = policy.plan_of(alice);
//! let p2p = plan.rule(&Target::Class(Class::P2p)).expect("a p2p rule");
//! assert_eq!(p2p.down.map(|r| r.bits_per_sec()), Some(5_000_000));
//! assert_eq!(p2p.action, Action::Police);
//!
//! // Mistakes come back together, each with its line and column and what to do.
//! let bad = yaml.replace("down: 5mbit", "down: 60mbit").replace("    plan: home-50", "    plan: home-5");
//! let errors = load_str(&bad, "example.yaml").unwrap_err();
//! assert_eq!(errors.errors().len(), 2);
//! assert_eq!(
//!     errors.errors()[0].to_string(),
//!     "example.yaml:5:11: unknown plan `home-5` for subscriber `alice` \
//!      (did you mean `home-50`? plans: home-50)"
//! );
//! assert_eq!((errors.errors()[1].line, errors.errors()[1].column), (10, 20));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The file format is described in DESIGN.md ("Policies (YAML)") and, with a comment
//! on every section, in `policies/examples/isp.yaml`.
//!
//! Bad input never becomes a [`Policy`]: [`load_str`] returns every problem it found
//! ([`PolicyErrors`]), so the daemon keeps its running policy. YAML syntax and shape
//! errors (a wrong indentation, an unknown key) stop the parse and come alone;
//! everything after that (rates, prefixes, names, schedules) is checked in full.

pub mod compile;
mod document;
mod dscp;
mod error;
pub mod every_error;
mod host;
mod lpm;
mod model;
mod oneline;
mod prefix;
mod rate;
mod schedule;
mod suggest;
mod validate;

use std::path::Path;

pub use dscp::{Dscp, DscpError};
pub use error::{PolicyError, PolicyErrors};
pub use host::HostPattern;
pub use model::{
    Action, Bandwidth, ClassRule, DEFAULT_LINK, Plan, Policy, ScheduleEntry, Subscriber, Target,
    UserClass,
};
pub use prefix::{Prefix, PrefixError};
pub use rate::{AmountError, Rate, format_bytes, parse_bytes, parse_rate};
pub use schedule::{DAY_MINUTES, Days, Hours, HoursError, WEEK, Weekday, is_timezone_name};

/// Reads and validates a policy file. Errors name the file as given.
pub fn load_file(path: &Path) -> Result<Policy, PolicyErrors> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| PolicyError::io(&origin, e))?;
    load_str(&src, &origin)
}

/// Validates a policy from its text. `origin` names it in errors (a file name, or
/// something like `<api>` for a policy uploaded over the API).
pub fn load_str(src: &str, origin: &str) -> Result<Policy, PolicyErrors> {
    let doc = document::parse(src, origin)?;
    validate::validate(doc, origin).map_err(PolicyErrors::new)
}
