//! The swarm view in the daemon (issue 15; the logic is `peerwarden_swarms`): built only
//! with `swarms.enabled`, fed by the deep tier's samples ([`Swarms::on_sample`]) and the flow
//! reader's walks ([`Swarms::walk`], which also writes the store's rows once a minute),
//! read by the API (`api/swarms.rs`).

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::SystemTime,
};

use anyhow::Context as _;
use peerwarden_common::{Direction, FlowKey, FlowValue, Label, deep::Sample};
use peerwarden_history::{History, SwarmBytes};
use peerwarden_policies::{Policy, Prefix};
use peerwarden_swarms::{Bytes, Feed, SwarmId, SwarmTable, SwarmsConfig, keyfile};

use crate::config::Config;

/// The swarm table and what feeds it.
pub struct Swarms {
    feed: Mutex<Feed>,
    /// The configured subscriber networks (observe mode).
    networks: Vec<Prefix>,
    /// The active policy as of the last walk: its subscribers' prefixes.
    policy: RwLock<Option<Arc<Policy>>>,
    /// Seconds the store keeps the rows (`swarms.retention`).
    retention_secs: u64,
    /// The minute whose rows were last written.
    last_minute: Mutex<Option<i64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> u64 {
    peerwarden_history::unix(SystemTime::now()).max(0) as u64
}

impl Swarms {
    /// The swarm view of `config`, or `None` when it is off. With `pseudonymize`, the key
    /// is read from (or made at) [`Config::swarms_key_path`].
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<Swarms>>> {
        let c: &SwarmsConfig = &config.swarms;
        if !c.enabled {
            return Ok(None);
        }
        let key = if c.pseudonymize {
            let path = config.swarms_key_path();
            Some(
                keyfile::load_or_create(&path)
                    .with_context(|| format!("the swarm pseudonym key {}", path.display()))?,
            )
        } else {
            None
        };
        let table = SwarmTable::new(c, key).context("the swarms section")?;
        Ok(Some(Arc::new(Swarms::new(
            table,
            config.subscriber_networks(),
            c.retention.as_secs(),
        ))))
    }

    /// A swarm view over `table` (tests build one directly).
    pub fn new(table: SwarmTable, networks: Vec<Prefix>, retention_secs: u64) -> Swarms {
        Swarms {
            feed: Mutex::new(Feed::new(table)),
            networks,
            policy: RwLock::new(None),
            retention_secs,
            last_minute: Mutex::new(None),
        }
    }

    /// Whether `addr` is a subscriber's: in a configured network or a policy subscriber's
    /// prefix.
    fn subscribers(&self) -> impl Fn(IpAddr) -> bool + '_ {
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        move |a: IpAddr| {
            self.networks.iter().any(|n| n.contains(a))
                || policy
                    .as_ref()
                    .is_some_and(|p| p.subscriber_for(a).is_some())
        }
    }

    /// Uses the subscribers of `policy` from now on.
    pub fn set_policy(&self, policy: Option<Arc<Policy>>) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// One payload sample of the deep tier (its one call, in daemon/deep.rs).
    pub fn on_sample(&self, s: &Sample) {
        let captured = (s.captured as usize).min(s.data.len());
        let dir = if s.dir == Direction::Up as u8 {
            Direction::Up
        } else {
            Direction::Down
        };
        self.sample_at(&s.key, dir, &s.data[..captured], now());
    }

    pub(crate) fn sample_at(&self, key: &FlowKey, dir: Direction, payload: &[u8], now: u64) {
        let subs = self.subscribers();
        lock(&self.feed).sample(key, dir, payload, now, &subs);
    }

    /// One walk of the flow table; once a minute also the store's rows and expiry.
    pub fn walk<'a>(
        &self,
        flows: impl IntoIterator<Item = &'a (FlowKey, FlowValue)>,
        store: Option<&History>,
    ) {
        self.walk_at(flows, store, now());
    }

    pub(crate) fn walk_at<'a>(
        &self,
        flows: impl IntoIterator<Item = &'a (FlowKey, FlowValue)>,
        store: Option<&History>,
        now: u64,
    ) {
        let subs = self.subscribers();
        // Peer flows whose handshake may never be sampled (the kernel's fingerprint decides
        // a plaintext one at its first payload) or shows no hash (encrypted).
        let peer = [
            Label::Bittorrent.id(),
            Label::BittorrentUtp.id(),
            Label::BittorrentEncrypted.id(),
        ];
        let rows = {
            let mut feed = lock(&self.feed);
            feed.walk(
                flows
                    .into_iter()
                    .map(|(k, v)| (k, v.bytes, peer.contains(&v.label))),
                now,
                &subs,
            );
            let minute = peerwarden_history::minute_of(now as i64);
            let mut last = lock(&self.last_minute);
            if last.is_some_and(|m| m == minute) {
                return;
            }
            // The first walk starts the first interval; later ones close the last minute.
            let rows = last.is_some().then(|| feed.minute(now));
            *last = Some(minute);
            rows
        };
        if let (Some(rows), Some(store)) = (rows, store) {
            // The rows are of the minute that just ended.
            self.store_rows(store, now as i64 - 60, rows, now);
        }
    }

    /// At shutdown, after the probe stopped counting: a last walk of the flow table, and the
    /// part-minute since the last rows stored under the current minute (the store adds a
    /// minute's rows, so a daemon started again within the minute adds to them).
    pub fn finish(&self, flows: &[(FlowKey, FlowValue)], store: Option<&History>) {
        self.finish_at(flows, store, now());
    }

    pub(crate) fn finish_at(
        &self,
        flows: &[(FlowKey, FlowValue)],
        store: Option<&History>,
        now: u64,
    ) {
        self.walk_at(flows, store, now);
        let rows = {
            let mut feed = lock(&self.feed);
            let mut last = lock(&self.last_minute);
            // A walk that never started an interval has nothing counted to write.
            if last.take().is_none() {
                return;
            }
            feed.minute(now)
        };
        if let Some(store) = store {
            self.store_rows(store, now as i64, rows, now);
        }
    }

    fn store_rows(&self, store: &History, t: i64, rows: Vec<(SwarmId, Bytes)>, now: u64) {
        let rows: Vec<SwarmBytes> = rows
            .into_iter()
            .map(|(id, b)| SwarmBytes {
                swarm: id.bytes,
                local: b.local,
                transit_up: b.transit_up,
                transit_down: b.transit_down,
            })
            .collect();
        if let Err(e) = store.record_swarm_minute(t, &rows, now as i64, self.retention_secs) {
            tracing::warn!(error = %e, "writing the swarm rows");
        }
    }

    /// Whether the ids are pseudonyms (`swarms.pseudonymize`).
    pub fn pseudonymous(&self) -> bool {
        self.with_table(|t| t.id_from_hex(&"0".repeat(40)))
            .is_some_and(|id| id.pseudonymous)
    }

    /// Runs `f` on the table (the API's reads).
    pub fn with_table<R>(&self, f: impl FnOnce(&SwarmTable) -> R) -> R {
        f(lock(&self.feed).table())
    }
}

#[cfg(test)]
#[path = "swarms_tests.rs"]
mod tests;
