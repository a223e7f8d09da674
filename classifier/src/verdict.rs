//! What goes into the engine and what comes out: one packet ([`PacketMeta`]), a flow's
//! label ([`Verdict`]) and a detector's finding ([`Hit`]), shared by the engine, the
//! per-flow inspection and the detectors below them.

use std::fmt;

use peerwarden_common::{Class, Confidence, Label};

use crate::flow::{Direction, FlowKey};

/// A flow's label, the video service for `video.<service>`, and how it was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The label.
    pub label: Label,
    /// For [`Label::VideoService`]: the service (`youtube`, `netflix`, ...).
    pub service: Option<String>,
    /// How the label was decided.
    pub confidence: Confidence,
}

impl Verdict {
    /// A verdict without a service.
    pub fn new(label: Label, confidence: Confidence) -> Verdict {
        Verdict {
            label,
            service: None,
            confidence,
        }
    }

    /// Undecided.
    pub fn unknown() -> Verdict {
        Verdict::new(Label::Unknown, Confidence::None)
    }

    /// The class of the label.
    pub fn class(&self) -> Class {
        self.label.class()
    }
}

impl fmt::Display for Verdict {
    /// The name reports print: the label's, or `video.<service>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.label, &self.service) {
            (Label::VideoService, Some(s)) => write!(f, "video.{s}"),
            (l, _) => f.write_str(l.name()),
        }
    }
}

/// One packet as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta<'a> {
    /// Capture or arrival time, nanoseconds (any epoch, monotonic within a run).
    pub ts_ns: u64,
    /// The flow, written from its `Up` side.
    pub key: FlowKey,
    /// Which way this packet goes.
    pub dir: Direction,
    /// Transport payload.
    pub payload: &'a [u8],
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// TCP sequence number (0 for UDP).
    pub tcp_seq: u32,
}

/// A detector's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub verdict: Verdict,
    /// No later packet can change it: inspection stops.
    pub fin: bool,
    /// Both directions confirmed it (a question and its answer): only such findings may
    /// spread to other flows through the endpoint cache.
    pub two_way: bool,
}

impl Hit {
    pub(crate) fn payload(label: Label) -> Hit {
        Hit {
            verdict: Verdict::new(label, Confidence::Payload),
            fin: true,
            two_way: false,
        }
    }
    pub(crate) fn tentative(label: Label) -> Hit {
        Hit {
            fin: false,
            ..Hit::payload(label)
        }
    }
    /// Confirmed both ways: final.
    pub(crate) fn confirmed(label: Label) -> Hit {
        Hit {
            two_way: true,
            ..Hit::payload(label)
        }
    }
    /// Seen one way only: a provisional label; inspection goes on.
    pub(crate) fn one_way(label: Label) -> Hit {
        Hit::tentative(label)
    }
}
