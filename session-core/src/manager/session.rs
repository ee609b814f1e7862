//! One request's view of its session: lazy loading and the change log.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use super::{SessionManager, moved, traced};
use crate::{Data, Error, Record, SessionId, StorageKey, Timestamp};

/// One request's view of its session. Cheap to clone; clones share state,
/// so tasks of one request may use it concurrently.
///
/// Reads and writes are `async` because the first of them loads the
/// session from the store (once). Changes are recorded as an ordered log
/// of operations, so a commit that loses a race can replay them onto the
/// winner's data.
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<SessionInner>,
}

pub(super) struct SessionInner {
    pub(super) manager: SessionManager,
    pub(super) incoming: Incoming,
    pub(super) state: Mutex<State>,
    /// Set by [`Session::logout`] (under the state's lock, so a commit
    /// holding it sees it), readable without that lock.
    logged_out: AtomicBool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// What the request's cookies said.
pub(super) struct Incoming {
    /// The well-formed ids among the request's cookies of the session's
    /// name, in the order sent, without repeats, at most
    /// [`SessionManager::MAX_COOKIE_CANDIDATES`] (kept inline: a request
    /// with a cookie allocates nothing for it).
    pub(super) ids: Ids,
    /// Whether the request carried any cookie of the session's name.
    pub(super) sent: bool,
    /// Whether every such cookie was looked at: malformed, or among
    /// `ids` (not dropped past the limit).
    pub(super) complete: bool,
}

impl Incoming {
    /// Sorts cookie values: malformed ones are dropped (no store call
    /// ever sees them), well-formed ones kept in order, up to the limit.
    pub(super) fn from_values<V: AsRef<[u8]>>(values: impl IntoIterator<Item = V>) -> Self {
        let mut incoming = Self {
            ids: Ids::default(),
            sent: false,
            complete: true,
        };
        for value in values {
            incoming.sent = true;
            let Ok(id) = SessionId::parse_bytes(value.as_ref()) else {
                continue;
            };
            if incoming.ids.iter().any(|known| *known == id) {
                continue;
            }
            if !incoming.ids.push(id) {
                incoming.complete = false;
                break;
            }
        }
        incoming
    }
}

/// Up to [`SessionManager::MAX_COOKIE_CANDIDATES`] ids, inline.
#[derive(Default)]
pub(super) struct Ids {
    ids: [Option<SessionId>; SessionManager::MAX_COOKIE_CANDIDATES],
    len: usize,
}

impl Ids {
    /// Adds `id`; `false` (and nothing added) when full.
    fn push(&mut self, id: SessionId) -> bool {
        match self.ids.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(id);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The ids, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &SessionId> + '_ {
        self.ids.iter().take(self.len).flatten()
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

pub(super) struct State {
    pub(super) phase: Phase,
    pub(super) ops: Vec<Op>,
    pub(super) rotation: Option<Rotation>,
}

pub(super) enum Phase {
    Unloaded,
    Loaded(Loaded),
    /// Logged out, found deleted or expired by a commit, or moved away
    /// under a new id this request does not know.
    Gone,
    /// The request came with an id a rotation had moved away from (its
    /// marker still stands): it opens nothing and writes nothing, and its
    /// commit leaves the cookie alone.
    Moved,
}

pub(super) struct Loaded {
    pub(super) id: SessionId,
    /// The record as last read or written; `None` for a new session.
    pub(super) stored: Option<Record>,
    /// The current contents, with this request's changes applied.
    pub(super) data: Data,
    pub(super) user: Option<String>,
}

/// What the request's ids led to.
enum Found {
    /// This id names this live session.
    Live(SessionId, Record),
    /// One of them was moved away from by a rotation.
    Moved,
}

/// Why a session moves to a fresh id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Rotation {
    /// A login: a new absolute lifetime.
    Login,
    /// `cycle_id`: the same absolute lifetime.
    Cycle,
}

/// The new value of a key from its current one (`None`: leave the key as
/// it is, for a current value of another type).
type UpdateFn = dyn Fn(Option<&Value>) -> Option<Value> + Send + Sync;

/// A read-modify-write of one key.
#[derive(Clone)]
pub(super) struct Updater(Arc<UpdateFn>);

impl fmt::Debug for Updater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Updater(..)")
    }
}

/// A change to a session, replayable onto fresh data.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Insert(String, Value),
    /// Recomputed from the value it finds at each replay, so a
    /// read-modify-write (a counter) loses nothing to a concurrent commit.
    Update(String, Updater),
    Remove(String),
    Clear,
    /// Binds the session to a user; from another user's session, the data
    /// goes first (the new user starts empty), from an anonymous one or
    /// the same user's, it stays.
    Login(String),
}

impl Op {
    pub(super) fn apply(&self, data: &mut Data, user: &mut Option<String>) {
        match self {
            Self::Insert(k, v) => {
                data.insert(k.clone(), v.clone());
            }
            Self::Update(k, update) => {
                if let Some(v) = (update.0)(data.get(k)) {
                    data.insert(k.clone(), v);
                }
            }
            Self::Remove(k) => {
                data.remove(k);
            }
            Self::Clear => data.clear(),
            Self::Login(new) => {
                if user.as_ref().is_some_and(|old| old != new) {
                    data.clear();
                }
                *user = Some(new.clone());
            }
        }
    }
}

impl Session {
    pub(super) fn new(manager: SessionManager, incoming: Incoming) -> Self {
        Self {
            inner: Arc::new(SessionInner {
                manager,
                incoming,
                state: Mutex::new(State {
                    phase: Phase::Unloaded,
                    ops: Vec::new(),
                    rotation: None,
                }),
                logged_out: AtomicBool::new(false),
            }),
        }
    }

    /// Locks the state, loading the session first if this is the first
    /// access.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, Error> {
        let mut state = self.inner.state.lock().await;
        let first = match state.phase {
            Phase::Unloaded => true,
            Phase::Gone => false,
            Phase::Loaded(_) | Phase::Moved => return Ok(state),
        };
        let found = if first { self.find().await? } else { None };
        state.phase = match found {
            Some(Found::Live(id, record)) => Phase::Loaded(Loaded {
                id,
                data: record.data.clone(),
                user: record.user.clone(),
                stored: Some(record),
            }),
            Some(Found::Moved) => Phase::Moved,
            // Never adopt the client's id: a fresh one.
            None => Phase::Loaded(Loaded {
                id: SessionId::generate()?,
                stored: None,
                data: Data::new(),
                user: None,
            }),
        };
        Ok(state)
    }

    /// The storage key of the first of the request's ids that names a
    /// live session, looked up without keeping the state.
    pub(super) async fn live_key(&self) -> Result<Option<StorageKey>, Error> {
        Ok(match self.find().await? {
            Some(Found::Live(_, record)) => Some(record.key),
            Some(Found::Moved) | None => None,
        })
    }

    /// The first of the request's ids that names a live session; failing
    /// that, whether one of them was moved away from by a rotation whose
    /// marker still stands. At most two loads per id, and only for ids
    /// that missed.
    async fn find(&self) -> Result<Option<Found>, Error> {
        let manager = &self.inner.manager;
        let ids = &self.inner.incoming.ids;
        for id in ids.iter() {
            let key = id.storage_key();
            if let Some(record) = traced("load", Some(&key), manager.store().load(&key))
                .await?
                .filter(|r| manager.alive(r, Timestamp::now()))
            {
                return Ok(Some(Found::Live(id.clone(), record)));
            }
        }
        for id in ids.iter() {
            let marker = moved::marker_key(&id.storage_key());
            if traced("load", Some(&marker), manager.store().load(&marker))
                .await?
                .is_some_and(|m| m.is_live_at(Timestamp::now()) && moved::moved_to(&m).is_some())
            {
                return Ok(Some(Found::Moved));
            }
        }
        Ok(None)
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
    /// A store error while loading; [`Error::ValueType`] when the value is
    /// not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let state = self.loaded().await?;
        let Phase::Loaded(loaded) = &state.phase else {
            return Ok(None);
        };
        match loaded.data.get(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|source| Error::ValueType {
                    key: key.to_owned(),
                    source,
                }),
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

    /// Read-modify-write of `key` that loses nothing under concurrency:
    /// sets it to `f(current value)` and returns the new value. Unlike a
    /// [`Session::get`] followed by a [`Session::insert`], whose value is
    /// replayed as written, `f` runs again at commit on the freshest stored
    /// value whenever another request committed first (in this manager or
    /// another app server), so 64 simultaneous increments of a counter
    /// leave it 64 higher. `f` may run several times: keep it a pure
    /// function of its argument.
    ///
    /// ```
    /// use session_core::SessionManager;
    /// use session_store_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), session_core::Error> {
    /// let manager = SessionManager::new(MemoryStore::default());
    /// let session = manager.load(None);
    /// let n = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    /// assert_eq!(n, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ValueType`] when the current value is not a `T`, or
    /// [`Error::Encode`] when the new one cannot be represented as JSON
    /// (nothing is changed then); a store error while loading. If at a
    /// replay the value found is not a `T` (another request stored one of
    /// another type), the key is left as that request left it.
    pub async fn update<T, F>(&self, key: impl Into<String>, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let key = key.into();
        let f = Arc::new(f);
        let replay = Arc::clone(&f);
        let updater = Updater(Arc::new(move |current: Option<&Value>| {
            let current = match current {
                None => None,
                Some(value) => Some(T::deserialize(value).ok()?),
            };
            serde_json::to_value(replay(current)).ok()
        }));
        let mut state = self.loaded().await?;
        let state = &mut *state;
        let Phase::Loaded(loaded) = &mut state.phase else {
            // Nothing to change (the commit tells whether it was
            // superseded by a rotation).
            state.ops.push(Op::Update(key, updater));
            return Ok(f(None));
        };
        let current = match loaded.data.get(&key) {
            None => None,
            Some(value) => Some(T::deserialize(value).map_err(|source| Error::ValueType {
                key: key.clone(),
                source,
            })?),
        };
        let new = f(current);
        let value = serde_json::to_value(&new).map_err(Error::Encode)?;
        loaded.data.insert(key.clone(), value);
        state.ops.push(Op::Update(key, updater));
        Ok(new)
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
    /// * From an anonymous session, the data stays (a cart survives
    ///   sign-in).
    /// * From a session bound to another user, the data goes: `user`
    ///   starts from an empty session, as Django's `login()` does, so
    ///   nothing of the previous user (a tenant, a second-factor flag)
    ///   carries over. Changes this request made before the call go with
    ///   it; changes after it stay.
    /// * Signing in again as the same user keeps the data.
    ///
    /// Requests that loaded the session under its old id and commit after
    /// this login do not write into the signed-in session when the login
    /// changed who the session belongs to: they answer
    /// [`CookieAction::Superseded`](super::CookieAction::Superseded). (A
    /// login as the same user forwards their changes, as
    /// [`Session::cycle_id`] does.)
    ///
    /// # Errors
    ///
    /// A store error while loading.
    pub async fn login(&self, user: impl Into<String>) -> Result<(), Error> {
        self.change(Op::Login(user.into()), Some(Rotation::Login))
            .await?;
        Ok(())
    }

    /// On commit, moves the session to a fresh id, keeping its data, user
    /// and absolute deadline. Requests that loaded the session under the
    /// old id and commit after the move get their changes into the moved
    /// session (see [`SessionConfig::with_rotation_grace`](super::SessionConfig::with_rotation_grace)).
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
    ///
    /// Should the delete fail, the commit returns the store's error, and
    /// the browser's cookie must be overwritten all the same (see
    /// [`Session::is_logged_out`]): a user who logged out keeps no cookie.
    pub async fn logout(&self) {
        let mut state = self.inner.state.lock().await;
        state.ops.clear();
        state.rotation = None;
        self.inner.logged_out.store(true, Ordering::Release);
    }

    /// Whether [`Session::logout`] was called: a web layer clears the
    /// browser's cookie then, also when the commit failed (the record may
    /// still be in the store, but the browser must not keep its id).
    pub fn is_logged_out(&self) -> bool {
        self.inner.logged_out.load(Ordering::Acquire)
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
