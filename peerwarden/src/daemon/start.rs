//! The daemon's start, in the order that keeps a refused start harmless: what can be
//! checked without the kernel is checked first (host, instance lock, API socket,
//! certificate, namespace, interfaces, policy), then the probe is loaded and attached, the
//! policy installed, and the [`State`] made whole. A start that fails after the probe is
//! loaded removes what it created ([`abandon`]).

use std::{net::TcpListener, sync::Arc};

use anyhow::{Context as _, anyhow};
use peerwarden_policies::Policy;
use tracing::info;

use super::{enforcer::Enforcer, observe, preflight};
use crate::{
    api,
    config::{Config, Mode},
    history::{History, Retention},
    policy_clock::PolicyClock,
    policy_store::{ApplyHook, PolicyStore, ReplaceError},
    probe::pins::{InstanceLock, PinDir},
    probe::{Attachment, PROG_DOWNLINK, PROG_UPLINK, Probe, ProbeOptions},
    readings::Readings,
    shaping::Shaper,
    state::{DeepState, State, StateOptions},
};

/// What the daemon holds before it touches the kernel.
pub(super) struct Host {
    /// The instance's pin directory.
    pub pins: PinDir,
    /// Held until the process exits: a second daemon on the same instance is refused
    /// before it touches anything (the maps and links are pinned per instance; see pin.rs).
    pub lock: InstanceLock,
    /// The API's socket, bound in the namespace the daemon was started in.
    pub listener: TcpListener,
    /// The API's TLS configuration, if any.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The API's limits, hosts and read token.
    pub api: api::serve::Settings,
}

/// Checks the host, takes the instance's lock, binds the API, enters the gateway's
/// namespace and checks its interfaces.
pub(super) fn host(config: &Config) -> anyhow::Result<Host> {
    preflight::check_host()?;
    let pins = PinDir::new(&config.instance_name()).context("the instance's pin directory")?;
    let lock = pins.lock()?;
    // Bound before entering the gateway's namespace, so operators reach the API from the
    // namespace they started the daemon in.
    let listener = TcpListener::bind(config.api.listen)
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
    let api = api::serve::Settings::new(config).map_err(anyhow::Error::msg)?;
    if let Some(ns) = &config.netns {
        preflight::enter_netns(ns)?;
    }
    let ns = config.netns.as_deref();
    if config.mode != Mode::Observe {
        preflight::check_interface("downlink", &config.interfaces.downlink, ns)?;
        preflight::check_interface("uplink", &config.interfaces.uplink, ns)?;
    } else if let Some(mirror) = &config.interfaces.mirror {
        preflight::check_interface("mirror", mirror, ns)?;
    }
    Ok(Host {
        pins,
        lock,
        listener,
        tls,
        api,
    })
}

/// The configured policy file, read and validated: its text, where it came from, and the
/// model, installed later without validating it again.
pub(super) struct InitialPolicy {
    source: String,
    origin: String,
    policy: Policy,
}

/// Reads and validates the policy file before anything touches the kernel: an invalid one
/// refuses the start with nothing attached. `None` without a policy file.
pub(super) fn policy(config: &Config) -> anyhow::Result<Option<InitialPolicy>> {
    let Some(path) = &config.policy else {
        return Ok(None);
    };
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    let origin = path.display().to_string();
    match peerwarden_policies::load_str(&source, &origin) {
        Ok(policy) => Ok(Some(InitialPolicy {
            source,
            origin,
            policy,
        })),
        Err(e) => {
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
            Err(anyhow!("the policy is not valid: {first}{more}"))
        }
    }
}

/// The probe loaded and attached, the policy in force, and the state the threads and the
/// API share.
pub(super) struct DataPath {
    pub probe: Arc<Probe>,
    pub enforcer: Arc<Enforcer>,
    pub state: Arc<State>,
}

/// Loads (or adopts) the probe, opens the history store, attaches, installs `policy` and
/// makes the state.
pub(super) fn data_path(
    config: &Config,
    pins: &PinDir,
    policy: Option<InitialPolicy>,
) -> anyhow::Result<DataPath> {
    // The maps and links are pinned per instance (pin.rs): a daemon that finds its
    // instance's pins adopts them, with their counters, flows and policy.
    let mut probe = Probe::load_pinned(
        ProbeOptions {
            flow_table_size: config.flow_table_size,
            max_subscribers: config.max_subscribers,
        },
        pins,
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
    // The swarm view (off by default); its key lives beside the store opened above.
    let swarms = match crate::swarms::Swarms::from_config(config) {
        Ok(s) => s,
        Err(e) => return Err(abandon(probe, e)),
    };
    // The kernel hands the view the packets its own fingerprints decide as BitTorrent.
    if let Err(e) = probe.set_swarm_view(swarms.is_some()) {
        return Err(abandon(
            probe,
            anyhow!(e).context("turning on the swarm view"),
        ));
    }
    let attachments = match attach(&mut probe, config) {
        Ok(a) => a,
        Err(e) => return Err(abandon(probe, e)),
    };
    for a in &attachments {
        info!(interface = %a.interface, program = a.program, mode = a.mode,
            link_id = ?a.link_id, program_id = ?a.program_id, adopted = a.adopted, "attached");
    }
    if probe.adopted() && policy.is_none() && probe.policy_live() {
        // The adopted maps still enforce the last daemon's policy; this one has none.
        probe
            .clear_policy()
            .context("clearing the adopted policy")?;
        info!("no policy configured: the adopted policy is cleared");
    }
    let observe = config.mode == Mode::Observe;
    let shaper = (!observe)
        .then(|| Shaper::new(&config.interfaces.uplink, &config.interfaces.downlink))
        .transpose()
        .context("setting up shaping")?;
    if let Some(s) = &shaper {
        let queues = s.queues();
        let cpus = probe
            .set_shape_layout(queues)
            .context("setting up shaping's CPU steering")?;
        info!(
            up_queues = queues[0],
            down_queues = queues[1],
            cpus,
            "shaping layout"
        );
    }
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
        Box::new(move |move_clock: &dyn Fn()| match enforcer.upgrade() {
            Some(e) => e.tick_after(move_clock),
            None => {
                move_clock();
                Ok(false)
            }
        })
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
    if let Some(p) = policy
        && let Err(e) = store.install(p.source, &p.origin, p.policy)
    {
        let e = anyhow!(
            "the policy {} could not be installed: {}",
            p.origin,
            replace_error_line(&e)
        );
        // The store's hook holds the enforcer and a probe handle: both go before the probe.
        drop((store, enforcer));
        return Err(match Arc::into_inner(probe) {
            Some(probe) => abandon(probe, e),
            None => e,
        });
    }
    let subscribers = Arc::new(Readings::default());
    subscribers.set_maps_adopted(probe.adopted());
    let observe_mirror = config.interfaces.mirror.clone().filter(|_| observe);
    if let Some(mirror) = &observe_mirror {
        info!(mirror = %mirror, "observe-only mode: every packet is passed unchanged");
    }
    let state = Arc::new(State::new(StateOptions {
        attachments,
        recent_seconds: config.history_seconds,
        flow_table_size: config.flow_table_size,
        policy: store,
        api_token: config.api_token(),
        api_read_token: config.api.read_token.clone(),
        deep: Arc::new(DeepState {
            swarms,
            ..DeepState::default()
        }),
        clock,
        store: Some(Arc::new(history)),
        subscribers,
        subscriber_series_limit: config.metrics.subscriber_series_limit,
        observe_mirror,
        alto: config.alto.clone(),
    }));
    Ok(DataPath {
        probe,
        enforcer,
        state,
    })
}

/// Attaches the programs: inline, XDP on both interfaces and TC egress for shaping;
/// observe-only, one program on the mirror port (no TC programs, no shaping).
fn attach(probe: &mut Probe, config: &Config) -> anyhow::Result<Vec<Attachment>> {
    if config.mode == Mode::Observe {
        return Ok(vec![observe::attach(probe, config)?]);
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
}

/// A start that failed after the probe was loaded: the pins this start created go (an
/// adopted instance stays as it was, attached and enforcing), and `e` is returned.
fn abandon(mut probe: Probe, e: anyhow::Error) -> anyhow::Error {
    if !probe.adopted()
        && let Err(cleanup) = probe.detach_all()
    {
        tracing::warn!(error = %cleanup, "removing the pins of a failed start");
    }
    e
}

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
