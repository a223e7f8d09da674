//! Kernel timestamps to wall-clock time.
//!
//! The probe stamps flows with `bpf_ktime_get_coarse_ns()`, CLOCK_MONOTONIC as of the last
//! timer tick (a few ms behind at most); reports print wall-clock time, so each stamp is
//! shifted by the current offset between the two.
//!
//! The police buckets refill on the same coarse clock; its tick ([`coarse_tick_ns`]) is
//! how deep a bucket must be at least (`peerwarden_policies::compile::bucket_depth`).

use std::time::{Duration, SystemTime};

/// CLOCK_MONOTONIC now, in nanoseconds (the kernel probe's clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's coarse clock tick (`CLOCK_MONOTONIC_COARSE`'s resolution: 4 ms at HZ=250,
/// 10 ms at HZ=100), which the police buckets run on; 10 ms if the kernel does not say.
pub fn coarse_tick_ns() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_getres writes one timespec through a valid pointer.
        let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        let ns = (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64;
        if rc == 0 && ns > 0 { ns } else { 10_000_000 }
    })
}

/// The wall-clock time of a probe timestamp.
pub fn wall_time(ktime_ns: u64) -> SystemTime {
    let now_mono = monotonic_ns();
    let now = SystemTime::now();
    if ktime_ns <= now_mono {
        now - Duration::from_nanos(now_mono - ktime_ns)
    } else {
        now + Duration::from_nanos(ktime_ns - now_mono)
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-26T20:43:33.120Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Reads back what [`rfc3339`] writes (any RFC 3339 time in UTC); `None` if `s` is not one.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_reads_back_to_the_millisecond() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_123_456);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-18T11:08:43.456Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn the_coarse_clock_ticks_at_hz() {
        let tick = coarse_tick_ns();
        assert!(
            (1_000_000..=10_000_000).contains(&tick),
            "a tick of {tick} ns: HZ between 100 and 1000"
        );
    }
}
