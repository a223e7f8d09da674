//! The threads that run once a second until the daemon stops: the per-label counters, the
//! per-subscriber counters, the flow table, the policy's schedules and the policy file.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use peerwarden_classifier::{
    catalogue,
    hosts::HostList,
    shape::{self, Shape},
    shape_walk::{self, Reading, ShapeWalk},
};
use peerwarden_common::{Confidence, FlowKey, FlowValue, Label, deep::Verdict, policy::SubUsage};
use peerwarden_ipfix::parts::{self, PartWalk};
use tracing::{error, info, warn};

use super::enforcer::Enforcer;
use crate::{
    config::Config,
    history::History,
    probe::{FlowBuf, Probe, ProbeError},
    readings::{Owners, Readings},
    state::{DeepState, LabelReading, State},
    supervision::{STALL_BOUND, supervised},
};

/// How often the counters are read.
const TICK: Duration = Duration::from_secs(1);

/// Every this many passes (one a second) the subscriber reader reads every owner's
/// counters, not only those the kernel flagged as changed: a safety net for a flag taken
/// by a daemon that died before reading, and the first pass after a start.
const FULL_PASS_EVERY: u64 = 60;

/// Starts the reader threads; each stops within 50 ms of `stop` being set.
pub(super) fn spawn(
    config: &Config,
    probe: &Arc<Probe>,
    state: &Arc<State>,
    enforcer: &Arc<Enforcer>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<thread::JoinHandle<()>>> {
    Ok(vec![
        spawn_reader("counters", state, stop, {
            let (probe, state) = (probe.clone(), state.clone());
            move || read_counters(&probe, &state)
        })?,
        // Its own thread: the read is cheap (the mapped array, 0.1 us per subscriber), but
        // the rates and the store's rows cost about 10 us per subscriber (docs/benchmarks.md),
        // and must not hold back the per-label readings with many subscribers.
        spawn_reader("subscribers", state, stop, {
            let (probe, state, enforcer) = (probe.clone(), state.clone(), enforcer.clone());
            let mut owners = Owners::default();
            let mut passes = 0u64;
            move || {
                let active = state.policy.active().map(|a| a.policy);
                let owners = owners.current(active, probe.options().max_subscribers, |i| {
                    enforcer.subscriber_id(i)
                });
                read_subscribers(
                    &probe,
                    &state.subscribers,
                    state.store().map(|h| &**h),
                    owners,
                    passes.is_multiple_of(FULL_PASS_EVERY),
                );
                passes += 1;
            }
        })?,
        spawn_reader("flows", state, stop, {
            let (probe, state) = (probe.clone(), state.clone());
            let table = probe.options().flow_table_size as usize;
            let mut shapes = ShapeWalk::new(table.min(shape_walk::MAX_FOLLOWED));
            // A table larger than a step's budget is read a part a second.
            let mut parts = parts::is_parted(table).then(|| PartWalk::for_table(table));
            let mut buf = FlowBuf::default();
            move || {
                let step = parts.as_mut().map(|w| (w, &mut buf));
                if !read_flows(&probe, &state, &mut shapes, step) {
                    parts = None;
                }
            }
        })?,
        spawn_reader("schedule", state, stop, {
            let enforcer = enforcer.clone();
            move || {
                if let Err(e) = enforcer.tick() {
                    warn!(error = %format!("{e:#}"), "re-installing the policy for its schedule");
                }
            }
        })?,
        spawn_reader("policy-file", state, stop, {
            let (state, path) = (state.clone(), config.policy.clone());
            let mut seen = path.as_deref().and_then(modified);
            move || {
                let Some(path) = &path else { return };
                let now = modified(path);
                if now != seen {
                    seen = now;
                    reload_file(&state, path, "file change");
                }
            }
        })?,
    ])
}

/// Runs `tick` every second on its own thread (`read-{name}`) until `stop` is set,
/// supervised: it beats once per pass (a busy pass is far shorter than the stall bound),
/// and a panic is recorded in `state.threads`. The history store is written by the counters
/// and subscribers readers (once a minute, when a minute has ended), so their supervision is
/// the history writer's.
fn spawn_reader(
    name: &str,
    state: &State,
    stop: &Arc<AtomicBool>,
    mut tick: impl FnMut() + Send + 'static,
) -> anyhow::Result<thread::JoinHandle<()>> {
    let stop = stop.clone();
    let name = format!("read-{name}");
    let heartbeat = state.threads.register(&name, STALL_BOUND);
    thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            supervised(&heartbeat, || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    heartbeat.beat();
                    tick();
                    // Sleep out the rest of the second in slices, to notice `stop` quickly.
                    while started.elapsed() < TICK && !stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .with_context(|| format!("starting the {name} thread"))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Re-reads the policy file; an invalid one is rejected whole and the running one stays.
pub(super) fn reload_file(state: &State, path: &Path, why: &str) {
    match std::fs::read_to_string(path) {
        Ok(source) => {
            if state
                .policy
                .replace(source, &path.display().to_string())
                .is_ok()
            {
                info!(path = %path.display(), why, "policy reloaded");
            }
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "reading the policy; the running one stays")
        }
    }
}

/// Re-reads the operator's service file into the deep tier's host list; an invalid one
/// changes nothing (the running catalogue stays) and is logged with its first problem.
pub(super) fn reload_services(deep: &DeepState, path: &Path, why: &str) {
    match HostList::load_services(path) {
        Ok(hosts) => {
            deep.hosts.replace(hosts);
            info!(path = %path.display(), why, "service file reloaded");
        }
        Err(e) => error!(
            why,
            "the service file is not valid; the running catalogue stays: {}",
            catalogue::summary(&e)
        ),
    }
}

fn read_counters(probe: &Probe, state: &State) {
    let (at, wall) = (Instant::now(), SystemTime::now());
    match probe.counters() {
        Ok(counters) => {
            if let Some(h) = state.store() {
                h.record_labels(wall, &counters);
            }
            state.push_reading(LabelReading { at, counters });
        }
        Err(e) => warn!(error = %e, "reading counters"),
    }
    match probe.stats() {
        Ok(stats) => state.set_stats(stats),
        Err(e) => warn!(error = %e, "reading probe statistics"),
    }
}

/// Walks the flow table for `/flows`, and follows the shape of TLS and QUIC flows without
/// a service (classifier's `shape`): a flow found to be adaptive streaming is named
/// `video.behavioural` for the reports and its label handed to the kernel, which applies
/// it on one of the flow's next packets (ebpf/src/flow.rs, `shape_verdict`).
///
/// With `parts` (a table larger than a step's budget: `peerwarden_ipfix::parts`) only the
/// next part of the table is read, and lands in the snapshot in place; the flows the shape
/// walk follows are looked up one by one, so their deltas stay a second's. Returns false
/// when the kernel has no batch lookups (the caller gives the walk in parts up).
fn read_flows(
    probe: &Probe,
    state: &State,
    shapes: &mut ShapeWalk<FlowKey>,
    parts: Option<(&mut PartWalk, &mut FlowBuf)>,
) -> bool {
    let reading = |k: &FlowKey, v: &FlowValue| Reading {
        last_seen_ns: v.last_seen_ns,
        bytes: v.bytes,
        candidate: matches!(Label::from_id(v.label), Label::Tls | Label::Quic)
            && !state.deep.services.contains_key(k),
    };
    let store = state.store().map(|h| &**h);
    let swarms = state.deep.swarms.as_ref().inspect(|swarms| {
        swarms.set_policy(state.policy.active().map(|a| a.policy));
    });
    let part = parts.map(|(w, buf)| {
        let step = w.step();
        (probe.flows_part_into(step.from, step.budget, buf), w, buf)
    });
    let part = match part {
        Some((Ok(Some(next)), walk, buf)) => Some((&buf.entries, next, walk)),
        Some((Err(e), _, _)) => {
            warn!(error = %e, "walking a part of the flow table");
            return true;
        }
        Some((Ok(None), _, _)) | None => None,
    };
    let batch = part.is_some();
    let found = match part {
        Some((part, next, walk)) => {
            let found = shapes.pass_part(part.iter().map(|(k, v)| (*k, reading(k, v))), |k| {
                probe.flow(k).ok().flatten().map(|v| reading(k, &v))
            });
            walk.land(&state.flows, part, next);
            if !state.deep.services.is_empty() {
                state.deep.services.retain(|k, _| walk.holds(k));
            }
            if let Some(swarms) = swarms {
                let all = state.flows.slices();
                swarms.walk(all.iter().flat_map(|s| s.iter()), store);
            }
            found
        }
        // A small table (or no batch lookups): the whole table.
        None => {
            let flows = match probe.flows() {
                Ok(flows) => flows,
                Err(e) => {
                    warn!(error = %e, "walking the flow table");
                    return true;
                }
            };
            let found = shapes.pass(flows.iter().map(|(k, v)| (*k, reading(k, v))));
            if let Some(swarms) = swarms {
                swarms.walk(&flows, store);
            }
            state.set_flows(flows);
            found
        }
    };
    let label = Shape::verdict().label.id();
    for key in found {
        state.deep.services.insert(key, shape::SERVICE.to_string());
        let v = Verdict {
            label,
            confidence: Confidence::Behaviour as u8,
            final_: 1,
        };
        if let Err(e) = probe.put_verdict(&key, v) {
            warn!(error = %e, "handing a shape verdict to the kernel");
        }
    }
    batch
}

/// Reads every owner's per-subscriber counters into `readings` and the history store
/// (`full`: every owner, not only those the kernel flagged as changed).
pub(super) fn read_subscribers(
    probe: &Probe,
    readings: &Readings,
    history: Option<&History>,
    owners: &[(String, u32)],
    full: bool,
) {
    let (at, wall) = (Instant::now(), SystemTime::now());
    // Which owners' counters moved since the last pass: the kernel flags them. Each flag is
    // taken (cleared) before the counters are read, so what changes after the read is
    // flagged again for the next pass; on a full pass every owner is read all the same.
    let seen = probe.seen_map();
    let mut moved = vec![0u64; (probe.options().max_subscribers as usize).div_ceil(64)];
    for (_, i) in owners {
        if (seen.take(*i) || full)
            && let Some(w) = moved.get_mut(*i as usize / 64)
        {
            *w |= 1 << (i % 64);
        }
    }
    let has_moved = |i: u32| {
        moved
            .get(i as usize / 64)
            .is_none_or(|w| w & (1 << (i % 64)) != 0)
    };
    // Each moved owner's counters are copied out of the mapped kernel array (no system
    // call) once, into the store's buffer, and handed to the rates and the store in one
    // pass over the owners: the array is larger than the caches (1,248 bytes a subscriber).
    // The store's write of the minute that has ended (about a second at 100,000 active
    // subscribers) comes first, before the pass takes the rates' lock, which the API's
    // subscriber routes wait for.
    if let Some(h) = history {
        h.flush_if_due(wall);
    }
    let mut pass = readings.usage_pass(at, owners);
    let mut one = |i: u32, into: &mut SubUsage| -> bool {
        if !pass.must() && !has_moved(i) {
            pass.next(Ok::<_, ProbeError>(None));
            return false;
        }
        match probe.subscriber_usage(i) {
            Ok(u) => {
                *into = u;
                pass.next(Ok::<_, ProbeError>(Some(&*into)));
                true
            }
            Err(e) => {
                pass.next(Err(e));
                false
            }
        }
    };
    match history {
        Some(h) => h.record_subscribers_into(wall, owners, one),
        None => {
            let mut buf = SubUsage::default();
            for (_, i) in owners {
                one(*i, &mut buf);
            }
        }
    }
}

#[cfg(test)]
#[path = "readers_tests.rs"]
mod tests;
