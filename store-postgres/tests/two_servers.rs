//! Two app servers on one database: every conformance case that models
//! another app server (`session_store_conformance::PEER_CASES`) runs with
//! its second `SessionManager` over a second `PostgresStore` (its own
//! pool, its own batching) on the same table, not over the same store.
//! Proves that conflicts between two stores are detected and retried
//! (no lost update), and that a logout or login on one server is seen by
//! the other (nothing resurrected), with the default `SessionConfig`.
//!
//! Each case runs in a schema of its own on the shared server (see
//! `session_store_postgres::testing`).

use std::sync::Arc;

use session_core::SessionStore;
use session_store_conformance::{Context, Namespace, PEER_CASES, run};
use session_store_postgres::testing::TestStore;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs the peer case `name` with a store and a peer store (another pool)
/// on one table.
async fn with_two_stores(name: &str) -> TestResult {
    let case = PEER_CASES
        .iter()
        .find(|case| case.name == name)
        .ok_or_else(|| format!("{name} is not in PEER_CASES"))?;
    let namespace = Namespace::random()?;
    let store = TestStore::in_schema(namespace.as_str(), |options| options).await?;
    let peer = store.peer().await?;
    let cx =
        Context::new(Arc::new(store) as Arc<dyn SessionStore>, namespace).with_peer(Arc::new(peer));
    run(case, cx).await?;
    Ok(())
}

macro_rules! two_servers {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> TestResult {
                with_two_stores(::core::stringify!($case)).await
            }
        )*

        /// The cases this file runs, in order.
        const COVERED: &[&str] = &[$(::core::stringify!($case)),*];
    };
}

two_servers!(
    lifecycle_two_managers_lose_no_update,
    lifecycle_many_managers_lose_no_update,
    lifecycle_concurrent_updates_lose_no_increment,
    lifecycle_commit_after_a_move_is_forwarded_or_superseded,
    requests_login_after_logout_elsewhere_is_never_resurrected,
    requests_random_concurrent_requests_are_explained_by_some_order,
);

#[test]
fn every_peer_case_runs_here() {
    let listed: Vec<&str> = PEER_CASES.iter().map(|case| case.name).collect();
    assert_eq!(COVERED, listed.as_slice());
}
