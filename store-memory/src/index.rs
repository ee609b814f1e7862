//! The per-user index: user → the keys (and their incarnations) bound to
//! that user.
//!
//! The index may briefly hold entries whose session is gone (an eviction
//! notice not yet delivered); readers filter against the cache and prune
//! what they find dead. It never lacks a live session: every write that
//! binds a user adds the entry before the write completes.
//!
//! Most users have one session, so a user's keys are held inline until
//! there are two: a one-element hash map would cost about 200 bytes more
//! per signed-in session.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Mutex, MutexGuard, PoisonError};

use session_core::StorageKey;

use crate::locks::DigestHasher;

type KeyMap = HashMap<StorageKey, u64, BuildHasherDefault<DigestHasher>>;

/// The keys of one user.
#[derive(Debug)]
enum Keys {
    One(StorageKey, u64),
    Many(KeyMap),
}

impl Keys {
    fn insert(&mut self, key: StorageKey, incarnation: u64) {
        match self {
            Self::One(k, i) if *k == key => *i = incarnation,
            Self::One(k, i) => {
                let mut map = KeyMap::default();
                map.insert(*k, *i);
                map.insert(key, incarnation);
                *self = Self::Many(map);
            }
            Self::Many(map) => {
                map.insert(key, incarnation);
            }
        }
    }

    /// Removes `key` if it is in this `incarnation`; returns whether the
    /// set is now empty.
    fn remove(&mut self, key: &StorageKey, incarnation: u64) -> bool {
        match self {
            Self::One(k, i) => k == key && *i == incarnation,
            Self::Many(map) => {
                if map.get(key) == Some(&incarnation) {
                    map.remove(key);
                }
                if map.len() == 1
                    && let Some((k, i)) = map.iter().next()
                {
                    *self = Self::One(*k, *i);
                }
                matches!(self, Self::Many(map) if map.is_empty())
            }
        }
    }

    fn pairs(&self) -> Vec<(StorageKey, u64)> {
        match self {
            Self::One(k, i) => vec![(*k, *i)],
            Self::Many(map) => map.iter().map(|(k, i)| (*k, *i)).collect(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct UserIndex {
    users: Mutex<HashMap<Box<str>, Keys>>,
}

impl UserIndex {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Keys>> {
        // A panic elsewhere while holding the lock cannot leave the map
        // half-updated (every critical section is a single map call), so a
        // poisoned lock is safe to keep using.
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds `key` (in its `incarnation`) to `user`.
    pub(crate) fn add(&self, user: &str, key: StorageKey, incarnation: u64) {
        let mut users = self.lock();
        match users.get_mut(user) {
            Some(keys) => keys.insert(key, incarnation),
            None => {
                users.insert(Box::from(user), Keys::One(key, incarnation));
            }
        }
    }

    /// Unbinds `key` from `user`, but only the given incarnation of it.
    pub(crate) fn remove(&self, user: &str, key: &StorageKey, incarnation: u64) {
        let mut users = self.lock();
        if let Some(keys) = users.get_mut(user)
            && keys.remove(key, incarnation)
        {
            users.remove(user);
        }
    }

    /// The keys bound to `user`, with their incarnations.
    pub(crate) fn keys_of(&self, user: &str) -> Vec<(StorageKey, u64)> {
        self.lock().get(user).map(Keys::pairs).unwrap_or_default()
    }

    /// Every (user, key, incarnation) in the index.
    pub(crate) fn snapshot(&self) -> Vec<(Box<str>, StorageKey, u64)> {
        self.lock()
            .iter()
            .flat_map(|(user, keys)| {
                keys.pairs()
                    .into_iter()
                    .map(move |(k, i)| (user.clone(), k, i))
            })
            .collect()
    }

    /// Number of users with at least one index entry.
    #[cfg(test)]
    pub(crate) fn user_count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> StorageKey {
        StorageKey::from_bytes([n; 32])
    }

    #[test]
    fn grows_from_one_to_many_and_back() {
        let index = UserIndex::default();
        index.add("u", key(1), 10);
        assert_eq!(index.keys_of("u"), vec![(key(1), 10)]);
        index.add("u", key(1), 11); // same key, newer incarnation
        assert_eq!(index.keys_of("u"), vec![(key(1), 11)]);
        index.add("u", key(2), 20);
        let mut keys = index.keys_of("u");
        keys.sort();
        assert_eq!(keys, vec![(key(1), 11), (key(2), 20)]);
        // A stale incarnation removes nothing.
        index.remove("u", &key(2), 19);
        assert_eq!(index.keys_of("u").len(), 2);
        index.remove("u", &key(2), 20);
        assert_eq!(index.keys_of("u"), vec![(key(1), 11)]);
        index.remove("u", &key(1), 10);
        assert_eq!(index.keys_of("u"), vec![(key(1), 11)]);
        index.remove("u", &key(1), 11);
        assert_eq!(index.user_count(), 0);
        assert!(index.keys_of("u").is_empty());
    }
}
