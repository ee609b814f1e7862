//! [`SqliteStore`] and its [`SessionStore`] implementation.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use session_core::{Error, Record, SessionStore, StorageKey, Timestamp};
use sqlx::sqlite::SqlitePool;

use crate::codec::{data_to_sql, decode_row, version_to_sql};
use crate::error::map_sqlx;
use crate::options::{DEFAULT_SWEEP_BATCH, Keeper, SqliteOptions, TableName};
use crate::schema::{self, Statements};

/// A [`SessionStore`] in an SQLite database.
///
/// Cheap to clone: clones share one connection pool. Every method is one
/// SQL statement, except a failed [`save`](SessionStore::save), which
/// reads once more to tell [`Error::Conflict`] from [`Error::NotFound`].
/// Expired rows are invisible to every method at once and are physically
/// removed by [`delete_expired`](SessionStore::delete_expired), which
/// [`SqliteStore::spawn_sweeper`] runs periodically.
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
    sql: Statements,
    sweep_batch: u32,
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
    /// "database is locked". A plain `:memory:` URL gives every pooled
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
        Self::from_parts(pool, table, DEFAULT_SWEEP_BATCH, None).await
    }

    pub(crate) async fn from_parts(
        pool: SqlitePool,
        table: TableName,
        sweep_batch: u32,
        keeper: Option<Keeper>,
    ) -> Result<Self, Error> {
        schema::ensure(&pool, &table).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                sql: Statements::new(table),
                sweep_batch: sweep_batch.max(1),
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

    async fn probe_live_version(&self, key: &StorageKey, now: i64) -> Result<Option<i64>, Error> {
        sqlx::query_scalar::<_, i64>(self.inner.sql.probe())
            .bind(key.as_bytes().as_slice())
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx("save", e))
    }
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        let op = "create";
        let version = version_to_sql(op, record.version)?;
        let data = data_to_sql(op, &record.data)?;
        let done = sqlx::query(self.inner.sql.create())
            .bind(record.key.as_bytes().as_slice())
            .bind(record.user.as_deref())
            .bind(data)
            .bind(version)
            .bind(record.created_at.as_millis())
            .bind(record.expires_at.as_millis())
            .bind(now_ms())
            .execute(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx(op, e))?;
        if done.rows_affected() == 0 {
            Err(Error::Exists)
        } else {
            Ok(())
        }
    }

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        let op = "load";
        let row = sqlx::query(self.inner.sql.load())
            .bind(key.as_bytes().as_slice())
            .bind(now_ms())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx(op, e))?;
        row.map(|row| decode_row(op, self.inner.sql.table.as_str(), &row))
            .transpose()
    }

    async fn save(&self, record: &Record) -> Result<u64, Error> {
        let op = "save";
        let now = now_ms();
        // A version SQLite cannot hold is never stored: skip to the probe.
        if let Ok(version) = version_to_sql(op, record.version) {
            let data = data_to_sql(op, &record.data)?;
            let done = sqlx::query(self.inner.sql.save())
                .bind(record.key.as_bytes().as_slice())
                .bind(version)
                .bind(record.user.as_deref())
                .bind(data)
                .bind(record.created_at.as_millis())
                .bind(record.expires_at.as_millis())
                .bind(now)
                .execute(&self.inner.pool)
                .await
                .map_err(|e| map_sqlx(op, e))?;
            if done.rows_affected() > 0 {
                // version <= MAX_VERSION, so this cannot overflow.
                return Ok(record.version + 1);
            }
        }
        // Nothing changed: either no live row, or another version.
        match self.probe_live_version(&record.key, now).await? {
            Some(_) => Err(Error::Conflict),
            None => Err(Error::NotFound),
        }
    }

    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        let done = sqlx::query(self.inner.sql.touch())
            .bind(key.as_bytes().as_slice())
            .bind(expires_at.as_millis())
            .bind(now_ms())
            .execute(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx("touch", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        let now = now_ms();
        // Removes an expired row too, but only a live one counts.
        let removed: Vec<i64> = sqlx::query_scalar(self.inner.sql.delete())
            .bind(key.as_bytes().as_slice())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx("delete", e))?;
        Ok(removed.into_iter().any(|expires_at| expires_at > now))
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<Record>, Error> {
        let op = "list_by_user";
        let rows = sqlx::query(self.inner.sql.list_by_user())
            .bind(user)
            .bind(now_ms())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx(op, e))?;
        rows.iter()
            .map(|row| decode_row(op, self.inner.sql.table.as_str(), row))
            .collect()
    }

    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        let now = now_ms();
        // Removes the user's expired rows too, but counts only live ones.
        let removed: Vec<i64> = sqlx::query_scalar(self.inner.sql.delete_by_user())
            .bind(user)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| map_sqlx("delete_by_user", e))?;
        Ok(removed
            .into_iter()
            .filter(|&expires_at| expires_at > now)
            .count() as u64)
    }

    async fn delete_expired(&self) -> Result<u64, Error> {
        let op = "delete_expired";
        let now = now_ms();
        let batch = self.inner.sweep_batch;
        let mut total = 0u64;
        loop {
            // One short write transaction per batch, so writers wait at
            // most one batch for the lock.
            let done = sqlx::query(self.inner.sql.sweep())
                .bind(now)
                .bind(i64::from(batch))
                .execute(&self.inner.pool)
                .await
                .map_err(|e| map_sqlx(op, e))?;
            total += done.rows_affected();
            if done.rows_affected() < u64::from(batch) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
