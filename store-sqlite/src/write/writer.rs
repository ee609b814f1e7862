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
use std::time::Duration;

use session_core::{Error, StorageKey};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use super::gate::Gate;
use super::grouped::{self, Mode};
use super::single;
use super::types::{Job, Reply, SaveOutcome, Touch, Write};
use crate::codec::Row;
use crate::deadline::{Claim, TimedOut};
use crate::error::{is_busy, is_retryable, map_sqlx};
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
    /// The operation timeout, for the errors of writes that ran out of it.
    timeout: Duration,
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

/// The database was locked (by another connection or process) for this
/// write's batch; shared by the writes of the batch that had not run.
#[derive(Debug, thiserror::Error)]
#[error("the database stayed locked by another connection: nothing of it was applied")]
pub(crate) struct Locked(#[source] Arc<sqlx::Error>);

/// What the writer connection's hooks report.
struct Hooks {
    /// Set when SQLite rolls back a whole transaction on the connection,
    /// including the automatic rollbacks some errors cause; a statement
    /// that fails alone does not set it.
    rolled_back: Arc<AtomicBool>,
    /// The commit gate (see [`super::gate`]).
    gate: Gate,
}

/// Each method queues one write issued at `now` (milliseconds since the
/// epoch) and waits until it is committed (or failed), answering that
/// kind of write's type, or until `deadline`.
impl Writer {
    /// Installs the commit gate and the rollback watch on `conn` and
    /// starts the writer task on it.
    ///
    /// # Errors
    ///
    /// When the connection's hooks cannot be installed (its driver
    /// thread is gone).
    pub(crate) async fn start(
        mut conn: SqliteConnection,
        sql: Statements,
        timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let hooks = install_hooks(&mut conn).await?;
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, sql, hooks, timeout, receiver));
        Ok(Self { queue, timeout })
    }

    /// Inserts `row`, or replaces an expired row of its key; whether it
    /// wrote (false: a live row holds the key).
    pub(crate) async fn create(
        &self,
        row: Row,
        now: i64,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Create(row, reply), now, deadline, answer)
            .await
    }

    /// Compare-and-set of `row` on its version.
    pub(crate) async fn save(
        &self,
        row: Row,
        now: i64,
        deadline: Instant,
    ) -> Result<SaveOutcome, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Save(row, reply), now, deadline, answer)
            .await
    }

    /// Moves the expiry of a live row; whether one moved.
    pub(crate) async fn touch(
        &self,
        touch: Touch,
        now: i64,
        deadline: Instant,
    ) -> Result<bool, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Touch(touch, reply), now, deadline, answer)
            .await
    }

    /// Removes the row of `key`, live or not; its `expires_at` if there
    /// was one.
    pub(crate) async fn delete(
        &self,
        key: StorageKey,
        now: i64,
        deadline: Instant,
    ) -> Result<Option<i64>, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Delete(key, reply), now, deadline, answer)
            .await
    }

    /// Removes `user`'s rows, live or not; the `expires_at` of each.
    pub(crate) async fn delete_by_user(
        &self,
        user: String,
        now: i64,
        deadline: Instant,
    ) -> Result<Vec<i64>, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::DeleteByUser(user, reply), now, deadline, answer)
            .await
    }

    /// Removes up to `limit` rows expired at `now`; how many went.
    pub(crate) async fn sweep(
        &self,
        limit: i64,
        now: i64,
        deadline: Instant,
    ) -> Result<u64, Error> {
        let (reply, answer) = Reply::channel();
        self.send(Write::Sweep(limit, reply), now, deadline, answer)
            .await
    }

    async fn send<T>(
        &self,
        write: Write,
        now: i64,
        deadline: Instant,
        answer: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        let operation = write.operation();
        let claim = Arc::new(Claim::new(deadline));
        let job = Job {
            write,
            now,
            claim: Arc::clone(&claim),
        };
        let waited = timeout_at(deadline, async {
            self.queue
                .send(job)
                .await
                .map_err(|_| Error::backend(crate::NAME, operation, false, WriterGone))?;
            answer
                .await
                .map_err(|_| Error::backend(crate::NAME, operation, false, WriterGone))?
        })
        .await;
        match waited {
            Ok(result) => result,
            // Unless its commit had begun, the write is never committed now.
            Err(_) => Err(timed_out(operation, self.timeout, claim.give_up())),
        }
    }
}

/// The error of a write that ran out of its operation timeout.
fn timed_out(operation: &'static str, after: Duration, committing: bool) -> Error {
    Error::backend(
        crate::NAME,
        operation,
        true,
        TimedOut::new(after, committing),
    )
}

async fn run(
    mut conn: SqliteConnection,
    sql: Statements,
    hooks: Hooks,
    timeout: Duration,
    mut receiver: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&mut conn, &sql, &hooks, timeout, &mut batch).await;
    }
    // Every handle is gone: close the connection cleanly.
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing the SQLite writer connection failed");
    }
}

/// Installs the rollback watch and the commit gate on `conn`.
async fn install_hooks(conn: &mut SqliteConnection) -> Result<Hooks, sqlx::Error> {
    let rolled_back = Arc::new(AtomicBool::new(false));
    let gate = Gate::default();
    let mut handle = conn.lock_handle().await?;
    let flag = Arc::clone(&rolled_back);
    handle.set_rollback_hook(move || flag.store(true, Ordering::Release));
    let hook_gate = gate.clone();
    handle.set_commit_hook(move || hook_gate.on_commit());
    Ok(Hooks { rolled_back, gate })
}

/// Runs `jobs` as one batch on `conn`, as the writer task would, and
/// answers each: for tests that need a batch of known content.
#[cfg(test)]
pub(crate) async fn run_batch(
    conn: &mut SqliteConnection,
    sql: &Statements,
    mut jobs: Vec<Job>,
) -> Result<(), sqlx::Error> {
    let hooks = install_hooks(conn).await?;
    let timeout = crate::deadline::DEFAULT_OPERATION_TIMEOUT;
    commit_batch(conn, sql, &hooks, timeout, &mut jobs).await;
    Ok(())
}

/// Runs the batch, and answers each write: a write whose caller gave up
/// before its batch's first commit is dropped (answered as timed out,
/// though nobody listens), and when a caller gives up just before that
/// commit, the gate refuses it and the batch runs again without it.
async fn commit_batch(
    conn: &mut SqliteConnection,
    sql: &Statements,
    hooks: &Hooks,
    timeout: Duration,
    batch: &mut Vec<Job>,
) {
    loop {
        let (wanted, abandoned): (Vec<Job>, Vec<Job>) =
            batch.drain(..).partition(|job| job.claim.is_wanted());
        for mut job in abandoned {
            job.write
                .fail(timed_out(job.write.operation(), timeout, false));
            job.write.answer();
        }
        *batch = wanted;
        if batch.is_empty() {
            return;
        }
        hooks
            .gate
            .arm(batch.iter().map(|job| Arc::clone(&job.claim)));
        run_once(conn, sql, &hooks.rolled_back, batch).await;
        if !hooks.gate.refused() {
            break;
        }
        // Nothing of the batch was committed: run it again, without the
        // writes whose callers gave up.
        for job in batch.iter_mut() {
            job.write.reset();
        }
    }
    hooks.gate.disarm();
    for job in batch.drain(..) {
        job.write.answer();
    }
}

/// Runs the batch once, settling each write's reply.
async fn run_once(
    conn: &mut SqliteConnection,
    sql: &Statements,
    rolled_back: &AtomicBool,
    batch: &mut [Job],
) {
    // A lone write needs no explicit transaction: its statements are the
    // only writes on this connection, and each commits as it runs. That
    // saves two statements when there is no concurrency to batch.
    if batch.len() <= 1 {
        one_by_one(conn, sql, batch).await;
    } else if !grouped::needs_transaction(batch) {
        // One multi-row statement: it commits atomically by itself. A
        // statement that found the database locked ends the run; the
        // writes it had not settled fail with that.
        if let Err(error) = grouped::run(conn, sql, Mode::Autocommit, batch).await {
            fail_unsettled(batch, error);
        }
    } else {
        match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            Ok(_) => {
                rolled_back.store(false, Ordering::Release);
                in_transaction(conn, sql, rolled_back, batch).await;
            }
            // Another connection holds the write lock: every write would
            // wait for it again, one by one.
            Err(error) if is_busy(&error) => fail_unsettled(batch, error),
            Err(error) => {
                // Still serve every write, each in its own implicit transaction.
                tracing::warn!(%error, "BEGIN IMMEDIATE failed; running the batch unbatched");
                one_by_one(conn, sql, batch).await;
            }
        }
    }
}

/// Runs each write with its own statements; once one finds the database
/// locked, the rest fail with that rather than wait for it again.
async fn one_by_one(conn: &mut SqliteConnection, sql: &Statements, batch: &mut [Job]) {
    for i in 0..batch.len() {
        let job = &mut batch[i];
        if let Err(error) = single::apply(conn, sql, &mut job.write, job.now).await {
            if is_busy(&error) {
                fail_unsettled(&mut batch[i..], error);
                return;
            }
            let operation = job.write.operation();
            job.write.fail(map_sqlx(operation, error));
        }
    }
}

/// Fails every write of `batch` not settled yet with `error`, which kept
/// it from running (the statements that settled the others committed).
fn fail_unsettled(batch: &mut [Job], error: sqlx::Error) {
    let retryable = is_retryable(&error);
    let error = Arc::new(error);
    for job in batch.iter_mut().filter(|job| !job.write.is_settled()) {
        let operation = job.write.operation();
        let failed = if is_busy(&error) {
            Error::backend(
                crate::NAME,
                operation,
                retryable,
                Locked(Arc::clone(&error)),
            )
        } else {
            Error::backend(
                crate::NAME,
                operation,
                retryable,
                BatchRolledBack(Arc::clone(&error)),
            )
        };
        job.write.fail(failed);
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
                    job.write
                        .fail(Error::backend(crate::NAME, operation, true, failed));
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
        job.write
            .fail(Error::backend(crate::NAME, operation, retryable, failed));
    }
}

/// Ends whatever is left of the transaction, so the next batch starts
/// clean (a transaction SQLite already rolled back makes this a no-op
/// error, ignored).
async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
}
