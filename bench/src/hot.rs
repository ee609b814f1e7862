//! `session-bench --hot-session`: workload W4, one hot session.
//!
//! [`TASKS`] concurrent requests (tokio tasks) each repeatedly add a new
//! key to one shared session, read-modify-write through the session API
//! as an HTTP request would, for a fixed window:
//!
//! - ours: `SessionManager` (default `SessionConfig`) over our memory,
//!   Redis and SQLite stores: `manager.load(Some(&cookie))`,
//!   `session.get_value(..)`, `session.insert(..)`,
//!   `manager.commit(&session)`; every commit must be `Ok` (a commit
//!   answering `CookieAction::Clear` counts as an error). The store is
//!   wrapped in [`Counting`], which counts `save` calls: saves per request.
//! - tower-sessions' moka and Redis stores (tower-sessions-core 0.14),
//!   through its `Session`: `Session::new(Some(id), store, expiry)`,
//!   `get_value`, `insert`, `save`.
//!
//! After each run every key whose request succeeded is looked up in the
//! stored session: the missing ones are lost updates (0 for ours;
//! last-writer-wins for tower-sessions).
//!
//! A session may hold at most 64 KiB (our default `max_size`), far fewer
//! keys than a window of requests adds; so the shared session is replaced
//! by a fresh one every [`KEYS_PER_SESSION`] requests (request `n` writes
//! key `k{n}` into session `n / KEYS_PER_SESSION`, created by the first
//! request that needs it). All tasks still work on one session at a time,
//! except briefly at a hand-over. The same for every system.
//!
//! Not covered: tower-sessions' SQLite store (its worker is the separate
//! project `bench/tower-sessions-sqlx`) and tower-sessions' memory store.
//! Everything runs in this one process (no worker processes), systems one
//! at a time, repetitions interleaved (order rotated each repetition).
//! Writes `target/bench/hot-session.md`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_core::{
    CookieAction, Error, Record, Reload, SessionId, SessionManager, SessionStore, StorageKey,
    Timestamp, UserSessions,
};
use session_store_memory::MemoryStore;
use session_store_redis::RedisStore;
use session_store_redis::testing::RedisServer;
use session_store_sqlite::SqliteStore;
use tokio::sync::OnceCell;
use tower_sessions_core_14 as tsc;

use crate::driver::{median, workspace_root};
use crate::proto::{OTHER_ERRORS, TTL, now_ms, ts_data};
use crate::systems::{BoxError, MEMORY_STORE_BYTES, MOKA_ENTRIES};

/// Concurrent requests on the hot session.
pub(crate) const TASKS: usize = 64;

/// Requests (keys) per hot session before the next one takes over.
pub(crate) const KEYS_PER_SESSION: u64 = 1_000;

/// Hot sessions available per run (caps a run at 20 million requests).
const MAX_SESSIONS: usize = 20_000;

/// At most this many distinct error messages are kept per run.
const MAX_DISTINCT_ERRORS: usize = 16;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

const OURS_REDIS_PREFIX: &str = "bench-hot:";

const HELP: &str = "\
session-bench --hot-session [--window-ms N] [--warmup-ms N] [--reps N]

W4 hot session: 64 concurrent requests add keys to one shared session.
Systems: ours-memory, ours-redis, ours-sqlite, ts-moka, ts-redis
(tower-sessions' SQLite store is not covered). Writes
target/bench/hot-session.md.

  --window-ms N   measured window per run (default 3000)
  --warmup-ms N   warm-up before each window (default 500)
  --reps N        repetitions per system, interleaved (default 3)
";

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A [`SessionStore`] that counts `save` (and `create`) calls and forwards
/// everything to `inner`.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    saves: Arc<AtomicU64>,
    creates: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl<S: SessionStore> SessionStore for Counting<S> {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.creates.fetch_add(1, Ordering::Relaxed);
        self.inner.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.inner.load(key).await
    }
    async fn load_if_changed(&self, key: &StorageKey, known: &Record) -> Result<Reload, Error> {
        self.inner.load_if_changed(key, known).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.saves.fetch_add(1, Ordering::Relaxed);
        self.inner.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.inner.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        self.inner.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.inner.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.inner.delete_expired().await
    }
}

/// A hot session: our cookie value, or tower-sessions' id.
#[derive(Debug, Clone)]
enum Handle {
    Cookie(String),
    Ts(i128),
}

/// One system under test.
enum System {
    Ours {
        name: &'static str,
        manager: SessionManager,
        saves: Arc<AtomicU64>,
    },
    TsMoka(Arc<tower_sessions_moka_store::MokaStore>),
    TsRedis(Arc<tower_sessions_redis_store::RedisStore<fred::clients::Client>>),
}

fn ours(name: &'static str, store: impl SessionStore) -> System {
    let saves = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: store,
        saves: Arc::clone(&saves),
        creates: Arc::new(AtomicU64::new(0)),
    };
    System::Ours {
        name,
        manager: SessionManager::new(counting),
        saves,
    }
}

fn ts_expiry() -> tsc::Expiry {
    tsc::Expiry::OnInactivity(time::Duration::seconds(TTL.as_secs() as i64))
}

/// A fresh tower-sessions session with the benchmark payload.
async fn ts_create<S: tsc::SessionStore>(store: &Arc<S>) -> Result<Handle, String> {
    let session = tsc::Session::new(None, Arc::clone(store), Some(ts_expiry()));
    for (k, v) in ts_data(0, now_ms()) {
        session
            .insert_value(&k, v)
            .await
            .map_err(|e| format!("insert: {e}"))?;
    }
    session.save().await.map_err(|e| format!("save: {e}"))?;
    let id = session.id().ok_or("created session has no id")?;
    Ok(Handle::Ts(id.0))
}

/// One tower-sessions request: load by id, read, insert `key`, save.
async fn ts_request<S: tsc::SessionStore>(
    store: &Arc<S>,
    id: i128,
    key: &str,
    value: u64,
) -> Result<(), String> {
    let session = tsc::Session::new(
        Some(tsc::session::Id(id)),
        Arc::clone(store),
        Some(ts_expiry()),
    );
    session
        .get_value("csrf_token")
        .await
        .map_err(|e| format!("load: {e}"))?
        .ok_or("session not found (or lacks its payload)")?;
    session
        .insert(key, value)
        .await
        .map_err(|e| format!("insert: {e}"))?;
    session.save().await.map_err(|e| format!("save: {e}"))
}

/// How many of `keys` are missing from tower-sessions session `id`.
async fn ts_missing<S: tsc::SessionStore>(
    store: &Arc<S>,
    id: i128,
    keys: &[String],
) -> Result<u64, String> {
    let record = store
        .load(&tsc::session::Id(id))
        .await
        .map_err(|e| format!("load: {e}"))?;
    Ok(match record {
        None => keys.len() as u64,
        Some(r) => keys.iter().filter(|k| !r.data.contains_key(*k)).count() as u64,
    })
}

impl System {
    fn name(&self) -> &'static str {
        match self {
            System::Ours { name, .. } => name,
            System::TsMoka(_) => "ts-moka",
            System::TsRedis(_) => "ts-redis",
        }
    }

    fn saves(&self) -> Option<u64> {
        match self {
            System::Ours { saves, .. } => Some(saves.load(Ordering::Relaxed)),
            _ => None,
        }
    }

    fn create(&self) -> BoxFuture<'_, Result<Handle, String>> {
        Box::pin(async move {
            match self {
                System::Ours { manager, .. } => {
                    let session = manager.load(None);
                    for (k, v) in ts_data(0, now_ms()) {
                        session
                            .insert(k, v)
                            .await
                            .map_err(|e| format!("insert: {e}"))?;
                    }
                    match manager.commit(&session).await {
                        Ok(CookieAction::Set { value, .. }) => Ok(Handle::Cookie(value)),
                        Ok(other) => Err(format!("create: commit answered {other:?}")),
                        Err(e) => Err(format!("create: {e}")),
                    }
                }
                System::TsMoka(store) => ts_create(store).await,
                System::TsRedis(store) => ts_create(store).await,
            }
        })
    }

    fn request<'a>(
        &'a self,
        handle: &'a Handle,
        key: &'a str,
        value: u64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match (self, handle) {
                (System::Ours { manager, .. }, Handle::Cookie(cookie)) => {
                    let session = manager.load(Some(cookie));
                    session
                        .get_value("csrf_token")
                        .await
                        .map_err(|e| format!("load: {e}"))?
                        .ok_or("session not found (or lacks its payload)")?;
                    session
                        .insert(key, value)
                        .await
                        .map_err(|e| format!("insert: {e}"))?;
                    match manager.commit(&session).await {
                        Ok(CookieAction::Clear) => Err("commit: cookie cleared".to_owned()),
                        Ok(_) => Ok(()),
                        Err(e) => Err(format!("commit: {e}")),
                    }
                }
                (System::TsMoka(store), Handle::Ts(id)) => ts_request(store, *id, key, value).await,
                (System::TsRedis(store), Handle::Ts(id)) => {
                    ts_request(store, *id, key, value).await
                }
                _ => Err("handle of another system".to_owned()),
            }
        })
    }

    /// How many of `keys` are missing from the stored session `handle`.
    async fn missing(&self, handle: &Handle, keys: &[String]) -> Result<u64, String> {
        match (self, handle) {
            (System::Ours { manager, .. }, Handle::Cookie(cookie)) => {
                let key = SessionId::parse(cookie)
                    .map_err(|e| e.to_string())?
                    .storage_key();
                let record = manager
                    .store()
                    .load(&key)
                    .await
                    .map_err(|e| format!("load: {e}"))?;
                Ok(match record {
                    None => keys.len() as u64,
                    Some(r) => keys.iter().filter(|k| !r.data.contains_key(*k)).count() as u64,
                })
            }
            (System::TsMoka(store), Handle::Ts(id)) => ts_missing(store, *id, keys).await,
            (System::TsRedis(store), Handle::Ts(id)) => ts_missing(store, *id, keys).await,
            _ => Err("handle of another system".to_owned()),
        }
    }
}

/// The outcome of one run of one system.
#[derive(Debug, Clone, Default)]
struct Run {
    /// Successful requests completed inside the window.
    ops: u64,
    /// Failed requests (warm-up and after-window included).
    errors: u64,
    /// The window as measured, in seconds.
    secs: f64,
    /// Store `save` calls inside the window (ours only).
    saves: Option<u64>,
    /// Successful requests of the whole run (warm-up included), each one
    /// key that must be in its session.
    committed: u64,
    /// Of those, keys missing from the stored session afterwards.
    lost: u64,
    /// Hot sessions used.
    sessions: u64,
    /// Error messages and how often each occurred.
    messages: BTreeMap<String, u64>,
}

impl Run {
    fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    fn saves_per_request(&self) -> Option<f64> {
        self.saves
            .filter(|_| self.ops > 0)
            .map(|s| s as f64 / self.ops as f64)
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    errors: u64,
    committed: Vec<u64>,
    messages: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        let slot = if self.messages.len() < MAX_DISTINCT_ERRORS || self.messages.contains_key(&msg)
        {
            msg
        } else {
            OTHER_ERRORS.to_owned()
        };
        *self.messages.entry(slot).or_insert(0) += 1;
    }
}

/// One warm-up plus window of W4 on `system`, then the lost-update check.
async fn run_once(
    system: &Arc<System>,
    warmup: Duration,
    window: Duration,
) -> Result<Run, BoxError> {
    let sessions: Arc<Vec<OnceCell<Handle>>> =
        Arc::new((0..MAX_SESSIONS).map(|_| OnceCell::new()).collect());
    let next = Arc::new(AtomicU64::new(0));
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut handles = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (system, sessions, next, phase) = (
            Arc::clone(system),
            Arc::clone(&sessions),
            Arc::clone(&next),
            Arc::clone(&phase),
        );
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while phase.load(Ordering::Relaxed) != STOP {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(cell) = sessions.get((n / KEYS_PER_SESSION) as usize) else {
                    tally.error("out of hot sessions".to_owned());
                    break;
                };
                let outcome = match cell.get_or_try_init(|| system.create()).await {
                    Ok(handle) => system.request(handle, &format!("k{n}"), n).await,
                    Err(e) => Err(e),
                };
                let in_window = phase.load(Ordering::Relaxed) == MEASURE;
                match outcome {
                    Ok(()) => {
                        tally.committed.push(n);
                        tally.ops += u64::from(in_window);
                    }
                    Err(msg) => tally.error(msg),
                }
                tokio::task::consume_budget().await;
            }
            tally
        }));
    }
    tokio::time::sleep(warmup).await;
    let saves_before = system.saves();
    phase.store(MEASURE, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let saves_after = system.saves();
    phase.store(STOP, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let mut run = Run {
        secs,
        saves: saves_after.zip(saves_before).map(|(a, b)| a - b),
        ..Run::default()
    };
    let mut by_session: HashMap<u64, Vec<String>> = HashMap::new();
    for handle in handles {
        let tally = handle.await?;
        run.ops += tally.ops;
        run.errors += tally.errors;
        for (msg, n) in tally.messages {
            *run.messages.entry(msg).or_insert(0) += n;
        }
        for n in tally.committed {
            by_session
                .entry(n / KEYS_PER_SESSION)
                .or_default()
                .push(format!("k{n}"));
        }
    }
    for (g, keys) in &by_session {
        let handle = sessions
            .get(*g as usize)
            .and_then(OnceCell::get)
            .ok_or("a committed key's session has no handle")?;
        run.committed += keys.len() as u64;
        run.lost += system.missing(handle, keys).await?;
    }
    run.sessions = sessions.iter().filter(|c| c.initialized()).count() as u64;
    Ok(run)
}

struct Args {
    warmup: Duration,
    window: Duration,
    reps: usize,
}

fn parse(argv: &[String]) -> Result<Option<Args>, BoxError> {
    let mut args = Args {
        warmup: Duration::from_millis(500),
        window: Duration::from_millis(3_000),
        reps: 3,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            return Ok(None);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--window-ms" => args.window = Duration::from_millis(value.parse()?),
            "--warmup-ms" => args.warmup = Duration::from_millis(value.parse()?),
            "--reps" => args.reps = value.parse::<usize>()?.max(1),
            other => return Err(format!("--hot-session: unknown flag {other:?}").into()),
        }
    }
    Ok(Some(args))
}

/// `session-bench --hot-session ...`.
pub(crate) fn run(argv: &[String]) -> Result<(), BoxError> {
    let Some(args) = parse(argv)? else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("session-bench-hot-")
        .tempdir()?;
    let server = RedisServer::spawn_unix(dir.path(), &dir.path().join("redis.sock"))?;
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (systems, runs) = rt.block_on(async {
        let systems = setup(&url, dir.path()).await?;
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); systems.len()];
        for rep in 0..args.reps {
            for k in 0..systems.len() {
                let i = (k + rep) % systems.len();
                let system = &systems[i];
                let run = run_once(system, args.warmup, args.window).await?;
                eprintln!(
                    "rep {} {:<12} {:>9.0} ops/s, {} errors, saves/request {}, lost {}/{}",
                    rep + 1,
                    system.name(),
                    run.ops_per_sec(),
                    run.errors,
                    run.saves_per_request()
                        .map_or_else(|| "-".to_owned(), |s| format!("{s:.3}")),
                    run.lost,
                    run.committed,
                );
                runs[i].push(run);
            }
        }
        Ok::<_, BoxError>((systems, runs))
    })?;
    drop(rt);
    drop(server);
    let md = render(&args, &systems, &runs);
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join("hot-session.md");
    std::fs::write(&path, &md)?;
    print!("{md}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

async fn setup(url: &str, dir: &std::path::Path) -> Result<Vec<Arc<System>>, BoxError> {
    let redis = RedisStore::builder(url)
        .prefix(OURS_REDIS_PREFIX)
        .connect()
        .await?;
    let sqlite = SqliteStore::open(dir.join("hot.db")).await?;
    let ts_redis = {
        use fred::interfaces::ClientLike as _;
        let path = url
            .strip_prefix("unix://")
            .ok_or("expected a unix:// URL")?;
        let config = fred::types::config::Config::from_url_unix(&format!("redis+unix://{path}"))?;
        let client = fred::clients::Client::new(config, None, None, None);
        client.init().await?;
        tower_sessions_redis_store::RedisStore::new(client)
    };
    Ok(vec![
        Arc::new(ours("ours-memory", MemoryStore::new(MEMORY_STORE_BYTES))),
        Arc::new(ours("ours-redis", redis)),
        Arc::new(ours("ours-sqlite", sqlite)),
        Arc::new(System::TsMoka(Arc::new(
            tower_sessions_moka_store::MokaStore::new(Some(MOKA_ENTRIES)),
        ))),
        Arc::new(System::TsRedis(Arc::new(ts_redis))),
    ])
}

fn render(args: &Args, systems: &[Arc<System>], runs: &[Vec<Run>]) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(md, "# W4 hot session\n");
    let _ = writeln!(
        md,
        "{TASKS} concurrent requests each add a new key to one shared session \
         (load, read, insert, save/commit), {} ms window after {} ms warm-up, \
         {} repetitions per system, interleaved; a fresh hot session every \
         {KEYS_PER_SESSION} requests (64 KiB size limit). Ours: `SessionManager`, \
         default `SessionConfig`; tower-sessions: `Session` over its stores \
         (tower-sessions-core 0.14). Lost updates: keys of successful requests \
         (warm-up included) missing from the stored session afterwards. \
         Saves/request: store `save` calls in the window / successful requests \
         in the window. tower-sessions' SQLite store is not covered.\n",
        args.window.as_millis(),
        args.warmup.as_millis(),
        args.reps,
    );
    let _ = writeln!(
        md,
        "| System | ops/s (median) | ops/s per run | errors | saves/request | lost updates / committed |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|");
    for (system, runs) in systems.iter().zip(runs) {
        let ops = median(runs.iter().map(Run::ops_per_sec).collect());
        let per_run = runs
            .iter()
            .map(|r| format!("{:.0}", r.ops_per_sec()))
            .collect::<Vec<_>>()
            .join(", ");
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        let saves: Vec<f64> = runs.iter().filter_map(Run::saves_per_request).collect();
        let saves = if saves.is_empty() {
            "n/a".to_owned()
        } else {
            format!("{:.3}", median(saves))
        };
        let lost: u64 = runs.iter().map(|r| r.lost).sum();
        let committed: u64 = runs.iter().map(|r| r.committed).sum();
        let _ = writeln!(
            md,
            "| {} | {ops:.0} | {per_run} | {errors} | {saves} | {lost} / {committed} |",
            system.name()
        );
    }
    let messages: Vec<String> = systems
        .iter()
        .zip(runs)
        .flat_map(|(s, runs)| {
            runs.iter()
                .flat_map(|r| r.messages.iter())
                .map(move |(m, n)| format!("- {}: {n} x {m}", s.name()))
        })
        .collect();
    if !messages.is_empty() {
        let _ = writeln!(md, "\nErrors:\n");
        for m in messages {
            let _ = writeln!(md, "{m}");
        }
    }
    md
}
