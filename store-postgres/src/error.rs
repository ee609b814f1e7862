//! Mapping driver failures onto [`session_core::Error`].

use std::fmt;
use std::sync::Arc;

use session_core::Error;

/// Whether retrying the call that failed with `error` may succeed: the
/// connection or the server went away, the server is starting or shutting
/// down, a transaction lost a serialization or deadlock race, or a resource
/// ran out for a while. A constraint, a syntax error or a value the server
/// refuses fails the same way again.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| retryable_sqlstate(&code)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// The SQLSTATE codes (PostgreSQL's appendix A) worth a retry.
fn retryable_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // admin_shutdown, crash_shutdown, cannot_connect_now
        | "57P01" | "57P02" | "57P03"
        // lock_not_available, query_canceled (a statement timeout)
        | "55P03" | "57014"
    ) || code.starts_with("08") // connection exceptions
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
}

/// Whether `error` says the server or the connection is unavailable (as
/// opposed to one statement failing): no pooled connection within the
/// acquire timeout, a lost or refused connection, a server shutting down,
/// starting or out of connections. Every operation sent now would fail
/// the same way.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P0") || code.starts_with("53")
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// One driver failure that answers several operations (every operation of
/// a batch that found the server unavailable): each gets its own
/// [`Error`] whose source is this same failure.
#[derive(Debug, Clone)]
pub(crate) struct SharedFailure(pub(crate) Arc<sqlx::Error>);

impl fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SharedFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Whether `error` is the server cancelling the statement: its
/// `statement_timeout` or `lock_timeout` passed (see
/// [`crate::deadline`]), or someone cancelled it. The statement was rolled
/// back, and every other statement sent now would likely wait as long.
pub(crate) fn is_cancelled(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code == QUERY_CANCELED || code == LOCK_NOT_AVAILABLE),
        _ => false,
    }
}

/// SQLSTATE `query_canceled`: a statement timeout, or a cancel request.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATE `lock_not_available`: a lock timeout.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The server cancelled a statement (see [`is_cancelled`]) and rolled it
/// back; the source is its error.
#[derive(Debug, thiserror::Error)]
#[error(
    "PostgreSQL cancelled the statement (its statement_timeout or lock_timeout passed, or it \
     was cancelled) and rolled it back: nothing of it was applied"
)]
pub(crate) struct Cancelled(#[source] pub(crate) Box<dyn std::error::Error + Send + Sync>);

/// [`Error::Backend`] for a driver failure during `operation`.
pub(crate) fn map_sqlx(operation: &'static str, error: sqlx::Error) -> Error {
    let retryable = is_retryable(&error);
    if is_cancelled(&error) {
        return Error::backend(
            crate::NAME,
            operation,
            retryable,
            Cancelled(Box::new(error)),
        );
    }
    Error::backend(crate::NAME, operation, retryable, error)
}

/// [`Error::Backend`] for a driver failure shared by every operation of a
/// batch.
pub(crate) fn map_shared(operation: &'static str, failure: &SharedFailure) -> Error {
    let retryable = is_retryable(&failure.0);
    if is_cancelled(&failure.0) {
        let cancelled = Cancelled(Box::new(failure.clone()));
        return Error::backend(crate::NAME, operation, retryable, cancelled);
    }
    Error::backend(crate::NAME, operation, retryable, failure.clone())
}

/// A record's version does not fit PostgreSQL's `bigint`.
#[derive(Debug, thiserror::Error)]
#[error("version {0} is beyond what a bigint can store (at most {max})", max = i64::MAX - 1)]
pub(crate) struct VersionOutOfRange(pub(crate) u64);

/// A row that does not match its integrity digest (see
/// [`crate::digest`]): loads, listings and saves leave it as it is.
#[derive(Debug, thiserror::Error)]
#[error(
    "the row does not match its integrity digest: this store did not write it as it stands \
     (it was damaged or edited behind the store's back), so it is left as it is"
)]
pub(crate) struct Damaged;

/// The table is not there: it was never migrated.
#[derive(Debug, thiserror::Error)]
#[error(
    "table {table} has no session schema (its `{table}_meta` version table is missing): install \
     it with `PostgresOptions::migrate(true)` or `session_store_postgres::migrate`"
)]
pub(crate) struct SchemaMissing {
    pub(crate) table: String,
}

/// The schema in the database was written by a newer release.
#[derive(Debug, thiserror::Error)]
#[error(
    "table {table} has schema version {found}, newer than the {supported} this release \
     understands; upgrade session-store-postgres"
)]
pub(crate) struct SchemaTooNew {
    pub(crate) table: String,
    pub(crate) found: i64,
    pub(crate) supported: i64,
}

/// The schema in the database was written by an older release and not
/// migrated yet.
#[derive(Debug, thiserror::Error)]
#[error(
    "table {table} has schema version {found}, older than the {supported} this release needs: \
     migrate it with `PostgresOptions::migrate(true)` or `session_store_postgres::migrate` \
     (stop the servers of the older release first: rows they write after the migration carry \
     no valid digest and load as unreadable)"
)]
pub(crate) struct SchemaTooOld {
    pub(crate) table: String,
    pub(crate) found: i64,
    pub(crate) supported: i64,
}

/// A row that does not hold a valid record, for errors that cannot name a
/// storage key (the key column itself is unreadable).
#[derive(Debug, thiserror::Error)]
#[error("a row of table {table} holds an unreadable key ({len} bytes, expected 32)")]
pub(crate) struct BadKey {
    pub(crate) table: String,
    pub(crate) len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_sqlstates_are_retryable_and_permanent_ones_are_not() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "08006", "08001", "53300",
        ] {
            assert!(retryable_sqlstate(code), "{code}");
        }
        // unique_violation, syntax_error, undefined_table, invalid_text_representation
        for code in ["23505", "42601", "42P01", "22P02"] {
            assert!(!retryable_sqlstate(code), "{code}");
        }
        assert!(is_retryable(&sqlx::Error::PoolTimedOut));
        assert!(!is_retryable(&sqlx::Error::PoolClosed));
        assert!(!is_retryable(&sqlx::Error::RowNotFound));
    }
}
