//! The gateway daemon: checks the host, binds the API, enters the gateway's namespace,
//! loads and attaches the probe, reads its maps every second, serves the API, and detaches
//! everything on SIGINT/SIGTERM.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use tracing::{error, info, warn};

use crate::{
    api,
    config::Config,
    preflight,
    probe::{PROG_DOWNLINK, PROG_UPLINK, Probe},
    policy_store::{PolicyStore, ReplaceError},
    state::{Sample, State, StateOptions},
};

/// One line for a refused policy: the first error with its position, and how many more.
fn replace_error_line(e: &ReplaceError) -> String {
    match e {
        ReplaceError::Invalid(errors) => {
            let more = errors.len().saturating_sub(1);
            let first = errors.first().map(|e| format!("{}:{}: {}", e.line, e.column, e.message)).unwrap_or_default();
            if more > 0 { format!("{first} (and {more} more; run peerwarden policy check)") } else { first }
        }
        ReplaceError::Apply(msg) => msg.clone(),
    }
}

/// How often the counters are read.
const TICK: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    preflight::check_host()?;
    // Bound before entering the gateway's namespace, so operators reach the API from the
    // namespace they started the daemon in.
    let listener = std::net::TcpListener::bind(config.api.listen)
        .with_context(|| format!("binding the API to {}", config.api.listen))?;
    listener.set_nonblocking(true).context("configuring the API socket")?;
    if let Some(ns) = &config.netns {
        preflight::enter_netns(ns)?;
    }
    let ns = config.netns.as_deref();
    preflight::check_interface("downlink", &config.interfaces.downlink, ns)?;
    preflight::check_interface("uplink", &config.interfaces.uplink, ns)?;

    let mut probe = Probe::load(config.flow_table_size).context("loading the kernel probe")?;
    let attachments = vec![
        probe.attach(PROG_DOWNLINK, &config.interfaces.downlink)?,
        probe.attach(PROG_UPLINK, &config.interfaces.uplink)?,
    ];
    for a in &attachments {
        info!(interface = %a.interface, program = a.program, mode = a.mode, "attached");
    }
    let store = PolicyStore::new(None);
    if let Some(path) = &config.policy {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("reading the policy {}", path.display()))?;
        if let Err(e) = store.replace(source, &path.display().to_string()) {
            return Err(anyhow!("the policy {} is not valid: {}", path.display(), replace_error_line(&e)));
        }
    }
    let state = Arc::new(State::new(StateOptions {
        attachments,
        history_seconds: config.history_seconds,
        flow_table_size: config.flow_table_size,
        policy: store,
        api_token: config.api_token(),
    }));
    let probe = Arc::new(probe);
    let stop = Arc::new(AtomicBool::new(false));
    let readers = [
        spawn_reader("counters", &stop, {
            let (probe, state) = (probe.clone(), state.clone());
            move || read_counters(&probe, &state)
        })?,
        spawn_reader("flows", &stop, {
            let (probe, state) = (probe.clone(), state.clone());
            move || read_flows(&probe, &state)
        })?,
    ];

    let served = serve(listener, state);
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        if r.join().is_err() {
            error!("a map reader panicked");
        }
    }
    let mut probe = Arc::into_inner(probe).ok_or_else(|| anyhow!("probe still shared at shutdown"))?;
    probe.detach_all().context("detaching the probe")?;
    info!("detached from both interfaces");
    served
}

fn serve(listener: std::net::TcpListener, state: Arc<State>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("API socket")?;
        info!(addr = %listener.local_addr()?, "API listening");
        axum::serve(listener, api::app(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving the API")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        error!("cannot install signal handlers; stop with SIGKILL (programs detach when the process exits)");
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
    match probe.counters() {
        Ok(counters) => state.push_sample(Sample { at: Instant::now(), counters }),
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
