//! The compact form a record takes inside the cache.

use std::sync::Arc;

use session_core::{Data, Error, Record, StorageKey, Timestamp};

/// One session as the cache holds it: the data map kept as its JSON text
/// (far smaller than a tree of `serde_json::Value`s), the rest as plain
/// integers.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) data: Box<str>,
    pub(crate) user: Option<Box<str>>,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) version: u64,
    /// Which life of this key the entry belongs to (unique per store), so a
    /// late eviction notice for an old life never touches a newer one's
    /// index entry.
    pub(crate) incarnation: u64,
}

impl Entry {
    /// Encodes `record` under `incarnation`.
    pub(crate) fn encode(
        record: &Record,
        version: u64,
        incarnation: u64,
        operation: &'static str,
    ) -> Result<Self, Error> {
        let data =
            serde_json::to_string(&record.data).map_err(|e| Error::backend(operation, false, e))?;
        Ok(Self {
            data: data.into_boxed_str(),
            user: record.user.as_deref().map(Box::from),
            created_at: record.created_at.as_millis(),
            expires_at: record.expires_at.as_millis(),
            version,
            incarnation,
        })
    }

    /// Decodes the entry stored under `key`.
    pub(crate) fn decode(&self, key: StorageKey) -> Result<Record, Error> {
        let data: Data = serde_json::from_str(&self.data).map_err(|e| Error::decode(key, e))?;
        Ok(Record {
            key,
            data,
            user: self.user.as_deref().map(String::from),
            created_at: Timestamp::from_millis(self.created_at),
            expires_at: Timestamp::from_millis(self.expires_at),
            version: self.version,
        })
    }

    /// A copy with another expiry; data, user and version unchanged.
    pub(crate) fn with_expiry(&self, expires_at: Timestamp) -> Self {
        Self {
            data: self.data.clone(),
            user: self.user.clone(),
            created_at: self.created_at,
            expires_at: expires_at.as_millis(),
            version: self.version,
            incarnation: self.incarnation,
        }
    }

    /// Whether the entry is live at `now`.
    pub(crate) fn is_live_at(&self, now: Timestamp) -> bool {
        now.as_millis() < self.expires_at
    }

    /// Bytes this entry and its key occupy: the key, the entry itself, its
    /// heap text, and the `Arc` header around it. (moka's own per-entry
    /// bookkeeping comes on top and is not counted.)
    pub(crate) fn weight(&self) -> usize {
        std::mem::size_of::<StorageKey>()
            + std::mem::size_of::<Entry>()
            + 2 * std::mem::size_of::<usize>()
            + self.data.len()
            + self.user.as_deref().map_or(0, str::len)
    }
}

/// The cache's value type: cloning it is cheap.
pub(crate) type Shared = Arc<Entry>;
