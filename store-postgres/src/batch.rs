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
use session_core::{Error, Record, StorageKey};
use sqlx::Row as _;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgRow, Postgres};
use tokio::time::timeout_at;

use crate::codec::{Row, decode_row};
use crate::deadline::{Budget, Ticket};
use crate::shared::{Failure, General, Shared, now_ms, settle};

/// The most operations one statement carries.
const MAX_BATCH: usize = 256;

/// How many batches of one kind may be in flight at once (one per sender
/// task), each on its own pooled connection.
const SENDERS: usize = 2;

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

    /// Runs `item` alone on `conn`, as of `now`.
    fn one(
        shared: &Shared,
        conn: &mut PgConnection,
        item: &Self::Item,
        now: i64,
    ) -> impl Future<Output = Result<Answer<Self>, sqlx::Error>> + Send;

    /// Runs `items` (distinct keys) as one statement on `conn`, as of
    /// `now`; answers in the order of `items`.
    fn many(
        shared: &Shared,
        conn: &mut PgConnection,
        items: &[&Self::Item],
        now: i64,
    ) -> impl Future<Output = Result<Vec<Answer<Self>>, sqlx::Error>> + Send;
}

/// What one operation of kind `K` answers.
pub(crate) type Answer<K> = Result<<K as Kind>::Out, Error>;

/// An operation with its deadline and whether it was sent (see
/// [`Ticket`]).
struct Timed<I> {
    item: I,
    ticket: Arc<Ticket>,
}

/// The operations of one kind of one store: alone, or coalesced.
pub(crate) struct Batched<K: Kind> {
    shared: Arc<Shared>,
    /// `None` outside a tokio runtime: every operation runs alone.
    batches: Option<Coalescer<Timed<K::Item>, Answer<K>>>,
}

impl<K: Kind> Batched<K> {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        let sender_shared = Arc::clone(shared);
        let batches = Coalescer::spawn(
            SENDERS,
            MAX_BATCH,
            || {
                Err(Error::backend(
                    crate::NAME,
                    K::OPERATION,
                    true,
                    std::io::Error::other(
                        "a batch of this store went unanswered (was the store's tokio runtime \
                         shut down?)",
                    ),
                ))
            },
            move |items: Vec<Timed<K::Item>>| {
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
    /// else in the next batch; within `budget`.
    pub(crate) async fn run(&self, item: K::Item, budget: Budget) -> Result<K::Out, Error> {
        let ticket = Arc::new(Ticket::new(budget));
        let timed = Timed {
            item,
            ticket: Arc::clone(&ticket),
        };
        let shared = &*self.shared;
        let alone = |timed: Timed<K::Item>| async move { alone::<K>(shared, &timed).await };
        let answer = async {
            match &self.batches {
                Some(batches) => batches.run(timed, alone).await,
                None => alone(timed).await,
            }
        };
        match timeout_at(budget.deadline(), answer).await {
            Ok(answer) => answer,
            // Sent or not, it never will be from now on.
            Err(_) => Err(shared.timed_out(K::OPERATION, ticket.give_up())),
        }
    }
}

/// Runs one operation alone, on a connection of its own.
async fn alone<K: Kind>(shared: &Shared, timed: &Timed<K::Item>) -> Answer<K> {
    let mut conn = shared
        .acquire(timed.ticket.budget().deadline())
        .await
        .map_err(|f| shared.error(K::OPERATION, f))?;
    if !timed.ticket.send() {
        return Err(shared.timed_out(K::OPERATION, false));
    }
    one_on::<K>(shared, &mut conn, timed)
        .await
        .map_err(|f| shared.error(K::OPERATION, f))?
}

/// Runs one operation alone on `conn`, until its deadline.
async fn one_on<K: Kind>(
    shared: &Shared,
    conn: &mut PoolConnection<Postgres>,
    timed: &Timed<K::Item>,
) -> Result<Answer<K>, Failure> {
    let deadline = timed.ticket.budget().deadline();
    let outcome = timeout_at(deadline, K::one(shared, conn, &timed.item, now_ms())).await;
    settle(outcome, conn)
}

/// Every operation of a batch answered with `failure`.
fn all_fail<K: Kind>(shared: &Shared, items: usize, failure: Failure) -> Vec<Answer<K>> {
    let general = Shared::general(failure);
    (0..items)
        .map(|_| Err(shared.general_error(K::OPERATION, &general)))
        .collect()
}

/// Runs a batch on one connection: the first operation on each key in one
/// statement (each alone if that statement fails for a reason of its
/// own), then any later operations on the same keys alone, in order. An
/// operation is sent only within its send window, never after its caller
/// gave up; the batch as a whole ends at its latest deadline, when no
/// caller waits any more.
async fn run_batch<K: Kind>(shared: &Shared, items: Vec<Timed<K::Item>>) -> Vec<Answer<K>> {
    let Some(deadline) = items.iter().map(|t| t.ticket.budget().deadline()).max() else {
        return Vec::new();
    };
    let mut conn = match shared.acquire(deadline).await {
        Ok(conn) => conn,
        // No connection: every operation would wait for one and fail the
        // same way; they all get this failure now.
        Err(failure) => return all_fail::<K>(shared, items.len(), failure),
    };
    let mut answers: Vec<Option<Answer<K>>> = items.iter().map(|_| None).collect();
    let mut seen = HashSet::with_capacity(items.len());
    let mut firsts = Vec::with_capacity(items.len());
    let mut later = Vec::new();
    for (i, timed) in items.iter().enumerate() {
        if seen.contains(&K::key(&timed.item)) {
            later.push(i);
        } else if timed.ticket.send() {
            seen.insert(K::key(&timed.item));
            firsts.push(i);
        } else {
            answers[i] = Some(Err(shared.timed_out(K::OPERATION, false)));
        }
    }
    if firsts.is_empty() {
        // Every caller gave up; nothing to send.
        return answers.into_iter().flatten().collect();
    }
    firsts.sort_by_key(|&i| K::key(&items[i].item));
    let batch: Vec<&K::Item> = firsts.iter().map(|&i| &items[i].item).collect();
    let outcome = timeout_at(deadline, K::many(shared, &mut conn, &batch, now_ms())).await;
    match settle(outcome, &mut conn) {
        Ok(outs) if outs.len() == firsts.len() => {
            for (&i, out) in firsts.iter().zip(outs) {
                answers[i] = Some(out);
            }
        }
        Err(failure) if failure.is_general() => {
            // The server or the connection is unavailable, the statement
            // waited out its statement timeout on a lock, or no answer
            // came: every operation sent now, later ones on the same keys
            // included, would fail the same way. They all get this
            // failure now, rather than each waiting it out alone.
            let general = Shared::general(failure);
            return answers
                .into_iter()
                .map(|answer| {
                    answer.unwrap_or_else(|| Err(shared.general_error(K::OPERATION, &general)))
                })
                .collect();
        }
        failed => {
            if let Err(e) = failed {
                tracing::debug!(
                    operation = K::OPERATION,
                    error = ?e,
                    "a batch statement failed; running its operations alone"
                );
            }
            later.splice(0..0, firsts);
        }
    }
    one_by_one::<K>(shared, &mut conn, &items, later, &mut answers).await;
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                Err(Error::backend(
                    crate::NAME,
                    K::OPERATION,
                    false,
                    std::io::Error::other("an operation of a batch was left unanswered"),
                ))
            })
        })
        .collect()
}

/// Runs the operations `order` of `items` alone, in that order, on
/// `conn`, each within its own send window and deadline; after a failure
/// that any statement would meet, the rest meet it too.
async fn one_by_one<K: Kind>(
    shared: &Shared,
    conn: &mut PoolConnection<Postgres>,
    items: &[Timed<K::Item>],
    order: Vec<usize>,
    answers: &mut [Option<Answer<K>>],
) {
    let mut general: Option<General> = None;
    for i in order {
        let answer = if let Some(general) = &general {
            Err(shared.general_error(K::OPERATION, general))
        } else if !items[i].ticket.send() {
            // Out of its window (or given up): a batch statement that
            // carried it failed and was rolled back, or it never went out.
            Err(shared.timed_out(K::OPERATION, false))
        } else {
            match one_on::<K>(shared, conn, &items[i]).await {
                Ok(answer) => answer,
                Err(failure) if failure.is_general() => {
                    let failed = Shared::general(failure);
                    let answer = Err(shared.general_error(K::OPERATION, &failed));
                    general = Some(failed);
                    answer
                }
                Err(failure) => Err(shared.error(K::OPERATION, failure)),
            }
        };
        answers[i] = Some(answer);
    }
}

fn keys_of<I>(items: &[&I], key: impl Fn(&I) -> StorageKey) -> Vec<Vec<u8>> {
    items
        .iter()
        .map(|item| key(item).as_bytes().to_vec())
        .collect()
}

/// The six parallel arrays `$1` to `$6` of a batch of rows.
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

    async fn one(
        shared: &Shared,
        conn: &mut PgConnection,
        key: &StorageKey,
        now: i64,
    ) -> Result<Answer<Self>, sqlx::Error> {
        let row = sqlx::query(shared.sql.load())
            .bind(key.as_bytes().as_slice())
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        let table = &shared.sql.table;
        Ok(row
            .map(|row| decode_row(Self::OPERATION, table, &row))
            .transpose())
    }

    async fn many(
        shared: &Shared,
        conn: &mut PgConnection,
        keys: &[&StorageKey],
        now: i64,
    ) -> Result<Vec<Result<Option<Record>, Error>>, sqlx::Error> {
        let rows = sqlx::query(shared.sql.load_many())
            .bind(keys_of(keys, |k| *k))
            .bind(now)
            .fetch_all(&mut *conn)
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

    async fn one(
        shared: &Shared,
        conn: &mut PgConnection,
        row: &Row,
        now: i64,
    ) -> Result<Answer<Self>, sqlx::Error> {
        let done = sqlx::query(shared.sql.create())
            .bind(row.key.as_bytes().as_slice())
            .bind(row.user.as_deref().map(str::as_bytes))
            .bind(row.data.as_str())
            .bind(row.version)
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(Ok(done.rows_affected() == 1))
    }

    async fn many(
        shared: &Shared,
        conn: &mut PgConnection,
        rows: &[&Row],
        now: i64,
    ) -> Result<Vec<Result<bool, Error>>, sqlx::Error> {
        let written = bind_rows(sqlx::query(shared.sql.create_many()), rows)
            .bind(now)
            .fetch_all(&mut *conn)
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
    /// A live row does not match its digest: the store cannot read it.
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

    async fn one(
        shared: &Shared,
        conn: &mut PgConnection,
        row: &Row,
        now: i64,
    ) -> Result<Answer<Self>, sqlx::Error> {
        let found = sqlx::query(shared.sql.save())
            .bind(row.key.as_bytes().as_slice())
            .bind(row.version)
            .bind(row.user.as_deref().map(str::as_bytes))
            .bind(row.data.as_str())
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
        Ok(Ok(SaveOutcome::of(
            found.try_get(0)?,
            found.try_get(1)?,
            found.try_get(2)?,
            row.version,
        )))
    }

    async fn many(
        shared: &Shared,
        conn: &mut PgConnection,
        rows: &[&Row],
        now: i64,
    ) -> Result<Vec<Result<SaveOutcome, Error>>, sqlx::Error> {
        let found = bind_rows(sqlx::query(shared.sql.save_many()), rows)
            .bind(now)
            .fetch_all(&mut *conn)
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

    async fn one(
        shared: &Shared,
        conn: &mut PgConnection,
        item: &TouchItem,
        now: i64,
    ) -> Result<Answer<Self>, sqlx::Error> {
        let done = sqlx::query(shared.sql.touch())
            .bind(item.key.as_bytes().as_slice())
            .bind(item.expires_at)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        Ok(Ok(done.rows_affected() == 1))
    }

    async fn many(
        shared: &Shared,
        conn: &mut PgConnection,
        items: &[&TouchItem],
        now: i64,
    ) -> Result<Vec<Result<bool, Error>>, sqlx::Error> {
        let moved = sqlx::query(shared.sql.touch_many())
            .bind(keys_of(items, |t| t.key))
            .bind(items.iter().map(|t| t.expires_at).collect::<Vec<_>>())
            .bind(now)
            .fetch_all(&mut *conn)
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

    async fn one(
        shared: &Shared,
        conn: &mut PgConnection,
        key: &StorageKey,
        _now: i64,
    ) -> Result<Answer<Self>, sqlx::Error> {
        sqlx::query_scalar(shared.sql.delete())
            .bind(key.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await
            .map(Ok)
    }

    async fn many(
        shared: &Shared,
        conn: &mut PgConnection,
        keys: &[&StorageKey],
        _now: i64,
    ) -> Result<Vec<Result<Option<i64>, Error>>, sqlx::Error> {
        let rows = sqlx::query(shared.sql.delete_many())
            .bind(keys_of(keys, |k| *k))
            .fetch_all(&mut *conn)
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
