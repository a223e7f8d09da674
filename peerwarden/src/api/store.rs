//! The history store as the handlers reach it: present or a 400, queried off the async
//! threads.

use std::sync::Arc;

use crate::{
    history::{History, HistoryError, Row, Which},
    report::{
        merged::{self, Minutes},
        source::Live,
    },
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

/// What the store adds to `live`'s window when it reaches back before the daemon's first
/// reading (`report::merged`): its label rows per minute over the minutes needed, and its
/// first row. `None`: the readings cover the window, or there is no store.
pub async fn before_start(
    state: &State,
    live: &Live<'_>,
) -> Result<Option<(Vec<Row>, Minutes, Option<i64>)>, ApiError> {
    let (Some(h), Some(need)) = (state.store(), merged::minutes(live)) else {
        return Ok(None);
    };
    let (rows, first) = query(h.clone(), move |h| {
        Ok((
            h.sum(need.from, need.to, Some(60), Which::Labels)?,
            h.first()?,
        ))
    })
    .await?;
    Ok(Some((rows, need, first)))
}
