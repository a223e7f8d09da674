//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Names follow Prometheus conventions: counters end in `_total`, byte counts say `_bytes`,
//! labels are `class`, `label` and `direction` (`up` is from the subscriber).

use std::{
    fmt::Write as _,
    sync::{Arc, atomic::Ordering},
};

use axum::{
    extract::State as Ext,
    http::{HeaderMap, header},
    response::IntoResponse,
};
use peerwarden_common::{label::ALL_LABELS, policy::SubCounter};

use crate::{history::CLASS_NAMES, readings::bytes, state::State};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition. With `api.read_token` set, the per-subscriber series (their
/// ids) are only in the answer to a request carrying that token or the write token.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn get(Ext(state): Ext<Arc<State>>, headers: HeaderMap) -> impl IntoResponse {
    let series = match super::auth::require_reader(&state, &headers) {
        Ok(()) => state.subscriber_series_limit(),
        Err(_) => 0,
    };
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&state, series),
    )
}

/// The exposition text with per-subscriber series for at most `series` subscribers.
pub fn render(state: &State, series: usize) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let latest = state.readings(None).map(|(s, _)| s);
    for (name, help, pick) in [
        (
            "peerwarden_traffic_bytes_total",
            "Bytes on the wire (whole frames) by label and direction.",
            0,
        ),
        (
            "peerwarden_traffic_packets_total",
            "Packets by label and direction.",
            1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        if let Some(s) = &latest {
            for label in ALL_LABELS {
                for (d, dir) in ["up", "down"].iter().enumerate() {
                    let c = s.counters[label.id() as usize][d];
                    let v = if pick == 0 { c.bytes } else { c.packets };
                    let _ = writeln!(
                        out,
                        "{name}{{class=\"{}\",label=\"{}\",direction=\"{dir}\"}} {v}",
                        label.class().name(),
                        label.name()
                    );
                }
            }
        }
    }
    let name = "peerwarden_flows_labelled_total";
    let _ = writeln!(
        out,
        "# HELP {name} Flows that received a label, by label.\n# TYPE {name} counter"
    );
    if let Some(s) = &latest {
        for label in &ALL_LABELS[1..] {
            let c = &s.counters[label.id() as usize];
            let _ = writeln!(
                out,
                "{name}{{class=\"{}\",label=\"{}\"}} {}",
                label.class().name(),
                label.name(),
                c[0].flows.wrapping_add(c[1].flows)
            );
        }
    }
    let name = "peerwarden_probe_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} The probe's own statistics: packets seen, not IP (non_ip, passed untouched), other IP protocols (non_tcp_udp) and later fragments (fragments), charged to their subscriber, malformed, flow table events.\n# TYPE {name} counter"
    );
    for (kind, v) in state.stats() {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {v}");
    }
    let name = "peerwarden_flow_table_entries";
    let _ = writeln!(
        out,
        "# HELP {name} Entries in the kernel flow table at the last walk.\n# TYPE {name} gauge\n{name} {}",
        state.flows.len()
    );
    let name = "peerwarden_flow_table_capacity";
    let _ = writeln!(
        out,
        "# HELP {name} Size of the kernel flow table.\n# TYPE {name} gauge\n{name} {}",
        state.flow_table_size()
    );
    let name = "peerwarden_uptime_seconds";
    let up = state
        .started
        .elapsed()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(
        out,
        "# HELP {name} Seconds since the daemon started.\n# TYPE {name} gauge\n{name} {up:.3}"
    );
    render_policy_and_subscribers(state, series, &mut out);
    crate::ipfix::render_metrics(&mut out);
    super::swarms::render_metrics(state, &mut out);
    render_threads(state, &mut out);
    out
}

/// `peerwarden_thread_up{thread}`: 1 per healthy supervised thread, 0 for one that panicked
/// or stalled (the `PeerwardenThreadFailed` alert in contrib/prometheus/).
fn render_threads(state: &State, out: &mut String) {
    let name = "peerwarden_thread_up";
    let _ = writeln!(
        out,
        "# HELP {name} Whether a supervised daemon thread is healthy (1) or panicked or stalled (0; the daemon then stops and exits with an error).\n# TYPE {name} gauge"
    );
    for h in state.threads.health() {
        let _ = writeln!(
            out,
            "{name}{{thread=\"{}\"}} {}",
            escape(&h.name),
            u8::from(h.failure.is_none())
        );
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Policy drops and marks, reloads, ring-buffer drops, the history store, and the
/// per-subscriber series of the top subscribers (at most `subscriber_series_limit`).
fn render_policy_and_subscribers(state: &State, limit: usize, out: &mut String) {
    const DIRS: [&str; 2] = ["up", "down"];
    type Pick = fn(&SubCounter) -> u64;
    let policy_counters: [(&str, &str, Pick); 3] = [
        (
            "peerwarden_policy_dropped_packets_total",
            "Packets dropped by the policy (police or block), by class and direction, all subscribers.",
            |c| c.dropped_packets,
        ),
        (
            "peerwarden_policy_dropped_bytes_total",
            "Bytes dropped by the policy, by class and direction, all subscribers.",
            |c| c.dropped_bytes,
        ),
        (
            "peerwarden_policy_marked_packets_total",
            "Packets whose DSCP the policy rewrote, by class and direction, all subscribers.",
            |c| c.marked_packets,
        ),
    ];
    let totals = state.subscribers.totals();
    for (name, help, pick) in policy_counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (ci, class) in CLASS_NAMES.iter().enumerate() {
            for (d, dir) in DIRS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{class=\"{class}\",direction=\"{dir}\"}} {}",
                    pick(&totals[ci][d])
                );
            }
        }
    }
    let stats = state.stats();
    for (name, help, v) in [
        (
            "peerwarden_policy_reloads_total",
            "Policies accepted (file, SIGHUP or API).",
            state.policy.reloads.load(Ordering::Relaxed),
        ),
        (
            "peerwarden_policy_reload_failures_total",
            "Policies refused (invalid, or the data path could not take them).",
            state.policy.failures.load(Ordering::Relaxed),
        ),
        (
            "peerwarden_deep_samples_dropped_total",
            "Payload samples the kernel could not hand to the deep classifier (ring buffer full).",
            stats.get("ring_drops").copied().unwrap_or(0),
        ),
        (
            "peerwarden_deep_samples_over_budget_total",
            "Payload samples the kernel held back because their subscriber had used its sample budget (one subscriber's flood cannot fill the ring); the flow is sampled on a later packet.",
            stats.get("samples_over_budget").copied().unwrap_or(0),
        ),
        (
            "peerwarden_labelled_refused_total",
            "Final labels of flows seen both ways not remembered for eviction because their subscriber had used its budget of remembered flows (flows seen one way only are never offered).",
            stats.get("labelled_refused").copied().unwrap_or(0),
        ),
        (
            "peerwarden_endpoint_cache_learned_total",
            "Endpoints the deep classifier's endpoint cache learned from flows confirmed both ways.",
            stats.get("endpoint_cache_learned").copied().unwrap_or(0),
        ),
        (
            "peerwarden_endpoint_cache_refused_total",
            "Endpoint learnings refused because their subscriber had used its learning budget for the minute.",
            stats.get("endpoint_cache_refused").copied().unwrap_or(0),
        ),
        (
            "peerwarden_dns_answers_unsolicited_total",
            "DNS answers the deep classifier ignored because they answered no query seen from their subscriber (forged, or the query was not seen); they label nothing.",
            stats.get("dns_unsolicited").copied().unwrap_or(0),
        ),
        (
            "peerwarden_history_flushes_total",
            "Writes of the history store.",
            state
                .store()
                .map_or(0, |h| h.flushes.load(Ordering::Relaxed)),
        ),
        (
            "peerwarden_history_flush_failures_total",
            "Writes of the history store that failed (retried with the next).",
            state
                .store()
                .map_or(0, |h| h.flush_failures.load(Ordering::Relaxed)),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }

    let known = state.subscribers.len();
    // The top `limit` by bytes; the others are not even copied.
    let subs = state.subscribers.top(limit, bytes);
    let name = "peerwarden_subscribers_known";
    let _ = writeln!(
        out,
        "# HELP {name} Subscribers with counters since the daemon started.\n# TYPE {name} gauge\n{name} {known}"
    );
    let name = "peerwarden_subscriber_series_subscribers";
    let _ = writeln!(
        out,
        "# HELP {name} Subscribers with per-subscriber series here (the top ones by bytes, at most metrics.subscriber_series_limit).\n# TYPE {name} gauge\n{name} {}",
        subs.len()
    );
    let per_subscriber: [(&str, &str, Pick); 5] = [
        (
            "peerwarden_subscriber_bytes_total",
            "Bytes of a subscriber by class and direction, since the daemon started.",
            |c| c.bytes,
        ),
        (
            "peerwarden_subscriber_packets_total",
            "Packets of a subscriber by class and direction.",
            |c| c.packets,
        ),
        (
            "peerwarden_subscriber_dropped_packets_total",
            "Packets of a subscriber dropped by the policy.",
            |c| c.dropped_packets,
        ),
        (
            "peerwarden_subscriber_dropped_bytes_total",
            "Bytes of a subscriber dropped by the policy.",
            |c| c.dropped_bytes,
        ),
        (
            "peerwarden_subscriber_marked_packets_total",
            "Packets of a subscriber whose DSCP the policy rewrote.",
            |c| c.marked_packets,
        ),
    ];
    for (name, help, pick) in per_subscriber {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (id, c) in &subs {
            let id = escape(id);
            for (ci, class) in CLASS_NAMES.iter().enumerate() {
                for (d, dir) in DIRS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}{{subscriber=\"{id}\",class=\"{class}\",direction=\"{dir}\"}} {}",
                        pick(&c[ci][d])
                    );
                }
            }
        }
    }
}
