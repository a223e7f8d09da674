//! Reports built from the daemon's state: the traffic mix and the flow records, in the
//! JSON shapes of DESIGN.md.

use std::{collections::BTreeMap, net::IpAddr};

use peerwarden_common::{
    Class, Confidence, FlowKey, FlowValue, Label,
    flow::{PROTO_TCP, PROTO_UDP},
    label::{ALL_CLASSES, ALL_LABELS},
};
use serde::Serialize;

use crate::{ktime, probe::LabelCounters, state::State};

/// Bytes, packets (each `[up, down]`) and flows of one class or label.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Usage {
    /// Bytes on the wire, `[up, down]`.
    pub bytes: [u64; 2],
    /// Packets, `[up, down]`.
    pub packets: [u64; 2],
    /// Flows: since start, those that received the label; over a window, those active in it.
    pub flows: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        for i in 0..2 {
            self.bytes[i] += o.bytes[i];
            self.packets[i] += o.packets[i];
        }
        self.flows += o.flows;
    }
}

/// The traffic mix.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Mix {
    /// The window the figures cover, seconds; `null` for "since start".
    pub window_seconds: Option<u64>,
    /// When the daemon started.
    pub since: String,
    /// Per class.
    pub classes: BTreeMap<&'static str, Usage>,
    /// Per label (labels with traffic only).
    pub labels: BTreeMap<&'static str, Usage>,
    /// The probe's own statistics since start.
    pub probe: BTreeMap<&'static str, u64>,
    /// Answers from the history store: the range covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<Span>,
}

/// A range served from the history store, rounded out to whole minutes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Span {
    /// Start (RFC 3339), included.
    pub from: String,
    /// End (RFC 3339), excluded.
    pub to: String,
    /// `store`: per-minute rows (per-hour rows past the minute retention, each counted
    /// in full if its hour starts in the range).
    pub source: &'static str,
}

/// A counter difference; a reading below its base (a flow's bytes moved to its label
/// within the window) reads as zero rather than wrapping.
fn delta(now: u64, base: u64) -> u64 {
    let d = now.wrapping_sub(base) as i64;
    d.max(0) as u64
}

/// Builds the mix since start, or over the last `window_secs` seconds.
pub fn mix(state: &State, window_secs: Option<u64>) -> Mix {
    let mut labels: BTreeMap<&'static str, Usage> = BTreeMap::new();
    let mut covered = window_secs;
    if let Some((latest, base)) = state.readings(window_secs) {
        let zero: LabelCounters = vec![Default::default(); latest.counters.len()];
        let base_counters = base.as_ref().map_or(&zero, |b| &b.counters);
        covered = base
            .as_ref()
            .map(|b| latest.at.duration_since(b.at).as_secs());
        for label in ALL_LABELS {
            let id = label.id() as usize;
            let mut u = Usage::default();
            for d in 0..2 {
                let (now, then) = (latest.counters[id][d], base_counters[id][d]);
                u.bytes[d] = delta(now.bytes, then.bytes);
                u.packets[d] = delta(now.packets, then.packets);
                u.flows += delta(now.flows, then.flows);
            }
            labels.insert(label.name(), u);
        }
        // Since start, `flows` of `unknown` counts flows created; those labelled since are
        // counted under their label, so the undecided remainder is the difference.
        let labelled: u64 = ALL_LABELS[1..].iter().map(|l| labels[l.name()].flows).sum();
        if let Some(u) = labels.get_mut(Label::Unknown.name()) {
            u.flows = u.flows.saturating_sub(labelled);
        }
    }
    if let Some(w) = window_secs {
        // Over a window, count the flows active in it, from the flow table.
        let horizon = ktime::monotonic_ns().saturating_sub(w.saturating_mul(1_000_000_000));
        for u in labels.values_mut() {
            u.flows = 0;
        }
        for f in state.flows.iter() {
            if f.value().last_seen_ns >= horizon {
                let name = Label::from_id(f.value().label).name();
                labels.entry(name).or_default().flows += 1;
            }
        }
    }
    let mut classes: BTreeMap<&'static str, Usage> = ALL_CLASSES
        .iter()
        .map(|c| (c.name(), Usage::default()))
        .collect();
    for label in ALL_LABELS {
        if let (Some(u), Some(c)) = (
            labels.get(label.name()),
            classes.get_mut(label.class().name()),
        ) {
            c.add(u);
        }
    }
    labels.retain(|_, u| *u != Usage::default());
    Mix {
        window_seconds: window_secs.map(|w| covered.unwrap_or(0).min(w)),
        since: ktime::rfc3339(state.started),
        classes,
        labels,
        probe: state.stats(),
        range: None,
    }
}

/// A flow record as DESIGN.md prints it; `src` is always the subscriber side.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowRecord {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// Subscriber-side address.
    #[schema(value_type = String)]
    pub src: IpAddr,
    /// Subscriber-side port.
    pub sport: u16,
    /// Internet-side address.
    #[schema(value_type = String)]
    pub dst: IpAddr,
    /// Internet-side port.
    pub dport: u16,
    /// Label (DESIGN.md's label set; `video.<service>` for video services).
    pub label: String,
    /// Class of the label.
    pub class: &'static str,
    /// How the label was decided.
    pub confidence: &'static str,
    /// Subscriber id from the policy.
    pub subscriber: Option<String>,
    /// Packets `[up, down]`.
    pub packets: [u64; 2],
    /// Bytes `[up, down]`.
    pub bytes: [u64; 2],
    /// First packet (RFC 3339).
    pub first_seen: String,
    /// Last packet (RFC 3339).
    pub last_seen: String,
}

impl FlowRecord {
    /// The record of one flow table entry.
    pub fn new(key: &FlowKey, value: &FlowValue) -> FlowRecord {
        let label = Label::from_id(value.label);
        FlowRecord {
            proto: match key.proto {
                PROTO_TCP => "tcp",
                PROTO_UDP => "udp",
                _ => "other",
            },
            src: key.sub_ip(),
            sport: key.sub_port,
            dst: key.remote_ip(),
            dport: key.remote_port,
            label: label.name().to_string(),
            class: label.class().name(),
            confidence: Confidence::from_id(value.confidence).name(),
            subscriber: None,
            packets: value.packets,
            bytes: value.bytes,
            first_seen: ktime::rfc3339(ktime::wall_time(value.first_seen_ns)),
            last_seen: ktime::rfc3339(ktime::wall_time(value.last_seen_ns)),
        }
    }
}

/// Which flows to list.
#[derive(Debug, Default)]
pub struct FlowFilter {
    pub label: Option<Label>,
    pub class: Option<Class>,
    /// Only flows of this subscriber (by the active policy's prefixes).
    pub subscriber: Option<String>,
    /// Only flows with this address on either side.
    pub address: Option<IpAddr>,
    /// Only flows after this one in the listing's order: `(last_seen_ns, key)` of the
    /// last flow of the previous page.
    pub after: Option<(u64, FlowKey)>,
    pub limit: usize,
}

/// The listing's order, newest first; ties (same last packet time) by key.
fn order(a: &(FlowKey, FlowValue), b: &(FlowKey, FlowValue)) -> std::cmp::Ordering {
    b.1.last_seen_ns
        .cmp(&a.1.last_seen_ns)
        .then_with(|| key_order(&a.0).cmp(&key_order(&b.0)))
}

fn key_order(k: &FlowKey) -> (u8, u8, [u8; 16], u16, [u8; 16], u16) {
    (
        k.family,
        k.proto,
        k.sub_addr,
        k.sub_port,
        k.remote_addr,
        k.remote_port,
    )
}

/// Flows matching `filter`, newest (most recently seen) first, and the position after
/// the last one when more follow.
pub fn flows(state: &State, filter: &FlowFilter) -> (Vec<FlowRecord>, Option<(u64, FlowKey)>) {
    let policy = state.policy.active();
    let mut hits: Vec<(FlowKey, FlowValue)> = state
        .flows
        .iter()
        .filter(|e| {
            let (k, v) = (e.key(), e.value());
            let label = Label::from_id(v.label);
            let src = k.sub_ip();
            filter.label.is_none_or(|l| l == label)
                && filter.class.is_none_or(|c| c == label.class())
                && filter
                    .address
                    .is_none_or(|a| a == src || a == k.remote_ip())
                && filter.after.is_none_or(|(ns, key)| {
                    v.last_seen_ns < ns || (v.last_seen_ns == ns && key_order(k) > key_order(&key))
                })
                && filter.subscriber.as_deref().is_none_or(|id| {
                    policy
                        .as_ref()
                        .and_then(|p| p.policy.subscriber_for(src))
                        .is_some_and(|s| s.id == id)
                })
        })
        .map(|e| (*e.key(), *e.value()))
        .collect();
    // Only the first `limit + 1` need sorting (one more tells whether a page follows).
    if hits.len() > filter.limit + 1 {
        hits.select_nth_unstable_by(filter.limit, order);
        hits.truncate(filter.limit + 1);
    }
    hits.sort_by(order);
    let more = hits.len() > filter.limit;
    hits.truncate(filter.limit);
    let next = if more {
        hits.last().map(|(k, v)| (v.last_seen_ns, *k))
    } else {
        None
    };
    let records = hits
        .iter()
        .map(|(k, v)| {
            let mut r = FlowRecord::new(k, v);
            r.subscriber = policy
                .as_ref()
                .and_then(|p| p.policy.subscriber_for(r.src))
                .map(|s| s.id.clone());
            if Label::from_id(v.label) == Label::VideoService
                && let Some(service) = state.deep.services.get(k)
            {
                r.label = format!("video.{}", service.value());
            }
            r
        })
        .collect();
    (records, next)
}
