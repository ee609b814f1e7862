//! Turning records into column values and rows back into records.
//!
//! Keys are 32-byte BLOBs, the data map is JSON text, timestamps are
//! integer milliseconds and the version a (non-negative) INTEGER; beside
//! them, the row's integrity digest (see [`crate::digest`]).

use session_core::{Data, Error, Record, StorageKey};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::digest::{digest_hex, escape_replacement_char};
use crate::error::{BadKey, Damaged, VersionOutOfRange, map_sqlx};

/// The largest version a record may carry: SQLite integers are signed 64
/// bits, and a save must still be able to add one.
pub(crate) const MAX_VERSION: u64 = (i64::MAX - 1) as u64;

/// `version` as the SQLite integer it is stored as.
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
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) key: StorageKey,
    pub(crate) user: Option<String>,
    pub(crate) data: String,
    pub(crate) version: i64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    /// The digest (hex) of the row as this write leaves it.
    pub(crate) digest: String,
}

impl Row {
    /// The columns of `record` for a create, which stores its version.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the data cannot be encoded or the version
    /// is out of SQLite's range.
    pub(crate) fn for_create(record: &Record) -> Result<Self, Error> {
        Self::of("create", record, 0)
    }

    /// The columns of `record` for a save, which presents its version and
    /// stores the next.
    ///
    /// # Errors
    ///
    /// As [`Row::for_create`].
    pub(crate) fn for_save(record: &Record) -> Result<Self, Error> {
        Self::of("save", record, 1)
    }

    /// The columns of `record`, whose row will hold version
    /// `record.version + bump`.
    fn of(operation: &'static str, record: &Record, bump: i64) -> Result<Self, Error> {
        let version = version_to_sql(operation, record.version)?;
        let data = data_to_sql(operation, &record.data)?;
        let created_at = record.created_at.as_millis();
        let user = record.user.as_deref().map(str::as_bytes);
        // `version_to_sql` keeps the version below `i64::MAX`.
        let stored = version.saturating_add(bump);
        let digest = digest_hex(
            record.key.as_bytes(),
            user,
            stored,
            created_at,
            data.as_bytes(),
        );
        Ok(Self {
            key: record.key,
            user: record.user.clone(),
            data,
            version,
            created_at,
            expires_at: record.expires_at.as_millis(),
            digest,
        })
    }
}

/// The record's data as JSON text, U+FFFD escaped (see
/// [`crate::digest`]).
fn data_to_sql(operation: &'static str, data: &Data) -> Result<String, Error> {
    serde_json::to_string(data)
        .map(escape_replacement_char)
        .map_err(|e| Error::backend(crate::NAME, operation, false, e))
}

/// Decodes a row selected with [`crate::schema::RECORD_COLUMNS`].
///
/// A row whose data or version cannot be read is [`Error::Decode`] naming
/// its key; the row itself is not touched.
pub(crate) fn decode_row(
    operation: &'static str,
    table: &str,
    row: &SqliteRow,
) -> Result<Record, Error> {
    let key_bytes: Vec<u8> = row.try_get(0).map_err(|e| map_sqlx(operation, e))?;
    let key = StorageKey::from_slice(&key_bytes).map_err(|_| {
        Error::backend(
            crate::NAME,
            operation,
            false,
            BadKey {
                table: table.to_owned(),
                len: key_bytes.len(),
            },
        )
    })?;
    decode_fields(key, row)
}

fn decode_fields(key: StorageKey, row: &SqliteRow) -> Result<Record, Error> {
    let decode = |e: sqlx::Error| Error::decode(key, e);
    let user: Option<String> = row.try_get(1).map_err(decode)?;
    let data: String = row.try_get(2).map_err(decode)?;
    let version: i64 = row.try_get(3).map_err(decode)?;
    let created_at: i64 = row.try_get(4).map_err(decode)?;
    let expires_at: i64 = row.try_get(5).map_err(decode)?;
    let stored: Option<String> = row.try_get(6).map_err(decode)?;
    // Checked first: a row the store did not write as it stands is not
    // decoded at all, whatever it holds.
    let user_bytes = user.as_deref().map(str::as_bytes);
    let computed = digest_hex(
        key.as_bytes(),
        user_bytes,
        version,
        created_at,
        data.as_bytes(),
    );
    if stored.as_deref() != Some(computed.as_str()) {
        return Err(Error::decode(key, Damaged));
    }
    Record::from_columns(key, user, &data, version, created_at, expires_at)
}

/// The digest of a row as the schema's upgrade reads it (key, user, data,
/// version, created_at): `None` when the row does not decode into a
/// record, so that it stays unreadable rather than be vouched for.
pub(crate) fn digest_if_readable(row: &SqliteRow) -> Option<(Vec<u8>, String)> {
    let key_bytes: Vec<u8> = row.try_get(0).ok()?;
    let key = StorageKey::from_slice(&key_bytes).ok()?;
    let user: Option<String> = row.try_get(1).ok()?;
    let data: String = row.try_get(2).ok()?;
    let version: i64 = row.try_get(3).ok()?;
    let created_at: i64 = row.try_get(4).ok()?;
    let user_bytes = user.as_deref().map(str::as_bytes).map(<[u8]>::to_vec);
    // The expiry is not part of the digest; any valid one will do.
    Record::from_columns(key, user, &data, version, created_at, created_at).ok()?;
    let digest = digest_hex(
        &key_bytes,
        user_bytes.as_deref(),
        version,
        created_at,
        data.as_bytes(),
    );
    Some((key_bytes, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_beyond_sqlite_range_are_rejected() {
        assert_eq!(version_to_sql("save", 0).ok(), Some(0));
        assert_eq!(version_to_sql("save", MAX_VERSION).ok(), Some(i64::MAX - 1));
        assert!(version_to_sql("save", MAX_VERSION + 1).is_err());
        assert!(version_to_sql("save", u64::MAX).is_err());
    }
}
