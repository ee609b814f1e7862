//! `profile memory-hot CALLS`: the W4 hot-session request (load, read one
//! key, add one key, commit) through a `SessionManager` over the memory
//! store, [`TASKS`] tasks on one thread, a fresh hot session every
//! [`KEYS_PER_SESSION`] requests as in `--hot-session`; for callgrind to
//! count instructions per request (the difference of two runs with
//! different `CALLS`, divided by the difference in calls).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use session_core::{CookieAction, SessionManager};
use session_store_memory::MemoryStore;
use tokio::sync::OnceCell;

use crate::hot::{KEYS_PER_SESSION, TASKS};
use crate::proto::{now_ms, ts_data};
use crate::systems::BoxError;

/// Runs `calls` hot-session requests.
pub(crate) fn run(calls: u64) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let manager = SessionManager::new(MemoryStore::new(1 << 30));
        let sessions: Arc<Vec<OnceCell<String>>> = Arc::new(
            (0..calls / KEYS_PER_SESSION + 1)
                .map(|_| OnceCell::new())
                .collect(),
        );
        let next = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for _ in 0..TASKS {
            let (manager, sessions, next) =
                (manager.clone(), Arc::clone(&sessions), Arc::clone(&next));
            handles.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= calls {
                        return Ok::<_, BoxError>(());
                    }
                    let cell = sessions
                        .get((n / KEYS_PER_SESSION) as usize)
                        .ok_or("profile: out of hot sessions")?;
                    let cookie = cell.get_or_try_init(|| create(&manager)).await?;
                    let session = manager.load(Some(cookie));
                    session
                        .get_value("csrf_token")
                        .await?
                        .ok_or("profile: the hot session lacks its payload")?;
                    session.insert(format!("k{n}"), n).await?;
                    if let CookieAction::Clear = manager.commit(&session).await? {
                        return Err("profile: a commit cleared the cookie".into());
                    }
                }
            }));
        }
        for handle in handles {
            handle.await??;
        }
        Ok::<_, BoxError>(())
    })?;
    println!("memory-hot: {calls} requests over {TASKS} tasks");
    Ok(())
}

/// A new hot session with the benchmark's payload; its cookie value.
async fn create(manager: &SessionManager) -> Result<String, BoxError> {
    let session = manager.load(None);
    for (k, v) in ts_data(0, now_ms()) {
        session.insert(k, v).await?;
    }
    match manager.commit(&session).await? {
        CookieAction::Set { value, .. } => Ok(value),
        other => Err(format!("profile: create answered {other:?}").into()),
    }
}
