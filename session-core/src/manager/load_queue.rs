//! Shared loads: requests of one session that load it at the same time
//! share one store call and one decoded record.
//!
//! A load that is already running when a request asks may have read the
//! store before the request arrived, so joining it could show the request
//! a state older than the request itself. Instead, requests that arrive
//! while a load of their key runs wait for it to end and then share the
//! *next* load, which starts after all of them arrived: every request
//! still sees the store as it was at some moment after it began, and 64
//! simultaneous requests of one session cost about two loads, not 64.
//!
//! Cancellation is safe: a request dropped while it loads for others hands
//! the turn to the next waiter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::stored::Stored;
use crate::{Error, StorageKey};

/// What a shared load found.
type Found = Result<Option<Arc<Stored>>, Error>;

/// Requests waiting for the next load of one key.
#[derive(Default)]
struct Waiting {
    /// Those waiting for the next load, in arrival order.
    next: Vec<oneshot::Sender<Turn>>,
}

/// What a waiting request is told.
enum Turn {
    /// The shared load's result.
    Found(Found),
    /// Run the next load, for these waiters too.
    Load(Vec<oneshot::Sender<Turn>>),
}

/// The loads in progress of one manager, by key.
#[derive(Default)]
pub(super) struct LoadQueue {
    map: Mutex<HashMap<StorageKey, Waiting>>,
}

impl LoadQueue {
    fn lock(&self) -> MutexGuard<'_, HashMap<StorageKey, Waiting>> {
        // Every update is a single step: a panic elsewhere while holding
        // the lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads `key` with `load`, or shares a load of it that starts after
    /// this call.
    pub(super) async fn load<F, Fut>(&self, key: StorageKey, load: F) -> Found
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Found>,
    {
        let waiting = {
            let mut map = self.lock();
            match map.get_mut(&key) {
                None => {
                    map.insert(key, Waiting::default());
                    None
                }
                Some(waiting) => {
                    let (tx, rx) = oneshot::channel();
                    waiting.next.push(tx);
                    Some(rx)
                }
            }
        };
        let others = match waiting {
            None => Vec::new(),
            Some(rx) => match rx.await {
                Ok(Turn::Found(found)) => return found,
                Ok(Turn::Load(others)) => others,
                // A turn is only dropped unsent when the map entry went
                // with it, which hands every waiter on first: load alone.
                Err(_) => return load().await,
            },
        };
        let mut turn = Loader {
            queue: self,
            key,
            others,
        };
        match load().await {
            Ok(stored) => {
                turn.share(|| Ok(stored.clone()));
                Ok(stored)
            }
            Err(e) => {
                let shared = Arc::new(e);
                turn.share(|| Err(Error::copy_of(&shared)));
                Err(Error::copy_of(&shared))
            }
        }
    }
}

/// The request running a load, for itself and `others`. Dropping it
/// (done, or cancelled mid-load) hands the next load to the first request
/// that arrived meanwhile, or ends the key's entry.
struct Loader<'a> {
    queue: &'a LoadQueue,
    key: StorageKey,
    others: Vec<oneshot::Sender<Turn>>,
}

impl Loader<'_> {
    /// Gives each request this load ran for its copy of what it found.
    fn share(&mut self, found: impl Fn() -> Found) {
        for tx in self.others.drain(..) {
            let _ = tx.send(Turn::Found(found()));
        }
    }
}

impl Drop for Loader<'_> {
    fn drop(&mut self) {
        let mut map = self.queue.lock();
        let Some(waiting) = map.get_mut(&self.key) else {
            return;
        };
        // Cancelled before sharing: those it loaded for go first.
        let mut next: Vec<_> = self.others.drain(..).collect();
        next.append(&mut waiting.next);
        while !next.is_empty() {
            let first = next.remove(0);
            match first.send(Turn::Load(next)) {
                Ok(()) => return,
                // That request went away: the next one takes the turn.
                Err(Turn::Load(rest)) => next = rest,
                Err(Turn::Found(_)) => return,
            }
        }
        map.remove(&self.key);
    }
}
