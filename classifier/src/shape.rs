//! Video by its shape: adaptive streaming (HLS, DASH) recognised on an encrypted flow whose
//! service has no name we know (a host outside the catalogue, ECH, an unknown QUIC server).
//!
//! A player asks for one segment at a time: a small request up, a segment of hundreds of
//! KB to a few MB down, then nothing until the buffer wants the next one, a segment's
//! duration later (2 to 10 s). [`Shape`] follows a flow's bytes as observations of
//! `(time, up, down)`: one per packet (offline, from capture timestamps) or one per flow
//! walk (the daemon, per-second deltas of the kernel's counters). Downstream activity
//! separated by an idle gap of [`IDLE_GAP_NS`] makes bursts; a burst with the upstream
//! bytes of its cycle (the request, the ACKs) and the time to the next burst's start makes
//! a cycle, and [`CYCLES`] good cycles in a row with regular periods and sizes make the
//! flow video. The state is a few counters per flow. docs/classifier.md, "Video by its
//! shape", says why each bound is what it is and what it lets through.

use peerwarden_common::{Confidence, Label};

use crate::verdict::Verdict;

/// The service name a flow recognised by its shape reports: `video.behavioural`.
pub const SERVICE: &str = "behavioural";

/// Downstream silence that ends a burst. Above the daemon's 1 s walk, so that two busy
/// walks in a row are one burst and one idle walk between them is a gap.
pub const IDLE_GAP_NS: u64 = 1_500_000_000;
/// Downstream bytes in one observation that count as activity: a data packet, not a bare
/// ACK or a keep-alive (those are 54 to ~120 bytes on the wire).
pub const ACTIVE_MIN: u64 = 256;
/// A segment's size on the wire: 100 KB (2 s of 400 kbit/s) to 8 MB (10 s of 6 Mbit/s).
pub const SEGMENT_MIN: u64 = 100_000;
/// A trickle is not activity: an observation whose downstream bytes, spread over the time
/// since the previous observation (at most [`RATE_WINDOW_NS`]), come to less than this many
/// bytes a second (128 kbit/s) leaves a gap idle. TCP window updates, TLS and HTTP/2
/// keep-alives and a player reading its socket slowly send a kilobyte or two now and then
/// between segments; a segment arrives faster than the video plays.
pub const ACTIVE_RATE: u64 = 16_000;
/// The longest time an observation's rate is spread over: the daemon's walk. The idle time
/// before a walk that sees a segment start is not the segment's.
pub const RATE_WINDOW_NS: u64 = 1_000_000_000;
/// See [`SEGMENT_MIN`].
pub const SEGMENT_MAX: u64 = 8_000_000;
/// Start-to-start time between segments: 1.5 s (2 s segments fetched a little early) to
/// 12 s (10 s segments fetched a little late).
pub const PERIOD_MIN_NS: u64 = 1_500_000_000;
/// See [`PERIOD_MIN_NS`].
pub const PERIOD_MAX_NS: u64 = 12_000_000_000;
/// Within a run of good cycles, the longest period is at most 3/2 of the shortest, as
/// `[numerator, denominator]` (a player's pace is its segment duration; jitter and a late
/// fetch stay well within).
pub const PERIOD_SPREAD: [u64; 2] = [3, 2];
/// Within a run, the largest segment is at most this many times the smallest (a rate
/// switch of adaptive streaming, or a variable-rate encoding, stays within).
pub const SIZE_SPREAD: u64 = 4;
/// A cycle's upstream bytes are at most 1/8 of its downstream bytes (TCP's ACKs are about
/// 1/40 of the data they acknowledge, QUIC's a little more; the request is a few hundred
/// bytes).
pub const UP_SHARE: u64 = 8;
/// A cycle carries at least this many upstream bytes: a request was sent.
pub const REQUEST_MIN: u64 = 100;
/// Good cycles in a row that decide the flow.
pub const CYCLES: u8 = 5;

/// One flow's shape so far: the burst in progress, the cycle it belongs to, the run of good
/// cycles behind them, and whether the flow has been found to be video (which it stays).
///
/// A burst of at least [`SEGMENT_MIN`] down is a segment: it opens a cycle, and closes the
/// one before. A smaller burst joins the cycle in progress: the rest of a segment that a
/// player reading its socket slowly drew later, a live playlist fetched between segments on
/// the same connection, a licence or a beacon. Byte counts are `u32`, saturating (they are
/// compared with megabytes); times are `u64` nanoseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// A burst has been seen (`burst_*` hold the latest).
    started: bool,
    /// An observation came before (`last_obs` holds its time).
    observed: bool,
    /// The decision, once made.
    video: bool,
    /// The burst in progress has reached a segment's size.
    segment: bool,
    /// A cycle is open (`cycle_*` hold it).
    cycle_open: bool,
    /// Good cycles in a row.
    run: u8,
    /// Start of the burst in progress.
    burst_start: u64,
    /// Last downstream activity.
    last_active: u64,
    /// Time of the previous observation.
    last_obs: u64,
    /// Start of the open cycle (of its segment).
    cycle_start: u64,
    /// Downstream bytes of the burst in progress.
    burst_down: u32,
    /// Upstream bytes of the burst in progress up to its last activity (its request, ACKs).
    burst_up: u32,
    /// Upstream bytes since the last activity: the next burst's request if one follows.
    gap_up: u32,
    /// Bytes of the open cycle's bursts that have ended, down and up.
    cycle_down: u32,
    cycle_up: u32,
    /// The run's shortest and longest periods (milliseconds) and smallest and largest
    /// cycles (bytes down).
    period_ms: [u32; 2],
    size: [u32; 2],
}

/// `a + b` for the byte counters, saturating at `u32::MAX`.
fn plus(a: u32, b: u64) -> u32 {
    u32::try_from(u64::from(a).saturating_add(b)).unwrap_or(u32::MAX)
}

impl Shape {
    /// Takes the bytes seen up and down at `ts_ns` (since the last observation).
    pub fn observe(&mut self, ts_ns: u64, up: u64, down: u64) {
        let since = ts_ns.saturating_sub(self.last_obs).min(RATE_WINDOW_NS);
        let active = down >= ACTIVE_MIN
            && (!self.observed
                || u128::from(down) * 1_000_000_000 >= u128::from(ACTIVE_RATE) * u128::from(since));
        self.observed = true;
        self.last_obs = self.last_obs.max(ts_ns);
        if active {
            if !self.started {
                self.started = true;
                self.begin(ts_ns);
            } else if ts_ns.saturating_sub(self.last_active) >= IDLE_GAP_NS {
                self.end_burst();
                self.begin(ts_ns);
            } else {
                // The same burst: what was sent up since its last packet (ACKs) is its own.
                self.burst_up = plus(self.burst_up, u64::from(self.gap_up));
                self.gap_up = 0;
            }
            self.last_active = self.last_active.max(ts_ns);
        }
        if self.started {
            self.burst_down = plus(self.burst_down, down);
            if !self.segment && u64::from(self.burst_down) >= SEGMENT_MIN {
                self.segment = true;
                self.segment_starts();
            }
        }
        if self.started && ts_ns <= self.last_active {
            self.burst_up = plus(self.burst_up, up);
        } else {
            self.gap_up = plus(self.gap_up, up);
        }
    }

    /// Whether the flow behaves like adaptive streaming.
    pub fn is_video(&self) -> bool {
        self.video
    }

    /// Good request/segment cycles in a row so far (for tests and reports).
    pub fn run(&self) -> u8 {
        self.run
    }

    /// Whether a flow with verdict `v` is one the shape may name: TLS or QUIC whose service
    /// no host name told (a named video service is one already; any other label is more
    /// precise than a shape).
    pub fn applies_to(v: &Verdict) -> bool {
        matches!(v.label, Label::Tls | Label::Quic) && v.service.is_none()
    }

    /// The verdict of a flow found to be video: `video.behavioural`.
    pub fn verdict() -> Verdict {
        Verdict {
            label: Label::VideoService,
            service: Some(SERVICE.to_string()),
            confidence: Confidence::Behaviour,
        }
    }

    /// A new burst at `ts`, opened with the upstream bytes sent since the last activity
    /// (its request).
    fn begin(&mut self, ts: u64) {
        self.burst_start = ts;
        self.last_active = ts;
        self.burst_down = 0;
        self.burst_up = self.gap_up;
        self.gap_up = 0;
        self.segment = false;
    }

    /// The burst in progress ended: its bytes join the open cycle (it opened the cycle if
    /// it was a segment; a smaller one before any segment belongs to no cycle).
    fn end_burst(&mut self) {
        if self.cycle_open {
            self.cycle_down = plus(self.cycle_down, u64::from(self.burst_down));
            self.cycle_up = plus(self.cycle_up, u64::from(self.burst_up));
        }
    }

    /// The burst in progress has become a segment: the open cycle, now complete, closes a
    /// period before this burst's start, and this burst opens the next.
    fn segment_starts(&mut self) {
        if self.cycle_open {
            self.close(self.burst_start.saturating_sub(self.cycle_start));
        }
        self.cycle_open = true;
        self.cycle_start = self.burst_start;
        self.cycle_down = 0;
        self.cycle_up = 0;
    }

    /// Judges the open cycle, `period` long: a good cycle extends the run (or starts a new
    /// one when it breaks the run's regularity), a bad one ends it.
    fn close(&mut self, period: u64) {
        let (down, up) = (u64::from(self.cycle_down), u64::from(self.cycle_up));
        let good = (SEGMENT_MIN..=SEGMENT_MAX).contains(&down)
            && up >= REQUEST_MIN
            && up.saturating_mul(UP_SHARE) <= down
            && (PERIOD_MIN_NS..=PERIOD_MAX_NS).contains(&period);
        if !good {
            self.run = 0;
            return;
        }
        // Within the bounds just checked: periods under 12 s in ms, sizes under 8 MB.
        let period = (period / 1_000_000) as u32;
        let down = down as u32;
        let p = [self.period_ms[0].min(period), self.period_ms[1].max(period)];
        let s = [self.size[0].min(down), self.size[1].max(down)];
        let regular = u64::from(p[1]) * PERIOD_SPREAD[1] <= u64::from(p[0]) * PERIOD_SPREAD[0]
            && u64::from(s[1]) <= u64::from(s[0]) * SIZE_SPREAD;
        if self.run == 0 || !regular {
            self.run = 1;
            self.period_ms = [period; 2];
            self.size = [down; 2];
        } else {
            self.run = self.run.saturating_add(1);
            self.period_ms = p;
            self.size = s;
        }
        if self.run >= CYCLES {
            self.video = true;
        }
    }
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
