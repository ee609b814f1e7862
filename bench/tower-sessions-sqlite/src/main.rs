//! `ts-sqlite-worker --dir DIR`: tower-sessions-sqlx-store's SQLite store
//! as a `session-bench` worker (see `bench/src/proto.rs` for the protocol
//! and the measurement loop, compiled in here unchanged).
//!
//! The pool is opened with the same durability and pool size as our
//! `SqliteStore::open` defaults: WAL journal, `synchronous = NORMAL`, a
//! 5 s busy timeout, at most 4 connections.

#[path = "../../src/proto.rs"]
mod proto;

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use proto::{Ops, Ready, SESSIONS};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tower_sessions_sqlx_store::SqliteStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn setup(dir: &std::path::Path) -> Result<(Ops, Ready), BoxError> {
    let started = Instant::now();
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

    let (ops, payload_bytes) = ops(store).await?;
    let ready = Ready {
        system: "ts-sqlite".to_owned(),
        sessions: SESSIONS,
        payload_bytes,
        populate_secs: started.elapsed().as_secs_f64(),
    };
    Ok((ops, ready))
}

/// The same setup and operations as every other tower-sessions store of
/// the benchmark (`proto::ts_ops!`).
async fn ops(store: SqliteStore) -> Result<(Ops, u64), BoxError> {
    proto::ts_ops!(tower_sessions_core, store)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.as_slice() {
        [flag, dir] if flag == "--dir" => std::path::PathBuf::from(dir),
        _ => return Err("usage: ts-sqlite-worker --dir DIR".into()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (ops, ready) = setup(&dir).await?;
        proto::serve(ops, ready)
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })
    })
}
