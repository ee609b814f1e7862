//! A table written by the previous release (schema version 1, before the
//! integrity digest) is upgraded when the store opens it: every session
//! that was readable keeps working (loads, saves, touches, listings), and
//! rows that were already damaged stay unreadable, for loads and saves
//! alike.

mod common;

use common::{HOUR, TestResult, live_record};
use serde_json::json;
use session_core::{Error, Record, SessionStore};
use session_store_sqlite::SqliteStore;
use sqlx::Connection as _;

/// The DDL of schema version 1, as the previous release created it.
const V1: [&str; 5] = [
    "CREATE TABLE sessions_meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) \
     WITHOUT ROWID",
    "CREATE TABLE sessions (key BLOB PRIMARY KEY NOT NULL, user TEXT, data TEXT NOT NULL, \
     version INTEGER NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) \
     WITHOUT ROWID",
    "CREATE INDEX sessions_expires_at_idx ON sessions (expires_at)",
    "CREATE INDEX sessions_user_idx ON sessions (user) WHERE user IS NOT NULL",
    "INSERT INTO sessions_meta (name, value) VALUES ('schema_version', 1)",
];

fn record(user: Option<&str>, version: u64) -> TestResult<Record> {
    let mut record = live_record(HOUR)?;
    record.user = user.map(str::to_owned);
    record.version = version;
    record.data.insert("cart".into(), json!([1, 2, 3]));
    Ok(record)
}

/// Writes `record` as the previous release did, with `data` as its data
/// column.
async fn insert_v1(
    conn: &mut sqlx::sqlite::SqliteConnection,
    record: &Record,
    data: &str,
) -> TestResult {
    sqlx::query(
        "INSERT INTO sessions (key, user, data, version, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(record.key.as_bytes().as_slice())
    .bind(record.user.as_deref())
    .bind(data)
    .bind(i64::try_from(record.version)?)
    .bind(record.created_at.as_millis())
    .bind(record.expires_at.as_millis())
    .execute(conn)
    .await?;
    Ok(())
}

fn is_decode_of(result: &Result<impl std::fmt::Debug, Error>, record: &Record) -> bool {
    matches!(result, Err(Error::Decode { key, .. }) if *key == record.key)
}

#[tokio::test]
async fn a_version_1_table_is_upgraded_on_open_and_keeps_its_sessions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v1.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&options).await?;
    for statement in V1 {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let alice = record(Some("alice"), 2)?;
    let anonymous = record(None, 0)?;
    let (beyond_f64, not_json) = (record(Some("alice"), 1)?, record(None, 1)?);
    for readable in [&alice, &anonymous] {
        insert_v1(&mut conn, readable, &serde_json::to_string(&readable.data)?).await?;
    }
    // Damaged before the upgrade: it cannot vouch for them.
    insert_v1(&mut conn, &beyond_f64, r#"{"cart": 1e400}"#).await?;
    insert_v1(&mut conn, &not_json, "{\"cut").await?;
    conn.close().await?;

    let store = SqliteStore::open(&path).await?;
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM sessions_meta WHERE name = 'schema_version'")
            .fetch_one(store.pool())
            .await?;
    assert_eq!(version, 2);

    assert_eq!(store.load(&alice.key).await?, Some(alice.clone()));
    assert_eq!(store.load(&anonymous.key).await?, Some(anonymous.clone()));
    let mut saved = alice.clone();
    saved.data.insert("after".into(), json!("the upgrade"));
    saved.version = store.save(&saved).await?;
    assert_eq!(saved.version, 3);
    saved.expires_at = saved.expires_at.saturating_add(HOUR);
    assert!(store.touch(&saved.key, saved.expires_at).await?);
    assert_eq!(store.load(&saved.key).await?, Some(saved.clone()));
    for damaged in [&beyond_f64, &not_json] {
        assert!(is_decode_of(&store.load(&damaged.key).await, damaged));
        let mut attempt = damaged.clone();
        attempt.data.insert("overwrite".into(), json!(true));
        assert!(is_decode_of(&store.save(&attempt).await, damaged));
    }
    let listed = store.list_by_user("alice").await?;
    assert_eq!(listed.records, vec![saved.clone()]);
    assert_eq!(listed.unreadable, vec![beyond_f64.key]);

    // Opening again changes nothing.
    drop(store);
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.load(&saved.key).await?, Some(saved));
    assert!(is_decode_of(
        &store.load(&beyond_f64.key).await,
        &beyond_f64
    ));
    Ok(())
}
