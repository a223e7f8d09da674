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

/// A wall-clock time and the monotonic time it was read at, as one pair: the wall clock is
/// read between two monotonic reads, the closest of three tries is kept and the midpoint
/// taken, so a thread preempted between two reads does not shift the pair by the time it
/// waited. Read again at most once a second (a stepped wall clock is followed within one).
fn clock_pair() -> (SystemTime, u64) {
    static PAIR: std::sync::Mutex<Option<(SystemTime, u64)>> = std::sync::Mutex::new(None);
    let now = monotonic_ns();
    let mut cached = PAIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((wall, mono)) = *cached
        && now.saturating_sub(mono) < 1_000_000_000
    {
        return (wall, mono);
    }
    let mut best: Option<(u64, SystemTime, u64)> = None;
    for _ in 0..3 {
        let before = monotonic_ns();
        let wall = SystemTime::now();
        let after = monotonic_ns();
        let gap = after.saturating_sub(before);
        if best.is_none_or(|(g, _, _)| gap < g) {
            best = Some((gap, wall, before + gap / 2));
        }
    }
    let (_, wall, mono) = best.unwrap_or((0, SystemTime::now(), now));
    *cached = Some((wall, mono));
    (wall, mono)
}

/// The wall-clock time of a probe timestamp.
pub fn wall_time(ktime_ns: u64) -> SystemTime {
    let (now, now_mono) = clock_pair();
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
    fn one_stamp_reads_as_one_wall_time_from_busy_threads() {
        // Four threads on two cores convert the same stamp 20,000 times each: a thread
        // preempted between its clock reads used to shift its answer by the time it waited.
        let stamp = monotonic_ns();
        let spread: Vec<Duration> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let times: Vec<SystemTime> = (0..20_000).map(|_| wall_time(stamp)).collect();
                    let lo = times.iter().min().copied().expect("times");
                    let hi = times.iter().max().copied().expect("times");
                    hi.duration_since(lo).unwrap_or_default()
                })
            })
            .map(|t| t.join().expect("thread"))
            .collect();
        // A refresh a second later may move it by the clocks' drift: microseconds.
        assert!(
            spread.iter().all(|d| *d < Duration::from_millis(1)),
            "{spread:?}"
        );
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
