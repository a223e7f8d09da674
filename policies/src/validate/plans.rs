//! `plans:`: total rates, class rules and schedules.

use serde_saphyr::Spanned;

use super::classes::UserClasses;
use super::{Checker, Dir};
use crate::document::{Directions, Entries, PlanDoc, RuleDoc, ScheduleDoc, Text};
use crate::dscp::{Dscp, DscpError};
use crate::error::Pos;
use crate::model::{Action, Bandwidth, ClassRule, Plan};
use crate::rate::{Rate, format_bytes, parse_bytes};
use crate::suggest::suggest;
use crate::{
    model::ScheduleEntry,
    schedule::{Days, Hours, HoursError},
};

/// Smallest useful token bucket: one full-size Ethernet frame. A smaller bucket can
/// never hold the tokens for such a packet, so the rule would drop them all.
const MIN_BURST: u64 = 1514;

const ZERO_CLASS_HINT: &str =
    "a zero rate passes nothing; use `action: block` to drop the class, or give a positive rate";
const DAYS_HINT: &str = "list days like [mon-fri] or [sat, sun]";

/// The plans: their names (all, so a plan with a mistake is still known to
/// subscribers) and the ones that validated.
pub(crate) struct Plans {
    pub names: Vec<String>,
    built: Vec<Option<Plan>>,
}

impl Plans {
    /// All plans, if every one validated and there is at least one.
    pub(crate) fn into_plans(self) -> Option<Vec<Plan>> {
        let plans: Option<Vec<Plan>> = self.built.into_iter().collect();
        plans.filter(|p| !p.is_empty())
    }
}

pub(crate) fn check(
    ck: &mut Checker<'_>,
    doc: Option<&Spanned<Entries<Text, Spanned<PlanDoc>>>>,
    classes: &UserClasses,
) -> Plans {
    let mut out = Plans {
        names: Vec::new(),
        built: Vec::new(),
    };
    let hint = "add a plan under `plans:`, e.g. home-50: { rate: { down: 50mbit, up: 10mbit } }";
    match doc {
        None => ck.err(Pos::START, "no `plans`", hint),
        Some(d) if d.value.0.is_empty() => ck.err(d.referenced, "no plans under `plans`", hint),
        Some(_) => {}
    }
    let mut schedule_tz_reported = false;
    for (name, plan) in doc.iter().flat_map(|d| &d.value.0) {
        out.names.push(name.value.clone());
        let built = check_plan(ck, name, &plan.value, classes, &mut schedule_tz_reported);
        out.built.push(built);
    }
    out
}

fn check_plan(
    ck: &mut Checker<'_>,
    name: &Text,
    doc: &PlanDoc,
    classes: &UserClasses,
    schedule_tz_reported: &mut bool,
) -> Option<Plan> {
    let plan = name.value.as_str();
    let rate = match &doc.rate {
        None => {
            ck.err(
                name.referenced,
                format!("plan `{plan}` has no `rate`"),
                "add the subscriber's total, e.g. `rate: { down: 50mbit, up: 10mbit }`",
            );
            None
        }
        Some(r) => plan_rate(ck, plan, &r.value, r.referenced.into()),
    };
    let mut ok = rate.is_some();
    let ctx = RuleCtx {
        plan,
        rate,
        classes,
    };

    let mut rules = Vec::new();
    for (key, rule) in doc.classes.iter().flat_map(|c| &c.value.0) {
        match check_rule(ck, &ctx, key, &rule.value, &[]) {
            Some(r) => rules.push(r),
            None => ok = false,
        }
    }

    let mut schedule = Vec::new();
    for entry in doc.schedule.iter().flatten() {
        if !ck.timezone_given && !*schedule_tz_reported {
            ck.err(
                entry.referenced,
                "schedule without a top-level `timezone`",
                "add e.g. `timezone: Europe/Berlin` or `timezone: UTC`, so that the hours have a meaning",
            );
            *schedule_tz_reported = true;
        }
        match check_schedule(ck, &ctx, &entry.value, entry.referenced.into(), &rules) {
            Some(e) => schedule.push(e),
            None => ok = false,
        }
    }

    match (ok, rate) {
        (true, Some(rate)) => Some(Plan {
            name: plan.to_owned(),
            rate,
            classes: rules,
            schedule,
        }),
        _ => None,
    }
}

fn plan_rate(ck: &mut Checker<'_>, plan: &str, doc: &Directions, at: Pos) -> Option<Bandwidth> {
    let hint = "a plan of zero passes nothing; give the subscriber's total rate";
    let get = |ck: &mut Checker<'_>, t: &Option<Text>, dir: Dir| match t {
        Some(t) => ck.rate_within_link(t, dir, &format!("plan `{plan}` {} rate", dir.name()), hint),
        None => {
            ck.err(
                at,
                format!("plan `{plan}` rate has no `{}`", dir.name()),
                "give both directions, e.g. `rate: { down: 50mbit, up: 10mbit }`",
            );
            None
        }
    };
    let down = get(ck, &doc.down, Dir::Down);
    let up = get(ck, &doc.up, Dir::Up);
    Some(Bandwidth {
        down: down?,
        up: up?,
    })
}

/// What a rule is checked against.
struct RuleCtx<'a> {
    plan: &'a str,
    /// The plan's total, if it validated.
    rate: Option<Bandwidth>,
    classes: &'a UserClasses,
}

/// Checks one class rule. `base` holds the plan's own rules when checking a schedule
/// entry: a schedule rule without `action` amends the plan's rule for its target.
fn check_rule(
    ck: &mut Checker<'_>,
    ctx: &RuleCtx<'_>,
    key: &Text,
    doc: &RuleDoc,
    base: &[ClassRule],
) -> Option<ClassRule> {
    let name = key.value.as_str();
    let target = ctx.classes.target(ck, key);
    if doc.down.is_none()
        && doc.up.is_none()
        && doc.burst.is_none()
        && doc.action.is_none()
        && doc.dscp.is_none()
    {
        ck.err(
            key.referenced,
            format!("class `{name}` sets nothing"),
            "give it `down`/`up` rates, an `action` or a `dscp`, or remove it",
        );
        return None;
    }
    let mut ok = target.is_some();
    let mut field = |ck: &mut Checker<'_>, t: &Option<Text>, dir: Dir| {
        let r = t.as_ref().map(|t| class_rate(ck, ctx, t, dir, name));
        if matches!(r, Some(None)) {
            ok = false;
        }
        r.flatten()
    };
    let down = field(ck, &doc.down, Dir::Down);
    let up = field(ck, &doc.up, Dir::Up);
    let burst = doc.burst.as_ref().and_then(|t| check_burst(ck, t));
    let dscp = doc.dscp.as_ref().and_then(|t| check_dscp(ck, t));
    let action = doc.action.as_ref().map(|t| (t, check_action(ck, t)));
    ok &= doc.burst.is_none() || burst.is_some();
    ok &= doc.dscp.is_none() || dscp.is_some();
    ok &= !matches!(action, Some((_, None)));

    // A schedule rule without an action amends the plan's rule for the same target.
    let inherited = match (&target, &action) {
        (Some(t), None) => base.iter().find(|r| &r.target == t),
        _ => None,
    };
    let down = down.or(inherited.and_then(|r| r.down));
    let up = up.or(inherited.and_then(|r| r.up));
    let burst = burst.or(inherited.and_then(|r| r.burst));
    let dscp = dscp.or(inherited.and_then(|r| r.dscp));
    let has_rate = doc.down.is_some()
        || doc.up.is_some()
        || inherited.is_some_and(|r| r.down.is_some() || r.up.is_some());
    let has_dscp = doc.dscp.is_some() || dscp.is_some();

    let action = match action {
        Some((_, None)) => return None,
        Some((t, Some(a))) => Some((t, a)),
        None => None,
    };
    let resolved = match (action, inherited) {
        (Some((_, a)), _) => a,
        (None, Some(r)) => r.action,
        (None, None) if !has_rate && has_dscp => Action::Mark,
        (None, None) => Action::Police,
    };
    let action_at: Pos = match action {
        Some((t, _)) => t.referenced.into(),
        None => key.referenced.into(),
    };

    match resolved {
        Action::Police | Action::Shape if !has_rate => {
            ok = false;
            match (&action, &doc.burst) {
                (None, Some(b)) => ck.err(
                    b.referenced,
                    format!("class `{name}` has a burst but no rate"),
                    "burst sizes the token bucket of a rate; add `down`/`up`, or remove `burst`",
                ),
                _ => ck.err(
                    action_at,
                    format!("action {resolved} needs a rate"),
                    "add `down` and/or `up`, or use `action: mark` or `action: block`",
                ),
            }
        }
        Action::Mark => {
            if !has_dscp {
                ok = false;
                ck.err(
                    action_at,
                    "action mark needs a `dscp`",
                    "add the codepoint to set, e.g. `dscp: LE`, or use `action: police` with a rate",
                );
            }
            for (key, t) in [("down", &doc.down), ("up", &doc.up), ("burst", &doc.burst)] {
                if let Some(t) = t {
                    ok = false;
                    ck.err(
                        t.referenced,
                        format!("`{key}` has no effect with action mark"),
                        "remove it, or use `action: police` with `dscp` to both limit and mark",
                    );
                }
            }
        }
        Action::Block => {
            for (key, t) in [
                ("down", &doc.down),
                ("up", &doc.up),
                ("burst", &doc.burst),
                ("dscp", &doc.dscp),
            ] {
                if let Some(t) = t {
                    ok = false;
                    ck.err(
                        t.referenced,
                        format!("`{key}` has no effect with action block"),
                        "block drops all of the class's traffic; remove the key, or use `action: police` to limit instead",
                    );
                }
            }
        }
        Action::Police | Action::Shape => {}
    }

    let target = target?;
    ok.then_some(ClassRule {
        target,
        down,
        up,
        burst,
        action: resolved,
        dscp,
    })
}

/// A class rate: a valid rate within the link and within the plan's total.
fn class_rate(
    ck: &mut Checker<'_>,
    ctx: &RuleCtx<'_>,
    t: &Text,
    dir: Dir,
    class: &str,
) -> Option<Rate> {
    let what = format!("class `{class}` {} rate", dir.name());
    let r = ck.rate_within_link(t, dir, &what, ZERO_CLASS_HINT)?;
    if let Some(total) = ctx.rate.map(|b| dir.of(b))
        && r > total
    {
        ck.err(
            t.referenced,
            format!(
                "{what} {r} is above plan `{}`'s {} rate {total}",
                ctx.plan,
                dir.name()
            ),
            format!("a class cannot get more than its plan; lower it to {total} or less"),
        );
        return None;
    }
    Some(r)
}

fn check_burst(ck: &mut Checker<'_>, t: &Text) -> Option<u64> {
    match parse_bytes(&t.value) {
        Ok(b) if b < MIN_BURST => {
            ck.err(
                t.referenced,
                format!(
                    "burst {} is smaller than one full-size packet of {MIN_BURST} bytes",
                    format_bytes(b)
                ),
                "use at least 2kb; 64kb suits most rates",
            );
            None
        }
        Ok(b) => Some(b),
        Err(_) => {
            ck.err(
                t.referenced,
                format!("burst `{}` is not a size", t.value),
                "write bytes with a unit: 64kb, 1mb, or a plain number of bytes",
            );
            None
        }
    }
}

fn check_dscp(ck: &mut Checker<'_>, t: &Text) -> Option<Dscp> {
    let hint = "use a name: DF, LE, CS0-CS7, AF11-AF43, VA, EF; or a number 0-63";
    match t.value.parse::<Dscp>() {
        Ok(d) => Some(d),
        Err(DscpError::OutOfRange) => {
            ck.err(
                t.referenced,
                format!("dscp {} is out of range", t.value.trim()),
                hint,
            );
            None
        }
        Err(DscpError::Unknown) => {
            ck.err(t.referenced, format!("unknown dscp `{}`", t.value), hint);
            None
        }
    }
}

fn check_action(ck: &mut Checker<'_>, t: &Text) -> Option<Action> {
    let v = t.value.as_str();
    if let Some(a) = Action::from_name(v) {
        return Some(a);
    }
    let hint = match v {
        "drop" | "deny" | "reject" | "discard" => {
            "to drop all of the class's traffic, use `block`; to drop what exceeds a rate, `police`"
                .to_owned()
        }
        _ => {
            let mean = suggest(v, Action::ALL.iter().map(|a| a.name()))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            format!("{mean}actions: police, shape, mark, block")
        }
    };
    ck.err(t.referenced, format!("unknown action `{v}`"), hint);
    None
}

fn check_schedule(
    ck: &mut Checker<'_>,
    ctx: &RuleCtx<'_>,
    doc: &ScheduleDoc,
    at: Pos,
    base: &[ClassRule],
) -> Option<ScheduleEntry> {
    let mut ok = true;
    let mut days = Days::default();
    match &doc.days {
        None => {
            ok = false;
            ck.err(at, "schedule entry without `days`", DAYS_HINT);
        }
        Some(d) if d.value.is_empty() => {
            ok = false;
            ck.err(d.referenced, "empty `days` list", DAYS_HINT);
        }
        Some(d) => {
            for day in &d.value {
                match Days::parse_entry(&day.value) {
                    Some(set) => days = days.union(set),
                    None => {
                        ok = false;
                        ck.err(
                            day.referenced,
                            format!("unknown day `{}`", day.value),
                            "days are mon, tue, wed, thu, fri, sat, sun; a range is written mon-fri",
                        );
                    }
                }
            }
        }
    }

    let hours = match &doc.hours {
        None => {
            ck.err(
                at,
                "schedule entry without `hours`",
                "add e.g. `hours: 18:00-23:00`, or 00:00-24:00 for the whole day",
            );
            None
        }
        Some(h) => match Hours::parse(&h.value) {
            Ok(hours) => Some(hours),
            Err(HoursError::Syntax) => {
                ck.err(
                    h.referenced,
                    format!("hours `{}` are not a time window", h.value),
                    "write HH:MM-HH:MM, e.g. 18:00-23:00",
                );
                None
            }
            Err(HoursError::BadTime(t)) => {
                ck.err(
                    h.referenced,
                    format!("no such time `{t}` in hours `{}`", h.value),
                    "times run from 00:00 to 24:00 with minutes 00-59; 24:00 can only end a window",
                );
                None
            }
            Err(HoursError::Empty) => {
                ck.err(
                    h.referenced,
                    format!("hours `{}` start and end at the same time", h.value),
                    "the window would be empty; for the whole day write 00:00-24:00",
                );
                None
            }
        },
    };

    let mut rules = Vec::new();
    match &doc.classes {
        Some(c) if !c.value.0.is_empty() => {
            for (key, rule) in &c.value.0 {
                match check_rule(ck, ctx, key, &rule.value, base) {
                    Some(r) => rules.push(r),
                    None => ok = false,
                }
            }
        }
        Some(c) => {
            ok = false;
            ck.err(
                c.referenced,
                "schedule entry changes no classes",
                SCHEDULE_CLASSES_HINT,
            );
        }
        None => {
            ok = false;
            ck.err(
                at,
                "schedule entry changes no classes",
                SCHEDULE_CLASSES_HINT,
            );
        }
    }

    let hours = hours?;
    ok.then_some(ScheduleEntry {
        days,
        hours,
        classes: rules,
    })
}

const SCHEDULE_CLASSES_HINT: &str = "add e.g. `classes: { p2p: { down: 2mbit } }`";
