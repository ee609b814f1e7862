//! [`PostgresStore`] and its [`SessionStore`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};
use sqlx::postgres::PgPool;

use crate::batch::{Batched, Create, Delete, Load, Save, SaveOutcome, Touch, TouchItem};
use crate::codec::{Row, decode_row};
use crate::deadline::DEFAULT_OPERATION_TIMEOUT;
use crate::error::Damaged;
use crate::options::{DEFAULT_SWEEP_BATCH, PostgresOptions};
use crate::schema::{self, Statements};
use crate::shared::{Shared, now_ms};
use crate::table::TableName;

/// How often a save runs again after a concurrent write changed its row
/// while it waited (see [`SaveOutcome::Changed`]) before it gives up with
/// [`Error::GaveUp`] (retryable).
const SAVE_RERUNS: u32 = 8;

/// A [`SessionStore`] in a PostgreSQL table.
///
/// Cheap to clone: clones share one connection pool. Every operation is
/// one statement, atomic on its own; operations that arrive while others
/// of their kind are in flight are sent together as one statement (see the
/// crate docs). Expired rows are invisible to every method at once and
/// are physically removed by
/// [`delete_expired`](SessionStore::delete_expired), which
/// [`SweeperExt::spawn_sweeper`](session_core::sweeper::SweeperExt::spawn_sweeper) runs periodically. Any number of
/// stores, in any number of processes, may share one table.
///
/// ```no_run
/// use std::time::Duration;
/// use session_core::{Record, SessionId, SessionStore, Timestamp};
/// use session_store_postgres::PostgresOptions;
///
/// # async fn example() -> Result<(), session_core::Error> {
/// let store = PostgresOptions::new("postgres://app@localhost/app")
///     .migrate(true)
///     .connect()
///     .await?;
/// let now = Timestamp::now();
/// let mut record = Record::new(
///     SessionId::generate()?.storage_key(),
///     now,
///     now.saturating_add(Duration::from_secs(3600)),
/// );
/// record.data.insert("cart".into(), serde_json::json!([1, 2]));
/// store.create(&record).await?;
/// record.version = store.save(&record).await?;
/// assert_eq!(store.load(&record.key).await?, Some(record));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    loads: Batched<Load>,
    creates: Batched<Create>,
    saves: Batched<Save>,
    touches: Batched<Touch>,
    deletes: Batched<Delete>,
    sweep_batch: u32,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.shared.sql.table)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` with the default [`PostgresOptions`] (table
    /// `sessions`, which must have been installed: see
    /// [`PostgresOptions::migrate`]).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the server cannot be reached or the table
    /// is missing or newer than this release.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        PostgresOptions::new(url).connect().await
    }

    /// A store over a pool you configured yourself, in the table
    /// `sessions`, which must have been installed (see [`crate::migrate`]).
    /// Its calls are bounded by [`DEFAULT_OPERATION_TIMEOUT`]; for the
    /// server to cancel a statement stuck on a lock before that, give the
    /// pool's connections a `statement_timeout` (see the crate docs,
    /// "Timeouts").
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the table is missing or newer than this
    /// release.
    pub async fn from_pool(pool: PgPool) -> Result<Self, Error> {
        Self::from_pool_with_table(pool, TableName::default()).await
    }

    /// Like [`PostgresStore::from_pool`], in the table `table`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the table is missing or newer than this
    /// release.
    pub async fn from_pool_with_table(pool: PgPool, table: TableName) -> Result<Self, Error> {
        Self::from_parts(pool, table, DEFAULT_SWEEP_BATCH, DEFAULT_OPERATION_TIMEOUT).await
    }

    pub(crate) async fn from_parts(
        pool: PgPool,
        table: TableName,
        sweep_batch: u32,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            pool,
            sql: Statements::new(table),
            timeout: crate::deadline::clamp(timeout),
        });
        let table = &shared.sql.table;
        shared
            .bounded("open", shared.budget(), async |conn| {
                Ok(schema::check(conn, table).await)
            })
            .await??;
        Ok(Self {
            inner: Arc::new(Inner {
                loads: Batched::new(&shared),
                creates: Batched::new(&shared),
                saves: Batched::new(&shared),
                touches: Batched::new(&shared),
                deletes: Batched::new(&shared),
                shared,
                sweep_batch: sweep_batch.max(1),
            }),
        })
    }

    /// Installs the store's table where it is missing; see
    /// [`crate::migrate`].
    ///
    /// # Errors
    ///
    /// As [`crate::migrate`].
    pub async fn migrate(&self) -> Result<(), Error> {
        schema::migrate(self.pool(), self.table()).await
    }

    /// The connection pool, for raw access (inspection, tests).
    pub fn pool(&self) -> &PgPool {
        &self.inner.shared.pool
    }

    /// The table sessions are kept in.
    pub fn table(&self) -> &TableName {
        &self.inner.shared.sql.table
    }

    /// How long a call may take (see [`PostgresOptions::operation_timeout`]).
    pub fn operation_timeout(&self) -> Duration {
        self.inner.shared.timeout
    }
}

/// How many of the removed rows (by their `expires_at`) were live at `now`.
fn live_count(expiries: impl IntoIterator<Item = i64>, now: i64) -> u64 {
    expiries.into_iter().filter(|&e| e > now).count() as u64
}

#[async_trait::async_trait]
impl SessionStore for PostgresStore {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    async fn create(&self, record: &Record) -> Result<(), Error> {
        record.check_create()?;
        let budget = self.inner.shared.budget();
        let row = Row::of("create", record)?;
        if self.inner.creates.run(row, budget).await? {
            Ok(())
        } else {
            Err(Error::Exists)
        }
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let budget = self.inner.shared.budget();
        self.inner.loads.run(*key, budget).await
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        let op = "save";
        // One budget for every run of the save.
        let budget = self.inner.shared.budget();
        record.check_save()?;
        let row = Row::of(op, record)?;
        for _ in 0..SAVE_RERUNS {
            match self.inner.saves.run(row.clone(), budget).await? {
                // `check_save` keeps the version below `Record::MAX_VERSION`.
                SaveOutcome::Saved => return Ok(record.version + 1),
                SaveOutcome::Conflict => return Err(Error::Conflict),
                SaveOutcome::NotFound => return Err(Error::NotFound),
                SaveOutcome::Unreadable => return Err(Error::decode(record.key, Damaged)),
                SaveOutcome::Changed => {}
            }
        }
        // Ran again SAVE_RERUNS times, and each time a concurrent write
        // had changed the row while the save waited for it.
        Err(Error::gave_up(crate::NAME, op, SAVE_RERUNS))
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let budget = self.inner.shared.budget();
        let item = TouchItem {
            key: *key,
            expires_at: expires_at.as_millis(),
        };
        self.inner.touches.run(item, budget).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        let budget = self.inner.shared.budget();
        // Removes an expired row too, but only a live one counts.
        let removed = self.inner.deletes.run(*key, budget).await?;
        Ok(live_count(removed, now_ms()) > 0)
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let op = "list_by_user";
        let shared = &self.inner.shared;
        let rows = shared
            .bounded(op, shared.budget(), async |conn| {
                sqlx::query(shared.sql.list_by_user())
                    .bind(user.as_bytes())
                    .bind(now_ms())
                    .fetch_all(conn)
                    .await
            })
            .await?;
        let table = &shared.sql.table;
        let mut found = UserSessions::default();
        for row in &rows {
            match decode_row(op, table, row) {
                Ok(record) => found.records.push(record),
                // One damaged row does not hide the others, nor itself.
                Err(Error::Decode { key, .. }) => found.unreadable.push(key),
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let shared = &self.inner.shared;
        let now = now_ms();
        // Removes the user's expired rows too, but counts only live ones.
        let removed: Vec<i64> = shared
            .bounded("delete_by_user", shared.budget(), async |conn| {
                sqlx::query_scalar(shared.sql.delete_by_user())
                    .bind(user.as_bytes())
                    .fetch_all(conn)
                    .await
            })
            .await?;
        Ok(live_count(removed, now))
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        let shared = &self.inner.shared;
        let batch = self.inner.sweep_batch;
        let mut total = 0u64;
        loop {
            // One short statement per batch, so no row stays locked long;
            // each statement is a call of its own, bounded by the
            // operation timeout.
            let removed = shared
                .bounded("delete_expired", shared.budget(), async |conn| {
                    sqlx::query(shared.sql.sweep())
                        .bind(now_ms())
                        .bind(i64::from(batch))
                        .execute(conn)
                        .await
                })
                .await?
                .rows_affected();
            total += removed;
            if removed < u64::from(batch) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
