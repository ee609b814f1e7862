//! `ts-http-app SYSTEM [--redis-url URL] [--dir DIR]`: the benchmark app
//! of `session-bench-http` on tower-sessions 0.14, for `SYSTEM` one of
//! `ts-moka`, `ts-redis` (fred, `unix://` URL), `ts-sqlite` (a database
//! in `DIR`). Listens on an ephemeral loopback port and prints
//! `LISTENING 127.0.0.1:PORT` as its first line of output; runs until
//! killed.
//!
//! The routes are the same as in `bench-http/src/app.rs` (our side), with
//! tower-sessions' defaults as a new user would have them:
//!
//! * `POST /login`: a fresh session: `cycle_id` (the fixation defence
//!   tower-sessions' docs recommend at login), the user name and a
//!   counter of 0;
//! * `GET /counter`: read-modify-write of the counter, answers the new
//!   value;
//! * `GET /read`: read-only, answers the counter;
//! * `GET /plain`: never touches the session;
//! * `GET /hit/{c}`: read-modify-write of the counter `hit-{c}`;
//! * `GET /hits`: the sum of `hit-0` … `hit-63`.

use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tower_sessions::{Session, SessionManagerLayer, SessionStore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Entries of the moka cache: more than the benchmark ever creates.
const MOKA_ENTRIES: u64 = 10_000_000;

static USERS: AtomicU64 = AtomicU64::new(0);

fn internal(_: tower_sessions::session::Error) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn login(session: Session) -> Result<&'static str, StatusCode> {
    let n = USERS.fetch_add(1, Ordering::Relaxed);
    session.cycle_id().await.map_err(internal)?;
    session
        .insert("user", format!("user-{n}"))
        .await
        .map_err(internal)?;
    session.insert("counter", 0_u64).await.map_err(internal)?;
    Ok("welcome")
}

async fn counter(session: Session) -> Result<String, StatusCode> {
    let n = session
        .get::<u64>("counter")
        .await
        .map_err(internal)?
        .unwrap_or(0)
        + 1;
    session.insert("counter", n).await.map_err(internal)?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, StatusCode> {
    let n = session
        .get::<u64>("counter")
        .await
        .map_err(internal)?
        .unwrap_or(0);
    Ok(n.to_string())
}

async fn hit(session: Session, Path(c): Path<u32>) -> Result<String, StatusCode> {
    let key = format!("hit-{c}");
    let n = session
        .get::<u64>(&key)
        .await
        .map_err(internal)?
        .unwrap_or(0)
        + 1;
    session.insert(&key, n).await.map_err(internal)?;
    Ok(n.to_string())
}

async fn hits(session: Session) -> Result<String, StatusCode> {
    let mut sum = 0;
    for c in 0..64 {
        sum += session
            .get::<u64>(&format!("hit-{c}"))
            .await
            .map_err(internal)?
            .unwrap_or(0);
    }
    Ok(sum.to_string())
}

async fn plain() -> &'static str {
    "ok"
}

fn app<S: SessionStore + Clone>(store: S) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/counter", get(counter))
        .route("/read", get(read))
        .route("/plain", get(plain))
        .route("/hit/{c}", get(hit))
        .route("/hits", get(hits))
        .layer(SessionManagerLayer::new(store))
}

async fn sqlite(dir: &std::path::Path) -> Result<Router, BoxError> {
    // The same durability and pool size as our `SqliteStore::open`
    // defaults (as in bench/tower-sessions-sqlx).
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(dir.join("tower-sessions-http.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    let store = tower_sessions_sqlx_store::SqliteStore::new(pool);
    store.migrate().await?;
    Ok(app(store))
}

async fn redis(url: &str) -> Result<Router, BoxError> {
    use fred::interfaces::ClientLike as _;
    let path = url
        .strip_prefix("unix://")
        .ok_or("expected a unix:// URL")?;
    let config = fred::types::config::Config::from_url_unix(&format!("redis+unix://{path}"))?;
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await?;
    Ok(app(tower_sessions_redis_store::RedisStore::new(client)))
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (system, rest) = args
        .split_first()
        .ok_or("usage: ts-http-app SYSTEM [--redis-url URL] [--dir DIR]")?;
    let (mut redis_url, mut dir) = (None, None);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--redis-url" => redis_url = Some(value.clone()),
            "--dir" => dir = Some(std::path::PathBuf::from(value)),
            other => return Err(format!("unknown flag {other:?}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let router = match system.as_str() {
            "ts-moka" => app(tower_sessions_moka_store::MokaStore::new(Some(
                MOKA_ENTRIES,
            ))),
            "ts-redis" => redis(redis_url.as_deref().ok_or("--redis-url needed")?).await?,
            "ts-sqlite" => sqlite(dir.as_deref().ok_or("--dir needed")?).await?,
            other => return Err(format!("unknown system {other:?}").into()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("LISTENING {}", listener.local_addr()?);
        axum::serve(listener, router).await?;
        Ok(())
    })
}
