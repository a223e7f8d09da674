//! The gateway daemon: checks the host, binds the API, enters the gateway's namespace,
//! loads and attaches the probe, reads its maps every second, serves the API, and detaches
//! everything on SIGINT/SIGTERM.
//!
//! - `start.rs`: the checks, the API socket, the policy file, the probe loaded and attached,
//!   the state made whole;
//! - `readers.rs`: the threads that read the maps every second (counters, subscribers,
//!   flows), tick the schedules and watch the policy file;
//! - `deep/`: the deep tier, which classifies the payload samples the kernel hands up, on
//!   `deep_threads` shards by flow;
//! - `enforcer.rs`: the policy in force in the kernel, compiled again when a schedule turns;
//! - `observe.rs`: observe-only mode on a mirror port;
//! - `serve.rs`: the API until SIGINT or SIGTERM, SIGHUP re-reading the policy and service files, and
//!   the watchdog of the supervised threads ([`crate::supervision`]);
//! - `shutdown.rs`: everything the running daemon owns, stopped in one stated order.
//!
//! A supervised thread that panics or stalls makes the daemon stop (after a grace in
//! which `/healthz` answers 503) with the kernel side attached and pinned, and exit with
//! an error naming the thread, for systemd to restart it.

pub mod deep;
mod enforcer;
mod observe;
pub mod preflight;
mod readers;
mod serve;
mod shutdown;
mod start;

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::anyhow;
use peerwarden_classifier::{catalogue, hosts::HostList};

use crate::{config::Config, ipfix::Exporter, supervision::Fault};
use shutdown::Running;

/// Runs the daemon until SIGINT or SIGTERM (`Ok`), or until a supervised thread failed
/// (an error naming it).
pub fn run(config: Config) -> anyhow::Result<()> {
    // 1. What needs no kernel: the test hook's fault, the host, the instance's lock, the
    //    API socket and certificate, the gateway's namespace and interfaces, the policy,
    //    the service file.
    let fault = Fault::from_env().map_err(anyhow::Error::msg)?;
    let host = start::host(&config)?;
    let policy = start::policy(&config)?;
    let services = (config.services.as_deref())
        .map(HostList::load_services)
        .transpose()
        .map_err(|e| anyhow!("the service file is not valid: {}", catalogue::summary(&e)))?;
    // 2. The probe loaded (or adopted) and attached, the policy installed, the state made.
    let data = start::data_path(&config, &host.pins, policy)?;
    if let Some(hosts) = services {
        data.state.deep.hosts.replace(hosts);
    }
    if let Some(fault) = &fault {
        tracing::warn!(thread = %fault.thread, fault = ?fault.kind,
            "PEERWARDEN_FAULT: a fault is injected (a test hook; never set it in production)");
        data.state.threads.arm(fault.clone());
    }
    // 3. The threads: the readers, the IPFIX exporter and the deep tier.
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = readers::spawn(&config, &data.probe, &data.state, &data.enforcer, &stop)?;
    let ipfix = (config.ipfix.as_ref())
        .map(|x| Exporter::start(x, data.state.clone(), stop.clone(), data.probe.adopted()))
        .transpose()?;
    threads.extend(deep::spawn(
        &data.probe,
        &data.state.deep,
        &data.state.threads,
        &stop,
        deep::Settings {
            max_tracked: config.deep_max_flows,
            dns_entries: config.dns_hint_entries,
            threads: deep::threads(config.deep_threads),
        },
    )?);
    if let Some(fault) = &fault
        && !data
            .state
            .threads
            .health()
            .iter()
            .any(|t| t.name == fault.thread)
    {
        tracing::error!(thread = %fault.thread, "PEERWARDEN_FAULT names no supervised thread: nothing is injected");
    }
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
        host.api,
        running.state.clone(),
        config.policy.clone(),
        config.services.clone(),
    );
    // 5. Everything stopped in order; a failed detach is the daemon's error, then the API's.
    //    After a thread's failure the kernel side stays attached and pinned, as after a
    //    crash, and the failure is the error (a non-zero exit: systemd restarts the daemon).
    let failed = running.state.threads.first_failure();
    running.shutdown(failed.is_some())?;
    if let Some((thread, failure)) = failed {
        return Err(anyhow!(
            "the {thread} thread {failure}; stopped with the kernel side attached and pinned for the next daemon"
        ));
    }
    served
}
