//! Every store call the manager makes runs through [`traced`]: a `tracing`
//! span naming the operation and the storage key (never the session id),
//! and one event with its outcome and duration.

use std::future::Future;
use std::time::Instant;

use crate::{Error, StorageKey};

/// Runs one store call inside a `tracing` span naming `op` and `key`, and
/// logs its outcome: refusals (conflict, not found, exists) at `debug`,
/// failures at `warn`.
pub(super) async fn traced<T, F>(
    op: &'static str,
    key: Option<&StorageKey>,
    call: F,
) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    use tracing::Instrument as _;
    let span = match key {
        Some(key) => tracing::debug_span!("session_store", op, key = %key),
        None => tracing::debug_span!("session_store", op),
    };
    async move {
        let started = Instant::now();
        let result = call.await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => tracing::debug!(micros, "ok"),
            Err(e @ (Error::Conflict | Error::NotFound | Error::Exists)) => {
                tracing::debug!(micros, outcome = %e, "refused")
            }
            Err(e) => tracing::warn!(micros, error = %e, "store call failed"),
        }
        result
    }
    .instrument(span)
    .await
}
