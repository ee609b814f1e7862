//! A background sweeper, for stores whose backend does not expire records
//! by itself (SQL tables): runs
//! [`delete_expired`](crate::SessionStore::delete_expired) periodically
//! until stopped.
//!
//! One sweeper serves every store, third-party ones included: bring
//! [`SweeperExt`] into scope and call `store.spawn_sweeper(period)` on any
//! cloneable store (every store of this workspace, any `Arc<S>`, an
//! `Arc<dyn SessionStore>`). A store with its own way of sweeping (short
//! batches, rows skipped while locked) puts it in its `delete_expired`,
//! which is all the sweeper calls. [`spawn_sweeper`] is the same over a
//! store given by value, with a log label of your choice.
//!
//! ```
//! use std::time::Duration;
//! use session_core::sweeper::SweeperExt;
//! use session_store_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), session_core::Error> {
//! let store = MemoryStore::default();
//! let sweeper = store.spawn_sweeper(Duration::from_secs(60))?;
//! // ... serve requests with `store` ...
//! sweeper.stop().await;
//! # Ok(())
//! # }
//! ```

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

mod sealed {
    /// Keeps [`SweeperExt`](super::SweeperExt) implemented by its blanket
    /// impl only.
    pub trait Sealed {}
    impl<S: crate::SessionStore + Clone> Sealed for S {}
}

/// `store.spawn_sweeper(period)` for every cloneable [`SessionStore`]:
/// this workspace's stores, yours, `Arc<S>` and `Arc<dyn SessionStore>`.
///
/// Sealed: implemented for every `S: SessionStore + Clone`, and nothing
/// else.
pub trait SweeperExt: SessionStore + Clone + sealed::Sealed {
    /// Spawns a task on the current tokio runtime that calls
    /// [`delete_expired`](SessionStore::delete_expired) on a clone of this
    /// store now and then every `period` (at least 1 ms), until the
    /// returned handle is stopped or dropped. Its log lines name the store
    /// by [`SessionStore::name`].
    ///
    /// A failed sweep is logged with `tracing` at `WARN` and counted in
    /// [`SweeperHandle::stats`]; the task carries on and tries again next
    /// period. With several app servers on one database, one sweeper is
    /// enough; whether more do harm is up to the store's `delete_expired`
    /// (the SQL stores of this workspace skip each other's rows).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use session_core::SessionStore;
    /// use session_core::sweeper::SweeperExt;
    /// use session_store_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), session_core::Error> {
    /// let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
    /// let sweeper = store.spawn_sweeper(Duration::from_millis(10))?;
    /// tokio::time::sleep(Duration::from_millis(50)).await;
    /// assert!(sweeper.stats().sweeps >= 1);
    /// sweeper.stop().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when called outside a tokio runtime.
    fn spawn_sweeper(&self, period: Duration) -> Result<SweeperHandle, Error> {
        spawn_sweeper(self.clone(), period, self.name())
    }
}

impl<S: SessionStore + Clone> SweeperExt for S {}

/// Spawns a task on the current tokio runtime that calls
/// [`delete_expired`](SessionStore::delete_expired) on `store` now and
/// then every `period` (at least 1 ms), until the returned handle is
/// stopped or dropped. `name` names the store in its log lines (say, a
/// table as well as the kind of store). [`SweeperExt::spawn_sweeper`] is
/// the same with the store's [`SessionStore::name`].
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
