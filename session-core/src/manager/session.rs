//! One request's view of its session: lazy loading and the change log.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use super::{SessionManager, traced};
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
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// What the request's cookie said.
pub(super) enum Incoming {
    None,
    Malformed,
    Id(SessionId),
}

pub(super) struct State {
    pub(super) phase: Phase,
    pub(super) ops: Vec<Op>,
    pub(super) rotation: Option<Rotation>,
    pub(super) logged_out: bool,
}

pub(super) enum Phase {
    Unloaded,
    Loaded(Loaded),
    /// Logged out, found deleted or expired by a commit, or moved away
    /// under a new id this request does not know.
    Gone,
}

pub(super) struct Loaded {
    pub(super) id: SessionId,
    /// The record as last read or written; `None` for a new session.
    pub(super) stored: Option<Record>,
    /// The current contents, with this request's changes applied.
    pub(super) data: Data,
    pub(super) user: Option<String>,
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
    SetUser(Option<String>),
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
            Self::SetUser(u) => user.clone_from(u),
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
                    logged_out: false,
                }),
            }),
        }
    }

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
            // A logged-out session: nothing to change, nothing to replay.
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
