//! The gateway daemon: checks the host, binds the API, enters the gateway's namespace,
//! loads and attaches the probe, reads its maps every second, serves the API, and detaches
//! everything on SIGINT/SIGTERM.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, anyhow};
use tracing::{error, info, warn};

use crate::{
    api,
    config::{Config, Mode},
    deep::{self, DeepState},
    enforce::Enforcer,
    history::{History, Retention},
    observe,
    pin::PinDir,
    policy_store::{ApplyHook, PolicyStore, ReplaceError},
    preflight,
    probe::{PROG_DOWNLINK, PROG_UPLINK, Probe, ProbeOptions},
    readings::Owners,
    schedule::PolicyClock,
    shaping::Shaper,
    state::{Sample, State, StateOptions},
};

/// One line for a refused policy: the first error with its position, and how many more.
fn replace_error_line(e: &ReplaceError) -> String {
    match e {
        ReplaceError::Invalid(errors) => {
            let more = errors.len().saturating_sub(1);
            let first = errors
                .first()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .unwrap_or_default();
            if more > 0 {
                format!("{first} (and {more} more; run peerwarden policy check)")
            } else {
                first
            }
        }
        ReplaceError::Apply(msg) => msg.clone(),
    }
}

/// How often the counters are read.
const TICK: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    preflight::check_host()?;
    // Held until the process exits: a second daemon on the same instance is refused before
    // it touches anything (the maps and links are pinned per instance; see pin.rs).
    let pins = PinDir::new(&config.instance_name()).context("the instance's pin directory")?;
    let _instance_lock = pins.lock()?;
    // Bound before entering the gateway's namespace, so operators reach the API from the
    // namespace they started the daemon in.
    let listener = std::net::TcpListener::bind(config.api.listen)
        .with_context(|| format!("binding the API to {}", config.api.listen))?;
    listener
        .set_nonblocking(true)
        .context("configuring the API socket")?;
    // The certificate is checked before anything touches the kernel.
    let tls = config
        .api
        .tls
        .as_ref()
        .map(api::tls::server_config)
        .transpose()?;
    let api_settings = api::serve::Settings::new(&config).map_err(anyhow::Error::msg)?;
    if let Some(ns) = &config.netns {
        preflight::enter_netns(ns)?;
    }
    let ns = config.netns.as_deref();
    let observe = config.mode == Mode::Observe;
    if !observe {
        preflight::check_interface("downlink", &config.interfaces.downlink, ns)?;
        preflight::check_interface("uplink", &config.interfaces.uplink, ns)?;
    } else if let Some(mirror) = &config.interfaces.mirror {
        preflight::check_interface("mirror", mirror, ns)?;
    }

    // The policy is validated before anything touches the kernel: an invalid one refuses
    // the start with nothing attached.
    let initial_policy = match &config.policy {
        Some(path) => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("reading the policy {}", path.display()))?;
            let origin = path.display().to_string();
            if let Err(e) = peerwarden_policies::load_str(&source, &origin) {
                let first = e
                    .errors()
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let more = e.errors().len().saturating_sub(1);
                let more = if more > 0 {
                    format!(" (and {more} more; run peerwarden policy check)")
                } else {
                    String::new()
                };
                return Err(anyhow!("the policy is not valid: {first}{more}"));
            }
            Some((source, origin))
        }
        None => None,
    };

    // The maps and links are pinned per instance (pin.rs): a daemon that finds its
    // instance's pins adopts them, with their counters, flows and policy.
    let mut probe = Probe::load_pinned(
        ProbeOptions {
            flow_table_size: config.flow_table_size,
            max_subscribers: config.max_subscribers,
        },
        &pins,
    )
    .context("loading the kernel probe")?;
    // The history store's readings belong to the maps' instance: with adopted maps they
    // are the base of the next difference, so nothing is lost or counted twice. A start it
    // cannot record refuses with nothing attached.
    let history = History::open(
        &config.history.path,
        probe.instance().unwrap_or_default(),
        Retention {
            minute_days: config.history.minute_retention_days,
            hour_days: config.history.hour_retention_days,
        },
    )
    .context("opening the history store");
    let history = match history {
        Ok(h) => h,
        Err(e) => return Err(abandon(probe, e)),
    };
    let attached = (|| -> anyhow::Result<Vec<crate::probe::Attachment>> {
        if observe {
            // One program on the mirror port; no TC programs, no shaping.
            return Ok(vec![observe::attach(&mut probe, &config)?]);
        }
        let mut attachments = vec![
            probe.attach(PROG_DOWNLINK, &config.interfaces.downlink)?,
            probe.attach(PROG_UPLINK, &config.interfaces.uplink)?,
        ];
        // TC egress: steers flows of `shape` rules into the HTB classes the shaper keeps.
        attachments.extend(
            probe
                .attach_tc_egress(&config.interfaces.uplink, &config.interfaces.downlink)
                .context("attaching the TC egress programs")?,
        );
        Ok(attachments)
    })();
    let attachments = match attached {
        Ok(a) => a,
        Err(e) => return Err(abandon(probe, e)),
    };
    for a in &attachments {
        info!(interface = %a.interface, program = a.program, mode = a.mode,
            link_id = ?a.link_id, program_id = ?a.program_id, adopted = a.adopted, "attached");
    }
    if probe.adopted() && initial_policy.is_none() && probe.policy_live() {
        // The adopted maps still enforce the last daemon's policy; this one has none.
        probe
            .clear_policy()
            .context("clearing the adopted policy")?;
        info!("no policy configured: the adopted policy is cleared");
    }
    let shaper = (!observe)
        .then(|| Shaper::new(&config.interfaces.uplink, &config.interfaces.downlink))
        .transpose()
        .context("setting up shaping")?;
    let observe_nets = observe.then(|| config.subscriber_networks());
    if let Some(nets) = &observe_nets {
        observe::set_networks(&probe, nets, None)?;
    }
    let probe = Arc::new(probe);
    let clock = Arc::new(PolicyClock::default());
    let enforcer = Enforcer::new(probe.clone(), clock.clone());
    let enforcer = Arc::new(match shaper {
        Some(shaper) => enforcer.with_shaper(shaper),
        None => enforcer,
    });
    // PUT /api/v1/clock re-evaluates the schedules at once. Weak: the clock lives in the
    // state, which must not keep the enforcer (and so the probe) alive at shutdown.
    clock.set_reevaluate({
        let enforcer = Arc::downgrade(&enforcer);
        Box::new(move || enforcer.upgrade().map_or(Ok(false), |e| e.tick()))
    });
    let hook: ApplyHook = {
        let enforcer = enforcer.clone();
        let probe = probe.clone();
        Box::new(move |policy| {
            // Observe mode: the policy's subscribers give packets their direction too.
            if let Some(nets) = &observe_nets {
                observe::set_networks(&probe, nets, Some(policy))?;
            }
            enforcer.apply(policy)
        })
    };
    let store = PolicyStore::new(Some(hook));
    if let Some((source, origin)) = initial_policy
        && let Err(e) = store.replace(source, &origin)
    {
        let e = anyhow!(
            "the policy {origin} could not be installed: {}",
            replace_error_line(&e)
        );
        drop((store, enforcer));
        return Err(match Arc::into_inner(probe) {
            Some(probe) => abandon(probe, e),
            None => e,
        });
    }
    let deep = Arc::new(DeepState::default());
    let state = Arc::new(State::new(StateOptions {
        attachments,
        history_seconds: config.history_seconds,
        flow_table_size: config.flow_table_size,
        policy: store,
        api_token: config.api_token(),
        deep: deep.clone(),
        clock: clock.clone(),
    }));
    let _ = state.history_store.set(Arc::new(history));
    state.subscribers.set_maps_adopted(probe.adopted());
    if let Some(mirror) = config.interfaces.mirror.as_ref().filter(|_| observe) {
        let _ = state.observe_mirror.set(mirror.clone());
        info!(mirror = %mirror, "observe-only mode: every packet is passed unchanged");
    }
    state
        .subscriber_series_limit
        .store(config.metrics.subscriber_series_limit, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let readers = [
        spawn_reader("counters", &stop, {
            let (probe, state) = (probe.clone(), state.clone());
            move || read_counters(&probe, &state)
        })?,
        // Its own thread: the read is cheap (the mapped array, 0.1 us per subscriber), but
        // the rates and the store's rows cost about 10 us per subscriber (docs/benchmarks.md),
        // and must not hold back the per-label readings with many subscribers.
        spawn_reader("subscribers", &stop, {
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
                    state.history_store.get().map(|h| &**h),
                    owners,
                    passes.is_multiple_of(FULL_PASS_EVERY),
                );
                passes += 1;
            }
        })?,
        spawn_reader("flows", &stop, {
            let (probe, state) = (probe.clone(), state.clone());
            move || read_flows(&probe, &state)
        })?,
        spawn_reader("schedule", &stop, {
            let enforcer = enforcer.clone();
            move || {
                if let Err(e) = enforcer.tick() {
                    warn!(error = %format!("{e:#}"), "re-installing the policy for its schedule");
                }
            }
        })?,
        spawn_reader("policy-file", &stop, {
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
    ];
    let ipfix = (config.ipfix.as_ref())
        .map(|x| {
            let adopted = probe.adopted();
            crate::ipfix::Exporter::start(x, state.clone(), stop.clone(), adopted)
        })
        .transpose()?;
    let deep_thread = match probe.take_samples() {
        Some(ring) => {
            let (probe, deep, stop) = (probe.clone(), deep.clone(), stop.clone());
            let cap = config.deep_max_flows;
            Some(
                thread::Builder::new()
                    .name("deep".into())
                    .spawn(move || deep::run(probe, ring, deep, stop, Vec::new(), cap))
                    .context("starting the deep classifier")?,
            )
        }
        None => None,
    };

    let served = serve(
        listener,
        tls,
        api_settings,
        state.clone(),
        config.policy.clone(),
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers.into_iter().chain(deep_thread) {
        if r.join().is_err() {
            error!("a daemon thread panicked");
        }
    }
    // Before the state goes: the exporter's thread holds it.
    let ipfix = ipfix.and_then(crate::ipfix::Exporter::join);
    if config.keep_attached_on_stop {
        info!("keep_attached_on_stop: the shaping qdiscs stay for the next daemon");
    } else if let Err(e) = enforcer.remove_shaping() {
        warn!(error = %format!("{e:#}"), "removing the shaping qdiscs");
    }
    drop(enforcer);
    // The state holds the policy store, whose hook holds the enforcer and so the probe:
    // keep what the last reading needs, and let the rest go.
    let (readings, history) = (
        state.subscribers.clone(),
        state.history_store.get().cloned(),
    );
    drop(state);
    let mut probe =
        Arc::into_inner(probe).ok_or_else(|| anyhow!("probe still shared at shutdown"))?;
    let detached = if config.keep_attached_on_stop {
        // An upgrade: the next daemon adopts the pinned links and maps.
        probe.keep_attached();
        info!(instance = %pins.name(), "keep_attached_on_stop: programs stay attached and pinned");
        Ok(())
    } else {
        probe.detach_all().context("detaching the probe")
    };
    // Flows not exported yet go out from a last walk of the table (after detaching; kept
    // attached, the next daemon takes its first reading as exported).
    if let Some(x) = ipfix {
        x.finish(probe.flows().ok());
    }
    // A last reading once nothing counts any more: the store gets every byte counted.
    if let Ok(c) = probe.counters() {
        let (bytes, packets) = c.iter().flatten().fold((0u64, 0u64), |(b, p), v| {
            (b.wrapping_add(v.bytes), p.wrapping_add(v.packets))
        });
        info!(
            bytes,
            packets, "last reading, after detaching: totals since start"
        );
        if let Some(h) = &history {
            h.record_labels(SystemTime::now(), &c);
        }
    }
    read_subscribers(
        &probe,
        &readings,
        history.as_deref(),
        &readings.owners(),
        true,
    );
    if let Some(h) = &history
        && let Err(e) = h.flush()
    {
        error!(error = %e, "writing the last of the history");
    }
    detached?;
    if !config.keep_attached_on_stop {
        info!("detached from both interfaces and unpinned");
    }
    served
}

/// A start that failed after the probe was loaded: the pins this start created go (an
/// adopted instance stays as it was, attached and enforcing), and `e` is returned.
fn abandon(mut probe: Probe, e: anyhow::Error) -> anyhow::Error {
    if !probe.adopted()
        && let Err(cleanup) = probe.detach_all()
    {
        warn!(error = %cleanup, "removing the pins of a failed start");
    }
    e
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Re-reads the policy file; an invalid one is rejected whole and the running one stays.
fn reload_file(state: &State, path: &std::path::Path, why: &str) {
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

fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: api::serve::Settings,
    state: Arc<State>,
    policy_path: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("API socket")?;
        info!(addr = %listener.local_addr()?, "API listening");
        if let Some(path) = policy_path {
            let state = state.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    let (state, path) = (state.clone(), path.clone());
                    let _ =
                        tokio::task::spawn_blocking(move || reload_file(&state, &path, "SIGHUP"))
                            .await;
                }
            });
        }
        match tls {
            Some(config) => {
                info!("API over TLS");
                let listener =
                    api::tls::TlsListener::new(listener, config).context("API socket")?;
                api::serve::run(listener, state, settings, shutdown_signal()).await
            }
            None => api::serve::run(listener, state, settings, shutdown_signal()).await,
        }
        .context("serving the API")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        error!(
            "cannot install signal handlers; stop with SIGKILL (programs detach when the process exits)"
        );
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => info!("SIGINT: shutting down"),
        _ = term.recv() => info!("SIGTERM: shutting down"),
    }
}

/// Runs `tick` every second on its own thread until `stop` is set.
fn spawn_reader(
    name: &str,
    stop: &Arc<AtomicBool>,
    mut tick: impl FnMut() + Send + 'static,
) -> anyhow::Result<thread::JoinHandle<()>> {
    let stop = stop.clone();
    thread::Builder::new()
        .name(format!("read-{name}"))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                tick();
                // Sleep out the rest of the second in slices, to notice `stop` quickly.
                while started.elapsed() < TICK && !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
            }
        })
        .with_context(|| format!("starting the {name} reader"))
}

fn read_counters(probe: &Probe, state: &State) {
    let (at, wall) = (Instant::now(), SystemTime::now());
    match probe.counters() {
        Ok(counters) => {
            if let Some(h) = state.history_store.get() {
                h.record_labels(wall, &counters);
            }
            state.push_sample(Sample { at, counters });
        }
        Err(e) => warn!(error = %e, "reading counters"),
    }
    match probe.stats() {
        Ok(stats) => state.set_stats(stats),
        Err(e) => warn!(error = %e, "reading probe statistics"),
    }
}

fn read_flows(probe: &Probe, state: &State) {
    match probe.flows() {
        Ok(flows) => state.set_flows(flows),
        Err(e) => warn!(error = %e, "walking the flow table"),
    }
}

/// Reads every owner's per-subscriber counters into `readings` and the history store.
/// Every this many passes (one a second) the subscriber reader reads every owner's
/// counters, not only those the kernel flagged as changed: a safety net for a flag taken
/// by a daemon that died before reading, and the first pass after a start.
const FULL_PASS_EVERY: u64 = 60;

fn read_subscribers(
    probe: &Probe,
    readings: &crate::readings::Readings,
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
    // The moved owners' counters are copied out of the mapped kernel array (no system
    // call), once for the rates and once for the store: cheaper than keeping a copy of all.
    readings.update_usage(at, owners, |i, must| {
        if must || has_moved(i) {
            probe.subscriber_usage(i).map(Some)
        } else {
            Ok(None)
        }
    });
    if let Some(h) = history {
        h.record_subscribers_with(wall, owners, |i| {
            has_moved(i)
                .then(|| probe.subscriber_usage(i).ok())
                .flatten()
        });
    }
}
