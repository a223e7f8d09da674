//! Reports built from the daemon's state and the history store, in the JSON shapes of
//! DESIGN.md: the traffic mix, its time series, the subscriber views and the flow records.
//!
//! The mix, the series and the subscriber totals are folds over a [`source`]: the
//! per-second readings kept in memory or the history store's rows, both turned into
//! [`source::Counts`] (per label and direction). The rules that make a mix out of counts
//! (a counter below its base reads as zero, `unknown` flows are those created less those
//! labelled, classes are the sums of their labels) live once, in [`source`]. A window
//! that reaches back before this daemon's first reading takes the time before it from
//! the store ([`merged`]).

pub mod flows;
pub mod merged;
pub mod mix;
pub mod range;
pub mod series;
pub mod source;
pub mod subscribers;

use serde::Serialize;

pub use flows::{FlowFilter, FlowRecord, flows};
pub use mix::Mix;
pub use range::{Range, Span};

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

/// What a subscriber view is broken down by: classes or labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum By {
    /// The four classes.
    Class,
    /// The labels.
    Label,
}

impl TryFrom<String> for By {
    type Error = String;

    /// `class` or `label`; anything else is refused naming the parameter, as the API's
    /// other parameter errors do.
    fn try_from(s: String) -> Result<By, String> {
        match s.as_str() {
            "class" => Ok(By::Class),
            "label" => Ok(By::Label),
            _ => Err(format!("by: {s:?}: class or label")),
        }
    }
}
