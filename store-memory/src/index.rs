//! The per-user index: a keyed hash of the user name → the short keys of
//! that user's sessions.
//!
//! The index holds no user names: each entry already stores its user, and
//! readers check it, so two names with the same 64-bit hash (a keyed
//! SipHash, so nobody can aim for one) only make a reader look at a few
//! more sessions. A user's one session is held inline in one table slot
//! (24 bytes); users with several sessions move to a second table of
//! small vectors.
//!
//! The index may hold entries whose session is gone (evicted for space);
//! readers skip them, and the sweep (and `list_by_user`) prunes them. It
//! never lacks a live session: a write adds the entry after inserting the
//! session into the cache and before it returns, and pruning re-checks the
//! cache under the index lock, which the adding write also takes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::entry::ShortKey;

/// Hashes a `u64` that is already a hash: uses it as is.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

#[derive(Debug, Default)]
struct Tables {
    /// Users with exactly one indexed session.
    one: Table<ShortKey>,
    /// Users with two or more.
    many: Table<Vec<ShortKey>>,
    /// Entries in both tables.
    len: usize,
}

impl Tables {
    fn add(&mut self, user: u64, key: ShortKey) {
        if let Some(keys) = self.many.get_mut(&user) {
            if !keys.contains(&key) {
                keys.push(key);
                self.len += 1;
            }
            return;
        }
        match self.one.insert(user, key) {
            None => self.len += 1,
            Some(old) if old == key => {}
            Some(old) => {
                self.one.remove(&user);
                self.many.insert(user, vec![old, key]);
                self.len += 1;
            }
        }
    }

    fn remove(&mut self, user: u64, key: &ShortKey) {
        if self.one.get(&user) == Some(key) {
            self.one.remove(&user);
            self.len -= 1;
        } else if let Some(keys) = self.many.get_mut(&user)
            && let Some(at) = keys.iter().position(|k| k == key)
        {
            keys.swap_remove(at);
            self.len -= 1;
            match keys.as_slice() {
                [] => {
                    self.many.remove(&user);
                }
                [last] => {
                    let last = *last;
                    self.many.remove(&user);
                    self.one.insert(user, last);
                }
                _ => {}
            }
        }
    }

    fn keys(&self, user: u64) -> Vec<ShortKey> {
        match (self.one.get(&user), self.many.get(&user)) {
            (Some(key), _) => vec![*key],
            (None, Some(keys)) => keys.clone(),
            (None, None) => Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct UserIndex {
    tables: Mutex<Tables>,
}

/// Entries pruned per hold of the index lock, so that a prune never holds
/// up writers for long.
const PRUNE_BATCH: usize = 1024;

impl UserIndex {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic elsewhere while holding the lock cannot leave the tables
        // inconsistent in a way that matters: at worst a count is off or a
        // stale entry stays, which readers tolerate.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Indexes `key` under `user` (a user hash).
    pub(crate) fn add(&self, user: u64, key: ShortKey) {
        self.lock().add(user, key);
    }

    /// Unindexes `key` from `user`.
    pub(crate) fn remove(&self, user: u64, key: &ShortKey) {
        self.lock().remove(user, key);
    }

    /// Unindexes `key` from `user` if `gone(key)`, checked under the index
    /// lock.
    pub(crate) fn remove_if(&self, user: u64, key: &ShortKey, gone: impl Fn(&ShortKey) -> bool) {
        let mut tables = self.lock();
        if gone(key) {
            tables.remove(user, key);
        }
    }

    /// The keys indexed under `user`.
    pub(crate) fn keys_of(&self, user: u64) -> Vec<ShortKey> {
        self.lock().keys(user)
    }

    /// Number of (user, key) entries.
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }

    /// Removes every entry whose key is `gone`, a batch at a time; returns
    /// how many it removed.
    pub(crate) fn prune(&self, gone: impl Fn(&ShortKey) -> bool) -> usize {
        let all: Vec<(u64, ShortKey)> = {
            let tables = self.lock();
            let many = tables
                .many
                .iter()
                .flat_map(|(u, keys)| keys.iter().map(move |k| (*u, *k)));
            tables
                .one
                .iter()
                .map(|(u, k)| (*u, *k))
                .chain(many)
                .collect()
        };
        let mut pruned = 0;
        for batch in all.chunks(PRUNE_BATCH) {
            let mut tables = self.lock();
            for (user, key) in batch {
                if gone(key) {
                    let before = tables.len;
                    tables.remove(*user, key);
                    pruned += before - tables.len;
                }
            }
        }
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ShortKey {
        ShortKey([n; 16])
    }

    #[test]
    fn grows_from_one_to_many_and_back() {
        let index = UserIndex::default();
        index.add(1, key(1));
        index.add(1, key(1)); // idempotent
        assert_eq!(index.keys_of(1), vec![key(1)]);
        assert_eq!(index.len(), 1);
        index.add(1, key(2));
        index.add(1, key(3));
        index.add(1, key(3));
        let mut keys = index.keys_of(1);
        keys.sort_by_key(|k| k.0);
        assert_eq!(keys, vec![key(1), key(2), key(3)]);
        assert_eq!(index.len(), 3);
        index.remove(1, &key(9)); // not there: nothing happens
        index.remove(2, &key(1)); // other user: nothing happens
        assert_eq!(index.len(), 3);
        index.remove(1, &key(2));
        index.remove(1, &key(1));
        assert_eq!(index.keys_of(1), vec![key(3)]);
        index.remove(1, &key(3));
        assert!(index.keys_of(1).is_empty());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn prune_and_remove_if_remove_only_what_is_gone() {
        let index = UserIndex::default();
        for n in 0..10u8 {
            index.add(u64::from(n % 3), key(n));
        }
        index.remove_if(0, &key(0), |_| false);
        assert_eq!(index.len(), 10);
        index.remove_if(0, &key(0), |_| true);
        assert_eq!(index.len(), 9);
        assert_eq!(index.prune(|k| k.0[0] % 2 == 0), 4);
        assert_eq!(index.len(), 5);
        let mut left: Vec<u8> = (0..3)
            .flat_map(|u| index.keys_of(u))
            .map(|k| k.0[0])
            .collect();
        left.sort_unstable();
        assert_eq!(left, vec![1, 3, 5, 7, 9]);
    }
}
