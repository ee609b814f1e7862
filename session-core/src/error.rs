//! The one error type of the session layer.

use crate::{StorageKey, Unstorable};

/// A boxed error from a backend, codec or driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a store or the session layer.
///
/// Every variant is structured: a caller can `match` on what happened and
/// walk [`std::error::Error::source`] to the driver's own error. No variant
/// carries only a string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `create` found the key already taken by a live record. Nothing was
    /// written.
    #[error("a live session already exists under this key")]
    Exists,

    /// `save` found a different version stored than the one it was given:
    /// another writer saved first. Nothing was written.
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
    #[error("session backend failed during {operation}{}", if *.retryable { " (a retry may help)" } else { "" })]
    Backend {
        /// The store operation that failed, such as `"load"`.
        operation: &'static str,
        /// Whether the same call may succeed if retried (a timeout, a lost
        /// connection), as opposed to a failure that will repeat (bad
        /// credentials, a schema mismatch).
        retryable: bool,
        /// The backend's own error.
        #[source]
        source: BoxError,
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
    #[error("the operating system's random number generator failed")]
    Random(#[source] getrandom::Error),
}

impl Error {
    /// Builds [`Error::Backend`].
    ///
    /// ```
    /// use std::error::Error as _;
    /// use session_core::Error;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
    /// let err = Error::backend("load", true, io);
    /// assert!(err.is_retryable());
    /// assert_eq!(err.source().map(|s| s.to_string()), Some("no answer".into()));
    /// ```
    pub fn backend(operation: &'static str, retryable: bool, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            operation,
            retryable,
            source: source.into(),
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
                operation,
                retryable,
                ..
            } => Self::Backend {
                operation,
                retryable: *retryable,
                source: source(),
            },
            Self::Encode(_) | Self::ValueType { .. } | Self::Random(_) => Self::Backend {
                operation: "commit",
                retryable: false,
                source: source(),
            },
        }
    }

    /// Whether retrying the same call may succeed: true only for a
    /// [`Error::Backend`] marked retryable. (A [`Error::Conflict`] is
    /// resolved by reloading and replaying, not by retrying the same call.)
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Backend {
                retryable: true,
                ..
            }
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
        let err = Error::backend("save", true, io);
        assert!(err.to_string().contains("save"));
        assert!(err.to_string().contains("retry"));
        let source = err.source().map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("reset"));
        let err = Error::backend("save", false, std::fmt::Error);
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
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
