//! A complete third-party store, written the way an author outside this
//! workspace would: one `Mutex<HashMap>`, only the public API of
//! `session-core`, nothing borrowed from our own stores. Its conformance
//! test is `examples/tests/custom_store.rs`, one line of `suite!`.
//!
//! The whole contract fits in one rule: every method takes the lock once,
//! does all its checks and writes under it, and lets go before returning
//! (no `.await` while it is held). That makes each call atomic per key
//! (indeed per store), which is what compare-and-set and "never
//! resurrect" need. `list_by_user` and `delete_by_user` scan the map: fine
//! for an example, a real store would keep a per-user index.
//!
//! ```
//! use std::time::Duration;
//! use examples::custom_store::HashMapStore;
//! use session_core::{Record, SessionId, SessionStore, Timestamp};
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let store = HashMapStore::new();
//! let now = Timestamp::now();
//! let key = SessionId::generate()?.storage_key();
//! let record = Record::new(key, now, now.saturating_add(Duration::from_secs(60)));
//! store.create(&record).await?;
//! assert_eq!(store.save(&record).await?, 1); // compare-and-set from version 0
//! assert!(store.save(&record).await.is_err()); // version 0 again: Conflict
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};

/// Sessions in a `Mutex<HashMap>`, in this process only.
#[derive(Debug, Default)]
pub struct HashMapStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<StorageKey, Record>,
    /// Keys whose value is damaged (a real backend's corrupted row), with
    /// the user it is indexed under. They exist only because
    /// [`HashMapStore::damage`] put them there, for the conformance cases
    /// on unreadable records.
    damaged: HashMap<StorageKey, Option<String>>,
}

impl Inner {
    /// The record under `key` if it is live at `now`.
    fn live(&self, key: &StorageKey, now: Timestamp) -> Option<&Record> {
        self.records.get(key).filter(|r| r.is_live_at(now))
    }
}

/// What a load (or save) of a damaged key answers.
fn damaged(key: StorageKey) -> Error {
    Error::decode(key, "the stored value is damaged")
}

impl HashMapStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a damaged value under `record.key`, indexed under
    /// `record.user`, in place of whatever was there: from now on `load`
    /// and `save` of the key are [`Error::Decode`], until `delete` (or
    /// `delete_by_user`) removes it. A test hook, for the conformance
    /// suite's `unreadable = …` capability; a store on files or a database
    /// would write bytes it cannot parse instead.
    pub fn damage(&self, record: &Record) {
        let mut inner = self.lock();
        inner.records.remove(&record.key);
        inner.damaged.insert(record.key, record.user.clone());
    }

    /// The lock. A panic while it was held cannot have left a half-done
    /// change (no method panics between its checks and its writes), so a
    /// poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl SessionStore for HashMapStore {
    fn name(&self) -> &'static str {
        "hashmap" // the `store` of any `Error::Backend` this store returned
    }

    async fn create(&self, record: &Record) -> Result<(), Error> {
        record.check_create()?; // before anything is written
        let mut inner = self.lock();
        let now = Timestamp::now();
        // A damaged value is never overwritten: it may well be live.
        if inner.damaged.contains_key(&record.key) || inner.live(&record.key, now).is_some() {
            return Err(Error::Exists);
        }
        // Absent or expired: (re)place it, version and all, as given.
        inner.records.insert(record.key, record.clone());
        Ok(())
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let inner = self.lock();
        if inner.damaged.contains_key(key) {
            return Err(damaged(*key));
        }
        Ok(inner.live(key, Timestamp::now()).cloned())
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        record.check_save()?;
        let mut inner = self.lock();
        if inner.damaged.contains_key(&record.key) {
            return Err(damaged(record.key)); // never overwrite what we cannot check
        }
        let Some(stored) = inner.live(&record.key, Timestamp::now()) else {
            return Err(Error::NotFound); // deleted or expired: never resurrect
        };
        if stored.version != record.version {
            return Err(Error::Conflict);
        }
        let version = record.version + 1; // check_save: at most MAX_VERSION
        let mut saved = record.clone();
        saved.version = version;
        // The user is a field of the record, so the "index" (a scan) is
        // always in step.
        inner.records.insert(record.key, saved);
        Ok(version)
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let mut inner = self.lock();
        let now = Timestamp::now();
        match inner.records.get_mut(key) {
            Some(record) if record.is_live_at(now) => {
                record.expires_at = expires_at; // data, user and version stay
                Ok(true)
            }
            _ => Ok(false), // nothing live (a damaged value included): create nothing
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        let mut inner = self.lock();
        if inner.damaged.remove(key).is_some() {
            return Ok(true);
        }
        let now = Timestamp::now();
        Ok(inner
            .records
            .remove(key)
            .is_some_and(|record| record.is_live_at(now)))
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let inner = self.lock();
        let now = Timestamp::now();
        let records = inner
            .records
            .values()
            .filter(|r| r.is_live_at(now) && r.user.as_deref() == Some(user))
            .cloned()
            .collect();
        let unreadable = inner
            .damaged
            .iter()
            .filter(|(_, owner)| owner.as_deref() == Some(user))
            .map(|(key, _)| *key)
            .collect();
        Ok(UserSessions {
            records,
            unreadable,
        })
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let mut inner = self.lock();
        let now = Timestamp::now();
        let mut deleted = 0;
        inner.records.retain(|_, r| {
            let mine = r.user.as_deref() == Some(user);
            if mine && r.is_live_at(now) {
                deleted += 1;
            }
            !mine // an expired record of the user goes too, uncounted
        });
        inner.damaged.retain(|_, owner| {
            let mine = owner.as_deref() == Some(user);
            if mine {
                deleted += 1;
            }
            !mine
        });
        Ok(deleted)
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        let mut inner = self.lock();
        let now = Timestamp::now();
        let before = inner.records.len();
        inner.records.retain(|_, r| r.is_live_at(now));
        Ok((before - inner.records.len()) as u64)
    }
}
