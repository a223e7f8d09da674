//! The traffic mix: bytes, packets and flows by class and by label, since start or over
//! a window (the per-second readings; before this daemon's first reading, the history
//! store's minutes), over a range (the history store), or one subscriber's (the store's
//! per-subscriber label rows).

use std::collections::BTreeMap;

use peerwarden_common::{Label, label::ALL_LABELS};
use peerwarden_history::{LabelTotals, Row};
use serde::Serialize;

use super::{
    By, Range, Span, Usage,
    merged::Merged,
    source::{Counts, classes},
};
use crate::{ktime, state::State};

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

/// The mix of `labels` (classes rolled up from them; labels without traffic left out).
fn fold(
    state: &State,
    mut labels: BTreeMap<&'static str, Usage>,
    window_seconds: Option<u64>,
    range: Option<Span>,
) -> Mix {
    let classes = classes(&labels);
    labels.retain(|_, u| *u != Usage::default());
    Mix {
        window_seconds,
        since: ktime::rfc3339(state.started),
        classes,
        labels,
        probe: state.stats(),
        range,
    }
}

/// Builds the mix since start, or over the last `window_secs` seconds, from the
/// per-second readings.
pub fn live(state: &State, window_secs: Option<u64>) -> Mix {
    let mut labels = BTreeMap::new();
    let mut covered = window_secs;
    if let Some((latest, base)) = state.readings(window_secs) {
        covered = base
            .as_ref()
            .map(|b| latest.at.duration_since(b.at).as_secs());
        labels = Counts::between(base.as_ref(), &latest).labels();
    }
    if let Some(w) = window_secs {
        active_flows(state, w, &mut labels);
    }
    let window = window_secs.map(|w| covered.unwrap_or(0).min(w));
    fold(state, labels, window, None)
}

/// Over a window, the flows are those active in it, from the flow table.
fn active_flows(state: &State, window_secs: u64, labels: &mut BTreeMap<&'static str, Usage>) {
    let horizon = ktime::monotonic_ns().saturating_sub(window_secs.saturating_mul(1_000_000_000));
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

/// The mix over the last `window_secs` seconds when they reach back before this daemon's
/// first reading: the store's minutes before it, the readings after it ([`Merged`]); the
/// flows as in [`live`]. `range` says what is covered, with `source` `store+memory`.
pub fn merged(state: &State, merged: &Merged, window_secs: u64) -> Mix {
    let mut labels = merged.total().labels();
    active_flows(state, window_secs, &mut labels);
    fold(state, labels, Some(merged.covered()), Some(merged.span()))
}

/// The mix over `range` from the store's per-label rows summed over it.
pub fn stored(state: &State, rows: &[Row], range: Range) -> Mix {
    let labels = Counts::from_rows(rows).labels();
    fold(state, labels, Some(range.seconds()), Some(range.span()))
}

/// One subscriber's mix over `range` from its per-label totals in the store (no flow
/// counts); `by` keeps only the classes or only the labels.
pub fn subscriber(
    state: &State,
    per_label: &BTreeMap<Label, LabelTotals>,
    range: Range,
    by: Option<By>,
) -> Mix {
    let mut mix = fold(
        state,
        Counts::from_totals(per_label).labels(),
        Some(range.seconds()),
        Some(range.span()),
    );
    match by {
        Some(By::Label) => mix.classes.clear(),
        Some(By::Class) => mix.labels.clear(),
        None => {}
    }
    mix
}

/// The class of every label, so a client can colour labels without its own table.
pub fn label_classes() -> BTreeMap<&'static str, &'static str> {
    ALL_LABELS
        .iter()
        .map(|l| (l.name(), l.class().name()))
        .collect()
}
