//! A [`SessionStore`](session_core::SessionStore) in SQLite, on `sqlx`:
//! sessions that survive a restart with no server to run.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_store_sqlite::{SqliteStore, SweeperExt};
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
//! `expires_at` as `INTEGER` milliseconds since the epoch, and `digest
//! TEXT` (see "Damage"), `WITHOUT ROWID`. An index on `expires_at` serves
//! the sweeper; a partial index on `user` (only bound sessions) serves the
//! per-user methods. A companion table `<table>_meta` records the schema
//! version (2) so a later release can migrate. Everything is created on
//! open, idempotently, and a table of schema version 1 is upgraded then; a
//! newer one is refused.
//!
//! # Semantics
//!
//! A row is live while `now < expires_at`; every method filters on that,
//! so an expired row is absent at once, and
//! [`delete_expired`](session_core::SessionStore::delete_expired) (or the
//! [sweeper](SweeperExt::spawn_sweeper)) removes it physically in short
//! batches. `create` is an upsert that only replaces an expired row;
//! `save` is `UPDATE ... WHERE key = ? AND version = ? AND expires_at >
//! now AND <digest matches>` (leaving the `user` column, and so its
//! index, alone when the user is unchanged), followed only when nothing
//! changed by a read that tells `Conflict` from `NotFound` from a row the
//! store cannot read, on the writer's connection (so no other write of
//! this store comes in between; inside the batch's transaction when the
//! batch has one).
//!
//! # Damage
//!
//! "Unreadable" means the same to every method: not what this store
//! wrote. Each create and save writes, beside the row, a 64-bit hash of
//! its key, version, `created_at`, user and the data's exact text (not
//! the expiry, so `touch` keeps it valid). A load or a listing checks it
//! before decoding. A save checks it in its compare-and-set statement,
//! atomically: SQLite has no hash function, and registering one needs
//! `unsafe` code, so the statement compares the row's fields, spelled out
//! as text, with the digest under a collation the writer's connection
//! registers through sqlx's safe API, which orders a spelled-out row by
//! its digest (a total order, so SQLite's rules for collations hold). A
//! row edited behind the store's back, wherever (a number beyond `f64`
//! inside a JSON object, a value changed by hand, a user that is not
//! UTF-8, a version changed, data that is not JSON), is
//! [`Decode`](session_core::Error::Decode) naming its key for loads and
//! saves alike, stays in place, is reported by `list_by_user` and removed
//! by `delete` and `delete_by_user`. A digest catches damage, not
//! forgery: whoever rewrites the digest to match is trusted. The upgrade
//! from schema version 1 fills the digest of every row that decodes into
//! a record; one that does not stays unreadable. It runs when the store
//! opens, in one transaction (on a big table, a while); close the older
//! release's stores first, or the rows they write afterwards load as
//! `Decode`.
//!
//! # Writes: one writer, group commit, few statements
//!
//! SQLite has a single write lock. Writers spread over a pool collide on
//! it and wait in SQLite's busy handler, which sleeps rather than queues,
//! so throughput falls as concurrency rises. This store instead sends every
//! write (create, save, touch, delete, delete by user, sweep) to one writer
//! task with its own connection; the writer takes everything that is
//! waiting (up to 256 writes) and answers each caller only after the
//! writes are committed: no write is acknowledged before it is committed.
//!
//! With `sqlx`, every statement is a round trip to the connection's own
//! driver thread; at high concurrency those hand-offs, not SQLite, are
//! what costs. So a batch does not run a statement per write: its writes
//! are grouped by kind into multi-row statements whose rows arrive as one
//! JSON parameter (`json_each`), and whose `RETURNING key` says which
//! writes took effect. All waiting creates become one `INSERT … ON
//! CONFLICT DO UPDATE … WHERE <expired>`, all saves one compare-and-set
//! `UPDATE … FROM` (plus, only for rows it did not change, a second form
//! for changed users and one probe telling `Conflict` from `NotFound`),
//! and likewise for touches and deletes. Writes on the same key keep their
//! arrival order (they go to successive statements), and delete-by-user
//! and sweeps split the batch where they arrived, so every write gets the
//! result it would have had if the writes had run one by one (judging
//! expiry by the latest `now` among them, an instant inside every one of
//! their calls). A batch that
//! is one such statement commits by itself; a batch that needs more runs
//! them in one `BEGIN IMMEDIATE … COMMIT`. A lone write runs its own
//! statements, as before batching.
//!
//! A multi-row statement that fails is undone by SQLite, and its writes
//! run again one by one, so a failed write fails only its own call. A
//! failed commit, or an error that rolls back the whole transaction (a
//! full disk, an I/O error), fails every call of its batch, and nothing of
//! that batch is kept. The writer task lives on the tokio runtime that
//! opened the store and ends when the last clone of the store is dropped.
//!
//! # Reads: batched when they crowd
//!
//! Reads run on the pool beside the writer (WAL lets them). A `load` that
//! finds no other load in flight runs its own `SELECT` directly. Loads that
//! arrive while others are in flight queue for a few reader tasks (one per
//! pooled connection), each of which takes everything queued and reads it
//! with one `SELECT … WHERE key IN (…)`; every caller decodes its own row,
//! so a corrupted record fails only the loads of its key. No load ever
//! waits on a timer to fill a batch. `list_by_user` runs directly on the
//! pool.
//!
//! # Timeouts
//!
//! Every call is bounded by the operation timeout
//! ([`DEFAULT_OPERATION_TIMEOUT`], 3 s, as the other stores';
//! [`SqliteOptions::operation_timeout`]): waiting for the writer, for a
//! write lock another process holds, for a pooled connection and for
//! SQLite together (each batch of
//! [`delete_expired`](session_core::SessionStore::delete_expired) on its
//! own). SQLite's busy timeout is the operation timeout too, unless set
//! lower. A call that runs out of time fails with a retryable
//! [`Error::Backend`](session_core::Error::Backend) naming the operation,
//! whose source is a [`TimedOut`]; a write that found the database locked
//! for its whole busy timeout fails the same way, saying so.
//!
//! A write whose caller gave up is never committed: the writer skips it
//! if it is still queued, and the writer connection's commit hook refuses
//! a batch's first commit when a caller of the batch has given up (SQLite
//! then rolls it back, and the writer runs the batch again without that
//! write). So a timed-out write was not applied, and never will be,
//! unless its commit had already begun when its caller gave up
//! ([`TimedOut::may_have_applied`]). A statement that found the database
//! locked ends its batch at once (the batch's other writes fail with the
//! same retryable error) rather than each waiting for the lock again.
//! Reads never wait for a writer in WAL mode. Each write stays all or
//! nothing.
//!
//! # Durability
//!
//! Files use WAL and, by default, `synchronous = NORMAL`: a crashed or
//! killed process loses no acknowledged write, but a power cut or OS crash
//! may lose the last few commits. [`Synchronous::Full`] syncs every commit.
//! See [`SqliteOptions`] for the operation and busy timeouts, pool size and
//! the in-memory mode.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// The crate's `README.md`, whose code blocks are compiled as doctests so
/// they cannot rot.
/// This store's name: its [`SessionStore::name`](session_core::SessionStore::name) and the
/// `store` of every [`Error::Backend`](session_core::Error::Backend) it returns.
pub(crate) const NAME: &str = "sqlite";

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod codec;
mod deadline;
mod digest;
mod error;
mod options;
mod reader;
mod schema;
mod store;
#[cfg(test)]
mod test_db;
mod write;

pub use deadline::{DEFAULT_OPERATION_TIMEOUT, TimedOut};
pub use options::{
    DEFAULT_SWEEP_BATCH, DEFAULT_TABLE_NAME, InvalidTableName, MAX_TABLE_NAME_LEN, SqliteOptions,
    Synchronous, TableName,
};
pub use session_core::sweeper::{SweepStats, SweeperExt, SweeperHandle};
pub use store::SqliteStore;

/// The `sqlx` this crate is built on, for [`SqliteStore::from_pool`] and
/// [`SqliteStore::pool`].
pub use sqlx;
