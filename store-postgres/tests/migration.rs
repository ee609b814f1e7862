//! The schema's versions: a table installed by the previous release
//! (schema version 1, before the integrity digest) is refused at connect
//! until migrated; `migrate` upgrades it in place, keeping every session
//! that was readable (loads, saves, touches and listings work on them as
//! before) and leaving rows that were already damaged unreadable, for
//! loads and saves alike; a newer schema is refused. Each test on a
//! throwaway cluster of its own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use session_core::{Error, Record, SessionId, SessionStore, Timestamp};
use session_store_postgres::testing::Cluster;
use session_store_postgres::{PostgresOptions, sqlx};
use sqlx::Connection as _;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const HOUR: Duration = Duration::from_secs(3600);

/// The DDL of schema version 1, as the previous release installed it.
const V1: [&str; 5] = [
    "CREATE TABLE sessions_meta (name text PRIMARY KEY, value bigint NOT NULL)",
    "CREATE TABLE sessions (key bytea PRIMARY KEY CHECK (octet_length(key) = 32), \
     \"user\" bytea, data json NOT NULL, version bigint NOT NULL, created_at bigint NOT NULL, \
     expires_at bigint NOT NULL)",
    "CREATE INDEX sessions_expires_at_idx ON sessions (expires_at)",
    "CREATE INDEX sessions_user_idx ON sessions USING hash (\"user\") WHERE \"user\" IS NOT NULL",
    "INSERT INTO sessions_meta (name, value) VALUES ('schema_version', 1)",
];

fn record(user: Option<&str>, version: u64) -> TestResult<Record> {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate()?.storage_key(),
        now,
        now.saturating_add(HOUR),
    );
    record.user = user.map(str::to_owned);
    record.version = version;
    record.data.insert("cart".into(), json!([1, 2, 3]));
    Ok(record)
}

/// Writes `record` as the previous release did, with `data` as its data
/// column's text.
async fn insert_v1(conn: &mut sqlx::PgConnection, record: &Record, data: &str) -> TestResult {
    sqlx::query(
        "INSERT INTO sessions (key, \"user\", data, version, created_at, expires_at) \
         VALUES ($1, $2, $3::json, $4, $5, $6)",
    )
    .bind(record.key.as_bytes().as_slice())
    .bind(record.user.as_deref().map(str::as_bytes))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_table_is_refused_until_migrated_and_keeps_its_sessions() -> TestResult {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::start).await??);
    let mut conn = sqlx::PgConnection::connect(&cluster.url()).await?;
    for statement in V1 {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let alice = record(Some("alice"), 2)?;
    let anonymous = record(None, 0)?;
    let (beyond_f64, not_an_object) = (record(Some("alice"), 1)?, record(None, 1)?);
    for readable in [&alice, &anonymous] {
        insert_v1(&mut conn, readable, &serde_json::to_string(&readable.data)?).await?;
    }
    // Damaged before the upgrade: it cannot vouch for them.
    insert_v1(&mut conn, &beyond_f64, r#"{"cart": 1e400}"#).await?;
    insert_v1(&mut conn, &not_an_object, "[1]").await?;

    match PostgresOptions::new(cluster.url()).connect().await {
        Err(e @ Error::Backend { .. }) => {
            let source = std::error::Error::source(&e).map(ToString::to_string);
            assert!(
                source.as_deref().is_some_and(|s| s.contains("older")),
                "{e}: {source:?}"
            );
        }
        other => return Err(format!("a version 1 table without migrate: {other:?}").into()),
    }
    let store = PostgresOptions::new(cluster.url())
        .migrate(true)
        .connect()
        .await?;
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM sessions_meta WHERE name = 'schema_version'")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(version, 2);

    // The readable sessions work as before.
    assert_eq!(store.load(&alice.key).await?, Some(alice.clone()));
    assert_eq!(store.load(&anonymous.key).await?, Some(anonymous.clone()));
    let mut saved = alice.clone();
    saved.data.insert("after".into(), json!("the upgrade"));
    saved.version = store.save(&saved).await?;
    assert_eq!(saved.version, 3);
    saved.expires_at = saved.expires_at.saturating_add(HOUR);
    assert!(store.touch(&saved.key, saved.expires_at).await?);
    assert_eq!(store.load(&saved.key).await?, Some(saved.clone()));
    // The damaged ones are unreadable, to loads, listings and saves alike.
    for damaged in [&beyond_f64, &not_an_object] {
        assert!(is_decode_of(&store.load(&damaged.key).await, damaged));
        let mut attempt = damaged.clone();
        attempt.data.insert("overwrite".into(), json!(true));
        assert!(is_decode_of(&store.save(&attempt).await, damaged));
    }
    let listed = store.list_by_user("alice").await?;
    assert_eq!(listed.records, vec![saved.clone()]);
    assert_eq!(listed.unreadable, vec![beyond_f64.key]);

    // Migrating again changes nothing.
    session_store_postgres::migrate(store.pool(), store.table()).await?;
    assert_eq!(store.load(&saved.key).await?, Some(saved));
    assert!(is_decode_of(
        &store.load(&beyond_f64.key).await,
        &beyond_f64
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_at_connect() -> TestResult {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::start).await??);
    let store = PostgresOptions::new(cluster.url())
        .migrate(true)
        .connect()
        .await?;
    sqlx::query("UPDATE sessions_meta SET value = 99 WHERE name = 'schema_version'")
        .execute(store.pool())
        .await?;
    for migrate in [false, true] {
        match PostgresOptions::new(cluster.url())
            .migrate(migrate)
            .connect()
            .await
        {
            Err(e @ Error::Backend { .. }) if !e.is_retryable() => {
                let source = std::error::Error::source(&e).map(ToString::to_string);
                assert!(
                    source.as_deref().is_some_and(|s| s.contains("99")),
                    "{e}: {source:?}"
                );
            }
            other => return Err(format!("migrate({migrate}): {other:?}").into()),
        }
    }
    Ok(())
}
