//! The session lifecycle: lazy loading, minimal commits, coalesced saves
//! with conflict replay, lossless id rotation, logout.
//!
//! A request's [`Session`] (`session.rs`) finds its record on first use
//! (`load.rs`) and records its changes (`change.rs`: the log a commit
//! replays, and the request's view over the record it loaded, shared
//! with other requests as a `stored.rs` record, never copied). A commit
//! (`commit.rs`) then, by what the request did:
//!
//! 1. creates a new session, or touches a read one when its expiry is
//!    due; or
//! 2. queues the changes behind other commits of the same session in this
//!    manager (`commit_queue.rs`), whose leader runs one round for all:
//! 3. a save (`save.rs`): the changes replayed onto the freshest record,
//!    its size tracked as they apply (`size.rs`), one compare-and-set
//!    save; after a conflict with another process, reload and replay
//!    under the retry budget (`retry.rs`); or a rotation (`rotate.rs`):
//!    create the new record, leave a marker (`marker.rs`), retire the old
//!    one;
//! 4. a session found gone from under its key is followed through its
//!    rotation markers (`follow.rs`);
//! 5. the answer goes back to `session.rs`, the only file that writes the
//!    request's state.
//!
//! Every store call runs through `trace.rs`; `core.rs` holds what all of
//! them share (store, configuration, queue); `config.rs` the public
//! [`SessionConfig`] and [`CookieAction`]. Files import only files below
//! them in this list's order, so there is no import circle.

mod change;
mod commit;
mod commit_queue;
mod config;
mod core;
mod follow;
mod job;
mod load;
mod load_queue;
mod marker;
mod recent;
mod retry;
mod rotate;
mod save;
mod session;
mod size;
mod stored;
mod trace;

use std::sync::Arc;

use self::core::Core;
use self::load::Incoming;
use self::trace::traced;
use crate::UserSessions;
use crate::{Error, SessionStore, StorageKey};

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
    core: Arc<Core>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.core.config)
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
            core: Arc::new(Core::new(store, SessionConfig::default())),
        }
    }

    /// The same store with another configuration (a new manager: commits
    /// are coalesced per manager).
    pub fn with_config(self, config: SessionConfig) -> Self {
        Self {
            core: Arc::new(Core::new(Arc::clone(&self.core.store), config)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.core.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.core.store
    }

    /// The most session ids a request's cookies are tried for (see
    /// [`SessionManager::load_any`]): a request carrying a flood of
    /// cookies of the session's name costs at most this many loads (two
    /// for each id that misses, to tell a rotated id from an unknown one).
    pub const MAX_COOKIE_CANDIDATES: usize = load::MAX_CANDIDATES;

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
        Session::new(Arc::clone(&self.core), Incoming::from_values(values))
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
        session.commit(&self.core).await
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
}
