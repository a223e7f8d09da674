//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Names follow Prometheus conventions: counters end in `_total`, byte counts say `_bytes`,
//! labels are `class`, `label` and `direction` (`up` is from the subscriber).

use std::{fmt::Write as _, sync::Arc};

use axum::{extract::State as Ext, http::header, response::IntoResponse};
use peerwarden_common::label::ALL_LABELS;

use crate::state::State;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn get(Ext(state): Ext<Arc<State>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

/// The exposition text.
pub fn render(state: &State) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let latest = state.samples(None).map(|(s, _)| s);
    for (name, help, pick) in [
        ("peerwarden_traffic_bytes_total", "Bytes on the wire (whole frames) by label and direction.", 0),
        ("peerwarden_traffic_packets_total", "Packets by label and direction.", 1),
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
    let _ = writeln!(out, "# HELP {name} Flows that received a label, by label.\n# TYPE {name} counter");
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
        "# HELP {name} The probe's own statistics: packets seen, passed untouched (non_ip, non_tcp_udp, fragments), malformed, flow table events.\n# TYPE {name} counter"
    );
    for (kind, v) in state.stats() {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {v}");
    }
    let name = "peerwarden_flow_table_entries";
    let _ = writeln!(out, "# HELP {name} Entries in the kernel flow table at the last walk.\n# TYPE {name} gauge\n{name} {}", state.flows.len());
    let name = "peerwarden_flow_table_capacity";
    let _ = writeln!(out, "# HELP {name} Size of the kernel flow table.\n# TYPE {name} gauge\n{name} {}", state.flow_table_size());
    let name = "peerwarden_uptime_seconds";
    let up = state.started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let _ = writeln!(out, "# HELP {name} Seconds since the daemon started.\n# TYPE {name} gauge\n{name} {up:.3}");
    out
}
