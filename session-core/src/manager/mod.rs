//! The session lifecycle: lazy loading, minimal commits, coalesced saves
//! with conflict replay, lossless id rotation, logout.
//!
//! * [`config`]: [`SessionConfig`] and [`CookieAction`].
//! * [`session`]: the request's [`Session`] and its change log.
//! * [`lane`]: commits of one session inside one manager, folded into
//!   rounds.
//! * [`moved`]: the marker a rotation leaves for requests still holding
//!   the old id.
//! * here: the manager, and the rounds a lane runs.

mod config;
mod lane;
mod moved;
mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::lane::{Answer, Job, Lanes, Outcome};
use self::session::{Incoming, Loaded, Phase, Rotation, State};
use crate::UserSessions;
use crate::{Error, ExpiryPolicy, Record, SessionId, SessionStore, StorageKey, Timestamp};

pub use self::config::{CookieAction, SessionConfig};
pub use self::session::Session;

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
    lanes: Lanes,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
                lanes: Lanes::default(),
            }),
        }
    }

    /// The same store with another configuration (a new manager: commits
    /// are coalesced per manager).
    pub fn with_config(self, config: SessionConfig) -> Self {
        Self {
            inner: Arc::new(ManagerInner {
                store: Arc::clone(&self.inner.store),
                config,
                lanes: Lanes::default(),
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

    /// The most session ids a request's cookies are tried for (see
    /// [`SessionManager::load_any`]): a request carrying a flood of
    /// cookies of the session's name costs at most this many loads (two
    /// for each id that misses, to tell a rotated id from an unknown one).
    pub const MAX_COOKIE_CANDIDATES: usize = 3;

    /// The session for a request carrying `cookie_value` (or none).
    ///
    /// Makes **no store call**: the session loads on its first read or
    /// write. A malformed value never reaches the store; a well-formed id
    /// that is not in the store becomes a fresh session with a **new** id,
    /// never the client's.
    pub fn load(&self, cookie_value: Option<&str>) -> Session {
        self.load_any(cookie_value)
    }

    /// The session for a request carrying several cookies of the
    /// session's name (`values`, in the order the browser sent them, as
    /// text or raw bytes): the first that names a live session is used.
    ///
    /// A browser sends two cookies of one name when a sibling subdomain or
    /// a script planted one for the parent domain or another path beside
    /// ours; taking the first blindly would hide the real session behind a
    /// planted one. Malformed values are skipped without a store call; the
    /// first [`SessionManager::MAX_COOKIE_CANDIDATES`] well-formed ones are
    /// tried, in order, when the session is first used. A commit answers
    /// [`CookieAction::Clear`] for a request whose cookies name no session
    /// only when it looked at every one of them (so the cookie it clears
    /// cannot be a live one), never for one a rotation moved away from.
    /// Makes no store call itself.
    pub fn load_any<V: AsRef<[u8]>>(&self, values: impl IntoIterator<Item = V>) -> Session {
        Session::new(self.clone(), Incoming::from_values(values))
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
    /// * Changed: `create`, or a compare-and-set `save`. Commits of one
    ///   session that overlap inside this manager are folded into one
    ///   save, each request's changes replayed in arrival order onto the
    ///   freshest record. When another process saved first, the commit
    ///   reloads, replays and saves again, with randomised growing pauses,
    ///   for up to [`SessionConfig::conflict_budget`]. A session found
    ///   gone (logged out elsewhere, expired) stays gone:
    ///   [`CookieAction::Clear`].
    /// * After [`Session::login`] or [`Session::cycle_id`]: the record
    ///   moves to a fresh id, with every change committed before the move
    ///   included; the old one is retired only once the new one is
    ///   stored, so a failed create loses nothing.
    /// * A request that loaded the session before another request moved
    ///   it to a new id leaves the cookie alone: it neither learns the new
    ///   id nor logs the browser out. When the move kept the session's
    ///   owner ([`Session::cycle_id`], a login as the same user), its
    ///   changes land in the moved session, [`CookieAction::Unchanged`];
    ///   when a login changed the owner, they are dropped,
    ///   [`CookieAction::Superseded`]. (Within
    ///   [`SessionConfig::rotation_grace`].)
    /// * A request that came with an id a rotation had already moved
    ///   away from opened nothing: [`CookieAction::Unchanged`], or
    ///   [`CookieAction::Superseded`] when it tried to change something
    ///   (nothing was written).
    /// * After [`Session::logout`]: the record is deleted,
    ///   [`CookieAction::Clear`].
    ///
    /// Commits need a Tokio runtime with its timer enabled (for the pauses
    /// between retries against other processes), as every Tokio web
    /// server has.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] (or [`Error::Unstorable`] for data nested too
    /// deep) before anything is written when this request's changes make
    /// the session too large: only this request fails, others folded into
    /// the same save go through. [`Error::GaveUp`] when the budget runs
    /// out; any store error. The session keeps its pending changes after
    /// an error, so the commit can be retried. After [`Session::logout`],
    /// a failed delete is this error too, and the cookie must still be
    /// cleared ([`Session::is_logged_out`]).
    pub async fn commit(&self, session: &Session) -> Result<CookieAction, Error> {
        let mut state = session.inner.state.lock().await;
        let state = &mut *state;
        if session.is_logged_out() {
            return self.commit_logout(session, state).await;
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
        let answer = match (&loaded.stored, changed) {
            (None, _) if loaded.data.is_empty() && loaded.user.is_none() => {
                // A new session that stayed empty is never stored. The
                // request's cookies name no session: clear them, unless
                // some were not looked at (one of those may be live).
                let incoming = &session.inner.incoming;
                return Ok(if incoming.sent && incoming.complete {
                    CookieAction::Clear
                } else {
                    CookieAction::Unchanged
                });
            }
            // A new session's id is fresh already: a rotation changes nothing.
            (None, _) => self.commit_new(loaded).await?,
            (Some(_), false) => self.commit_read_only(loaded).await?,
            (Some(stored), true) => {
                let job = Job {
                    base: stored.clone(),
                    ops: state.ops.clone(),
                    rotation: state.rotation,
                };
                match self.inner.lanes.enter(stored.key, job).await {
                    Err(answer) => answer?,
                    Ok(mut leader) => {
                        let latest = leader.take_latest();
                        let (answers, latest) = self.round(leader.jobs(), latest).await;
                        leader.finish(answers, latest)?
                    }
                }
            }
        };
        state.ops.clear();
        state.rotation = None;
        Ok(match answer {
            Outcome::Saved(record) => {
                let action = set_cookie(&loaded.id, record.expires_at);
                loaded.data = record.data.clone();
                loaded.user = record.user.clone();
                loaded.stored = Some(record);
                action
            }
            Outcome::Rotated(id, record) => {
                let action = set_cookie(&id, record.expires_at);
                loaded.id = id;
                loaded.data = record.data.clone();
                loaded.user = record.user.clone();
                loaded.stored = Some(record);
                action
            }
            Outcome::Untouched => CookieAction::Unchanged,
            Outcome::Forwarded => {
                state.phase = Phase::Gone;
                CookieAction::Unchanged
            }
            Outcome::Superseded => {
                state.phase = Phase::Gone;
                CookieAction::Superseded
            }
            Outcome::Gone { clear } => {
                state.phase = Phase::Gone;
                if clear {
                    CookieAction::Clear
                } else {
                    CookieAction::Unchanged
                }
            }
        })
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

    /// The live sessions of `user`, for an "active sessions" page (with
    /// the keys of any that could not be read).
    ///
    /// # Errors
    ///
    /// Any store error.
    pub async fn sessions_of(&self, user: &str) -> Result<UserSessions, Error> {
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
        self.inner.config.expiry()
    }

    /// Whether `record` may be stored: within the size limit and the
    /// limits every store enforces.
    fn check_fits(&self, record: &Record) -> Result<(), Error> {
        let data_len = serde_json::to_vec(&record.data)
            .map_err(Error::Encode)?
            .len();
        let size = data_len + record.user.as_deref().map_or(0, str::len);
        let limit = self.inner.config.max_size();
        if size > limit {
            return Err(Error::TooLarge { size, limit });
        }
        record.check_save()
    }

    /// Deletes the session the request loaded. A request that logs out
    /// without having used its session first deletes what its one id
    /// names, unread (a store call saved), or, carrying several, the first
    /// that names a live session; one that came with a moved id deletes
    /// nothing.
    async fn commit_logout(
        &self,
        session: &Session,
        state: &mut State,
    ) -> Result<CookieAction, Error> {
        let key = match &state.phase {
            Phase::Loaded(loaded) => loaded.stored.as_ref().map(|r| r.key),
            Phase::Gone | Phase::Moved => None,
            Phase::Unloaded => {
                let ids = &session.inner.incoming.ids;
                match ids.len() {
                    0 => None,
                    1 => ids.iter().next().map(SessionId::storage_key),
                    _ => session.live_key().await?,
                }
            }
        };
        state.ops.clear();
        state.rotation = None;
        if let Some(key) = key {
            traced("delete", Some(&key), self.store().delete(&key)).await?;
        }
        state.phase = Phase::Gone;
        Ok(CookieAction::Clear)
    }

    async fn commit_new(&self, loaded: &mut Loaded) -> Result<Outcome, Error> {
        let now = Timestamp::now();
        let mut record = Record {
            key: loaded.id.storage_key(),
            data: loaded.data.clone(),
            user: loaded.user.clone(),
            created_at: now,
            expires_at: self.policy().expires_at(now, now),
            version: 0,
        };
        self.check_fits(&record)?;
        let id = self
            .create_with_fresh_key(&mut record, loaded.id.clone())
            .await?;
        Ok(Outcome::Rotated(id, record))
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

    async fn commit_read_only(&self, loaded: &mut Loaded) -> Result<Outcome, Error> {
        let Some(stored) = &loaded.stored else {
            return Ok(Outcome::Gone { clear: true });
        };
        let now = Timestamp::now();
        let Some(next) = self
            .policy()
            .touch_due(stored.created_at, stored.expires_at, now)
        else {
            // Nothing to write; the cookie stays as it is.
            return Ok(Outcome::Untouched);
        };
        let key = stored.key;
        if traced("touch", Some(&key), self.store().touch(&key, next)).await? {
            let mut record = stored.clone();
            record.expires_at = next;
            Ok(Outcome::Saved(record))
        } else {
            // Gone: logged out, or moved by a rotation (then the cookie
            // may already hold the new id and must be left alone).
            let moved = !matches!(self.follow(&key).await?, Followed::Ended);
            Ok(Outcome::Gone { clear: !moved })
        }
    }

    /// Runs one round of a lane: a rotation alone, or one save carrying
    /// every job of the batch.
    async fn round(
        &self,
        jobs: Vec<&Job>,
        latest: Option<Record>,
    ) -> (Vec<Answer>, Option<Record>) {
        match jobs.as_slice() {
            [job] if job.rotation.is_some() => {
                let answer = self.rotate(job, latest).await;
                (vec![answer], None)
            }
            _ => self.save_round(&jobs, latest).await,
        }
    }

    /// Saves every job's changes, replayed in order onto the freshest
    /// record, with one compare-and-set save per attempt.
    async fn save_round(
        &self,
        jobs: &[&Job],
        latest: Option<Record>,
    ) -> (Vec<Answer>, Option<Record>) {
        let mut answers: Vec<Option<Answer>> = jobs.iter().map(|_| None).collect();
        let mut base = freshest(latest, jobs.iter().map(|j| &j.base));
        let mut forwarded = false;
        let mut retry = Retry::new(self.inner.config.conflict_budget());
        let stored = loop {
            let now = Timestamp::now();
            let (mut next, included) = self.replay(&base, jobs, &mut answers, |r| r);
            if included.is_empty() {
                break None;
            }
            next.expires_at = self.policy().expires_at(next.created_at, now);
            let key = next.key;
            let result = if next.expires_at <= now {
                // Past its absolute deadline: the session ends here.
                traced("delete", Some(&key), self.store().delete(&key))
                    .await
                    .map(|_| None)
            } else {
                match traced("save", Some(&key), self.store().save(&next)).await {
                    Ok(version) => {
                        next.version = version;
                        Ok(Some(next))
                    }
                    Err(Error::Conflict) if retry.again().await => match self.reload(&key).await {
                        Ok(Some(fresh)) => {
                            base = fresh;
                            continue;
                        }
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    },
                    Err(Error::Conflict) => Err(retry.gave_up(self.store().name())),
                    Err(Error::NotFound) => Ok(None),
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(Some(saved)) => {
                    let outcome = |_: &Job| {
                        if forwarded {
                            Outcome::Forwarded
                        } else {
                            Outcome::Saved(saved.clone())
                        }
                    };
                    fill(&mut answers, &included, jobs, |job| Ok(outcome(job)));
                    break (!forwarded).then_some(saved);
                }
                // Gone from under its key: moved by a rotation, or ended.
                Ok(None) => match self.follow(&key).await {
                    Ok(Followed::To(moved)) => {
                        base = moved;
                        forwarded = true;
                    }
                    Ok(Followed::NewOwner) => {
                        fill(&mut answers, &included, jobs, |_| Ok(Outcome::Superseded));
                        break None;
                    }
                    Ok(Followed::Ended) => {
                        let clear = !forwarded;
                        fill(&mut answers, &included, jobs, |_| {
                            Ok(Outcome::Gone { clear })
                        });
                        break None;
                    }
                    Err(e) => {
                        fan_out(&mut answers, &included, e);
                        break None;
                    }
                },
                Err(e) => {
                    fan_out(&mut answers, &included, e);
                    break None;
                }
            }
        };
        let answers = answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(Error::Conflict)))
            .collect();
        (answers, stored)
    }

    /// Replays the changes of the jobs not yet answered onto `base`, in
    /// order. A job whose changes would break a limit is answered with
    /// that error and left out; the others go on. Returns the record to
    /// store and the indices of the jobs it carries.
    fn replay(
        &self,
        base: &Record,
        jobs: &[&Job],
        answers: &mut [Option<Answer>],
        shape: impl Fn(Record) -> Record,
    ) -> (Record, Vec<usize>) {
        let pending: Vec<usize> = (0..jobs.len()).filter(|&i| answers[i].is_none()).collect();
        let mut next = base.clone();
        for &i in &pending {
            for op in &jobs[i].ops {
                op.apply(&mut next.data, &mut next.user);
            }
        }
        let next = shape(next);
        if self.check_fits(&next).is_ok() {
            return (next, pending);
        }
        // Someone's changes break a limit: find whose, one job at a time.
        let mut next = base.clone();
        let mut included = Vec::new();
        for i in pending {
            let mut trial = next.clone();
            for op in &jobs[i].ops {
                op.apply(&mut trial.data, &mut trial.user);
            }
            match self.check_fits(&shape(trial.clone())) {
                Ok(()) => {
                    next = trial;
                    included.push(i);
                }
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        (shape(next), included)
    }

    /// Moves the session to a fresh id, with every change committed
    /// before the move: creates the new record, leaves a marker naming
    /// it under the old key's marker key, then retires the old record with
    /// a compare-and-set save that expires it at once. A save that landed
    /// in between makes that save conflict: the new record is brought up
    /// to date and the old one retired again.
    async fn rotate(&self, job: &Job, latest: Option<Record>) -> Answer {
        let mut answer = [None];
        let mut base = freshest(latest, [&job.base]);
        let old_key = base.key;
        let now = Timestamp::now();
        // Login starts a new absolute lifetime; a plain cycle keeps it.
        let created_at = match job.rotation {
            Some(Rotation::Login) => now,
            Some(Rotation::Cycle) | None => base.created_at,
        };
        let expires_at = self.policy().expires_at(created_at, now);
        let shape = |mut r: Record| {
            r.created_at = created_at;
            r.expires_at = expires_at;
            r.version = 0;
            r
        };
        let (mut next, included) = self.replay(&base, &[job], &mut answer, shape);
        if included.is_empty() {
            return answer[0].take().unwrap_or(Err(Error::Conflict));
        }
        if expires_at <= now {
            traced("delete", Some(&old_key), self.store().delete(&old_key)).await?;
            return Ok(Outcome::Gone { clear: true });
        }
        // The new record first: if this fails, the old one is untouched.
        let id = self
            .create_with_fresh_key(&mut next, SessionId::generate()?)
            .await?;
        // A login that changes who the session belongs to does not let
        // requests holding the old id write into the new session.
        let new_owner = base.user != next.user;
        let marker = moved::marker(
            &old_key,
            &next.key,
            new_owner,
            now,
            self.inner.config.rotation_grace(),
        );
        match traced("create", Some(&marker.key), self.store().create(&marker)).await {
            // Exists: a rotation racing this one left its marker first;
            // retiring the old record below decides nothing else.
            Ok(()) | Err(Error::Exists) => {}
            Err(e) => return Err(e),
        }
        let mut retry = Retry::new(self.inner.config.conflict_budget());
        loop {
            let retired = Record {
                key: old_key,
                data: crate::Data::new(),
                user: None,
                created_at: base.created_at,
                expires_at: Timestamp::now(),
                version: base.version,
            };
            match traced("save", Some(&old_key), self.store().save(&retired)).await {
                Ok(_) => return Ok(Outcome::Rotated(id, next)),
                Err(Error::Conflict) if retry.again().await => {
                    let Some(fresh) = self.reload(&old_key).await? else {
                        return self.rotated_away(&old_key, id, next).await;
                    };
                    base = fresh;
                    let (mut updated, included) =
                        self.replay(&base, &[job], &mut answer, |mut r| {
                            r.key = next.key;
                            shape(r)
                        });
                    if included.is_empty() {
                        return answer[0].take().unwrap_or(Err(Error::Conflict));
                    }
                    updated.version = next.version;
                    match traced("save", Some(&next.key), self.store().save(&updated)).await {
                        Ok(version) => updated.version = version,
                        // Only a commit that found the old record gone
                        // follows the marker into the new one: the old
                        // record went meanwhile.
                        Err(Error::Conflict) => {
                            return self.rotated_away(&old_key, id, next).await;
                        }
                        Err(e) => return Err(e),
                    }
                    next = updated;
                }
                Err(Error::Conflict) => return Err(retry.gave_up(self.store().name())),
                Err(Error::NotFound) => return self.rotated_away(&old_key, id, next).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// The old record vanished during a rotation: if another rotation's
    /// marker stands for it, that rotation retired it and this one's new
    /// session stands on its own; if not, the session was logged out (or
    /// ended otherwise), and the new record goes too, and so does this
    /// rotation's own marker (naming its new key), which was written
    /// before the old record was found gone and proves nothing: left
    /// standing, it would make the logged-out id look moved.
    async fn rotated_away(&self, old_key: &StorageKey, id: SessionId, next: Record) -> Answer {
        let marker = moved::marker_key(old_key);
        let found = traced("load", Some(&marker), self.store().load(&marker))
            .await?
            .filter(|m| m.is_live_at(Timestamp::now()));
        let own = match found.as_ref().map(moved::moved_to) {
            Some(to) if to != Some(next.key) => return Ok(Outcome::Rotated(id, next)),
            Some(_) => true,
            None => false,
        };
        traced("delete", Some(&next.key), self.store().delete(&next.key)).await?;
        if own {
            traced("delete", Some(&marker), self.store().delete(&marker)).await?;
        }
        Ok(Outcome::Gone { clear: true })
    }

    /// Loads `key` again after a conflict; `None` when it is gone or past
    /// its deadline.
    async fn reload(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        tracing::debug!(%key, "session save conflicted; reloading to replay");
        Ok(traced("load", Some(key), self.store().load(key))
            .await?
            .filter(|r| self.alive(r, Timestamp::now())))
    }

    /// For a session gone from under `key`: where its markers lead,
    /// following at most a few.
    async fn follow(&self, key: &StorageKey) -> Result<Followed, Error> {
        let mut key = *key;
        for _ in 0..4 {
            let marker = moved::marker_key(&key);
            let now = Timestamp::now();
            let Some(marker) = traced("load", Some(&marker), self.store().load(&marker))
                .await?
                .filter(|m| m.is_live_at(now))
            else {
                return Ok(Followed::Ended);
            };
            let Some(to) = moved::moved_to(&marker) else {
                return Ok(Followed::Ended);
            };
            if moved::new_owner(&marker) {
                return Ok(Followed::NewOwner);
            }
            if let Some(record) = self.reload(&to).await? {
                return Ok(Followed::To(record));
            }
            key = to;
        }
        Ok(Followed::Ended)
    }

    /// Whether a stored record is usable at `now` under this policy: live,
    /// and not past the absolute deadline counted from its creation.
    fn alive(&self, record: &Record, now: Timestamp) -> bool {
        record.is_live_at(now) && now < self.policy().absolute_deadline(record.created_at)
    }
}

/// Where the markers of a session gone from under its key lead.
enum Followed {
    /// To this live session, moved with the same owner: changes go there.
    To(Record),
    /// To a session a login gave a new owner: changes are dropped.
    NewOwner,
    /// Nowhere: the session ended (logged out, expired, or the markers
    /// ran out).
    Ended,
}

/// The record with the highest version among `latest` and `others` (all
/// copies of one key).
fn freshest<'a>(latest: Option<Record>, others: impl IntoIterator<Item = &'a Record>) -> Record {
    let mut best = latest;
    for record in others {
        if best.as_ref().is_none_or(|b| b.version < record.version) {
            best = Some(record.clone());
        }
    }
    // A round always has at least one job, so `others` is never empty.
    best.unwrap_or_else(|| {
        Record::new(
            StorageKey::from_bytes([0; 32]),
            Timestamp::from_millis(0),
            Timestamp::from_millis(0),
        )
    })
}

/// Answers every job in `included` with `answer(job)`.
fn fill(
    answers: &mut [Option<Answer>],
    included: &[usize],
    jobs: &[&Job],
    answer: impl Fn(&Job) -> Answer,
) {
    for &i in included {
        answers[i] = Some(answer(jobs[i]));
    }
}

/// Answers every job in `included` with its own copy of `error`.
fn fan_out(answers: &mut [Option<Answer>], included: &[usize], error: Error) {
    let shared = Arc::new(error);
    for &i in included {
        answers[i] = Some(Err(Error::copy_of(&shared)));
    }
}

/// Pauses between attempts against other processes' saves: the first
/// retry at once (this manager's copy was merely stale), then randomised
/// pauses growing to 100 ms, until the budget is spent.
struct Retry {
    started: Instant,
    budget: Duration,
    attempts: u32,
}

impl Retry {
    fn new(budget: Duration) -> Self {
        Self {
            started: Instant::now(),
            budget,
            attempts: 0,
        }
    }

    /// Whether to try again (after the pause, if one is due).
    async fn again(&mut self) -> bool {
        self.attempts += 1;
        if self.started.elapsed() >= self.budget {
            return false;
        }
        if self.attempts > 1 {
            let cap_ms = 1u64 << self.attempts.min(7).saturating_sub(1); // 1 .. 64 ms
            let jitter = u64::from(getrandom::u32().unwrap_or(0)) % (cap_ms * 1000 + 1);
            let pause = Duration::from_micros(jitter + cap_ms * 500)
                .min(self.budget.saturating_sub(self.started.elapsed()));
            tokio::time::sleep(pause).await;
        }
        true
    }

    /// The error of a commit whose last save conflicted once the budget
    /// was spent.
    fn gave_up(&self, store: &'static str) -> Error {
        Error::gave_up(store, "commit", self.attempts)
    }
}

fn set_cookie(id: &SessionId, expires_at: Timestamp) -> CookieAction {
    CookieAction::Set {
        value: id.to_cookie_value(),
        expires_at,
    }
}

/// Runs one store call inside a `tracing` span naming the operation and
/// the storage key (never the session id), and logs its outcome.
pub(super) async fn traced<T, F>(
    op: &'static str,
    key: Option<&StorageKey>,
    call: F,
) -> Result<T, Error>
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at_version(version: u64) -> Record {
        let mut record = Record::new(
            StorageKey::from_bytes([7; 32]),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1),
        );
        record.version = version;
        record
    }

    #[test]
    fn freshest_is_the_highest_version() {
        let (v1, v2, v3, v4) = (at_version(1), at_version(2), at_version(3), at_version(4));
        assert_eq!(freshest(None, [&v1, &v3, &v2]).version, 3);
        assert_eq!(freshest(Some(at_version(5)), [&v3]).version, 5);
        assert_eq!(freshest(Some(at_version(2)), [&v4, &v1]).version, 4);
    }

    /// Pauses of `Retry::again` on tokio's paused clock (exact, however
    /// busy the machine).
    async fn pauses(retry: &mut Retry, n: usize) -> Vec<Duration> {
        let mut pauses = Vec::new();
        for _ in 0..n {
            let started = tokio::time::Instant::now();
            assert!(retry.again().await, "gave up within an hour's budget");
            pauses.push(started.elapsed());
        }
        pauses
    }

    #[tokio::test(start_paused = true)]
    async fn retries_start_at_once_then_pause_randomly_growing_to_about_100_ms() {
        let ms = Duration::from_millis;
        let pauses = pauses(&mut Retry::new(Duration::from_secs(3600)), 16).await;
        assert_eq!(
            pauses[0],
            Duration::ZERO,
            "the first retry waits: {pauses:?}"
        );
        for (i, pause) in pauses.iter().enumerate().skip(1) {
            // Retry i + 1: a random pause of half to one and a half times
            // 2^i ms, at most 64 ms (the timer counts whole milliseconds).
            let cap = ms(1 << i.min(6));
            assert!(
                *pause >= cap / 2 && *pause <= cap * 3 / 2 + ms(1),
                "retry {}: paused {pause:?}, not within {:?}..={:?}: {pauses:?}",
                i + 1,
                cap / 2,
                cap * 3 / 2
            );
        }
        // Random: the ten pauses at the cap spread over its range.
        let at_cap = &pauses[6..];
        let spread = at_cap.iter().max().copied().unwrap_or_default()
            - at_cap.iter().min().copied().unwrap_or_default();
        assert!(spread > ms(5), "pauses at the cap barely vary: {at_cap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_budget_is_spent() {
        let started = tokio::time::Instant::now();
        assert!(!Retry::new(Duration::ZERO).again().await);
        assert_eq!(started.elapsed(), Duration::ZERO, "paused before giving up");
    }
}
