//! Flow records from the daemon's flow table snapshot, newest first, a page at a time.

use std::net::IpAddr;

use peerwarden_common::{
    Class, Confidence, FlowKey, FlowValue, Label,
    flow::{PROTO_TCP, PROTO_UDP},
};
use serde::Serialize;

use crate::{ktime, state::State};

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

/// A flow ordered as the listing is (newest first): the heap's greatest is the one a
/// page would drop first.
struct Ranked((FlowKey, FlowValue));

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        order(&self.0, &other.0).is_eq()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        order(&self.0, &other.0)
    }
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
    // The best `limit + 1` (one more tells whether a page follows) kept in a heap as the
    // table is walked: memory per page, not per table (a million flows would be 120 MB).
    let mut best = std::collections::BinaryHeap::with_capacity(filter.limit + 1);
    let hits = state
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
        .map(|e| Ranked((*e.key(), *e.value())));
    for hit in hits {
        if best.len() <= filter.limit {
            best.push(hit);
        } else if best.peek().is_some_and(|worst| hit < *worst) {
            best.pop();
            best.push(hit);
        }
    }
    let mut hits: Vec<(FlowKey, FlowValue)> =
        best.into_sorted_vec().into_iter().map(|r| r.0).collect();
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
