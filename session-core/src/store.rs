//! The contract every backend implements.

use std::sync::Arc;

use crate::{Error, Record, StorageKey, Timestamp, UserSessions};

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
