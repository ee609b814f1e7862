//! A [`SessionStore`](session_core::SessionStore) in SQLite, on `sqlx`:
//! sessions that survive a restart with no server to run.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_store_sqlite::SqliteStore;
//!
//! # async fn demo() -> Result<(), session_core::Error> {
//! let store = SqliteStore::open("sessions.db").await?;
//! let sweeper = store.spawn_sweeper(Duration::from_secs(300))?;
//! // hand `store` (or an `Arc<dyn SessionStore>`) to the session manager
//! # drop(sweeper);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! One table (default `sessions`, configurable with [`TableName`]):
//! `key BLOB PRIMARY KEY` (the 32-byte storage key), `user TEXT`, `data
//! TEXT` (the session map as JSON), `version INTEGER`, and `created_at`,
//! `expires_at` as `INTEGER` milliseconds since the epoch, `WITHOUT ROWID`.
//! An index on `expires_at` serves the sweeper; a partial index on `user`
//! (only bound sessions) serves the per-user methods. A companion table
//! `<table>_meta` records the schema version so a later release can
//! migrate. Everything is created on open, idempotently.
//!
//! # Semantics
//!
//! A row is live while `now < expires_at`; every method filters on that,
//! so an expired row is absent at once, and
//! [`delete_expired`](session_core::SessionStore::delete_expired) (or the
//! [sweeper](SqliteStore::spawn_sweeper)) removes it physically in short
//! batches. `create` is an upsert that only replaces an expired row;
//! `save` is `UPDATE ... WHERE key = ? AND version = ? AND expires_at >
//! now` (leaving the `user` column, and so its index, alone when the user
//! is unchanged), followed only when nothing changed by a read that tells
//! `Conflict` from `NotFound` in the same transaction.
//!
//! # Writes: one writer, group commit
//!
//! SQLite has a single write lock. Writers spread over a pool collide on
//! it and wait in SQLite's busy handler, which sleeps rather than queues,
//! so throughput falls as concurrency rises. This store instead sends every
//! write (create, save, touch, delete, delete by user, sweep) to one writer
//! task with its own connection; the writer takes everything that is
//! waiting (up to 256 writes), runs it in one `BEGIN IMMEDIATE … COMMIT`,
//! and answers each caller only after the commit: no write is acknowledged
//! before it is committed. A failed statement fails only its own call; a
//! failed commit fails every call of its batch. Reads (`load`,
//! `list_by_user`) run on the pool beside the writer (WAL lets them). The
//! writer task lives on the tokio runtime that opened the store and ends
//! when the last clone of the store is dropped.
//!
//! # Durability
//!
//! Files use WAL and, by default, `synchronous = NORMAL`: a crashed or
//! killed process loses no acknowledged write, but a power cut or OS crash
//! may lose the last few commits. [`Synchronous::Full`] syncs every commit.
//! See [`SqliteOptions`] for the busy timeout, pool size and the in-memory
//! mode.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod codec;
mod error;
mod options;
mod schema;
mod store;
mod sweeper;
mod writer;

pub use options::{
    DEFAULT_SWEEP_BATCH, DEFAULT_TABLE_NAME, InvalidTableName, MAX_TABLE_NAME_LEN, SqliteOptions,
    Synchronous, TableName,
};
pub use store::SqliteStore;
pub use sweeper::{SweepStats, SweeperHandle};

/// The `sqlx` this crate is built on, for [`SqliteStore::from_pool`] and
/// [`SqliteStore::pool`].
pub use sqlx;
