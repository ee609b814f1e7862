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
//! benchmark), and the same on the memory store, `memory-load` and
//! `memory-cycle` (the whole call is counted there: no server), and
//! `memory-hot`, the W4 hot-session request through the manager (see
//! `profile_hot.rs`).

use std::sync::Arc;

use session_core::{SessionStore, Timestamp};
use session_store_memory::MemoryStore;
use session_store_redis::RedisStore;
use session_store_redis::testing::RedisServer;

use crate::data::{key_of, session, touch_for_save};
use crate::systems::BoxError;

/// Sessions stored before the calls; the calls cycle over them.
const SESSIONS: u64 = 1_000;

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
    let (redis, cycle) = match operation.as_str() {
        "redis-load" => (true, false),
        "redis-cycle" => (true, true),
        "memory-load" => (false, false),
        "memory-cycle" => (false, true),
        other => {
            return Err(format!(
                "profile: unknown operation {other} (known: redis-load, redis-cycle, \
                 memory-load, memory-cycle, memory-hot)"
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
    let server = if redis {
        Some(RedisServer::spawn_unix(
            dir.path(),
            &dir.path().join("redis.sock"),
        )?)
    } else {
        None
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
                    // Task `t` works on its own sessions `t`, `t + tasks`,
                    // …, so no two tasks save one session.
                    let key = key_of(t + (i % (SESSIONS / tasks).max(1)) * tasks);
                    let Some(mut record) = store.load(&key).await? else {
                        return Err(BoxError::from("profile: a stored session is missing"));
                    };
                    if cycle {
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
