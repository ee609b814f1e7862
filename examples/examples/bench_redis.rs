//! Throughput of `session-store-redis` next to the raw `redis` crate doing
//! GET / SET of the same bytes, in one interleaved run.
//!
//! ```text
//! cargo run --release -p examples --example bench_redis [-- --seconds S --reps R --warmup W --out PATH]
//! ```
//!
//! Defaults: a 0.5 s warm-up and a 1.5 s measured window per run, 3
//! repetitions (about 100 s in all). The Markdown table goes to stdout and
//! to `target/bench/redis.md` in the workspace (or `--out`); per-run
//! progress goes to stderr. `--only load|save|create` runs one workload;
//! `--breakdown` adds a diagnostic system (below) that splits `ours /
//! raw` into the cost of the store's command shape and of its Rust-side
//! work.
//! `--tasks 64` and `--systems ours,raw` narrow a run (to profile one
//! system, say); the flags are `examples::bench::cli`'s.
//!
//! # Setup
//!
//! The program starts its own throwaway `redis-server` (from `PATH`) on a
//! unix socket in a temporary directory, with no TCP port and no
//! persistence, through `session_store_redis::testing::RedisServer`, and
//! kills it at the end: it never touches a server someone else uses. Every
//! system talks to that one server over its own single multiplexed
//! connection, under its own key prefix.
//!
//! The sessions are those of `examples::bench::data`, shared with
//! `bench_sqlite`: 10,000 per system, pre-populated before measuring, each
//! bound to its own user and holding a JSON map of about 200 bytes (user
//! id, a 43-character CSRF token, display name, locale, three booleans, a
//! last-seen timestamp); keys are 32 random-looking bytes (64 hex digits
//! in Redis), as real storage keys are. `ours` and the breakdown systems
//! are populated through the store; `raw` gets `SET key <the same JSON
//! bytes> PX <24 h>` per session. Keys are picked uniformly at random; for
//! `save`, each task keeps to its own stripe of keys so no two tasks race
//! on one key's version; `create` always uses fresh keys.
//!
//! Each workload (`load`, `save`, `create`) runs at 1 and at 64 tasks, the
//! systems in turn, repeated `--reps` times; the table shows median ops/s
//! and the ratios of the medians. After the runs, the report adds the
//! server's own time per command (`INFO commandstats`, all systems
//! together).
//!
//! # What each system does per operation
//!
//! All: the key derived from the index by the same multiply-xorshift
//! rounds, the Redis key formatted as text, the harness's boxed future,
//! and commands written to one multiplexed connection (`redis` 1.x,
//! RESP2), which batches the commands of concurrent tasks into shared
//! writes.
//!
//! `ours` (prefix `bench-ours:`) calls the [`SessionStore`] trait method of
//! a `RedisStore` (through `async_trait`, inside the store's operation
//! timeout, over its `ConnectionManager`), nothing else:
//! - **load**: 1 round trip, `GET {prefix}s:{hex}`; the reply's text
//!   header (version, created, expires, user) is read in place, the session
//!   checked live, the JSON data parsed into a map, and a `Record` built.
//! - **save** (CAS): updates `last_seen` and `expires_at` (now + 24 h) in
//!   a record kept per key, JSON-encodes the map, then **1 round trip**:
//!   `EVALSHA <save> 1 {prefix}s:{hex} now version user bytes expires`
//!   (Lua: `GET`, compare the version and user in the header, `SET … PXAT`),
//!   and keeps the returned version. The user is unchanged, so the index
//!   is not touched.
//! - **create**: sets a fresh key and its user on a per-task record,
//!   JSON-encodes the map, then **1 round trip** on a single server: a
//!   pipeline of `ZADD GT {prefix}u:{user}` and `EVALSHA <create>` (Lua:
//!   `SET … NX PXAT`).
//!
//! `ours-unbound` (prefix `bench-anon:`) is the same store with sessions
//! bound to no user (as before login): **create** is then the script
//! alone, with no index update. Its load would be `ours`' load, so it is
//! not run.
//!
//! `raw` (keys `bench-raw:s:{hex}`) is the floor: the `redis` crate on one
//! `MultiplexedConnection`, the same JSON bytes, no session logic, 1 round
//! trip each:
//! - **load**: `GET key`, the bytes taken as they come (not parsed).
//! - **save**: `SET key <bytes> PX <24 h>`, the bytes encoded once at
//!   setup (no encode, no version check).
//! - **create**: `SET key <bytes> NX PX <24 h>` on a fresh key.
//!
//! With `--breakdown`, on their own 10,000 sessions (prefix `bench-cmds:`,
//! a version per key kept in an atomic) and their own
//! `MultiplexedConnection`, with the store's Lua scripts copied verbatim
//! (the program checks their SHA-1s are the ones the store loaded):
//! - `store-cmds` sends exactly the store's commands with the session
//!   bytes encoded by hand (the store's one-string layout: header, user,
//!   the JSON bytes of setup) and no decoding: **load** `GET` (reply kept
//!   as a raw `Value`), **save** one `EVALSHA <save>` (same user: no
//!   index update), **create** `ZADD GT` on the user's index and
//!   `EVALSHA <create>` in one pipeline (1 round trip), as the store does
//!   on a single server. `store-cmds / raw` is the cost of the store's
//!   command shape (mostly the Lua scripts' server time),
//!   `ours / store-cmds` the cost of its Rust-side work.
//!
//! Every operation checks its result: a load that finds nothing, a save
//! or create that is not acknowledged as written, and every error from the
//! store or the driver is counted as an error and reported, never dropped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use examples::bench::cli::Args;
use examples::bench::data::{
    SESSIONS, TASK_COUNTS, TTL, key_of, payload, session, touch_for_save, user_of,
};
use examples::bench::{
    Bench, Comparison, FreshKeys, Keys, Step, System, format_rate, machine_description,
    render_markdown, system_names,
};
use session_core::{Error, Record, SessionStore, Timestamp};
use session_store_redis::RedisStore;
use session_store_redis::redis::{self, Script, Value, aio::MultiplexedConnection};
use session_store_redis::testing::RedisServer;
use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const OURS_PREFIX: &str = "bench-ours:";
const UNBOUND_PREFIX: &str = "bench-anon:";
const CMDS_PREFIX: &str = "bench-cmds:";
const RAW_PREFIX: &str = "bench-raw:s:";

/// Concurrent tasks used to pre-populate.
const POPULATE_TASKS: u64 = 32;

// `--breakdown` only: the store's scripts, copied verbatim from
// store-redis/src/scripts.rs with its `read_session!()` / `read_user!()`
// pieces spliced in (`setup` checks the server loaded these very texts
// from the store, by SHA-1).
const CREATE: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local e = tonumber(ARGV[2])
if e > now and redis.call('SET', k, ARGV[3], 'NX', 'PXAT', ARGV[2]) then return 1 end
local old = redis.pcall('GET', k)
if not old then return 1 end
if type(old) ~= 'string' or string.sub(old, 1, 2) ~= 'S1' then return 0 end
local oe = tonumber(string.sub(old, 3, 22))
if oe == nil or oe > now then return 0 end
if e <= now then
  redis.call('DEL', k)
else
  redis.call('SET', k, ARGV[3], 'PXAT', ARGV[2])
end
return 1
";

const SAVE: &str = r"
local k = KEYS[1]
local sub = string.sub
local now = tonumber(ARGV[1])
local old = redis.pcall('GET', k)
if not old then return 0 end
if type(old) ~= 'string' or sub(old, 1, 2) ~= 'S1' then return 3 end
local oe = tonumber(sub(old, 3, 22))
if oe == nil then return 3 end

if oe <= now then return 0 end
local want = ARGV[2]
local live = tonumber(ARGV[3]) > now
if live and sub(old, 43, 42 + #want) == want then
  redis.call('SET', k, ARGV[4], 'PXAT', ARGV[3])
  return 2
end

local n = tonumber(sub(old, 64, 73))
if n == nil or #old < 73 + n then return 3 end

if sub(old, 43, 62) ~= sub(want, 1, 20) then return 1 end
if not live then
  redis.call('DEL', k)
elseif sub(want, 21, 21) == 'u' and ARGV[5] ~= '1' then
  return 4
else
  redis.call('SET', k, ARGV[4], 'PXAT', ARGV[3])
end
if sub(old, 63, 63) == 'u' then return {2, sub(old, 74, 73 + n)} end
return 2
";

fn raw_key(i: u64) -> String {
    format!("{RAW_PREFIX}{}", key_of(i).to_hex())
}

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

/// `Ok(())` for the `+OK` of a `SET`; an error naming anything else.
fn expect_ok(what: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Okay => Ok(()),
        Value::Nil => Err(format!("{what}: not written (nil)")),
        other => Err(format!("{what}: unexpected reply {other:?}")),
    }
}

/// The store's commands, raw (`--breakdown`).
struct Breakdown {
    conn: MultiplexedConnection,
    /// Each session's current version under `CMDS_PREFIX`.
    versions: Arc<Vec<AtomicU64>>,
    create_sha: Arc<str>,
    save_sha: Arc<str>,
}

struct Fixture {
    ours: RedisStore,
    unbound: RedisStore,
    raw: MultiplexedConnection,
    /// `ours`' sessions with their current versions, one lock per key
    /// (uncontended: save keys are striped by task).
    records: Arc<Vec<Mutex<Record>>>,
    /// The same for `ours-unbound`.
    unbound_records: Arc<Vec<Mutex<Record>>>,
    /// Each session's JSON bytes as stored at setup, for `raw` and the
    /// breakdown systems.
    payloads: Arc<Vec<Vec<u8>>>,
    /// One scratch record per task for creates (bound, unbound).
    scratch: Arc<Vec<Mutex<Record>>>,
    scratch_unbound: Arc<Vec<Mutex<Record>>>,
    /// The JSON bytes the raw systems write on create.
    create_payload: Arc<Vec<u8>>,
    breakdown: Option<Breakdown>,
    populated_at: Timestamp,
    payload_len: usize,
    server_version: String,
    /// Kept alive so the server answers for the whole run (killed on drop).
    _server: RedisServer,
    _dir: tempfile::TempDir,
}

/// Runs `f(i)` for every `i < n`, `POPULATE_TASKS` at a time.
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

async fn populate_store(
    store: &RedisStore,
    records: &Arc<Vec<Mutex<Record>>>,
) -> Result<(), BoxError> {
    let store = store.clone();
    let records = Arc::clone(records);
    for_each_index(records.len() as u64, move |i| {
        let store = store.clone();
        let records = Arc::clone(&records);
        async move {
            let slot = records.get(i as usize).ok_or("index out of range")?;
            store.create(&*slot.lock().await).await?;
            Ok(())
        }
    })
    .await
}

async fn populate_raw(
    conn: &MultiplexedConnection,
    payloads: &Arc<Vec<Vec<u8>>>,
) -> Result<(), BoxError> {
    let conn = conn.clone();
    let payloads = Arc::clone(payloads);
    let ttl_ms = TTL.as_millis() as u64;
    for_each_index(payloads.len() as u64, move |i| {
        let mut conn = conn.clone();
        let payloads = Arc::clone(&payloads);
        async move {
            let bytes = payloads.get(i as usize).ok_or("index out of range")?;
            let reply: Value = redis::cmd("SET")
                .arg(raw_key(i))
                .arg(bytes.as_slice())
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await?;
            expect_ok("populate", &reply)?;
            Ok(())
        }
    })
    .await
}

/// The server's `redis_version`.
async fn server_version(conn: &mut MultiplexedConnection) -> Result<String, BoxError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

async fn setup(breakdown: bool) -> Result<Fixture, BoxError> {
    let dir = tempfile::Builder::new().prefix("bench-redis").tempdir()?;
    let server = RedisServer::spawn_unix(dir.path(), &dir.path().join("redis.sock"))?;
    let url = server.url();
    let ours = RedisStore::builder(url.as_str())
        .prefix(OURS_PREFIX)
        .connect()
        .await?;
    let unbound = RedisStore::builder(url.as_str())
        .prefix(UNBOUND_PREFIX)
        .connect()
        .await?;
    let client = redis::Client::open(url.as_str())?;
    let mut raw = client.get_multiplexed_async_connection().await?;
    let server_version = server_version(&mut raw).await?;

    let now = Timestamp::now();
    let records = (0..SESSIONS)
        .map(|i| session(i, now))
        .collect::<Result<Vec<_>, _>>()?;
    let payloads = records.iter().map(payload).collect::<Result<Vec<_>, _>>()?;
    let unbound_records: Vec<Record> = records
        .iter()
        .map(|r| Record {
            user: None,
            ..r.clone()
        })
        .collect();
    let records: Arc<Vec<Mutex<Record>>> = Arc::new(records.into_iter().map(Mutex::new).collect());
    let unbound_records: Arc<Vec<Mutex<Record>>> =
        Arc::new(unbound_records.into_iter().map(Mutex::new).collect());
    let payloads = Arc::new(payloads);

    let started = Instant::now();
    let cmds_store = if breakdown {
        Some(
            RedisStore::builder(url.as_str())
                .prefix(CMDS_PREFIX)
                .connect()
                .await?,
        )
    } else {
        None
    };
    tokio::try_join!(
        populate_store(&ours, &records),
        populate_store(&unbound, &unbound_records),
        populate_raw(&raw, &payloads),
        async {
            match &cmds_store {
                Some(store) => populate_store(store, &records).await,
                None => Ok(()),
            }
        }
    )?;
    eprintln!(
        "populated {} × {SESSIONS} sessions in {:.1?} (redis-server {server_version})",
        3 + usize::from(breakdown),
        started.elapsed()
    );

    let breakdown = match cmds_store {
        Some(store) => Some(breakdown_setup(&client, &store, &records).await?),
        None => None,
    };

    let template = session(SESSIONS, now)?;
    let create_payload = payload(&template)?;
    let max_tasks = TASK_COUNTS.iter().copied().max().unwrap_or(1);
    let scratch = |user: bool| -> Arc<Vec<Mutex<Record>>> {
        let mut record = template.clone();
        if !user {
            record.user = None;
        }
        Arc::new((0..max_tasks).map(|_| Mutex::new(record.clone())).collect())
    };
    Ok(Fixture {
        ours,
        unbound,
        raw,
        payload_len: payloads.iter().map(Vec::len).sum::<usize>() / payloads.len().max(1),
        records,
        unbound_records,
        payloads,
        scratch: scratch(true),
        scratch_unbound: scratch(false),
        create_payload: Arc::new(create_payload),
        breakdown,
        populated_at: now,
        server_version,
        _server: server,
        _dir: dir,
    })
}

/// Makes the store load all three scripts (one save through it), then
/// checks the server holds this file's copies by SHA-1: if the store's
/// scripts changed, the copies here are stale and the breakdown would
/// measure something else.
async fn breakdown_setup(
    client: &redis::Client,
    store: &RedisStore,
    records: &Arc<Vec<Mutex<Record>>>,
) -> Result<Breakdown, BoxError> {
    let slot = records.first().ok_or("no sessions")?;
    let first = slot.lock().await.clone();
    let version = store.save(&first).await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let scripts = [Script::new(CREATE), Script::new(SAVE)];
    let shas: Vec<&str> = scripts.iter().map(Script::get_hash).collect();
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&shas)
        .query_async(&mut conn)
        .await?;
    if exists.iter().any(|e| !e) {
        return Err(
            "--breakdown: the Lua scripts copied in bench_redis.rs differ from \
                    store-redis/src/scripts.rs; copy them again"
                .into(),
        );
    }
    let versions: Vec<AtomicU64> = (0..SESSIONS).map(|_| AtomicU64::new(0)).collect();
    if let Some(v) = versions.first() {
        v.store(version, Ordering::Relaxed);
    }
    let [create, save] = shas.as_slice() else {
        return Err("two scripts expected".into());
    };
    Ok(Breakdown {
        conn,
        versions: Arc::new(versions),
        create_sha: (*create).into(),
        save_sha: (*save).into(),
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
    let conn = f.raw.clone();
    let raw = System::new("raw", move |step: Step| {
        let mut conn = conn.clone();
        async move {
            let bytes: Option<Vec<u8>> = redis::cmd("GET")
                .arg(raw_key(step.index))
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("get: {e}"))?;
            bytes
                .map(drop)
                .ok_or_else(|| "get found nothing".to_owned())
        }
    });
    let mut systems = vec![ours, raw];
    if let Some(b) = &f.breakdown {
        let conn = b.conn.clone();
        systems.push(System::new("store-cmds", move |step: Step| {
            let mut conn = conn.clone();
            async move {
                let reply: Value = redis::cmd("GET")
                    .arg(format!("{CMDS_PREFIX}s:{}", key_of(step.index).to_hex()))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("get: {e}"))?;
                match reply {
                    Value::BulkString(bytes) if !bytes.is_empty() => Ok(()),
                    other => Err(format!("get: unexpected reply {other:?}")),
                }
            }
        }));
    }
    systems
}

/// A CAS save through the store of the record kept for `index`.
async fn store_save(
    store: &RedisStore,
    records: &[Mutex<Record>],
    index: u64,
) -> Result<(), String> {
    let slot = records
        .get(index as usize)
        .ok_or("key index out of range")?;
    let mut record = slot.lock().await;
    touch_for_save(&mut record);
    match store.save(&record).await {
        Ok(version) => {
            record.version = version;
            Ok(())
        }
        Err(Error::Conflict) => {
            // Not expected (keys are striped): report it, and catch up so
            // one slip does not fail every later save.
            if let Ok(Some(current)) = store.load(&record.key).await {
                record.version = current.version;
            }
            Err("save: conflict".to_owned())
        }
        Err(e) => Err(format!("save: {e}")),
    }
}

/// A create through the store of a fresh key, on this task's scratch
/// record (bound to a user of its own when the scratch record is).
async fn store_create(
    store: &RedisStore,
    scratch: &[Mutex<Record>],
    step: Step,
) -> Result<(), String> {
    let slot = scratch.get(step.task).ok_or("task index out of range")?;
    let mut record = slot.lock().await;
    let now = Timestamp::now();
    record.key = key_of(step.index);
    if record.user.is_some() {
        record.user = Some(user_of(step.index));
    }
    record.created_at = now;
    record.expires_at = now.saturating_add(TTL);
    store
        .create(&record)
        .await
        .map_err(|e| format!("create: {e}"))
}

/// A session as the store lays it out (one string: header, user, JSON):
/// `S1`, expiry and creation (ms, sign and 19 digits), version (20
/// digits), `u` and the user's length (10 digits), the user, the data.
fn stored_value(
    expires: Timestamp,
    created: Timestamp,
    version: u64,
    user: &str,
    data: &[u8],
) -> Vec<u8> {
    let mut value = format!(
        "S1{:+020}{:+020}{version:020}u{:010}{user}",
        ms(expires),
        ms(created),
        user.len()
    )
    .into_bytes();
    value.extend_from_slice(data);
    value
}

/// The store's save script call for session `i` at version `version`
/// (same user: the common case, no index update).
fn save_cmd(sha: &str, i: u64, version: u64, data: &[u8], created: Timestamp) -> redis::Cmd {
    let now = Timestamp::now();
    let expires = now.saturating_add(TTL);
    let user = user_of(i);
    let expect = format!("{version:020}u{:010}{user}", user.len());
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha)
        .arg(1)
        .arg(format!("{CMDS_PREFIX}s:{}", key_of(i).to_hex()))
        .arg(ms(now))
        .arg(expect)
        .arg(ms(expires))
        .arg(stored_value(expires, created, version + 1, &user, data))
        .arg("0");
    cmd
}

/// The store's create step for fresh session `i`: `ZADD GT` on the user's
/// index (user names here need no escaping), then the create script, as
/// one pipeline.
fn create_pipe(sha: &str, i: u64, data: &[u8], now: Timestamp) -> redis::Pipeline {
    let expires = now.saturating_add(TTL);
    let user = user_of(i);
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD")
        .arg(format!("{CMDS_PREFIX}u:{user}"))
        .arg("GT")
        .arg(ms(expires))
        .arg(key_of(i).to_hex())
        .ignore()
        .cmd("EVALSHA")
        .arg(sha)
        .arg(1)
        .arg(format!("{CMDS_PREFIX}s:{}", key_of(i).to_hex()))
        .arg(ms(now))
        .arg(ms(expires))
        .arg(stored_value(expires, now, 0, &user, data));
    pipe
}

/// Checks a save script's reply: `2` (or `{2, user}`) is saved.
fn check_saved(reply: &Value) -> Result<(), String> {
    match reply {
        Value::Int(2) => Ok(()),
        Value::Array(items) if matches!(items.first(), Some(Value::Int(2))) => Ok(()),
        other => Err(format!("save script: not saved: {other:?}")),
    }
}

fn save_systems(f: &Fixture) -> Vec<System> {
    let store = f.ours.clone();
    let records = Arc::clone(&f.records);
    let ours = System::new("ours", move |step: Step| {
        let store = store.clone();
        let records = Arc::clone(&records);
        async move { store_save(&store, &records, step.index).await }
    });
    let store = f.unbound.clone();
    let records = Arc::clone(&f.unbound_records);
    let unbound = System::new("ours-unbound", move |step: Step| {
        let store = store.clone();
        let records = Arc::clone(&records);
        async move { store_save(&store, &records, step.index).await }
    });
    let conn = f.raw.clone();
    let payloads = Arc::clone(&f.payloads);
    let ttl_ms = TTL.as_millis() as u64;
    let raw = System::new("raw", move |step: Step| {
        let mut conn = conn.clone();
        let payloads = Arc::clone(&payloads);
        async move {
            let bytes = payloads
                .get(step.index as usize)
                .ok_or("key index out of range")?;
            let reply: Value = redis::cmd("SET")
                .arg(raw_key(step.index))
                .arg(bytes.as_slice())
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("set: {e}"))?;
            expect_ok("set", &reply)
        }
    });
    let mut systems = vec![ours, unbound, raw];
    if let Some(b) = &f.breakdown {
        let conn = b.conn.clone();
        let versions = Arc::clone(&b.versions);
        let payloads = Arc::clone(&f.payloads);
        let save_sha = Arc::clone(&b.save_sha);
        let created = f.populated_at;
        systems.push(System::new("store-cmds", move |step: Step| {
            let mut conn = conn.clone();
            let versions = Arc::clone(&versions);
            let payloads = Arc::clone(&payloads);
            let save_sha = Arc::clone(&save_sha);
            async move {
                let i = step.index;
                let (version, data) = versions
                    .get(i as usize)
                    .zip(payloads.get(i as usize))
                    .ok_or("key index out of range")?;
                let v = version.load(Ordering::Relaxed);
                let reply: Value = save_cmd(&save_sha, i, v, data, created)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("save: {e}"))?;
                check_saved(&reply)?;
                version.store(v + 1, Ordering::Relaxed);
                Ok::<(), String>(())
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
        async move { store_create(&store, &scratch, step).await }
    });
    let store = f.unbound.clone();
    let scratch = Arc::clone(&f.scratch_unbound);
    let unbound = System::new("ours-unbound", move |step: Step| {
        let store = store.clone();
        let scratch = Arc::clone(&scratch);
        async move { store_create(&store, &scratch, step).await }
    });
    let conn = f.raw.clone();
    let bytes = Arc::clone(&f.create_payload);
    let ttl_ms = TTL.as_millis() as u64;
    let raw = System::new("raw", move |step: Step| {
        let mut conn = conn.clone();
        let bytes = Arc::clone(&bytes);
        async move {
            let reply: Value = redis::cmd("SET")
                .arg(raw_key(step.index))
                .arg(bytes.as_slice())
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("set nx: {e}"))?;
            expect_ok("set nx", &reply)
        }
    });
    let mut systems = vec![ours, unbound, raw];
    if let Some(b) = &f.breakdown {
        let conn = b.conn.clone();
        let bytes = Arc::clone(&f.create_payload);
        let create_sha = Arc::clone(&b.create_sha);
        systems.push(System::new("store-cmds", move |step: Step| {
            let mut conn = conn.clone();
            let bytes = Arc::clone(&bytes);
            let create_sha = Arc::clone(&create_sha);
            async move {
                let pipe = create_pipe(&create_sha, step.index, &bytes, Timestamp::now());
                let (created,): (i64,) = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("pipeline: {e}"))?;
                if created == 1 {
                    Ok(())
                } else {
                    Err(format!("create script: not created ({created})"))
                }
            }
        }));
    }
    systems
}

/// The server's time per command since the last `CONFIG RESETSTAT`, as a
/// Markdown table (`INFO commandstats`).
async fn command_stats(conn: &mut MultiplexedConnection) -> Result<String, BoxError> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut out = String::from(
        "### Server time per command (all systems, all runs)\n\n\
         From `INFO commandstats` (µs of the server's single thread per call; \
         `evalsha` averages the create, save and index scripts).\n\n\
         | command | calls | µs per call |\n|---|---:|---:|\n",
    );
    for line in info.lines() {
        // cmdstat_get:calls=1,usec=2,usec_per_call=2.00,...
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("?")
        };
        if name.starts_with("config")
            || matches!(name, "info" | "script" | "client" | "hello" | "ping")
        {
            continue;
        }
        let calls: f64 = field("calls").parse().unwrap_or(0.0);
        out.push_str(&format!(
            "| {name} | {} | {} |\n",
            format_rate(calls),
            field("usec_per_call")
        ));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Some(args) = Args::defaults(Duration::from_millis(1500), "redis.md")
        .parse_env("bench_redis", "adds `store-cmds`, the store's commands raw")?
    else {
        return Ok(());
    };
    let mut fixture = setup(args.breakdown).await?;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec_async(&mut fixture.raw)
        .await?;
    let bench = Bench::new(args.bench_config());
    let fresh = Keys::Fresh(FreshKeys::starting_at(SESSIONS));
    let started = Instant::now();
    let mut comparisons: Vec<Comparison> = Vec::new();
    // Creates last: they grow the key space the other workloads read.
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
    let stats = command_stats(&mut fixture.raw).await?;

    let order = system_names(&comparisons);
    let mut report = String::from("## session-store-redis vs the raw redis crate\n\n");
    report.push_str(&format!(
        "Command: `{}`\n\n\
         Machine: {}; redis-server {} started by the benchmark on a unix socket \
         (no persistence).\n\n\
         {SESSIONS} pre-populated sessions per system (own key prefix, same server), JSON \
         payload {} bytes on average, each system on one multiplexed connection, store \
         defaults (operation timeout 3 s, response timeout 1 s). Per run: {:.1?} warm-up, \
         then {:.1?} measured; {} repetitions, each running the systems in turn ({}), so \
         drift hits all alike; measuring took {:.0?}. `ours` binds every session to a \
         user (1 round trip each; create pipelines the index update with the script); `ours-unbound` binds none. \
         See the doc comment of `examples/examples/bench_redis.rs` for what each system \
         does per operation.\n\n",
        args.command("bench_redis"),
        machine_description(),
        fixture.server_version,
        fixture.payload_len,
        args.warmup,
        args.window,
        args.reps,
        order.join(", "),
        elapsed,
    ));
    let ratios: &[(&str, &str)] = if args.breakdown {
        &[
            ("ours", "raw"),
            ("ours-unbound", "raw"),
            ("store-cmds", "raw"),
            ("ours", "store-cmds"),
        ]
    } else {
        &[("ours", "raw"), ("ours-unbound", "raw")]
    };
    report.push_str(&render_markdown(
        "ops/s at 1 and 64 tasks",
        &comparisons,
        ratios,
    ));
    report.push('\n');
    report.push_str(&stats);
    println!("{report}");
    args.write_report(&report)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
