//! The daemon's configuration file (YAML).
//!
//! ```yaml
//! interfaces: { downlink: eth1, uplink: eth0 }   # towards subscribers / towards the internet
//! netns: gw                                      # optional: interfaces live in this namespace
//! policy: /etc/peerwarden/policy.yaml            # optional
//! services: /etc/peerwarden/services.yaml        # optional: video services added or overridden
//! api: { listen: "127.0.0.1:9440" }                # optional tls: { cert: PATH, key: PATH }
//!                                                # token, read_token, allowed_hosts, max_connections (256),
//!                                                # header_timeout_seconds (10), idle_timeout_seconds (60)
//! flow_table_size: 1048576
//! deep_max_flows: 16384                          # undecided flows the deep classifier holds
//! deep_threads: 2                                # its threads (default: half the CPUs, 1 to 8)
//! dns_hint_entries: 65536                        # DNS answers remembered (docs/classifier.md)
//! history: { path: /var/lib/peerwarden/history.db, minute_retention_days: 7, hour_retention_days: 90 }
//! metrics: { subscriber_series_limit: 1000 }
//! ipfix: { collector: "198.51.100.2:4739", idle_timeout: 15s, active_timeout: 60s }  # optional
//! alto: { costs: { local: 1, transit: 10 } }     # optional pids: { NAME: [PREFIX, ...] } (README)
//! swarms: { enabled: false, retention: 24h, pseudonymize: false }   # docs/daemon.md
//! ```
//!
//! Observe-only mode, on a mirror (SPAN) port with copies of both directions:
//!
//! ```yaml
//! mode: observe                                  # default: inline
//! interfaces: { mirror: eth2 }
//! subscriber_networks: [100.64.0.0/10, "2001:db8:1::/48"]   # plus the policy's prefixes
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

pub mod check;
pub mod ipfix;
mod mode;

use mode::{MODE_KEYS, check_mode};

/// Flow table entries when the config does not say (DESIGN.md: 1,048,576).
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 1 << 20;
/// The largest flow table accepted: 64 Mi entries is ~6.5 GiB of kernel memory.
pub const MAX_FLOW_TABLE_SIZE: u32 = 1 << 26;
/// The most undecided flows `deep_max_flows` may ask the deep classifier to hold (about
/// 450 MiB of state).
pub const MAX_DEEP_FLOWS: u32 = 1 << 20;
/// Undecided flows the deep tier holds state for at most unless the config says otherwise
/// (`deep_max_flows`; the flow table's size when it is smaller). About 450 bytes each in
/// the engine and the sample count: ~8 MiB.
pub const DEFAULT_DEEP_MAX_FLOWS: u32 = 1 << 14;

/// The daemon's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `inline` (default): on the gateway's two interfaces, policies enforced. `observe`:
    /// on one mirror (SPAN) port, classify and report only, every packet passed unchanged.
    #[serde(default)]
    pub mode: Mode,
    /// The gateway's two interfaces (inline), or the mirror port (observe).
    pub interfaces: Interfaces,
    /// Observe mode: the subscriber side's networks (CIDR); a packet from one goes up, one
    /// to one goes down. The policy's subscriber prefixes are added to them.
    #[serde(default)]
    pub subscriber_networks: Vec<String>,
    /// A named network namespace (`ip netns`) holding the interfaces. The API socket is
    /// bound in the namespace the daemon starts in, before it enters this one.
    #[serde(default)]
    pub netns: Option<String>,
    /// The policy file.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Video services added to the built-in catalogue, or replacing its services by name
    /// (the format of the classifier's `data/services.yaml`); read again on SIGHUP.
    #[serde(default)]
    pub services: Option<PathBuf>,
    /// The REST API.
    #[serde(default)]
    pub api: Api,
    /// Entries of the kernel's LRU flow table.
    #[serde(default = "default_flow_table_size")]
    pub flow_table_size: u32,
    /// Undecided flows the daemon's deep classifier holds state for at most (about 450
    /// bytes each; the least recently sampled is dropped first, counted as
    /// `deep_flows_evicted`). The flow table's size caps it too.
    #[serde(default = "default_deep_max_flows")]
    pub deep_max_flows: u32,
    /// Deep classifier threads, sharded by flow (1 to 64; default half the CPUs, 1 to 8).
    #[serde(default)]
    pub deep_threads: Option<u32>,
    /// (subscriber, answered address) pairs the DNS-assisted labels remember at most.
    #[serde(default = "default_dns_hint_entries")]
    pub dns_hint_entries: u32,
    /// Subscribers the kernel's policy maps are sized for (token buckets, counters and
    /// change flags are preallocated: about 1.2 KiB per subscriber, whatever the CPUs).
    #[serde(default = "default_max_subscribers")]
    pub max_subscribers: u32,
    /// Seconds of per-second history kept in memory for `?window=` queries.
    #[serde(default = "default_history_seconds")]
    pub history_seconds: u32,
    /// The history store on disk.
    #[serde(default)]
    pub history: HistoryConfig,
    /// Prometheus exposition.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// IPFIX export of finished flows (off without this section).
    #[serde(default)]
    pub ipfix: Option<ipfix::IpfixConfig>,
    /// The ALTO server (RFC 7285): its PIDs and `routingcost`s (`peerwarden_alto::config`).
    #[serde(default)]
    pub alto: peerwarden_alto::AltoConfig,
    /// The swarm view (`peerwarden_swarms::config`; off by default).
    #[serde(default)]
    pub swarms: peerwarden_swarms::SwarmsConfig,
    /// The instance name: the kernel maps and links are pinned under
    /// `/sys/fs/bpf/peerwarden/<instance>`. Default: the namespace and the interfaces
    /// (`gw_eth1_eth0`; `host_eth1_eth0` without `netns`).
    #[serde(default)]
    pub instance: Option<String>,
    /// On SIGTERM/SIGINT, leave the programs attached and the maps pinned for the next
    /// daemon to adopt (an upgrade without a gap) instead of detaching and unpinning.
    #[serde(default)]
    pub keep_attached_on_stop: bool,
}

/// The history store: per-minute counters, rolled up into hours, then dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// The SQLite file (its directory is created if missing).
    #[serde(default = "default_history_path")]
    pub path: PathBuf,
    /// Days of per-minute rows; older minutes are summed into hours.
    #[serde(default = "default_minute_retention_days")]
    pub minute_retention_days: u32,
    /// Days of per-hour rows; older hours are deleted.
    #[serde(default = "default_hour_retention_days")]
    pub hour_retention_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            path: default_history_path(),
            minute_retention_days: default_minute_retention_days(),
            hour_retention_days: default_hour_retention_days(),
        }
    }
}

/// Prometheus exposition settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Per-subscriber series for at most this many subscribers (the top ones by bytes);
    /// 0 turns them off. Each subscriber costs 40 series.
    #[serde(default = "default_subscriber_series_limit")]
    pub subscriber_series_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            subscriber_series_limit: default_subscriber_series_limit(),
        }
    }
}

pub use peerwarden_tls::TlsConfig;

/// How the daemon sees the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In the path on `downlink` and `uplink`: classify, count, enforce the policy.
    #[default]
    Inline,
    /// On a mirror port (`mirror`): classify and count; the policy is never applied to a
    /// packet (its decisions are counted as `observe_would_drop`).
    Observe,
}

impl Mode {
    /// `inline` or `observe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Observe => "observe",
        }
    }
}

/// The gateway's interfaces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Towards the subscribers (inline).
    #[serde(default)]
    pub downlink: String,
    /// Towards the internet (inline).
    #[serde(default)]
    pub uplink: String,
    /// The mirror (SPAN) port with copies of both directions (observe).
    #[serde(default)]
    pub mirror: Option<String>,
}

/// The REST API's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Address and port to listen on; localhost unless configured otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token for writes (PUT /api/v1/policy). The environment variable
    /// `PEERWARDEN_API_TOKEN` takes precedence, so the token need not sit in a file.
    /// Without either, writes are refused.
    #[serde(default)]
    pub token: Option<String>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Bearer token for reads of subscriber ids and addresses (docs/api.md); unset: open.
    #[serde(default)]
    pub read_token: Option<String>,
    /// `Host` values answered besides the listen address, localhost, 127.0.0.1 and [::1]
    /// (`name` or `name:port`; `*`: any), against DNS rebinding of the dashboard.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
}

fn default_max_connections() -> usize {
    256
}

fn default_header_timeout() -> u64 {
    10
}

fn default_idle_timeout() -> u64 {
    60
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: default_listen(),
            token: None,
            tls: None,
            read_token: None,
            allowed_hosts: Vec::new(),
            max_connections: default_max_connections(),
            header_timeout_seconds: default_header_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9440))
}

fn default_flow_table_size() -> u32 {
    DEFAULT_FLOW_TABLE_SIZE
}

fn default_deep_max_flows() -> u32 {
    DEFAULT_DEEP_MAX_FLOWS
}

fn default_dns_hint_entries() -> u32 {
    1 << 16
}

fn default_max_subscribers() -> u32 {
    peerwarden_common::policy::DEFAULT_MAX_SUBSCRIBERS
}

fn default_history_seconds() -> u32 {
    3600
}

fn default_history_path() -> PathBuf {
    PathBuf::from("/var/lib/peerwarden/history.db")
}

fn default_minute_retention_days() -> u32 {
    7
}

fn default_hour_retention_days() -> u32 {
    90
}

fn default_subscriber_series_limit() -> usize {
    1000
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A value is out of range or inconsistent.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// The bearer token for writes: the environment's, else the config's.
    pub fn api_token(&self) -> Option<String> {
        std::env::var("PEERWARDEN_API_TOKEN")
            .ok()
            .or_else(|| self.api.token.clone())
            .filter(|t| !t.is_empty())
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            // The parser's message may span lines (a source excerpt); keep it to one.
            message: e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        })?;
        match config.problems().into_iter().next() {
            Some(first) => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: first.message,
            }),
            None => Ok(config),
        }
    }

    /// Every value out of range or inconsistent, in the order [`Config::parse`] checks
    /// them (it refuses with the first); `config check` reports them all.
    pub(crate) fn problems(&self) -> Vec<Invalid> {
        let config = self;
        let mut out: Vec<Invalid> = check_mode(config)
            .into_iter()
            .map(|message| Invalid {
                message,
                needs: MODE_KEYS,
            })
            .collect();
        let mut invalid = |message: String| {
            out.push(Invalid {
                message,
                needs: &["mode"],
            })
        };
        let names = match config.mode {
            Mode::Inline => vec![
                ("interfaces.downlink", &config.interfaces.downlink),
                ("interfaces.uplink", &config.interfaces.uplink),
            ],
            Mode::Observe => config
                .interfaces
                .mirror
                .iter()
                .map(|m| ("interfaces.mirror", m))
                .collect(),
        };
        for (key, name) in names {
            if name.is_empty() && config.mode == Mode::Inline {
                continue; // check_mode said so already
            }
            // IFNAMSIZ is 16 with the terminating NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                invalid(format!("{key}: {name:?} is not a valid interface name"));
            }
        }
        if config.mode == Mode::Inline
            && !config.interfaces.downlink.is_empty()
            && config.interfaces.downlink == config.interfaces.uplink
        {
            invalid(format!(
                "interfaces: downlink and uplink are both {:?}; they must be two interfaces",
                config.interfaces.downlink
            ));
        }
        if config.flow_table_size == 0 || config.flow_table_size > MAX_FLOW_TABLE_SIZE {
            invalid(format!(
                "flow_table_size: {} is out of range (1 to {MAX_FLOW_TABLE_SIZE})",
                config.flow_table_size
            ));
        }
        if !(16..=MAX_DEEP_FLOWS).contains(&config.deep_max_flows) {
            invalid(format!(
                "deep_max_flows: {} is out of range (16 to {MAX_DEEP_FLOWS})",
                config.deep_max_flows
            ));
        }
        if let Some(n) = config.deep_threads.filter(|n| !(1..=64).contains(n)) {
            invalid(format!("deep_threads: {n} is out of range (1 to 64)"));
        }
        if !(256..=1 << 22).contains(&config.dns_hint_entries) {
            let n = config.dns_hint_entries;
            invalid(format!(
                "dns_hint_entries: {n} is out of range (256 to 4194304)"
            ));
        }
        if config.max_subscribers == 0 || config.max_subscribers > 8_000_000 {
            invalid(format!(
                "max_subscribers: {} is out of range (1 to 8000000)",
                config.max_subscribers
            ));
        }
        if config.history_seconds < 60 || config.history_seconds > 7 * 86400 {
            invalid(format!(
                "history_seconds: {} is out of range (60 to 604800)",
                config.history_seconds
            ));
        }
        let h = &config.history;
        if h.path.as_os_str().is_empty() || h.path.is_dir() {
            invalid(format!("history.path: {:?} is not a file path", h.path));
        }
        if h.minute_retention_days == 0 || h.minute_retention_days > 366 {
            invalid(format!(
                "history.minute_retention_days: {} is out of range (1 to 366)",
                h.minute_retention_days
            ));
        }
        if h.hour_retention_days < h.minute_retention_days || h.hour_retention_days > 3660 {
            invalid(format!(
                "history.hour_retention_days: {} is out of range ({} to 3660: at least the minute retention)",
                h.hour_retention_days, h.minute_retention_days
            ));
        }
        if config.metrics.subscriber_series_limit > 100_000 {
            invalid(format!(
                "metrics.subscriber_series_limit: {} is out of range (0 to 100000)",
                config.metrics.subscriber_series_limit
            ));
        }
        if config.api.token.as_deref().is_some_and(|t| t.len() < 16) {
            invalid("api.token: use at least 16 characters".into());
        }
        if config
            .api
            .read_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            invalid("api.read_token: use at least 16 characters".into());
        }
        let a = &config.api;
        for (name, v, max) in [
            ("max_connections", a.max_connections as u64, 65_536),
            ("header_timeout_seconds", a.header_timeout_seconds, 3600),
            ("idle_timeout_seconds", a.idle_timeout_seconds, 3600),
        ] {
            if v == 0 || v > max {
                invalid(format!("api.{name}: {v} is out of range (1 to {max})"));
            }
        }
        if let Some(ns) = &config.netns
            && (ns.is_empty() || ns.contains('/'))
        {
            invalid(format!("netns: {ns:?} is not a namespace name"));
        }
        if let Some(x) = &config.ipfix
            && let Err(e) = x.check()
        {
            invalid(e);
        }
        config.alto.problems().into_iter().for_each(&mut invalid);
        if let Err(e) = config.swarms.check() {
            invalid(e.to_string());
        }
        if let Some(name) = &config.instance
            && let Err(e) = crate::probe::pins::check_name(name)
        {
            invalid(format!("instance: {e}"));
        }
        out
    }

    /// The instance name: `instance`, or the default made of the namespace and the
    /// interfaces (the mirror port in observe mode).
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            let i = &self.interfaces;
            let (a, b) = match &i.mirror {
                Some(m) if i.downlink.is_empty() => (m.as_str(), "observe"),
                _ => (i.downlink.as_str(), i.uplink.as_str()),
            };
            crate::probe::pins::default_name(self.netns.as_deref(), a, b)
        })
    }
}

/// A value out of range or inconsistent: the message starts with the key it is about
/// (`flow_table_size: 0 is out of range ...`).
#[derive(Debug, Clone)]
pub(crate) struct Invalid {
    /// One line, `KEY: what is wrong`.
    pub message: String,
    /// Top-level keys besides the message's own that the check read.
    pub needs: &'static [&'static str],
}

impl Invalid {
    /// The dotted key the message starts with (`history.path`).
    pub fn key(&self) -> &str {
        self.message
            .split_once(": ")
            .map_or(self.message.as_str(), |(k, _)| k)
    }
}

impl Config {
    /// The swarm view's pseudonym key: `swarms.key` beside the history store.
    pub fn swarms_key_path(&self) -> PathBuf {
        self.history.path.with_file_name("swarms.key")
    }

    /// The configured subscriber networks (validated by [`Config::parse`]).
    pub fn subscriber_networks(&self) -> Vec<peerwarden_policies::Prefix> {
        self.subscriber_networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"))
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("interfaces: { downlink: eth1, uplink: eth0 }\n").expect("valid");
        assert_eq!(c.flow_table_size, 1_048_576);
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:9440");
        assert!(c.netns.is_none() && c.policy.is_none() && c.services.is_none());
        assert_eq!(c.history.path, Path::new("/var/lib/peerwarden/history.db"));
        assert_eq!(
            (
                c.history.minute_retention_days,
                c.history.hour_retention_days
            ),
            (7, 90)
        );
        assert_eq!(c.metrics.subscriber_series_limit, 1000);
        assert!(c.api.tls.is_none());
    }

    #[test]
    fn history_metrics_and_tls_sections() {
        let c = parse(
            "interfaces: { downlink: a, uplink: b }\n\
             api: { tls: { cert: /etc/pw/cert.pem, key: /etc/pw/key.pem } }\n\
             history: { path: /tmp/h.db, minute_retention_days: 2 }\n\
             metrics: { subscriber_series_limit: 0 }\n\
             services: /etc/pw/services.yaml\n",
        )
        .expect("valid");
        assert_eq!(c.services, Some(PathBuf::from("/etc/pw/services.yaml")));
        assert_eq!(
            c.api.tls.as_ref().map(|t| t.key.clone()),
            Some(PathBuf::from("/etc/pw/key.pem"))
        );
        assert_eq!(
            (
                c.history.minute_retention_days,
                c.history.hour_retention_days
            ),
            (2, 90)
        );
        assert_eq!(c.metrics.subscriber_series_limit, 0);
        for (extra, needle) in [
            (
                "history: { minute_retention_days: 0 }",
                "minute_retention_days",
            ),
            (
                "history: { minute_retention_days: 30, hour_retention_days: 10 }",
                "hour_retention_days",
            ),
            ("history: { path: / }", "history.path"),
            ("history: { keep: 1 }", "keep"),
            (
                "metrics: { subscriber_series_limit: 1000000 }",
                "subscriber_series_limit",
            ),
            ("api: { tls: { cert: /c.pem } }", "key"),
        ] {
            let e = parse(&format!(
                "interfaces: {{ downlink: a, uplink: b }}\n{extra}\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn observe_mode_needs_the_mirror_and_the_subscriber_networks() {
        let c = parse("interfaces: { downlink: a, uplink: b }\n").expect("valid");
        assert_eq!(c.mode, Mode::Inline);
        let c = parse(
            "mode: observe\ninterfaces: { mirror: tap0 }\n\
             subscriber_networks: [100.64.0.0/10, \"2001:db8:1::/48\"]\n",
        )
        .expect("valid");
        assert_eq!(c.mode, Mode::Observe);
        assert_eq!(c.interfaces.mirror.as_deref(), Some("tap0"));
        let nets: Vec<String> = c
            .subscriber_networks()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(nets, ["100.64.0.0/10", "2001:db8:1::/48"]);
        // A policy alone gives the networks too.
        let c =
            parse("mode: observe\ninterfaces: { mirror: tap0 }\npolicy: /p.yaml\n").expect("valid");
        assert!(c.subscriber_networks().is_empty());
        for (text, needle) in [
            (
                "mode: observe\ninterfaces: { downlink: a, uplink: b }\nsubscriber_networks: [100.64.0.0/10]",
                "observe mode needs the mirror port",
            ),
            (
                "mode: observe\ninterfaces: { mirror: t, downlink: a }\nsubscriber_networks: [100.64.0.0/10]",
                "remove downlink and uplink",
            ),
            (
                "mode: observe\ninterfaces: { mirror: t }",
                "subscriber_networks: observe mode needs",
            ),
            (
                "mode: observe\ninterfaces: { mirror: t }\nsubscriber_networks: [100.64.1.10/8]",
                "did you mean 100.0.0.0/8",
            ),
            (
                "mode: observe\ninterfaces: { mirror: t }\nsubscriber_networks: [subscribers]",
                "\"subscribers\" is not a network",
            ),
            (
                "mode: observe\ninterfaces: { mirror: \"no such/if\" }\nsubscriber_networks: [100.64.0.0/10]",
                "interfaces.mirror",
            ),
            (
                "interfaces: { mirror: t }",
                "inline mode needs both downlink and uplink",
            ),
            (
                "interfaces: { downlink: a, uplink: b, mirror: t }",
                "only for mode: observe",
            ),
            (
                "interfaces: { downlink: a, uplink: b }\nsubscriber_networks: [100.64.0.0/10]",
                "only for mode: observe",
            ),
            ("mode: tap\ninterfaces: { mirror: t }", "mode"),
        ] {
            let e = parse(&format!("{text}\n")).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn the_deep_tier_cap_defaults_to_16384_and_is_bounded() {
        let c = parse("interfaces: { downlink: a, uplink: b }\n").expect("valid");
        assert_eq!(c.deep_max_flows, 16_384);
        assert_eq!(c.dns_hint_entries, 65_536);
        let e = parse("interfaces: { downlink: a, uplink: b }\ndns_hint_entries: 255\n");
        let want = "test.yaml: dns_hint_entries: 255 is out of range (256 to 4194304)";
        assert_eq!(e.unwrap_err().to_string(), want);
        let c = parse("interfaces: { downlink: a, uplink: b }\ndeep_max_flows: 100000\n")
            .expect("valid");
        assert_eq!(c.deep_max_flows, 100_000);
        for bad in ["0", "15", "1048577"] {
            let e = parse(&format!(
                "interfaces: {{ downlink: a, uplink: b }}\ndeep_max_flows: {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("test.yaml: deep_max_flows: {bad} is out of range (16 to 1048576)")
            );
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let e = parse("interfaces: { downlink: eth1, uplink: eth0 }\nbogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
        let e = parse("interfaces: { downlink: eth0, uplink: eth0 }\n").unwrap_err();
        assert!(e.to_string().contains("two interfaces"), "{e}");
        let e = parse("interfaces: { downlink: a, uplink: b }\nflow_table_size: 0\n").unwrap_err();
        assert!(e.to_string().contains("flow_table_size"), "{e}");
        let e = parse("interfaces: { downlink: a, uplink: b }\napi: { listen: nowhere }\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("test.yaml: "), "{e}");
        let e = parse("interfaces: [").unwrap_err();
        assert!(e.to_string().starts_with("test.yaml: "), "{e}");
    }
}
