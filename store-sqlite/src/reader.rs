//! Loads: a lone load runs its own statement; loads that arrive while
//! others are in flight are served together, by one statement per batch.
//!
//! Every statement is a round trip to the driver thread of a pooled
//! connection, which at high concurrency costs far more than SQLite's own
//! work (a primary-key lookup). So a load that finds another load in
//! flight does not take a connection of its own: it queues, and one of a
//! few reader tasks (one per pooled connection) takes everything queued
//! (up to [`MAX_BATCH`]) and reads it with one `SELECT … WHERE key IN
//! (…)`. A load that finds nothing in flight runs directly on the pool, so
//! a lone load waits for nothing and costs no extra hop. Nothing ever
//! waits on a timer to collect a batch: a batch is what queued while the
//! previous statements ran.
//!
//! Each caller decodes its own row, so a corrupted row fails only the
//! loads of its key. A batch uses the latest `now` of its loads (every
//! load of the batch was issued before the statement runs, so that instant
//! lies inside each load's call). If the batched statement fails, the
//! reader loads the batch's keys one by one, so every load gets the result
//! it would have had alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use session_core::{Error, StorageKey};
use sqlx::Row as _;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Sqlite, SqliteExecutor};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::deadline::TimedOut;
use crate::error::{is_retryable, map_sqlx};
use crate::schema::Statements;
use crate::schema::params;

/// The most loads read by one statement.
pub(crate) const MAX_BATCH: usize = 256;

/// How many loads may queue before callers wait to enqueue.
const QUEUE: usize = 4096;

const OP: &str = "load";

/// What a load found: the row, shared by every load of its key in a batch.
type Found = Result<Option<Arc<SqliteRow>>, Error>;

/// A load waiting for a reader task.
struct Load {
    key: StorageKey,
    now: i64,
    /// When its caller gives up.
    deadline: Instant,
    reply: oneshot::Sender<Found>,
}

/// The loads of one store: the queue to its reader tasks and the count of
/// loads in flight. The reader tasks end when this is dropped.
#[derive(Debug)]
pub(crate) struct Reader {
    queue: mpsc::Sender<Load>,
    in_flight: AtomicUsize,
    pool: SqlitePool,
    sql: Statements,
    /// The operation timeout, for the errors of loads that ran out of it.
    timeout: Duration,
}

/// The reader tasks are gone (their runtime shut down) with this load.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite reader task is gone (was the store's tokio runtime shut down?)")]
struct ReaderGone;

/// Acquiring a connection for a batch of loads failed; shared by the batch.
#[derive(Debug, thiserror::Error)]
#[error("no pooled connection for this load")]
struct NoConnection(#[source] Arc<sqlx::Error>);

/// Counts a load in flight while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Reader {
    /// Starts one reader task per connection the pool may open.
    pub(crate) fn spawn(pool: SqlitePool, sql: Statements, timeout: Duration) -> Self {
        let readers = pool.options().get_max_connections().max(1);
        let (queue, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..readers {
            tokio::spawn(run(Arc::clone(&receiver), pool.clone(), sql.clone()));
        }
        Self {
            queue,
            in_flight: AtomicUsize::new(0),
            pool,
            sql,
            timeout,
        }
    }

    /// The row of `key` if it is live at `now` (the caller decodes it),
    /// unless `deadline` passes first.
    pub(crate) async fn load(&self, key: &StorageKey, now: i64, deadline: Instant) -> Found {
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&self.in_flight);
        let found = timeout_at(deadline, async {
            if !alone {
                let (reply, answer) = oneshot::channel();
                let load = Load {
                    key: *key,
                    now,
                    deadline,
                    reply,
                };
                // A closed queue means the reader tasks are gone: load
                // directly.
                if self.queue.send(load).await.is_ok() {
                    return answer
                        .await
                        .map_err(|_| Error::backend(crate::NAME, OP, false, ReaderGone))?;
                }
            }
            load_one(&self.pool, &self.sql, key, now)
                .await
                .map(|row| row.map(Arc::new))
                .map_err(|e| map_sqlx(OP, e))
        })
        .await;
        found.unwrap_or_else(|_| {
            Err(Error::backend(
                crate::NAME,
                OP,
                true,
                TimedOut::new(self.timeout, false),
            ))
        })
    }
}

async fn run(receiver: Arc<Mutex<mpsc::Receiver<Load>>>, pool: SqlitePool, sql: Statements) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // One reader at a time waits on the queue; it takes everything
        // queued and lets the next reader wait while it reads.
        let received = receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if received == 0 {
            // Every handle is gone.
            return;
        }
        serve(&pool, &sql, &mut batch).await;
    }
}

/// Answers every load of `batch` whose caller still waits, leaving it
/// empty; waits for a connection until the batch's latest deadline at
/// most.
async fn serve(pool: &SqlitePool, sql: &Statements, batch: &mut Vec<Load>) {
    batch.retain(|load| !load.reply.is_closed());
    let Some(deadline) = batch.iter().map(|load| load.deadline).max() else {
        return;
    };
    let acquired = timeout_at(deadline, pool.acquire())
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
    let mut conn = match acquired {
        Ok(conn) => conn,
        Err(error) => {
            let retryable = is_retryable(&error);
            let error = Arc::new(error);
            for load in batch.drain(..) {
                let error = NoConnection(Arc::clone(&error));
                let _ = load
                    .reply
                    .send(Err(Error::backend(crate::NAME, OP, retryable, error)));
            }
            return;
        }
    };
    if batch.len() > 1 {
        match load_many(&mut conn, sql, batch).await {
            Ok(rows) => {
                for load in batch.drain(..) {
                    // The caller may have given up waiting.
                    let _ = load.reply.send(Ok(rows.get(&load.key).cloned()));
                }
                return;
            }
            Err(error) => {
                tracing::debug!(%error, loads = batch.len(), "batched load failed; loading one by one");
            }
        }
    }
    for load in batch.drain(..) {
        let found = load_one(&mut *conn, sql, &load.key, load.now)
            .await
            .map(|row| row.map(Arc::new))
            .map_err(|e| map_sqlx(OP, e));
        let _ = load.reply.send(found);
    }
}

/// Serves `loads` (key, now) as one batch, as a reader task would, and
/// returns what each found: for tests that need a batch of known content.
#[cfg(test)]
pub(crate) async fn serve_batch(
    pool: &SqlitePool,
    sql: &Statements,
    loads: &[(StorageKey, i64)],
) -> Vec<Found> {
    let mut answers = Vec::new();
    let mut batch = Vec::new();
    let deadline = Instant::now() + crate::deadline::DEFAULT_OPERATION_TIMEOUT;
    for &(key, now) in loads {
        let (reply, answer) = oneshot::channel();
        batch.push(Load {
            key,
            now,
            deadline,
            reply,
        });
        answers.push(answer);
    }
    serve(pool, sql, &mut batch).await;
    let mut found = Vec::new();
    for answer in answers {
        found.push(
            answer
                .await
                .unwrap_or_else(|_| Err(Error::backend(crate::NAME, OP, false, ReaderGone))),
        );
    }
    found
}

/// The live rows of the batch's keys, by key.
async fn load_many(
    conn: &mut PoolConnection<Sqlite>,
    sql: &Statements,
    batch: &[Load],
) -> Result<HashMap<StorageKey, Arc<SqliteRow>>, sqlx::Error> {
    let now = batch.iter().map(|load| load.now).max().unwrap_or(i64::MIN);
    let keys = params::keys(batch.iter().map(|load| &load.key))
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let rows = sqlx::query(sql.load_many())
        .bind(keys)
        .bind(now)
        .fetch_all(&mut **conn)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let key: &[u8] = row.try_get(0)?;
        // Every row matched one of our 32-byte keys; anything else is a
        // reason to read one by one rather than to guess.
        let key = StorageKey::from_slice(key).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        found.insert(key, Arc::new(row));
    }
    Ok(found)
}

/// The row of one key, if live at `now`.
async fn load_one<'e>(
    executor: impl SqliteExecutor<'e>,
    sql: &Statements,
    key: &StorageKey,
    now: i64,
) -> Result<Option<SqliteRow>, sqlx::Error> {
    sqlx::query(sql.load())
        .bind(key.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(executor)
        .await
}

#[cfg(test)]
mod tests {
    use session_core::{Error, Record, SessionStore};

    use super::serve_batch;
    use crate::codec::decode_row;
    use crate::test_db::{TestResult, db, expired, now, record};

    #[tokio::test]
    async fn batched_loads_answer_each_key_and_decode_errors_stay_per_key() -> TestResult {
        let db = db().await?;
        let (a, b, corrupt) = (record(Some("u")), record(None), record(None));
        let dead = expired();
        let absent = record(None);
        for r in [&a, &b, &corrupt, &dead] {
            db.store.create(r).await?;
        }
        sqlx::query("UPDATE sessions SET data = '{not json' WHERE key = ?1")
            .bind(corrupt.key.as_bytes().as_slice())
            .execute(db.store.pool())
            .await?;
        let t = now();
        let keys = [a.key, b.key, a.key, dead.key, corrupt.key, absent.key];
        let loads: Vec<_> = keys.iter().map(|&k| (k, t)).collect();
        let found = serve_batch(db.store.pool(), &db.sql, &loads).await;
        let decoded: Vec<Result<Option<Record>, Error>> = found
            .into_iter()
            .map(|f| {
                f.and_then(|row| {
                    row.map(|row| decode_row("load", "sessions", &row))
                        .transpose()
                })
            })
            .collect();
        assert_eq!(decoded[0].as_ref().ok(), Some(&Some(a.clone())));
        assert_eq!(decoded[1].as_ref().ok(), Some(&Some(b)));
        assert_eq!(decoded[2].as_ref().ok(), Some(&Some(a)));
        assert_eq!(decoded[3].as_ref().ok(), Some(&None));
        assert!(matches!(&decoded[4], Err(Error::Decode { key, .. }) if *key == corrupt.key));
        assert_eq!(decoded[5].as_ref().ok(), Some(&None));
        Ok(())
    }
}
