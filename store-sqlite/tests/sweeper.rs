//! The background sweeper: expired rows go, live rows stay, and a failed
//! sweep does not end the task.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{HOUR, TempFileStore, TestResult, expired_record, live_record};
use session_core::SessionStore;
use session_store_sqlite::{SqliteStore, SweepStats, SweeperExt, SweeperHandle};
use sqlx::AssertSqlSafe;

/// Polls (every 10 ms, for at most 10 s) until `done(stats)` holds.
async fn wait_for(
    sweeper: &SweeperHandle,
    what: &str,
    done: impl Fn(SweepStats) -> bool,
) -> TestResult<SweepStats> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = sweeper.stats();
        if done(stats) {
            return Ok(stats);
        }
        if Instant::now() > give_up {
            return Err(format!("sweeper never reached: {what}; stats {stats:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn raw_count(store: &SqliteStore) -> TestResult<i64> {
    let sql = format!("SELECT count(*) FROM \"{}\"", store.table());
    Ok(sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_removes_expired_and_keeps_live() -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let store = &db.store;
    let mut live = Vec::new();
    for i in 0..25u64 {
        store
            .create(&expired_record(Duration::from_millis(1 + i * 1000))?)
            .await?;
        let record = live_record(HOUR)?;
        store.create(&record).await?;
        live.push(record);
    }
    let sweeper = store.spawn_sweeper(Duration::from_millis(20))?;
    let stats = wait_for(&sweeper, "25 removed", |s| s.removed >= 25).await?;
    assert_eq!(stats.removed, 25);
    assert_eq!(stats.failures, 0);
    assert_eq!(raw_count(store).await?, 25);
    for record in &live {
        assert_eq!(store.load(&record.key).await?.as_ref(), Some(record));
    }
    // Rows that expire later are picked up by a later run.
    store
        .create(&expired_record(Duration::from_secs(1))?)
        .await?;
    wait_for(&sweeper, "26 removed", |s| s.removed >= 26).await?;
    assert_eq!(raw_count(store).await?, 25);
    tokio::time::timeout(Duration::from_secs(5), sweeper.stop()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sweep_is_retried_next_period() -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let store = &db.store;
    for _ in 0..5 {
        store
            .create(&expired_record(Duration::from_secs(5))?)
            .await?;
    }
    let live = live_record(HOUR)?;
    store.create(&live).await?;
    // Take the table away: every sweep now fails.
    sqlx::query("ALTER TABLE sessions RENAME TO sessions_away")
        .execute(store.pool())
        .await?;
    let sweeper = store.spawn_sweeper(Duration::from_millis(20))?;
    wait_for(&sweeper, "two failed sweeps", |s| s.failures >= 2).await?;
    assert_eq!(sweeper.stats().removed, 0);
    // Bring it back: the same task recovers on its next period.
    sqlx::query("ALTER TABLE sessions_away RENAME TO sessions")
        .execute(store.pool())
        .await?;
    let stats = wait_for(&sweeper, "5 removed", |s| s.removed >= 5).await?;
    assert_eq!(stats.removed, 5);
    assert!(stats.sweeps >= 1);
    assert_eq!(raw_count(store).await?, 1);
    assert_eq!(store.load(&live.key).await?, Some(live));
    tokio::time::timeout(Duration::from_secs(5), sweeper.stop()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_sweeper() -> TestResult {
    let store = SqliteStore::open_in_memory().await?;
    let sweeper = store.spawn_sweeper(Duration::from_millis(5))?;
    wait_for(&sweeper, "one sweep", |s| s.sweeps >= 1).await?;
    drop(sweeper);
    // Once stopped, nothing sweeps any more: an expired row stays put.
    tokio::time::sleep(Duration::from_millis(50)).await;
    store
        .create(&expired_record(Duration::from_secs(5))?)
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(raw_count(&store).await?, 1);
    Ok(())
}

#[test]
fn spawning_outside_a_runtime_is_an_error() -> TestResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(SqliteStore::open_in_memory())?;
    let result = store.spawn_sweeper(Duration::from_secs(1));
    assert!(result.is_err());
    Ok(())
}
