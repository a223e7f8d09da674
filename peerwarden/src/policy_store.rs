//! The active policy and the last rejected one.
//!
//! A new policy (from the file, SIGHUP or `PUT /api/v1/policy`) is validated whole and
//! handed to the enforcement hook (which fills the kernel maps before swapping them in);
//! only when both succeed does it become active. Otherwise the running policy stays, and
//! the rejection is kept with its errors for the API and logged.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use peerwarden_policies::{Policy, PolicyErrors};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ktime;

/// Installs a validated policy in the data path; an error leaves the old one in place.
pub type ApplyHook = Box<dyn Fn(&Policy) -> anyhow::Result<()> + Send + Sync>;

/// The policy in force.
#[derive(Clone)]
pub struct Active {
    /// The YAML it was loaded from: shared, so reading the active policy (every second by
    /// the subscriber reader, on API requests) does not copy a large file's text.
    pub source: Arc<str>,
    /// Where it came from (a path, or `api`).
    pub origin: String,
    /// When it became active.
    pub loaded_at: SystemTime,
    /// The validated model.
    pub policy: Arc<Policy>,
}

/// One validation error, as the API reports it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorAt {
    /// 1-based line (0 when the error is about the whole file).
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// The last policy that was refused.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// Where it came from.
    pub origin: String,
    /// When it was refused (RFC 3339).
    pub at: String,
    /// Why: validation errors with positions, or the data path's refusal.
    pub errors: Vec<ErrorAt>,
}

/// Why a replacement was refused.
#[derive(Debug)]
pub enum ReplaceError {
    /// The policy is invalid.
    Invalid(Vec<ErrorAt>),
    /// The data path could not take it.
    Apply(String),
}

/// Holds the active and last rejected policies.
pub struct PolicyStore {
    active: RwLock<Option<Active>>,
    rejected: Mutex<Option<Rejected>>,
    hook: Option<ApplyHook>,
    /// Policies accepted since start.
    pub reloads: AtomicU64,
    /// Policies refused since start.
    pub failures: AtomicU64,
}

fn errors_of(e: &PolicyErrors) -> Vec<ErrorAt> {
    e.errors()
        .iter()
        .map(|e| ErrorAt {
            line: e.line(),
            column: e.column(),
            message: e.message().to_string(),
            hint: Some(e.hint()).filter(|h| !h.is_empty()).map(str::to_string),
        })
        .collect()
}

impl PolicyStore {
    /// An empty store; `hook` installs policies in the data path (none in tests of the API).
    pub fn new(hook: Option<ApplyHook>) -> PolicyStore {
        PolicyStore {
            active: RwLock::new(None),
            rejected: Mutex::new(None),
            hook,
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The policy in force, if any.
    pub fn active(&self) -> Option<Active> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last refused policy, if any.
    pub fn rejected(&self) -> Option<Rejected> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates `source` and, if it is valid and the data path takes it, makes it active.
    pub fn replace(&self, source: String, origin: &str) -> Result<(), ReplaceError> {
        let policy = peerwarden_policies::load_str(&source, origin)
            .map_err(|e| ReplaceError::Invalid(errors_of(&e)));
        self.settle(source, origin, policy)
    }

    /// Makes `policy`, validated from `source` by the caller, active if the data path takes
    /// it: the daemon's start validates the file before it loads the probe, and does not
    /// validate it again here.
    pub fn install(
        &self,
        source: String,
        origin: &str,
        policy: Policy,
    ) -> Result<(), ReplaceError> {
        self.settle(source, origin, Ok(policy))
    }

    /// Hands a validated policy to the data path; keeps it active, or the refusal.
    fn settle(
        &self,
        source: String,
        origin: &str,
        validated: Result<Policy, ReplaceError>,
    ) -> Result<(), ReplaceError> {
        let result = validated.and_then(|policy| {
            if let Some(hook) = &self.hook {
                hook(&policy).map_err(|e| ReplaceError::Apply(format!("{e:#}")))?;
            }
            Ok(policy)
        });
        match result {
            Ok(policy) => {
                *self.active.write().unwrap_or_else(|p| p.into_inner()) = Some(Active {
                    source: source.into(),
                    origin: origin.to_string(),
                    loaded_at: SystemTime::now(),
                    policy: Arc::new(policy),
                });
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(origin, "policy active");
                Ok(())
            }
            Err(e) => {
                let errors = match &e {
                    ReplaceError::Invalid(errors) => errors.clone(),
                    ReplaceError::Apply(msg) => vec![ErrorAt {
                        line: 0,
                        column: 0,
                        message: msg.clone(),
                        hint: None,
                    }],
                };
                for err in &errors {
                    tracing::warn!(
                        origin,
                        line = err.line,
                        column = err.column,
                        "policy rejected: {}",
                        err.message
                    );
                }
                *self.rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some(Rejected {
                    origin: origin.to_string(),
                    at: ktime::rfc3339(SystemTime::now()),
                    errors,
                });
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = include_str!("../../policies/examples/lab.yaml");

    #[test]
    fn install_hands_a_validated_policy_to_the_data_path() {
        let policy = peerwarden_policies::load_str(POLICY, "lab.yaml").expect("valid");
        let refusing = PolicyStore::new(Some(Box::new(|_| anyhow::bail!("no room"))));
        let refused = refusing.install(POLICY.into(), "lab.yaml", policy.clone());
        assert!(
            matches!(&refused, Err(ReplaceError::Apply(m)) if m == "no room"),
            "{refused:?}"
        );
        assert!(refusing.active().is_none());
        assert_eq!(refusing.failures.load(Ordering::Relaxed), 1);
        let rejected = refusing.rejected().expect("kept");
        assert_eq!(rejected.origin, "lab.yaml");
        assert_eq!(rejected.errors[0].message, "no room");

        let store = PolicyStore::new(None);
        assert!(store.install(POLICY.into(), "lab.yaml", policy).is_ok());
        let active = store.active().expect("active");
        assert_eq!(
            (active.origin.as_str(), &*active.source),
            ("lab.yaml", POLICY)
        );
        assert_eq!(store.reloads.load(Ordering::Relaxed), 1);
        assert!(store.rejected().is_none());
    }
}
