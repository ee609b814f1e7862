//! The single writer: every write of a store goes through one connection
//! that commits many waiting writes in one transaction (group commit).
//!
//! SQLite has one write lock per database. With writes spread over a pool,
//! concurrent writers collide on it and wait in SQLite's busy handler,
//! which sleeps (1, 2, 5, 10 … ms) instead of queueing, so throughput
//! falls as concurrency rises. Here writers queue in a channel instead;
//! the writer takes everything that is waiting (up to [`MAX_BATCH`]), runs
//! it inside one `BEGIN IMMEDIATE … COMMIT`, and only then answers each
//! caller: a write is acknowledged only once it is committed. Each write
//! keeps its own result (a failed statement fails only its own call);
//! a failed `COMMIT` fails every call of the batch. Reads never wait for
//! the writer: in WAL mode they run on the pool beside it.

use std::sync::Arc;

use session_core::Error;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use crate::error::map_sqlx;
use crate::schema::Statements;

/// The most writes committed in one transaction.
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
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&mut conn, &sql, &mut batch).await;
    }
    // Every handle is gone: close the connection cleanly.
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing the SQLite writer connection failed");
    }
}

async fn commit_batch(conn: &mut SqliteConnection, sql: &Statements, batch: &mut Vec<Pending>) {
    // A lone write needs no explicit transaction: its statements are the
    // only writes on this connection, and each commits as it runs. That
    // saves two statements when there is no concurrency to batch.
    let in_transaction = batch.len() > 1
        && match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            Ok(_) => true,
            Err(error) => {
                // Still serve every write, each in its own implicit transaction.
                tracing::warn!(%error, "BEGIN IMMEDIATE failed; running the batch unbatched");
                false
            }
        };
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch.iter() {
        let result = apply(conn, sql, &pending.write, pending.now)
            .await
            .map_err(|e| map_sqlx(pending.operation, e));
        results.push(result);
    }
    let commit = if in_transaction {
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(error) => {
                // Leave no transaction open for the next batch.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(Arc::new(error))
            }
        }
    } else {
        Ok(())
    };
    for (pending, result) in batch.drain(..).zip(results) {
        let result = match &commit {
            Ok(()) => result,
            Err(error) => Err(Error::backend(
                pending.operation,
                true,
                CommitFailed(Arc::clone(error)),
            )),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = pending.reply.send(result);
    }
}

/// Runs one write's statements on the writer's connection.
async fn apply(
    conn: &mut SqliteConnection,
    sql: &Statements,
    write: &Write,
    now: i64,
) -> Result<Answer, sqlx::Error> {
    Ok(match write {
        Write::Create(row) => {
            let done = bind_row(sqlx::query(sql.create()), row)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Answer::Changed(done.rows_affected())
        }
        Write::Save(row) => Answer::Save(save(conn, sql, row, now).await?),
        Write::Touch { key, expires_at } => {
            let done = sqlx::query(sql.touch())
                .bind(key.as_slice())
                .bind(*expires_at)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Answer::Changed(done.rows_affected())
        }
        Write::Delete { key } => Answer::Removed(
            sqlx::query_scalar(sql.delete())
                .bind(key.as_slice())
                .fetch_all(&mut *conn)
                .await?,
        ),
        Write::DeleteByUser { user } => Answer::Removed(
            sqlx::query_scalar(sql.delete_by_user())
                .bind(user.as_str())
                .fetch_all(&mut *conn)
                .await?,
        ),
        Write::Sweep { limit } => {
            let done = sqlx::query(sql.sweep())
                .bind(now)
                .bind(*limit)
                .execute(&mut *conn)
                .await?;
            Answer::Changed(done.rows_affected())
        }
    })
}

/// Compare-and-set. The common case (same user) leaves the user column,
/// and so its index, untouched; a changed user takes the full update; when
/// neither changes a row, a read inside the same transaction tells a
/// conflict from a missing session, atomically.
async fn save(
    conn: &mut SqliteConnection,
    sql: &Statements,
    row: &Row,
    now: i64,
) -> Result<SaveOutcome, sqlx::Error> {
    for statement in [sql.save_same_user(), sql.save()] {
        let done = bind_save(sqlx::query(statement), row, now)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() > 0 {
            return Ok(SaveOutcome::Saved);
        }
    }
    let live: Option<i64> = sqlx::query_scalar(sql.probe())
        .bind(row.key.as_slice())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match live {
        Some(_) => SaveOutcome::Conflict,
        None => SaveOutcome::NotFound,
    })
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds `?1`…`?6` in [`crate::schema::RECORD_COLUMNS`] order.
fn bind_row<'q>(query: Query<'q>, row: &'q Row) -> Query<'q> {
    query
        .bind(row.key.as_slice())
        .bind(row.user.as_deref())
        .bind(row.data.as_str())
        .bind(row.version)
        .bind(row.created_at)
        .bind(row.expires_at)
}

/// Binds the parameters of both save statements.
fn bind_save<'q>(query: Query<'q>, row: &'q Row, now: i64) -> Query<'q> {
    query
        .bind(row.key.as_slice())
        .bind(row.version)
        .bind(row.user.as_deref())
        .bind(row.data.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(now)
}
