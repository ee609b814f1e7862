//! The one error type of the session layer.

use crate::{StorageKey, Unstorable};

/// A boxed error from a backend, codec or driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a store or the session layer.
///
/// Every variant is structured: a caller can `match` on what happened and
/// walk [`std::error::Error::source`] to the driver's own error. No variant
/// carries only a string.
///
/// # Which store failed
///
/// [`Error::Backend`] and [`Error::GaveUp`] name the store they come from
/// ([`SessionStore::name`](crate::SessionStore::name): `"memory"`,
/// `"redis"`, `"sqlite"`, `"postgres"`, or a third-party store's own
/// name), in their fields and in their message, so an app with two stores
/// can tell which one failed; [`Error::store`] reads it.
///
/// # Sources and semver
///
/// A driver's error (`redis`, `sqlx`, `rustls`, …) is only ever a boxed
/// [`BoxError`] source, never a type in a variant or a signature, so a
/// store can move to a new major version of its driver without a breaking
/// change here; downcast the source when you need the driver's details.
/// The one exception is `serde_json::Error` in [`Error::Encode`] and
/// [`Error::ValueType`]: `serde_json` is part of the data model already
/// ([`Data`](crate::Data) is its map), so its major version is part of
/// this crate's API whatever the errors hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `create` found the key already taken by a live record. Nothing was
    /// written.
    #[error("a live session already exists under this key")]
    Exists,

    /// `save` found a different version stored than the one it was given:
    /// another writer saved first. Nothing was written.
    ///
    /// One refused compare-and-set. A commit that kept meeting conflicts
    /// until its retry budget ran out is [`Error::GaveUp`] instead.
    #[error("the session was changed by another writer (version conflict)")]
    Conflict,

    /// `save` found no live record: it was deleted or has expired. Nothing
    /// was written, and nothing was recreated.
    #[error("the session no longer exists")]
    NotFound,

    /// A record is larger than the configured limit. Nothing was written.
    #[error("session of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Serialised size of the record, in bytes.
        size: usize,
        /// The configured limit, in bytes.
        limit: usize,
    },

    /// The record breaks a limit that every store enforces so that what it
    /// accepts it can load back equal (see [`crate::Record::check_create`]).
    /// Nothing was written.
    #[error("session record cannot be stored: {0}")]
    Unstorable(Unstorable),

    /// A stored record could not be read back. The record is left in place
    /// for inspection; the error names its storage key (never the id).
    #[error("stored session {key} cannot be decoded")]
    Decode {
        /// The key under which the unreadable record is stored.
        key: StorageKey,
        /// Why decoding failed.
        #[source]
        source: BoxError,
    },

    /// The backend failed (I/O, protocol, timeout, a server that went away).
    #[error("session store `{store}` failed during {operation}{}", if *.retryable { " (a retry may help)" } else { "" })]
    Backend {
        /// The store that failed, as its
        /// [`SessionStore::name`](crate::SessionStore::name) says
        /// (`"redis"`, `"postgres"`, …), or [`Error::CORE`] for this crate's own
        /// machinery.
        store: &'static str,
        /// The store operation that failed, such as `"load"`.
        operation: &'static str,
        /// Whether the same call may succeed if retried (a timeout, a lost
        /// connection), as opposed to a failure that will repeat (bad
        /// credentials, a schema mismatch).
        retryable: bool,
        /// The backend's own error, boxed (see "Sources and semver").
        #[source]
        source: BoxError,
    },

    /// A write gave up after retrying: every attempt met a session that
    /// another writer had changed meanwhile, until the retry budget ran
    /// out (the manager's
    /// [`SessionConfig::conflict_budget`](crate::SessionConfig::conflict_budget),
    /// or a store's own bounded re-runs). Unlike a single
    /// [`Error::Conflict`], this is the final answer of a loop; nothing of
    /// the failed write was applied, and trying the whole call again later
    /// may succeed ([`Error::is_retryable`] is `true`).
    #[error(
        "gave up on {operation} against session store `{store}` after {attempts} attempts: the session kept changing under other writers"
    )]
    GaveUp {
        /// The store the attempts went to (see [`Error::Backend`]'s `store`).
        store: &'static str,
        /// What was being attempted, such as `"commit"` or `"save"`.
        operation: &'static str,
        /// How many attempts were made before giving up (at least 1).
        attempts: u32,
    },

    /// A value given to a session cannot be represented as JSON (say, a
    /// map whose keys are not strings). Nothing was changed.
    #[error("session value cannot be encoded as JSON")]
    Encode(#[source] serde_json::Error),

    /// A session value exists but is not of the type asked for (say,
    /// `Session::get::<u64>` of a list). The session itself is fine.
    #[error("session value {key:?} is not of the requested type")]
    ValueType {
        /// The data key whose value was asked for.
        key: String,
        /// Why the value did not deserialise.
        #[source]
        source: serde_json::Error,
    },

    /// The operating system could not provide randomness for a new id.
    /// The source is the random-number crate's error, boxed (see "Sources
    /// and semver").
    #[error("the operating system's random number generator failed")]
    Random(#[source] BoxError),
}

impl Error {
    /// The store name [`Error::Backend`] gives when the failure is in this
    /// crate's own machinery (a background task that could not be
    /// spawned, a commit round that went away) rather than in a store.
    pub const CORE: &'static str = "session-core";

    /// Builds [`Error::Backend`].
    ///
    /// ```
    /// use std::error::Error as _;
    /// use session_core::Error;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
    /// let err = Error::backend("my-store", "load", true, io);
    /// assert!(err.is_retryable());
    /// assert_eq!(err.store(), Some("my-store"));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "session store `my-store` failed during load (a retry may help)"
    /// );
    /// assert_eq!(err.source().map(|s| s.to_string()), Some("no answer".into()));
    /// ```
    pub fn backend(
        store: &'static str,
        operation: &'static str,
        retryable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            store,
            operation,
            retryable,
            source: source.into(),
        }
    }

    /// Builds [`Error::GaveUp`]: `operation` against `store` gave up after
    /// `attempts` attempts (counted as at least 1).
    ///
    /// ```
    /// use session_core::Error;
    ///
    /// let err = Error::gave_up("postgres", "save", 4);
    /// assert!(matches!(err, Error::GaveUp { attempts: 4, .. }));
    /// assert!(err.is_retryable());
    /// assert!(err.to_string().contains("after 4 attempts"));
    /// ```
    pub fn gave_up(store: &'static str, operation: &'static str, attempts: u32) -> Self {
        Self::GaveUp {
            store,
            operation,
            attempts: attempts.max(1),
        }
    }

    /// The store an [`Error::Backend`] or [`Error::GaveUp`] names; `None`
    /// for every other variant (they say what happened to a session, not
    /// which store it was in).
    pub fn store(&self) -> Option<&'static str> {
        match self {
            Self::Backend { store, .. } | Self::GaveUp { store, .. } => Some(store),
            _ => None,
        }
    }

    /// Builds [`Error::Decode`] for the record stored under `key`.
    pub fn decode(key: StorageKey, source: impl Into<BoxError>) -> Self {
        Self::Decode {
            key,
            source: source.into(),
        }
    }

    /// A copy of a shared error, for answering every request whose
    /// changes one failed store call carried. The variant and its fields
    /// are kept; a source is shared (through the original).
    pub(crate) fn copy_of(shared: &std::sync::Arc<Error>) -> Self {
        let source = || -> BoxError { Box::new(SharedSource(std::sync::Arc::clone(shared))) };
        match &**shared {
            Self::Exists => Self::Exists,
            Self::Conflict => Self::Conflict,
            Self::NotFound => Self::NotFound,
            Self::TooLarge { size, limit } => Self::TooLarge {
                size: *size,
                limit: *limit,
            },
            Self::Unstorable(what) => Self::Unstorable(*what),
            Self::Decode { key, .. } => Self::Decode {
                key: *key,
                source: source(),
            },
            Self::Backend {
                store,
                operation,
                retryable,
                ..
            } => Self::Backend {
                store,
                operation,
                retryable: *retryable,
                source: source(),
            },
            Self::GaveUp {
                store,
                operation,
                attempts,
            } => Self::GaveUp {
                store,
                operation,
                attempts: *attempts,
            },
            Self::Encode(_) | Self::ValueType { .. } | Self::Random(_) => Self::Backend {
                store: Self::CORE,
                operation: "commit",
                retryable: false,
                source: source(),
            },
        }
    }

    /// Whether retrying the same call may succeed: true for a
    /// [`Error::Backend`] marked retryable and for [`Error::GaveUp`] (the
    /// contention may have passed). (A single [`Error::Conflict`] is
    /// resolved by reloading and replaying, not by retrying the same call.)
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                retryable: true,
                ..
            } | Self::GaveUp { .. }
        )
    }
}

/// The source of an error shared by several requests: shows as the
/// original's own source (or the original, when it has none).
#[derive(Debug)]
struct SharedSource(std::sync::Arc<Error>);

impl std::fmt::Display for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::error::Error as _;
        match self.0.source() {
            Some(source) => std::fmt::Display::fmt(source, f),
            None => std::fmt::Display::fmt(&self.0, f),
        }
    }
}

impl std::error::Error for SharedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source().and_then(|s| s.source())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn backend_keeps_source_and_says_retry() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = Error::backend("redis", "save", true, io);
        assert!(err.to_string().contains("save"));
        assert!(err.to_string().contains("`redis`"));
        assert!(err.to_string().contains("retry"));
        let source = err.source().map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("reset"));
        let err = Error::backend("sqlite", "save", false, std::fmt::Error);
        assert_eq!(err.store(), Some("sqlite"));
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("retry"));
    }

    #[test]
    fn decode_names_the_storage_key() {
        let key = StorageKey::from_bytes([0xab; 32]);
        let err = Error::decode(key, std::fmt::Error);
        assert!(err.to_string().contains(&"ab".repeat(32)));
        assert!(err.source().is_some());
        assert!(!err.is_retryable());
    }

    #[test]
    fn gave_up_is_told_apart_from_one_conflict() {
        let err = Error::gave_up("memory", "commit", 0);
        assert!(matches!(err, Error::GaveUp { attempts: 1, .. }));
        assert_eq!(err.store(), Some("memory"));
        assert!(err.is_retryable());
        assert!(!Error::Conflict.is_retryable());
        assert_eq!(Error::Conflict.store(), None);
        let copy = Error::copy_of(&std::sync::Arc::new(err));
        assert!(matches!(
            copy,
            Error::GaveUp {
                store: "memory",
                operation: "commit",
                attempts: 1
            }
        ));
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
