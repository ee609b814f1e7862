//! The session lifecycle: lazy loading, minimal commits, conflict replay,
//! id rotation on login, logout.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::{Data, Error, ExpiryPolicy, Record, SessionId, SessionStore, StorageKey, Timestamp};

/// Settings of a [`SessionManager`].
///
/// ```
/// use std::time::Duration;
/// use session_core::{ExpiryPolicy, SessionConfig};
///
/// let config = SessionConfig::default()
///     .with_expiry(ExpiryPolicy::new(Duration::from_secs(900), Duration::from_secs(8 * 3600)))
///     .with_max_size(16 * 1024)
///     .with_conflict_retries(4);
/// assert_eq!(config.max_size(), 16 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    expiry: ExpiryPolicy,
    max_size: usize,
    conflict_retries: u32,
}

impl Default for SessionConfig {
    /// [`ExpiryPolicy::default`] (30 min idle, 24 h absolute, 1 min touch
    /// step), [`SessionConfig::DEFAULT_MAX_SIZE`] and
    /// [`SessionConfig::DEFAULT_CONFLICT_RETRIES`].
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            max_size: Self::DEFAULT_MAX_SIZE,
            conflict_retries: Self::DEFAULT_CONFLICT_RETRIES,
        }
    }
}

impl SessionConfig {
    /// Default limit on a session's serialised size: 64 KiB.
    pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;
    /// Default number of reload-and-replay rounds after a conflict: 16.
    pub const DEFAULT_CONFLICT_RETRIES: u32 = 16;

    /// Sets the expiry policy.
    pub const fn with_expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets the limit on a session's serialised size (its data as JSON plus
    /// its user name), in bytes.
    pub const fn with_max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Sets how many times a commit that lost a race reloads, replays its
    /// changes and saves again before giving up with [`Error::Conflict`].
    pub const fn with_conflict_retries(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// The expiry policy.
    pub const fn expiry(&self) -> &ExpiryPolicy {
        &self.expiry
    }

    /// The size limit in bytes.
    pub const fn max_size(&self) -> usize {
        self.max_size
    }

    /// The conflict retry limit.
    pub const fn conflict_retries(&self) -> u32 {
        self.conflict_retries
    }
}

/// What the response must do with the session cookie after a commit.
#[derive(Clone, PartialEq, Eq)]
pub enum CookieAction {
    /// Leave the browser's cookie as it is (or set none).
    Unchanged,
    /// Set the cookie to `value`; the session lives until `expires_at`
    /// (use it for `Max-Age` when cookies are persistent).
    Set {
        /// The cookie value: the session id's 43-character text.
        value: String,
        /// When the session expires unless used again.
        expires_at: Timestamp,
    },
    /// Overwrite the cookie with an empty, already-expired one: the session
    /// is gone (logged out, deleted elsewhere, or expired).
    Clear,
}

impl fmt::Debug for CookieAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unchanged => f.write_str("Unchanged"),
            Self::Set { expires_at, .. } => f
                .debug_struct("Set")
                .field("value", &"<redacted>")
                .field("expires_at", expires_at)
                .finish(),
            Self::Clear => f.write_str("Clear"),
        }
    }
}

/// Creates [`Session`]s from cookie values and commits them to a store.
///
/// Framework-agnostic: a web layer calls [`SessionManager::load`] with the
/// request's cookie value, hands the [`Session`] to the handler, then calls
/// [`SessionManager::commit`] and writes the [`CookieAction`] into the
/// response.
///
/// ```
/// use session_core::{CookieAction, SessionManager, SessionStore};
/// # async fn demo(store: impl SessionStore) -> Result<(), session_core::Error> {
/// let manager = SessionManager::new(store);
///
/// // Request 1: no cookie. Put something in the session.
/// let session = manager.load(None);
/// session.insert("cart", vec![42]).await?;
/// let CookieAction::Set { value, .. } = manager.commit(&session).await? else { unreachable!() };
///
/// // Request 2: the browser sends the cookie back.
/// let session = manager.load(Some(&value));
/// assert_eq!(session.get::<Vec<u32>>("cart").await?, Some(vec![42]));
///
/// // Logout: the record is deleted and the cookie cleared.
/// session.logout().await;
/// assert_eq!(manager.commit(&session).await?, CookieAction::Clear);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
/// #     .block_on(demo(session_store_memory::MemoryStore::default())).unwrap();
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<ManagerInner>,
}

struct ManagerInner {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// A manager over `store` with the default [`SessionConfig`].
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A manager over a shared store chosen at run time.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self {
            inner: Arc::new(ManagerInner {
                store,
                config: SessionConfig::default(),
            }),
        }
    }

    /// The same store with another configuration.
    pub fn with_config(self, config: SessionConfig) -> Self {
        Self {
            inner: Arc::new(ManagerInner {
                store: Arc::clone(&self.inner.store),
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The session for a request carrying `cookie_value` (or none).
    ///
    /// Makes **no store call**: the session loads on its first read or
    /// write. A malformed value never reaches the store; a well-formed id
    /// that is not in the store becomes a fresh session with a **new** id,
    /// never the client's.
    pub fn load(&self, cookie_value: Option<&str>) -> Session {
        let incoming = match cookie_value {
            None => Incoming::None,
            Some(text) => match SessionId::parse(text) {
                Ok(id) => Incoming::Id(id),
                Err(_) => Incoming::Malformed,
            },
        };
        Session {
            inner: Arc::new(SessionInner {
                manager: self.clone(),
                incoming,
                state: Mutex::new(State {
                    phase: Phase::Unloaded,
                    ops: Vec::new(),
                    rotation: None,
                    logged_out: false,
                }),
            }),
        }
    }

    /// Writes what `session` changed, doing the least work that is
    /// correct, and says what the cookie must become.
    ///
    /// * Untouched session: no store call, [`CookieAction::Unchanged`].
    /// * Read-only session: no write, except a `touch` when the sliding
    ///   expiry would move by more than the touch step (then
    ///   [`CookieAction::Set`] so a persistent cookie slides too).
    /// * New session that stayed empty: nothing stored, no cookie (a stale
    ///   cookie the request carried is cleared).
    /// * Changed: `create`, or a compare-and-set `save`. When another
    ///   request saved first, reloads, replays this request's own changes
    ///   in order on the fresh data, and saves again, up to
    ///   [`SessionConfig::conflict_retries`] times. A session found gone
    ///   (logged out elsewhere, expired) stays gone:
    ///   [`CookieAction::Clear`].
    /// * After [`Session::login`] or [`Session::cycle_id`]: the record moves
    ///   to a fresh id; the old one is deleted only once the new one is
    ///   stored, so a failed create loses nothing.
    /// * After [`Session::logout`]: the record is deleted,
    ///   [`CookieAction::Clear`].
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] before anything is written when the session
    /// exceeds [`SessionConfig::max_size`]; [`Error::Conflict`] when the
    /// retries run out; any store error. The session keeps its pending
    /// changes after an error, so the commit can be retried.
    pub async fn commit(&self, session: &Session) -> Result<CookieAction, Error> {
        let mut state = session.inner.state.lock().await;
        let state = &mut *state;
        if state.logged_out {
            return self.commit_logout(session, state).await;
        }
        let loaded = match &mut state.phase {
            Phase::Unloaded | Phase::Gone => return Ok(CookieAction::Unchanged),
            Phase::Loaded(loaded) => loaded,
        };
        let changed = !state.ops.is_empty() || state.rotation.is_some();
        let outcome = match (&loaded.stored, changed) {
            (None, _) if loaded.data.is_empty() && loaded.user.is_none() => {
                // A new session that stayed empty is never stored.
                return Ok(match session.inner.incoming {
                    Incoming::None => CookieAction::Unchanged,
                    Incoming::Id(_) | Incoming::Malformed => CookieAction::Clear,
                });
            }
            // A new session's id is fresh already: a rotation changes nothing.
            (None, _) => self.commit_new(loaded).await?,
            (Some(_), false) => self.commit_read_only(loaded).await?,
            (Some(_), true) if state.rotation.is_some() => {
                self.commit_rotation(loaded, state.rotation).await?
            }
            (Some(_), true) => self.commit_save(loaded, &state.ops).await?,
        };
        match outcome {
            Committed::Cookie(action) => {
                state.ops.clear();
                state.rotation = None;
                Ok(action)
            }
            Committed::Gone => {
                state.phase = Phase::Gone;
                state.ops.clear();
                state.rotation = None;
                Ok(CookieAction::Clear)
            }
        }
    }

    /// Deletes every session of `user` ("log out everywhere") and returns
    /// how many there were.
    ///
    /// # Errors
    ///
    /// Any store error.
    pub async fn logout_everywhere(&self, user: &str) -> Result<u64, Error> {
        traced("delete_by_user", None, self.store().delete_by_user(user)).await
    }

    /// The live sessions of `user`, for an "active sessions" page.
    ///
    /// # Errors
    ///
    /// Any store error.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<Record>, Error> {
        traced("list_by_user", None, self.store().list_by_user(user)).await
    }

    /// Deletes one session of `user` by its storage key (the "log out this
    /// session" button of an active-sessions page). Returns `false`, and
    /// deletes nothing, when that key is not a live session of `user`.
    ///
    /// # Errors
    ///
    /// Any store error.
    pub async fn logout_session(&self, user: &str, key: &StorageKey) -> Result<bool, Error> {
        match traced("load", Some(key), self.store().load(key)).await? {
            Some(record) if record.user.as_deref() == Some(user) => {
                traced("delete", Some(key), self.store().delete(key)).await
            }
            _ => Ok(false),
        }
    }

    fn policy(&self) -> &ExpiryPolicy {
        &self.inner.config.expiry
    }

    fn check_size(&self, data: &Data, user: Option<&str>) -> Result<(), Error> {
        let data_len = serde_json::to_vec(data).map_err(Error::Encode)?.len();
        let size = data_len + user.map_or(0, str::len);
        let limit = self.inner.config.max_size;
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        Ok(())
    }

    async fn commit_logout(
        &self,
        session: &Session,
        state: &mut State,
    ) -> Result<CookieAction, Error> {
        let key = match &state.phase {
            Phase::Loaded(loaded) => loaded.stored.as_ref().map(|r| r.key),
            Phase::Gone => None,
            Phase::Unloaded => match &session.inner.incoming {
                Incoming::Id(id) => Some(id.storage_key()),
                Incoming::None | Incoming::Malformed => None,
            },
        };
        if let Some(key) = key {
            traced("delete", Some(&key), self.store().delete(&key)).await?;
        }
        state.phase = Phase::Gone;
        state.ops.clear();
        state.rotation = None;
        Ok(CookieAction::Clear)
    }

    async fn commit_new(&self, loaded: &mut Loaded) -> Result<Committed, Error> {
        self.check_size(&loaded.data, loaded.user.as_deref())?;
        let now = Timestamp::now();
        let mut record = Record {
            key: loaded.id.storage_key(),
            data: loaded.data.clone(),
            user: loaded.user.clone(),
            created_at: now,
            expires_at: self.policy().expires_at(now, now),
            version: 0,
        };
        let id = self
            .create_with_fresh_key(&mut record, loaded.id.clone())
            .await?;
        let action = set_cookie(&id, record.expires_at);
        loaded.id = id;
        loaded.stored = Some(record);
        Ok(Committed::Cookie(action))
    }

    /// Creates `record` under `id`; should the key be taken (a 2^-256
    /// event, or a buggy store), retries with fresh ids a few times.
    async fn create_with_fresh_key(
        &self,
        record: &mut Record,
        mut id: SessionId,
    ) -> Result<SessionId, Error> {
        let mut attempts = 0;
        loop {
            record.key = id.storage_key();
            match traced("create", Some(&record.key), self.store().create(record)).await {
                Ok(()) => return Ok(id),
                Err(Error::Exists) if attempts < 3 => {
                    attempts += 1;
                    id = SessionId::generate()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn commit_read_only(&self, loaded: &mut Loaded) -> Result<Committed, Error> {
        let Some(stored) = &loaded.stored else {
            return Ok(Committed::Gone);
        };
        let now = Timestamp::now();
        let Some(next) = self
            .policy()
            .touch_due(stored.created_at, stored.expires_at, now)
        else {
            return Ok(Committed::Cookie(CookieAction::Unchanged));
        };
        let key = stored.key;
        if traced("touch", Some(&key), self.store().touch(&key, next)).await? {
            if let Some(record) = loaded.stored.as_mut() {
                record.expires_at = next;
            }
            Ok(Committed::Cookie(set_cookie(&loaded.id, next)))
        } else {
            Ok(Committed::Gone)
        }
    }

    async fn commit_save(&self, loaded: &mut Loaded, ops: &[Op]) -> Result<Committed, Error> {
        let Some(mut base) = loaded.stored.clone() else {
            return Ok(Committed::Gone);
        };
        let key = base.key;
        let mut conflicts = 0;
        loop {
            let now = Timestamp::now();
            let mut next = base.clone();
            for op in ops {
                op.apply(&mut next.data, &mut next.user);
            }
            next.expires_at = self.policy().expires_at(next.created_at, now);
            if next.expires_at <= now {
                // Past its absolute deadline: the session ends here.
                traced("delete", Some(&key), self.store().delete(&key)).await?;
                return Ok(Committed::Gone);
            }
            self.check_size(&next.data, next.user.as_deref())?;
            match traced("save", Some(&key), self.store().save(&next)).await {
                Ok(version) => {
                    next.version = version;
                    let action = set_cookie(&loaded.id, next.expires_at);
                    loaded.data = next.data.clone();
                    loaded.user = next.user.clone();
                    loaded.stored = Some(next);
                    return Ok(Committed::Cookie(action));
                }
                Err(Error::NotFound) => return Ok(Committed::Gone),
                Err(Error::Conflict) if conflicts < self.inner.config.conflict_retries => {
                    conflicts += 1;
                    tracing::debug!(%key, conflicts, "session save conflicted; reloading to replay");
                    match traced("load", Some(&key), self.store().load(&key)).await? {
                        Some(fresh) if self.alive(&fresh, now) => base = fresh,
                        _ => return Ok(Committed::Gone),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn commit_rotation(
        &self,
        loaded: &mut Loaded,
        rotation: Option<Rotation>,
    ) -> Result<Committed, Error> {
        let Some((old_key, old_created_at)) = loaded.stored.as_ref().map(|r| (r.key, r.created_at))
        else {
            return Ok(Committed::Gone);
        };
        self.check_size(&loaded.data, loaded.user.as_deref())?;
        let now = Timestamp::now();
        // Login starts a new absolute lifetime; a plain cycle keeps it.
        let created_at = match rotation {
            Some(Rotation::Login) => now,
            Some(Rotation::Cycle) | None => old_created_at,
        };
        let mut record = Record {
            key: old_key,
            data: loaded.data.clone(),
            user: loaded.user.clone(),
            created_at,
            expires_at: self.policy().expires_at(created_at, now),
            version: 0,
        };
        if record.expires_at <= now {
            traced("delete", Some(&old_key), self.store().delete(&old_key)).await?;
            return Ok(Committed::Gone);
        }
        // The new record first: if this fails, the old one is untouched.
        let id = self
            .create_with_fresh_key(&mut record, SessionId::generate()?)
            .await?;
        traced("delete", Some(&old_key), self.store().delete(&old_key)).await?;
        let action = set_cookie(&id, record.expires_at);
        loaded.id = id;
        loaded.stored = Some(record);
        Ok(Committed::Cookie(action))
    }

    /// Whether a stored record is usable at `now` under this policy: live,
    /// and not past the absolute deadline counted from its creation.
    fn alive(&self, record: &Record, now: Timestamp) -> bool {
        record.is_live_at(now) && now < self.policy().absolute_deadline(record.created_at)
    }
}

fn set_cookie(id: &SessionId, expires_at: Timestamp) -> CookieAction {
    CookieAction::Set {
        value: id.to_cookie_value(),
        expires_at,
    }
}

enum Committed {
    Cookie(CookieAction),
    Gone,
}

/// Runs one store call inside a `tracing` span naming the operation and
/// the storage key (never the session id), and logs its outcome.
async fn traced<T, F>(op: &'static str, key: Option<&StorageKey>, call: F) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    use tracing::Instrument as _;
    let span = match key {
        Some(key) => tracing::debug_span!("session_store", op, key = %key),
        None => tracing::debug_span!("session_store", op),
    };
    async move {
        let started = Instant::now();
        let result = call.await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => tracing::debug!(micros, "ok"),
            Err(e @ (Error::Conflict | Error::NotFound | Error::Exists)) => {
                tracing::debug!(micros, outcome = %e, "refused")
            }
            Err(e) => tracing::warn!(micros, error = %e, "store call failed"),
        }
        result
    }
    .instrument(span)
    .await
}

/// One request's view of its session. Cheap to clone; clones share state,
/// so tasks of one request may use it concurrently.
///
/// Reads and writes are `async` because the first of them loads the
/// session from the store (once). Changes are recorded as an ordered log
/// of operations, so a commit that loses a race can replay them onto the
/// winner's data.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    manager: SessionManager,
    incoming: Incoming,
    state: Mutex<State>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

enum Incoming {
    None,
    Malformed,
    Id(SessionId),
}

struct State {
    phase: Phase,
    ops: Vec<Op>,
    rotation: Option<Rotation>,
    logged_out: bool,
}

enum Phase {
    Unloaded,
    Loaded(Loaded),
    /// Logged out, or found deleted or expired by a commit.
    Gone,
}

struct Loaded {
    id: SessionId,
    /// The record as last read or written; `None` for a new session.
    stored: Option<Record>,
    /// The current contents, with this request's changes applied.
    data: Data,
    user: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rotation {
    Login,
    Cycle,
}

/// A change to a session, replayable onto fresh data.
enum Op {
    Insert(String, Value),
    Remove(String),
    Clear,
    SetUser(Option<String>),
}

impl Op {
    fn apply(&self, data: &mut Data, user: &mut Option<String>) {
        match self {
            Self::Insert(k, v) => {
                data.insert(k.clone(), v.clone());
            }
            Self::Remove(k) => {
                data.remove(k);
            }
            Self::Clear => data.clear(),
            Self::SetUser(u) => user.clone_from(u),
        }
    }
}

impl Session {
    /// Locks the state, loading the session first if this is the first
    /// access.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut state = self.inner.state.lock().await;
        if let Phase::Unloaded | Phase::Gone = state.phase {
            let manager = &self.inner.manager;
            let found = match (&state.phase, &self.inner.incoming) {
                (Phase::Unloaded, Incoming::Id(id)) => {
                    let key = id.storage_key();
                    traced("load", Some(&key), manager.store().load(&key))
                        .await?
                        .filter(|r| manager.alive(r, Timestamp::now()))
                        .map(|r| (id.clone(), r))
                }
                _ => None,
            };
            state.phase = Phase::Loaded(match found {
                Some((id, record)) => Loaded {
                    id,
                    data: record.data.clone(),
                    user: record.user.clone(),
                    stored: Some(record),
                },
                // Never adopt the client's id: a fresh one.
                None => Loaded {
                    id: SessionId::generate()?,
                    stored: None,
                    data: Data::new(),
                    user: None,
                },
            });
        }
        Ok(state)
    }

    /// Applies `op` to the current data and logs it for replay (and, for
    /// a login, marks the rotation in the same critical section). Returns
    /// the former value of the key a removal names.
    async fn change(&self, op: Op, rotation: Option<Rotation>) -> Result<Option<Value>, Error> {
        let mut state = self.loaded().await?;
        let state = &mut *state;
        let mut previous = None;
        if let Phase::Loaded(loaded) = &mut state.phase {
            if let Op::Remove(key) = &op {
                previous = loaded.data.get(key).cloned();
            }
            op.apply(&mut loaded.data, &mut loaded.user);
        }
        state.ops.push(op);
        if rotation.is_some() {
            state.rotation = rotation;
        }
        Ok(previous)
    }

    /// The value under `key`, deserialised as `T`.
    ///
    /// # Errors
    ///
    /// A store error while loading; [`Error::Decode`] when the value is not
    /// a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let state = self.loaded().await?;
        let Phase::Loaded(loaded) = &state.phase else {
            return Ok(None);
        };
        match loaded.data.get(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|e| Error::decode(loaded.id.storage_key(), e)),
        }
    }

    /// The raw JSON value under `key`.
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, Error> {
        let state = self.loaded().await?;
        Ok(match &state.phase {
            Phase::Loaded(loaded) => loaded.data.get(key).cloned(),
            _ => None,
        })
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `value` cannot be represented as JSON; a
    /// store error while loading.
    pub async fn insert<T: Serialize>(
        &self,
        key: impl Into<String>,
        value: T,
    ) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(Error::Encode)?;
        self.change(Op::Insert(key.into(), value), None).await?;
        Ok(())
    }

    /// Removes `key`, returning its former value.
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, Error> {
        self.change(Op::Remove(key.to_owned()), None).await
    }

    /// Removes every key (the user binding stays; see [`Session::logout`]).
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn clear(&self) -> Result<(), Error> {
        self.change(Op::Clear, None).await?;
        Ok(())
    }

    /// The user this session is bound to.
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn user(&self) -> Result<Option<String>, Error> {
        let state = self.loaded().await?;
        Ok(match &state.phase {
            Phase::Loaded(loaded) => loaded.user.clone(),
            _ => None,
        })
    }

    /// Binds the session to `user` and, on commit, moves it to a fresh id
    /// (fixation defence) with a new absolute lifetime.
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn login(&self, user: impl Into<String>) -> Result<(), Error> {
        self.change(Op::SetUser(Some(user.into())), Some(Rotation::Login))
            .await?;
        Ok(())
    }

    /// On commit, moves the session to a fresh id, keeping its data, user
    /// and absolute deadline.
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn cycle_id(&self) -> Result<(), Error> {
        let mut state = self.loaded().await?;
        if state.rotation.is_none() {
            state.rotation = Some(Rotation::Cycle);
        }
        Ok(())
    }

    /// Ends the session: on commit its record is deleted and the cookie
    /// cleared. Needs no store call of its own.
    pub async fn logout(&self) {
        let mut state = self.inner.state.lock().await;
        state.logged_out = true;
        state.ops.clear();
        state.rotation = None;
    }

    /// The storage key of the session as last loaded or committed (`None`
    /// before the first access and for a session not yet stored), for
    /// marking "this session" on an active-sessions page.
    pub async fn storage_key(&self) -> Option<StorageKey> {
        match &self.inner.state.lock().await.phase {
            Phase::Loaded(Loaded {
                stored: Some(record),
                ..
            }) => Some(record.key),
            _ => None,
        }
    }
}
