//! What a store keeps for one session.

use serde_json::{Map, Value};

use crate::{Error, StorageKey, Timestamp};

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

/// A stored version below zero: no record ever had it.
#[derive(Debug, thiserror::Error)]
#[error("the stored version {0} is negative")]
struct NegativeVersion(i64);

impl Record {
    /// Rebuilds the record stored under `key` from the columns a SQL store
    /// keeps: the data as JSON text, the version and both timestamps
    /// (milliseconds since the epoch) as signed 64-bit integers, as SQL
    /// databases hold them.
    ///
    /// ```
    /// use session_core::{Record, SessionId, Timestamp};
    ///
    /// let key = SessionId::generate()?.storage_key();
    /// let record = Record::from_columns(key, Some("ada".into()), r#"{"cart":[1]}"#, 3, 1_000, 2_000)?;
    /// assert_eq!(record.version, 3);
    /// assert_eq!(record.expires_at, Timestamp::from_millis(2_000));
    /// assert!(Record::from_columns(key, None, "[1]", 3, 1_000, 2_000).is_err());
    /// assert!(Record::from_columns(key, None, "{}", -1, 1_000, 2_000).is_err());
    /// # Ok::<(), session_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] naming `key` when the data is not a JSON object
    /// or the version is negative.
    pub fn from_columns(
        key: StorageKey,
        user: Option<String>,
        data: &str,
        version: i64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<Self, Error> {
        let data: Data = serde_json::from_str(data).map_err(|e| Error::decode(key, e))?;
        let version =
            u64::try_from(version).map_err(|_| Error::decode(key, NegativeVersion(version)))?;
        Ok(Self {
            key,
            data,
            user,
            created_at: Timestamp::from_millis(created_at),
            expires_at: Timestamp::from_millis(expires_at),
            version,
        })
    }

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

    /// The largest version a store must hold: 2^53 − 1, the largest
    /// integer that every backend's number type represents exactly (Lua's
    /// doubles inside Redis scripts among them).
    pub const MAX_VERSION: u64 = (1 << 53) - 1;

    /// The deepest nesting of objects and arrays a record's data may have,
    /// counting the data object itself as level 1. Every codec of ours
    /// reads far deeper (serde_json stops at 128, SQLite's JSON functions
    /// at 1000), so this leaves room for the envelopes stores wrap data in.
    pub const MAX_DEPTH: usize = 64;

    /// Checks the limits a [`crate::SessionStore::create`] of this record
    /// must refuse before writing anything: `version` at most
    /// [`Record::MAX_VERSION`], data nested at most [`Record::MAX_DEPTH`]
    /// levels. Stores call this first, so every backend refuses the same
    /// records with the same error, and what a store accepts it can load
    /// back equal.
    ///
    /// ```
    /// use session_core::{Error, Record, SessionId, Timestamp, Unstorable};
    ///
    /// let now = Timestamp::now();
    /// let mut record = Record::new(SessionId::generate()?.storage_key(), now, now);
    /// assert!(record.check_create().is_ok());
    /// record.version = u64::MAX;
    /// assert!(matches!(record.check_create(), Err(Error::Unstorable(Unstorable::Version { .. }))));
    /// # Ok::<(), session_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Unstorable`] naming the limit that was broken.
    pub fn check_create(&self) -> Result<(), Error> {
        self.check(Self::MAX_VERSION)
    }

    /// Checks the limits a [`crate::SessionStore::save`] of this record
    /// must refuse before writing anything: like
    /// [`Record::check_create`], and the version the save would store,
    /// `version + 1`, must be at most [`Record::MAX_VERSION`].
    ///
    /// # Errors
    ///
    /// [`Error::Unstorable`] naming the limit that was broken.
    pub fn check_save(&self) -> Result<(), Error> {
        self.check(Self::MAX_VERSION - 1)
    }

    fn check(&self, max_version: u64) -> Result<(), Error> {
        if self.version > max_version {
            return Err(Error::Unstorable(Unstorable::Version {
                version: self.version,
                max: max_version,
            }));
        }
        if !within_depth(&self.data, Self::MAX_DEPTH) {
            return Err(Error::Unstorable(Unstorable::Depth {
                max: Self::MAX_DEPTH,
            }));
        }
        Ok(())
    }
}

/// Whether `data` (an object: level 1) nests at most `max` levels deep.
/// Iterative, so no input can exhaust the stack.
fn within_depth(data: &Data, max: usize) -> bool {
    values_within_depth(data.values(), max)
}

/// Whether data holding `values` at its top level (the object is level 1)
/// nests at most `max` levels deep: the check of [`within_depth`] for just
/// the values a change puts in, so that checking a change costs what the
/// change costs, not what the session holds.
pub(crate) fn values_within_depth<'a>(values: impl Iterator<Item = &'a Value>, max: usize) -> bool {
    if max == 0 {
        return false;
    }
    // Level 1 is the data object; its values' containers are level 2.
    // Only containers are pushed, so flat data allocates nothing.
    let nested = |v: &&Value| v.is_array() || v.is_object();
    let mut stack: Vec<(&Value, usize)> = values.filter(nested).map(|v| (v, 2)).collect();
    while let Some((value, level)) = stack.pop() {
        // Every container counts, empty or not: parsers count brackets.
        match value {
            Value::Array(_) | Value::Object(_) if level > max => return false,
            Value::Array(items) => {
                stack.extend(items.iter().filter(nested).map(|v| (v, level + 1)))
            }
            Value::Object(items) => {
                stack.extend(items.values().filter(nested).map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    true
}

/// A limit a record broke, so that no store accepts it
/// ([`Error::Unstorable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unstorable {
    /// The version (or, for a save, the version it would store) is above
    /// the largest version stores hold.
    Version {
        /// The record's version.
        version: u64,
        /// The largest version accepted for this operation.
        max: u64,
    },
    /// The data nests objects and arrays deeper than stores read back.
    Depth {
        /// The deepest nesting accepted ([`Record::MAX_DEPTH`]).
        max: usize,
    },
}

impl std::fmt::Display for Unstorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version { version, max } => {
                write!(
                    f,
                    "version {version} is above the largest storable version {max}"
                )
            }
            Self::Depth { max } => write!(
                f,
                "data nests objects and arrays deeper than the limit of {max} levels"
            ),
        }
    }
}

/// What [`crate::SessionStore::list_by_user`] found for one user: the live
/// sessions it could read, and the keys of those it could not.
///
/// A record that cannot be decoded does not hide the others (an "active
/// sessions" page keeps working), and is not hidden either: its key is in
/// [`UserSessions::unreadable`], where [`crate::SessionStore::load`]
/// gives its [`Error::Decode`] and [`crate::SessionStore::delete`] removes
/// it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserSessions {
    /// The live records of the user, in no particular order.
    pub records: Vec<Record>,
    /// Keys of the user's records that could not be decoded (their
    /// liveness may be unknown too), in no particular order.
    pub unreadable: Vec<StorageKey>,
}

impl UserSessions {
    /// Readable records only, nothing unreadable.
    pub fn from_records(records: Vec<Record>) -> Self {
        Self {
            records,
            unreadable: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!([value]);
        }
        value
    }

    fn record_with(value: Value) -> Record {
        let now = Timestamp::now();
        let mut record = Record::new(StorageKey::from_bytes([1; 32]), now, now);
        record.data.insert("v".into(), value);
        record
    }

    #[test]
    fn depth_limit_is_exact() {
        // The data object is level 1, so 63 arrays inside it make 64 levels.
        assert!(
            record_with(nested(Record::MAX_DEPTH - 1))
                .check_create()
                .is_ok()
        );
        assert!(matches!(
            record_with(nested(Record::MAX_DEPTH)).check_create(),
            Err(Error::Unstorable(Unstorable::Depth {
                max: Record::MAX_DEPTH
            }))
        ));
        let mut deep_object = json!({});
        for _ in 0..Record::MAX_DEPTH {
            deep_object = json!({ "o": deep_object });
        }
        assert!(record_with(deep_object).check_create().is_err());
        assert!(record_with(nested(1_000)).check_create().is_err());
    }

    #[test]
    fn version_limits_differ_for_create_and_save() {
        let mut record = record_with(json!(null));
        record.version = Record::MAX_VERSION;
        assert!(record.check_create().is_ok());
        assert!(matches!(
            record.check_save(),
            Err(Error::Unstorable(Unstorable::Version {
                version: Record::MAX_VERSION,
                ..
            }))
        ));
        record.version = Record::MAX_VERSION - 1;
        assert!(record.check_save().is_ok());
        record.version = Record::MAX_VERSION + 1;
        assert!(record.check_create().is_err());
    }
}
