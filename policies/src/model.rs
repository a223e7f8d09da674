//! The validated policy: what the daemon compiles into map entries.
//!
//! Everything here has passed validation: rates are non-zero and within the link,
//! plans and classes named by rules exist, prefixes do not overlap. Fields are public
//! for reading; types whose invariants span items ([`Policy`], [`Subscriber`]) keep
//! theirs private so only [`crate::load_str`] builds them.

use std::fmt;
use std::net::IpAddr;

use peerwarden_common::{Class, Label};

use crate::dscp::Dscp;
use crate::host::HostPattern;
use crate::lpm::PrefixTable;
use crate::prefix::Prefix;
use crate::rate::Rate;
use crate::schedule::{Days, Hours, Weekday};

/// A rate per direction. Down is toward the subscriber, up is from the subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bandwidth {
    /// Toward the subscriber.
    pub down: Rate,
    /// From the subscriber.
    pub up: Rate,
}

/// The link capacity when a policy does not give `link:`.
pub const DEFAULT_LINK: Bandwidth = Bandwidth {
    down: Rate::from_bits_per_sec(10_000_000_000),
    up: Rate::from_bits_per_sec(10_000_000_000),
};

/// What a class rule does with the class's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Drop what exceeds the rate (token bucket). The default when a rate is given.
    Police,
    /// Queue what exceeds the rate (an HTB class), delaying instead of dropping.
    Shape,
    /// Only set the DSCP codepoint. The default when only `dscp` is given.
    Mark,
    /// Drop all of the class's traffic.
    Block,
}

impl Action {
    /// Every action, as written in policies.
    pub const ALL: [Action; 4] = [Action::Police, Action::Shape, Action::Mark, Action::Block];

    /// The name written in policies.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Police => "police",
            Action::Shape => "shape",
            Action::Mark => "mark",
            Action::Block => "block",
        }
    }

    /// The action with this name.
    pub fn from_name(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.name() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What traffic a class rule applies to.
///
/// When several rules of a plan match a flow, the most specific wins: a label rule,
/// then a user-defined class, then a built-in class.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A built-in class: `p2p`, `video`, `web`, `other`.
    Class(Class),
    /// One label: `bittorrent`, `hls`, ...
    Label(Label),
    /// A class defined under the policy's top-level `classes:`.
    User(String),
}

impl Target {
    /// The name as written in the plan.
    pub fn name(&self) -> &str {
        match self {
            Target::Class(c) => c.name(),
            Target::Label(l) => l.name(),
            Target::User(n) => n,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A plan's rule for one class or label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRule {
    /// The traffic it applies to.
    pub target: Target,
    /// Rate toward the subscriber, if limited.
    pub down: Option<Rate>,
    /// Rate from the subscriber, if limited.
    pub up: Option<Rate>,
    /// Token bucket depth in bytes; `None` leaves it to the daemon's default.
    pub burst: Option<u64>,
    /// What happens to the traffic.
    pub action: Action,
    /// Codepoint to set on the class's packets, if any.
    pub dscp: Option<Dscp>,
}

/// A plan: a subscriber's total rate and its per-class rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The plan's name (its key under `plans:`).
    pub name: String,
    /// The subscriber's total rate.
    pub rate: Bandwidth,
    /// Rules always in force, in file order.
    pub classes: Vec<ClassRule>,
    /// Windows with stricter rules, in file order.
    pub schedule: Vec<ScheduleEntry>,
}

impl Plan {
    /// The plan's own rule for `target`, ignoring schedules.
    pub fn rule(&self, target: &Target) -> Option<&ClassRule> {
        self.classes.iter().find(|r| &r.target == target)
    }

    /// The rules in force on `day` at `minute` (0..1440) of the policy's local time:
    /// the plan's rules, with each active schedule entry's rules replacing those for
    /// the same target (and adding rules for new targets). When entries overlap, the
    /// later one in the file wins.
    ///
    /// A schedule rule without `action` amends the plan's rule for its target: fields
    /// it leaves out (such as `up` or `dscp`) keep the plan's values. A schedule rule
    /// with `action` stands alone. Validation has done that merge already, so the
    /// rules in [`ScheduleEntry::classes`] are complete.
    pub fn rules_at(&self, day: Weekday, minute: u16) -> Vec<ClassRule> {
        let mut rules = self.classes.clone();
        for entry in self.schedule.iter().filter(|e| e.active_at(day, minute)) {
            for rule in &entry.classes {
                match rules.iter_mut().find(|r| r.target == rule.target) {
                    Some(slot) => *slot = rule.clone(),
                    None => rules.push(rule.clone()),
                }
            }
        }
        rules
    }
}

/// A class defined in the policy: labels and host names grouped under one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserClass {
    /// The name plans use.
    pub name: String,
    /// Labels that belong to the class.
    pub labels: Vec<Label>,
    /// Host names (SNI, HTTP `Host`) that belong to the class.
    pub hosts: Vec<HostPattern>,
}

/// A subscriber: an id, the address prefixes it owns and its plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    /// Unique id, as reported in flows and counters.
    pub id: String,
    /// IPv4 and IPv6 prefixes, disjoint from every other subscriber's.
    pub prefixes: Vec<Prefix>,
    /// The plan's name: the subscriber's `plan`, or the policy's `default_plan`.
    pub plan: String,
    /// Index of the plan in `Policy::plans`, resolved at validation.
    pub(crate) plan_index: usize,
}

/// A validated policy. Built by [`crate::load_str`] and [`crate::load_file`].
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) timezone: String,
    pub(crate) link: Bandwidth,
    pub(crate) classes: Vec<UserClass>,
    /// Never empty: validation requires a plan.
    pub(crate) plans: Vec<Plan>,
    /// Index of `default_plan` in `plans`.
    pub(crate) default_plan: usize,
    pub(crate) subscribers: Vec<Subscriber>,
    pub(crate) table: PrefixTable,
}

impl Policy {
    /// The IANA timezone schedules are written in (`UTC` when not given).
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The link capacity (`link:`, 10 gbit/s each way when not given).
    pub fn link(&self) -> Bandwidth {
        self.link
    }

    /// User-defined classes, in file order.
    pub fn classes(&self) -> &[UserClass] {
        &self.classes
    }

    /// The user-defined class with this name.
    pub fn class(&self, name: &str) -> Option<&UserClass> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// Plans, in file order.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// The plan with this name.
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// The plan of subscribers without one and of addresses no subscriber owns.
    pub fn default_plan(&self) -> &Plan {
        // Validation guarantees `plans` is not empty and the index is in range; the
        // fallback keeps this total without a panic path.
        self.plans
            .get(self.default_plan)
            .or_else(|| self.plans.first())
            .unwrap_or(&EMPTY_PLAN)
    }

    /// Subscribers, in file order.
    pub fn subscribers(&self) -> &[Subscriber] {
        &self.subscribers
    }

    /// The subscriber with this id.
    pub fn subscriber(&self, id: &str) -> Option<&Subscriber> {
        self.subscribers.iter().find(|s| s.id == id)
    }

    /// The subscriber owning `addr`, by longest-prefix match over all subscribers'
    /// prefixes. IPv4-mapped IPv6 addresses are matched as IPv4.
    pub fn subscriber_for(&self, addr: IpAddr) -> Option<&Subscriber> {
        self.table
            .lookup(addr)
            .and_then(|i| self.subscribers.get(i))
    }

    /// The plan of a subscriber of this policy. For a subscriber from another policy,
    /// the plan of the same name, else the default plan.
    pub fn plan_of(&self, subscriber: &Subscriber) -> &Plan {
        self.plans
            .get(subscriber.plan_index)
            .filter(|p| p.name == subscriber.plan)
            .or_else(|| self.plan(&subscriber.plan))
            .unwrap_or_else(|| self.default_plan())
    }

    /// The plan for traffic of `addr`: its subscriber's, else the default plan.
    pub fn plan_for(&self, addr: IpAddr) -> &Plan {
        match self.subscriber_for(addr) {
            Some(s) => self.plan_of(s),
            None => self.default_plan(),
        }
    }
}

/// Only reachable if a `Policy` were built without validation, which the crate does
/// not do; it lets `default_plan` return a reference without a panic path.
static EMPTY_PLAN: Plan = Plan {
    name: String::new(),
    rate: DEFAULT_LINK,
    classes: Vec::new(),
    schedule: Vec::new(),
};

/// One `schedule:` entry of a plan: on these days, in these hours, these class rules
/// replace or amend the plan's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleEntry {
    /// The days the window starts on.
    pub days: Days,
    /// The daily window.
    pub hours: Hours,
    /// The rules in force during the window, already merged with the plan's rules for
    /// the same class (see [`crate::Plan::rules_at`]).
    pub classes: Vec<ClassRule>,
}

impl ScheduleEntry {
    /// Whether the entry is in force on `day` at `minute` (0..1440) local time.
    pub fn active_at(&self, day: Weekday, minute: u16) -> bool {
        self.hours.in_force(self.days, day, minute)
    }
}
