//! Bounds the password hashes: how many run at once, and how many wait.
//!
//! Each Argon2 check of the demo's parameters (argon2's defaults, the
//! OWASP Password Storage cheat sheet's Argon2id minimum) takes 19 MiB of
//! memory and tens of milliseconds of a core. Unbounded, a burst of logins
//! would take gigabytes; so at most [`HashGate::concurrent`] hashes run,
//! at most [`HashGate::queued`] more wait their turn, and an attempt
//! beyond both is answered `503 Service Unavailable` with `Retry-After`
//! at once, without waiting and without being counted by the throttle.
//!
//! The permits travel with the hash into its blocking thread, so a
//! request cancelled mid-hash (the client went away) still holds its
//! place until the hash is done: the bound is on hashes, not on requests.
//!
//! The gate is first come, first served: one client sending logins as
//! fast as it can may fill it, and others then get 503 until it stops.
//! That costs availability, never an account (nothing is counted against
//! them); sharing it fairly needs a bound per client, here or in a
//! reverse proxy's connection limits.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Admits password hashes up to a bound (see the [module docs](self)).
#[derive(Debug)]
pub struct HashGate {
    /// One permit per running hash.
    running: Arc<Semaphore>,
    /// One permit per running or waiting hash.
    admitted: Arc<Semaphore>,
    concurrent: usize,
    queued: usize,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    running: AtomicUsize,
    most: AtomicUsize,
}

impl HashGate {
    /// The most of either bound [`HashGate::new`] takes.
    pub const MAX: usize = 4096;

    /// A gate for `concurrent` running hashes (at least 1) and `queued`
    /// waiting ones, each at most [`HashGate::MAX`].
    pub fn new(concurrent: usize, queued: usize) -> Self {
        let concurrent = concurrent.clamp(1, Self::MAX);
        let queued = queued.min(Self::MAX);
        Self {
            running: Arc::new(Semaphore::new(concurrent)),
            admitted: Arc::new(Semaphore::new(concurrent + queued)),
            concurrent,
            queued,
            stats: Arc::default(),
        }
    }

    /// How many hashes may run at once.
    pub fn concurrent(&self) -> usize {
        self.concurrent
    }

    /// How many hashes may wait for a turn.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// A place for one hash, or `None` when as many are running and
    /// waiting as the gate allows.
    pub fn try_enter(&self) -> Option<Admission> {
        let admitted = Arc::clone(&self.admitted).try_acquire_owned().ok()?;
        Some(Admission {
            admitted,
            running: Arc::clone(&self.running),
            stats: Arc::clone(&self.stats),
        })
    }

    /// The most hashes that have run at the same moment so far.
    pub fn most_concurrent(&self) -> usize {
        self.stats.most.load(Ordering::Relaxed)
    }
}

impl Default for HashGate {
    /// As many running hashes as the machine has cores, up to 8 (at most
    /// 152 MiB of Argon2 memory), and four times as many waiting.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let concurrent = cores.min(8);
        Self::new(concurrent, 4 * concurrent)
    }
}

/// A place in a [`HashGate`]: run the hash with [`Admission::run`].
#[derive(Debug)]
pub struct Admission {
    admitted: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
    stats: Arc<Stats>,
}

impl Admission {
    /// Waits for a turn, then runs `work` on a blocking thread that holds
    /// both permits until it returns. `None` if `work` panicked.
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        // The gate never closes its semaphores, so this cannot fail.
        let running = Arc::clone(&self.running).acquire_owned().await.ok()?;
        let Self {
            admitted, stats, ..
        } = self;
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            // Dropped before the permits: the count never exceeds them.
            let _busy = Busy::enter(&stats);
            work()
        })
        .await
        .ok()
    }
}

/// Counts one running hash while it lives.
struct Busy<'a>(&'a Stats);

impl<'a> Busy<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now = stats.running.fetch_add(1, Ordering::Relaxed) + 1;
        stats.most.fetch_max(now, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn admits_running_plus_queued_and_no_more() {
        let gate = HashGate::new(2, 3);
        let held: Vec<_> = (0..5).map(|_| gate.try_enter().unwrap()).collect();
        assert!(gate.try_enter().is_none());
        drop(held);
        assert!(gate.try_enter().is_some());
    }

    #[test]
    fn bounds_are_clamped() {
        let gate = HashGate::new(0, usize::MAX);
        assert_eq!((gate.concurrent(), gate.queued()), (1, HashGate::MAX));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_the_bound_at_once_and_holds_places_until_done() {
        let gate = HashGate::new(2, 6);
        let (release, wait) = mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let admission = gate.try_enter().unwrap();
                let wait = Arc::clone(&wait);
                tokio::spawn(admission.run(move || {
                    wait.lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(30))
                        .unwrap();
                }))
            })
            .collect();
        // All 8 places are taken while the work is blocked.
        assert!(gate.try_enter().is_none());
        for _ in 0..8 {
            release.send(()).unwrap();
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Some(()));
        }
        assert!(gate.most_concurrent() >= 1);
        assert!(gate.most_concurrent() <= 2, "{}", gate.most_concurrent());
        assert!(gate.try_enter().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_request_keeps_its_place_until_its_hash_is_done() {
        let gate = HashGate::new(1, 0);
        let (started, is_started) = mpsc::channel::<()>();
        let (release, wait) = mpsc::channel::<()>();
        let admission = gate.try_enter().unwrap();
        let task = tokio::spawn(admission.run(move || {
            started.send(()).unwrap();
            wait.recv_timeout(Duration::from_secs(30)).unwrap();
        }));
        tokio::task::spawn_blocking(move || is_started.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
        // The client goes away: its request's future is dropped...
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        // ...but its hash still runs, and still holds the only place.
        assert!(gate.try_enter().is_none());
        release.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while gate.try_enter().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the place was never given back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
