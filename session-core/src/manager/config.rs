//! What a [`SessionManager`](super::SessionManager) is configured with, and
//! what a commit tells the response to do with the cookie.

use std::fmt;
use std::time::Duration;

use crate::{ExpiryPolicy, Timestamp};

/// Settings of a [`SessionManager`](super::SessionManager).
///
/// ```
/// use std::time::Duration;
/// use session_core::{ExpiryPolicy, SessionConfig};
///
/// let config = SessionConfig::default()
///     .with_expiry(ExpiryPolicy::new(Duration::from_secs(900), Duration::from_secs(8 * 3600)))
///     .with_max_size(16 * 1024)
///     .with_conflict_budget(Duration::from_secs(2));
/// assert_eq!(config.max_size(), 16 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    expiry: ExpiryPolicy,
    max_size: usize,
    conflict_budget: Duration,
    rotation_grace: Duration,
}

impl Default for SessionConfig {
    /// [`ExpiryPolicy::default`] (30 min idle, 24 h absolute, 1 min touch
    /// step), [`SessionConfig::DEFAULT_MAX_SIZE`],
    /// [`SessionConfig::DEFAULT_CONFLICT_BUDGET`] and
    /// [`SessionConfig::DEFAULT_ROTATION_GRACE`].
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            max_size: Self::DEFAULT_MAX_SIZE,
            conflict_budget: Self::DEFAULT_CONFLICT_BUDGET,
            rotation_grace: Self::DEFAULT_ROTATION_GRACE,
        }
    }
}

impl SessionConfig {
    /// Default limit on a session's serialised size: 64 KiB.
    pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;
    /// Default time a commit keeps reloading and replaying after losing
    /// races to other processes: 5 s.
    pub const DEFAULT_CONFLICT_BUDGET: Duration = Duration::from_secs(5);
    /// Default time after a rotation during which requests holding the old
    /// id are recognised as such (see [`SessionConfig::with_rotation_grace`]):
    /// 30 s.
    pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(30);

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

    /// Sets how long a commit that keeps losing compare-and-set races to
    /// *other processes* goes on reloading, replaying its changes and
    /// saving again (with randomised, growing pauses) before it gives up
    /// with [`Error::GaveUp`](crate::Error::GaveUp). Commits of one
    /// session inside one manager never race each other: they are folded
    /// into one save.
    pub const fn with_conflict_budget(mut self, budget: Duration) -> Self {
        self.conflict_budget = budget;
        self
    }

    /// Sets how long after a rotation ([`Session::login`],
    /// [`Session::cycle_id`]) the manager remembers where the session
    /// went, for requests still holding the old id:
    ///
    /// * one that loaded the session before a move that kept its owner
    ///   ([`Session::cycle_id`], a login as the same user) gets its
    ///   changes into the moved session and answers
    ///   [`CookieAction::Unchanged`], never learning the new id;
    /// * one that loaded it before a login that changed its owner gets
    ///   its changes dropped and answers [`CookieAction::Superseded`];
    /// * one that arrives with the old id after the move opens nothing,
    ///   writes nothing and answers [`CookieAction::Unchanged`] (or
    ///   [`CookieAction::Superseded`] when it tried to change something),
    ///   so a late response never clears the cookie the login set.
    ///
    /// After that, the old id is an unknown one: such requests get a new,
    /// empty session. The old id never *loads* anything once rotated.
    ///
    /// [`Session::login`]: super::Session::login
    /// [`Session::cycle_id`]: super::Session::cycle_id
    pub const fn with_rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
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

    /// The time budget for conflicts with other processes.
    pub const fn conflict_budget(&self) -> Duration {
        self.conflict_budget
    }

    /// The grace period after a rotation.
    pub const fn rotation_grace(&self) -> Duration {
        self.rotation_grace
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
    /// Leave the browser's cookie as it is: this request's changes were
    /// **not applied**. A login changed who the session belongs to (an
    /// anonymous session signed in, or another user signed in) after this
    /// request loaded it, or the request came with an id such a login had
    /// already moved away from. What the request would have written was
    /// decided before that login, perhaps by whoever planted the id, so
    /// it is not carried into the signed-in session; and the browser may
    /// by now hold the signed-in session's id, so the cookie is not
    /// touched. A web layer answers as for [`CookieAction::Unchanged`];
    /// the app may tell the user the action did not take effect.
    Superseded,
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
            Self::Superseded => f.write_str("Superseded"),
        }
    }
}
