//! IPFIX export (RFC 7011) of finished flows, with their label, to a collector over UDP.
//!
//! A thread reads one slice of the daemon's flow table snapshot every second (the whole
//! table up to 65,536 flows; one of 16 slices at 1,048,576, so a record can be up to 16 s
//! late: `peerwarden_ipfix::tracker`, "Slices"), asks the tracker which flows are due
//! (idle, active timeout, gone from the table) and sends their records, encoded by `peerwarden_ipfix::encode`, to the collector. Templates go out with the first message and
//! again every `template_refresh` or every [`TEMPLATE_EVERY_MESSAGES`] messages, whichever
//! comes first (RFC 7011, section 8.4: over UDP templates are resent periodically). At a
//! clean stop the daemon hands the exporter the last walk of the kernel's table, taken
//! after the programs are detached, and everything not exported yet goes out.

use std::{
    fmt::Write as _,
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use peerwarden_common::{FlowKey, FlowValue, Label};
use peerwarden_policies::Policy;
use tracing::{info, warn};

use crate::{
    config::ipfix::IpfixConfig,
    ktime,
    state::{DeepState, State},
    supervision::{STALL_BOUND, supervised},
};
use peerwarden_ipfix::{
    encode::{Encoder, EndReason, FlowExport},
    tracker::{Due, Tracker},
};

/// Templates are resent at least every this many messages.
pub const TEMPLATE_EVERY_MESSAGES: u64 = 100;

/// Export counters, for `/metrics` (one exporter per process).
#[derive(Default)]
pub struct Counters {
    /// Whether an exporter runs (the series are shown only then).
    pub enabled: AtomicBool,
    /// Data records sent.
    pub records: AtomicU64,
    /// Messages sent.
    pub messages: AtomicU64,
    /// Messages that could not be sent.
    pub send_errors: AtomicU64,
    /// Records of flows that left the kernel's table before they were due.
    pub evicted: AtomicU64,
}

/// The process's export counters.
pub static COUNTERS: Counters = Counters {
    enabled: AtomicBool::new(false),
    records: AtomicU64::new(0),
    messages: AtomicU64::new(0),
    send_errors: AtomicU64::new(0),
    evicted: AtomicU64::new(0),
};

/// Appends the exporter's series to a Prometheus exposition (nothing without an exporter).
pub fn render_metrics(out: &mut String) {
    if !COUNTERS.enabled.load(Ordering::Relaxed) {
        return;
    }
    for (name, help, c) in [
        (
            "peerwarden_ipfix_records_total",
            "IPFIX data records sent to the collector.",
            &COUNTERS.records,
        ),
        (
            "peerwarden_ipfix_messages_total",
            "IPFIX messages sent to the collector.",
            &COUNTERS.messages,
        ),
        (
            "peerwarden_ipfix_send_errors_total",
            "IPFIX messages that could not be sent (their records are lost).",
            &COUNTERS.send_errors,
        ),
        (
            "peerwarden_ipfix_evicted_records_total",
            "IPFIX records of flows the kernel's LRU table dropped before they were idle.",
            &COUNTERS.evicted,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.load(Ordering::Relaxed)
        );
    }
}

/// What names a flow in its record: the active policy (subscriber ids) and the deep tier's
/// video service names.
struct Namer {
    policy: Option<Arc<Policy>>,
    deep: Arc<DeepState>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Namer {
    fn of(state: &State) -> Namer {
        Namer {
            policy: state.policy.active().map(|a| a.policy),
            deep: state.deep.clone(),
        }
    }

    fn export(&self, d: &Due) -> FlowExport {
        let (k, v): (&FlowKey, &FlowValue) = (&d.key, &d.value);
        let label = Label::from_id(v.label);
        let src = k.sub_ip();
        let name = match self.deep.services.get(k) {
            Some(service) if label == Label::VideoService => format!("video.{}", *service),
            _ => label.name().to_string(),
        };
        FlowExport {
            proto: k.proto,
            src,
            sport: k.sub_port,
            dst: k.remote_ip(),
            dport: k.remote_port,
            bytes: d.bytes,
            packets: d.packets,
            start_ms: unix_ms(ktime::wall_time(v.first_seen_ns)),
            end_ms: unix_ms(ktime::wall_time(v.last_seen_ns)),
            reason: d.reason,
            label_id: label.id(),
            label: name,
            class: label.class().name().to_string(),
            subscriber: self
                .policy
                .as_ref()
                .and_then(|p| p.subscriber_for(src))
                .map(|s| s.id.clone())
                .unwrap_or_default(),
        }
    }
}

/// The sending side: socket, encoder and when templates are due.
struct Sender {
    socket: UdpSocket,
    collector: SocketAddr,
    encoder: Encoder,
    template_refresh: Duration,
    last_templates: Option<(Instant, u64)>,
    last_warning: Option<Instant>,
}

impl Sender {
    fn send(&mut self, dues: &[Due], namer: &Namer) {
        let mut records: Vec<FlowExport> = dues.iter().map(|d| namer.export(d)).collect();
        // One data set per template where possible.
        records.sort_by_key(FlowExport::template);
        let messages = COUNTERS.messages.load(Ordering::Relaxed);
        let templates = self.last_templates.is_none_or(|(at, n)| {
            at.elapsed() >= self.template_refresh
                || messages.saturating_sub(n) >= TEMPLATE_EVERY_MESSAGES
        });
        if records.is_empty() && !templates {
            return;
        }
        if templates {
            self.last_templates = Some((Instant::now(), messages));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let evicted = dues
            .iter()
            .filter(|d| d.reason == EndReason::LackOfResources)
            .count() as u64;
        COUNTERS.evicted.fetch_add(evicted, Ordering::Relaxed);
        for (m, n) in self.encoder.encode(&records, templates, now) {
            match self.socket.send_to(&m, self.collector) {
                Ok(_) => {
                    COUNTERS.messages.fetch_add(1, Ordering::Relaxed);
                    COUNTERS.records.fetch_add(u64::from(n), Ordering::Relaxed);
                }
                Err(e) => {
                    COUNTERS.send_errors.fetch_add(1, Ordering::Relaxed);
                    if self
                        .last_warning
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                    {
                        self.last_warning = Some(Instant::now());
                        warn!(collector = %self.collector, error = %e,
                            "sending IPFIX (further errors this minute are only counted)");
                    }
                }
            }
        }
    }
}

/// A running exporter.
pub struct Exporter {
    thread: thread::JoinHandle<(Tracker, Sender, Namer)>,
}

impl Exporter {
    /// Opens the socket (in the daemon's namespace: the collector must be reachable from
    /// the gateway's) and starts the export thread, which reads `state`'s flow snapshot
    /// every second until `stop` is set. With `adopted` maps (an earlier daemon kept them
    /// attached and exported their flows at its stop), the first reading counts as exported.
    pub fn start(
        config: &IpfixConfig,
        state: Arc<State>,
        stop: Arc<AtomicBool>,
        adopted: bool,
    ) -> anyhow::Result<Exporter> {
        let bind: SocketAddr = if config.collector.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).context("opening the IPFIX socket")?;
        let mut sender = Sender {
            socket,
            collector: config.collector,
            encoder: Encoder::new(config.observation_domain, config.max_message_size),
            template_refresh: config.template_refresh,
            last_templates: None,
            last_warning: None,
        };
        let mut tracker = Tracker::with_slicer(
            config.idle_timeout.as_nanos() as u64,
            config.active_timeout.as_nanos() as u64,
            state.flows.slicer(),
        );
        COUNTERS.enabled.store(true, Ordering::Relaxed);
        info!(collector = %config.collector, domain = config.observation_domain,
            idle = ?config.idle_timeout, active = ?config.active_timeout, "IPFIX export on");
        // Supervised as `ipfix` (docs/reliability.md, "Supervision"): a beat each second.
        let heartbeat = state.threads.register("ipfix", STALL_BOUND);
        let thread = thread::Builder::new()
            .name("ipfix".into())
            .spawn(move || {
                supervised(&heartbeat, || {
                    let mut namer = Namer::of(&state);
                    let (mut baseline, began) = (adopted, Instant::now());
                    while !stop.load(Ordering::Relaxed) {
                        heartbeat.beat();
                        let started = Instant::now();
                        namer = Namer::of(&state);
                        // The adopted table is read whole once the flow reader has walked
                        // it (an empty one for 3 s was empty).
                        if baseline && !state.flows.is_empty() {
                            baseline = false;
                            let reading: Vec<(FlowKey, FlowValue)> =
                                state.flows.iter().map(|e| (*e.key(), *e.value())).collect();
                            tracker.adopt(reading, ktime::monotonic_ns());
                            continue;
                        }
                        baseline &= began.elapsed() < Duration::from_secs(3);
                        // This second's slice of the last walk (the snapshot keeps the
                        // table in the tracker's slices: nothing else is read).
                        let slice = state.flows.slice(tracker.next_slice());
                        let due = tracker.tick_slice(slice.iter().copied(), ktime::monotonic_ns());
                        sender.send(&due, &namer);
                        while started.elapsed() < Duration::from_secs(1)
                            && !stop.load(Ordering::Relaxed)
                        {
                            thread::sleep(Duration::from_millis(50));
                        }
                    }
                    // Let go of the state (it keeps the probe alive); keep what names flows.
                    drop(state);
                    (tracker, sender, namer)
                })
            })
            .context("starting the IPFIX exporter")?;
        Ok(Exporter { thread })
    }

    /// Whether the thread has ended (after a failure the daemon waits for it only so long).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread (after `stop` was set); `None` if it panicked (its flows not
    /// exported yet are lost).
    pub fn join(self) -> Option<Stopped> {
        match self.thread.join() {
            Ok((tracker, sender, namer)) => Some(Stopped {
                tracker,
                sender,
                namer,
            }),
            Err(_) => {
                warn!("the IPFIX exporter thread panicked; its unexported flows are lost");
                None
            }
        }
    }
}

/// An exporter whose thread has ended, waiting for the last walk of the table.
pub struct Stopped {
    tracker: Tracker,
    sender: Sender,
    namer: Namer,
}

impl Stopped {
    /// Exports everything left, from the last walk of the kernel's table (or, without one,
    /// the last readings).
    pub fn finish(mut self, last_walk: Option<Vec<(FlowKey, FlowValue)>>) {
        if last_walk.is_none() {
            warn!("no last walk of the flow table: exporting the last readings");
        }
        let due = self
            .tracker
            .finish(last_walk.unwrap_or_default(), ktime::monotonic_ns());
        self.sender.send(&due, &self.namer);
        info!(
            records = COUNTERS.records.load(Ordering::Relaxed),
            send_errors = COUNTERS.send_errors.load(Ordering::Relaxed),
            "IPFIX export finished"
        );
    }
}
