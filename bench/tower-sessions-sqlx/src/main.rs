//! `ts-sqlx-worker sqlite --dir DIR` and `ts-sqlx-worker postgres --url
//! URL --pool N`: tower-sessions-sqlx-store's SQLite and PostgreSQL stores
//! as `session-bench` workers (see `bench/src/proto.rs` for the protocol
//! and the measurement loop, compiled in here unchanged).
//!
//! SQLite: the pool is opened with the same durability and pool size as
//! our `SqliteStore::open` defaults: WAL journal, `synchronous = NORMAL`, a
//! 5 s busy timeout, at most 4 connections.
//!
//! PostgreSQL: a `PgPool` of at most N connections (the driver gives ours
//! the same N) to the driver's throwaway server, `PostgresStore::new(pool)`
//! and `migrate()`: its default schema `tower_sessions`, table `session`.

#[path = "../../src/proto.rs"]
mod proto;

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use proto::{Ops, Ready, SESSIONS};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: ts-sqlx-worker sqlite --dir DIR | ts-sqlx-worker postgres --url URL --pool N";

/// What to run, from the command line.
enum Target {
    /// `sqlite --dir DIR`: a database file in DIR.
    Sqlite(std::path::PathBuf),
    /// `postgres --url URL --pool N`: a pool of at most N connections.
    Postgres(String, u32),
}

impl Target {
    fn parse(args: &[String]) -> Result<Self, BoxError> {
        match args {
            [kind, flag, dir] if kind == "sqlite" && flag == "--dir" => {
                Ok(Self::Sqlite(std::path::PathBuf::from(dir)))
            }
            [kind, f1, url, f2, pool] if kind == "postgres" && f1 == "--url" && f2 == "--pool" => {
                let pool = pool.parse().map_err(|e| format!("--pool {pool:?}: {e}"))?;
                Ok(Self::Postgres(url.clone(), pool))
            }
            _ => Err(USAGE.into()),
        }
    }

    /// The system's name in the benchmark.
    fn system(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "ts-sqlite",
            Self::Postgres(..) => "ts-postgres",
        }
    }
}

async fn setup(target: &Target) -> Result<(Ops, Ready), BoxError> {
    let started = Instant::now();
    let (ops, payload_bytes) = match target {
        Target::Sqlite(dir) => sqlite(dir).await?,
        Target::Postgres(url, pool) => postgres(url, *pool).await?,
    };
    let ready = Ready {
        system: target.system().to_owned(),
        sessions: SESSIONS,
        payload_bytes,
        populate_secs: started.elapsed().as_secs_f64(),
    };
    Ok((ops, ready))
}

async fn sqlite(dir: &std::path::Path) -> Result<(Ops, u64), BoxError> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(dir.join("tower-sessions.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    let store = SqliteStore::new(pool);
    store.migrate().await?;
    ops_sqlite(store).await
}

async fn postgres(url: &str, max_connections: u32) -> Result<(Ops, u64), BoxError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(url)
        .await?;
    let store = PostgresStore::new(pool);
    store.migrate().await?;
    ops_postgres(store).await
}

/// The same setup and operations as every other tower-sessions store of
/// the benchmark (`proto::ts_ops!`).
async fn ops_sqlite(store: SqliteStore) -> Result<(Ops, u64), BoxError> {
    proto::ts_ops!(tower_sessions_core, store)
}

/// The same setup and operations as every other tower-sessions store of
/// the benchmark (`proto::ts_ops!`).
async fn ops_postgres(store: PostgresStore) -> Result<(Ops, u64), BoxError> {
    proto::ts_ops!(tower_sessions_core, store)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = Target::parse(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (ops, ready) = setup(&target).await?;
        proto::serve(ops, ready)
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })
    })
}
