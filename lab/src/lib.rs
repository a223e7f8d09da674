//! A demo gateway in network namespaces with real client traffic: `peerwarden lab up |
//! traffic | down`.
//!
//! ```text
//!  <p>-alice  eth0 ─┐                                         ┌─ eth0  <p>-net
//!  100.64.1.10      │  <p>-sw (br0)         <p>-gw             │  198.51.100.2  tracker
//!                   ├─ alice, bob, gw ── downlink │ uplink ────┘  198.51.100.7  seeder
//!  <p>-bob    eth0 ─┘                    100.64.1.1  198.51.100.1  203.0.113.10  web
//!  100.64.1.20
//! ```
//!
//! Every packet stays inside namespaces this module creates: the root namespace gets no lab
//! interface or address, and no namespace has a default route (hosts route only the lab
//! prefixes through the gateway). The daemon runs in the root namespace, serves its API on
//! 127.0.0.1 there, and attaches its programs inside `<p>-gw`.
//!
//! The lab starts the daemon as `<this binary> run`, so it is driven from the `peerwarden`
//! binary (`peerwarden/src/cli/lab.rs`), which also hands it the daemon's unloader of pinned
//! instances ([`UnpinFn`]): this crate does not depend on the daemon's.
//!
//! ```no_run
//! use peerwarden_lab::{self as lab, Lab, TrafficOptions, UpOptions};
//! # fn main() -> Result<(), lab::LabError> {
//! // The daemon's crate passes its unloader; nothing is pinned without a daemon.
//! let unpin = |_netns: &str| Ok(Vec::new());
//! let lab = Lab::new("pwt1")?;
//! lab::up(&lab, &UpOptions { api_port: 19440, ..UpOptions::default() }, &unpin)?;
//! let summary = lab::traffic(&lab, &TrafficOptions::default())?;
//! println!("{summary}");
//! lab::down(&lab, &unpin)?;
//! # Ok(()) }
//! ```

mod daemon;
mod error;
mod exec;
mod process;
pub mod swarm;
mod topology;
mod traffic;
mod web;

use std::path::{Path, PathBuf};

pub use daemon::{http_get, http_put, http_response};
pub use error::LabError;
pub use exec::require_root;
pub use topology::addr;
pub use traffic::{TrafficOptions, TrafficSummary, traffic};

/// Where every lab keeps its pid files, logs, generated config and torrents.
pub const STATE_ROOT: &str = "/run/peerwarden-lab";
/// The namespace prefix when neither `--prefix` nor `PEERWARDEN_LAB_PREFIX` is given.
pub const DEFAULT_PREFIX: &str = "pw";
/// The environment variable that overrides the default prefix.
pub const PREFIX_ENV: &str = "PEERWARDEN_LAB_PREFIX";
/// The daemon's API port when `--api-port` is not given.
pub const DEFAULT_API_PORT: u16 = 9440;

/// One lab, named by its namespace prefix.
#[derive(Clone, Debug)]
pub struct Lab {
    prefix: String,
    state_dir: PathBuf,
}

impl Lab {
    /// A lab with namespaces `<prefix>-alice`, `<prefix>-gw`, ... Prefixes are short (network
    /// namespace names show up in `ip netns` listings and in logs) and plain: 1 to 10
    /// lowercase letters and digits, starting with a letter.
    pub fn new(prefix: &str) -> Result<Lab, LabError> {
        let ok = (1..=10).contains(&prefix.len())
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            return Err(LabError::BadPrefix(prefix.to_string()));
        }
        Ok(Lab {
            prefix: prefix.to_string(),
            state_dir: Path::new(STATE_ROOT).join(prefix),
        })
    }

    /// The prefix from `explicit`, else `PEERWARDEN_LAB_PREFIX`, else `pw`.
    pub fn from_env(explicit: Option<&str>) -> Result<Lab, LabError> {
        match explicit {
            Some(p) => Lab::new(p),
            None => match std::env::var(PREFIX_ENV) {
                Ok(p) if !p.is_empty() => Lab::new(&p),
                _ => Lab::new(DEFAULT_PREFIX),
            },
        }
    }

    /// The namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `/run/peerwarden-lab/<prefix>`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The name of one of the lab's namespaces.
    pub fn netns(&self, role: Role) -> String {
        format!("{}-{}", self.prefix, role.suffix())
    }

    /// The daemon's config file.
    pub fn config_path(&self) -> PathBuf {
        self.state_dir.join("config.yaml")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }
}

/// The lab's namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Subscriber alice: the BitTorrent leecher and an HTTP client.
    Alice,
    /// Subscriber bob: an HTTP client.
    Bob,
    /// The access switch: a bridge joining the subscribers and the gateway's `downlink`.
    Switch,
    /// The gateway: `downlink` and `uplink`, forwarding on; the daemon attaches here.
    Gateway,
    /// The internet side: tracker, seeder and web server addresses.
    Internet,
}

impl Role {
    /// Every namespace, in creation order.
    pub const ALL: [Role; 5] = [
        Role::Alice,
        Role::Bob,
        Role::Switch,
        Role::Gateway,
        Role::Internet,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Role::Alice => "alice",
            Role::Bob => "bob",
            Role::Switch => "sw",
            Role::Gateway => "gw",
            Role::Internet => "net",
        }
    }
}

/// What `lab up` does besides building the namespaces.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The daemon's API port on 127.0.0.1 in the root namespace.
    pub api_port: u16,
    /// Build the namespaces only (tests that start the daemon themselves).
    pub no_daemon: bool,
    /// The policy file for the daemon; `None` looks for `policies/examples/lab.yaml`.
    pub policy: PolicyChoice,
    /// Flow table entries.
    pub flow_table_size: u32,
    /// The deep tier's bound on undecided flows (`deep_max_flows`); `None`: the default.
    pub deep_max_flows: Option<u32>,
    /// How long to wait for `/healthz`.
    pub health_timeout: std::time::Duration,
    /// Transmit and receive queues of the gateway's two veths (1: a single queue, as
    /// before; more: shaping gets an mq root and an HTB per queue).
    pub gateway_queues: u32,
    /// Turn the swarm view on in the daemon's config (`swarms: { enabled: true }`).
    pub swarms: bool,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            api_port: DEFAULT_API_PORT,
            no_daemon: false,
            policy: PolicyChoice::Auto,
            flow_table_size: 65536,
            deep_max_flows: None,
            health_timeout: std::time::Duration::from_secs(20),
            gateway_queues: 1,
            swarms: false,
        }
    }
}

/// Which policy the lab's daemon gets.
#[derive(Clone, Debug)]
pub enum PolicyChoice {
    /// `policies/examples/lab.yaml` from the source tree, when it can be found.
    Auto,
    /// This file.
    File(PathBuf),
    /// No policy key in the config.
    None,
}

/// What `lab up` made.
#[derive(Debug)]
pub struct UpReport {
    /// Namespaces created.
    pub namespaces: Vec<String>,
    /// The daemon's pid and API URL, unless `no_daemon`.
    pub daemon: Option<(u32, String)>,
    /// The policy file the daemon was given.
    pub policy: Option<PathBuf>,
    /// Time spent building the namespaces.
    pub topology_time: std::time::Duration,
    /// Time until the daemon answered `/healthz`.
    pub daemon_time: std::time::Duration,
}

/// Builds the namespaces, writes the daemon's config and starts it, and waits until it is
/// healthy. On failure everything made so far is removed again (as [`down`] does, `unpin`
/// included).
pub fn up(lab: &Lab, opts: &UpOptions, unpin: &UnpinFn) -> Result<UpReport, LabError> {
    exec::require_root()?;
    if let Some(ns) = topology::existing(lab)?.into_iter().next() {
        return Err(LabError::AlreadyUp {
            prefix: lab.prefix.clone(),
            netns: ns,
        });
    }
    let result = up_inner(lab, opts);
    if result.is_err() {
        // Leave nothing half made; the original error is the one worth reporting.
        if let Err(err) = down(lab, unpin) {
            tracing::warn!(error = %err, "cleaning up after a failed lab up");
        }
    }
    result
}

fn up_inner(lab: &Lab, opts: &UpOptions) -> Result<UpReport, LabError> {
    let t0 = std::time::Instant::now();
    exec::create_dir(lab.state_dir())?;
    let namespaces = topology::create(lab, opts.gateway_queues)?;
    let topology_time = t0.elapsed();
    let policy = daemon::choose_policy(lab, &opts.policy)?;
    daemon::write_config(lab, opts, policy.as_deref())?;
    let t1 = std::time::Instant::now();
    let daemon = if opts.no_daemon {
        None
    } else {
        let pid = daemon::start(lab, opts)?;
        Some((pid, format!("http://127.0.0.1:{}", opts.api_port)))
    };
    Ok(UpReport {
        namespaces,
        daemon,
        policy,
        topology_time,
        daemon_time: t1.elapsed(),
    })
}

/// What `lab down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Processes stopped (name, pid).
    pub stopped: Vec<(String, u32)>,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Whether the state dir existed and was removed.
    pub state_removed: bool,
    /// Pinned instances of the gateway namespace removed (a daemon killed outright
    /// leaves its programs and maps pinned).
    pub unpinned: Vec<String>,
}

/// Removes the instances a daemon left pinned for network namespace `netns` and returns
/// their names. Pins are the daemon's business: `peerwarden lab` passes the daemon crate's
/// unloader (which depends on this crate, not the other way round).
pub type UnpinFn = dyn Fn(&str) -> Result<Vec<String>, LabError>;

/// Stops every process the lab started, unloads what the daemon left pinned in the gateway
/// namespace (`unpin`), deletes its namespaces and its state dir. Works after a crash and
/// when nothing is left (idempotent).
pub fn down(lab: &Lab, unpin: &UnpinFn) -> Result<DownReport, LabError> {
    exec::require_root()?;
    let mut report = DownReport::default();
    // Traffic first, the daemon last, so that it sees the end of every flow.
    let dir = lab.state_dir();
    report
        .stopped
        .extend(process::stop_from_pid_files(dir, |name| name != "daemon")?);
    report
        .stopped
        .extend(process::stop_from_pid_files(dir, |_| true)?);
    // Anything still running inside the lab's namespaces was started by the lab (pid files
    // lost in a crash): only lab processes live there.
    for ns in topology::existing(lab)? {
        for pid in exec::netns_pids(&ns)? {
            if process::stop_pid(pid, std::time::Duration::from_secs(3)) {
                report.stopped.push((format!("(in {ns})"), pid));
            }
        }
    }
    // The daemon is stopped: what it left pinned (killed outright, or told to keep its
    // programs attached) goes before the namespace does.
    report.unpinned = unpin(&lab.netns(Role::Gateway))?;
    report.namespaces = topology::destroy(lab)?;
    if lab.state_dir().exists() {
        std::fs::remove_dir_all(lab.state_dir()).map_err(|source| LabError::Io {
            op: "removing",
            path: lab.state_dir().to_path_buf(),
            source,
        })?;
        report.state_removed = true;
    }
    Ok(report)
}

/// Fails with [`LabError::NotUp`] unless the lab's gateway namespace and state dir exist.
fn require_up(lab: &Lab) -> Result<(), LabError> {
    let gw = lab.netns(Role::Gateway);
    if !topology::existing(lab)?.contains(&gw) || !lab.state_dir().is_dir() {
        return Err(LabError::NotUp {
            prefix: lab.prefix.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_and_plain() {
        for ok in ["pw", "pwt1", "a", "abcdefghij"] {
            assert!(Lab::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1pw", "pw-1", "PW", "abcdefghijk", "pw/x", "pw t"] {
            assert!(Lab::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_share_the_prefix() {
        let lab = Lab::new("pwt1").expect("valid prefix");
        assert_eq!(lab.netns(Role::Gateway), "pwt1-gw");
        assert_eq!(lab.state_dir(), Path::new("/run/peerwarden-lab/pwt1"));
        assert_eq!(
            lab.config_path(),
            Path::new("/run/peerwarden-lab/pwt1/config.yaml")
        );
    }
}
