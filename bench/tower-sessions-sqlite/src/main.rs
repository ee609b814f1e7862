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
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{Ops, Ready, SESSIONS, Step, TTL, now_ms, op, ts_data, ts_id};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_sqlx_store::SqliteStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn expiry() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + TTL
}

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

    let now = now_ms();
    let mut bytes = 0u64;
    for i in 0..SESSIONS {
        let mut record = Record {
            id: Id(ts_id(i)),
            data: ts_data(i, now),
            expiry_date: expiry(),
        };
        bytes += serde_json::to_vec(&record.data)?.len() as u64;
        store.create(&mut record).await?;
        if record.id != Id(ts_id(i)) {
            return Err(format!("session {i}: id collision").into());
        }
    }

    let s = store.clone();
    let cycle = op(move |step: Step| {
        let store = s.clone();
        async move {
            let mut record = store
                .load(&Id(ts_id(step.index)))
                .await
                .map_err(|e| format!("load: {e}"))?
                .ok_or("load found nothing")?;
            record.data.insert("last_seen".to_owned(), now_ms().into());
            record.expiry_date = expiry();
            store.save(&record).await.map_err(|e| format!("save: {e}"))
        }
    });
    let s = store.clone();
    let load = op(move |step: Step| {
        let store = s.clone();
        async move {
            match store.load(&Id(ts_id(step.index))).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("load found nothing".to_owned()),
                Err(e) => Err(format!("load: {e}")),
            }
        }
    });
    let template = Arc::new(Record {
        id: Id(ts_id(SESSIONS)),
        data: ts_data(SESSIONS, now),
        expiry_date: expiry(),
    });
    let create = op(move |step: Step| {
        let store = store.clone();
        let template = Arc::clone(&template);
        async move {
            let mut record = Record::clone(&template);
            let id = Id(ts_id(step.index));
            record.id = id;
            record.expiry_date = expiry();
            store
                .create(&mut record)
                .await
                .map_err(|e| format!("create: {e}"))?;
            if record.id == id {
                Ok(())
            } else {
                Err("create: id was taken".to_owned())
            }
        }
    });
    let ready = Ready {
        system: "ts-sqlite".to_owned(),
        sessions: SESSIONS,
        payload_bytes: bytes / SESSIONS,
        populate_secs: started.elapsed().as_secs_f64(),
    };
    Ok((
        Ops {
            cycle,
            create,
            load,
        },
        ready,
    ))
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
