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
//! [`super::grouped`] runs all creates of the batch as one statement, all
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

use session_core::{Error, StorageKey};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::grouped::{self, Mode};
use super::single;
use super::types::{Job, Reply, SaveOutcome, Touch, Write};
use crate::codec::Row;
use crate::error::{is_retryable, map_sqlx};
use crate::schema::Statements;

/// The most writes the writer takes from its queue at once (one batch).
pub(crate) const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// The handle writes are sent through. The writer task ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
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

/// Each method queues one write issued at `now` (milliseconds since the
/// epoch) and waits until it is committed (or failed), answering that
/// kind of write's type.
impl Writer {
    /// Starts the writer task on `conn`.
    pub(crate) fn spawn(conn: SqliteConnection, sql: Statements) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, sql, receiver));
        Self { queue }
    }

    /// Inserts `row`, or replaces an expired row of its key; whether it
    /// wrote (false: a live row holds the key).
    pub(crate) async fn create(&self, row: Row, now: i64) -> Result<bool, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Create(row, reply), now, answer).await
    }

    /// Compare-and-set of `row` on its version.
    pub(crate) async fn save(&self, row: Row, now: i64) -> Result<SaveOutcome, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Save(row, reply), now, answer).await
    }

    /// Moves the expiry of a live row; whether one moved.
    pub(crate) async fn touch(&self, touch: Touch, now: i64) -> Result<bool, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Touch(touch, reply), now, answer).await
    }

    /// Removes the row of `key`, live or not; its `expires_at` if there
    /// was one.
    pub(crate) async fn delete(&self, key: StorageKey, now: i64) -> Result<Option<i64>, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Delete(key, reply), now, answer).await
    }

    /// Removes `user`'s rows, live or not; the `expires_at` of each.
    pub(crate) async fn delete_by_user(&self, user: String, now: i64) -> Result<Vec<i64>, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::DeleteByUser(user, reply), now, answer)
            .await
    }

    /// Removes up to `limit` rows expired at `now`; how many went.
    pub(crate) async fn sweep(&self, limit: i64, now: i64) -> Result<u64, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Sweep(limit, reply), now, answer).await
    }

    async fn send<T>(
        &self,
        write: Write,
        now: i64,
        answer: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        let operation = write.operation();
        self.queue
            .send(Job { write, now })
            .await
            .map_err(|_| Error::backend(operation, false, WriterGone))?;
        answer
            .await
            .map_err(|_| Error::backend(operation, false, WriterGone))?
    }
}

async fn run(mut conn: SqliteConnection, sql: Statements, mut receiver: mpsc::Receiver<Job>) {
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

/// Runs `jobs` as one batch on `conn`, as the writer task would, and
/// answers each: for tests that need a batch of known content.
#[cfg(test)]
pub(crate) async fn run_batch(conn: &mut SqliteConnection, sql: &Statements, mut jobs: Vec<Job>) {
    let rolled_back = watch_rollbacks(conn).await;
    commit_batch(conn, sql, &rolled_back, &mut jobs).await;
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    sql: &Statements,
    rolled_back: &AtomicBool,
    batch: &mut Vec<Job>,
) {
    // A lone write needs no explicit transaction: its statements are the
    // only writes on this connection, and each commits as it runs. That
    // saves two statements when there is no concurrency to batch.
    if batch.len() <= 1 {
        one_by_one(conn, sql, batch).await;
    } else if !grouped::needs_transaction(batch) {
        // One multi-row statement: it commits atomically by itself.
        if let Err(error) = grouped::run(conn, sql, Mode::Autocommit, batch).await {
            // Only a transaction can be voided; cannot happen.
            rolled_back_batch(batch, error);
        }
    } else {
        match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            Ok(_) => {
                rolled_back.store(false, Ordering::Release);
                in_transaction(conn, sql, rolled_back, batch).await;
            }
            Err(error) => {
                // Still serve every write, each in its own implicit transaction.
                tracing::warn!(%error, "BEGIN IMMEDIATE failed; running the batch unbatched");
                one_by_one(conn, sql, batch).await;
            }
        }
    }
    for job in batch.drain(..) {
        job.write.answer();
    }
}

/// Runs each write with its own statements.
async fn one_by_one(conn: &mut SqliteConnection, sql: &Statements, batch: &mut [Job]) {
    for job in batch {
        if let Err(error) = single::apply(conn, sql, &mut job.write, job.now).await {
            let operation = job.write.operation();
            job.write.fail(map_sqlx(operation, error));
        }
    }
}

/// Runs the batch as grouped statements inside the open transaction and
/// commits it, or rolls it back and fails every write.
async fn in_transaction(
    conn: &mut SqliteConnection,
    sql: &Statements,
    rolled_back: &AtomicBool,
    batch: &mut [Job],
) {
    match grouped::run(conn, sql, Mode::Transaction(rolled_back), batch).await {
        Ok(()) => {
            if let Err(error) = sqlx::query("COMMIT").execute(&mut *conn).await {
                rollback(conn).await;
                // Whatever made the commit fail, trying again may succeed.
                let error = Arc::new(error);
                for job in batch {
                    let operation = job.write.operation();
                    let failed = CommitFailed(Arc::clone(&error));
                    job.write.fail(Error::backend(operation, true, failed));
                }
            }
        }
        Err(error) => {
            rollback(conn).await;
            rolled_back_batch(batch, error);
        }
    }
}

/// Every write of `batch` failed with `error`, which rolled back the batch.
fn rolled_back_batch(batch: &mut [Job], error: sqlx::Error) {
    let retryable = is_retryable(&error);
    let error = Arc::new(error);
    for job in batch {
        let operation = job.write.operation();
        let failed = BatchRolledBack(Arc::clone(&error));
        job.write.fail(Error::backend(operation, retryable, failed));
    }
}

/// Ends whatever is left of the transaction, so the next batch starts
/// clean (a transaction SQLite already rolled back makes this a no-op
/// error, ignored).
async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
}
