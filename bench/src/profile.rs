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
//! and on the memory store, `memory-load`, `memory-cycle` and
//! `memory-create` (the whole call is counted there: no server).

use std::sync::Arc;

use session_core::{SessionStore, Timestamp};
use session_store_memory::MemoryStore;
use session_store_redis::RedisStore;
use session_store_redis::testing::Server;

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

/// Runs the profile described in the module docs.
pub(crate) fn run(args: &[String]) -> Result<(), BoxError> {
    let (operation, calls, tasks) = match args {
        [operation, calls] => (operation, calls.parse::<u64>()?, 1),
        [operation, calls, tasks] => (operation, calls.parse()?, tasks.parse::<u64>()?),
        _ => return Err("profile: expected OPERATION CALLS [TASKS]".into()),
    };
    // `valkey-…`: the same on Valkey (`VALKEY_SERVER` or `PATH`).
    let (server_kind, op) = match operation.split_once('-') {
        Some(("redis", op)) => (Some(Server::Redis), op),
        Some(("valkey", op)) => (Some(Server::Valkey), op),
        Some(("memory", op)) => (None, op),
        _ => (None, "?"),
    };
    let (redis, kind) = match op {
        "load" => (server_kind, Kind::Load),
        "cycle" => (server_kind, Kind::Cycle),
        "create" => (server_kind, Kind::Create),
        _ => {
            return Err(format!(
                "profile: unknown operation {operation} (known: redis-load, redis-cycle, \
                 redis-create, the same with valkey- or memory-)"
            )
            .into());
        }
    };
    if tasks > SESSIONS {
        return Err(format!("profile: at most {SESSIONS} tasks").into());
    }
    let dir = tempfile::Builder::new()
        .prefix("session-bench-profile-")
        .tempdir()?;
    let server = match redis {
        Some(kind) => Some(kind.spawn_unix(dir.path(), &dir.path().join("redis.sock"))?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store: Arc<dyn SessionStore> = match &server {
            Some(server) => Arc::new(RedisStore::connect(server.url()).await?),
            None => Arc::new(MemoryStore::new(1 << 30)),
        };
        let now = Timestamp::now();
        for i in 0..SESSIONS {
            store.create(&session(i, now)?).await?;
        }
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
        Ok::<_, BoxError>(())
    })?;
    drop(server);
    println!("{operation}: {calls} calls over {tasks} tasks");
    Ok(())
}
