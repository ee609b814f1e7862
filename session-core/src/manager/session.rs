//! One request's view of its session: lazy loading, the change log, and
//! what a commit's outcome makes of the request's state (the only file
//! that writes it).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use super::change::{Op, Rotation, Updater, View};
use super::commit;
use super::config::CookieAction;
use super::core::Core;
use super::job::{Job, Outcome};
use super::load::{Found, Incoming, find};
use super::stored::Stored;
use super::trace::traced;
use crate::{Error, Record, SessionId, StorageKey};

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
    core: Arc<Core>,
    incoming: Incoming,
    state: Mutex<State>,
    /// Set by [`Session::logout`] (under the state's lock, so a commit
    /// holding it sees it), readable without that lock.
    logged_out: AtomicBool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

struct State {
    phase: Phase,
    /// This request's changes not yet committed, in order.
    ops: Vec<Op>,
    rotation: Option<Rotation>,
}

enum Phase {
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

struct Loaded {
    id: SessionId,
    /// The record as last read or written, shared with other requests
    /// and rounds; `None` for a new session.
    stored: Option<Arc<Stored>>,
    /// This request's changes over it.
    view: View,
}

impl Loaded {
    fn base(&self) -> Option<&Record> {
        self.stored.as_deref().map(|s| &**s)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.view.get(self.base(), key)
    }
}

impl Session {
    pub(super) fn new(core: Arc<Core>, incoming: Incoming) -> Self {
        Self {
            inner: Arc::new(SessionInner {
                core,
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
        let found = match state.phase {
            Phase::Unloaded => find(&self.inner.core, &self.inner.incoming.ids).await?,
            // A session that ended under this request starts afresh.
            Phase::Gone => None,
            Phase::Loaded(_) | Phase::Moved => return Ok(state),
        };
        state.phase = match found {
            Some(Found::Live(id, stored)) => Phase::Loaded(Loaded {
                id,
                stored: Some(stored),
                view: View::default(),
            }),
            Some(Found::Moved) => Phase::Moved,
            // Never adopt the client's id: a fresh one.
            None => Phase::Loaded(Loaded {
                id: SessionId::generate()?,
                stored: None,
                view: View::default(),
            }),
        };
        Ok(state)
    }

    /// Applies `op` to the request's view and logs it for replay (and,
    /// for a login, marks the rotation in the same critical section).
    /// Returns the former value of the key a removal names.
    async fn change(&self, op: Op, rotation: Option<Rotation>) -> Result<Option<Value>, Error> {
        let mut state = self.loaded().await?;
        let state = &mut *state;
        let mut previous = None;
        if let Phase::Loaded(loaded) = &mut state.phase {
            if let Op::Remove(key) = &op {
                previous = loaded.get(key).cloned();
            }
            let base = loaded.stored.as_deref().map(|s| &**s);
            loaded.view.apply(base, &op);
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
        match loaded.get(key) {
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
            Phase::Loaded(loaded) => loaded.get(key).cloned(),
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
        let current = match loaded.get(&key) {
            None => None,
            Some(value) => Some(T::deserialize(value).map_err(|source| Error::ValueType {
                key: key.clone(),
                source,
            })?),
        };
        let new = f(current);
        let value = serde_json::to_value(&new).map_err(Error::Encode)?;
        loaded.view.set(key.clone(), Some(value));
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
            Phase::Loaded(loaded) => loaded.view.user(loaded.base()).map(str::to_owned),
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
            Phase::Loaded(loaded) => loaded.base().map(|record| record.key),
            _ => None,
        }
    }
}

/// Commits: what the request hands to [`commit`], and what the answer
/// makes of its state.
impl Session {
    /// Commits this request's changes through `core` (see
    /// [`SessionManager::commit`](super::SessionManager::commit)).
    pub(super) async fn commit(&self, core: &Core) -> Result<CookieAction, Error> {
        let mut guard = self.inner.state.lock().await;
        let state = &mut *guard;
        if self.is_logged_out() {
            return self.commit_logout(core, state).await;
        }
        let changed = !state.ops.is_empty() || state.rotation.is_some();
        let loaded = match &mut state.phase {
            Phase::Unloaded | Phase::Gone => return Ok(CookieAction::Unchanged),
            Phase::Moved if changed => {
                state.ops.clear();
                state.rotation = None;
                return Ok(CookieAction::Superseded);
            }
            Phase::Moved => return Ok(CookieAction::Unchanged),
            Phase::Loaded(loaded) => loaded,
        };
        let outcome = match &loaded.stored {
            // A new session that stayed empty is never stored. The
            // request's cookies name no session: clear them, unless some
            // were not looked at (one of those may be live).
            None if loaded.view.is_empty(None) => {
                let incoming = &self.inner.incoming;
                return Ok(if incoming.sent && incoming.complete {
                    CookieAction::Clear
                } else {
                    CookieAction::Unchanged
                });
            }
            // A new session's id is fresh already: a rotation changes nothing.
            None => {
                let (data, user) = loaded.view.to_new();
                commit::create(core, loaded.id.clone(), data, user).await?
            }
            Some(stored) if !changed => commit::read(core, stored).await?,
            Some(stored) => {
                let ops = Arc::new(std::mem::take(&mut state.ops));
                let job = Job {
                    base: Arc::clone(stored),
                    ops: Arc::clone(&ops),
                    rotation: state.rotation,
                };
                match commit::change(core, job).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        // Kept for a retry of the commit.
                        state.ops = Arc::try_unwrap(ops).unwrap_or_else(|ops| Vec::clone(&ops));
                        return Err(e);
                    }
                }
            }
        };
        state.ops.clear();
        state.rotation = None;
        Ok(state.settle(outcome))
    }

    /// Deletes the session the request loaded. A request that logs out
    /// without having used its session first deletes what its one id
    /// names, unread (a store call saved), or, carrying several, the first
    /// that names a live session; one that came with a moved id deletes
    /// nothing.
    async fn commit_logout(&self, core: &Core, state: &mut State) -> Result<CookieAction, Error> {
        let key = match &state.phase {
            Phase::Loaded(loaded) => loaded.base().map(|r| r.key),
            Phase::Gone | Phase::Moved => None,
            Phase::Unloaded => {
                let ids = &self.inner.incoming.ids;
                match ids.len() {
                    0 => None,
                    1 => ids.iter().next().map(SessionId::storage_key),
                    _ => match find(core, ids).await? {
                        Some(Found::Live(_, record)) => Some(record.key),
                        Some(Found::Moved) | None => None,
                    },
                }
            }
        };
        state.ops.clear();
        state.rotation = None;
        if let Some(key) = key {
            core.recent.forget(&key);
            traced("delete", Some(&key), core.store.delete(&key)).await?;
        }
        state.phase = Phase::Gone;
        Ok(CookieAction::Clear)
    }
}

impl State {
    /// Takes in what a commit did: the stored record becomes the
    /// request's base (its changes are in it), or the session is gone.
    fn settle(&mut self, outcome: Outcome) -> CookieAction {
        let Phase::Loaded(loaded) = &mut self.phase else {
            return CookieAction::Unchanged;
        };
        let (action, stored) = match outcome {
            Outcome::Saved(record) => (set_cookie(&loaded.id, record.expires_at), record),
            Outcome::Rotated(id, record) => {
                loaded.id = id;
                (set_cookie(&loaded.id, record.expires_at), record)
            }
            Outcome::Untouched => return CookieAction::Unchanged,
            Outcome::Forwarded => {
                self.phase = Phase::Gone;
                return CookieAction::Unchanged;
            }
            Outcome::Superseded => {
                self.phase = Phase::Gone;
                return CookieAction::Superseded;
            }
            Outcome::Gone { clear } => {
                self.phase = Phase::Gone;
                return if clear {
                    CookieAction::Clear
                } else {
                    CookieAction::Unchanged
                };
            }
        };
        loaded.stored = Some(stored);
        loaded.view = View::default();
        action
    }
}

fn set_cookie(id: &SessionId, expires_at: crate::Timestamp) -> CookieAction {
    CookieAction::Set {
        value: id.to_cookie_value(),
        expires_at,
    }
}
