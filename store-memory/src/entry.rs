//! The compact form a record takes inside the cache: one allocation.
//!
//! ```text
//! offset  0  version      u64 LE
//!         8  created_at   i64 LE (ms)
//!        16  expires_at   i64 LE (ms)
//!        24  incarnation  u64 LE
//!        32  user length  u32 LE, or u32::MAX for "no user"
//!        36  user bytes (UTF-8), then the data map as MessagePack
//! ```
//!
//! One shared byte slice instead of a struct with separately allocated
//! strings saves two allocations (and their allocator overhead) per
//! session. The data map is kept as MessagePack, which holds every JSON
//! value exactly (integers up to `u64`/`i64`, `f64`, strings, nesting) in
//! about three quarters of the JSON text's bytes; a tree of
//! `serde_json::Value`s would cost several times the text.

use std::sync::Arc;

use session_core::{Data, Error, Record, StorageKey, Timestamp};

const VERSION: usize = 0;
const CREATED: usize = 8;
const EXPIRES: usize = 16;
const INCARNATION: usize = 24;
const USER_LEN: usize = 32;
const HEADER: usize = 36;
const NO_USER: u32 = u32::MAX;

/// One session as the cache holds it. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Entry(Arc<[u8]>);

/// An entry being built, before it is frozen into the cache.
#[derive(Debug)]
pub(crate) struct EntryBuf(Vec<u8>);

impl EntryBuf {
    /// Encodes `record` at `version` under `incarnation`.
    pub(crate) fn encode(
        record: &Record,
        version: u64,
        incarnation: u64,
        operation: &'static str,
    ) -> Result<Self, Error> {
        let user = record.user.as_deref();
        let user_len = match user {
            None => NO_USER,
            Some(u) => u32::try_from(u.len())
                .ok()
                .filter(|&n| n != NO_USER)
                .ok_or(Error::TooLarge {
                    size: u.len(),
                    limit: (NO_USER - 1) as usize,
                })?,
        };
        let mut buf = Vec::with_capacity(HEADER + user.map_or(0, str::len) + 64);
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&record.created_at.as_millis().to_le_bytes());
        buf.extend_from_slice(&record.expires_at.as_millis().to_le_bytes());
        buf.extend_from_slice(&incarnation.to_le_bytes());
        buf.extend_from_slice(&user_len.to_le_bytes());
        if let Some(user) = user {
            buf.extend_from_slice(user.as_bytes());
        }
        rmp_serde::encode::write(&mut buf, &record.data)
            .map_err(|e| Error::backend(operation, false, e))?;
        Ok(Self(buf))
    }

    /// Sets the incarnation (decided under the key's write lock).
    pub(crate) fn set_incarnation(&mut self, incarnation: u64) {
        if let Some(slot) = self.0.get_mut(INCARNATION..INCARNATION + 8) {
            slot.copy_from_slice(&incarnation.to_le_bytes());
        }
    }

    /// Bytes the entry will weigh once frozen.
    pub(crate) fn weight(&self) -> usize {
        weight_of(self.0.len())
    }

    /// The immutable, shareable entry.
    pub(crate) fn freeze(self) -> Entry {
        Entry(Arc::from(self.0))
    }
}

/// The weight of an entry of `len` bytes: the bytes, the `Arc` header
/// around them, and the key. (moka's own per-entry bookkeeping comes on
/// top and is not counted.)
fn weight_of(len: usize) -> usize {
    len + 2 * std::mem::size_of::<usize>() + std::mem::size_of::<StorageKey>()
}

impl Entry {
    fn u64_at(&self, at: usize) -> u64 {
        let mut word = [0u8; 8];
        if let Some(bytes) = self.0.get(at..at + 8) {
            word.copy_from_slice(bytes);
        }
        u64::from_le_bytes(word)
    }

    fn i64_at(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.u64_at(at).to_le_bytes())
    }

    /// (user bytes, data bytes), split at the recorded user length.
    fn parts(&self) -> (Option<&[u8]>, &[u8]) {
        let mut len = [0u8; 4];
        if let Some(bytes) = self.0.get(USER_LEN..HEADER) {
            len.copy_from_slice(bytes);
        }
        let rest = self.0.get(HEADER..).unwrap_or_default();
        match u32::from_le_bytes(len) {
            NO_USER => (None, rest),
            n => {
                let n = (n as usize).min(rest.len());
                let (user, data) = rest.split_at(n);
                (Some(user), data)
            }
        }
    }

    /// The stored version.
    pub(crate) fn version(&self) -> u64 {
        self.u64_at(VERSION)
    }

    /// The stored expiry, in ms.
    pub(crate) fn expires_at(&self) -> i64 {
        self.i64_at(EXPIRES)
    }

    /// Which life of its key this entry belongs to (unique per store), so
    /// a late eviction notice for an old life never touches a newer one's
    /// index entry.
    pub(crate) fn incarnation(&self) -> u64 {
        self.u64_at(INCARNATION)
    }

    /// The bound user. (Written from a `String`, so always UTF-8; should
    /// it not be, it reads as no user, and `decode` reports it.)
    pub(crate) fn user(&self) -> Option<&str> {
        self.parts().0.and_then(|u| std::str::from_utf8(u).ok())
    }

    /// Whether the entry is live at `now`.
    pub(crate) fn is_live_at(&self, now: Timestamp) -> bool {
        now.as_millis() < self.expires_at()
    }

    /// Bytes this entry and its key weigh.
    pub(crate) fn weight(&self) -> usize {
        weight_of(self.0.len())
    }

    /// Decodes the entry stored under `key`.
    pub(crate) fn decode(&self, key: StorageKey) -> Result<Record, Error> {
        let (user, data) = self.parts();
        let data: Data = rmp_serde::from_slice(data).map_err(|e| Error::decode(key, e))?;
        let user = user
            .map(|u| String::from_utf8(u.to_vec()).map_err(|e| Error::decode(key, e)))
            .transpose()?;
        Ok(Record {
            key,
            data,
            user,
            created_at: Timestamp::from_millis(self.i64_at(CREATED)),
            expires_at: Timestamp::from_millis(self.expires_at()),
            version: self.version(),
        })
    }

    /// A copy with another expiry; data, user, version and incarnation
    /// unchanged.
    pub(crate) fn with_expiry(&self, expires_at: Timestamp) -> Self {
        let mut bytes = self.0.to_vec();
        if let Some(slot) = bytes.get_mut(EXPIRES..EXPIRES + 8) {
            slot.copy_from_slice(&expires_at.as_millis().to_le_bytes());
        }
        Self(Arc::from(bytes))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(user: Option<&str>) -> Record {
        let mut r = Record::new(
            StorageKey::from_bytes([7; 32]),
            Timestamp::from_millis(-5),
            Timestamp::from_millis(1_700_000_000_123),
        );
        r.user = user.map(String::from);
        r.data.insert("k".into(), serde_json::json!(["v", 1]));
        r.version = 3;
        r
    }

    #[test]
    fn round_trips_with_and_without_user() {
        for user in [None, Some(""), Some("zoë 🦀")] {
            let r = record(user);
            let mut buf = EntryBuf::encode(&r, 9, 1, "test").unwrap();
            buf.set_incarnation(42);
            let entry = buf.freeze();
            assert_eq!(entry.incarnation(), 42);
            assert_eq!(entry.version(), 9);
            assert_eq!(entry.user(), user);
            let mut expected = r.clone();
            expected.version = 9;
            assert_eq!(entry.decode(r.key).unwrap(), expected);
            let moved = entry.with_expiry(Timestamp::from_millis(5));
            assert_eq!(moved.expires_at(), 5);
            assert_eq!(moved.incarnation(), 42);
            assert_eq!(moved.user(), user);
        }
    }

    #[test]
    fn weight_counts_every_byte() {
        let r = record(Some("alice"));
        let entry = EntryBuf::encode(&r, 0, 1, "test").unwrap().freeze();
        // MessagePack of {"k": ["v", 1]}: map(1), str(1) "k", array(2), str(1) "v", 1.
        let expected = HEADER + "alice".len() + 7 + 16 + 32;
        assert_eq!(entry.weight(), expected);
    }

    #[test]
    fn a_damaged_entry_is_a_decode_error_not_a_panic() {
        let key = StorageKey::from_bytes([1; 32]);
        for bytes in [vec![], vec![0u8; 10], vec![0xff; HEADER + 3]] {
            let entry = Entry(Arc::from(bytes));
            assert!(entry.decode(key).is_err());
        }
    }
}
