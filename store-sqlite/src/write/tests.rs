//! The batched write paths, with batches of known content: each test
//! builds a batch by hand and hands it to the writer's batch function
//! directly, as the writer task would after taking it from its queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;

use serde_json::json;
use session_core::{Error, Record, SessionStore, StorageKey, Timestamp};
use tokio::sync::oneshot;

use super::types::{Job, Reply, SaveOutcome, Touch, Write};
use super::writer::run_batch;
use crate::codec::Row;
use crate::test_db::{Db, HOUR, TestResult, db, expired, now, record};

/// What a test's write answered, as comparable text (`Err` kept whole).
type Outcome = Result<String, Error>;

/// A write of a test batch, and its answer to come.
struct Planned {
    write: Write,
    answer: Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

fn planned<T: Send + 'static>(
    write: impl FnOnce(Reply<T>) -> Write,
    show: fn(T) -> String,
) -> Planned {
    let (reply, answer): (_, oneshot::Receiver<Result<T, Error>>) = Reply::channel();
    Planned {
        write: write(reply),
        answer: Box::pin(async move {
            answer
                .await
                .expect("the batch answers every write")
                .map(show)
        }),
    }
}

/// Runs `writes` as one batch on the fixture's second connection
/// (standing in for the writer's), all issued now.
async fn batch(db: &mut Db, writes: Vec<Planned>) -> Vec<Outcome> {
    let now = now();
    let mut jobs = Vec::new();
    let mut answers = Vec::new();
    for Planned { write, answer } in writes {
        let deadline = tokio::time::Instant::now() + crate::deadline::DEFAULT_OPERATION_TIMEOUT;
        let claim = std::sync::Arc::new(crate::deadline::Claim::new(deadline));
        jobs.push(Job { write, now, claim });
        answers.push(answer);
    }
    run_batch(&mut db.conn, &db.sql, jobs).await.unwrap();
    let mut outcomes = Vec::new();
    for answer in answers {
        outcomes.push(answer.await);
    }
    outcomes
}

fn changed(wrote: bool) -> String {
    format!("changed {}", u8::from(wrote))
}

fn create(record: &Record) -> Planned {
    let row = Row::for_create(record).unwrap();
    planned(|reply| Write::Create(row, reply), changed)
}

fn save(record: &Record) -> Planned {
    let row = Row::for_save(record).unwrap();
    let show = |outcome| match outcome {
        SaveOutcome::Saved => "saved".into(),
        SaveOutcome::Conflict => "conflict".into(),
        SaveOutcome::NotFound => "not found".into(),
        SaveOutcome::Unreadable => "unreadable".into(),
    };
    planned(|reply| Write::Save(row, reply), show)
}

fn touch(key: &StorageKey, expires_at: Timestamp) -> Planned {
    let touch = Touch {
        key: *key,
        expires_at: expires_at.as_millis(),
    };
    planned(|reply| Write::Touch(touch, reply), changed)
}

fn delete(key: &StorageKey) -> Planned {
    let key = *key;
    let show = |removed: Option<i64>| format!("removed {}", usize::from(removed.is_some()));
    planned(|reply| Write::Delete(key, reply), show)
}

fn delete_by_user(user: &str) -> Planned {
    let user = user.to_owned();
    let show = |removed: Vec<i64>| format!("removed {}", removed.len());
    planned(|reply| Write::DeleteByUser(user, reply), show)
}

/// The answers as comparable text.
fn outcomes(results: &[Outcome]) -> Vec<String> {
    results
        .iter()
        .map(|r| match r {
            Ok(text) => text.clone(),
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
    let results = batch(
        &mut db,
        vec![
            save(&v0),
            save(&v0),
            save(&v1),
            save(&v1),
            save(&v2),
            save(&v0),
        ],
    )
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
    let results = batch(
        &mut db,
        vec![
            save(&same),
            save(&moved),
            save(&unbound),
            save(&stale),
            save(&gone),
            save(&dead),
        ],
    )
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
    let results = batch(
        &mut db,
        vec![
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
            delete_by_user("u"),
            create(&after_barrier),
        ],
    )
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
    let results = outcomes(&batch(&mut db, vec![create(&a), create(&b), create(&c)]).await);
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
        &batch(
            &mut db,
            vec![
                save(&d),
                save(&poisoned(e.clone())),
                save(&f),
                create(&g),
                create(&h),
            ],
        )
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
    let results = batch(&mut db, vec![save(&a1), create(&poisoned(b.clone()))]).await;
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
    let results = batch(&mut db, vec![save(&a1), create(&b)]).await;
    assert_eq!(outcomes(&results), ["saved", "changed 1"]);

    // Without a transaction the rollback undoes only its own statement;
    // the other creates are then written one by one.
    let (c, d, e) = (record(None), poisoned(record(None)), record(None));
    let results = outcomes(&batch(&mut db, vec![create(&c), create(&d), create(&e)]).await);
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
    let results = batch(&mut db, big.iter().map(create).collect()).await;
    assert_eq!(outcomes(&results), ["changed 1"; 3]);
    for r in &big {
        assert_eq!(db.store.load(&r.key).await?.as_ref(), Some(r));
    }
    Ok(())
}
