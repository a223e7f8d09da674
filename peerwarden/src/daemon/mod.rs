//! The gateway daemon: checks the host, binds the API, enters the gateway's namespace,
//! loads and attaches the probe, reads its maps every second, serves the API, and detaches
//! everything on SIGINT/SIGTERM.
//!
//! - `start.rs`: the checks, the API socket, the policy file, the probe loaded and attached,
//!   the state made whole;
//! - `readers.rs`: the threads that read the maps every second (counters, subscribers,
//!   flows), tick the schedules and watch the policy file;
//! - `deep.rs`: the deep tier, which classifies the payload samples the kernel hands up;
//! - `enforcer.rs`: the policy in force in the kernel, compiled again when a schedule turns;
//! - `observe.rs`: observe-only mode on a mirror port;
//! - `serve.rs`: the API until SIGINT or SIGTERM, SIGHUP re-reading the policy file;
//! - `shutdown.rs`: everything the running daemon owns, stopped in one stated order.

mod deep;
mod enforcer;
mod observe;
pub mod preflight;
mod readers;
mod serve;
mod shutdown;
mod start;

use std::sync::{Arc, atomic::AtomicBool};

use crate::{config::Config, ipfix::Exporter};
use shutdown::Running;

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    // 1. What needs no kernel: the host, the instance's lock, the API socket and
    //    certificate, the gateway's namespace and interfaces, the policy file.
    let host = start::host(&config)?;
    let policy = start::policy(&config)?;
    // 2. The probe loaded (or adopted) and attached, the policy installed, the state made.
    let data = start::data_path(&config, &host.pins, policy)?;
    // 3. The threads: the readers, the IPFIX exporter and the deep tier.
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = readers::spawn(&config, &data.probe, &data.state, &data.enforcer, &stop)?;
    let ipfix = (config.ipfix.as_ref())
        .map(|x| Exporter::start(x, data.state.clone(), stop.clone(), data.probe.adopted()))
        .transpose()?;
    threads.extend(deep::spawn(
        &data.probe,
        &data.state.deep,
        &stop,
        config.deep_max_flows,
    )?);
    let running = Running {
        stop,
        threads,
        ipfix,
        enforcer: data.enforcer,
        state: data.state,
        probe: data.probe,
        pins: host.pins,
        lock: host.lock,
        keep_attached: config.keep_attached_on_stop,
    };
    // 4. The API until SIGINT or SIGTERM.
    let served = serve::serve(
        host.listener,
        host.tls,
        running.state.clone(),
        config.policy.clone(),
    );
    // 5. Everything stopped in order; a failed detach is the daemon's error, then the API's.
    running.shutdown()?;
    served
}
