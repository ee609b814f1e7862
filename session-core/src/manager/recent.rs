//! The records this manager wrote lately, by storage key. A request that
//! loads one of them asks the store only whether it changed
//! ([`SessionStore::load_if_changed`](crate::SessionStore::load_if_changed))
//! and, when it did not, shares the record instead of decoding a copy: a
//! hot session costs each request a version check, not a decode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::stored::Stored;
use crate::StorageKey;

/// How many records are kept; past that the set starts over (records are
/// at most [`SessionConfig::max_size`](super::SessionConfig::max_size)
/// each: 4 MiB at the default).
const CAPACITY: usize = 64;

/// Recently written records.
#[derive(Default)]
pub(super) struct Recent {
    map: Mutex<HashMap<StorageKey, Arc<Stored>>>,
}

impl Recent {
    fn lock(&self) -> MutexGuard<'_, HashMap<StorageKey, Arc<Stored>>> {
        // Every update is a single map operation: a panic elsewhere while
        // holding the lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The record last written under `key`, if kept.
    pub(super) fn get(&self, key: &StorageKey) -> Option<Arc<Stored>> {
        self.lock().get(key).cloned()
    }

    /// Keeps `stored` as the latest record under its key.
    pub(super) fn put(&self, stored: &Arc<Stored>) {
        let mut map = self.lock();
        if map.len() >= CAPACITY && !map.contains_key(&stored.key) {
            map.clear();
        }
        map.insert(stored.key, Arc::clone(stored));
    }

    /// Drops what is kept under `key` (deleted, or found changed and
    /// gone).
    pub(super) fn forget(&self, key: &StorageKey) {
        self.lock().remove(key);
    }
}
