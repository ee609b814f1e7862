//! The batched paths, with batches of known content: each test builds a
//! batch by hand and hands it to the writer's (or a reader's) batch
//! function directly, as the task would after taking it from its queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;
use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp};
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection, Row as _};

use crate::SqliteStore;
use crate::codec::{data_to_sql, decode_row};
use crate::reader::serve_batch;
use crate::schema::Statements;
use crate::writer::{Answer, Row, SaveOutcome, Write, run_batch};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const HOUR: Duration = Duration::from_secs(3600);

/// A store on a fresh file, plus a second connection to run batches on
/// (standing in for the writer's).
struct Db {
    store: SqliteStore,
    sql: Statements,
    conn: SqliteConnection,
    _dir: tempfile::TempDir,
}

async fn db() -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("batch.db")).await?;
    let options = (*store.pool().connect_options()).clone();
    let conn = SqliteConnection::connect_with(&options).await?;
    Ok(Db {
        sql: Statements::new(store.table().clone()),
        store,
        conn,
        _dir: dir,
    })
}

impl Db {
    async fn batch(&mut self, writes: Vec<Write>) -> Vec<Result<Answer, Error>> {
        let now = now();
        let writes = writes.into_iter().map(|w| ("test", w, now)).collect();
        run_batch(&mut self.conn, &self.sql, writes).await
    }

    async fn exec(&self, sql: &str) -> TestResult {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    async fn version(&self, key: &StorageKey) -> Result<Option<u64>, Error> {
        Ok(self.store.load(key).await?.map(|r| r.version))
    }
}

fn now() -> i64 {
    Timestamp::now().as_millis()
}

fn record(user: Option<&str>) -> Record {
    let now = Timestamp::now();
    let key = SessionId::generate().unwrap().storage_key();
    let mut record = Record::new(key, now, now.saturating_add(HOUR));
    record.user = user.map(str::to_owned);
    record
}

fn expired() -> Record {
    let now = Timestamp::now();
    let key = SessionId::generate().unwrap().storage_key();
    Record::new(
        key,
        now.saturating_sub(HOUR + HOUR),
        now.saturating_sub(HOUR),
    )
}

fn row(record: &Record) -> Row {
    Row {
        key: record.key.as_bytes().to_vec(),
        user: record.user.clone(),
        data: data_to_sql("test", &record.data).unwrap(),
        version: i64::try_from(record.version).unwrap(),
        created_at: record.created_at.as_millis(),
        expires_at: record.expires_at.as_millis(),
    }
}

fn create(record: &Record) -> Write {
    Write::Create(row(record))
}

fn save(record: &Record) -> Write {
    Write::Save(row(record))
}

fn touch(key: &StorageKey, expires_at: Timestamp) -> Write {
    Write::Touch {
        key: key.as_bytes().to_vec(),
        expires_at: expires_at.as_millis(),
    }
}

fn delete(key: &StorageKey) -> Write {
    Write::Delete {
        key: key.as_bytes().to_vec(),
    }
}

/// The answers as comparable text.
fn outcomes(results: &[Result<Answer, Error>]) -> Vec<String> {
    results
        .iter()
        .map(|r| match r {
            Ok(Answer::Changed(n)) => format!("changed {n}"),
            Ok(Answer::Save(SaveOutcome::Saved)) => "saved".into(),
            Ok(Answer::Save(SaveOutcome::Conflict)) => "conflict".into(),
            Ok(Answer::Save(SaveOutcome::NotFound)) => "not found".into(),
            Ok(Answer::Save(SaveOutcome::Unreadable)) => "unreadable".into(),
            Ok(Answer::Removed(e)) => format!("removed {}", e.len()),
            Err(e) => format!("error: {e}: {}", error_chain(e)),
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&s.to_string());
        text.push_str("; ");
        source = s.source();
    }
    text
}

#[tokio::test]
async fn saves_of_one_key_in_one_batch_win_once_per_version() -> TestResult {
    let mut db = db().await?;
    let mut r = record(Some("u"));
    db.store.create(&r).await?;
    let v0 = r.clone();
    r.data.insert("step".into(), json!(1));
    r.version = 1;
    let v1 = r.clone();
    r.data.insert("step".into(), json!(2));
    r.version = 2;
    let v2 = r.clone();
    let results = db
        .batch(vec![
            save(&v0),
            save(&v0),
            save(&v1),
            save(&v1),
            save(&v2),
            save(&v0),
        ])
        .await;
    assert_eq!(
        outcomes(&results),
        [
            "saved", "conflict", "saved", "conflict", "saved", "conflict"
        ]
    );
    let stored = db.store.load(&r.key).await?.unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(stored.data.get("step"), Some(&json!(2)));
    Ok(())
}

#[tokio::test]
async fn one_statement_of_saves_tells_every_outcome_apart() -> TestResult {
    let mut db = db().await?;
    let mut same = record(Some("alice"));
    let mut moved = record(Some("alice"));
    let mut unbound = record(None);
    let mut stale = record(Some("bob"));
    let gone = record(Some("carol"));
    let mut dead = expired();
    for r in [&same, &moved, &unbound, &stale, &dead] {
        db.store.create(r).await?;
    }
    stale.version = 5;
    same.data.insert("x".into(), json!("y"));
    moved.user = Some("bob".into());
    unbound.user = Some("dave".into());
    dead.data.insert("x".into(), json!(1));
    let results = db
        .batch(vec![
            save(&same),
            save(&moved),
            save(&unbound),
            save(&stale),
            save(&gone),
            save(&dead),
        ])
        .await;
    assert_eq!(
        outcomes(&results),
        [
            "saved",
            "saved",
            "saved",
            "conflict",
            "not found",
            "not found"
        ]
    );
    assert_eq!(db.store.load(&same.key).await?.unwrap().data, same.data);
    // The changed users moved in the per-user index too.
    let bob: Vec<StorageKey> = db
        .store
        .list_by_user("bob")
        .await?
        .records
        .iter()
        .map(|r| r.key)
        .collect();
    assert!(bob.contains(&moved.key) && bob.contains(&stale.key) && bob.len() == 2);
    assert_eq!(db.store.list_by_user("dave").await?.records.len(), 1);
    assert_eq!(db.store.list_by_user("alice").await?.records.len(), 1);
    assert_eq!(db.version(&stale.key).await?, Some(0));
    assert_eq!(db.version(&gone.key).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_mixed_batch_keeps_arrival_order_per_key_and_around_barriers() -> TestResult {
    let mut db = db().await?;
    let fresh = record(None);
    let taken = record(None);
    let dead = expired();
    let touched = record(None);
    let deleted = record(None);
    let mut cycled = record(None);
    let before_barrier = record(Some("u"));
    let after_barrier = record(Some("u"));
    let absent = record(None);
    for r in [&taken, &dead, &touched, &deleted] {
        db.store.create(r).await?;
    }
    let later = Timestamp::now().saturating_add(HOUR + HOUR);
    let mut revived = dead.clone();
    revived.expires_at = later;
    let first = cycled.clone();
    cycled.data.insert("saved".into(), json!(true));
    let results = db
        .batch(vec![
            create(&fresh),
            create(&taken),
            create(&revived),
            touch(&touched.key, later),
            touch(&absent.key, later),
            delete(&deleted.key),
            delete(&absent.key),
            // One key through its whole life, in one batch.
            create(&first),
            save(&cycled),
            delete(&cycled.key),
            create(&first),
            save(&cycled),
            // A barrier: removes the user's sessions created before it only.
            create(&before_barrier),
            Write::DeleteByUser { user: "u".into() },
            create(&after_barrier),
        ])
        .await;
    assert_eq!(
        outcomes(&results),
        [
            "changed 1",
            "changed 0",
            "changed 1",
            "changed 1",
            "changed 0",
            "removed 1",
            "removed 0",
            "changed 1",
            "saved",
            "removed 1",
            "changed 1",
            "saved",
            "changed 1",
            "removed 1",
            "changed 1",
        ]
    );
    assert_eq!(db.store.load(&fresh.key).await?, Some(fresh));
    assert_eq!(db.store.load(&revived.key).await?, Some(revived));
    assert_eq!(
        db.store.load(&touched.key).await?.map(|r| r.expires_at),
        Some(later)
    );
    assert_eq!(db.store.load(&deleted.key).await?, None);
    let mut expected = cycled.clone();
    expected.version = 1;
    assert_eq!(db.store.load(&cycled.key).await?, Some(expected));
    assert_eq!(db.store.load(&before_barrier.key).await?, None);
    assert_eq!(
        db.store.load(&after_barrier.key).await?,
        Some(after_barrier)
    );
    Ok(())
}

/// Triggers that make any write of data containing `poison` fail.
async fn poison(db: &Db, action: &str) -> TestResult {
    for (name, event) in [("poison_insert", "INSERT"), ("poison_update", "UPDATE")] {
        db.exec(&format!(
            "CREATE TRIGGER {name} BEFORE {event} ON sessions \
             WHEN NEW.data LIKE '%poison%' BEGIN SELECT RAISE({action}, 'poisoned'); END"
        ))
        .await?;
    }
    Ok(())
}

fn poisoned(mut record: Record) -> Record {
    record.data.insert("poison".into(), json!(true));
    record
}

#[tokio::test]
async fn a_failing_write_fails_alone_with_or_without_a_transaction() -> TestResult {
    let mut db = db().await?;
    poison(&db, "ABORT").await?;
    // Creates only: one statement, no explicit transaction.
    let (a, b, c) = (record(None), poisoned(record(None)), record(None));
    let results = outcomes(&db.batch(vec![create(&a), create(&b), create(&c)]).await);
    assert_eq!(results[0], "changed 1");
    assert!(results[1].contains("poisoned"), "{}", results[1]);
    assert_eq!(results[2], "changed 1");
    assert_eq!(db.version(&a.key).await?, Some(0));
    assert_eq!(db.version(&b.key).await?, None);
    assert_eq!(db.version(&c.key).await?, Some(0));

    // Creates and saves: several statements in one transaction.
    let (d, e, f) = (record(None), record(None), record(None));
    for r in [&d, &e, &f] {
        db.store.create(r).await?;
    }
    let (g, h) = (poisoned(record(None)), record(None));
    let results = outcomes(
        &db.batch(vec![
            save(&d),
            save(&poisoned(e.clone())),
            save(&f),
            create(&g),
            create(&h),
        ])
        .await,
    );
    assert_eq!(results[0], "saved");
    assert!(results[1].contains("poisoned"), "{}", results[1]);
    assert_eq!(results[2], "saved");
    assert!(results[3].contains("poisoned"), "{}", results[3]);
    assert_eq!(results[4], "changed 1");
    assert_eq!(db.version(&d.key).await?, Some(1));
    assert_eq!(db.version(&e.key).await?, Some(0));
    assert_eq!(db.version(&f.key).await?, Some(1));
    assert_eq!(db.version(&g.key).await?, None);
    assert_eq!(db.version(&h.key).await?, Some(0));
    Ok(())
}

#[tokio::test]
async fn an_error_that_rolls_back_the_transaction_fails_the_whole_batch() -> TestResult {
    let mut db = db().await?;
    poison(&db, "ROLLBACK").await?;
    let (a, b) = (record(None), record(None));
    db.store.create(&a).await?;
    // Several statements, so one transaction: the poisoned create rolls
    // it back, and with it the save that had already succeeded.
    let mut a1 = a.clone();
    a1.data.insert("x".into(), json!(1));
    let results = db
        .batch(vec![save(&a1), create(&poisoned(b.clone()))])
        .await;
    for result in &results {
        match result {
            Err(e @ Error::Backend { .. }) => assert!(
                error_chain(e).contains("poisoned"),
                "{e}: {}",
                error_chain(e)
            ),
            other => panic!("expected the batch to fail, got {other:?}"),
        }
    }
    assert_eq!(db.version(&a.key).await?, Some(0));
    assert_eq!(db.version(&b.key).await?, None);
    // The connection is clean for the next batch.
    let results = db.batch(vec![save(&a1), create(&b)]).await;
    assert_eq!(outcomes(&results), ["saved", "changed 1"]);

    // Without a transaction the rollback undoes only its own statement;
    // the other creates are then written one by one.
    let (c, d, e) = (record(None), poisoned(record(None)), record(None));
    let results = outcomes(&db.batch(vec![create(&c), create(&d), create(&e)]).await);
    assert_eq!(results[0], "changed 1");
    assert!(results[1].contains("poisoned"), "{}", results[1]);
    assert_eq!(results[2], "changed 1");
    assert_eq!(db.version(&c.key).await?, Some(0));
    assert_eq!(db.version(&e.key).await?, Some(0));
    Ok(())
}

#[tokio::test]
async fn oversized_batches_are_split_and_still_answer_every_write() -> TestResult {
    let mut db = db().await?;
    // Three records of 1.5 MiB each exceed one payload: a statement for
    // two of them, then one for the third.
    let mut big = Vec::new();
    for i in 0..3 {
        let mut r = record(None);
        r.data.insert("blob".into(), json!("x".repeat(3 << 19)));
        r.data.insert("i".into(), json!(i));
        big.push(r);
    }
    let results = db.batch(big.iter().map(create).collect()).await;
    assert_eq!(outcomes(&results), ["changed 1"; 3]);
    for r in &big {
        assert_eq!(db.store.load(&r.key).await?.as_ref(), Some(r));
    }
    Ok(())
}

#[tokio::test]
async fn batched_loads_answer_each_key_and_decode_errors_stay_per_key() -> TestResult {
    let db = db().await?;
    let (a, b, corrupt) = (record(Some("u")), record(None), record(None));
    let dead = expired();
    let absent = record(None);
    for r in [&a, &b, &corrupt, &dead] {
        db.store.create(r).await?;
    }
    sqlx::query("UPDATE sessions SET data = '{not json' WHERE key = ?1")
        .bind(corrupt.key.as_bytes().as_slice())
        .execute(db.store.pool())
        .await?;
    let t = now();
    let keys = [a.key, b.key, a.key, dead.key, corrupt.key, absent.key];
    let loads: Vec<_> = keys.iter().map(|&k| (k, t)).collect();
    let found = serve_batch(db.store.pool(), &db.sql, &loads).await;
    let decoded: Vec<Result<Option<Record>, Error>> = found
        .into_iter()
        .map(|f| {
            f.and_then(|row| {
                row.map(|row| decode_row("load", "sessions", &row))
                    .transpose()
            })
        })
        .collect();
    assert_eq!(decoded[0].as_ref().ok(), Some(&Some(a.clone())));
    assert_eq!(decoded[1].as_ref().ok(), Some(&Some(b)));
    assert_eq!(decoded[2].as_ref().ok(), Some(&Some(a)));
    assert_eq!(decoded[3].as_ref().ok(), Some(&None));
    assert!(matches!(&decoded[4], Err(Error::Decode { key, .. }) if *key == corrupt.key));
    assert_eq!(decoded[5].as_ref().ok(), Some(&None));
    Ok(())
}

#[tokio::test]
async fn batched_statements_look_rows_up_by_primary_key() -> TestResult {
    let db = db().await?;
    for statement in [
        db.sql.load_many(),
        db.sql.create_many(),
        db.sql.save_many(),
        db.sql.save_many_same_user(),
        db.sql.probe_many(),
        db.sql.touch_many(),
        db.sql.delete_many(),
    ] {
        let text = statement.as_str().to_owned();
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {text}")))
            .bind("[]")
            .bind(0i64)
            .fetch_all(db.store.pool())
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(3))
            .collect::<Result<_, _>>()?;
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN sessions")),
            "{text}: {plan:?}"
        );
    }
    Ok(())
}
