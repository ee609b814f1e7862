//! A PostgreSQL [`SessionStore`](session_core::SessionStore) on
//! [`sqlx`], for apps that run on more than one server and keep their
//! sessions in the database they already have.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_store_postgres::{PostgresOptions, SweeperExt};
//!
//! # async fn example() -> Result<(), session_core::Error> {
//! let store = PostgresOptions::new("postgres://app@localhost/app")
//!     .migrate(true) // install the table if it is missing
//!     .connect()
//!     .await?;
//! let sweeper = store.spawn_sweeper(Duration::from_secs(300))?;
//! // hand `store` to a `session_core::SessionManager` ...
//! # drop(sweeper);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! One table (default `sessions`, any `schema.table` by [`TableName`]):
//!
//! | column | type | |
//! |---|---|---|
//! | `key` | `bytea` primary key | the 32-byte [`StorageKey`](session_core::StorageKey), never the cookie's id |
//! | `user` | `bytea`, nullable | the user id's UTF-8 bytes (`text` cannot hold NUL, which a user id may contain; `convert_from("user", 'UTF8')` reads it), with a partial hash index (any length) for "active sessions" |
//! | `data` | `json` | the exact text serde_json wrote, so every value loads back equal |
//! | `version` | `bigint` | the compare-and-set version |
//! | `created_at`, `expires_at` | `bigint` | milliseconds since the Unix epoch; `expires_at` is indexed for the sweeper |
//! | `digest` | `bigint` | a 64-bit hash of everything above but `expires_at`, as this store wrote it (see "Damage") |
//!
//! A companion table `<table>_meta` records the schema version (2), so a
//! later release can migrate. Nothing is created at connect unless asked:
//! [`PostgresOptions::migrate`] or [`migrate`] installs the table (safe to
//! run from several servers at once), or upgrades one of schema version 1;
//! connecting checks its version and refuses an older or a newer one.
//!
//! # Semantics
//!
//! Each operation is one statement, so each is atomic, and every store on
//! the database (any number of app servers) sees the same sessions:
//!
//! - `create` is one `INSERT … ON CONFLICT DO UPDATE … WHERE <expired>`: a
//!   live row is never overwritten, an expired one is replaced.
//! - `save` is one compare-and-set `UPDATE … WHERE version = $n AND
//!   <live> AND <digest matches>` that also reads, in the same statement,
//!   what the key held, so a failed save tells
//!   [`Conflict`](session_core::Error::Conflict) from
//!   [`NotFound`](session_core::Error::NotFound) (a save never resurrects a
//!   deleted session) from a row it cannot read
//!   ([`Decode`](session_core::Error::Decode)), which it never overwrites.
//!   When the row changed while the save waited for its lock, the save runs
//!   again (at most 8 times) to learn which; a row that changed every time
//!   is [`GaveUp`](session_core::Error::GaveUp), retryable.
//! - Expiry is a comparison with the app server's clock: an expired row is
//!   absent for every method at once, and removed by
//!   the sweeper ([`SweeperExt::spawn_sweeper`]) in short batches that skip rows
//!   other transactions hold.
//! - Errors carry [`is_retryable`](session_core::Error::is_retryable):
//!   lost connections, a server shutting down or starting, serialization
//!   failures and deadlocks, timeouts are retryable; constraint and syntax
//!   errors are not.
//!
//! # Damage
//!
//! "Unreadable" means the same to every method: not what this store
//! wrote. Each create and save writes, beside the row, a 64-bit hash of
//! its key, user, version, `created_at` and the data's exact text (not the
//! expiry, so `touch` keeps it valid), computed by the server in the same
//! statement. Every statement that reads a record also says whether the
//! row matches it, and a save's compare-and-set requires that it does. A
//! row edited behind the store's back, wherever (a number beyond `f64` or
//! nesting deeper than serde reads inside a JSON object, a lone surrogate,
//! a user that is not UTF-8, a version changed by hand, data that is not
//! an object), is [`Decode`](session_core::Error::Decode) naming its key
//! for loads and saves alike, stays in place, is reported by
//! `list_by_user` and removed by `delete` and `delete_by_user`. The hash
//! is PostgreSQL's own (that of hash indexes, stable across releases); its
//! values differ between little- and big-endian servers, so a dump
//! restored onto a server of the other kind loads every session as
//! unreadable. A digest catches damage, not forgery: whoever rewrites the
//! digest to match is trusted.
//!
//! The upgrade from schema version 1 ([`migrate`]) fills the digest of
//! every row that decodes into a record; one that does not stays
//! unreadable. Stop the servers of the older release before it: a row one
//! of them writes afterwards carries no valid digest and loads as
//! `Decode`.
//!
//! # Timeouts
//!
//! Every call is bounded by the operation timeout
//! ([`DEFAULT_OPERATION_TIMEOUT`], 3 s, as the Redis store's;
//! [`PostgresOptions::operation_timeout`]): waiting for a pooled
//! connection, for its batch and for the server's answer together, each
//! statement of [`delete_expired`](session_core::SessionStore::delete_expired)
//! on its own. A call that runs out of it fails with a retryable
//! [`Error::Backend`](session_core::Error::Backend) naming the operation,
//! and what the caller can conclude is as definite as the server allows:
//!
//! - The store's connections run with a server-side `statement_timeout`
//!   of 45% of the operation timeout ([`statement_timeout`]). A statement
//!   stuck on a lock (`LOCK TABLE`, `VACUUM FULL`, a long transaction on
//!   the same row) is cancelled by the server, which rolls it back: the
//!   error says that nothing of it was applied. A statement is sent only
//!   within the first 45% of its call's time; an operation that waited
//!   longer for a connection or for its batch is not sent at all (a
//!   [`TimedOut`] that applied nothing). So the server's answer to every
//!   statement, a cancellation included, is due before the caller's
//!   deadline, with 10% of the timeout to spare.
//! - When the server does not answer at all (stopped, or the network
//!   gone), the call ends at its deadline with a [`TimedOut`], which says
//!   whether its statement had been sent: an operation whose caller gave
//!   up before it was sent is never sent afterwards, so
//!   [`TimedOut::may_have_applied`] is `false`; `true` means the statement
//!   reached the connection, and the server may have applied it or may
//!   still (a retried save then answers `Conflict` if it did). A
//!   connection whose statement ran out of time is closed, not returned to
//!   the pool.
//!
//! Each operation stays all or nothing: one statement, committed or
//! rolled back whole. A store made by [`PostgresStore::from_pool`] bounds
//! its calls the same way on the client's side, but cannot set the
//! server-side timeout on a pool it did not build: set `statement_timeout`
//! on it yourself (for example in the pool's `after_connect`) to
//! [`statement_timeout`] of [`DEFAULT_OPERATION_TIMEOUT`].
//!
//! # Speed
//!
//! Under load, round trips and commits are what an operation costs.
//! Operations that arrive while others of their kind are in flight are
//! sent together, without any timer: loads as one `SELECT … WHERE key =
//! ANY($1)`, creates, saves, touches and deletes each as one statement
//! over `unnest`ed arrays, committed once. A lone operation runs its
//! one-row statement at once. Each caller keeps its own answer and its
//! own error.
//!
//! # Testing
//!
//! With the `testing` feature, the `testing` module finds a server for your tests
//! (`DATABASE_URL`, else a throwaway cluster from `initdb` and `pg_ctl`,
//! else a container with the `docker` feature) and gives each test its own
//! schema.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The crate's `README.md`, whose code blocks are compiled as doctests so
/// they cannot rot.
/// This store's name: its [`SessionStore::name`](session_core::SessionStore::name) and the
/// `store` of every [`Error::Backend`](session_core::Error::Backend) it returns.
pub(crate) const NAME: &str = "postgres";

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod batch;
mod codec;
mod deadline;
mod digest;
mod error;
mod options;
mod schema;
mod shared;
mod store;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod upgrade;

pub use deadline::{DEFAULT_OPERATION_TIMEOUT, TimedOut, statement_timeout};
pub use options::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SWEEP_BATCH, IDLE_PING_AFTER,
    PostgresOptions,
};
pub use schema::migrate;
pub use session_core::sweeper::{SweepStats, SweeperExt, SweeperHandle};
/// The driver this store is built on, re-exported so that a pool you
/// build for [`PostgresStore::from_pool`] is of the same version.
pub use sqlx;
pub use store::PostgresStore;
pub use table::{DEFAULT_TABLE_NAME, InvalidTableName, MAX_NAME_LEN, TableName};
