//! Per-subscriber readings: the kernel's per-subscriber counters (per class and direction:
//! packets, bytes, policy drops and marks) read every second, turned into totals per
//! subscriber id for this run of the daemon, and the last seconds of them for rates.
//!
//! The kernel keeps counters per subscriber *index*; the enforcer gives every subscriber
//! id of the policy an index that stays across reloads. When a subscriber leaves the
//! policy its index may go to a newcomer, whose counters then continue from the old
//! owner's: the newcomer's totals start from the reading at which it was first seen
//! owning the index (the second around the change is not attributed to either). With
//! kernel maps adopted from an earlier daemon (pinned), every index counts this run from
//! its first reading. The history store keeps its own base (absolute kernel readings per
//! index, see `history`), so what it records does not depend on this run's totals.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use peerwarden::readings::{ClassCounters, Readings};
//!
//! let r = Readings::default();
//! let mut kernel: ClassCounters = Default::default();
//! let t0 = Instant::now();
//! r.update(t0, &[("alice".into(), 0)], |_| Ok::<_, String>(kernel));
//! kernel[0][1].bytes = 1_250_000; // p2p down
//! r.update(t0 + Duration::from_secs(1), &[("alice".into(), 0)], |_| Ok::<_, String>(kernel));
//! let recent = r.recent("alice").expect("alice is known");
//! assert_eq!(recent.delta[0][1].bytes * 8 / recent.seconds as u64, 10_000_000);
//! ```

use std::{
    collections::{HashMap, HashSet},
    fmt::Display,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use peerwarden_common::policy::{SubCounter, SubUsage};
use peerwarden_policies::Policy;

mod window;

use window::Window;

/// Counters per class (p2p, video, web, other) and direction (up, down).
pub type ClassCounters = [[SubCounter; 2]; 4];

/// The span current rates and drops are measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What happened in the last [`RATE_WINDOW`] (or since the first reading, if later).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Recent {
    /// Seconds between the two readings compared (0 before the second reading).
    pub seconds: f64,
    /// The counters' growth over those seconds.
    pub delta: ClassCounters,
}

/// One subscriber id's readings.
#[derive(Default)]
struct Sub {
    /// Its id.
    id: String,
    /// The kernel index it owns, if it is in the active policy.
    index: Option<u32>,
    /// The last kernel reading of that index.
    kernel: ClassCounters,
    /// Accumulated over this run.
    total: ClassCounters,
    /// Whether it has entries in the rates' window (`Inner::window`): `(when, total)` for
    /// the readings that moved the total in the last [`RATE_WINDOW`], and the newest before
    /// it (the total at the window's start). An idle subscriber adds nothing there: with
    /// 100,000 subscribers, a copy of every total every second was most of the cost of a
    /// pass.
    windowed: bool,
    /// When its counters were last read.
    last_read: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    /// Every subscriber seen this run, in the order first seen (dense: the pass walks the
    /// owners' entries through `owner_subs`, without hashing an id).
    subs: Vec<Sub>,
    /// Position in `subs` by id, for the API's lookups and when the owners change.
    by_id: HashMap<String, usize>,
    owners: Vec<(String, u32)>,
    /// `owners[k]`'s position in `subs`, once it has been read.
    owner_subs: Vec<Option<usize>>,
    /// Indexes owned by some id during this run (the kernel's counters of the others are
    /// still zero: the maps are new).
    ever_owned: HashSet<u32>,
    /// Every subscriber's growth this run, summed (stays when a subscriber leaves).
    totals: ClassCounters,
    /// The subscribers' recent totals, by position in `subs`.
    window: Window,
    /// Passes made (each update is one).
    passes: u64,
    /// Kernel reads that failed.
    read_errors: u64,
    /// The kernel maps were adopted from an earlier daemon: their counters did not start
    /// at zero with this run.
    adopted: bool,
}

impl Inner {
    fn get(&self, id: &str) -> Option<&Sub> {
        self.by_id.get(id).and_then(|&p| self.subs.get(p))
    }

    /// Starts a pass over `owners` read at `at`; returns whether the owners changed. The
    /// owners change with the policy only: the leavers' work is done then, not every second.
    fn begin(&mut self, at: Instant, owners: &[(String, u32)]) -> bool {
        self.passes += 1;
        self.window.advance(at);
        let changed = self.owners.as_slice() != owners;
        if changed {
            let live: HashSet<&str> = owners.iter().map(|(id, _)| id.as_str()).collect();
            for (pos, sub) in self.subs.iter_mut().enumerate() {
                if !live.contains(sub.id.as_str()) {
                    sub.index = None;
                    sub.windowed = false;
                    self.window.clear(pos);
                }
            }
            self.owner_subs = owners
                .iter()
                .map(|(id, _)| self.by_id.get(id.as_str()).copied())
                .collect();
        }
        changed
    }

    /// Whether `owners[k]` (owning `index`) has a reading of it already, so that its
    /// counters need not be read when the kernel did not flag them.
    fn settled(&self, k: usize, index: u32) -> bool {
        self.owner_subs
            .get(k)
            .copied()
            .flatten()
            .and_then(|pos| self.subs.get(pos))
            .is_some_and(|sub| sub.index == Some(index) && sub.windowed)
    }

    /// One owner of the pass: `owners[k]`, `(id, index)`, with `reading` of its index
    /// (`None`: unchanged since the last one, which `settled` guarantees there is). Returns
    /// its total when it was read.
    fn step<E: Display>(
        &mut self,
        at: Instant,
        k: usize,
        id: &str,
        index: u32,
        settled: bool,
        reading: Result<Option<ClassCounters>, E>,
    ) -> Option<&ClassCounters> {
        let pos = match self.owner_subs.get(k).copied().flatten() {
            Some(pos) => pos,
            None => {
                let pos = *self.by_id.entry(id.to_string()).or_insert(self.subs.len());
                if pos == self.subs.len() {
                    self.subs.push(Sub {
                        id: id.to_string(),
                        ..Sub::default()
                    });
                }
                if let Some(slot) = self.owner_subs.get_mut(k) {
                    *slot = Some(pos);
                }
                pos
            }
        };
        let sub = self.subs.get_mut(pos)?;
        let reading = match reading {
            Ok(Some(r)) => r,
            // Unchanged since the last reading: nothing moved.
            Ok(None) if settled => {
                sub.last_read = Some(at);
                return Some(&sub.total);
            }
            Ok(None) => return None,
            Err(e) => {
                self.read_errors += 1;
                if self.read_errors.is_power_of_two() {
                    tracing::warn!(subscriber = %id, index, error = %e, errors = self.read_errors, "reading subscriber counters");
                }
                return None;
            }
        };
        // Most subscribers are idle in any second: an unchanged reading of the index it
        // already owns moves nothing (no growth, no rate entry; the old rate entries leave
        // the window with their passes, `recent` looks past them).
        if settled && sub.kernel == reading {
            sub.last_read = Some(at);
            return Some(&sub.total);
        }
        if sub.index != Some(index) {
            // Newly owned: an index nobody had this run still counts from zero (new maps);
            // one that changed hands, or any in adopted maps, counts from now.
            sub.kernel = if self.adopted || self.ever_owned.contains(&index) {
                reading
            } else {
                ClassCounters::default()
            };
            sub.index = Some(index);
            sub.windowed = false;
            self.window.clear(pos);
            self.ever_owned.insert(index);
        }
        let g = wrapping_minus(&reading, &sub.kernel);
        for (c, row) in g.iter().enumerate() {
            for (d, g) in row.iter().enumerate() {
                add(&mut sub.total[c][d], g);
                add(&mut self.totals[c][d], g);
            }
        }
        sub.kernel = reading;
        sub.last_read = Some(at);
        if !sub.windowed || g != ClassCounters::default() {
            self.window.push(self.passes, pos, at, &sub.total);
            sub.windowed = true;
        }
        Some(&sub.total)
    }

    /// Ends a pass over `owners`.
    fn end(&mut self, owners: &[(String, u32)], changed: bool) {
        if changed {
            self.owners = owners.to_vec();
        }
    }
}

/// A pass of [`Readings::usage_pass`]: [`UsagePass::next`] once per owner, in order.
pub struct UsagePass<'a> {
    inner: MutexGuard<'a, Inner>,
    at: Instant,
    owners: &'a [(String, u32)],
    next: usize,
    changed: bool,
}

impl UsagePass<'_> {
    /// Whether the next owner's counters must be read: this run has no reading of its
    /// index yet (else an unflagged owner may be passed on with `None`).
    pub fn must(&self) -> bool {
        let Some((_, index)) = self.owners.get(self.next) else {
            return false;
        };
        !self.inner.settled(self.next, *index)
    }

    /// The next owner's counters: `None` for "unchanged since the last reading" (ignored
    /// when [`UsagePass::must`] was set), or the failed read.
    pub fn next<E: Display>(&mut self, reading: Result<Option<&SubUsage>, E>) {
        let k = self.next;
        let Some((id, index)) = self.owners.get(k) else {
            return;
        };
        self.next += 1;
        let settled = self.inner.settled(k, *index);
        let reading = reading.map(|u| u.map(SubUsage::classes));
        self.inner.step(self.at, k, id, *index, settled, reading);
    }
}

impl Drop for UsagePass<'_> {
    fn drop(&mut self) {
        let owners = self.owners;
        self.inner.end(owners, self.changed);
    }
}

/// The per-subscriber readings, shared between the counter reader and the API.
#[derive(Default)]
pub struct Readings {
    inner: Mutex<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn add(a: &mut SubCounter, b: &SubCounter) {
    a.packets = a.packets.wrapping_add(b.packets);
    a.bytes = a.bytes.wrapping_add(b.bytes);
    a.dropped_packets = a.dropped_packets.wrapping_add(b.dropped_packets);
    a.dropped_bytes = a.dropped_bytes.wrapping_add(b.dropped_bytes);
    a.marked_packets = a.marked_packets.wrapping_add(b.marked_packets);
}

/// `now - then`, field by field, wrapping: a class's packets and bytes are sums of label
/// counters, and the `unknown` label's go down when a flow's earlier packets move to the
/// label it receives (ebpf/src/policy.rs), so the class `other` can shrink by what `p2p`,
/// `video` or `web` grows.
fn growth(now: &SubCounter, then: &SubCounter) -> SubCounter {
    SubCounter {
        packets: now.packets.wrapping_sub(then.packets),
        bytes: now.bytes.wrapping_sub(then.bytes),
        dropped_packets: now.dropped_packets.wrapping_sub(then.dropped_packets),
        dropped_bytes: now.dropped_bytes.wrapping_sub(then.dropped_bytes),
        marked_packets: now.marked_packets.wrapping_sub(then.marked_packets),
    }
}

fn wrapping_minus(now: &ClassCounters, then: &ClassCounters) -> ClassCounters {
    let mut out = ClassCounters::default();
    for ((o, n), t) in out
        .iter_mut()
        .flatten()
        .zip(now.iter().flatten())
        .zip(then.iter().flatten())
    {
        *o = growth(n, t);
    }
    out
}

/// Field-by-field difference of two class tables, for rates: a field that shrank (a
/// class that handed bytes to another when a flow was labelled) reads 0.
pub fn minus(now: &ClassCounters, then: &ClassCounters) -> ClassCounters {
    let mut out = wrapping_minus(now, then);
    for c in out.iter_mut().flatten() {
        for f in [
            &mut c.packets,
            &mut c.bytes,
            &mut c.dropped_packets,
            &mut c.dropped_bytes,
            &mut c.marked_packets,
        ] {
            if (*f as i64) < 0 {
                *f = 0;
            }
        }
    }
    out
}

/// Bytes of every class and direction.
pub fn bytes(c: &ClassCounters) -> u64 {
    c.iter().flatten().map(|s| s.bytes).sum()
}

impl Readings {
    /// Reads every owner's counters with `read(index)` (one reading taken at `at`) and
    /// returns the totals of this run of the owners read, for the history store.
    pub fn update<E: Display>(
        &self,
        at: Instant,
        owners: &[(String, u32)],
        read: impl FnMut(u32) -> Result<ClassCounters, E>,
    ) -> Vec<(String, ClassCounters)> {
        let mut out = Vec::with_capacity(owners.len());
        let mut read = read;
        self.update_with(
            at,
            owners,
            |i, _| read(i).map(Some),
            |id, total| out.push((id.to_string(), *total)),
        );
        out
    }

    /// [`Readings::update`] from the kernel's per-subscriber counters, per class:
    /// `read(index, must)` is asked once per owner (the daemon reads them out of the mapped
    /// array) and may answer `None` for "unchanged since the last reading" (the kernel's
    /// change flags), except when `must` is set: an owner this run has no reading of yet.
    pub fn update_usage<E: Display>(
        &self,
        at: Instant,
        owners: &[(String, u32)],
        mut read: impl FnMut(u32, bool) -> Result<Option<SubUsage>, E>,
    ) {
        self.update_with(
            at,
            owners,
            |i, must| read(i, must).map(|u| u.map(|u| u.classes())),
            |_, _| {},
        );
    }

    /// [`Readings::update_usage`] an owner at a time, in the owners' order, for a caller
    /// that hands each reading on (the daemon: to the history store, one copy of the
    /// counters out of the mapped array for both). The pass ends when it is dropped.
    pub fn usage_pass<'a>(&'a self, at: Instant, owners: &'a [(String, u32)]) -> UsagePass<'a> {
        let mut inner = lock(&self.inner);
        let changed = inner.begin(at, owners);
        UsagePass {
            inner,
            at,
            owners,
            next: 0,
            changed,
        }
    }

    /// The body of [`Readings::update`]: `each(id, total)` for every owner read, without
    /// a copy of the owners' ids or totals unless `each` makes one.
    fn update_with<E: Display>(
        &self,
        at: Instant,
        owners: &[(String, u32)],
        mut read: impl FnMut(u32, bool) -> Result<Option<ClassCounters>, E>,
        mut each: impl FnMut(&str, &ClassCounters),
    ) {
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        let changed = inner.begin(at, owners);
        for (k, (id, index)) in owners.iter().enumerate() {
            let settled = inner.settled(k, *index);
            let reading = read(*index, !settled);
            if let Some(total) = inner.step(at, k, id, *index, settled, reading) {
                each(id, total);
            }
        }
        inner.end(owners, changed);
    }

    /// Tells the readings that the kernel maps were adopted from an earlier daemon (pinned):
    /// this run's totals then start from each index's first reading, not from zero.
    pub fn set_maps_adopted(&self, adopted: bool) {
        lock(&self.inner).adopted = adopted;
    }

    /// The owners of the last update.
    pub fn owners(&self) -> Vec<(String, u32)> {
        lock(&self.inner).owners.clone()
    }

    /// One subscriber's totals this run.
    pub fn total(&self, id: &str) -> Option<ClassCounters> {
        lock(&self.inner).get(id).map(|s| s.total)
    }

    /// One subscriber's growth over the last [`RATE_WINDOW`].
    pub fn recent(&self, id: &str) -> Option<Recent> {
        let g = lock(&self.inner);
        let pos = *g.by_id.get(id)?;
        let sub = g.subs.get(pos)?;
        // The total RATE_WINDOW before the last reading is that of the newest entry at
        // least that old (entries are kept only when the total moved); without one, the
        // span starts at the first reading.
        let span = sub
            .last_read
            .filter(|_| sub.windowed)
            .and_then(|end| g.window.span(pos, end));
        let Some(span) = span else {
            return Some(Recent::default());
        };
        Some(Recent {
            seconds: span.seconds,
            delta: minus(&sub.total, span.base),
        })
    }

    /// Every subscriber seen this run with its totals.
    pub fn all(&self) -> Vec<(String, ClassCounters)> {
        lock(&self.inner)
            .subs
            .iter()
            .map(|s| (s.id.clone(), s.total))
            .collect()
    }

    /// The `limit` subscribers with the largest `key` of their totals this run, largest
    /// first (ties by id), without copying the others.
    pub fn top(
        &self,
        limit: usize,
        key: impl Fn(&ClassCounters) -> u64,
    ) -> Vec<(String, ClassCounters)> {
        let g = lock(&self.inner);
        let mut ranked: Vec<(u64, &String, &ClassCounters)> = g
            .subs
            .iter()
            .map(|s| (key(&s.total), &s.id, &s.total))
            .collect();
        let order = |a: &(u64, &String, &ClassCounters), b: &(u64, &String, &ClassCounters)| {
            b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
        };
        if ranked.len() > limit {
            if limit == 0 {
                return Vec::new();
            }
            ranked.select_nth_unstable_by(limit - 1, order);
            ranked.truncate(limit);
        }
        ranked.sort_by(order);
        ranked
            .into_iter()
            .map(|(_, id, c)| (id.clone(), *c))
            .collect()
    }

    /// Subscribers seen this run.
    pub fn len(&self) -> usize {
        lock(&self.inner).subs.len()
    }

    /// Whether no subscriber has been seen this run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every subscriber's growth this run, summed.
    pub fn totals(&self) -> ClassCounters {
        lock(&self.inner).totals
    }

    /// Kernel reads that failed this run.
    pub fn read_errors(&self) -> u64 {
        lock(&self.inner).read_errors
    }
}

/// The active policy's subscriber ids with their kernel indexes, worked out again only
/// when the active policy changes (a schedule re-install keeps the indexes).
#[derive(Default)]
pub struct Owners {
    policy: Option<Arc<Policy>>,
    owners: Vec<(String, u32)>,
}

impl Owners {
    /// The owners under `active`; `id_of(index)` is the enforcer's index table, asked for
    /// indexes from 0 up until every subscriber of the policy is found (or `max`).
    pub fn current(
        &mut self,
        active: Option<Arc<Policy>>,
        max: u32,
        id_of: impl Fn(u32) -> Option<String>,
    ) -> &[(String, u32)] {
        let same = match (&self.policy, &active) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.owners.clear();
            if let Some(p) = &active {
                let wanted = p.subscribers().len();
                // Indexes are handed out from 0 and reused when freed, so they stay
                // below the number of subscribers ever installed.
                for i in 0..max {
                    if self.owners.len() == wanted {
                        break;
                    }
                    if let Some(id) = id_of(i) {
                        self.owners.push((id, i));
                    }
                }
            }
            self.policy = active;
        }
        &self.owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(p2p_down: u64, dropped: u64) -> ClassCounters {
        let mut c = ClassCounters::default();
        c[0][1] = SubCounter {
            packets: p2p_down / 1000,
            bytes: p2p_down,
            dropped_packets: dropped,
            dropped_bytes: dropped * 1500,
            marked_packets: 0,
        };
        c
    }

    #[test]
    fn totals_grow_by_the_kernel_differences_and_rates_span_ten_seconds() {
        let r = Readings::default();
        let t0 = Instant::now();
        let owners = vec![("alice".to_string(), 0u32)];
        for s in 0..=20u64 {
            let out = r.update(t0 + Duration::from_secs(s), &owners, |_| {
                Ok::<_, String>(reading(1000 * (s + 1), s / 2))
            });
            assert_eq!(
                out[0].1[0][1].bytes,
                1000 * (s + 1),
                "the first reading counts whole: new maps start at zero"
            );
        }
        let recent = r.recent("alice").expect("known");
        assert_eq!(recent.seconds, 10.0);
        assert_eq!(recent.delta[0][1].bytes, 10_000);
        assert_eq!(recent.delta[0][1].dropped_packets, 5);
        assert_eq!(r.totals()[0][1].bytes, 21_000);
        assert!(r.recent("nobody").is_none());
    }

    #[test]
    fn an_index_that_changes_hands_starts_the_newcomer_from_its_reading() {
        let r = Readings::default();
        let t0 = Instant::now();
        r.update(t0, &[("alice".into(), 0)], |_| {
            Ok::<_, String>(reading(5000, 0))
        });
        // Alice leaves, bob gets index 0: the kernel keeps counting where alice stopped.
        r.update(t0 + Duration::from_secs(1), &[("bob".into(), 0)], |_| {
            Ok::<_, String>(reading(6000, 0))
        });
        r.update(t0 + Duration::from_secs(2), &[("bob".into(), 0)], |_| {
            Ok::<_, String>(reading(6500, 0))
        });
        assert_eq!(r.total("alice").map(|c| c[0][1].bytes), Some(5000));
        assert_eq!(r.total("bob").map(|c| c[0][1].bytes), Some(500));
        assert_eq!(
            r.totals()[0][1].bytes,
            5500,
            "the second of the change is nobody's"
        );
        assert_eq!(r.owners(), vec![("bob".to_string(), 0)]);
        // A failed read skips the subscriber, counted.
        let out = r.update(t0 + Duration::from_secs(3), &[("bob".into(), 0)], |_| {
            Err("gone")
        });
        assert!(out.is_empty());
        assert_eq!(r.read_errors(), 1);
    }

    #[test]
    fn an_idle_subscriber_rates_zero_over_the_window_after_traffic() {
        let r = Readings::default();
        let t0 = Instant::now();
        let owners = [("alice".to_string(), 0u32)];
        // Traffic for 5 s, then nothing for 20 s: no entries for the idle readings.
        for s in 0..=25u64 {
            r.update(t0 + Duration::from_secs(s), &owners, |_| {
                Ok::<_, String>(reading(1000 * s.min(5), 0))
            });
            if s == 12 {
                let recent = r.recent("alice").expect("known");
                assert_eq!(recent.seconds, 10.0);
                assert_eq!(recent.delta[0][1].bytes, 3000, "seconds 3 to 5 of 2 to 12");
            }
        }
        let recent = r.recent("alice").expect("known");
        assert_eq!(recent.seconds, 10.0);
        assert_eq!(recent.delta, ClassCounters::default());
    }

    #[test]
    fn idle_seconds_and_reordered_owners_keep_every_total_exact() {
        let r = Readings::default();
        let t0 = Instant::now();
        let mut kernel = [reading(0, 0), reading(0, 0), reading(0, 0)];
        let mut owners = vec![("a".to_string(), 0u32), ("b".to_string(), 1)];
        let mut want = [0u64; 3];
        for s in 0..40u64 {
            match s {
                // The same owners in another order: same indexes, nothing lost or doubled.
                10 => owners.reverse(),
                // a leaves; c gets a new index; then a comes back on index 2.
                20 => owners = vec![("b".to_string(), 1), ("c".to_string(), 2)],
                30 => owners = vec![("a".to_string(), 2), ("b".to_string(), 1)],
                _ => {}
            }
            // Only one index moves in any second, every third second; the rest are idle.
            // (An index nobody owns does not count in the kernel.)
            let i = (s / 3 % 3) as usize;
            if s % 3 == 0
                && let Some((id, _)) = owners.iter().find(|(_, x)| *x as usize == i)
            {
                kernel[i][0][1].bytes += 1000 + s;
                let k = ["a", "b", "c"].iter().position(|n| n == id).unwrap_or(0);
                want[k] += 1000 + s;
            }
            r.update(t0 + Duration::from_secs(s), &owners, |i| {
                Ok::<_, String>(kernel[i as usize])
            });
        }
        for (k, id) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(
                r.total(id).map(|c| c[0][1].bytes),
                Some(want[k]),
                "{id}'s total"
            );
        }
        assert_eq!(r.totals()[0][1].bytes, want.iter().sum::<u64>());
        assert_eq!(r.len(), 3);
        let all: u64 = r.all().iter().map(|(_, c)| c[0][1].bytes).sum();
        assert_eq!(all, want.iter().sum::<u64>());
        // b (index 1) moved at seconds 21, 30 and 39: the ten seconds from 29 to 39 hold
        // the last two.
        let b = r.recent("b").expect("known");
        assert_eq!(b.seconds, 10.0);
        assert_eq!(b.delta[0][1].bytes, 1030 + 1039);
    }

    #[test]
    fn adopted_maps_count_this_run_from_the_first_reading() {
        let r = Readings::default();
        r.set_maps_adopted(true);
        let t0 = Instant::now();
        let owners = [("alice".to_string(), 0u32)];
        r.update(t0, &owners, |_| Ok::<_, String>(reading(90_000, 4)));
        r.update(t0 + Duration::from_secs(1), &owners, |_| {
            Ok::<_, String>(reading(91_000, 5))
        });
        let total = r.total("alice").expect("known");
        assert_eq!(
            total[0][1].bytes, 1000,
            "the earlier daemon's bytes are not this run's"
        );
        assert_eq!(total[0][1].dropped_packets, 1);
    }

    #[test]
    fn owners_are_looked_up_once_per_policy() {
        let policy = Arc::new(
            peerwarden_policies::load_str(
                "plans: { p: { rate: { down: 10mbit, up: 1mbit } } }\ndefault_plan: p\nsubscribers:\n  - { id: a, prefixes: [100.64.0.1/32] }\n  - { id: b, prefixes: [100.64.0.2/32] }\n",
                "t.yaml",
            )
            .expect("valid"),
        );
        let asked = std::cell::Cell::new(0);
        let id_of = |i: u32| {
            asked.set(asked.get() + 1);
            match i {
                3 => Some("a".to_string()),
                5 => Some("b".to_string()),
                _ => None,
            }
        };
        let mut o = Owners::default();
        assert_eq!(
            o.current(Some(policy.clone()), 100, id_of),
            &[("a".to_string(), 3), ("b".to_string(), 5)]
        );
        assert_eq!(asked.get(), 6, "stops once both are found");
        o.current(Some(policy.clone()), 100, id_of);
        assert_eq!(asked.get(), 6, "same policy: not asked again");
        assert!(o.current(None, 100, id_of).is_empty());
    }
}
