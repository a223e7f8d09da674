//! What the engines of a deep tier split over several threads share: everything an
//! [`Engine`](crate::Engine) learns from one flow and applies to others. The endpoint
//! cache (learned from confirmed flows, with its per-subscriber budget), the per-host
//! behaviour counters, and the DNS answers that name a later flow to the answered
//! address. A flow is inspected by one engine (its per-flow state stays there); what it
//! teaches lands here, where every engine sharing it reads it.
//!
//! Each part sits behind its own lock, taken for one lookup or one update and never two at
//! once; an engine alone ([`Engine::new`](crate::Engine::new)) has its own, uncontended.
//!
//! ```
//! use peerwarden_classifier::{Engine, EngineConfig};
//! let cfg = EngineConfig::default();
//! let shared = cfg.shared();
//! let a = Engine::with_shared(cfg.clone(), shared.clone());
//! let b = Engine::with_shared(cfg, shared.clone());
//! assert_eq!(a.cache_learned() + b.cache_learned(), 0);
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{behaviour::Behaviour, dns_hints::DnsHints, learning::Learning};

/// The cross-flow context several engines share.
#[derive(Debug)]
pub struct Shared {
    learning: Mutex<Learning>,
    behaviour: Mutex<Behaviour>,
    dns: Mutex<DnsHints>,
}

/// A lock whose holder panicked still guards consistent data here (each update is one
/// call that leaves its map whole), so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Context from its parts (`EngineConfig::shared` makes it empty and bounded).
    pub(crate) fn new(learning: Learning, behaviour: Behaviour, dns: DnsHints) -> Arc<Shared> {
        Arc::new(Shared {
            learning: Mutex::new(learning),
            behaviour: Mutex::new(behaviour),
            dns: Mutex::new(dns),
        })
    }

    pub(crate) fn learning(&self) -> MutexGuard<'_, Learning> {
        lock(&self.learning)
    }

    pub(crate) fn behaviour(&self) -> MutexGuard<'_, Behaviour> {
        lock(&self.behaviour)
    }

    /// The DNS answers remembered (locked while the guard lives: read and drop it).
    pub fn dns(&self) -> MutexGuard<'_, DnsHints> {
        lock(&self.dns)
    }

    /// Endpoints the cache learned (new or refreshed entries), by every engine sharing it.
    pub fn cache_learned(&self) -> u64 {
        self.learning().learned()
    }

    /// Endpoint learnings refused for a spent subscriber budget, by every engine.
    pub fn cache_refused(&self) -> u64 {
        self.learning().refused()
    }
}

#[cfg(test)]
mod tests;
