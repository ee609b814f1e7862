//! How a store is connected: the server, the table, pool settings, and
//! whether to install the table.

use std::time::Duration;

use session_core::Error;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::PostgresStore;
use crate::deadline::{DEFAULT_OPERATION_TIMEOUT, clamp, statement_timeout};
use crate::error::map_sqlx;
use crate::table::TableName;

/// Rows removed per statement by
/// [`delete_expired`](session_core::SessionStore::delete_expired) unless
/// configured otherwise: small enough that each batch holds its row locks
/// only briefly.
pub const DEFAULT_SWEEP_BATCH: u32 = 1_000;

/// Connections in the pool unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long an operation waits for a pooled connection unless configured
/// otherwise: long enough to ride out a server restart, short enough that
/// a request fails while the client still waits.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a pooled connection may sit idle before it is pinged when
/// next acquired. sqlx pings on every acquire by default, which costs each
/// operation a second round trip; under load connections are never idle
/// that long, and after a quiet spell (when the server may have restarted)
/// the ping still weeds out dead ones.
pub const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// How to connect a [`PostgresStore`]: built from a URL, refined with the
/// setters, finished with [`PostgresOptions::connect`].
///
/// ```no_run
/// use session_store_postgres::{PostgresOptions, TableName};
///
/// # async fn example() -> Result<(), session_core::Error> {
/// let store = PostgresOptions::new("postgres://app@db.internal/app")
///     .table(TableName::new("auth.sessions")?)
///     .max_connections(20)
///     .migrate(true) // install the table if it is missing
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    url: String,
    table: TableName,
    max_connections: u32,
    acquire_timeout: Duration,
    operation_timeout: Duration,
    sweep_batch: u32,
    migrate: bool,
}

impl PostgresOptions {
    /// Options for the server and database at `url`
    /// (`postgres://user:password@host:port/database?options`, as
    /// libpq and sqlx read it; `host=/path` names a unix socket's
    /// directory), with the defaults: table [`crate::DEFAULT_TABLE_NAME`],
    /// [`DEFAULT_MAX_CONNECTIONS`], [`DEFAULT_ACQUIRE_TIMEOUT`],
    /// [`DEFAULT_OPERATION_TIMEOUT`], no migration.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table: TableName::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            sweep_batch: DEFAULT_SWEEP_BATCH,
            migrate: false,
        }
    }

    /// The table sessions are kept in.
    pub fn table(mut self, table: TableName) -> Self {
        self.table = table;
        self
    }

    /// The most connections the store's pool opens (at least 1).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation waits for a pooled connection (including
    /// reconnecting after the server went away) before it fails with a
    /// retryable error; never longer than the
    /// [operation timeout](Self::operation_timeout) allows. It also bounds
    /// [`PostgresOptions::connect`]'s first connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long a store call may take, all of it (waiting for a
    /// connection, for its batch, for the server's answer), before it
    /// fails with a retryable [`Error::Backend`] (default
    /// [`DEFAULT_OPERATION_TIMEOUT`], at least 3 ms). The store's
    /// connections also run with a server-side `statement_timeout` of 45%
    /// of it ([`crate::statement_timeout`]), so that the server cancels
    /// and rolls back a statement stuck on a lock and the caller learns
    /// that nothing of it was applied (see the crate docs, "Timeouts").
    /// [`delete_expired`](session_core::SessionStore::delete_expired)
    /// bounds each of its statements by it.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = clamp(timeout);
        self
    }

    /// Rows removed per statement by
    /// [`delete_expired`](session_core::SessionStore::delete_expired) (at
    /// least 1).
    pub fn sweep_batch(mut self, rows: u32) -> Self {
        self.sweep_batch = rows.max(1);
        self
    }

    /// Whether [`PostgresOptions::connect`] installs the table (and its
    /// schema, indexes and version record) when it is missing, as
    /// [`migrate`](crate::migrate) does. Off by default: a store never
    /// changes the database unless asked to.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Connects the pool (connections idle for [`IDLE_PING_AFTER`] or more
    /// are pinged before use, others not; each new connection is set to
    /// the server-side `statement_timeout` that goes with the operation
    /// timeout), migrates if asked to, checks the table's schema version,
    /// and starts the store.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid, the server cannot be
    /// reached, the table is missing (and migration was not asked for), or
    /// it was written by a newer release.
    pub async fn connect(self) -> Result<PostgresStore, Error> {
        let op = "open";
        let connect: PgConnectOptions = self.url.parse().map_err(|e| map_sqlx(op, e))?;
        let statement_ms = statement_timeout(self.operation_timeout)
            .as_millis()
            .to_string();
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                let statement_ms = statement_ms.clone();
                Box::pin(async move {
                    // Bound parameters: `SET` takes none.
                    sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                        .bind(statement_ms)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| map_sqlx(op, e))?;
        if self.migrate {
            crate::schema::migrate(&pool, &self.table).await?;
        }
        PostgresStore::from_parts(pool, self.table, self.sweep_batch, self.operation_timeout).await
    }
}
