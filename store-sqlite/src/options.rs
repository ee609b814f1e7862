//! How a store is opened: where the database lives, the table, durability
//! and pool settings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use session_core::Error;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use crate::SqliteStore;
use crate::deadline::DEFAULT_OPERATION_TIMEOUT;
use crate::digest::{COLLATION, collate};
use crate::error::map_sqlx;

/// The longest accepted table name, in bytes. Leaves room for the suffixes
/// of the companion objects (`<table>_meta`, `<table>_expires_at_idx`, ...)
/// well inside SQLite's limits.
pub const MAX_TABLE_NAME_LEN: usize = 48;

/// The table name used when none is configured.
pub const DEFAULT_TABLE_NAME: &str = "sessions";

/// Rows removed per statement by [`delete_expired`](session_core::SessionStore::delete_expired) unless
/// configured otherwise: small enough that each batch holds the write lock
/// only briefly.
pub const DEFAULT_SWEEP_BATCH: u32 = 1_000;

/// A validated SQL table name: an ASCII letter, then ASCII letters, digits
/// or underscores, at most [`MAX_TABLE_NAME_LEN`] bytes.
///
/// Only names that pass this check are ever written into SQL text, so a
/// configured name cannot inject SQL.
///
/// ```
/// use session_store_sqlite::TableName;
///
/// assert!(TableName::new("web_sessions").is_ok());
/// assert!(TableName::new("1st").is_err());
/// assert!(TableName::new("sessions; DROP TABLE users").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

impl TableName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] when `name` is empty, too long, does not start
    /// with an ASCII letter, or holds anything but ASCII letters, digits and
    /// underscores.
    pub fn new(name: &str) -> Result<Self, InvalidTableName> {
        let mut chars = name.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        let reserved = name.len() >= 7 && name[..7].eq_ignore_ascii_case("sqlite_");
        if starts_with_letter && rest_ok && name.len() <= MAX_TABLE_NAME_LEN && !reserved {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidTableName {
                name: name.to_owned(),
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self(DEFAULT_TABLE_NAME.to_owned())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({})", self.0)
    }
}

/// A table name that [`TableName::new`] rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid table name {name:?}: use an ASCII letter followed by at most \
     {max} ASCII letters, digits or underscores (not starting with `sqlite_`)",
    max = MAX_TABLE_NAME_LEN - 1
)]
pub struct InvalidTableName {
    /// The rejected name.
    pub name: String,
}

/// How hard SQLite works to make a commit survive a power cut.
///
/// Both settings survive a crash *of the process* (a panic, `SIGKILL`, an
/// OOM kill) without losing any acknowledged write: in WAL mode a commit is
/// in the operating system's page cache before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `PRAGMA synchronous = NORMAL` (the default). The WAL is synced at
    /// checkpoints, not at every commit: much faster writes, and the
    /// database can never be corrupted, but a power loss or OS crash may
    /// roll back the last transactions committed before it (a few
    /// sessions saved in the last moments revert or vanish).
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`. Every commit is synced to stable
    /// storage before it is acknowledged: no acknowledged write is lost
    /// even to a power cut, at the cost of an `fsync` per write.
    Full,
}

impl Synchronous {
    fn to_sqlx(self) -> SqliteSynchronous {
        match self {
            Self::Normal => SqliteSynchronous::Normal,
            Self::Full => SqliteSynchronous::Full,
        }
    }
}

/// Where the database lives.
#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Memory,
}

/// Options for opening a [`SqliteStore`]; start from
/// [`SqliteOptions::file`] or [`SqliteOptions::in_memory`].
///
/// Defaults: WAL journal, [`Synchronous::Normal`], every call bounded by
/// [`DEFAULT_OPERATION_TIMEOUT`] (3 s), and so is the busy timeout, a pool
/// of at most 4 connections, the table `sessions`, sweeps in batches of
/// [`DEFAULT_SWEEP_BATCH`] rows.
///
/// ```no_run
/// use std::time::Duration;
/// use session_store_sqlite::{SqliteOptions, Synchronous, TableName};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteOptions::file("sessions.db")
///     .table(TableName::new("web_sessions")?)
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(10))
///     .max_connections(8)
///     .open()
///     .await?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    location: Location,
    table: TableName,
    synchronous: Synchronous,
    /// `None`: the operation timeout.
    busy_timeout: Option<Duration>,
    operation_timeout: Duration,
    max_connections: u32,
    acquire_timeout: Duration,
    sweep_batch: u32,
}

impl SqliteOptions {
    fn with_location(location: Location) -> Self {
        Self {
            location,
            table: TableName::default(),
            synchronous: Synchronous::default(),
            busy_timeout: None,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
            sweep_batch: DEFAULT_SWEEP_BATCH,
        }
    }

    /// A database in the file at `path`, created if missing (its directory
    /// must exist).
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self::with_location(Location::File(path.as_ref().to_owned()))
    }

    /// A private database in memory that every connection of the store's
    /// pool shares.
    ///
    /// A plain `:memory:` database would give each pooled connection its
    /// own empty database. This mode instead opens a uniquely named
    /// database on SQLite's `memdb` VFS, which all connections of this
    /// process opening that name share, and the store keeps one extra
    /// connection open for its whole life so the database is not dropped
    /// while the pool is idle. It is gone when the last clone of the store
    /// is dropped. WAL and `synchronous` do not apply.
    pub fn in_memory() -> Self {
        Self::with_location(Location::Memory)
    }

    /// The table to keep sessions in (default `sessions`). The store also
    /// creates `<table>_meta` for its schema version and two indexes named
    /// after the table.
    pub fn table(mut self, table: TableName) -> Self {
        self.table = table;
        self
    }

    /// Durability of commits (default [`Synchronous::Normal`]; see there
    /// for the trade-off).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for another connection's write lock
    /// before failing with a retryable error (default, and at most: the
    /// [operation timeout](Self::operation_timeout)).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = Some(timeout);
        self
    }

    /// How long a store call may take, all of it (waiting for the writer,
    /// for a write lock another process holds, for a pooled connection,
    /// for SQLite), before it fails with a retryable
    /// [`Error::Backend`] whose source is a [`TimedOut`](crate::TimedOut)
    /// (default [`DEFAULT_OPERATION_TIMEOUT`]). A write whose caller gave
    /// up is never committed afterwards (see the crate docs, "Timeouts").
    /// [`delete_expired`](session_core::SessionStore::delete_expired)
    /// bounds each of its batches by it.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The most connections the pool opens (default 4, at least 1). SQLite
    /// runs one writer at a time; more connections only add concurrent
    /// readers.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a free pooled connection (default 30 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Rows removed per statement by [`delete_expired`](session_core::SessionStore::delete_expired)
    /// (default [`DEFAULT_SWEEP_BATCH`], at least 1).
    pub fn sweep_batch(mut self, rows: u32) -> Self {
        self.sweep_batch = rows.max(1);
        self
    }

    /// Opens the database (creating the file when needed), creates the
    /// schema if it is missing, and returns the store.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the file cannot be opened or created, or
    /// the schema cannot be created or was written by a newer release.
    pub async fn open(self) -> Result<SqliteStore, Error> {
        let busy = self
            .busy_timeout
            .unwrap_or(self.operation_timeout)
            .min(self.operation_timeout);
        let pool_options = SqlitePoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout);
        let (connect, pool_options, keeper) = match &self.location {
            Location::File(path) => {
                let connect = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(self.synchronous.to_sqlx())
                    .busy_timeout(busy);
                (connect, pool_options, None)
            }
            Location::Memory => {
                let connect = SqliteConnectOptions::new()
                    .filename(format!("/session-store-sqlite-{}", unique_suffix()))
                    .vfs("memdb")
                    .create_if_missing(true)
                    .busy_timeout(busy);
                // The keeper holds the shared database open; the pool may
                // then open and close connections freely.
                let keeper = connect.connect().await.map_err(|e| map_sqlx("open", e))?;
                let pool_options = pool_options.idle_timeout(None).max_lifetime(None);
                (connect, pool_options, Some(keeper))
            }
        };
        // The collation of the digest checks (see `crate::digest`), on
        // every connection: the writer's runs the saves, any may inspect.
        let connect = connect.collation(COLLATION, collate);
        let pool = pool_options.connect_lazy_with(connect);
        SqliteStore::from_parts(
            pool,
            self.table,
            self.sweep_batch,
            self.operation_timeout,
            keeper.map(Keeper::new),
        )
        .await
    }
}

/// A connection held only to keep an in-memory database alive.
pub(crate) struct Keeper {
    _conn: std::sync::Mutex<SqliteConnection>,
}

impl Keeper {
    fn new(conn: SqliteConnection) -> Self {
        Self {
            _conn: std::sync::Mutex::new(conn),
        }
    }
}

impl fmt::Debug for Keeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keeper")
    }
}

/// A name no other in-memory store of this process uses: process id, a
/// counter, and the clock.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos}", std::process::id())
}
