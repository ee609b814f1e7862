//! Mapping driver failures onto [`session_core::Error`].

use session_core::Error;

/// SQLite primary result codes worth a retry: the database was busy or
/// locked by another connection, or an I/O error occurred.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_INTERRUPT: i64 = 9;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_PROTOCOL: i64 = 15;

/// The primary result code of a database error.
fn primary_code(db: &dyn sqlx::error::DatabaseError) -> Option<i64> {
    db.code()
        .and_then(|code| code.parse::<i64>().ok())
        .map(|code| code & 0xff)
}

/// Whether retrying the call that failed with `error` may succeed.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => primary_code(db.as_ref()).is_some_and(|code| {
            matches!(
                code,
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_PROTOCOL
            )
        }),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Whether `error` says the database stayed locked by another connection
/// (`SQLITE_BUSY` after the busy timeout, or `SQLITE_LOCKED`): the
/// statement did not run, and any other sent now would wait as long.
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => primary_code(db.as_ref())
            .is_some_and(|code| matches!(code, SQLITE_BUSY | SQLITE_LOCKED)),
        _ => false,
    }
}

/// Whether `error`, raised by a statement inside an explicit transaction,
/// may have rolled back the whole transaction (SQLite documents this for
/// `SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_BUSY`, `SQLITE_NOMEM` and
/// `SQLITE_INTERRUPT`), or leaves the connection in an unknown state (the
/// driver's worker or I/O failed). Other errors (a constraint, a value too
/// big, an encoding failure) undo only the statement that raised them.
pub(crate) fn voids_transaction(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => primary_code(db.as_ref()).is_none_or(|code| {
            matches!(
                code,
                SQLITE_FULL | SQLITE_IOERR | SQLITE_BUSY | SQLITE_NOMEM | SQLITE_INTERRUPT
            )
        }),
        sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound
        | sqlx::Error::InvalidArgument(_) => false,
        _ => true,
    }
}

/// [`Error::Backend`] for a driver failure during `operation`.
pub(crate) fn map_sqlx(operation: &'static str, error: sqlx::Error) -> Error {
    let retryable = is_retryable(&error);
    Error::backend(crate::NAME, operation, retryable, error)
}

/// A record's version does not fit SQLite's signed 64-bit integers.
#[derive(Debug, thiserror::Error)]
#[error("version {0} is beyond what SQLite can store (at most {max})", max = i64::MAX - 1)]
pub(crate) struct VersionOutOfRange(pub(crate) u64);

/// A row that does not match its integrity digest (see
/// [`crate::digest`]): loads, listings and saves leave it as it is.
#[derive(Debug, thiserror::Error)]
#[error(
    "the row does not match its integrity digest: this store did not write it as it stands \
     (it was damaged or edited behind the store's back), so it is left as it is"
)]
pub(crate) struct Damaged;

/// The schema in the database was written by a newer release.
#[derive(Debug, thiserror::Error)]
#[error(
    "table {table:?} has schema version {found}, newer than the {supported} this release \
     understands; upgrade session-store-sqlite"
)]
pub(crate) struct SchemaTooNew {
    pub(crate) table: String,
    pub(crate) found: i64,
    pub(crate) supported: i64,
}

/// A row that does not hold a valid record, for errors that cannot name a
/// storage key (the key column itself is unreadable).
#[derive(Debug, thiserror::Error)]
#[error("a row of table {table:?} holds an unreadable key ({len} bytes, expected 32)")]
pub(crate) struct BadKey {
    pub(crate) table: String,
    pub(crate) len: usize,
}
