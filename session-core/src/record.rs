//! What a store keeps for one session.

use serde_json::{Map, Value};

use crate::{StorageKey, Timestamp};

/// The session's contents: a JSON object.
pub type Data = Map<String, Value>;

/// One session as a store keeps it.
///
/// A record is *live* while the current time is strictly before
/// [`Record::expires_at`]; from that millisecond on, every store treats it
/// as absent, whether or not it has been physically removed yet.
///
/// ```
/// use std::time::Duration;
/// use session_core::{Record, SessionId, Timestamp};
///
/// let now = Timestamp::now();
/// let mut record = Record::new(
///     SessionId::generate()?.storage_key(),
///     now,
///     now.saturating_add(Duration::from_secs(3600)),
/// );
/// record.data.insert("cart".into(), serde_json::json!([1, 2, 3]));
/// assert!(record.is_live_at(now));
/// assert_eq!(record.version, 0);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The storage key (SHA-256 of the session id).
    pub key: StorageKey,
    /// The session's contents.
    pub data: Data,
    /// The user this session is bound to, for the per-user index.
    pub user: Option<String>,
    /// When the session was created; the absolute timeout counts from here.
    pub created_at: Timestamp,
    /// The absolute instant at which the record stops being live.
    pub expires_at: Timestamp,
    /// Bumped by every successful [`crate::SessionStore::save`]; a save must
    /// present the version it read.
    pub version: u64,
}

impl Record {
    /// A new, empty, unbound record at version 0.
    pub fn new(key: StorageKey, created_at: Timestamp, expires_at: Timestamp) -> Self {
        Self {
            key,
            data: Data::new(),
            user: None,
            created_at,
            expires_at,
            version: 0,
        }
    }

    /// Whether the record is live at `now` (`now < expires_at`).
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}
