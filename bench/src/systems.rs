//! The systems `session-bench worker` runs (all but tower-sessions'
//! SQLite and PostgreSQL stores, which live in `bench/tower-sessions-sqlx`):
//! setup, pre-population, and the three operations of each.
//!
//! Every system does per operation what the README's "Benchmarks" section
//! and `docs/bench/results.md` say (the text is in `report.rs`, next to
//! the table).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::{key_of, payload, session, touch_for_save, user_of};
use session_core::{Record, SessionStore, Timestamp};
use session_store_memory::MemoryStore;
use session_store_redis::RedisStore;
use session_store_redis::redis::{self, Value};
use session_store_sqlite::SqliteStore;

use crate::postgres;

use crate::proto::{self, Ops, Ready, SESSIONS, Step, TTL, op, ts_data, ts_id};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Capacity given to our memory store: far above what any run writes, so
/// nothing is evicted.
pub(crate) const MEMORY_STORE_BYTES: u64 = 4 << 30;

/// Capacity (entries) of tower-sessions' moka store and the raw moka
/// cache: likewise never reached.
pub(crate) const MOKA_ENTRIES: u64 = 10_000_000;

/// Concurrent tasks used to pre-populate.
const POPULATE_TASKS: u64 = 32;

const OURS_REDIS_PREFIX: &str = "bench-ours:";
const RAW_REDIS_PREFIX: &str = "bench-raw:s:";

/// What a worker is told besides its system's name.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerArgs {
    /// `unix:///path/to/redis.sock` for the Redis systems.
    pub(crate) redis_url: Option<String>,
    /// A directory for the SQLite database files.
    pub(crate) dir: Option<std::path::PathBuf>,
    /// A sqlx URL of the PostgreSQL server, for the PostgreSQL systems.
    pub(crate) pg_url: Option<String>,
}

/// Runs `f(i)` for every `i < n`, [`POPULATE_TASKS`] at a time.
async fn for_each_index<F, Fut>(n: u64, f: F) -> Result<(), BoxError>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for first in 0..POPULATE_TASKS {
        let f = f.clone();
        set.spawn(async move {
            let mut i = first;
            while i < n {
                f(i).await?;
                i += POPULATE_TASKS;
            }
            Ok::<(), BoxError>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    Ok(())
}

/// Creates the [`SESSIONS`] pre-populated sessions in one of our stores.
async fn populate<S: SessionStore + Clone>(store: &S, now: Timestamp) -> Result<(), BoxError> {
    let store = store.clone();
    for_each_index(SESSIONS, move |i| {
        let store = store.clone();
        async move {
            store.create(&session(i, now)?).await?;
            Ok(())
        }
    })
    .await
}

/// Each pre-populated session's encoded payload, by index.
type Payloads = Arc<Vec<Arc<[u8]>>>;

/// The pre-encoded JSON payload of every pre-populated session (for the
/// raw baselines), and their average length.
fn payloads(now: Timestamp) -> Result<(Payloads, u64), BoxError> {
    let mut out = Vec::with_capacity(SESSIONS as usize);
    for i in 0..SESSIONS {
        out.push(Arc::<[u8]>::from(payload(&session(i, now)?)?));
    }
    let avg = out.iter().map(|p| p.len() as u64).sum::<u64>() / SESSIONS;
    Ok((Arc::new(out), avg))
}

fn get_payload(payloads: &[Arc<[u8]>], i: u64) -> Result<Arc<[u8]>, String> {
    payloads
        .get(i as usize)
        .cloned()
        .ok_or_else(|| format!("key index {i} out of range"))
}

/// Sets up `system`, pre-populates it, and returns its operations and
/// its `Ready` line.
pub(crate) async fn setup(system: &str, args: &WorkerArgs) -> Result<(Ops, Ready), BoxError> {
    let started = Instant::now();
    let (ops, payload_bytes) = match system {
        "ours-memory" => ours(MemoryStore::new(MEMORY_STORE_BYTES)).await?,
        "ours-redis" | "ours-valkey" => {
            let url = args.redis_url.as_deref().ok_or("--redis-url needed")?;
            let store = RedisStore::builder(url)
                .prefix(OURS_REDIS_PREFIX)
                .connect()
                .await?;
            ours(store).await?
        }
        "ours-sqlite" => {
            let dir = args.dir.as_deref().ok_or("--dir needed")?;
            ours(SqliteStore::open(dir.join("ours.db")).await?).await?
        }
        "ts-memory" => ts::memory().await?,
        "ts-moka" => ts::moka().await?,
        "ts-redis" | "ts-valkey" => {
            let url = args.redis_url.as_deref().ok_or("--redis-url needed")?;
            ts::redis(url).await?
        }
        "raw-moka" => raw_moka().await?,
        "raw-redis" | "raw-valkey" => {
            let url = args.redis_url.as_deref().ok_or("--redis-url needed")?;
            raw_redis(url).await?
        }
        "raw-sqlite" => {
            let dir = args.dir.as_deref().ok_or("--dir needed")?;
            raw_sqlite(dir).await?
        }
        "ours-postgres" => {
            let url = args.pg_url.as_deref().ok_or("--pg-url needed")?;
            crate::postgres::ours(url).await?
        }
        "raw-postgres" => {
            let url = args.pg_url.as_deref().ok_or("--pg-url needed")?;
            raw_postgres(url).await?
        }
        other => return Err(format!("unknown system {other:?}").into()),
    };
    let ready = Ready {
        system: system.to_owned(),
        sessions: SESSIONS,
        payload_bytes,
        populate_secs: started.elapsed().as_secs_f64(),
    };
    Ok((ops, ready))
}

/// One of our stores, through the `SessionStore` trait only.
pub(crate) async fn ours<S: SessionStore + Clone>(store: S) -> Result<(Ops, u64), BoxError> {
    let now = Timestamp::now();
    let (_, payload_bytes) = payloads(now)?;
    populate(&store, now).await?;
    let s = store.clone();
    let cycle = op(move |step: Step| {
        let store = s.clone();
        async move {
            let mut record = store
                .load(&key_of(step.index))
                .await
                .map_err(|e| format!("load: {e}"))?
                .ok_or("load found nothing")?;
            touch_for_save(&mut record);
            store
                .save(&record)
                .await
                .map(drop)
                .map_err(|e| format!("save: {e}"))
        }
    });
    let s = store.clone();
    let load = op(move |step: Step| {
        let store = s.clone();
        async move {
            match store.load(&key_of(step.index)).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("load found nothing".to_owned()),
                Err(e) => Err(format!("load: {e}")),
            }
        }
    });
    let template = Arc::new(session(SESSIONS, now)?);
    let create = op(move |step: Step| {
        let store = store.clone();
        let template = Arc::clone(&template);
        async move {
            let now = Timestamp::now();
            let mut record = Record::clone(&template);
            record.key = key_of(step.index);
            record.user = Some(user_of(step.index));
            record.created_at = now;
            record.expires_at = now.saturating_add(TTL);
            store
                .create(&record)
                .await
                .map_err(|e| format!("create: {e}"))
        }
    });
    Ok((
        Ops {
            cycle,
            create,
            load,
        },
        payload_bytes,
    ))
}

/// tower-sessions' stores, through their `SessionStore` trait only. The
/// memory store is on tower-sessions-core 0.15, moka and Redis on 0.14:
/// the same code is instantiated for each.
mod ts {
    use super::*;
    use crate::proto::ts_ops;

    pub(super) async fn memory() -> Result<(Ops, u64), BoxError> {
        ts_ops!(
            tower_sessions_core_15,
            tower_sessions_memory_store::MemoryStore::default()
        )
    }

    pub(super) async fn moka() -> Result<(Ops, u64), BoxError> {
        ts_ops!(
            tower_sessions_core_14,
            tower_sessions_moka_store::MokaStore::new(Some(MOKA_ENTRIES))
        )
    }

    pub(super) async fn redis(url: &str) -> Result<(Ops, u64), BoxError> {
        use fred::interfaces::ClientLike as _;
        let path = url
            .strip_prefix("unix://")
            .ok_or("expected a unix:// URL")?;
        let config = fred::types::config::Config::from_url_unix(&format!("redis+unix://{path}"))?;
        let client = fred::clients::Client::new(config, None, None, None);
        client.init().await?;
        ts_ops!(
            tower_sessions_core_14,
            tower_sessions_redis_store::RedisStore::new(client)
        )
    }
}

/// moka's future `Cache` of the serialised bytes (shared `Arc<[u8]>`
/// values), with a cache-wide time-to-live; no session logic.
async fn raw_moka() -> Result<(Ops, u64), BoxError> {
    let now = Timestamp::now();
    let (payloads, payload_bytes) = payloads(now)?;
    let cache: moka::future::Cache<[u8; 32], Arc<[u8]>> = moka::future::Cache::builder()
        .max_capacity(MOKA_ENTRIES)
        .time_to_live(TTL)
        .build();
    for i in 0..SESSIONS {
        cache
            .insert(*key_of(i).as_bytes(), get_payload(&payloads, i)?)
            .await;
    }
    let (c, p) = (cache.clone(), Arc::clone(&payloads));
    let cycle = op(move |step: Step| {
        let (cache, payloads) = (c.clone(), Arc::clone(&p));
        async move {
            let key = *key_of(step.index).as_bytes();
            cache.get(&key).await.ok_or("get found nothing")?;
            cache.insert(key, get_payload(&payloads, step.index)?).await;
            Ok::<(), String>(())
        }
    });
    let c = cache.clone();
    let load = op(move |step: Step| {
        let cache = c.clone();
        async move {
            cache
                .get(key_of(step.index).as_bytes())
                .await
                .map(drop)
                .ok_or("get found nothing")
        }
    });
    let template: Arc<[u8]> = Arc::from(payload(&session(SESSIONS, now)?)?);
    let create = op(move |step: Step| {
        let cache = cache.clone();
        let bytes = Arc::clone(&template);
        async move {
            cache.insert(*key_of(step.index).as_bytes(), bytes).await;
            Ok::<(), String>(())
        }
    });
    Ok((
        Ops {
            cycle,
            create,
            load,
        },
        payload_bytes,
    ))
}

fn raw_redis_key(i: u64) -> String {
    format!("{RAW_REDIS_PREFIX}{}", key_of(i).to_hex())
}

/// `Ok(())` for the `+OK` of a `SET`.
fn expect_ok(what: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Okay => Ok(()),
        Value::Nil => Err(format!("{what}: not written (nil)")),
        other => Err(format!("{what}: unexpected reply {other:?}")),
    }
}

/// The `redis` crate on one multiplexed connection: GET, SET PX, SET NX
/// PX of the serialised bytes.
async fn raw_redis(url: &str) -> Result<(Ops, u64), BoxError> {
    let now = Timestamp::now();
    let (payloads, payload_bytes) = payloads(now)?;
    let client = redis::Client::open(url)?;
    let conn = client.get_multiplexed_async_connection().await?;
    let ttl_ms = TTL.as_millis() as u64;
    {
        let (conn, payloads) = (conn.clone(), Arc::clone(&payloads));
        for_each_index(SESSIONS, move |i| {
            let (mut conn, payloads) = (conn.clone(), Arc::clone(&payloads));
            async move {
                let reply: Value = redis::cmd("SET")
                    .arg(raw_redis_key(i))
                    .arg(&*get_payload(&payloads, i)?)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await?;
                expect_ok("populate", &reply)?;
                Ok(())
            }
        })
        .await?;
    }
    let (c, p) = (conn.clone(), Arc::clone(&payloads));
    let cycle = op(move |step: Step| {
        let (mut conn, payloads) = (c.clone(), Arc::clone(&p));
        async move {
            let key = raw_redis_key(step.index);
            let got: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("get: {e}"))?;
            got.ok_or("get found nothing")?;
            let reply: Value = redis::cmd("SET")
                .arg(&key)
                .arg(&*get_payload(&payloads, step.index)?)
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("set: {e}"))?;
            expect_ok("set", &reply)
        }
    });
    let c = conn.clone();
    let load = op(move |step: Step| {
        let mut conn = c.clone();
        async move {
            let got: Option<Vec<u8>> = redis::cmd("GET")
                .arg(raw_redis_key(step.index))
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("get: {e}"))?;
            got.map(drop).ok_or_else(|| "get found nothing".to_owned())
        }
    });
    let template: Arc<[u8]> = Arc::from(payload(&session(SESSIONS, now)?)?);
    let create = op(move |step: Step| {
        let mut conn = conn.clone();
        let bytes = Arc::clone(&template);
        async move {
            let reply: Value = redis::cmd("SET")
                .arg(raw_redis_key(step.index))
                .arg(&*bytes)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("set nx: {e}"))?;
            expect_ok("set nx", &reply)
        }
    });
    Ok((
        Ops {
            cycle,
            create,
            load,
        },
        payload_bytes,
    ))
}

const RAW_SQL_LOAD: &str = "SELECT data FROM sessions WHERE key = ?1 AND expires_at > ?2";
const RAW_SQL_SAVE: &str = "UPDATE sessions SET data = ?2, expires_at = ?3 WHERE key = ?1";
const RAW_SQL_CREATE: &str = "INSERT INTO sessions (key, user, data, version, created_at, \
                              expires_at) VALUES (?1, ?2, ?3, 0, ?4, ?5)";

/// sqlx 0.9 statements on our store's table (created, and pre-populated,
/// by `SqliteStore::open` + `create` on its own file), through the pool
/// that store opened: same connection settings (WAL, synchronous NORMAL,
/// 5 s busy timeout, at most 4 connections).
async fn raw_sqlite(dir: &std::path::Path) -> Result<(Ops, u64), BoxError> {
    let now = Timestamp::now();
    let (payloads, payload_bytes) = payloads(now)?;
    let owner = SqliteStore::open(dir.join("raw.db")).await?;
    populate(&owner, now).await?;
    let pool = owner.pool().clone();
    // The store's sweeper is never started; `owner` only made the schema.
    drop(owner);
    let texts: Arc<Vec<String>> = Arc::new(
        payloads
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    );
    let expires = || Timestamp::now().saturating_add(TTL).as_millis();
    let (pl, t) = (pool.clone(), Arc::clone(&texts));
    let cycle = op(move |step: Step| {
        let (pool, texts) = (pl.clone(), Arc::clone(&t));
        async move {
            let key = key_of(step.index);
            let data: Option<String> = sqlx::query_scalar(RAW_SQL_LOAD)
                .bind(key.as_bytes().as_slice())
                .bind(Timestamp::now().as_millis())
                .fetch_optional(&pool)
                .await
                .map_err(|e| format!("select: {e}"))?;
            data.ok_or("select found nothing")?;
            let text = texts
                .get(step.index as usize)
                .ok_or("key index out of range")?;
            let done = sqlx::query(RAW_SQL_SAVE)
                .bind(key.as_bytes().as_slice())
                .bind(text.as_str())
                .bind(expires())
                .execute(&pool)
                .await
                .map_err(|e| format!("update: {e}"))?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(format!("update changed {} rows", done.rows_affected()))
            }
        }
    });
    let pl = pool.clone();
    let load = op(move |step: Step| {
        let pool = pl.clone();
        async move {
            let data: Option<String> = sqlx::query_scalar(RAW_SQL_LOAD)
                .bind(key_of(step.index).as_bytes().as_slice())
                .bind(Timestamp::now().as_millis())
                .fetch_optional(&pool)
                .await
                .map_err(|e| format!("select: {e}"))?;
            data.map(drop)
                .ok_or_else(|| "select found nothing".to_owned())
        }
    });
    let template = Arc::new(String::from_utf8(payload(&session(SESSIONS, now)?)?)?);
    let create = op(move |step: Step| {
        let pool = pool.clone();
        let text = Arc::clone(&template);
        async move {
            let now = Timestamp::now();
            let done = sqlx::query(RAW_SQL_CREATE)
                .bind(key_of(step.index).as_bytes().as_slice())
                .bind(user_of(step.index))
                .bind(text.as_str())
                .bind(now.as_millis())
                .bind(now.saturating_add(TTL).as_millis())
                .execute(&pool)
                .await
                .map_err(|e| format!("insert: {e}"))?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(format!("insert changed {} rows", done.rows_affected()))
            }
        }
    });
    Ok((
        Ops {
            cycle,
            create,
            load,
        },
        payload_bytes,
    ))
}

const RAW_PG_LOAD: &str = "SELECT data::text FROM bench_raw WHERE key = $1 AND expires_at > $2";
const RAW_PG_SAVE: &str = "UPDATE bench_raw SET data = $2::json, expires_at = $3 WHERE key = $1";
const RAW_PG_CREATE: &str = "INSERT INTO bench_raw (key, \"user\", data, version, created_at, \
                             expires_at) VALUES ($1, $2, $3::json, 0, $4, $5)";

/// `Ok(())` when a statement changed exactly one row.
fn one_row(what: &str, rows: u64) -> Result<(), String> {
    if rows == 1 {
        Ok(())
    } else {
        Err(format!("{what} changed {rows} rows"))
    }
}

/// sqlx 0.9 statements on our store's table (created, and pre-populated,
/// by our `PostgresStore` with `migrate(true)` + `create`, in table
/// [`postgres::RAW_TABLE`]), through the pool that store opened: same
/// connection settings, [`postgres::POOL`] connections. The same work as
/// `raw_sqlite`, each statement an autocommit statement on a pooled
/// connection.
async fn raw_postgres(url: &str) -> Result<(Ops, u64), BoxError> {
    let now = Timestamp::now();
    let (payloads, payload_bytes) = payloads(now)?;
    let owner = postgres::connect(url, postgres::RAW_TABLE).await?;
    populate(&owner, now).await?;
    let pool = owner.pool().clone();
    // No sweeper was started; `owner` only made and filled the table.
    drop(owner);
    let texts: Arc<Vec<String>> = Arc::new(
        payloads
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    );
    let expires = || Timestamp::now().saturating_add(TTL).as_millis();
    let (pl, t) = (pool.clone(), Arc::clone(&texts));
    let cycle = op(move |step: Step| {
        let (pool, texts) = (pl.clone(), Arc::clone(&t));
        async move {
            let key = key_of(step.index);
            let data: Option<String> = sqlx::query_scalar(RAW_PG_LOAD)
                .bind(key.as_bytes().as_slice())
                .bind(Timestamp::now().as_millis())
                .fetch_optional(&pool)
                .await
                .map_err(|e| format!("select: {e}"))?;
            data.ok_or("select found nothing")?;
            let text = texts
                .get(step.index as usize)
                .ok_or("key index out of range")?;
            let done = sqlx::query(RAW_PG_SAVE)
                .bind(key.as_bytes().as_slice())
                .bind(text.as_str())
                .bind(expires())
                .execute(&pool)
                .await
                .map_err(|e| format!("update: {e}"))?;
            one_row("update", done.rows_affected())
        }
    });
    let pl = pool.clone();
    let load = op(move |step: Step| {
        let pool = pl.clone();
        async move {
            let data: Option<String> = sqlx::query_scalar(RAW_PG_LOAD)
                .bind(key_of(step.index).as_bytes().as_slice())
                .bind(Timestamp::now().as_millis())
                .fetch_optional(&pool)
                .await
                .map_err(|e| format!("select: {e}"))?;
            data.map(drop)
                .ok_or_else(|| "select found nothing".to_owned())
        }
    });
    let template = Arc::new(String::from_utf8(payload(&session(SESSIONS, now)?)?)?);
    let create = op(move |step: Step| {
        let pool = pool.clone();
        let text = Arc::clone(&template);
        async move {
            let now = Timestamp::now();
            let done = sqlx::query(RAW_PG_CREATE)
                .bind(key_of(step.index).as_bytes().as_slice())
                .bind(user_of(step.index).as_bytes())
                .bind(text.as_str())
                .bind(now.as_millis())
                .bind(now.saturating_add(TTL).as_millis())
                .execute(&pool)
                .await
                .map_err(|e| format!("insert: {e}"))?;
            one_row("insert", done.rows_affected())
        }
    });
    Ok((
        Ops {
            cycle,
            create,
            load,
        },
        payload_bytes,
    ))
}

/// `session-bench memory`: the resident-set growth of inserting `n`
/// sessions into a fresh in-process store, in this fresh process.
/// Returns `(rss_before, rss_after, entries)`.
pub(crate) async fn memory_growth(system: &str, n: u64) -> Result<(u64, u64, u64), BoxError> {
    let now = Timestamp::now();
    let now_ms = now.as_millis();
    let expiry = time::OffsetDateTime::now_utc() + TTL;
    // Let the runtime and allocator settle before the baseline.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match system {
        "ours-memory" => {
            let store = MemoryStore::new(MEMORY_STORE_BYTES);
            let before = proto::rss_bytes()?;
            for i in 0..n {
                store.create(&session(i, now)?).await?;
            }
            store.run_pending_tasks().await;
            Ok((before, proto::rss_bytes()?, store.entry_count()))
        }
        "ts-memory" => {
            use tower_sessions_core_15::SessionStore as _;
            use tower_sessions_core_15::session::{Id, Record};
            let store = tower_sessions_memory_store::MemoryStore::default();
            let before = proto::rss_bytes()?;
            for i in 0..n {
                let mut record = Record {
                    id: Id(ts_id(i)),
                    data: ts_data(i, now_ms),
                    expiry_date: expiry,
                };
                store.create(&mut record).await?;
            }
            let after = proto::rss_bytes()?;
            let mut found = 0;
            for i in 0..n {
                found += u64::from(store.load(&Id(ts_id(i))).await?.is_some());
            }
            Ok((before, after, found))
        }
        "ts-moka" => {
            use tower_sessions_core_14::SessionStore as _;
            use tower_sessions_core_14::session::{Id, Record};
            let store = tower_sessions_moka_store::MokaStore::new(Some(MOKA_ENTRIES));
            let before = proto::rss_bytes()?;
            for i in 0..n {
                let mut record = Record {
                    id: Id(ts_id(i)),
                    data: ts_data(i, now_ms),
                    expiry_date: expiry,
                };
                store.create(&mut record).await?;
            }
            // MokaStore does not expose its cache; loading every session
            // back lets moka's pending maintenance run and checks none was
            // evicted.
            let mut found = 0;
            for i in 0..n {
                found += u64::from(store.load(&Id(ts_id(i))).await?.is_some());
            }
            Ok((before, proto::rss_bytes()?, found))
        }
        "raw-moka" => {
            let cache: moka::future::Cache<[u8; 32], Arc<[u8]>> = moka::future::Cache::builder()
                .max_capacity(MOKA_ENTRIES)
                .time_to_live(TTL)
                .build();
            let before = proto::rss_bytes()?;
            for i in 0..n {
                let bytes = Arc::<[u8]>::from(payload(&session(i, now)?)?);
                cache.insert(*key_of(i).as_bytes(), bytes).await;
            }
            cache.run_pending_tasks().await;
            Ok((before, proto::rss_bytes()?, cache.entry_count()))
        }
        other => Err(format!("no memory measurement for {other:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tower_sessions_payload_matches_ours() -> Result<(), BoxError> {
        let now = Timestamp::now();
        for i in [0, 42, 9_999] {
            let ours = session(i, now)?;
            let theirs = ts_data(i, now.as_millis());
            assert_eq!(ours.data.len(), theirs.len());
            for (k, v) in &ours.data {
                let t = theirs.get(k).ok_or("missing field")?;
                if k == "csrf_token" {
                    assert_eq!(v.as_str().map(str::len), t.as_str().map(str::len));
                } else {
                    assert_eq!(v, t, "{k}");
                }
            }
            let ours_len = payload(&ours)?.len();
            let theirs_len = serde_json::to_vec(&theirs)?.len();
            assert_eq!(ours_len, theirs_len);
        }
        Ok(())
    }

    #[test]
    fn ts_ids_are_distinct() {
        let ids: std::collections::HashSet<i128> = (0..10_000).map(ts_id).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
