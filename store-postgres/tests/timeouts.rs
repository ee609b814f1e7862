//! Every call is bounded in time (issue 23 item 6), with the default
//! `PostgresOptions` (the default operation timeout), each test on a
//! throwaway cluster of its own:
//!
//! - a table locked by another connection (`LOCK TABLE … IN ACCESS
//!   EXCLUSIVE MODE`, as `VACUUM FULL` takes it): every kind of call, alone
//!   and many at once, fails retryably within the operation timeout, each
//!   error says that nothing of it was applied (the server cancelled the
//!   statement, or it was never sent), the table is byte for byte as
//!   before once the lock is released, and the store works again;
//! - a server that stops answering (`SIGSTOP` to the postmaster and every
//!   backend): every kind of call, alone and many at once, fails
//!   retryably within the operation timeout; after `SIGCONT` the same
//!   store works again.
//!
//! The clusters need PostgreSQL's server binaries (`initdb`, `pg_ctl`:
//! `PG_BIN`, `PATH` or `/usr/lib/postgresql/*/bin`), whatever
//! `DATABASE_URL` says.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{HOUR, SLACK, TestResult, record};
use futures_util::future::join_all;
use serde_json::json;
use session_core::{Error, Record, SessionStore, Timestamp};
use session_store_postgres::testing::Cluster;
use session_store_postgres::{DEFAULT_OPERATION_TIMEOUT, PostgresOptions, PostgresStore, sqlx};
use sqlx::Connection as _;

/// A cluster of the test's own, and a store on it with the default
/// options (table installed on connect).
async fn setup() -> TestResult<(Arc<Cluster>, PostgresStore)> {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::start).await??);
    let store = PostgresOptions::new(cluster.url())
        .migrate(true)
        .connect()
        .await?;
    assert_eq!(store.operation_timeout(), DEFAULT_OPERATION_TIMEOUT);
    Ok((cluster, store))
}

/// What the table holds, every row byte for byte, in key order.
async fn snapshot(store: &PostgresStore) -> TestResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT concat_ws(' | ', encode(key, 'hex'), encode(\"user\", 'escape'), data::text, \
         version, created_at, expires_at, digest) FROM sessions ORDER BY key",
    )
    .fetch_all(store.pool())
    .await?)
}

/// The sessions the calls below work on, as stored before the fault.
struct Sessions {
    /// Saved once (version 1), user `alice`.
    saved: Record,
    /// To delete.
    doomed: Record,
    /// User `bob`'s, to delete by user.
    bobs: Record,
    /// Not stored: to create.
    fresh: Record,
}

async fn store_sessions(store: &PostgresStore) -> TestResult<Sessions> {
    let mut saved = record(Some("alice"))?;
    store.create(&saved).await?;
    saved.data.insert("n".into(), json!(1));
    saved.version = store.save(&saved).await?;
    let doomed = record(None)?;
    store.create(&doomed).await?;
    let bobs = record(Some("bob"))?;
    store.create(&bobs).await?;
    // An expired row, for `delete_expired` to find.
    let mut expired = record(None)?;
    expired.expires_at = Timestamp::now().saturating_add(Duration::from_millis(50));
    store.create(&expired).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Sessions {
        saved,
        doomed,
        bobs,
        fresh: record(Some("alice"))?,
    })
}

type Call<'a> = (
    String,
    Pin<Box<dyn Future<Output = Result<String, Error>> + Send + 'a>>,
);

fn call<'a, T: std::fmt::Debug>(
    name: impl Into<String>,
    f: impl Future<Output = Result<T, Error>> + Send + 'a,
) -> Call<'a> {
    (
        name.into(),
        Box::pin(async move { f.await.map(|v| format!("{v:?}")) }),
    )
}

/// Every kind of call once, and then many at once: creates and saves of
/// distinct keys (batched), saves and loads of one key.
fn every_call<'a>(store: &'a PostgresStore, s: &'a Sessions) -> Vec<Call<'a>> {
    let later = Timestamp::now().saturating_add(HOUR + HOUR);
    let mut resaved = s.saved.clone();
    resaved.data.insert("during".into(), json!("the fault"));
    let mut calls = vec![
        call("create", store.create(&s.fresh)),
        call("load", store.load(&s.saved.key)),
        call("save", {
            let resaved = resaved.clone();
            async move { store.save(&resaved).await }
        }),
        call("touch", store.touch(&s.saved.key, later)),
        call("delete", store.delete(&s.doomed.key)),
        call("list_by_user", store.list_by_user("alice")),
        call("delete_by_user", store.delete_by_user("bob")),
        call("delete_expired", store.delete_expired()),
    ];
    for i in 0..16 {
        let fresh = record(Some("carol")).map_err(|e| Error::backend("test", "test", false, e));
        calls.push(call(format!("concurrent create {i}"), async move {
            store.create(&fresh?).await
        }));
    }
    for i in 0..8 {
        let resaved = resaved.clone();
        calls.push(call(format!("save {i} of one key"), async move {
            store.save(&resaved).await
        }));
        calls.push(call(
            format!("load {i} of one key"),
            store.load(&s.saved.key),
        ));
    }
    calls
}

/// Runs `calls` all at once; each must fail with a retryable
/// `Error::Backend` within the operation timeout plus slack, and, when
/// `nothing_applied`, say that nothing of it was applied. Returns the
/// slowest call's time.
async fn all_fail_in_time(calls: Vec<Call<'_>>, nothing_applied: bool) -> TestResult<Duration> {
    let limit = DEFAULT_OPERATION_TIMEOUT + SLACK;
    let started = Instant::now();
    let timed = calls.into_iter().map(|(name, call)| async move {
        let result = call.await;
        (name, result, started.elapsed())
    });
    // Bounded here too, so that calls that never return fail the test
    // rather than hang it.
    let results = tokio::time::timeout(limit + SLACK, join_all(timed))
        .await
        .map_err(|_| format!("the calls were still running after {:?}", limit + SLACK))?;
    let mut wrong = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, result, took) in results {
        slowest = slowest.max(took);
        let chain = match &result {
            Err(e @ Error::Backend { .. }) if e.is_retryable() => error_chain(e),
            other => {
                wrong.push(format!(
                    "{name}: {other:?} (expected a retryable Backend error)"
                ));
                continue;
            }
        };
        if took > limit {
            wrong.push(format!("{name} took {took:?} (limit {limit:?}): {chain}"));
        }
        if nothing_applied && !chain.contains("nothing of it was applied") {
            wrong.push(format!("{name}: not said to be unapplied: {chain}"));
        }
    }
    if wrong.is_empty() {
        Ok(slowest)
    } else {
        Err(wrong.join("\n").into())
    }
}

/// `error` and its sources, as one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Checks that `store` serves every kind of call again.
async fn serves_every_call(store: &PostgresStore, s: &Sessions) -> TestResult {
    let mut fresh = record(Some("after"))?;
    store.create(&fresh).await?;
    fresh.data.insert("after".into(), json!("the fault"));
    fresh.version = store.save(&fresh).await?;
    assert!(store.touch(&fresh.key, fresh.expires_at).await?);
    assert_eq!(store.load(&fresh.key).await?, Some(fresh.clone()));
    assert_eq!(store.list_by_user("after").await?.records, vec![fresh]);
    let mut saved = s.saved.clone();
    saved.data.insert("after".into(), json!("the fault"));
    saved.version = store.save(&saved).await?;
    assert!(store.delete(&s.doomed.key).await?);
    assert_eq!(store.delete_by_user("bob").await?, 1);
    store.delete_expired().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_fails_every_call_in_time_and_applies_nothing() -> TestResult {
    let (cluster, store) = setup().await?;
    let sessions = store_sessions(&store).await?;
    let before = snapshot(&store).await?;
    // As `VACUUM FULL` or a migration would, another connection takes
    // the table's strongest lock and keeps it.
    let mut locker = sqlx::PgConnection::connect(&cluster.url()).await?;
    let mut lock = locker.begin().await?;
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await?;
    let outcome = all_fail_in_time(every_call(&store, &sessions), true).await;
    lock.rollback().await?;
    let slowest = outcome?;
    assert_eq!(
        snapshot(&store).await?,
        before,
        "a call that failed under the lock changed the table"
    );
    serves_every_call(&store, &sessions).await?;
    eprintln!("under the lock, the slowest call failed after {slowest:?}");
    Ok(())
}

/// Sends `SIGCONT` to the cluster when dropped, so that a failed test
/// leaves no stopped server behind.
struct Resume<'a>(&'a Cluster);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.signal("CONT") {
            eprintln!("could not resume the cluster: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_fails_every_call_in_time_and_serves_after_sigcont() -> TestResult {
    let (cluster, store) = setup().await?;
    let sessions = store_sessions(&store).await?;
    // Connections in the pool, warm: the stop finds them open.
    let warm = (0..8).map(|_| store.load(&sessions.saved.key));
    for loaded in join_all(warm).await {
        loaded?;
    }
    let resume = Resume(&cluster);
    cluster.signal("STOP")?;
    let outcome = all_fail_in_time(every_call(&store, &sessions), false).await;
    drop(resume);
    let slowest = outcome?;
    // The same store serves again; until it does, only retryable errors.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.load(&sessions.saved.key).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("no recovery after SIGCONT: {e:?}").into()),
        }
    }
    // What the stopped server received, it may have applied after
    // SIGCONT: start from what the table holds now.
    let mut now = sessions;
    now.saved = store
        .load(&now.saved.key)
        .await?
        .ok_or("the saved session is gone")?;
    if store.load(&now.doomed.key).await?.is_none() {
        store.create(&now.doomed).await?;
    }
    if store.list_by_user("bob").await?.records.is_empty() {
        store.create(&now.bobs).await?;
    }
    serves_every_call(&store, &now).await?;
    eprintln!("with the server stopped, the slowest call failed after {slowest:?}");
    Ok(())
}
