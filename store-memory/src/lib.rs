//! An in-process [`SessionStore`] on [`moka`]: byte-bounded, LRU, saves in
//! place, expired sessions never returned and swept out of memory, with a
//! per-user index.
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
//! assert_eq!(store.list_by_user("alice").await?.records.len(), 1);
//! assert_eq!(store.delete_by_user("alice").await?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it keeps the contract
//!
//! * **Bounded by bytes.** The capacity is a number of bytes; a weigher
//!   counts each entry's words and key. When full, the least recently used
//!   sessions are evicted: moka's default TinyLFU policy would instead
//!   refuse *new* entries, which would log out every new user while idle
//!   old sessions stay.
//! * **Expiry: checked on every read, swept in the background.** Every
//!   method checks `expires_at` against the wall clock, so an expired
//!   session is absent at once, for every method. Its memory is reclaimed
//!   by a sweep: the first operation (any method) at least
//!   [`SWEEP_INTERVAL`] after the previous sweep starts the next one, as a
//!   task on the current tokio runtime, its passes over the cache and the
//!   index on tokio's blocking pool (inline when there is no runtime). It
//!   removes every expired session and prunes the per-user index.
//!   [`SessionStore::delete_expired`] runs it at once and returns the
//!   count. Like moka's own maintenance (moka 0.12 has no background
//!   thread), it needs the store to be in use; and when the store is full,
//!   LRU eviction reaches expired sessions early, as nobody uses them.
//!
//!   This replaced moka's per-entry expiry (its `Expiry` trait), which
//!   costs a timer-wheel node per entry (48 bytes: 646 vs 597 bytes per
//!   entry for a bare moka cache of ~230-byte values) and only learns of a
//!   new expiry through an insert, which in-place saves avoid.
//! * **Saves in place.** An entry is one allocation of 64-bit words; a
//!   save (or touch) whose encoding fits rewrites those words instead of
//!   inserting a new value into moka, which skips moka's insert path (new
//!   nodes, write log, eviction bookkeeping, epoch garbage). Readers take
//!   no lock: a sequence number makes a reader that overlapped a write
//!   copy again, so none sees half a save. Payloads that outgrow their
//!   entry (or shrink to under half of it) get a new one. Measured with
//!   `session-bench` (load, change a field, compare-and-set save, 64
//!   tasks): 3.0× the request cycles per second of
//!   `tower-sessions-moka-store`, where inserting into moka on every save
//!   made 1.1×; about the CPU per cycle of a bare moka `get` + `insert`
//!   of the bytes.
//! * **Atomic per key.** Every mutation (create, compare-and-set save,
//!   touch, delete) holds its key's write lock (one of 4096 async lock
//!   stripes) across its read, decision and write, so writes to one key
//!   serialise and none is lost. Reads take no lock. (moka's per-key
//!   `and_compute_with` cost about twice the CPU per request cycle.)
//! * **Compact.** moka is keyed by the first 16 bytes of the storage key;
//!   the other 16 live in the entry, and every read compares them (see
//!   below). The entry packs version and timestamps as varints, the user
//!   name, and the data map as MessagePack (about three quarters of the
//!   JSON text). The per-user index holds a keyed 64-bit hash of the user
//!   and the short key: 24 bytes per signed-in session, no per-user
//!   allocation. moka runs with no expiry and no eviction listener (a
//!   listener makes every moka insert take a per-key lock). Measured
//!   with `session-bench` (200,000 sessions with ~219 bytes of JSON data
//!   each, resident-set growth of a fresh process): 636 bytes per
//!   session, of which moka's own bookkeeping is about 325, the entry 272
//!   (with its 8-byte checksum, see below) and the index about 33. A bare moka cache of the JSON bytes with a
//!   cache-wide TTL takes 636; this store with moka's per-entry expiry,
//!   an eviction listener and an index keyed by user name took 774.
//! * **Checked.** Each entry carries a 64-bit checksum of its user and
//!   data, written with them; a load, a listing and a save check it, so
//!   an entry this store did not write (memory damage, a planted test
//!   record) is `Error::Decode` everywhere and a save never overwrites
//!   it, even at its version and even where the damage still parses.
//!   The expiry is outside the checked bytes, so `touch` rewrites only
//!   it.
//! * **Short keys.** Two distinct storage keys agree in their first 16
//!   bytes with probability 2^-128 (keys are SHA-256 digests of random
//!   ids; at 2^32 sessions, any two of them: below 2^-64). A key that
//!   shares its first half with a stored one finds nothing (the tail
//!   differs), and its `create` answers `Exists` rather than overwrite.
//! * **Per-user index.** Kept in step by every write; sessions evicted for
//!   space leave stale entries, which readers skip (they check the
//!   session's own user) and prune, as does the sweep (also started early
//!   when stale entries outnumber live sessions).
//!
//! Process memory is the limit here: sessions vanish on restart and are
//! not shared between processes. Use the Redis or SQLite store for that.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The crate's `README.md`, whose code blocks are compiled as doctests so
/// they cannot rot.
/// This store's name: its [`SessionStore::name`](session_core::SessionStore::name) and the
/// `store` of every [`Error::Backend`](session_core::Error::Backend) it returns.
pub(crate) const NAME: &str = "memory";

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod entry;
mod index;
mod locks;
mod seqlock;

use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use moka::policy::EvictionPolicy;
use session_core::{Error, Record, Reload, SessionStore, StorageKey, Timestamp, UserSessions};

use entry::{Entry, Payload, ShortKey, Snapshot, Tail};
use index::UserIndex;

pub use moka;

/// Default capacity: 256 MiB of sessions.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// How often expired sessions are swept out of memory: the first store
/// operation after this much time since the last sweep starts the next
/// one.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The in-process session store. Cheap to clone: clones share one cache.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache<ShortKey, Entry, BuildHasherDefault<locks::DigestHasher>>,
    locks: locks::KeyLocks,
    index: UserIndex,
    /// Keys the user hashes of the index.
    user_hasher: RandomState,
    max_bytes: u64,
    /// When (ms since the epoch) the next sweep is due.
    next_sweep: AtomicI64,
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

fn interval_ms() -> i64 {
    i64::try_from(SWEEP_INTERVAL.as_millis()).unwrap_or(i64::MAX)
}

/// The entry holding a key (live or not), read under the key's write
/// lock.
struct Current {
    entry: Entry,
    snapshot: Snapshot,
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of sessions (as counted by the
    /// weigher: short key, fields and data of each entry), evicting the
    /// least recently used when full.
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &ShortKey, value: &Entry| {
                u32::try_from(value.weight()).unwrap_or(u32::MAX)
            })
            .eviction_policy(EvictionPolicy::lru())
            .build_with_hasher(BuildHasherDefault::default());
        Self {
            inner: Arc::new(Inner {
                cache,
                locks: locks::KeyLocks::new(),
                index: UserIndex::default(),
                user_hasher: RandomState::new(),
                max_bytes,
                next_sweep: AtomicI64::new(
                    Timestamp::now().as_millis().saturating_add(interval_ms()),
                ),
            }),
        }
    }

    /// The configured capacity in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// Approximate number of entries held (expired ones count until they
    /// are swept).
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Approximate bytes held, as counted by the weigher.
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.cache.weighted_size()
    }

    /// Runs moka's pending maintenance now (eviction, counts), so that
    /// counts reflect every change so far.
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
    }

    /// Test support (feature `testing`): stores `record`'s key, user,
    /// timestamps and version as a `create` would, but with data that
    /// cannot be decoded (a byte MessagePack never uses where the data
    /// map should start), under the checksum of the record's real data,
    /// so the conformance suite's cases on unreadable records can run
    /// against this store. Replaces whatever the key held.
    ///
    /// # Errors
    ///
    /// When the entry would exceed the store's size limits.
    #[cfg(feature = "testing")]
    pub async fn plant_unreadable(&self, record: &Record) -> Result<(), Error> {
        // 0xc1 is the one byte MessagePack never uses.
        self.plant(record, &[0xc1]).await
    }

    /// Test support (feature `testing`): like
    /// [`MemoryStore::plant_unreadable`], but the damage is inside the
    /// data and the checksum is the one of `record`'s real data, as
    /// damage the store did not write would leave it: the data is a
    /// MessagePack map whose one value is a string of invalid UTF-8 (it
    /// parses as MessagePack, but not into JSON).
    ///
    /// # Errors
    ///
    /// When the entry would exceed the store's size limits.
    #[cfg(feature = "testing")]
    pub async fn plant_damaged_data(&self, record: &Record) -> Result<(), Error> {
        // {"n": <2-byte string 0xff 0xfe>}
        self.plant(record, &[0x81, 0xa1, b'n', 0xa2, 0xff, 0xfe])
            .await
    }

    #[cfg(feature = "testing")]
    async fn plant(&self, record: &Record, data: &[u8]) -> Result<(), Error> {
        let (short, tail) = entry::split(&record.key);
        let payload = Payload::with_raw_data(record, &tail, data)?;
        self.check_size(&payload)?;
        let inner = &self.inner;
        let _guard = inner.locks.lock(&short).await;
        inner.cache.insert(short, Entry::new(&payload)).await;
        if let Some(user) = &record.user {
            inner.index.add(inner.user_hash(user.as_bytes()), short);
        }
        Ok(())
    }

    fn check_size(&self, payload: &Payload) -> Result<(), Error> {
        let size = payload.weight();
        if u64::try_from(size).unwrap_or(u64::MAX) > self.inner.max_bytes {
            return Err(Error::TooLarge {
                size,
                limit: usize::try_from(self.inner.max_bytes).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    /// Starts a sweep if one is due: on the current tokio runtime if
    /// there is one, else right here.
    async fn maybe_sweep(&self, now: Timestamp) {
        let inner = &self.inner;
        let due = inner.next_sweep.load(Ordering::Relaxed);
        if now.as_millis() < due
            || inner
                .next_sweep
                .compare_exchange(
                    due,
                    now.as_millis().saturating_add(interval_ms()),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = Arc::clone(inner);
                drop(runtime.spawn(async move { inner.sweep().await }));
            }
            Err(_) => {
                inner.sweep().await;
            }
        }
    }
}

impl Inner {
    /// The entry under `short`, found through the index of the user
    /// hashed to `hash`; when it is gone (evicted or removed), the stale
    /// index entry is pruned and `None` returned.
    async fn indexed_entry(&self, hash: u64, short: &ShortKey) -> Option<Entry> {
        let entry = self.cache.get(short).await;
        if entry.is_none() {
            self.index
                .remove_if(hash, short, |k| !self.cache.contains_key(k));
        }
        entry
    }

    fn user_hash(&self, user: &[u8]) -> u64 {
        self.user_hasher.hash_one(user)
    }

    /// The entry under `short` if it holds the key ending in `tail` (live
    /// or not), read consistently. Call with the key's write lock held.
    async fn current(
        &self,
        key: &StorageKey,
        short: &ShortKey,
        tail: &Tail,
    ) -> Result<Option<Current>, Error> {
        let Some(entry) = self.cache.get(short).await else {
            return Ok(None);
        };
        let snapshot = entry.snapshot();
        let head = snapshot
            .head()
            .ok_or_else(|| Error::decode(*key, "damaged entry"))?;
        if head.tail != *tail {
            // Another key with the same first half (see `ShortKey`).
            return Ok(None);
        }
        Ok(Some(Current { entry, snapshot }))
    }

    /// Puts `payload` under `short`: in place into `current` when it fits,
    /// else as a new entry. Call with the key's write lock held.
    async fn put(&self, short: ShortKey, current: &Entry, payload: &Payload) {
        if !(current.fits(payload) && current.overwrite(payload)) {
            self.cache.insert(short, Entry::new(payload)).await;
        }
    }

    /// Removes `short` (and its index entry for `user`). Call with the
    /// key's write lock held.
    async fn remove(&self, short: &ShortKey, user: Option<&[u8]>) {
        self.cache.invalidate(short).await;
        if let Some(user) = user {
            self.index.remove(self.user_hash(user), short);
        }
    }

    /// Runs `scan` (a pass over the whole cache or index) on tokio's
    /// blocking pool when there is a runtime, so that it does not hold up
    /// a worker thread; else right here. `None` if the task failed.
    async fn offload<T: Send + 'static>(
        self: &Arc<Self>,
        scan: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Option<T> {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = Arc::clone(self);
                runtime.spawn_blocking(move || scan(&inner)).await.ok()
            }
            Err(_) => Some(scan(self)),
        }
    }

    /// Removes every expired session, then prunes index entries of
    /// sessions that are gone; returns how many sessions it removed.
    async fn sweep(self: &Arc<Self>) -> u64 {
        let now = Timestamp::now().as_millis();
        let expired = self
            .offload(move |inner| {
                inner
                    .cache
                    .iter()
                    // Damaged entries (no expiry to read) are left in
                    // place, as for every other method.
                    .filter(|(_, entry)| entry.expires_at().is_some_and(|at| at <= now))
                    .map(|(short, _)| *short)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        let mut removed = 0;
        for short in expired {
            let _guard = self.locks.lock(&short).await;
            if let Some(entry) = self.cache.get(&short).await
                && entry.expires_at().is_some_and(|at| at <= now)
            {
                let snapshot = entry.snapshot();
                let user = snapshot.head().and_then(|h| h.user);
                self.remove(&short, user).await;
                removed += 1;
            }
        }
        self.offload(|inner| inner.index.prune(|short| !inner.cache.contains_key(short)))
            .await;
        self.cache.run_pending_tasks().await;
        removed
    }

    /// Makes a sweep due at once when the index holds many more entries
    /// than the cache (sessions evicted for space leave theirs behind).
    fn check_index_size(&self) {
        let entries = usize::try_from(self.cache.entry_count()).unwrap_or(usize::MAX);
        if self.index.len() > entries.saturating_add(1024).saturating_mul(2) {
            self.next_sweep.store(i64::MIN, Ordering::Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    async fn create(&self, record: &Record) -> Result<(), Error> {
        record.check_create()?;
        let (short, tail) = entry::split(&record.key);
        let payload = Payload::encode(record, record.version, &tail, "create")?;
        self.check_size(&payload)?;
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let inner = &self.inner;
        let _guard = inner.locks.lock(&short).await;
        let old = inner.cache.get(&short).await;
        let old_snapshot = old.as_ref().map(Entry::snapshot);
        let old_head = match &old_snapshot {
            None => None,
            // A damaged entry is left in place, as every method does.
            Some(snapshot) => Some(
                snapshot
                    .head()
                    .ok_or_else(|| Error::decode(record.key, "damaged entry"))?,
            ),
        };
        // A live session under this short key (this key, or one sharing
        // its first half) is never overwritten.
        if old_head.as_ref().is_some_and(|h| h.is_live_at(now)) {
            return Err(Error::Exists);
        }
        if let Some(user) = old_head.as_ref().and_then(|h| h.user) {
            inner.index.remove(inner.user_hash(user), &short);
        }
        // A new entry even if the old one would fit: a stale handle to the
        // old entry must never show the new life.
        inner.cache.insert(short, Entry::new(&payload)).await;
        if let Some(user) = &record.user {
            inner.index.add(inner.user_hash(user.as_bytes()), short);
            inner.check_index_size();
        }
        Ok(())
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let (short, tail) = entry::split(key);
        let Some(entry) = self.inner.cache.get(&short).await else {
            return Ok(None);
        };
        let snapshot = entry.snapshot();
        let head = snapshot
            .head()
            .ok_or_else(|| Error::decode(*key, "damaged entry"))?;
        if head.tail != tail || !head.is_live_at(now) {
            return Ok(None);
        }
        head.decode(*key).map(Some)
    }

    /// Compares the entry's version and timestamps with `known`'s and
    /// checks its checksum (a nanosecond per 8 bytes); decodes only when
    /// the record changed.
    async fn load_if_changed(&self, key: &StorageKey, known: &Record) -> Result<Reload, Error> {
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let (short, tail) = entry::split(key);
        let Some(entry) = self.inner.cache.get(&short).await else {
            return Ok(Reload::Loaded(None));
        };
        let snapshot = entry.snapshot();
        let head = snapshot
            .head()
            .ok_or_else(|| Error::decode(*key, "damaged entry"))?;
        if head.tail != tail || !head.is_live_at(now) {
            return Ok(Reload::Loaded(None));
        }
        if head.version == known.version
            && head.created_at == known.created_at.as_millis()
            && head.expires_at == known.expires_at.as_millis()
            && known.key == *key
        {
            if !head.is_intact() {
                return Err(Error::decode(*key, entry::DAMAGED));
            }
            return Ok(Reload::Unchanged);
        }
        head.decode(*key).map(|r| Reload::Loaded(Some(r)))
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        record.check_save()?;
        // `check_save` keeps the version below `Record::MAX_VERSION`.
        let next = record.version + 1;
        let (short, tail) = entry::split(&record.key);
        let payload = Payload::encode(record, next, &tail, "save")?;
        self.check_size(&payload)?;
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let inner = &self.inner;
        let _guard = inner.locks.lock(&short).await;
        let Some(current) = inner.current(&record.key, &short, &tail).await? else {
            return Err(Error::NotFound);
        };
        let Some(head) = current.snapshot.head() else {
            return Err(Error::decode(record.key, "damaged entry"));
        };
        // Liveness as of the start of this call (the save takes effect
        // within it).
        if !head.is_live_at(now) {
            return Err(Error::NotFound);
        }
        // Never overwrite what could not be read back.
        if !head.is_intact() {
            return Err(Error::decode(record.key, entry::DAMAGED));
        }
        if head.version != record.version {
            return Err(Error::Conflict);
        }
        inner.put(short, &current.entry, &payload).await;
        let new_user = record.user.as_deref().map(str::as_bytes);
        if head.user != new_user {
            if let Some(old) = head.user {
                inner.index.remove(inner.user_hash(old), &short);
            }
            if let Some(new) = new_user {
                inner.index.add(inner.user_hash(new), short);
            }
        }
        Ok(next)
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let (short, tail) = entry::split(key);
        let inner = &self.inner;
        let _guard = inner.locks.lock(&short).await;
        let Some(current) = inner.current(key, &short, &tail).await? else {
            return Ok(false);
        };
        let Some(head) = current.snapshot.head() else {
            return Err(Error::decode(*key, "damaged entry"));
        };
        if !head.is_live_at(now) {
            return Ok(false);
        }
        if expires_at <= now {
            inner.remove(&short, head.user).await;
        } else {
            let payload = Payload::with_expiry(&head, expires_at)?;
            inner.put(short, &current.entry, &payload).await;
        }
        Ok(true)
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let (short, tail) = entry::split(key);
        let inner = &self.inner;
        let _guard = inner.locks.lock(&short).await;
        let Some(entry) = inner.cache.get(&short).await else {
            return Ok(false);
        };
        let snapshot = entry.snapshot();
        let Some(head) = snapshot.head() else {
            // Damaged: deleting is the one way to get rid of it.
            inner.remove(&short, None).await;
            return Ok(true);
        };
        if head.tail != tail {
            // Another key with the same first half (see `ShortKey`).
            return Ok(false);
        }
        inner.remove(&short, head.user).await;
        Ok(head.is_live_at(now))
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let inner = &self.inner;
        let hash = inner.user_hash(user.as_bytes());
        let mut found = UserSessions::default();
        for short in inner.index.keys_of(hash) {
            let Some(entry) = inner.indexed_entry(hash, &short).await else {
                continue;
            };
            let snapshot = entry.snapshot();
            // Damaged, another user's (same hash, or a stale entry whose
            // key was reused), or expired: not listed.
            if let Some(head) = snapshot.head()
                && head.is_of(user)
                && head.is_live_at(now)
            {
                let key = entry::join(&short, &head.tail);
                match head.decode(key) {
                    Ok(record) => found.records.push(record),
                    Err(_) => found.unreadable.push(key),
                }
            }
        }
        Ok(found)
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let now = Timestamp::now();
        self.maybe_sweep(now).await;
        let inner = &self.inner;
        let hash = inner.user_hash(user.as_bytes());
        let mut deleted = 0;
        for short in inner.index.keys_of(hash) {
            let _guard = inner.locks.lock(&short).await;
            let Some(entry) = inner.indexed_entry(hash, &short).await else {
                continue;
            };
            let snapshot = entry.snapshot();
            if let Some(head) = snapshot.head()
                && head.is_of(user)
            {
                deleted += u64::from(head.is_live_at(now));
                inner.remove(&short, head.user).await;
            }
        }
        Ok(deleted)
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        // The periodic sweep, now.
        Ok(self.inner.sweep().await)
    }
}

#[cfg(test)]
mod tests;
