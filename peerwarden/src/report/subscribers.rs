//! The subscriber views: who uses the most (of a class, or of a label), and one
//! subscriber's plan, current rates, usage over a window and whether the policy is
//! limiting it right now.
//!
//! The kernel counts per subscriber, label and direction (and the policy's drops and marks
//! per class); the history store keeps those as per-minute rows per label and per class.
//! Per-class figures come from the counters (since the daemon started) or from the store
//! (over a window); one subscriber's per-label usage comes from the store. The ranking
//! by label over a window comes from the store's per-subscriber label rows; since start (or
//! without a store) it sums the flows of the label in the flow table, so it covers flows
//! still in the table, each with all its bytes.

use std::collections::BTreeMap;

use peerwarden_common::{Class, Label, label::ALL_CLASSES, policy::SubCounter};
use peerwarden_history::{LabelTotals, Row};
use peerwarden_policies::{Policy, Target};
use serde::Serialize;
use utoipa::ToSchema;

use super::{By, Range, Span};
use crate::{
    history::CLASS_NAMES,
    ktime,
    readings::{ClassCounters, RATE_WINDOW, Recent},
    state::State,
};

/// Bytes of one class, `[up, down]`.
#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub struct ClassBytes {
    /// Bytes `[up, down]`.
    pub bytes: [u64; 2],
}

/// One subscriber in the ranking.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopEntry {
    /// Subscriber id.
    pub id: String,
    /// Its plan in the active policy (`null` if it has left the policy).
    pub plan: Option<String>,
    /// Bytes of what is ranked (the class or label asked for, else all), `[up, down]`.
    pub bytes: [u64; 2],
    /// Packets of the same, `[up, down]`.
    pub packets: [u64; 2],
    /// Bytes per class (`by=class`), or of the label's class (`by=label`).
    pub classes: BTreeMap<&'static str, ClassBytes>,
}

/// The top subscribers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Top {
    /// `class` or `label`.
    pub by: By,
    /// The class or label ranked; `null`: all traffic.
    pub name: Option<String>,
    /// The window, seconds; `null`: since the daemon started (or the whole flow table).
    pub window_seconds: Option<u64>,
    /// Where the figures come from: `counters` (the kernel's per-subscriber counters
    /// since the daemon started), `store` (the history store) or `flows` (the flow table).
    pub basis: Basis,
    /// Most bytes first; subscribers without any are left out.
    pub subscribers: Vec<TopEntry>,
    /// With `basis: store`: the range covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<Span>,
}

fn plan_of(policy: Option<&Policy>, id: &str) -> Option<String> {
    let p = policy?;
    Some(p.plan_of(p.subscriber(id)?).name.clone())
}

/// Where a view's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The kernel's per-subscriber counters since the daemon started.
    Counters,
    /// The history store.
    Store,
    /// The flow table.
    Flows,
}

/// The `limit` subscribers that [`ranked`] keeps of `rows` (most `key` first, ties by id,
/// none with a zero key), in no order: picked before their entries are built, which at
/// 100,000 subscribers costs more than the store's answer.
fn first<T>(mut rows: Vec<(String, T)>, limit: usize, key: impl Fn(&T) -> u64) -> Vec<(String, T)> {
    rows.retain(|(_, t)| key(t) != 0);
    if rows.len() > limit {
        let order = |a: &(String, T), b: &(String, T)| {
            key(&b.1).cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0))
        };
        if limit > 0 {
            rows.select_nth_unstable_by(limit - 1, order);
        }
        rows.truncate(limit);
    }
    rows
}

/// Most bytes first, ties by id; subscribers without any bytes left out; at most `limit`.
fn ranked(mut top: Top, limit: usize) -> Top {
    top.subscribers.retain(|e| e.bytes != [0, 0]);
    top.subscribers.sort_by(|a, b| {
        (b.bytes[0] + b.bytes[1])
            .cmp(&(a.bytes[0] + a.bytes[1]))
            .then_with(|| a.id.cmp(&b.id))
    });
    top.subscribers.truncate(limit);
    top
}

/// The top `limit` subscribers by the kernel's counters since start, by bytes of `class`
/// (`None`: all traffic), as [`top_by_class`] takes them.
pub fn counters_top(
    state: &State,
    class: Option<Class>,
    limit: usize,
) -> Vec<(String, ClassCounters)> {
    let key = |c: &ClassCounters| match class {
        Some(k) => c[k as usize][0].bytes + c[k as usize][1].bytes,
        None => crate::readings::bytes(c),
    };
    state.subscribers.top(limit, key)
}

/// Adds a store row of a class to `c` (other rows are skipped; figures below zero
/// read as zero).
fn add_row(c: &mut ClassCounters, row: &Row) {
    let Some(ci) = CLASS_NAMES.iter().position(|n| *n == row.key.name) else {
        return;
    };
    let c = &mut c[ci][usize::from(row.key.dir.min(1))];
    let pos = |v: i64| v.max(0) as u64;
    c.bytes += pos(row.values.bytes);
    c.packets += pos(row.values.packets);
    c.dropped_packets += pos(row.values.dropped_packets);
    c.dropped_bytes += pos(row.values.dropped_bytes);
    c.marked_packets += pos(row.values.marked_packets);
}

/// The store's rows summed per subscriber by `add`, the rows `keep` refuses skipped; the
/// ids are moved out of the rows (the top list's answer at 100,000 subscribers spent a
/// third of its time copying and ordering them).
fn per_subscriber<T: Default>(
    rows: Vec<Row>,
    keep: impl Fn(&Row) -> bool,
    add: impl Fn(&mut T, &Row),
) -> Vec<(String, T)> {
    // The store answers in key order: each subscriber's rows together, summed in one pass.
    if rows.is_sorted_by(|a, b| a.key.subscriber <= b.key.subscriber) {
        let mut out: Vec<(String, T)> = Vec::new();
        for mut row in rows.into_iter().filter(|r| keep(r)) {
            match out.last_mut() {
                Some((id, t)) if *id == row.key.subscriber => add(t, &row),
                _ => {
                    let mut t = T::default();
                    add(&mut t, &row);
                    out.push((std::mem::take(&mut row.key.subscriber), t));
                }
            }
        }
        return out;
    }
    let mut per: BTreeMap<String, T> = BTreeMap::new();
    for mut row in rows.into_iter().filter(|r| keep(r)) {
        let id = std::mem::take(&mut row.key.subscriber);
        add(per.entry(id).or_default(), &row);
    }
    per.into_iter().collect()
}

/// Every subscriber's per-class counters from the store's per-class rows.
pub fn class_totals(rows: Vec<Row>) -> Vec<(String, ClassCounters)> {
    per_subscriber(rows, |_| true, add_row)
}

/// The `limit` subscribers with the most bytes of `class` (`None`: all traffic) in the
/// store's per-class rows, with their counters, as [`top_by_class`] ranks them: the
/// ranking runs on each subscriber's bytes alone and only the first `limit` get their
/// counters (at 100,000 subscribers the counters of all took 34 MB to build and drop).
pub fn class_top(
    rows: Vec<Row>,
    class: Option<Class>,
    limit: usize,
) -> Vec<(String, ClassCounters)> {
    if !rows.is_sorted_by(|a, b| a.key.subscriber <= b.key.subscriber) {
        return class_totals(rows);
    }
    let counts = |row: &Row| {
        CLASS_NAMES
            .iter()
            .position(|n| *n == row.key.name)
            .is_some_and(|ci| class.is_none_or(|k| k as usize == ci))
    };
    // Each subscriber's rows (a run of the sorted answer) and its bytes.
    let mut runs: Vec<(u64, usize, usize)> = Vec::new();
    let mut start = 0;
    for end in 1..=rows.len() {
        if end == rows.len() || rows[end].key.subscriber != rows[start].key.subscriber {
            let bytes = rows[start..end]
                .iter()
                .filter(|r| counts(r))
                .fold(0u64, |b, r| b.wrapping_add(r.values.bytes.max(0) as u64));
            if bytes != 0 {
                runs.push((bytes, start, end));
            }
            start = end;
        }
    }
    let id = |r: &(u64, usize, usize)| rows[r.1].key.subscriber.as_str();
    let order = |a: &(u64, usize, usize), b: &(u64, usize, usize)| {
        b.0.cmp(&a.0).then_with(|| id(a).cmp(id(b)))
    };
    if runs.len() > limit && limit > 0 {
        runs.select_nth_unstable_by(limit - 1, order);
    }
    runs.truncate(limit);
    runs.into_iter()
        .map(|(_, start, end)| {
            let mut c = ClassCounters::default();
            for row in &rows[start..end] {
                add_row(&mut c, row);
            }
            (rows[start].key.subscriber.clone(), c)
        })
        .collect()
}

/// The ranking by bytes of `class` (`None`: all traffic) of per-subscriber class
/// counters: the kernel's since start ([`counters_top`]), or the store's over `range`
/// ([`class_totals`]).
pub fn top_by_class(
    state: &State,
    rows: Vec<(String, ClassCounters)>,
    class: Option<Class>,
    range: Option<Range>,
    limit: usize,
) -> Top {
    let policy = state.policy.active().map(|a| a.policy);
    let bytes = |c: &ClassCounters| -> u64 {
        let mut out = 0u64;
        for (ci, row) in c.iter().enumerate() {
            if class.is_none_or(|k| k as usize == ci) {
                out = out.wrapping_add(row[0].bytes).wrapping_add(row[1].bytes);
            }
        }
        out
    };
    let subscribers = first(rows, limit, bytes)
        .into_iter()
        .map(|(id, c)| {
            let pick = |f: &dyn Fn(&SubCounter) -> u64| -> [u64; 2] {
                let mut out = [0; 2];
                for (ci, row) in c.iter().enumerate() {
                    if class.is_none_or(|k| k as usize == ci) {
                        for d in 0..2 {
                            out[d] += f(&row[d]);
                        }
                    }
                }
                out
            };
            TopEntry {
                plan: plan_of(policy.as_deref(), &id),
                bytes: pick(&|s| s.bytes),
                packets: pick(&|s| s.packets),
                classes: CLASS_NAMES
                    .iter()
                    .zip(c.iter())
                    .map(|(n, row)| {
                        (
                            *n,
                            ClassBytes {
                                bytes: [row[0].bytes, row[1].bytes],
                            },
                        )
                    })
                    .collect(),
                id,
            }
        })
        .collect();
    let top = Top {
        by: By::Class,
        name: class.map(|c| c.name().to_string()),
        window_seconds: range.map(|r| r.seconds()),
        basis: if range.is_some() {
            Basis::Store
        } else {
            Basis::Counters
        },
        subscribers,
        range: range.map(|r| r.span()),
    };
    ranked(top, limit)
}

/// The ranking by bytes of `label`: over `stored`'s range from the store's per-subscriber
/// label rows (every byte of the range, flows gone from the table included); otherwise
/// from the flows of the label in the flow table (seen in the last `window` seconds, or
/// all of them), each with all its bytes.
pub fn top_by_label(
    state: &State,
    label: Label,
    stored: Option<(Vec<Row>, Range)>,
    window: Option<u64>,
    limit: usize,
) -> Top {
    let policy = state.policy.active().map(|a| a.policy);
    let mut per: BTreeMap<String, ([u64; 2], [u64; 2])> = BTreeMap::new();
    let range = stored.as_ref().map(|(_, r)| *r);
    let mut summed = Vec::new();
    if let Some((rows, _)) = stored {
        let add = |e: &mut ([u64; 2], [u64; 2]), row: &Row| {
            let d = usize::from(row.key.dir.min(1));
            e.0[d] += row.values.bytes.max(0) as u64;
            e.1[d] += row.values.packets.max(0) as u64;
        };
        summed = per_subscriber(rows, |row| row.key.name == label.name(), add);
    } else if let Some(policy) = policy.as_ref() {
        let horizon =
            window.map(|w| ktime::monotonic_ns().saturating_sub(w.saturating_mul(1_000_000_000)));
        for f in state.flows.iter() {
            let (k, v) = (f.key(), f.value());
            if Label::from_id(v.label) != label || horizon.is_some_and(|h| v.last_seen_ns < h) {
                continue;
            }
            let Some(s) = policy.subscriber_for(k.sub_ip()) else {
                continue;
            };
            let e = per.entry(s.id.clone()).or_default();
            for d in 0..2 {
                e.0[d] += v.bytes[d];
                e.1[d] += v.packets[d];
            }
        }
    }
    let class = label.class().name();
    summed.extend(per);
    let subscribers = first(summed, limit, |(b, _)| b[0].wrapping_add(b[1]))
        .into_iter()
        .map(|(id, (bytes, packets))| TopEntry {
            plan: plan_of(policy.as_deref(), &id),
            bytes,
            packets,
            classes: [(class, ClassBytes { bytes })].into_iter().collect(),
            id,
        })
        .collect();
    let top = Top {
        by: By::Label,
        name: Some(label.name().to_string()),
        window_seconds: range.map(|r| r.seconds()).or(window),
        basis: if range.is_some() {
            Basis::Store
        } else {
            Basis::Flows
        },
        subscribers,
        range: range.map(|r| r.span()),
    };
    ranked(top, limit)
}

/// A rule of the plan in force now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    /// The class, user class or label it applies to.
    pub target: String,
    /// `police`, `shape`, `mark` or `block`.
    pub action: &'static str,
    /// Rate limit in bits per second, `[up, down]` (`null`: none that way).
    pub rate_bits_per_second: [Option<u64>; 2],
    /// DSCP written (name or number).
    pub dscp: Option<String>,
}

/// The subscriber's plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Plan name.
    pub name: String,
    /// The plan's total rate, bits per second `[up, down]` (policed).
    pub rate_bits_per_second: [u64; 2],
    /// Class and label rules in force now (schedules applied).
    pub rules: Vec<RuleView>,
}

/// Rates of one class over the last seconds.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RateView {
    /// Bits per second `[up, down]`.
    pub bits_per_second: [u64; 2],
    /// Packets per second `[up, down]`.
    pub packets_per_second: [u64; 2],
}

/// Current rates per class.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rates {
    /// The span measured, seconds (up to 10; shorter right after a start).
    pub seconds: f64,
    /// Per class.
    pub classes: BTreeMap<&'static str, RateView>,
}

/// One class's counters `[up, down]`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ClassUsage {
    /// Bytes.
    pub bytes: [u64; 2],
    /// Packets.
    pub packets: [u64; 2],
    /// Packets dropped by the policy.
    pub dropped_packets: [u64; 2],
    /// Bytes dropped by the policy.
    pub dropped_bytes: [u64; 2],
    /// Packets whose DSCP the policy rewrote.
    pub marked_packets: [u64; 2],
}

/// One label's counters `[up, down]`.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct LabelUsage {
    /// Bytes.
    pub bytes: [u64; 2],
    /// Packets.
    pub packets: [u64; 2],
}

/// Usage per class and per label over a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The window, seconds; `null`: since the daemon started.
    pub window_seconds: Option<u64>,
    /// `store` or `counters` (since the daemon started).
    pub basis: Basis,
    /// With `basis: store`: the range covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<Span>,
    /// Per class.
    pub classes: BTreeMap<&'static str, ClassUsage>,
    /// Per label, labels with traffic only (`basis: store`; empty without a store). The
    /// bytes of a flow labelled after its first packets are all under its label.
    pub labels: BTreeMap<&'static str, LabelUsage>,
}

/// A class and direction the policy acted on in the last seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    /// The class.
    pub class: &'static str,
    /// `up` or `down`.
    pub direction: &'static str,
    /// Packets dropped in the span.
    pub dropped_packets: u64,
    /// Bytes dropped in the span.
    pub dropped_bytes: u64,
    /// Packets marked in the span.
    pub marked_packets: u64,
    /// The rules in force for the class that direction (a label rule covers part of it).
    pub rules: Vec<RuleView>,
    /// The plan's total rate that direction, which also drops when exceeded.
    pub plan_rate_bits_per_second: Option<u64>,
}

/// Whether the policy is limiting the subscriber now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Limiting {
    /// Packets were dropped in the span.
    pub dropping: bool,
    /// Packets were marked in the span.
    pub marking: bool,
    /// The span, seconds (up to 10).
    pub seconds: f64,
    /// Each class and direction with drops or marks in the span.
    pub classes: Vec<LimitView>,
}

/// One subscriber.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberView {
    /// Subscriber id.
    pub id: String,
    /// In the active policy (otherwise: seen earlier in this run).
    pub in_policy: bool,
    /// Address prefixes.
    pub prefixes: Vec<String>,
    /// The plan, with the rules in force now.
    pub plan: Option<PlanView>,
    /// Rates over the last 10 seconds.
    pub rates: Rates,
    /// Usage over the window.
    pub usage: UsageView,
    /// Drops and marks over the last 10 seconds, with the rules behind them.
    pub limiting: Limiting,
}

fn covers(policy: &Policy, target: &Target, class: Class) -> bool {
    match target {
        Target::Class(c) => *c == class,
        Target::Label(l) => l.class() == class,
        Target::User(n) => policy
            .class(n)
            .is_some_and(|u| u.labels.iter().any(|l| l.class() == class)),
    }
}

fn rule_view(r: &peerwarden_policies::ClassRule) -> RuleView {
    RuleView {
        target: r.target.name().to_string(),
        action: r.action.name(),
        rate_bits_per_second: [
            r.up.map(|x| x.bits_per_sec()),
            r.down.map(|x| x.bits_per_sec()),
        ],
        dscp: r.dscp.map(|d| {
            d.name()
                .map(str::to_string)
                .unwrap_or_else(|| d.value().to_string())
        }),
    }
}

/// Whether `id` is a subscriber of the active policy or one seen since start.
pub fn known(state: &State, id: &str) -> bool {
    state
        .policy
        .active()
        .is_some_and(|a| a.policy.subscriber(id).is_some())
        || state.subscribers.total(id).is_some()
}

/// One subscriber's usage from the store over a range: its per-class rows and its
/// per-label totals.
pub struct StoredUsage {
    /// Its per-class rows (`History::sum` of `Which::Subscriber`).
    pub rows: Vec<Row>,
    /// Its per-label totals.
    pub per_label: BTreeMap<Label, LabelTotals>,
    /// The range they cover.
    pub range: Range,
}

/// One subscriber: plan, current rates, usage (from the store over its range, else the
/// counters since start) and whether it is being limited. `Err`: the policy's clock
/// could not say the local time.
pub fn one(
    state: &State,
    id: String,
    stored: Option<StoredUsage>,
) -> Result<SubscriberView, String> {
    let active = state.policy.active();
    let policy = active.as_ref().map(|a| a.policy.clone());
    let sub = policy.as_ref().and_then(|p| p.subscriber(&id).cloned());
    let rules_now: Vec<peerwarden_policies::ClassRule> = match (&policy, &sub) {
        (Some(policy), Some(s)) => match state.clock.local(policy.timezone()) {
            Ok((day, minute)) => policy.plan_of(s).rules_at(day, minute),
            Err(e) => return Err(format!("the policy clock: {e}")),
        },
        _ => Vec::new(),
    };
    let plan = match (&policy, &sub) {
        (Some(policy), Some(s)) => {
            let plan = policy.plan_of(s);
            Some(PlanView {
                name: plan.name.clone(),
                rate_bits_per_second: [plan.rate.up.bits_per_sec(), plan.rate.down.bits_per_sec()],
                rules: rules_now.iter().map(rule_view).collect(),
            })
        }
        _ => None,
    };
    let recent = state.subscribers.recent(&id).unwrap_or_default();
    let rates = rates(&recent);
    let usage = usage(state, &id, stored);
    let mut classes = Vec::new();
    for c in ALL_CLASSES {
        for (d, direction) in ["up", "down"].iter().enumerate() {
            let s = &recent.delta[c as usize][d];
            if s.dropped_packets == 0 && s.marked_packets == 0 {
                continue;
            }
            let rules = match &policy {
                Some(policy) => rules_now
                    .iter()
                    .filter(|r| covers(policy, &r.target, c))
                    .map(rule_view)
                    .map(|mut r| {
                        // Only this direction's rate.
                        r.rate_bits_per_second[1 - d] = None;
                        r
                    })
                    .collect(),
                None => Vec::new(),
            };
            classes.push(LimitView {
                class: c.name(),
                direction,
                dropped_packets: s.dropped_packets,
                dropped_bytes: s.dropped_bytes,
                marked_packets: s.marked_packets,
                rules,
                plan_rate_bits_per_second: plan.as_ref().map(|p| p.rate_bits_per_second[d]),
            });
        }
    }
    let limiting = Limiting {
        dropping: classes.iter().any(|l| l.dropped_packets > 0),
        marking: classes.iter().any(|l| l.marked_packets > 0),
        seconds: recent.seconds.min(RATE_WINDOW.as_secs_f64()),
        classes,
    };
    Ok(SubscriberView {
        in_policy: sub.is_some(),
        prefixes: sub
            .as_ref()
            .map(|s| s.prefixes.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default(),
        id,
        plan,
        rates,
        usage,
        limiting,
    })
}

/// Rates per class over the last seconds.
fn rates(recent: &Recent) -> Rates {
    let per_sec = |n: u64| {
        if recent.seconds > 0.0 {
            (n as f64 / recent.seconds).round() as u64
        } else {
            0
        }
    };
    Rates {
        seconds: recent.seconds,
        classes: ALL_CLASSES
            .iter()
            .map(|c| {
                let row = &recent.delta[*c as usize];
                let v = RateView {
                    bits_per_second: [per_sec(row[0].bytes * 8), per_sec(row[1].bytes * 8)],
                    packets_per_second: [per_sec(row[0].packets), per_sec(row[1].packets)],
                };
                (c.name(), v)
            })
            .collect(),
    }
}

/// Usage per class and label: from the store over its range, else the counters since start.
fn usage(state: &State, id: &str, stored: Option<StoredUsage>) -> UsageView {
    let mut labels = BTreeMap::new();
    let (counters, basis, range) = match stored {
        Some(s) => {
            for (label, t) in s.per_label {
                let u = LabelUsage {
                    bytes: t.bytes,
                    packets: t.packets,
                };
                labels.insert(label.name(), u);
            }
            let mut c = ClassCounters::default();
            for row in &s.rows {
                add_row(&mut c, row);
            }
            (c, Basis::Store, Some(s.range))
        }
        None => (
            state.subscribers.total(id).unwrap_or_default(),
            Basis::Counters,
            None,
        ),
    };
    UsageView {
        window_seconds: range.map(|r| r.seconds()),
        basis,
        range: range.map(|r| r.span()),
        classes: ALL_CLASSES
            .iter()
            .map(|c| {
                let row = &counters[*c as usize];
                let two = |f: fn(&SubCounter) -> u64| [f(&row[0]), f(&row[1])];
                let u = ClassUsage {
                    bytes: two(|s| s.bytes),
                    packets: two(|s| s.packets),
                    dropped_packets: two(|s| s.dropped_packets),
                    dropped_bytes: two(|s| s.dropped_bytes),
                    marked_packets: two(|s| s.marked_packets),
                };
                (c.name(), u)
            })
            .collect(),
        labels,
    }
}

#[cfg(test)]
mod tests {
    use peerwarden_common::Class;
    use peerwarden_history::{Key, Row, Values};

    use super::{class_top, class_totals, first};
    use crate::history::CLASS_NAMES;

    /// The store's per-class rows of 120 subscribers in key order: some with nothing,
    /// several classes and both directions each, one row with a name that is no class.
    fn class_rows() -> Vec<Row> {
        let mut rows = Vec::new();
        for i in 0..120u32 {
            for (ci, name) in CLASS_NAMES.iter().enumerate().chain([(9, &"nope")]) {
                for dir in 0..2u8 {
                    let bytes = i64::from((i * 7 + ci as u32 * 13 + u32::from(dir)) % 11) * 100;
                    if (i + ci as u32).is_multiple_of(3) {
                        continue;
                    }
                    rows.push(Row {
                        bucket: 0,
                        key: Key {
                            subscriber: format!("sub-{i:03}"),
                            name: name.to_string(),
                            dir,
                        },
                        values: Values {
                            bytes,
                            packets: bytes / 100,
                            ..Values::default()
                        },
                    });
                }
            }
        }
        rows.sort_by(|a, b| a.key.subscriber.cmp(&b.key.subscriber));
        rows
    }

    /// Ranking on the bytes first and building the counters of the first `limit` only
    /// gives the entries of the whole ranking, whatever the class and the limit, in key
    /// order or not.
    #[test]
    fn the_class_top_is_the_top_of_every_subscribers_counters() {
        let rows = class_rows();
        for class in [None, Some(Class::P2p), Some(Class::Web), Some(Class::Other)] {
            let key = |c: &crate::readings::ClassCounters| {
                c.iter()
                    .enumerate()
                    .filter(|(ci, _)| class.is_none_or(|k| k as usize == *ci))
                    .fold(0u64, |b, (_, r)| {
                        b.wrapping_add(r[0].bytes).wrapping_add(r[1].bytes)
                    })
            };
            let sorted = |mut v: Vec<(String, crate::readings::ClassCounters)>| {
                v.sort_by(|a, b| key(&b.1).cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
                v
            };
            for limit in [1, 2, 10, 79, 1000] {
                let whole = sorted(first(class_totals(rows.clone()), limit, key));
                assert!(!whole.is_empty());
                let top = sorted(class_top(rows.clone(), class, limit));
                assert_eq!(top, whole, "{class:?} limit {limit}");
                let mut shuffled = rows.clone();
                shuffled.reverse();
                let top = sorted(first(class_top(shuffled, class, limit), limit, key));
                assert_eq!(top, whole, "{class:?} limit {limit}, rows out of order");
            }
        }
    }

    /// Picking the first `limit` before building the entries keeps the ranking's answer:
    /// most first, ties by id, zeros left out, whatever the limit.
    #[test]
    fn the_first_picked_are_the_first_of_the_whole_ranking() {
        let rows: Vec<(String, u64)> = (0..300u64)
            .map(|i| (format!("sub-{:03}", (i * 7919) % 300), (i * 31) % 17 * 1000))
            .collect();
        let mut whole: Vec<(String, u64)> = rows.iter().filter(|r| r.1 != 0).cloned().collect();
        whole.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for limit in [0, 1, 2, 10, 17, 100, 281, 282, 1000] {
            let mut picked = first(rows.clone(), limit, |v| *v);
            picked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            assert_eq!(picked, whole[..limit.min(whole.len())], "limit {limit}");
        }
    }
}
