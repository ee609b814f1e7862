//! Turning records into column values and rows back into records.
//!
//! Keys are 32-byte `bytea`s, users the UTF-8 bytes of the user id as
//! `bytea` (PostgreSQL's `text` cannot hold the NUL character, which a user
//! id may contain), the data map is `json` (kept as the exact
//! text serde_json wrote, so every number and string loads back equal),
//! timestamps are `bigint` milliseconds since the Unix epoch and the
//! version a non-negative `bigint`. Each row read comes with whether it
//! matches its integrity digest (see [`crate::digest`]).

use session_core::{Error, Record, StorageKey};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::error::{BadKey, Damaged, VersionOutOfRange, map_sqlx};
use crate::table::TableName;

/// The largest version a record may carry: `bigint` is signed 64 bits,
/// and a save must still be able to add one.
pub(crate) const MAX_VERSION: u64 = (i64::MAX - 1) as u64;

/// `version` as the `bigint` it is stored as.
pub(crate) fn version_to_sql(operation: &'static str, version: u64) -> Result<i64, Error> {
    if version > MAX_VERSION {
        return Err(Error::backend(
            crate::NAME,
            operation,
            false,
            VersionOutOfRange(version),
        ));
    }
    i64::try_from(version)
        .map_err(|_| Error::backend(crate::NAME, operation, false, VersionOutOfRange(version)))
}

/// The columns of a record, ready to bind.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) key: StorageKey,
    pub(crate) user: Option<String>,
    pub(crate) data: String,
    pub(crate) version: i64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

impl Row {
    /// The columns of `record`, written by `operation`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the data cannot be encoded or the version is
    /// out of `bigint`'s range.
    pub(crate) fn of(operation: &'static str, record: &Record) -> Result<Self, Error> {
        Ok(Self {
            key: record.key,
            user: record.user.clone(),
            data: serde_json::to_string(&record.data)
                .map_err(|e| Error::backend(crate::NAME, operation, false, e))?,
            version: version_to_sql(operation, record.version)?,
            created_at: record.created_at.as_millis(),
            expires_at: record.expires_at.as_millis(),
        })
    }
}

/// Decodes a row selected with the schema's record columns (the last:
/// whether it matches its digest).
///
/// A row whose data or version cannot be read is [`Error::Decode`] naming
/// its key; the row itself is not touched.
pub(crate) fn decode_row(
    operation: &'static str,
    table: &TableName,
    row: &PgRow,
) -> Result<Record, Error> {
    let key_bytes: &[u8] = row.try_get(0).map_err(|e| map_sqlx(operation, e))?;
    let key = StorageKey::from_slice(key_bytes).map_err(|_| {
        Error::backend(
            crate::NAME,
            operation,
            false,
            BadKey {
                table: table.to_string(),
                len: key_bytes.len(),
            },
        )
    })?;
    let decode = |e: sqlx::Error| Error::decode(key, e);
    // Checked first: a row the store did not write as it stands is not
    // decoded at all, whatever it holds.
    let intact: bool = row.try_get(6).map_err(decode)?;
    if !intact {
        return Err(Error::decode(key, Damaged));
    }
    let user: Option<&[u8]> = row.try_get(1).map_err(decode)?;
    let user = user
        .map(|user| String::from_utf8(user.to_vec()).map_err(|e| Error::decode(key, e)))
        .transpose()?;
    let data: &str = row.try_get(2).map_err(decode)?;
    let version: i64 = row.try_get(3).map_err(decode)?;
    let created_at: i64 = row.try_get(4).map_err(decode)?;
    let expires_at: i64 = row.try_get(5).map_err(decode)?;
    Record::from_columns(key, user, data, version, created_at, expires_at)
}

/// The key of a row as the schema's upgrade reads it (key, user, data,
/// version, created_at) when the row decodes into a record: `None` when
/// it does not, so that it stays unreadable rather than be vouched for.
pub(crate) fn readable_key(row: &PgRow) -> Option<Vec<u8>> {
    let key_bytes: Vec<u8> = row.try_get(0).ok()?;
    let key = StorageKey::from_slice(&key_bytes).ok()?;
    let user: Option<Vec<u8>> = row.try_get(1).ok()?;
    let user = user.map(String::from_utf8).transpose().ok()?;
    let data: &str = row.try_get(2).ok()?;
    let version: i64 = row.try_get(3).ok()?;
    let created_at: i64 = row.try_get(4).ok()?;
    // The expiry is not part of the digest; any valid one will do.
    Record::from_columns(key, user, data, version, created_at, created_at).ok()?;
    Some(key_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_beyond_bigint_range_are_rejected() {
        assert_eq!(version_to_sql("save", 0).ok(), Some(0));
        assert_eq!(version_to_sql("save", MAX_VERSION).ok(), Some(i64::MAX - 1));
        assert!(version_to_sql("save", MAX_VERSION + 1).is_err());
        assert!(version_to_sql("save", u64::MAX).is_err());
    }
}
