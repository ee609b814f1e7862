//! Throughput of `session-store-sqlite` next to raw `sqlx` statements on
//! the same schema, in one interleaved run.
//!
//! ```text
//! cargo run --release -p examples --example bench_sqlite [-- --seconds S --reps R --warmup W --out PATH]
//! ```
//!
//! Defaults: a 0.5 s warm-up and a 2 s measured window per run, 3
//! repetitions (about 100 s in all). The Markdown table goes to stdout and
//! to `target/bench/sqlite.md` in the workspace (or `--out`); per-run
//! progress goes to stderr. `--only load|save|create` runs one workload;
//! `--breakdown` adds a third system, `store-sql`, that runs the store's
//! own statement texts raw (pre-encoded JSON, no decoding) on a third
//! database, to split `ours / raw` into SQL shape (`store-sql / raw`) and
//! Rust-side work (`ours / store-sql`).
//! `--tasks 64` and `--systems ours,raw` narrow a run (to profile one
//! system, say); the flags are `examples::bench::cli`'s.
//!
//! # Setup
//!
//! Two database files in a temporary directory, each opened with
//! `SqliteStore::open` (the store's defaults: WAL, `synchronous = NORMAL`,
//! 5 s busy timeout, a pool of at most 4 connections, the table
//! `sessions` with its `expires_at` index and partial `user` index), each
//! pre-populated through the store with the same 10,000 sessions. Each
//! session is bound to a user and holds a JSON map of about 200 bytes:
//! user id, a 43-character CSRF token, display name, locale, three
//! booleans and a last-seen timestamp. Keys are 32 random-looking bytes,
//! as real storage keys (SHA-256 digests) are. The raw system uses the
//! pool of its file's `SqliteStore`, so its pool settings are the store's
//! own. Keys are picked uniformly at random; for `save`, each task keeps
//! to its own stripe of keys so no two tasks race on one key's version.
//!
//! Each workload (`load`, `save`, `create`) runs at 1 and at 64 tasks,
//! `ours` then `raw`, repeated `--reps` times; the table shows median
//! ops/s and `ours / raw`, the ratio of the medians.
//!
//! # What each system does per operation
//!
//! Both: one autocommit statement on a pooled connection (acquire, a round
//! trip to sqlx's per-connection worker thread, a cached prepared
//! statement), the key derived from the index by the same four
//! multiply-xorshift rounds, and the harness's boxed future.
//!
//! `ours` calls the [`SessionStore`] trait method, nothing else:
//! - **load**: `SELECT key, user, data, version, created_at, expires_at
//!   FROM sessions WHERE key = ?1 AND expires_at > ?2`; then decodes the
//!   six columns, JSON-parses `data` into a map and builds a `Record`.
//! - **save**: updates the key's `last_seen` and `expires_at` (now + 24 h)
//!   in a record kept per key, JSON-encodes the map, then `UPDATE sessions
//!   SET user, data, created_at, expires_at, version = version + 1 WHERE
//!   key = ?1 AND version = ?2 AND expires_at > ?7` and keeps the returned
//!   version (a `Conflict` or `NotFound` would take a second, probing
//!   statement and count as an error; there are none when all is well).
//! - **create**: sets a fresh key and its user on a per-task record,
//!   JSON-encodes the map, then `INSERT ... VALUES (7 binds) ON
//!   CONFLICT(key) DO UPDATE ... WHERE expires_at <= now` (the store's
//!   create reclaims an expired row but never overwrites a live one).
//!
//! `raw` is the floor: the same storage work with no session logic.
//! - **load**: `SELECT data FROM sessions WHERE key = ?1 AND expires_at >
//!   ?2`, taking the JSON text as a `String`, not parsed.
//! - **save**: `UPDATE sessions SET data = ?2, expires_at = ?3 WHERE key =
//!   ?1` binding the key's JSON text encoded once at setup (no encode, no
//!   version check or bump, `user` and `created_at` not rewritten).
//! - **create**: plain `INSERT INTO sessions (key, user, data, version,
//!   created_at, expires_at) VALUES (?1, ?2, ?3, 0, ?4, ?5)` binding
//!   pre-encoded JSON text of the same size.
//!
//! Every operation checks its result: a load that finds nothing, a save
//! or insert that changes no row, and every error from sqlx or the store
//! is counted as an error and reported, never dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use examples::bench::cli::Args;
use examples::bench::data::{SESSIONS, TASK_COUNTS, TTL, key_of, session, touch_for_save, user_of};
use examples::bench::{
    Bench, Comparison, FreshKeys, Keys, Step, System, machine_description, render_markdown,
    system_names,
};
use session_core::{Error, Record, SessionStore, Timestamp};
use session_store_sqlite::SqliteStore;
use session_store_sqlite::sqlx::{self, SqlitePool};
use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const RAW_LOAD: &str = "SELECT data FROM sessions WHERE key = ?1 AND expires_at > ?2";
const RAW_SAVE: &str = "UPDATE sessions SET data = ?2, expires_at = ?3 WHERE key = ?1";
const RAW_CREATE: &str = "INSERT INTO sessions (key, user, data, version, created_at, expires_at) \
                          VALUES (?1, ?2, ?3, 0, ?4, ?5)";

// `--breakdown` only: the store's own statement texts (copied from
// store-sqlite/src/schema.rs for the table `sessions`), run raw.
const STORE_LOAD: &str = "SELECT key, user, data, version, created_at, expires_at \
                          FROM \"sessions\" WHERE key = ?1 AND expires_at > ?2";
const STORE_SAVE: &str = "UPDATE \"sessions\" SET user = ?3, data = ?4, created_at = ?5, \
                          expires_at = ?6, version = version + 1 \
                          WHERE key = ?1 AND version = ?2 AND expires_at > ?7";
const STORE_CREATE: &str = "INSERT INTO \"sessions\" \
                            (key, user, data, version, created_at, expires_at) \
                            VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                            ON CONFLICT(key) DO UPDATE SET user = excluded.user, \
                            data = excluded.data, version = excluded.version, \
                            created_at = excluded.created_at, expires_at = excluded.expires_at \
                            WHERE \"sessions\".expires_at <= ?7";

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

struct Fixture {
    ours: SqliteStore,
    raw: SqlitePool,
    /// `ours`' sessions with their current versions, one lock per key
    /// (uncontended: save keys are striped by task).
    records: Arc<Vec<Mutex<Record>>>,
    /// Each session's JSON text as stored at setup, for `raw`.
    payloads: Arc<Vec<String>>,
    /// One scratch record per task for `ours`' creates.
    scratch: Arc<Vec<Mutex<Record>>>,
    /// The JSON text `raw` inserts on create.
    create_payload: Arc<String>,
    /// `--breakdown`: a third database for `store-sql`, with the version
    /// of each of its sessions.
    store_sql: Option<(SqlitePool, Arc<Vec<AtomicU64>>)>,
    /// When the sessions were populated (their `created_at`).
    populated_at: Timestamp,
    payload_len: usize,
    _owners: Vec<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn populate(store: &SqliteStore, records: &[Record]) -> Result<(), Error> {
    for record in records {
        store.create(record).await?;
    }
    Ok(())
}

async fn setup(breakdown: bool) -> Result<Fixture, BoxError> {
    let dir = tempfile::tempdir()?;
    let ours = SqliteStore::open(dir.path().join("ours.db")).await?;
    let raw_owner = SqliteStore::open(dir.path().join("raw.db")).await?;
    let store_sql_owner = if breakdown {
        Some(SqliteStore::open(dir.path().join("store-sql.db")).await?)
    } else {
        None
    };
    let now = Timestamp::now();
    let records = (0..SESSIONS)
        .map(|i| session(i, now))
        .collect::<Result<Vec<_>, _>>()?;
    let payloads = records
        .iter()
        .map(|r| serde_json::to_string(&r.data))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    tokio::try_join!(
        populate(&ours, &records),
        populate(&raw_owner, &records),
        async {
            match &store_sql_owner {
                Some(store) => populate(store, &records).await,
                None => Ok(()),
            }
        }
    )?;
    eprintln!(
        "populated {} × {SESSIONS} sessions in {:.1?}",
        2 + usize::from(breakdown),
        started.elapsed()
    );
    let template = session(SESSIONS, now)?;
    let create_payload = serde_json::to_string(&template.data)?;
    let max_tasks = TASK_COUNTS.iter().copied().max().unwrap_or(1);
    Ok(Fixture {
        raw: raw_owner.pool().clone(),
        ours,
        payload_len: payloads.iter().map(String::len).sum::<usize>() / payloads.len().max(1),
        records: Arc::new(records.into_iter().map(Mutex::new).collect()),
        payloads: Arc::new(payloads),
        scratch: Arc::new(
            (0..max_tasks)
                .map(|_| Mutex::new(template.clone()))
                .collect(),
        ),
        create_payload: Arc::new(create_payload),
        store_sql: store_sql_owner.as_ref().map(|store| {
            let versions = (0..SESSIONS).map(|_| AtomicU64::new(0)).collect();
            (store.pool().clone(), Arc::new(versions))
        }),
        populated_at: now,
        _owners: [Some(raw_owner), store_sql_owner]
            .into_iter()
            .flatten()
            .collect(),
        _dir: dir,
    })
}

fn load_systems(f: &Fixture) -> Vec<System> {
    let store = f.ours.clone();
    let ours = System::new("ours", move |step: Step| {
        let store = store.clone();
        async move {
            match store.load(&key_of(step.index)).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("load found nothing".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let pool = f.raw.clone();
    let raw = System::new("raw", move |step: Step| {
        let pool = pool.clone();
        async move {
            let key = key_of(step.index);
            let data: Option<String> = sqlx::query_scalar(RAW_LOAD)
                .bind(key.as_bytes().as_slice())
                .bind(now_ms())
                .fetch_optional(&pool)
                .await
                .map_err(|e| e.to_string())?;
            data.map(drop)
                .ok_or_else(|| "select found nothing".to_owned())
        }
    });
    let mut systems = vec![ours, raw];
    if let Some((pool, _)) = &f.store_sql {
        let pool = pool.clone();
        systems.push(System::new("store-sql", move |step: Step| {
            let pool = pool.clone();
            async move {
                let key = key_of(step.index);
                let row = sqlx::query(STORE_LOAD)
                    .bind(key.as_bytes().as_slice())
                    .bind(now_ms())
                    .fetch_optional(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                row.map(drop)
                    .ok_or_else(|| "select found nothing".to_owned())
            }
        }));
    }
    systems
}

fn save_systems(f: &Fixture) -> Vec<System> {
    let store = f.ours.clone();
    let records = Arc::clone(&f.records);
    let ours = System::new("ours", move |step: Step| {
        let store = store.clone();
        let records = Arc::clone(&records);
        async move {
            let slot = records
                .get(step.index as usize)
                .ok_or("key index out of range")?;
            let mut record = slot.lock().await;
            touch_for_save(&mut record);
            match store.save(&record).await {
                Ok(version) => {
                    record.version = version;
                    Ok(())
                }
                Err(Error::Conflict) => {
                    // Not expected (keys are striped): report it, and
                    // catch up so one slip does not fail every later save.
                    if let Ok(Some(current)) = store.load(&record.key).await {
                        record.version = current.version;
                    }
                    Err("save: conflict".to_owned())
                }
                Err(e) => Err(format!("save: {e}")),
            }
        }
    });
    let pool = f.raw.clone();
    let payloads = Arc::clone(&f.payloads);
    let raw = System::new("raw", move |step: Step| {
        let pool = pool.clone();
        let payloads = Arc::clone(&payloads);
        async move {
            let key = key_of(step.index);
            let data = payloads
                .get(step.index as usize)
                .ok_or("key index out of range")?;
            let done = sqlx::query(RAW_SAVE)
                .bind(key.as_bytes().as_slice())
                .bind(data.as_str())
                .bind(Timestamp::now().saturating_add(TTL).as_millis())
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
    let mut systems = vec![ours, raw];
    if let Some((pool, versions)) = &f.store_sql {
        let pool = pool.clone();
        let versions = Arc::clone(versions);
        let payloads = Arc::clone(&f.payloads);
        let created_at = f.populated_at.as_millis();
        systems.push(System::new("store-sql", move |step: Step| {
            let pool = pool.clone();
            let versions = Arc::clone(&versions);
            let payloads = Arc::clone(&payloads);
            async move {
                let i = step.index as usize;
                let (version, data) = versions
                    .get(i)
                    .zip(payloads.get(i))
                    .ok_or("key index out of range")?;
                let key = key_of(step.index);
                let now = Timestamp::now();
                let done = sqlx::query(STORE_SAVE)
                    .bind(key.as_bytes().as_slice())
                    .bind(version.load(Ordering::Relaxed) as i64)
                    .bind(user_of(step.index))
                    .bind(data.as_str())
                    .bind(created_at)
                    .bind(now.saturating_add(TTL).as_millis())
                    .bind(now.as_millis())
                    .execute(&pool)
                    .await
                    .map_err(|e| format!("update: {e}"))?;
                if done.rows_affected() == 1 {
                    version.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                } else {
                    Err(format!("update changed {} rows", done.rows_affected()))
                }
            }
        }));
    }
    systems
}

fn create_systems(f: &Fixture) -> Vec<System> {
    let store = f.ours.clone();
    let scratch = Arc::clone(&f.scratch);
    let ours = System::new("ours", move |step: Step| {
        let store = store.clone();
        let scratch = Arc::clone(&scratch);
        async move {
            let slot = scratch.get(step.task).ok_or("task index out of range")?;
            let mut record = slot.lock().await;
            let now = Timestamp::now();
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
    let pool = f.raw.clone();
    let payload = Arc::clone(&f.create_payload);
    let raw = System::new("raw", move |step: Step| {
        let pool = pool.clone();
        let payload = Arc::clone(&payload);
        async move {
            let key = key_of(step.index);
            let now = Timestamp::now();
            let done = sqlx::query(RAW_CREATE)
                .bind(key.as_bytes().as_slice())
                .bind(user_of(step.index))
                .bind(payload.as_str())
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
    let mut systems = vec![ours, raw];
    if let Some((pool, _)) = &f.store_sql {
        let pool = pool.clone();
        let payload = Arc::clone(&f.create_payload);
        systems.push(System::new("store-sql", move |step: Step| {
            let pool = pool.clone();
            let payload = Arc::clone(&payload);
            async move {
                let key = key_of(step.index);
                let now = Timestamp::now();
                let done = sqlx::query(STORE_CREATE)
                    .bind(key.as_bytes().as_slice())
                    .bind(user_of(step.index))
                    .bind(payload.as_str())
                    .bind(0_i64)
                    .bind(now.as_millis())
                    .bind(now.saturating_add(TTL).as_millis())
                    .bind(now.as_millis())
                    .execute(&pool)
                    .await
                    .map_err(|e| format!("insert: {e}"))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(format!("insert changed {} rows", done.rows_affected()))
                }
            }
        }));
    }
    systems
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Some(args) = Args::defaults(Duration::from_secs(2), "sqlite.md").parse_env(
        "bench_sqlite",
        "adds `store-sql`: the store's own statements run raw",
    )?
    else {
        return Ok(());
    };
    let fixture = setup(args.breakdown).await?;
    let bench = Bench::new(args.bench_config());
    let fresh = Keys::Fresh(FreshKeys::starting_at(SESSIONS));
    let started = Instant::now();
    let mut comparisons: Vec<Comparison> = Vec::new();
    // Creates last: they grow the tables the other workloads read.
    for (workload, keys, systems) in [
        ("load", Keys::Shared(SESSIONS), load_systems(&fixture)),
        ("save", Keys::Striped(SESSIONS), save_systems(&fixture)),
        ("create", fresh, create_systems(&fixture)),
    ] {
        let systems = args.select(systems);
        if !args.wants(workload) || systems.is_empty() {
            continue;
        }
        for tasks in args.tasks.iter().copied() {
            comparisons.push(bench.compare(workload, tasks, &keys, &systems).await?);
        }
    }
    let elapsed = started.elapsed();

    let command = args.command("bench_sqlite");
    let order = system_names(&comparisons);
    let mut report = String::from("## session-store-sqlite vs raw sqlx\n\n");
    report.push_str(&format!(
        "Command: `{command}`\n\n\
         Machine: {}.\n\n\
         {SESSIONS} pre-populated sessions per database (one database file per system), \
         JSON payload {} bytes on average, store defaults (WAL, synchronous NORMAL, busy \
         timeout 5 s, pool of 4). Per run: {:.1?} warm-up, then {:.1?} measured; {} \
         repetitions, each running the systems in turn ({}), so drift hits all alike; \
         measuring took {:.0?}. See the doc comment of `examples/examples/bench_sqlite.rs` \
         for what each system does per operation.\n\n",
        machine_description(),
        fixture.payload_len,
        args.warmup,
        args.window,
        args.reps,
        order.join(", "),
        elapsed,
    ));
    let ratios: &[(&str, &str)] = if args.breakdown {
        &[("ours", "raw"), ("ours", "store-sql"), ("store-sql", "raw")]
    } else {
        &[("ours", "raw")]
    };
    report.push_str(&render_markdown(
        "ops/s at 1 and 64 tasks",
        &comparisons,
        ratios,
    ));
    println!("{report}");
    args.write_report(&report)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
