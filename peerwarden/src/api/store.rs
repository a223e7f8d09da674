//! The history store as the handlers reach it: present or a 400, queried off the async
//! threads.

use std::sync::Arc;

use crate::{
    history::{History, HistoryError},
    state::State,
};

use super::ApiError;

/// The daemon's history store, or a 400 saying there is none.
pub fn store(state: &State) -> Result<Arc<History>, ApiError> {
    state.store().cloned().ok_or_else(|| {
        ApiError::BadRequest(
            "this daemon keeps no history store: only the in-memory window is available".into(),
        )
    })
}

/// Runs a store query off the async threads.
pub async fn query<T: Send + 'static>(
    history: Arc<History>,
    f: impl FnOnce(&History) -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&history))
        .await
        .map_err(|e| ApiError::Internal(format!("history query task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("{e}")))
}
