//! The hot-session driver shared by the lifecycle cases on concurrent
//! requests: many requests, over one or several managers, changing one
//! session at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use session_core::{SessionManager, SessionStore};

use super::probe::{IDLE, Probe, expect_all_kept_the_id, seed};
use super::{ensure_eq, load};
use crate::{Context, Failure, Outcome};

/// `managers` × `per_manager` requests on one session, with the default
/// configuration: all load first (the same version), then all add their
/// own key and commit together, three rounds. Every commit is `Ok(Set)`
/// with the session's own id, and every key lands. With one manager the
/// store sees at most two saves per request (its commits are folded
/// together; retrying each conflict alone would make O(N²) saves). With
/// several, every other manager (another app server) runs over the peer
/// store ([`Context::peer_store_arc`]).
pub(crate) async fn hot_session(cx: &Context, managers: usize, per_manager: usize) -> Outcome {
    let probes = [Probe::new(cx), Probe::over(cx.peer_store_arc())];
    let managers: Vec<SessionManager> = (0..managers)
        .map(|m| {
            let store: Arc<dyn SessionStore> = Arc::clone(&probes[m % 2]) as Arc<dyn SessionStore>;
            SessionManager::from_arc(store)
        })
        .collect();
    let (cookie, record) = seed(cx, Duration::from_secs(5), IDLE).await?;
    let total = managers.len() * per_manager;
    for round in 0..3 {
        for probe in &probes {
            probe.reset();
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(total));
        let mut tasks = Vec::new();
        for (m, manager) in managers.iter().enumerate() {
            for i in 0..per_manager {
                let (manager, cookie, barrier) =
                    (manager.clone(), cookie.clone(), Arc::clone(&barrier));
                let name = format!("r{round}m{m}i{i}");
                tasks.push(tokio::spawn(async move {
                    let session = manager.load(Some(&cookie));
                    session.get_value("seeded").await?; // everyone reads first
                    barrier.wait().await;
                    session.insert(name, true).await?;
                    manager.commit(&session).await
                }));
            }
        }
        expect_all_kept_the_id(tasks, &cookie, |i| {
            format!("commit of concurrent request {i} in round {round} of {total}")
        })
        .await?;
        // Across managers, conflicts are real and retried; inside one, the
        // commits must be folded together.
        let saves: u64 = probes
            .iter()
            .map(|probe| probe.calls[2].load(Ordering::SeqCst))
            .sum();
        if managers.len() == 1 && saves > 2 * total as u64 {
            return Err(Failure::new(
                format!("{total} concurrent commits of one session"),
                format!("at most {} saves", 2 * total),
                format!("{saves} saves (commits are not folded together)"),
            ));
        }
    }
    let stored = load(cx, &record.key)
        .await?
        .ok_or_else(|| Failure::new("load after the concurrent commits", "the session", "None"))?;
    let missing: Vec<String> = (0..3)
        .flat_map(|round| {
            (0..managers.len())
                .flat_map(move |m| (0..per_manager).map(move |i| format!("r{round}m{m}i{i}")))
        })
        .filter(|k| !stored.data.contains_key(k))
        .collect();
    ensure_eq(
        "keys lost by concurrent commits",
        Vec::<String>::new(),
        missing,
    )
}
