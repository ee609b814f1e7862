//! The optional background sweeper: session-core's
//! [`spawn_sweeper`](session_core::sweeper::spawn_sweeper) over this store.

use std::time::Duration;

use session_core::Error;
use session_core::sweeper::{SweeperHandle, spawn_sweeper};

use crate::SqliteStore;

impl SqliteStore {
    /// Spawns a task on the current tokio runtime that calls
    /// [`delete_expired`](session_core::SessionStore::delete_expired) now and then every
    /// `period` (at least 1 ms), until the returned handle is stopped or
    /// dropped.
    ///
    /// A failed sweep is logged with `tracing` at `WARN` and counted in
    /// [`SweeperHandle::stats`]; the task carries on and tries again next
    /// period.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_store_sqlite::SqliteStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), session_core::Error> {
    /// let store = SqliteStore::open_in_memory().await?;
    /// let sweeper = store.spawn_sweeper(Duration::from_secs(60))?;
    /// // ... serve requests ...
    /// sweeper.stop().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when called outside a tokio runtime.
    pub fn spawn_sweeper(&self, period: Duration) -> Result<SweeperHandle, Error> {
        spawn_sweeper(
            self.clone(),
            period,
            format!("sqlite table {}", self.table()),
        )
    }
}
