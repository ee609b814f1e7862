//! [`SqliteStore`] and its [`SessionStore`] implementation.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Error, Record, SessionStore, StorageKey, Timestamp, UserSessions};
use sqlx::sqlite::SqlitePool;
use tokio::time::{Instant, timeout_at};

use crate::codec::{Row, decode_row};
use crate::deadline::{DEFAULT_OPERATION_TIMEOUT, TimedOut};
use crate::digest::{COLLATION, collate};
use crate::error::{Damaged, map_sqlx};
use crate::options::{DEFAULT_SWEEP_BATCH, Keeper, SqliteOptions, TableName};
use crate::reader::Reader;
use crate::schema::{self, Statements};
use crate::write::{SaveOutcome, Touch, Writer};

/// A [`SessionStore`] in an SQLite database.
///
/// Cheap to clone: clones share one connection pool for reads (loads that
/// arrive together are read together) and one writer connection that
/// commits waiting writes together (see the crate docs). A failed
/// [`save`](SessionStore::save) reads once more, on the writer's
/// connection, to tell [`Error::Conflict`] from [`Error::NotFound`].
/// Expired rows are invisible to every method at once and are physically
/// removed by [`delete_expired`](SessionStore::delete_expired), which
/// [`SweeperExt::spawn_sweeper`](crate::SweeperExt::spawn_sweeper) runs periodically.
///
/// ```
/// use std::time::Duration;
/// use session_core::{Record, SessionId, SessionStore, Timestamp};
/// use session_store_sqlite::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_core::Error> {
/// let store = SqliteStore::open_in_memory().await?;
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
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    reader: Reader,
    writer: Writer,
    sql: Statements,
    sweep_batch: u32,
    /// How long a call may take.
    timeout: Duration,
    // Declared last: dropped after the pool handle.
    _keeper: Option<Keeper>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.inner.sql.table)
            .field("in_memory", &self.inner._keeper.is_some())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with the
    /// default [`SqliteOptions`]: WAL, `synchronous = NORMAL`, table
    /// `sessions`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the file cannot be opened or the schema
    /// cannot be created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        SqliteOptions::file(path).open().await
    }

    /// Opens a fresh private database in memory, shared by every
    /// connection of the store's pool (see [`SqliteOptions::in_memory`]).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when SQLite cannot create the database.
    pub async fn open_in_memory() -> Result<Self, Error> {
        SqliteOptions::in_memory().open().await
    }

    /// A store over a pool you configured yourself, in the table
    /// `sessions` (created if missing).
    ///
    /// The pool's connect options decide journal mode, `synchronous` and
    /// busy timeout; set a busy timeout, or concurrent writers fail with
    /// "database is locked" (no longer than [`DEFAULT_OPERATION_TIMEOUT`],
    /// which bounds every call of this store; the writer never commits a
    /// write after its caller gave up, whatever the busy timeout). A
    /// plain `:memory:` URL gives every pooled
    /// connection its own database: use [`SqliteOptions::in_memory`]
    /// instead, or a pool of exactly one connection that never expires.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the schema cannot be created.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, Error> {
        Self::from_pool_with_table(pool, TableName::default()).await
    }

    /// Like [`SqliteStore::from_pool`], in the table `table`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the schema cannot be created.
    pub async fn from_pool_with_table(pool: SqlitePool, table: TableName) -> Result<Self, Error> {
        Self::from_parts(
            pool,
            table,
            DEFAULT_SWEEP_BATCH,
            DEFAULT_OPERATION_TIMEOUT,
            None,
        )
        .await
    }

    pub(crate) async fn from_parts(
        pool: SqlitePool,
        table: TableName,
        sweep_batch: u32,
        timeout: Duration,
        keeper: Option<Keeper>,
    ) -> Result<Self, Error> {
        let op = "open";
        let deadline = Instant::now() + timeout;
        let timed_out = || Error::backend(crate::NAME, op, true, TimedOut::new(timeout, false));
        schema::ensure(&pool, &table, deadline).await?;
        // The writer's own connection, opened with the pool's options (the
        // same file or in-memory database, journal mode and busy timeout).
        // Its temporary files live in memory: a multi-row statement inside
        // the batch transaction keeps a statement journal (the pages it
        // changed, to undo it alone if it fails), which would otherwise
        // spill into a temporary file, created and deleted per statement.
        // It compares rows with their digests under the collation of
        // `crate::digest`.
        let writer_options = (*pool.connect_options())
            .clone()
            .pragma("temp_store", "MEMORY")
            .collation(COLLATION, collate);
        let sql = Statements::new(table);
        let writer = timeout_at(deadline, async {
            let conn = sqlx::ConnectOptions::connect(&writer_options).await?;
            Writer::start(conn, sql.clone(), timeout).await
        })
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| map_sqlx(op, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                reader: Reader::spawn(pool.clone(), sql.clone(), timeout),
                pool,
                writer,
                sql,
                sweep_batch: sweep_batch.max(1),
                timeout,
                _keeper: keeper,
            }),
        })
    }

    /// The connection pool, for raw access (inspection, backups, tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The table sessions are kept in.
    pub fn table(&self) -> &TableName {
        &self.inner.sql.table
    }

    /// How long a call may take (see [`SqliteOptions::operation_timeout`]).
    pub fn operation_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The deadline of a call starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.timeout
    }
}

/// How many of the removed rows (by their `expires_at`) were live at `now`.
fn live_count(expiries: impl IntoIterator<Item = i64>, now: i64) -> u64 {
    expiries.into_iter().filter(|&e| e > now).count() as u64
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    fn name(&self) -> &'static str {
        crate::NAME
    }

    async fn create(&self, record: &Record) -> Result<(), Error> {
        record.check_create()?;
        let row = Row::for_create(record)?;
        if self
            .inner
            .writer
            .create(row, now_ms(), self.deadline())
            .await?
        {
            Ok(())
        } else {
            Err(Error::Exists)
        }
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let row = self
            .inner
            .reader
            .load(key, now_ms(), self.deadline())
            .await?;
        row.map(|row| decode_row("load", self.inner.sql.table.as_str(), &row))
            .transpose()
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        record.check_save()?;
        let row = Row::for_save(record)?;
        match self
            .inner
            .writer
            .save(row, now_ms(), self.deadline())
            .await?
        {
            // `check_save` keeps the version below `Record::MAX_VERSION`.
            SaveOutcome::Saved => Ok(record.version + 1),
            SaveOutcome::Conflict => Err(Error::Conflict),
            SaveOutcome::Unreadable => Err(Error::decode(record.key, Damaged)),
            SaveOutcome::NotFound => Err(Error::NotFound),
        }
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let touch = Touch {
            key: *key,
            expires_at: expires_at.as_millis(),
        };
        self.inner
            .writer
            .touch(touch, now_ms(), self.deadline())
            .await
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        let now = now_ms();
        // Removes an expired row too, but only a live one counts.
        let removed = self.inner.writer.delete(*key, now, self.deadline()).await?;
        Ok(live_count(removed, now) > 0)
    }

    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        let op = "list_by_user";
        let listed = sqlx::query(self.inner.sql.list_by_user())
            .bind(user)
            .bind(now_ms())
            .fetch_all(&self.inner.pool);
        let rows = timeout_at(self.deadline(), listed)
            .await
            .map_err(|_| {
                Error::backend(
                    crate::NAME,
                    op,
                    true,
                    TimedOut::new(self.inner.timeout, false),
                )
            })?
            .map_err(|e| map_sqlx(op, e))?;
        let mut found = UserSessions::default();
        for row in &rows {
            match decode_row(op, self.inner.sql.table.as_str(), row) {
                Ok(record) => found.records.push(record),
                // One damaged row does not hide the others, nor itself.
                Err(Error::Decode { key, .. }) => found.unreadable.push(key),
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let now = now_ms();
        // Removes the user's expired rows too, but counts only live ones.
        let removed = self
            .inner
            .writer
            .delete_by_user(user.to_owned(), now, self.deadline())
            .await?;
        Ok(live_count(removed, now))
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        let batch = self.inner.sweep_batch;
        let mut total = 0u64;
        loop {
            // One short write transaction per batch, so writers wait at
            // most one batch for the lock; each a call of its own,
            // bounded by the operation timeout.
            let limit = i64::from(batch);
            let removed = self
                .inner
                .writer
                .sweep(limit, now_ms(), self.deadline())
                .await?;
            total += removed;
            if removed < u64::from(batch) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
