//! An in-process [`SessionStore`] on [`moka`]: byte-bounded, LRU,
//! per-entry expiry, with a per-user index.
//!
//! ```
//! use std::time::Duration;
//! use session_core::{Record, SessionId, SessionStore, Timestamp};
//! use session_store_memory::MemoryStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let store = MemoryStore::new(64 * 1024 * 1024); // at most 64 MiB of sessions
//! let id = SessionId::generate()?;
//! let now = Timestamp::now();
//! let mut record = Record::new(id.storage_key(), now, now.saturating_add(Duration::from_secs(1800)));
//! record.user = Some("alice".into());
//! store.create(&record).await?;
//! assert_eq!(store.load(&id.storage_key()).await?, Some(record.clone()));
//! assert_eq!(store.save(&record).await?, 1);                     // compare-and-set
//! assert!(store.save(&record).await.is_err());                   // stale version: Conflict
//! assert_eq!(store.list_by_user("alice").await?.len(), 1);
//! assert_eq!(store.delete_by_user("alice").await?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it keeps the contract
//!
//! * **Bounded by bytes.** The capacity is a number of bytes; a weigher
//!   counts each entry's key, fields and data text. When full, the least
//!   recently used sessions are evicted: moka's default TinyLFU policy
//!   would instead refuse *new* entries, which would log out every new
//!   user while idle old sessions stay.
//! * **Expiry per entry.** Each entry expires at its record's
//!   `expires_at`, and every read checks `expires_at` against the wall
//!   clock as well, so an expired session is never returned, even before
//!   moka's timer wheel has removed it.
//! * **Atomic per key.** Every mutation (create, compare-and-set save,
//!   touch, delete) holds its key's write lock (one of 4096 async lock
//!   stripes) across its read, decision and write, so writes to one key
//!   serialise and none is lost. Reads take no lock. This replaced moka's
//!   per-key `and_compute_with`, whose waiter bookkeeping made a
//!   load-then-save request cycle cost about twice the CPU (measured: 13.1 s
//!   vs 6.9 s for 1.28 M cycles at 64 tasks).
//! * **Compact.** Each session is one allocation: a 36-byte header
//!   (version, timestamps), the user name, and the data map as JSON text
//!   (not a tree of values), which keeps a typical session to a few
//!   hundred bytes including moka's own bookkeeping.
//! * **Per-user index.** Kept in step by every write and by moka's
//!   eviction listener (for sessions that expire or are evicted); readers
//!   filter against the cache, so a stale entry is never returned.
//!
//! Process memory is the limit here: sessions vanish on restart and are
//! not shared between processes. Use the Redis or SQLite store for that.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod entry;
mod index;
mod locks;

use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use session_core::{Error, Record, SessionStore, StorageKey, Timestamp};

use entry::{Entry, EntryBuf};
use index::UserIndex;

pub use moka;

/// Default capacity: 256 MiB of sessions.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The in-process session store. Cheap to clone: clones share one cache.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache<StorageKey, Entry, BuildHasherDefault<locks::DigestHasher>>,
    locks: locks::KeyLocks,
    index: Arc<UserIndex>,
    incarnations: AtomicU64,
    max_bytes: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_bytes", &self.inner.max_bytes)
            .field("entries", &self.inner.cache.entry_count())
            .field("weighted_bytes", &self.inner.cache.weighted_size())
            .finish()
    }
}

impl Default for MemoryStore {
    /// A store bounded at [`DEFAULT_MAX_BYTES`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

/// Expires each entry at its record's `expires_at`.
struct ExpireAtDeadline;

impl ExpireAtDeadline {
    fn remaining(entry: &Entry) -> Duration {
        Timestamp::from_millis(entry.expires_at()).duration_since(Timestamp::now())
    }
}

impl Expiry<StorageKey, Entry> for ExpireAtDeadline {
    fn expire_after_create(&self, _: &StorageKey, value: &Entry, _: Instant) -> Option<Duration> {
        Some(Self::remaining(value))
    }

    fn expire_after_update(
        &self,
        _: &StorageKey,
        value: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Self::remaining(value))
    }
}

/// What a locked write decided, reported back to the caller.
enum Outcome<T> {
    Done(T),
    Failed(Error),
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of sessions (as counted by the
    /// weigher: key, fields and data text of each entry), evicting the
    /// least recently used when full.
    pub fn new(max_bytes: u64) -> Self {
        let index = Arc::new(UserIndex::default());
        let listener_index = Arc::clone(&index);
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &StorageKey, value: &Entry| {
                u32::try_from(value.weight()).unwrap_or(u32::MAX)
            })
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ExpireAtDeadline)
            .eviction_listener(move |key: Arc<StorageKey>, value: Entry, cause| {
                // Replacements are indexed by the write that made them.
                if cause != RemovalCause::Replaced
                    && let Some(user) = value.user()
                {
                    listener_index.remove(user, &key, value.incarnation());
                }
            })
            .build_with_hasher(BuildHasherDefault::default());
        Self {
            inner: Arc::new(Inner {
                cache,
                locks: locks::KeyLocks::new(),
                index,
                incarnations: AtomicU64::new(1),
                max_bytes,
            }),
        }
    }

    /// The configured capacity in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// Approximate number of entries held (expired ones may still count
    /// until moka's maintenance runs).
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Approximate bytes held, as counted by the weigher.
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.cache.weighted_size()
    }

    /// Runs moka's pending maintenance now (eviction, expiry, listeners),
    /// so that counts and the index reflect every change so far.
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
    }

    fn check_size(&self, entry: &EntryBuf) -> Result<(), Error> {
        let size = entry.weight();
        if u64::try_from(size).unwrap_or(u64::MAX) > self.inner.max_bytes {
            return Err(Error::TooLarge {
                size,
                limit: usize::try_from(self.inner.max_bytes).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    /// Runs `decide` on the live entry under `key` (or `None`) while
    /// holding the key's write lock, applies what it chose, and returns
    /// what it reported.
    async fn locked_write<T>(
        &self,
        key: StorageKey,
        decide: impl FnOnce(Option<&Entry>) -> (Op<Entry>, Outcome<T>),
    ) -> Result<T, Error> {
        let _guard = self.inner.locks.lock(&key).await;
        let current = self.inner.cache.get(&key).await;
        let now = Timestamp::now();
        let live = current.as_ref().filter(|e| e.is_live_at(now));
        let (op, result) = decide(live);
        // Whatever replaces or removes an entry also unindexes it; the
        // eviction listener ignores replacements.
        if let (Some(old), Op::Put(_) | Op::Remove) = (&current, &op)
            && let Some(user) = old.user()
        {
            self.inner.index.remove(user, &key, old.incarnation());
        }
        match op {
            Op::Put(new) => {
                if let Some(user) = new.user() {
                    self.inner.index.add(user, key, new.incarnation());
                }
                self.inner.cache.insert(key, new).await;
            }
            Op::Remove => {
                self.inner.cache.invalidate(&key).await;
            }
            Op::Nop => {}
        }
        match result {
            Outcome::Done(value) => Ok(value),
            Outcome::Failed(error) => Err(error),
        }
    }

    fn next_incarnation(&self) -> u64 {
        self.inner.incarnations.fetch_add(1, Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        let entry = EntryBuf::encode(record, record.version, self.next_incarnation(), "create")?;
        self.check_size(&entry)?;
        let entry = entry.freeze();
        self.locked_write(record.key, move |live| match live {
            Some(_) => (Op::Nop, Outcome::Failed(Error::Exists)),
            None => (Op::Put(entry), Outcome::Done(())),
        })
        .await
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        match self.inner.cache.get(key).await {
            Some(entry) if entry.is_live_at(Timestamp::now()) => entry.decode(*key).map(Some),
            _ => Ok(None),
        }
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        let next = record.version.checked_add(1).ok_or(Error::Conflict)?;
        // The incarnation is fixed inside the closure, from the live entry.
        let mut entry = EntryBuf::encode(record, next, 0, "save")?;
        self.check_size(&entry)?;
        self.locked_write(record.key, move |live| match live {
            None => (Op::Nop, Outcome::Failed(Error::NotFound)),
            Some(current) if current.version() != record.version => {
                (Op::Nop, Outcome::Failed(Error::Conflict))
            }
            Some(current) => {
                entry.set_incarnation(current.incarnation());
                (Op::Put(entry.freeze()), Outcome::Done(next))
            }
        })
        .await
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.locked_write(*key, move |live| match live {
            None => (Op::Nop, Outcome::Done(false)),
            Some(_) if expires_at <= Timestamp::now() => (Op::Remove, Outcome::Done(true)),
            Some(current) => (
                Op::Put(current.with_expiry(expires_at)),
                Outcome::Done(true),
            ),
        })
        .await
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.locked_write(*key, |live| (Op::Remove, Outcome::Done(live.is_some())))
            .await
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<Record>, Error> {
        let now = Timestamp::now();
        let mut records = Vec::new();
        for (key, incarnation) in self.inner.index.keys_of(user) {
            match self.inner.cache.get(&key).await {
                Some(entry)
                    if entry.incarnation() == incarnation
                        && entry.is_live_at(now)
                        && entry.user() == Some(user) =>
                {
                    records.push(entry.decode(key)?);
                }
                // Gone: a stale index entry (its eviction notice is still
                // on the way), pruned here.
                None => self.inner.index.remove(user, &key, incarnation),
                // Expired or rebound: filtered out; the write or eviction
                // that made it so unindexes it.
                Some(_) => {}
            }
        }
        Ok(records)
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let mut deleted = 0;
        for (key, _) in self.inner.index.keys_of(user) {
            let removed = self
                .locked_write(key, |live| match live {
                    Some(entry) if entry.user() == Some(user) => (Op::Remove, Outcome::Done(true)),
                    _ => (Op::Nop, Outcome::Done(false)),
                })
                .await?;
            deleted += u64::from(removed);
        }
        Ok(deleted)
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        // moka removes expired entries itself, on its timer wheel's
        // schedule (about a second's granularity); run its maintenance now,
        // then prune whatever the index still holds for sessions that are
        // gone, so their memory is reclaimed at once.
        self.inner.cache.run_pending_tasks().await;
        let now = Timestamp::now();
        for (user, key, incarnation) in self.inner.index.snapshot() {
            let indexed = match self.inner.cache.get(&key).await {
                Some(entry) => {
                    entry.incarnation() == incarnation
                        && entry.is_live_at(now)
                        && entry.user() == Some(&*user)
                }
                None => false,
            };
            if !indexed {
                self.inner.index.remove(&user, &key, incarnation);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests;
