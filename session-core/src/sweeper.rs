//! A background sweeper, for stores whose backend does not expire records
//! by itself (SQL tables): runs
//! [`delete_expired`](crate::SessionStore::delete_expired) periodically
//! until stopped.
//!
//! Stores offer it as a method (`SqliteStore::spawn_sweeper`,
//! `PostgresStore::spawn_sweeper`); [`spawn_sweeper`] runs it over any
//! store, yours included.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::{Error, SessionStore};

/// Counters of a running sweeper, as returned by [`SweeperHandle::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SweepStats {
    /// Sweeps that completed.
    pub sweeps: u64,
    /// Sweeps that failed (each logged, and retried next period).
    pub failures: u64,
    /// Records removed by all completed sweeps.
    pub removed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sweeps: AtomicU64,
    failures: AtomicU64,
    removed: AtomicU64,
}

/// Stops the sweeper it came from when dropped or when
/// [`SweeperHandle::stop`] is called.
#[derive(Debug)]
#[must_use = "dropping the handle stops the sweeper at once"]
pub struct SweeperHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl SweeperHandle {
    /// What the sweeper has done so far.
    pub fn stats(&self) -> SweepStats {
        SweepStats {
            sweeps: self.counters.sweeps.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
            removed: self.counters.removed.load(Ordering::Relaxed),
        }
    }

    /// Stops the sweeper and waits until its task has ended (a sweep in
    /// progress is abandoned between statements; every batch it finished
    /// stays done).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended; then there is nobody to tell.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // A task that panicked or was cancelled has ended as well.
            let _ = task.await;
        }
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which then ends.
        self.stop.take();
    }
}

/// Spawns a task on the current tokio runtime that calls
/// [`delete_expired`](SessionStore::delete_expired) on `store` now and
/// then every `period` (at least 1 ms), until the returned handle is
/// stopped or dropped. `name` names the store in its log lines.
///
/// A failed sweep is logged with `tracing` at `WARN` and counted in
/// [`SweeperHandle::stats`]; the task carries on and tries again next
/// period.
///
/// ```
/// use std::time::Duration;
/// use session_core::sweeper::spawn_sweeper;
/// use session_store_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let sweeper = spawn_sweeper(MemoryStore::default(), Duration::from_secs(60), "memory")?;
/// // ... serve requests ...
/// sweeper.stop().await;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Backend`] when called outside a tokio runtime.
pub fn spawn_sweeper<S>(
    store: S,
    period: Duration,
    name: impl fmt::Display + Send + 'static,
) -> Result<SweeperHandle, Error>
where
    S: SessionStore,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| Error::backend(Error::CORE, "spawn_sweeper", false, e))?;
    let period = period.max(Duration::from_millis(1));
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let counters = Arc::new(Counters::default());
    let task_counters = Arc::clone(&counters);
    let task = runtime.spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = ticker.tick() => {}
            }
            let outcome = tokio::select! {
                _ = &mut stop_rx => break,
                outcome = store.delete_expired() => outcome,
            };
            match outcome {
                Ok(removed) => {
                    task_counters.sweeps.fetch_add(1, Ordering::Relaxed);
                    task_counters.removed.fetch_add(removed, Ordering::Relaxed);
                    tracing::debug!(store = %name, removed, "swept expired sessions");
                }
                Err(error) => {
                    task_counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        store = %name,
                        error = &error as &dyn std::error::Error,
                        retry_in = ?period,
                        "sweeping expired sessions failed; retrying next period"
                    );
                }
            }
        }
    });
    Ok(SweeperHandle {
        stop: Some(stop_tx),
        task: Some(task),
        counters,
    })
}
