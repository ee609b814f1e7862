//! The per-user index: user → the keys (and their incarnations) bound to
//! that user.
//!
//! The index may briefly hold entries whose session is gone (an eviction
//! notice not yet delivered); readers filter against the cache and prune
//! what they find dead. It never lacks a live session: every write that
//! binds a user adds the entry before the write completes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use session_core::StorageKey;

#[derive(Debug, Default)]
pub(crate) struct UserIndex {
    users: Mutex<HashMap<Box<str>, HashMap<StorageKey, u64>>>,
}

impl UserIndex {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, HashMap<StorageKey, u64>>> {
        // A panic elsewhere while holding the lock cannot leave the map
        // half-updated (every critical section is a single map call), so a
        // poisoned lock is safe to keep using.
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds `key` (in its `incarnation`) to `user`.
    pub(crate) fn add(&self, user: &str, key: StorageKey, incarnation: u64) {
        self.lock()
            .entry(Box::from(user))
            .or_default()
            .insert(key, incarnation);
    }

    /// Unbinds `key` from `user`, but only the given incarnation of it.
    pub(crate) fn remove(&self, user: &str, key: &StorageKey, incarnation: u64) {
        let mut users = self.lock();
        if let Some(keys) = users.get_mut(user) {
            if keys.get(key) == Some(&incarnation) {
                keys.remove(key);
            }
            if keys.is_empty() {
                users.remove(user);
            }
        }
    }

    /// The keys bound to `user`, with their incarnations.
    pub(crate) fn keys_of(&self, user: &str) -> Vec<(StorageKey, u64)> {
        self.lock()
            .get(user)
            .map(|keys| keys.iter().map(|(k, i)| (*k, *i)).collect())
            .unwrap_or_default()
    }

    /// Every (user, key, incarnation) in the index.
    pub(crate) fn snapshot(&self) -> Vec<(Box<str>, StorageKey, u64)> {
        self.lock()
            .iter()
            .flat_map(|(user, keys)| keys.iter().map(|(k, i)| (user.clone(), *k, *i)))
            .collect()
    }

    /// Number of users with at least one index entry.
    #[cfg(test)]
    pub(crate) fn user_count(&self) -> usize {
        self.lock().len()
    }
}
