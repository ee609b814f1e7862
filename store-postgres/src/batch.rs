//! Operations that arrive while others of their kind are in flight go out
//! together, as one statement over arrays (`key = ANY($1)`, `unnest`), on
//! session-core's timer-free [`Coalescer`]: a lone operation runs its own
//! one-row statement at once; a batch is what queued meanwhile.
//!
//! A round trip, a statement's parse-bind-execute and, for writes, a
//! commit (a WAL flush) are what an operation costs PostgreSQL under load;
//! a batch pays them once. Each caller still gets its own answer:
//!
//! - A batch statement covers each key once. A second operation on a key
//!   already in the batch runs alone after it, in arrival order, so
//!   operations on one key still take effect one after the other.
//! - When a batch statement fails, each of its operations runs alone, so
//!   one operation's failure never becomes another's; unless the failure
//!   says the server or the connection is unavailable: then every
//!   operation of the batch gets it at once (each running alone would only
//!   wait out the acquire timeout again).
//! - Keys are sorted, so two batches (two stores on one database) that
//!   update some of the same rows take their row locks in the same order.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use session_core::coalesce::Coalescer;
use session_core::{Error, Record, StorageKey, Timestamp};
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgRow};

use crate::codec::{Row, decode_row};
use crate::error::{SharedFailure, is_retryable, is_unavailable, map_sqlx};
use crate::schema::Statements;

/// The most operations one statement carries.
const MAX_BATCH: usize = 256;

/// How many batches of one kind may be in flight at once (one per sender
/// task), each on its own pooled connection.
const SENDERS: usize = 2;

/// What every statement needs: the pool and the statement texts.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) sql: Statements,
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// One kind of operation: how it runs alone, and how many run as one
/// statement.
pub(crate) trait Kind: 'static {
    /// What one operation carries.
    type Item: Clone + Send + Sync + 'static;
    /// What one operation answers.
    type Out: Send + 'static;
    /// The operation's name in errors.
    const OPERATION: &'static str;

    /// The key `item` works on.
    fn key(item: &Self::Item) -> StorageKey;

    /// Runs `item` alone, as of `now`.
    fn one(
        shared: &Shared,
        item: &Self::Item,
        now: i64,
    ) -> impl Future<Output = Result<Self::Out, Error>> + Send;

    /// Runs `items` (distinct keys) as one statement, as of `now`; answers
    /// in the order of `items`.
    fn many(
        shared: &Shared,
        items: &[&Self::Item],
        now: i64,
    ) -> impl Future<Output = Result<Vec<Result<Self::Out, Error>>, sqlx::Error>> + Send;
}

/// What one operation of kind `K` answers.
type Answer<K> = Result<<K as Kind>::Out, Error>;

/// The operations of one kind of one store: alone, or coalesced.
pub(crate) struct Batched<K: Kind> {
    shared: Arc<Shared>,
    /// `None` outside a tokio runtime: every operation runs alone.
    batches: Option<Coalescer<K::Item, Answer<K>>>,
}

impl<K: Kind> Batched<K> {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        let sender_shared = Arc::clone(shared);
        let batches = Coalescer::spawn(
            SENDERS,
            MAX_BATCH,
            || {
                Err(Error::backend(
                    K::OPERATION,
                    true,
                    std::io::Error::other(
                        "a batch of this store went unanswered (was the store's tokio runtime \
                         shut down?)",
                    ),
                ))
            },
            move |items: Vec<K::Item>| {
                let shared = Arc::clone(&sender_shared);
                async move { run_batch::<K>(&shared, items).await }
            },
        )
        .ok();
        Self {
            shared: Arc::clone(shared),
            batches,
        }
    }

    /// Runs `item`: alone when no other operation of its kind is in flight,
    /// else in the next batch.
    pub(crate) async fn run(&self, item: K::Item) -> Result<K::Out, Error> {
        let alone = |item: K::Item| async move { K::one(&self.shared, &item, now_ms()).await };
        match &self.batches {
            Some(batches) => batches.run(item, alone).await,
            None => alone(item).await,
        }
    }
}

/// Runs a batch: the first operation on each key in one statement (each
/// alone if that statement fails), then any later operations on the same
/// keys alone, in order.
async fn run_batch<K: Kind>(shared: &Shared, items: Vec<K::Item>) -> Vec<Result<K::Out, Error>> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut firsts = Vec::with_capacity(items.len());
    let mut later = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if seen.insert(K::key(item)) {
            firsts.push(i);
        } else {
            later.push(i);
        }
    }
    firsts.sort_by_key(|&i| K::key(&items[i]));
    let mut answers: Vec<Option<Result<K::Out, Error>>> = items.iter().map(|_| None).collect();
    let now = now_ms();
    let batch: Vec<&K::Item> = firsts.iter().map(|&i| &items[i]).collect();
    match K::many(shared, &batch, now).await {
        Ok(outs) if outs.len() == firsts.len() => {
            for (&i, out) in firsts.iter().zip(outs) {
                answers[i] = Some(out);
            }
        }
        Err(e) if is_unavailable(&e) => {
            // The server or the connection is unavailable: every operation
            // of the batch, later ones on the same keys included, would
            // wait for a connection and fail the same way. They all get
            // this failure now, rather than each waiting it out alone.
            let retryable = is_retryable(&e);
            let failure = SharedFailure(Arc::new(e));
            return items
                .iter()
                .map(|_| Err(Error::backend(K::OPERATION, retryable, failure.clone())))
                .collect();
        }
        failed => {
            if let Err(e) = failed {
                tracing::debug!(
                    operation = K::OPERATION,
                    error = &e as &dyn std::error::Error,
                    "a batch statement failed; running its operations alone"
                );
            }
            let alone = firsts.iter().map(|&i| K::one(shared, &items[i], now));
            for (&i, out) in firsts
                .iter()
                .zip(futures_util::future::join_all(alone).await)
            {
                answers[i] = Some(out);
            }
        }
    }
    for i in later {
        answers[i] = Some(K::one(shared, &items[i], now_ms()).await);
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                Err(Error::backend(
                    K::OPERATION,
                    false,
                    std::io::Error::other("an operation of a batch was left unanswered"),
                ))
            })
        })
        .collect()
}

fn keys_of<I>(items: &[&I], key: impl Fn(&I) -> StorageKey) -> Vec<Vec<u8>> {
    items
        .iter()
        .map(|item| key(item).as_bytes().to_vec())
        .collect()
}

/// The six parallel arrays of a batch of rows.
fn bind_rows<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &[&Row],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(
            rows.iter()
                .map(|r| r.key.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.user.as_ref().map(|u| u.as_bytes().to_vec()))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.data.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.expires_at).collect::<Vec<_>>())
}

/// The storage key in column `index` of `row`.
fn key_at(row: &PgRow, index: usize) -> Result<StorageKey, sqlx::Error> {
    let bytes: &[u8] = row.try_get(index)?;
    StorageKey::from_slice(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Loads: `Option<Record>` per key.
pub(crate) struct Load;

impl Kind for Load {
    type Item = StorageKey;
    type Out = Option<Record>;
    const OPERATION: &'static str = "load";

    fn key(item: &StorageKey) -> StorageKey {
        *item
    }

    async fn one(shared: &Shared, key: &StorageKey, now: i64) -> Result<Option<Record>, Error> {
        let row = sqlx::query(shared.sql.load())
            .bind(key.as_bytes().as_slice())
            .bind(now)
            .fetch_optional(&shared.pool)
            .await
            .map_err(|e| map_sqlx(Self::OPERATION, e))?;
        let table = &shared.sql.table;
        row.map(|row| decode_row(Self::OPERATION, table, &row))
            .transpose()
    }

    async fn many(
        shared: &Shared,
        keys: &[&StorageKey],
        now: i64,
    ) -> Result<Vec<Result<Option<Record>, Error>>, sqlx::Error> {
        let rows = sqlx::query(shared.sql.load_many())
            .bind(keys_of(keys, |k| *k))
            .bind(now)
            .fetch_all(&shared.pool)
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            found.insert(key_at(&row, 0)?, row);
        }
        let table = &shared.sql.table;
        Ok(keys
            .iter()
            .map(|key| {
                found
                    .get(*key)
                    .map(|row| decode_row(Self::OPERATION, table, row))
                    .transpose()
            })
            .collect())
    }
}

/// Creates: `true` when the row was written, `false` when a live row held
/// the key.
pub(crate) struct Create;

impl Kind for Create {
    type Item = Row;
    type Out = bool;
    const OPERATION: &'static str = "create";

    fn key(row: &Row) -> StorageKey {
        row.key
    }

    async fn one(shared: &Shared, row: &Row, now: i64) -> Result<bool, Error> {
        let done = sqlx::query(shared.sql.create())
            .bind(row.key.as_bytes().as_slice())
            .bind(row.user.as_deref().map(str::as_bytes))
            .bind(row.data.as_str())
            .bind(row.version)
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(now)
            .execute(&shared.pool)
            .await
            .map_err(|e| map_sqlx(Self::OPERATION, e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn many(
        shared: &Shared,
        rows: &[&Row],
        now: i64,
    ) -> Result<Vec<Result<bool, Error>>, sqlx::Error> {
        let written = bind_rows(sqlx::query(shared.sql.create_many()), rows)
            .bind(now)
            .fetch_all(&shared.pool)
            .await?
            .iter()
            .map(|row| key_at(row, 0))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(rows.iter().map(|r| Ok(written.contains(&r.key))).collect())
    }
}

/// What a save's compare-and-set found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveOutcome {
    /// Written.
    Saved,
    /// A live readable row holds another version.
    Conflict,
    /// No live row holds the key.
    NotFound,
    /// A live row holds data that is not a JSON object.
    Unreadable,
    /// Not written although the statement's snapshot showed the presented
    /// version: a concurrent write changed the row while the statement
    /// waited for its lock. Running the save again tells which.
    Changed,
}

impl SaveOutcome {
    fn of(saved: bool, version: Option<i64>, readable: Option<bool>, presented: i64) -> Self {
        match (saved, version, readable) {
            (true, _, _) => Self::Saved,
            (false, None, _) => Self::NotFound,
            // A negative version is no record's: the row is damaged.
            (false, Some(v), _) if v < 0 => Self::Unreadable,
            (false, Some(_), Some(false) | None) => Self::Unreadable,
            (false, Some(v), Some(true)) if v == presented => Self::Changed,
            (false, Some(_), Some(true)) => Self::Conflict,
        }
    }
}

/// Saves: the compare-and-set of each record.
pub(crate) struct Save;

impl Kind for Save {
    type Item = Row;
    type Out = SaveOutcome;
    const OPERATION: &'static str = "save";

    fn key(row: &Row) -> StorageKey {
        row.key
    }

    async fn one(shared: &Shared, row: &Row, now: i64) -> Result<SaveOutcome, Error> {
        let found = sqlx::query(shared.sql.save())
            .bind(row.key.as_bytes().as_slice())
            .bind(row.version)
            .bind(row.user.as_deref().map(str::as_bytes))
            .bind(row.data.as_str())
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(now)
            .fetch_one(&shared.pool)
            .await
            .map_err(|e| map_sqlx(Self::OPERATION, e))?;
        let decode = |e: sqlx::Error| map_sqlx(Self::OPERATION, e);
        Ok(SaveOutcome::of(
            found.try_get(0).map_err(decode)?,
            found.try_get(1).map_err(decode)?,
            found.try_get(2).map_err(decode)?,
            row.version,
        ))
    }

    async fn many(
        shared: &Shared,
        rows: &[&Row],
        now: i64,
    ) -> Result<Vec<Result<SaveOutcome, Error>>, sqlx::Error> {
        let found = bind_rows(sqlx::query(shared.sql.save_many()), rows)
            .bind(now)
            .fetch_all(&shared.pool)
            .await?;
        let mut by_key = HashMap::with_capacity(found.len());
        for row in &found {
            let saved: bool = row.try_get(1)?;
            let version: Option<i64> = row.try_get(2)?;
            let readable: Option<bool> = row.try_get(3)?;
            by_key.insert(key_at(row, 0)?, (saved, version, readable));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let (saved, version, readable) =
                    by_key.get(&r.key).copied().unwrap_or((false, None, None));
                Ok(SaveOutcome::of(saved, version, readable, r.version))
            })
            .collect())
    }
}

/// A touch: the key and its new deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TouchItem {
    pub(crate) key: StorageKey,
    pub(crate) expires_at: i64,
}

/// Touches: `true` when a live row was moved.
pub(crate) struct Touch;

impl Kind for Touch {
    type Item = TouchItem;
    type Out = bool;
    const OPERATION: &'static str = "touch";

    fn key(item: &TouchItem) -> StorageKey {
        item.key
    }

    async fn one(shared: &Shared, item: &TouchItem, now: i64) -> Result<bool, Error> {
        let done = sqlx::query(shared.sql.touch())
            .bind(item.key.as_bytes().as_slice())
            .bind(item.expires_at)
            .bind(now)
            .execute(&shared.pool)
            .await
            .map_err(|e| map_sqlx(Self::OPERATION, e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn many(
        shared: &Shared,
        items: &[&TouchItem],
        now: i64,
    ) -> Result<Vec<Result<bool, Error>>, sqlx::Error> {
        let moved = sqlx::query(shared.sql.touch_many())
            .bind(keys_of(items, |t| t.key))
            .bind(items.iter().map(|t| t.expires_at).collect::<Vec<_>>())
            .bind(now)
            .fetch_all(&shared.pool)
            .await?
            .iter()
            .map(|row| key_at(row, 0))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(items.iter().map(|t| Ok(moved.contains(&t.key))).collect())
    }
}

/// Deletes: the removed row's deadline, if a row was removed.
pub(crate) struct Delete;

impl Kind for Delete {
    type Item = StorageKey;
    type Out = Option<i64>;
    const OPERATION: &'static str = "delete";

    fn key(item: &StorageKey) -> StorageKey {
        *item
    }

    async fn one(shared: &Shared, key: &StorageKey, _now: i64) -> Result<Option<i64>, Error> {
        sqlx::query_scalar(shared.sql.delete())
            .bind(key.as_bytes().as_slice())
            .fetch_optional(&shared.pool)
            .await
            .map_err(|e| map_sqlx(Self::OPERATION, e))
    }

    async fn many(
        shared: &Shared,
        keys: &[&StorageKey],
        _now: i64,
    ) -> Result<Vec<Result<Option<i64>, Error>>, sqlx::Error> {
        let rows = sqlx::query(shared.sql.delete_many())
            .bind(keys_of(keys, |k| *k))
            .fetch_all(&shared.pool)
            .await?;
        let mut removed = HashMap::with_capacity(rows.len());
        for row in &rows {
            let expires_at: i64 = row.try_get(1)?;
            removed.insert(key_at(row, 0)?, expires_at);
        }
        Ok(keys.iter().map(|k| Ok(removed.get(*k).copied())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::SaveOutcome;

    #[test]
    fn a_failed_save_is_told_apart_by_what_the_snapshot_held() {
        assert_eq!(
            SaveOutcome::of(true, Some(3), Some(true), 3),
            SaveOutcome::Saved
        );
        assert_eq!(SaveOutcome::of(false, None, None, 3), SaveOutcome::NotFound);
        assert_eq!(
            SaveOutcome::of(false, Some(3), Some(false), 3),
            SaveOutcome::Unreadable
        );
        assert_eq!(
            SaveOutcome::of(false, Some(4), Some(true), 3),
            SaveOutcome::Conflict
        );
        assert_eq!(
            SaveOutcome::of(false, Some(3), Some(true), 3),
            SaveOutcome::Changed
        );
        assert_eq!(
            SaveOutcome::of(false, Some(-1), Some(true), 3),
            SaveOutcome::Unreadable
        );
    }
}
