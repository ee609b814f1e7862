//! Store-specific behaviour the shared suite cannot check: corrupted rows,
//! the in-memory mode's sharing, schema and options, error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{HOUR, TempFileStore, TestResult, expired_record, live_record};
use serde_json::json;
use session_core::{Error, SessionStore};
use session_store_sqlite::{SqliteOptions, SqliteStore, Synchronous, TableName};
use sqlx::{AssertSqlSafe, Connection, Row};

async fn raw_count(store: &SqliteStore) -> TestResult<i64> {
    let sql = format!("SELECT count(*) FROM \"{}\"", store.table());
    Ok(sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await?)
}

#[tokio::test]
async fn in_memory_database_is_shared_by_pooled_connections() -> TestResult {
    let store = SqliteOptions::in_memory().max_connections(4).open().await?;
    let record = live_record(HOUR)?;
    store.create(&record).await?;
    // Hold two distinct pooled connections at once: both see the row, and
    // what one writes the other reads.
    let mut a = store.pool().acquire().await?;
    let mut b = store.pool().acquire().await?;
    for conn in [&mut a, &mut b] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&mut **conn)
            .await?;
        assert_eq!(n, 1);
    }
    sqlx::query("CREATE TABLE probe (x INTEGER)")
        .execute(&mut *a)
        .await?;
    sqlx::query("INSERT INTO probe VALUES (42)")
        .execute(&mut *a)
        .await?;
    let x: i64 = sqlx::query_scalar("SELECT x FROM probe")
        .fetch_one(&mut *b)
        .await?;
    assert_eq!(x, 42);
    drop((a, b));
    assert_eq!(store.load(&record.key).await?, Some(record.clone()));

    // A second in-memory store is a different database.
    let other = SqliteStore::open_in_memory().await?;
    assert_eq!(other.load(&record.key).await?, None);
    assert_eq!(raw_count(&other).await?, 0);
    Ok(())
}

#[tokio::test]
async fn in_memory_data_outlives_idle_pool_connections() -> TestResult {
    let store = SqliteOptions::in_memory().max_connections(2).open().await?;
    let record = live_record(HOUR)?;
    store.create(&record).await?;
    // Close every connection the pool has open (a connection may still be
    // on its way back to the pool, hence the retries); the store's own
    // keeper connection holds the database.
    for _ in 0..200 {
        if store.pool().size() == 0 {
            break;
        }
        match store.pool().try_acquire() {
            Some(conn) => conn.close().await?,
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    assert_eq!(store.pool().size(), 0, "every pooled connection closed");
    assert_eq!(store.load(&record.key).await?, Some(record));
    Ok(())
}

#[tokio::test]
async fn corrupted_json_is_decode_error_and_row_stays() -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let store = &db.store;
    for garbage in ["{not json", "[1, 2, 3]", ""] {
        let mut record = live_record(HOUR)?;
        record.user = Some("corrupt@example".into());
        store.create(&record).await?;
        sqlx::query("UPDATE sessions SET data = ?1 WHERE key = ?2")
            .bind(garbage)
            .bind(record.key.as_bytes().as_slice())
            .execute(store.pool())
            .await?;
        match store.load(&record.key).await {
            Err(Error::Decode { key, .. }) => assert_eq!(key, record.key),
            other => panic!("load of corrupted row {garbage:?}: expected Decode, got {other:?}"),
        }
        // Listed as unreadable, not fatal for the list.
        let listed = store.list_by_user("corrupt@example").await?;
        assert_eq!(listed.unreadable, vec![record.key], "{garbage:?}");
        assert!(listed.records.is_empty());
        // Still there, untouched, for inspection.
        let data: String = sqlx::query_scalar("SELECT data FROM sessions WHERE key = ?1")
            .bind(record.key.as_bytes().as_slice())
            .fetch_one(store.pool())
            .await?;
        assert_eq!(data, garbage);
        // And it can still be deleted.
        assert!(store.delete(&record.key).await?);
    }
    Ok(())
}

#[tokio::test]
async fn negative_version_is_decode_error() -> TestResult {
    let store = SqliteStore::open_in_memory().await?;
    let record = live_record(HOUR)?;
    store.create(&record).await?;
    sqlx::query("UPDATE sessions SET version = -3")
        .execute(store.pool())
        .await?;
    assert!(
        matches!(store.load(&record.key).await, Err(Error::Decode { key, .. }) if key == record.key)
    );
    Ok(())
}

#[tokio::test]
async fn versions_beyond_sqlite_integers() -> TestResult {
    let store = SqliteStore::open_in_memory().await?;
    let mut record = live_record(HOUR)?;
    record.version = u64::MAX;
    assert!(matches!(
        store.create(&record).await,
        Err(Error::Unstorable(_))
    ));
    record.version = 0;
    store.create(&record).await?;
    record.version = u64::MAX;
    assert!(matches!(
        store.save(&record).await,
        Err(Error::Unstorable(_))
    ));
    Ok(())
}

#[test]
fn table_names_are_validated() {
    for good in ["sessions", "S", "web_sessions_2", &"a".repeat(48)] {
        assert!(TableName::new(good).is_ok(), "{good:?} should be accepted");
    }
    for bad in [
        "",
        "1sessions",
        "_sessions",
        "sessions-2",
        "sessions 2",
        "sessions\"; DROP TABLE x; --",
        "séssions",
        "sqlite_master",
        "SQLITE_x",
        &"a".repeat(49),
    ] {
        let err = TableName::new(bad).err();
        assert!(err.is_some(), "{bad:?} should be rejected");
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("invalid table name")
        );
    }
}

#[tokio::test]
async fn tables_in_one_file_are_independent_and_schema_is_idempotent() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shared.db");
    let a = SqliteOptions::file(&path)
        .table(TableName::new("alpha")?)
        .open()
        .await?;
    let b = SqliteOptions::file(&path)
        .table(TableName::new("beta")?)
        .open()
        .await?;
    let record = live_record(HOUR)?;
    a.create(&record).await?;
    assert_eq!(b.load(&record.key).await?, None);
    b.create(&record).await?; // the same key in another table is free
    // Reopening runs the (idempotent) schema setup again and keeps data.
    drop(a);
    let a = SqliteOptions::file(&path)
        .table(TableName::new("alpha")?)
        .open()
        .await?;
    assert_eq!(a.load(&record.key).await?, Some(record));
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM alpha_meta WHERE name = 'schema_version'")
            .fetch_one(a.pool())
            .await?;
    assert_eq!(version, 2);
    // The indexes exist, and the per-user query uses the partial index.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'alpha' ORDER BY name",
    )
    .fetch_all(a.pool())
    .await?;
    assert_eq!(indexes, ["alpha_expires_at_idx", "alpha_user_idx"]);
    let plan: Vec<String> =
        sqlx::query("EXPLAIN QUERY PLAN SELECT key FROM alpha WHERE user = ?1 AND expires_at > ?2")
            .bind("u")
            .bind(0i64)
            .fetch_all(a.pool())
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(3))
            .collect::<Result<_, _>>()?;
    assert!(
        plan.iter().any(|step| step.contains("alpha_user_idx")),
        "{plan:?}"
    );
    Ok(())
}

#[tokio::test]
async fn newer_schema_version_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("future.db");
    let store = SqliteStore::open(&path).await?;
    sqlx::query("UPDATE sessions_meta SET value = 99 WHERE name = 'schema_version'")
        .execute(store.pool())
        .await?;
    drop(store);
    match SqliteStore::open(&path).await {
        Err(e @ Error::Backend { .. }) => {
            assert!(!e.is_retryable());
            let chain = format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(chain.contains("99"), "{chain}");
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn defaults_are_wal_and_synchronous_normal_and_full_is_offered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("d.db")).await?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(sync, 1, "NORMAL");
    let full = SqliteOptions::file(dir.path().join("f.db"))
        .synchronous(Synchronous::Full)
        .open()
        .await?;
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(full.pool())
        .await?;
    assert_eq!(sync, 2, "FULL");
    Ok(())
}

#[tokio::test]
async fn delete_expired_works_in_batches() -> TestResult {
    let store = SqliteOptions::in_memory().sweep_batch(3).open().await?;
    let mut live = Vec::new();
    for i in 0..10u64 {
        store
            .create(&expired_record(Duration::from_secs(1 + i))?)
            .await?;
    }
    for _ in 0..2 {
        let record = live_record(HOUR)?;
        store.create(&record).await?;
        live.push(record);
    }
    assert_eq!(store.delete_expired().await?, 10);
    assert_eq!(raw_count(&store).await?, 2);
    for record in &live {
        assert_eq!(store.load(&record.key).await?.as_ref(), Some(record));
    }
    assert_eq!(store.delete_expired().await?, 0);
    Ok(())
}

#[tokio::test]
async fn delete_and_delete_by_user_also_clear_expired_rows() -> TestResult {
    let store = SqliteStore::open_in_memory().await?;
    let mut gone = expired_record(Duration::from_secs(5))?;
    gone.user = Some("u".into());
    store.create(&gone).await?;
    let mut live = live_record(HOUR)?;
    live.user = Some("u".into());
    store.create(&live).await?;
    assert_eq!(store.delete_by_user("u").await?, 1);
    assert_eq!(raw_count(&store).await?, 0);
    store.create(&gone).await?;
    assert!(!store.delete(&gone.key).await?);
    assert_eq!(raw_count(&store).await?, 0);
    Ok(())
}

#[tokio::test]
async fn from_pool_uses_the_given_pool() -> TestResult {
    let dir = tempfile::tempdir()?;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("p.db"))
        .create_if_missing(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?;
    let store = SqliteStore::from_pool(pool.clone()).await?;
    let mut record = live_record(HOUR)?;
    record.data.insert("k".into(), json!("v"));
    store.create(&record).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await?;
    assert_eq!(n, 1);
    let custom = SqliteStore::from_pool_with_table(pool, TableName::new("other")?).await?;
    assert_eq!(custom.table().as_str(), "other");
    assert_eq!(custom.load(&record.key).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_held_write_lock_is_a_retryable_backend_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("locked.db");
    let store = SqliteOptions::file(&path)
        .busy_timeout(Duration::from_millis(100))
        .open()
        .await?;
    let mut other = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await?;
    let tx = other.begin_with("BEGIN IMMEDIATE").await?;
    match store.create(&live_record(HOUR)?).await {
        Err(e @ Error::Backend { .. }) => {
            assert!(e.is_retryable(), "{e}");
            assert!(e.to_string().contains("create"), "{e}");
        }
        other => panic!("expected a retryable backend error, got {other:?}"),
    }
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(store.load(&common::fresh_key()?).await?, None);
    tx.rollback().await?;
    store.create(&live_record(HOUR)?).await?;
    Ok(())
}

#[tokio::test]
async fn a_missing_directory_is_a_backend_error_on_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    match SqliteStore::open(dir.path().join("no/such/dir/s.db")).await {
        Err(e @ Error::Backend { .. }) => {
            assert!(!e.is_retryable(), "{e}");
            assert!(e.to_string().contains("open"), "{e}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn debug_names_the_table_and_whether_in_memory() -> TestResult {
    let store = SqliteOptions::in_memory().open().await?;
    let shown = format!("{store:?}");
    assert!(
        shown.starts_with("SqliteStore {")
            && shown.contains("sessions")
            && shown.contains("in_memory: true"),
        "{shown}"
    );
    Ok(())
}
