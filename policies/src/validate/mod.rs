//! From the document as written to a [`Policy`], collecting every problem.
//!
//! Each check reports at the value it is about and carries on, so one run lists all
//! the mistakes of a file. An item with an error still registers its name (a plan, a
//! class, a subscriber id), so one mistake does not cascade into "unknown plan"
//! errors elsewhere.

mod classes;
mod plans;
mod subscribers;

use crate::document::{Directions, Parsed, Text};
use crate::error::{PolicyError, Pos};
use crate::lpm::PrefixTable;
use crate::model::{Bandwidth, DEFAULT_LINK, Policy};
use crate::rate::{AmountError, Rate, parse_rate};
use crate::schedule::is_timezone_name;
use crate::suggest::suggest;

/// Validates a parsed document into a policy, or returns every error found.
pub(crate) fn validate(mut parsed: Parsed<'_>, origin: &str) -> Result<Policy, Vec<PolicyError>> {
    let listed = parsed.doc.subscribers.is_some();
    let entries = parsed.take_subscribers();
    let doc = &parsed.doc;
    let mut ck = Checker {
        origin,
        errors: Vec::new(),
        link: DEFAULT_LINK,
        timezone_given: false,
    };
    if doc.timezone.is_none()
        && doc.link.is_none()
        && doc.classes.is_none()
        && doc.plans.is_none()
        && !listed
        && doc.default_plan.is_none()
    {
        ck.err(
            Pos::START,
            "the policy is empty",
            "a policy needs `plans`, `default_plan` and `subscribers`; start from policies/examples/isp.yaml",
        );
        return Err(ck.errors);
    }

    let timezone = match &doc.timezone {
        Some(tz) if is_timezone_name(&tz.value) => tz.value.clone(),
        Some(tz) => {
            ck.err(
                tz.referenced,
                format!("unknown timezone `{}`", tz.value),
                "use UTC or an IANA name of Area/City form, e.g. Europe/Berlin",
            );
            String::new()
        }
        None => "UTC".to_owned(),
    };
    ck.timezone_given = doc.timezone.is_some();

    if let Some(link) = &doc.link {
        ck.link = ck.link_capacity(&link.value);
    }

    let classes = classes::check(&mut ck, doc.classes.as_ref());
    let plans = plans::check(&mut ck, doc.plans.as_ref(), &classes);
    let plan_names: Vec<&str> = plans.names.iter().map(String::as_str).collect();

    let default_plan = match &doc.default_plan {
        Some(name) => {
            let found = plan_names.iter().position(|p| *p == name.value);
            // With no plans at all, "no plans" has been said already.
            if found.is_none() && !plan_names.is_empty() {
                ck.err(
                    name.referenced,
                    format!("unknown plan `{}` in default_plan", name.value),
                    plans_hint(&name.value, &plan_names),
                );
            }
            found
        }
        None => {
            ck.err(
                Pos::START,
                "missing `default_plan`",
                "add `default_plan: NAME`: the plan for subscribers without one and for addresses no subscriber owns",
            );
            None
        }
    };

    let subscribers = subscribers::check(&mut ck, entries, &plan_names, default_plan);

    if !ck.errors.is_empty() {
        return Err(ck.errors);
    }
    let (Some(default_plan), Some(plans), Some(subscribers)) =
        (default_plan, plans.into_plans(), subscribers)
    else {
        // Every path that leaves a part unbuilt reports an error first; this is a
        // backstop so a missed report cannot turn into an invalid policy.
        return Err(vec![PolicyError::new(
            origin,
            1,
            1,
            "the policy is incomplete",
            "this is a bug in peerwarden's policy checker; please report it with the file",
        )]);
    };
    let mut table = PrefixTable::default();
    for (i, s) in subscribers.iter().enumerate() {
        for p in &s.prefixes {
            table.insert(p, i);
        }
    }
    Ok(Policy {
        timezone,
        link: ck.link,
        classes: classes.built,
        plans,
        default_plan,
        subscribers,
        table,
    })
}

/// "did you mean" and the list of plans.
fn plans_hint(name: &str, plans: &[&str]) -> String {
    let list = if plans.is_empty() {
        "none".to_owned()
    } else {
        plans.join(", ")
    };
    match suggest(name, plans.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? plans: {list}"),
        None => format!("plans: {list}"),
    }
}

/// Traffic direction, for rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Down,
    Up,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Down => "down",
            Dir::Up => "up",
        }
    }

    fn of(self, b: Bandwidth) -> Rate {
        match self {
            Dir::Down => b.down,
            Dir::Up => b.up,
        }
    }
}

const RATE_HINT: &str =
    "rates are bits per second: write e.g. 50mbit, 800kbit, 1gbit, or a plain number of bit/s";

/// Collects errors while checking one file.
pub(crate) struct Checker<'a> {
    origin: &'a str,
    errors: Vec<PolicyError>,
    /// The link capacity, for "beyond the link" checks.
    link: Bandwidth,
    /// Whether `timezone:` was given (schedules need it).
    timezone_given: bool,
}

impl Checker<'_> {
    /// Records an error at `loc`.
    pub(crate) fn err(
        &mut self,
        loc: impl Into<Pos>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.errors
            .push(PolicyError::at(self.origin, loc, message, hint));
    }

    /// Parses a rate; reports syntax errors and zero. `what` names it in messages
    /// ("class `p2p` down rate").
    pub(crate) fn rate(&mut self, t: &Text, what: &str, zero_hint: &str) -> Option<Rate> {
        match parse_rate(&t.value) {
            Ok(r) if r.bits_per_sec() == 0 => {
                self.err(t.referenced, format!("{what} is zero"), zero_hint);
                None
            }
            Ok(r) => Some(r),
            Err(AmountError::Syntax) => {
                self.err(
                    t.referenced,
                    format!("{what} `{}` is not a rate", t.value),
                    RATE_HINT,
                );
                None
            }
            Err(AmountError::TooLarge) => {
                self.err(
                    t.referenced,
                    format!("{what} `{}` is too large", t.value),
                    format!(
                        "the link carries {} down, {} up",
                        self.link.down, self.link.up
                    ),
                );
                None
            }
            Err(AmountError::Fractional) => {
                self.err(
                    t.referenced,
                    format!(
                        "{what} `{}` is not a whole number of bits per second",
                        t.value
                    ),
                    "round it, or write it in a smaller unit, e.g. kbit instead of mbit",
                );
                None
            }
        }
    }

    /// A rate that must also fit in the link.
    pub(crate) fn rate_within_link(
        &mut self,
        t: &Text,
        dir: Dir,
        what: &str,
        zero_hint: &str,
    ) -> Option<Rate> {
        let r = self.rate(t, what, zero_hint)?;
        let link = dir.of(self.link);
        if r > link {
            self.err(
                t.referenced,
                format!("{what} {r} is above the link's {} capacity {link}", dir.name()),
                "lower it, or give the real capacity with `link: { down: ..., up: ... }`; the default is 10gbit",
            );
            return None;
        }
        Some(r)
    }

    /// `link: { down, up }`; a direction left out keeps the default.
    fn link_capacity(&mut self, doc: &Directions) -> Bandwidth {
        let hint = "a link of zero carries nothing; give its real capacity, e.g. 10gbit";
        let mut link = DEFAULT_LINK;
        if let Some(t) = &doc.down {
            link.down = self
                .rate(t, "link down capacity", hint)
                .unwrap_or(link.down);
        }
        if let Some(t) = &doc.up {
            link.up = self.rate(t, "link up capacity", hint).unwrap_or(link.up);
        }
        link
    }
}
