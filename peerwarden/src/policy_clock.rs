//! The policy's clock: local weekday and minute in the policy's time zone, and a test
//! offset operators (and tests) can set through the API to see a schedule switch without
//! waiting for the hour.

use std::sync::{
    OnceLock,
    atomic::{AtomicI64, Ordering},
};

use peerwarden_policies::Weekday;

/// Re-evaluates the schedules at once; returns whether the rules in force changed. It runs
/// its argument (the clock's move) first, under the same lock as the once-a-second tick, so
/// the tick cannot take the move's switch in between and leave the mover told "unchanged".
pub type Reevaluate = Box<dyn Fn(&dyn Fn()) -> anyhow::Result<bool> + Send + Sync>;

/// Seconds added to the wall clock for schedules (0 in normal operation).
#[derive(Default)]
pub struct PolicyClock {
    offset_secs: AtomicI64,
    reevaluate: OnceLock<Reevaluate>,
}

impl PolicyClock {
    /// Sets what [`PolicyClock::reevaluate`] runs (the daemon: its enforcer's tick). Once.
    pub fn set_reevaluate(&self, f: Reevaluate) {
        if self.reevaluate.set(f).is_err() {
            tracing::warn!("the schedule re-evaluation hook was already set");
        }
    }

    /// Shifts the schedule clock by `secs` and re-evaluates the schedules at once, rather
    /// than at the next once-a-second tick: whether this move changed the rules in force.
    /// `Ok(None)` when nothing enforces policies (API tests).
    pub fn move_and_reevaluate(&self, secs: i64) -> anyhow::Result<Option<bool>> {
        let set = || self.set_offset(secs);
        match self.reevaluate.get() {
            Some(f) => f(&set).map(Some),
            None => {
                set();
                Ok(None)
            }
        }
    }

    /// The time schedules see now: the wall clock plus the offset.
    pub fn now(&self) -> Result<jiff::Timestamp, String> {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(self.offset()))
            .map_err(|e| format!("clock offset: {e}"))
    }

    /// Shifts the schedule clock by `secs` from the real time.
    pub fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::Relaxed);
    }

    /// The current shift.
    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::Relaxed)
    }

    /// Weekday and minute of the day (0..1440) now, in `tz` (an IANA name).
    pub fn local(&self, tz: &str) -> Result<(Weekday, u16), String> {
        let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("time zone {tz:?}: {e}"))?;
        let now = self.now()?;
        let z = now.to_zoned(zone);
        let day = match z.weekday() {
            jiff::civil::Weekday::Monday => Weekday::Mon,
            jiff::civil::Weekday::Tuesday => Weekday::Tue,
            jiff::civil::Weekday::Wednesday => Weekday::Wed,
            jiff::civil::Weekday::Thursday => Weekday::Thu,
            jiff::civil::Weekday::Friday => Weekday::Fri,
            jiff::civil::Weekday::Saturday => Weekday::Sat,
            jiff::civil::Weekday::Sunday => Weekday::Sun,
        };
        Ok((day, z.hour() as u16 * 60 + z.minute() as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_the_local_minute() {
        let c = PolicyClock::default();
        let (_, m0) = c.local("UTC").expect("UTC");
        c.set_offset(3600);
        let (_, m1) = c.local("UTC").expect("UTC");
        assert!(
            m1 == (m0 + 60) % 1440 || m1 == (m0 + 61) % 1440,
            "an hour later: {m0} then {m1}"
        );
        assert!(c.local("Mars/Olympus").is_err());
    }
}
