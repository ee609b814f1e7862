//! The contract every backend implements, and what a store author needs
//! besides.
//!
//! - [`SessionStore`]: the trait, with its `# Behavior` bullets (each one
//!   checked by a named case of the `session-store-conformance` crate).
//! - [`Record`]: what a store keeps, with the limits every store enforces
//!   before a write ([`Record::check_create`], [`Record::check_save`],
//!   refusing with [`Unstorable`]).
//! - [`UserSessions`]: what `list_by_user` returns.
//! - [`Error`]: name your store in every [`Error::Backend`]
//!   ([`Error::backend`] takes [`SessionStore::name`] first), and box the
//!   driver's error as its source.
//! - [`coalesce`](crate::coalesce): batching of concurrent calls into one
//!   command or statement, without timers.
//! - [`sweeper`](crate::sweeper): the background sweep for a backend that
//!   does not expire records by itself; every store gets
//!   [`SweeperExt::spawn_sweeper`](crate::sweeper::SweeperExt::spawn_sweeper)
//!   through [`SessionStore::delete_expired`].
//!
//! Everything here is also exported at the crate root.
//!
//! # A custom store
//!
//! A whole store on a `Mutex<HashMap>`: every method takes the lock once
//! and does its checks and writes under it, which makes each call atomic.
//! (A real store would keep a per-user index rather than scan, and would
//! prove itself with `session_store_conformance::suite!`.)
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Mutex, MutexGuard, PoisonError};
//! use session_core::store::{Record, SessionStore, UserSessions};
//! use session_core::{CookieAction, Error, SessionManager, StorageKey, Timestamp};
//!
//! #[derive(Default)]
//! struct MapStore(Mutex<HashMap<StorageKey, Record>>);
//!
//! impl MapStore {
//!     /// The map, with every record that is no longer live dropped.
//!     fn live(&self) -> MutexGuard<'_, HashMap<StorageKey, Record>> {
//!         let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
//!         let now = Timestamp::now();
//!         map.retain(|_, r| r.is_live_at(now));
//!         map
//!     }
//! }
//!
//! #[async_trait::async_trait]
//! impl SessionStore for MapStore {
//!     fn name(&self) -> &'static str {
//!         "map"
//!     }
//!     async fn create(&self, record: &Record) -> Result<(), Error> {
//!         record.check_create()?;
//!         let mut map = self.live();
//!         if map.contains_key(&record.key) {
//!             return Err(Error::Exists); // never overwrite
//!         }
//!         map.insert(record.key, record.clone());
//!         Ok(())
//!     }
//!     async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
//!         Ok(self.live().get(key).cloned())
//!     }
//!     async fn save(&self, record: &Record) -> Result<u64, Error> {
//!         record.check_save()?;
//!         let mut map = self.live();
//!         let stored = map.get_mut(&record.key).ok_or(Error::NotFound)?; // no resurrection
//!         if stored.version != record.version {
//!             return Err(Error::Conflict);
//!         }
//!         *stored = Record { version: record.version + 1, ..record.clone() };
//!         Ok(stored.version) // check_save keeps it at most MAX_VERSION
//!     }
//!     async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
//!         let mut map = self.live();
//!         Ok(map.get_mut(key).map(|r| r.expires_at = expires_at).is_some())
//!     }
//!     async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
//!         Ok(self.live().remove(key).is_some())
//!     }
//!     async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
//!         let map = self.live();
//!         let mine = map.values().filter(|r| r.user.as_deref() == Some(user));
//!         Ok(UserSessions::from_records(mine.cloned().collect()))
//!     }
//!     async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
//!         let mut map = self.live();
//!         let before = map.len();
//!         map.retain(|_, r| r.user.as_deref() != Some(user));
//!         Ok((before - map.len()) as u64)
//!     }
//!     async fn delete_expired(&self) -> Result<u64, Error> {
//!         let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
//!         let (before, now) = (map.len(), Timestamp::now());
//!         map.retain(|_, r| r.is_live_at(now));
//!         Ok((before - map.len()) as u64)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let manager = SessionManager::new(MapStore::default());
//! // A first request: a login creates the record.
//! let session = manager.load(None);
//! session.login("alice").await?;
//! session.insert("theme", "dark").await?;
//! let CookieAction::Set { value: cookie, .. } = manager.commit(&session).await? else {
//!     return Err(Error::NotFound); // a login always sets a cookie
//! };
//! // A second request loads it and saves a change (compare-and-set).
//! let session = manager.load(Some(&cookie));
//! assert_eq!(session.get::<String>("theme").await?.as_deref(), Some("dark"));
//! session.insert("theme", "light").await?;
//! manager.commit(&session).await?;
//! let stored = manager.sessions_of("alice").await?.records;
//! assert_eq!(stored.len(), 1);
//! assert_eq!((stored[0].version, &stored[0].data["theme"]), (1, &"light".into()));
//! // Logging out deletes it.
//! session.logout().await;
//! assert_eq!(manager.commit(&session).await?, CookieAction::Clear);
//! assert!(manager.sessions_of("alice").await?.records.is_empty());
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

pub use crate::record::{Record, Unstorable, UserSessions};
use crate::{Error, StorageKey, Timestamp};

/// A place where sessions live: memory, Redis, SQLite, or your own.
///
/// Stores only ever see [`StorageKey`]s (hashes of session ids), never the
/// ids the browser holds. Every method is one round trip to the backend
/// where the backend allows it, and each is atomic per key: two calls on
/// the same key never interleave their effects.
///
/// The trait is object safe, so `Arc<dyn SessionStore>` works and a store
/// can be chosen at run time. The `session-store-conformance` crate checks
/// every `# Behavior` bullet below with one named test each; a new store
/// adopts that suite in one line.
///
/// "Live" means `now < expires_at` by the wall clock (see
/// [`Record::is_live_at`]). A record that is not live is *absent* for every
/// method, even if the backend still holds it physically.
///
/// "Unreadable" means a stored value the store cannot decode (a damaged
/// row, a foreign value under the key). The suite checks the bullets about
/// unreadable records on stores that can plant one for it (see the
/// conformance crate's `unreadable` capability).
///
/// # Errors
///
/// Besides the errors each method names, any method may fail with
/// [`Error::Backend`] when the backend cannot be reached or answers with an
/// error; [`Error::is_retryable`] says whether trying again may help.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new record under `record.key`, as given (its `version`
    /// included).
    ///
    /// # Behavior
    ///
    /// - Stores every field so that [`SessionStore::load`] returns an equal
    ///   record.
    /// - A key held by a live record is [`Error::Exists`] and leaves the
    ///   stored record untouched: nothing is ever overwritten.
    /// - A key held only by an expired record counts as absent: the create
    ///   succeeds and replaces it.
    /// - Creates of distinct keys are independent, also when concurrent.
    /// - A record [`Record::check_create`] refuses (a version above
    ///   [`Record::MAX_VERSION`], data nested deeper than
    ///   [`Record::MAX_DEPTH`]) is [`Error::Unstorable`], and nothing is
    ///   written.
    /// - What it accepts loads back equal, whatever the JSON: deep
    ///   nesting up to the limit, extreme numbers, long and non-ASCII
    ///   strings, many keys.
    async fn create(&self, record: &Record) -> Result<(), Error>;

    /// Reads the record stored under `key`.
    ///
    /// # Behavior
    ///
    /// - `None` when nothing is stored under `key`.
    /// - `None` when the stored record's `expires_at` has passed, even if
    ///   the backend has not removed it yet.
    /// - Otherwise the record exactly as last created, saved or touched.
    /// - An unreadable value is [`Error::Decode`] naming `key`, and stays
    ///   stored for inspection.
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error>;

    /// Reads the record stored under `key` unless it is still `known`, a
    /// record this store returned for `key` before: what a caller that
    /// keeps recent records asks to skip decoding one it already holds.
    ///
    /// The provided method loads; a store that keeps the version and
    /// expiry beside the data can answer [`Reload::Unchanged`] without
    /// decoding (the memory store does).
    ///
    /// # Behavior
    ///
    /// - [`Reload::Unchanged`] only when a live, readable record is stored
    ///   under `key` with `known`'s version, `created_at` and
    ///   `expires_at` (every save bumps the version, so its data and user
    ///   are `known`'s too).
    /// - Otherwise [`Reload::Loaded`] with what [`SessionStore::load`]
    ///   returns: the record as saved or touched since, or `None` when it
    ///   was deleted or has expired.
    /// - An unreadable value is [`Error::Decode`] naming `key`, never
    ///   [`Reload::Unchanged`].
    async fn load_if_changed(&self, key: &StorageKey, known: &Record) -> Result<Reload, Error> {
        let _ = known;
        Ok(Reload::Loaded(self.load(key).await?))
    }

    /// Compare-and-set: replaces the stored record with `record` (data,
    /// user, `created_at`, `expires_at`) if and only if the stored version
    /// equals `record.version`; stores `record.version + 1` and returns it.
    ///
    /// # Behavior
    ///
    /// - On success, returns the new version, `record.version + 1`, and a
    ///   following load sees every field written.
    /// - A stored version different from `record.version` is
    ///   [`Error::Conflict`] and changes nothing.
    /// - Of several concurrent saves presenting the same version, exactly
    ///   one succeeds; the others get [`Error::Conflict`].
    /// - No live record under the key (never created, deleted, or expired)
    ///   is [`Error::NotFound`], and nothing is written: **a save never
    ///   resurrects a deleted session**.
    /// - Keeps the per-user index in step when `user` changes: the session
    ///   is listed under its new user only.
    /// - A record [`Record::check_save`] refuses (a version whose successor
    ///   would be above [`Record::MAX_VERSION`], data nested too deep) is
    ///   [`Error::Unstorable`], and nothing is written.
    /// - An unreadable value under the key is [`Error::Decode`] whatever
    ///   version the save presents, and stays as it was: a save never
    ///   overwrites what it could not check.
    async fn save(&self, record: &Record) -> Result<u64, Error>;

    /// Moves the expiry of a live record to `expires_at` without rewriting
    /// its data or bumping its version.
    ///
    /// # Behavior
    ///
    /// - Returns `true` and updates `expires_at` when a live record exists;
    ///   data, user and version are unchanged.
    /// - Returns `false` and creates nothing when no live record exists
    ///   (an expired record is not revived).
    /// - An `expires_at` in the past makes the record absent at once.
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error>;

    /// Removes the record under `key`.
    ///
    /// # Behavior
    ///
    /// - Returns `true` when a live record was removed, `false` when there
    ///   was nothing live to remove.
    /// - Removes nothing but that one record, and its per-user index entry.
    /// - Removes an unreadable value too, and returns `true`.
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error>;

    /// All live records bound to `user`, in no particular order (the
    /// "active sessions" page).
    ///
    /// # Behavior
    ///
    /// - Returns exactly the live records whose `user` is `user`: none of
    ///   another user, none unbound, none expired, none deleted.
    /// - A user with no sessions gets an empty list.
    /// - An unreadable record of the user does not fail the call: the
    ///   readable ones are returned, and its key is in
    ///   [`UserSessions::unreadable`].
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error>;

    /// Deletes every record bound to `user` ("log out everywhere") and
    /// returns how many live records were deleted.
    ///
    /// # Behavior
    ///
    /// - Deletes exactly the live records of `user` and returns their
    ///   count; records of other users and unbound records stay.
    /// - A user with no sessions deletes nothing and returns 0.
    /// - Unreadable records of the user are deleted too, and counted.
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error>;

    /// A short, fixed name for this kind of store, such as `"redis"` or
    /// `"postgres"`: the `store` of every [`Error::Backend`] it returns,
    /// and how the sweeper names it in its log lines.
    ///
    /// The default is the implementing type's path
    /// ([`std::any::type_name`]); a store meant for others should return
    /// something short and stable instead.
    ///
    /// # Behavior
    ///
    /// - Not empty, and the same on every call.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Physically removes expired records and returns how many it removed.
    /// Stores whose backend expires records natively may return 0.
    ///
    /// # Behavior
    ///
    /// - Afterwards no expired record is loadable and every live record is
    ///   still loadable, unchanged.
    async fn delete_expired(&self) -> Result<u64, Error>;
}

/// What [`SessionStore::load_if_changed`] found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reload {
    /// The stored record is still the `known` one.
    Unchanged,
    /// What [`SessionStore::load`] returns: the record as it is now, or
    /// `None` when none is live.
    Loaded(Option<Record>),
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait::async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            async fn create(&self, record: &Record) -> Result<(), Error> {
                (**self).create(record).await
            }
            async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
                (**self).load(key).await
            }
            async fn load_if_changed(&self, key: &StorageKey, known: &Record) -> Result<Reload, Error> {
                (**self).load_if_changed(key, known).await
            }
            async fn save(&self, record: &Record) -> Result<u64, Error> {
                (**self).save(record).await
            }
            async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
                (**self).touch(key, expires_at).await
            }
            async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
                (**self).delete(key).await
            }
            async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
                (**self).list_by_user(user).await
            }
            async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
                (**self).delete_by_user(user).await
            }
            async fn delete_expired(&self) -> Result<u64, Error> {
                (**self).delete_expired().await
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);
