//! `profile OPERATION CALLS [TASKS]`: a fixed amount of one kind of store
//! call, on one thread, for `valgrind --tool=callgrind` to count the
//! client's instructions (the server is another process, not counted).
//!
//! ```text
//! cargo build --release -p session-bench
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/session-bench profile redis-load 20000 64
//! ```
//!
//! It prints the calls' wall-clock time too (setup excluded), for
//! comparing two targets in runs taken one after the other; with
//! `SESSION_BENCH_THREADS=multi` the calls run on tokio's multi-threaded
//! runtime, as in the benchmark's workers, rather than on one thread.
//!
//! Instructions per call are the difference between two runs with
//! different `CALLS` (the setup cancels out), divided by the difference
//! in calls. Instruction counts are steady from run to run, unlike time
//! on a shared machine, so they show what a change to one code path
//! saves. Operations: `redis-load` (the W3 load of the benchmark: load
//! and decode a stored session) and `redis-cycle` (the W1 request cycle:
//! load, change, save; each task on its own stripe of sessions, as in the
//! benchmark), `redis-create` (the W2 create: a fresh session bound to
//! a fresh user); the same on Valkey, `valkey-load`, `valkey-cycle` and
//! `valkey-create` (its `valkey-server` from `VALKEY_SERVER` or `PATH`);
//! on a throwaway 3-master Redis Cluster (the test harness's, which needs
//! `redis-cli`), `cluster-load`, `cluster-cycle` and `cluster-create`;
//! and on the memory store, `memory-load`, `memory-cycle` and
//! `memory-create` (the whole call is counted there: no server); and
//! `memory-hot`, the W4 hot-session request through the manager (see
//! `profile_hot.rs`).

use std::sync::Arc;

use session_core::{SessionStore, Timestamp};
use session_store_memory::MemoryStore;
use session_store_redis::RedisStore;
use session_store_redis::testing::{self, Server};

use crate::data::{key_of, session, touch_for_save};
use crate::systems::BoxError;

/// What each call does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Load,
    Cycle,
    Create,
}

/// Sessions stored before the calls; the calls cycle over them.
const SESSIONS: u64 = 1_000;

/// Where the calls go.
#[derive(Clone, Copy)]
enum Target {
    /// A throwaway server of this kind, on a unix socket.
    Server(Server),
    /// The test harness's throwaway 3-master Redis Cluster.
    Cluster,
    /// The memory store, in process.
    Memory,
}

/// The target and the kind of call an operation names.
fn parse_operation(operation: &str) -> Result<(Target, Kind), BoxError> {
    let (target, op) = match operation.split_once('-') {
        Some(("redis", op)) => (Target::Server(Server::Redis), op),
        Some(("valkey", op)) => (Target::Server(Server::Valkey), op),
        Some(("cluster", op)) => (Target::Cluster, op),
        Some(("memory", op)) => (Target::Memory, op),
        _ => (Target::Memory, "?"),
    };
    let kind = match op {
        "load" => Kind::Load,
        "cycle" => Kind::Cycle,
        "create" => Kind::Create,
        _ => {
            return Err(format!(
                "profile: unknown operation {operation} (known: redis-load, redis-cycle, \
                 redis-create, the same with valkey-, cluster- or memory-; memory-hot)"
            )
            .into());
        }
    };
    Ok((target, kind))
}

/// Runs the profile described in the module docs.
pub(crate) fn run(args: &[String]) -> Result<(), BoxError> {
    let (operation, calls, tasks) = match args {
        [operation, calls] => (operation, calls.parse::<u64>()?, 1),
        [operation, calls, tasks] => (operation, calls.parse()?, tasks.parse::<u64>()?),
        _ => return Err("profile: expected OPERATION CALLS [TASKS]".into()),
    };
    if operation == "memory-hot" {
        return crate::profile_hot::run(calls);
    }
    let (target, kind) = parse_operation(operation)?;
    if tasks > SESSIONS {
        return Err(format!("profile: at most {SESSIONS} tasks").into());
    }
    let dir = tempfile::Builder::new()
        .prefix("session-bench-profile-")
        .tempdir()?;
    let server = match target {
        Target::Server(kind) => Some(kind.spawn_unix(dir.path(), &dir.path().join("redis.sock"))?),
        Target::Cluster | Target::Memory => None,
    };
    // `SESSION_BENCH_THREADS=multi`: tokio's multi-threaded runtime, as
    // the benchmark's workers use (for wall-clock comparisons; callgrind
    // counts the one thread of the default best).
    let rt = if std::env::var("SESSION_BENCH_THREADS").is_ok_and(|v| v == "multi") {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    let seconds = rt.block_on(async {
        let store: Arc<dyn SessionStore> = match (&server, target) {
            (Some(server), _) => Arc::new(RedisStore::connect(server.url()).await?),
            (None, Target::Cluster) => {
                let nodes = testing::shared_cluster()?;
                Arc::new(RedisStore::cluster_builder(nodes).connect().await?)
            }
            (None, _) => Arc::new(MemoryStore::new(1 << 30)),
        };
        let now = Timestamp::now();
        for i in 0..SESSIONS {
            store.create(&session(i, now)?).await?;
        }
        let started = std::time::Instant::now();
        drive(store, kind, calls, tasks).await?;
        Ok::<_, BoxError>(started.elapsed().as_secs_f64())
    })?;
    drop(server);
    // The calls' wall-clock time, for comparisons within one series of
    // runs (not under callgrind, which slows the client).
    println!("{operation}: {calls} calls over {tasks} tasks in {seconds:.3} s");
    Ok(())
}

/// `calls` calls of `kind` over `tasks` tasks.
async fn drive(
    store: Arc<dyn SessionStore>,
    kind: Kind,
    calls: u64,
    tasks: u64,
) -> Result<(), BoxError> {
    let per_task = calls / tasks.max(1);
    let tasks = tasks.max(1);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                if kind == Kind::Create {
                    let now = Timestamp::now();
                    let mut record = session(SESSIONS + t * per_task + i, now)?;
                    record.expires_at = now.saturating_add(crate::proto::TTL);
                    store.create(&record).await?;
                    continue;
                }
                // Task `t` works on its own sessions `t`, `t + tasks`,
                // …, so no two tasks save one session.
                let key = key_of(t + (i % (SESSIONS / tasks).max(1)) * tasks);
                let Some(mut record) = store.load(&key).await? else {
                    return Err(BoxError::from("profile: a stored session is missing"));
                };
                if kind == Kind::Cycle {
                    touch_for_save(&mut record);
                    store.save(&record).await?;
                }
            }
            Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(())
}
