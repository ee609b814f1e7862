//! The single writer: every write of a store goes through one connection
//! that commits many waiting writes in one transaction (group commit), with
//! few statements.
//!
//! SQLite has one write lock per database. With writes spread over a pool,
//! concurrent writers collide on it and wait in SQLite's busy handler,
//! which sleeps (1, 2, 5, 10 … ms) instead of queueing, so throughput
//! falls as concurrency rises. Here writers queue in a channel instead;
//! the writer takes everything that is waiting (up to [`MAX_BATCH`]), runs
//! it inside one `BEGIN IMMEDIATE … COMMIT`, and only then answers each
//! caller: a write is acknowledged only once it is committed.
//!
//! Inside the transaction the batch does not cost a statement per write:
//! [`crate::grouped`] runs all creates of the batch as one statement, all
//! saves as one, and so on (writes on the same key in order, over several
//! rounds). Each statement is a round trip to the connection's driver
//! thread, which at high concurrency costs far more than SQLite's own work.
//! A lone write runs its own statements, with no explicit transaction.
//!
//! Each write keeps its own result: a failed multi-row statement is undone
//! by SQLite and its writes run again one by one, so a failing write fails
//! only its own call. A failed `COMMIT`, or a statement error that rolled
//! back (or may have rolled back) the whole transaction, fails every call
//! of the batch, and nothing of the batch is kept. Reads never wait for the
//! writer: in WAL mode they run on the pool beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::Error;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{is_retryable, map_sqlx};
use crate::grouped::{self, Job, Mode};
use crate::schema::Statements;
use crate::single;

/// The most writes the writer takes from its queue at once (one batch).
pub(crate) const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// The columns of a record, ready to bind.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) key: Vec<u8>,
    pub(crate) user: Option<String>,
    pub(crate) data: String,
    pub(crate) version: i64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

/// One write, with everything it needs.
#[derive(Debug)]
pub(crate) enum Write {
    /// Insert, or replace a row that is no longer live.
    Create(Row),
    /// Compare-and-set on `row.version`.
    Save(Row),
    /// Move the expiry of a live row.
    Touch { key: Vec<u8>, expires_at: i64 },
    /// Remove a row; answers the expiries of what was removed.
    Delete { key: Vec<u8> },
    /// Remove a user's rows; answers their expiries.
    DeleteByUser { user: String },
    /// Remove up to `limit` expired rows.
    Sweep { limit: i64 },
}

/// What a write found.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Rows changed (create, touch, sweep).
    Changed(u64),
    /// The outcome of a save.
    Save(SaveOutcome),
    /// `expires_at` of each removed row (delete, delete by user).
    Removed(Vec<i64>),
}

/// The outcome of a compare-and-set save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveOutcome {
    /// Written.
    Saved,
    /// A live row holds another version.
    Conflict,
    /// No live row.
    NotFound,
    /// A live row whose data is not valid JSON: left as it is.
    Unreadable,
}

struct Pending {
    operation: &'static str,
    write: Write,
    now: i64,
    reply: oneshot::Sender<Result<Answer, Error>>,
}

/// The handle writes are sent through. The writer task ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Pending>,
}

/// The writer task has ended (its runtime shut down, or it could not start).
#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer task is gone (was the store's tokio runtime shut down?)")]
pub(crate) struct WriterGone;

/// A `COMMIT` that failed, shared by every write of the batch.
#[derive(Debug, thiserror::Error)]
#[error("the transaction holding this write failed to commit")]
pub(crate) struct CommitFailed(#[source] Arc<sqlx::Error>);

/// A statement error that rolled back (or may have rolled back) the
/// transaction holding this write, shared by every write of the batch.
#[derive(Debug, thiserror::Error)]
#[error("the transaction holding this write was rolled back by an error in its batch")]
pub(crate) struct BatchRolledBack(#[source] Arc<sqlx::Error>);

impl Writer {
    /// Starts the writer task on `conn`.
    pub(crate) fn spawn(conn: SqliteConnection, sql: Statements) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, sql, receiver));
        Self { queue }
    }

    /// Queues `write` and waits until it is committed (or failed).
    pub(crate) async fn write(
        &self,
        operation: &'static str,
        write: Write,
        now: i64,
    ) -> Result<Answer, Error> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            operation,
            write,
            now,
            reply,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| Error::backend(operation, false, WriterGone))?;
        answer
            .await
            .map_err(|_| Error::backend(operation, false, WriterGone))?
    }
}

async fn run(mut conn: SqliteConnection, sql: Statements, mut receiver: mpsc::Receiver<Pending>) {
    // Set when SQLite rolls back a whole transaction on this connection,
    // including the automatic rollbacks some errors cause; a statement
    // that fails alone does not set it.
    let rolled_back = watch_rollbacks(&mut conn).await;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&mut conn, &sql, &rolled_back, &mut batch).await;
    }
    // Every handle is gone: close the connection cleanly.
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing the SQLite writer connection failed");
    }
}

/// A flag that the connection's rollback hook sets whenever SQLite rolls
/// back a whole transaction on `conn`, including the automatic rollbacks
/// some errors cause; a statement that fails alone does not set it.
async fn watch_rollbacks(conn: &mut SqliteConnection) -> Arc<AtomicBool> {
    let rolled_back = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&rolled_back);
    match conn.lock_handle().await {
        Ok(mut handle) => handle.set_rollback_hook(move || flag.store(true, Ordering::Release)),
        // The error codes that may roll back a transaction still count.
        Err(error) => tracing::warn!(%error, "could not watch the SQLite writer's rollbacks"),
    }
    rolled_back
}

/// Runs `writes` (operation, write, now) as one batch on `conn`, as the
/// writer task would, and returns their results: for tests that need a
/// batch of known content.
#[cfg(test)]
pub(crate) async fn run_batch(
    conn: &mut SqliteConnection,
    sql: &Statements,
    writes: Vec<(&'static str, Write, i64)>,
) -> Vec<Result<Answer, Error>> {
    let rolled_back = watch_rollbacks(conn).await;
    let mut answers = Vec::new();
    let mut batch = Vec::new();
    for (operation, write, now) in writes {
        let (reply, answer) = oneshot::channel();
        batch.push(Pending {
            operation,
            write,
            now,
            reply,
        });
        answers.push(answer);
    }
    commit_batch(conn, sql, &rolled_back, &mut batch).await;
    let mut results = Vec::new();
    for answer in answers {
        results.push(
            answer
                .await
                .unwrap_or_else(|_| Err(Error::backend("test", false, WriterGone))),
        );
    }
    results
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    sql: &Statements,
    rolled_back: &AtomicBool,
    batch: &mut Vec<Pending>,
) {
    // A lone write needs no explicit transaction: its statements are the
    // only writes on this connection, and each commits as it runs. That
    // saves two statements when there is no concurrency to batch.
    let results = if batch.len() > 1 {
        let jobs: Vec<Job<'_>> = batch
            .iter()
            .map(|pending| Job {
                operation: pending.operation,
                write: &pending.write,
                now: pending.now,
            })
            .collect();
        if !grouped::needs_transaction(&jobs) {
            // One multi-row statement: it commits atomically by itself.
            match grouped::run(conn, sql, Mode::Autocommit, &jobs).await {
                Ok(results) => results,
                // Only a transaction can be voided; cannot happen.
                Err(error) => rolled_back_batch(batch, error),
            }
        } else {
            match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
                Ok(_) => {
                    rolled_back.store(false, Ordering::Release);
                    in_transaction(conn, sql, rolled_back, batch, &jobs).await
                }
                Err(error) => {
                    // Still serve every write, each in its own implicit transaction.
                    tracing::warn!(%error, "BEGIN IMMEDIATE failed; running the batch unbatched");
                    one_by_one(conn, sql, batch).await
                }
            }
        }
    } else {
        one_by_one(conn, sql, batch).await
    };
    for (pending, result) in batch.drain(..).zip(results) {
        // The caller may have given up waiting; nothing to do then.
        let _ = pending.reply.send(result);
    }
}

/// Runs each write with its own statements.
async fn one_by_one(
    conn: &mut SqliteConnection,
    sql: &Statements,
    batch: &[Pending],
) -> Vec<Result<Answer, Error>> {
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        let result = single::apply(conn, sql, &pending.write, pending.now)
            .await
            .map_err(|e| map_sqlx(pending.operation, e));
        results.push(result);
    }
    results
}

/// Runs the batch as grouped statements inside the open transaction and
/// commits it, or rolls it back and fails every write.
async fn in_transaction(
    conn: &mut SqliteConnection,
    sql: &Statements,
    rolled_back: &AtomicBool,
    batch: &[Pending],
    jobs: &[Job<'_>],
) -> Vec<Result<Answer, Error>> {
    let error = match grouped::run(conn, sql, Mode::Transaction(rolled_back), jobs).await {
        Ok(results) => match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => return results,
            Err(error) => {
                let error = Arc::new(error);
                rollback(conn).await;
                return batch
                    .iter()
                    .map(|p| {
                        Err(Error::backend(
                            p.operation,
                            true,
                            CommitFailed(Arc::clone(&error)),
                        ))
                    })
                    .collect();
            }
        },
        Err(error) => error,
    };
    rollback(conn).await;
    rolled_back_batch(batch, error)
}

/// Every write of `batch` failed with `error`, which rolled back the batch.
fn rolled_back_batch(batch: &[Pending], error: sqlx::Error) -> Vec<Result<Answer, Error>> {
    let retryable = is_retryable(&error);
    let error = Arc::new(error);
    batch
        .iter()
        .map(|p| {
            Err(Error::backend(
                p.operation,
                retryable,
                BatchRolledBack(Arc::clone(&error)),
            ))
        })
        .collect()
}

/// Ends whatever is left of the transaction, so the next batch starts
/// clean (a transaction SQLite already rolled back makes this a no-op
/// error, ignored).
async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
}
