//! The rates' window against the deque it replaced (kept here as the reference), over
//! irregular passes, and the daemon's pass an owner at a time against `update_usage`.

use std::time::{Duration, Instant};

use peerwarden_common::policy::SubUsage;

use crate::readings::{ClassCounters, RATE_WINDOW, Readings, Recent, minus};

/// The deque's rule, per subscriber: `(when, total)` of the readings that moved it (and
/// its first), the window's base the newest at least RATE_WINDOW before the last reading.
#[derive(Default)]
struct Reference {
    entries: Vec<(Instant, ClassCounters)>,
    total: ClassCounters,
    end: Option<Instant>,
}

impl Reference {
    fn recent(&self) -> Recent {
        let (Some(end), Some((t0, first))) = (self.end, self.entries.first()) else {
            return Recent::default();
        };
        match self
            .entries
            .iter()
            .rev()
            .find(|(t, _)| end.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            Some((_, base)) => Recent {
                seconds: RATE_WINDOW.as_secs_f64(),
                delta: minus(&self.total, base),
            },
            None => Recent {
                seconds: end.saturating_duration_since(*t0).as_secs_f64(),
                delta: minus(&self.total, first),
            },
        }
    }
}

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn the_ring_gives_the_deques_rates_over_irregular_passes() {
    const SUBS: usize = 40;
    let r = Readings::default();
    let mut refs: Vec<Reference> = (0..SUBS).map(|_| Reference::default()).collect();
    let mut kernel = vec![ClassCounters::default(); SUBS];
    let owners: Vec<(String, u32)> = (0..SUBS).map(|i| (format!("s{i}"), i as u32)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut at = Instant::now();
    let mut times = Vec::new();
    for pass in 0..600 {
        // Passes a second apart mostly, some closer, some after a long gap.
        at += match rng.next() % 20 {
            0 => Duration::from_millis(rng.next() % 40_000),
            1..=4 => Duration::from_millis(rng.next() % 1000),
            _ => Duration::from_millis(900 + rng.next() % 200),
        };
        // Each subscriber moves in a share of the passes of its own.
        for (i, k) in kernel.iter_mut().enumerate() {
            if rng.next().is_multiple_of(1 + i as u64 % 7) {
                k[i % 4][1].bytes += 1 + rng.next() % 5000;
                k[i % 4][1].packets += 1;
            }
        }
        r.update(at, &owners, |i| Ok::<_, String>(kernel[i as usize]));
        // The ring holds the passes of the last RATE_WINDOW and the newest before.
        times.push(at);
        let within = times
            .iter()
            .filter(|t| at.duration_since(**t) < RATE_WINDOW);
        let slots = crate::readings::lock(&r.inner).window.slots.len();
        assert!(
            slots <= within.count() + 1,
            "{slots} slots after pass {pass}"
        );
        for (i, rf) in refs.iter_mut().enumerate() {
            if rf.entries.is_empty() || rf.total != kernel[i] {
                rf.entries.push((at, kernel[i]));
            }
            rf.total = kernel[i];
            rf.end = Some(at);
        }
        for (i, rf) in refs.iter().enumerate() {
            assert_eq!(
                r.recent(&format!("s{i}")),
                Some(rf.recent()),
                "s{i} after pass {pass}"
            );
        }
    }
}

#[test]
fn a_subscriber_that_leaves_and_returns_starts_its_window_again() {
    let r = Readings::default();
    let t0 = Instant::now();
    let mut kernel = ClassCounters::default();
    let alice = [("alice".to_string(), 0u32)];
    for s in 0..15u64 {
        kernel[0][1].bytes += 1000;
        r.update(t0 + Duration::from_secs(s), &alice, |_| {
            Ok::<_, String>(kernel)
        });
    }
    assert_eq!(r.recent("alice").map(|c| c.delta[0][1].bytes), Some(10_000));
    // Gone for a pass: no window; back on another index (counting from its reading).
    r.update(t0 + Duration::from_secs(15), &[], |_| {
        Ok::<_, String>(kernel)
    });
    assert_eq!(r.recent("alice"), Some(Recent::default()));
    r.update(t0 + Duration::from_secs(16), &[("alice".into(), 1)], |_| {
        Ok::<_, String>(kernel)
    });
    kernel[0][1].bytes += 700;
    r.update(t0 + Duration::from_secs(18), &[("alice".into(), 1)], |_| {
        Ok::<_, String>(kernel)
    });
    let recent = r.recent("alice").expect("known");
    assert_eq!(recent.seconds, 2.0, "from its first reading on index 1");
    assert_eq!(recent.delta[0][1].bytes, 700);
}

#[test]
fn the_pass_an_owner_at_a_time_reads_what_update_usage_reads() {
    let (a, b) = (Readings::default(), Readings::default());
    let owners: Vec<(String, u32)> = (0..6).map(|i| (format!("s{i}"), i)).collect();
    let mut kernel = vec![SubUsage::default(); 6];
    let t0 = Instant::now();
    for s in 0..25u64 {
        // s3 moves without its flag once: the full pass (every 5th here) catches it.
        let mut flagged = [false; 6];
        for (i, u) in kernel.iter_mut().enumerate() {
            if (s + i as u64).is_multiple_of(3) {
                u.labels[1][1].bytes += 100 * (i as u64 + 1);
                flagged[i] = i != 3 || s != 9;
            }
        }
        let full = s.is_multiple_of(5);
        let at = t0 + Duration::from_secs(s);
        a.update_usage(at, &owners, |i, must| {
            Ok::<_, String>((must || full || flagged[i as usize]).then(|| kernel[i as usize]))
        });
        let mut pass = b.usage_pass(at, &owners);
        for (_, i) in &owners {
            if pass.must() || full || flagged[*i as usize] {
                pass.next(Ok::<_, String>(Some(&kernel[*i as usize])));
            } else {
                pass.next(Ok::<_, String>(None));
            }
        }
        drop(pass);
        for (id, _) in &owners {
            assert_eq!(a.total(id), b.total(id), "{id} at {s}");
            assert_eq!(a.recent(id), b.recent(id), "{id} at {s}");
        }
    }
    assert_eq!(a.totals(), b.totals());
    assert_eq!(b.owners(), owners);
    let moved: u64 = (0..6).map(|i| kernel[i].labels[1][1].bytes).sum();
    assert_eq!(
        b.totals().iter().flatten().map(|c| c.bytes).sum::<u64>(),
        moved
    );
}
