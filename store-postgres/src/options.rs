//! How a store is connected: the server, the table, pool settings, and
//! whether to install the table.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use session_core::Error;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::PostgresStore;
use crate::error::map_sqlx;

/// The longest accepted schema or table name, in bytes. Leaves room for
/// the suffixes of the companion objects (`<table>_meta`,
/// `<table>_expires_at_idx`, ...) inside PostgreSQL's 63-byte identifiers.
pub const MAX_NAME_LEN: usize = 48;

/// The table name used when none is configured (in the connection's
/// `search_path`, usually `public`).
pub const DEFAULT_TABLE_NAME: &str = "sessions";

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

/// A validated table name, optionally schema-qualified (`sessions`,
/// `auth.sessions`): each part an ASCII letter or underscore, then ASCII
/// letters, digits or underscores, at most [`MAX_NAME_LEN`] bytes.
///
/// Parts are always double-quoted in SQL, so they keep their case
/// (`Sessions` and `sessions` are different tables). Only names that pass
/// this check are ever written into SQL text, so a configured name cannot
/// inject SQL.
///
/// ```
/// use session_store_postgres::TableName;
///
/// assert!(TableName::new("web_sessions").is_ok());
/// assert_eq!(TableName::new("auth.sessions")?.schema(), Some("auth"));
/// assert!(TableName::new("1st").is_err());
/// assert!(TableName::new("a.b.c").is_err());
/// assert!(TableName::new("sessions; DROP TABLE users").is_err());
/// # Ok::<(), session_store_postgres::InvalidTableName>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

fn valid_part(part: &str) -> bool {
    let mut chars = part.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && part.len() <= MAX_NAME_LEN
}

impl TableName {
    /// Validates `name`: `table` or `schema.table`.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] when a part is empty, too long, does not start
    /// with an ASCII letter or underscore, or holds anything but ASCII
    /// letters, digits and underscores; or when there is more than one dot.
    pub fn new(name: &str) -> Result<Self, InvalidTableName> {
        let invalid = || InvalidTableName {
            name: name.to_owned(),
        };
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        if !valid_part(table) || schema.is_some_and(|s| !valid_part(s)) {
            return Err(invalid());
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The schema part, if the name has one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table part.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The name of a companion object (`<table><suffix>`) in the same
    /// schema, quoted for SQL.
    pub(crate) fn quoted_with(&self, suffix: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}{suffix}\"", self.table),
            None => format!("\"{}{suffix}\"", self.table),
        }
    }

    /// The name quoted for SQL: `"schema"."table"` or `"table"`.
    pub(crate) fn quoted(&self) -> String {
        self.quoted_with("")
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self {
            schema: None,
            table: DEFAULT_TABLE_NAME.to_owned(),
        }
    }
}

impl FromStr for TableName {
    type Err = InvalidTableName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({self})")
    }
}

/// A table name that [`TableName::new`] rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid table name {name:?}: use `table` or `schema.table`, each part an ASCII letter or \
     underscore followed by at most {max} ASCII letters, digits or underscores",
    max = MAX_NAME_LEN - 1
)]
pub struct InvalidTableName {
    /// The rejected name.
    pub name: String,
}

impl From<InvalidTableName> for Error {
    fn from(e: InvalidTableName) -> Self {
        Error::backend("open", false, e)
    }
}

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
    sweep_batch: u32,
    migrate: bool,
}

impl PostgresOptions {
    /// Options for the server and database at `url`
    /// (`postgres://user:password@host:port/database?options`, as
    /// libpq and sqlx read it; `host=/path` names a unix socket's
    /// directory), with the defaults: table [`DEFAULT_TABLE_NAME`],
    /// [`DEFAULT_MAX_CONNECTIONS`], [`DEFAULT_ACQUIRE_TIMEOUT`], no
    /// migration.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table: TableName::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
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
    /// retryable error.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
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
    /// are pinged before use, others not), migrates if asked to, checks the table's schema
    /// version, and starts the store.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the URL is invalid, the server cannot be
    /// reached, the table is missing (and migration was not asked for), or
    /// it was written by a newer release.
    pub async fn connect(self) -> Result<PostgresStore, Error> {
        let op = "open";
        let connect: PgConnectOptions = self.url.parse().map_err(|e| map_sqlx(op, e))?;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
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
        PostgresStore::from_parts(pool, self.table, self.sweep_batch).await
    }
}
