//! Operations that arrive together go out together (see `src/batch.rs`):
//! checked in the server's own statement log that batch statements really
//! run, and that every caller still gets exactly its own answer, errors
//! included. Each test runs on a cluster of its own (its log is the
//! test's alone), on a one-thread runtime, so all the spawned operations
//! but the first are queued while the first is in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::future::join_all;
use session_core::{Error, Record, SessionId, SessionStore, Timestamp};
use session_store_postgres::testing::{Cluster, plant_unreadable};
use session_store_postgres::{PostgresOptions, PostgresStore};

const HOUR: Duration = Duration::from_secs(3600);

/// A store on a cluster of the test's own that logs every statement. The
/// setting travels with each connection's start-up packet (`options`), so
/// every connection logs from its first statement on.
async fn setup() -> (PostgresStore, Cluster) {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}&options=-c%20log_statement%3Dall", cluster.url());
    let store = PostgresOptions::new(url)
        .migrate(true)
        .connect()
        .await
        .unwrap();
    (store, cluster)
}

/// How many logged statements contain `marker`.
fn logged(cluster: &Cluster, marker: &str) -> usize {
    let log = std::fs::read_to_string(cluster.dir().join("server.log")).unwrap();
    log.lines()
        .filter(|line| line.contains("statement:") || line.contains("execute"))
        .filter(|line| line.contains(marker))
        .count()
}

fn record(i: usize) -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate().unwrap().storage_key(),
        now,
        now.saturating_add(HOUR),
    );
    record.data.insert("i".into(), i.into());
    record
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_loads_are_batched_and_each_gets_its_own_answer() {
    let (store, cluster) = setup().await;
    let records: Vec<Record> = (0..64).map(record).collect();
    // Even records stored, odd ones never; record 2 unreadable.
    for r in records.iter().step_by(2) {
        store.create(r).await.unwrap();
    }
    plant_unreadable(&store, &records[2]).await.unwrap();
    let loads = records.iter().map(|r| {
        let (store, key) = (store.clone(), r.key);
        tokio::spawn(async move { store.load(&key).await })
    });
    let answers = join_all(loads).await;
    for (i, (r, answer)) in records.iter().zip(answers).enumerate() {
        match (i, answer.unwrap()) {
            (2, Err(Error::Decode { key, .. })) => assert_eq!(key, r.key),
            (i, Ok(Some(loaded))) if i % 2 == 0 && i != 2 => assert_eq!(&loaded, r),
            (i, Ok(None)) if i % 2 == 1 => {}
            (i, other) => panic!("load {i}: {other:?}"),
        }
    }
    assert!(
        logged(&cluster, "key = ANY($1)") >= 1,
        "no batched load in the server's log"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_saves_are_batched_and_each_gets_its_own_outcome() {
    let (store, cluster) = setup().await;
    let records: Vec<Record> = (0..48).map(record).collect();
    for r in &records {
        store.create(r).await.unwrap();
    }
    // Record 1 is deleted, record 2 unreadable, record 3 presents a stale
    // version; record 4 is saved twice with the same version (one wins).
    store.delete(&records[1].key).await.unwrap();
    plant_unreadable(&store, &records[2]).await.unwrap();
    let mut stale = records[3].clone();
    stale.version = 7;
    let mut saves: Vec<Record> = records.clone();
    saves[3] = stale;
    saves.push(records[4].clone());
    let calls = saves.iter().cloned().map(|mut r| {
        let store = store.clone();
        r.data.insert("saved".into(), true.into());
        tokio::spawn(async move { store.save(&r).await })
    });
    let answers: Vec<Result<u64, Error>> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        matches!(answers[1], Err(Error::NotFound)),
        "{:?}",
        answers[1]
    );
    assert!(matches!(answers[2], Err(Error::Decode { key, .. }) if key == records[2].key));
    assert!(
        matches!(answers[3], Err(Error::Conflict)),
        "{:?}",
        answers[3]
    );
    let twice = [&answers[4], &answers[48]];
    assert_eq!(
        twice.iter().filter(|a| matches!(a, Ok(1))).count(),
        1,
        "exactly one of two saves of version 0 wins: {twice:?}"
    );
    assert_eq!(
        twice
            .iter()
            .filter(|a| matches!(a, Err(Error::Conflict)))
            .count(),
        1
    );
    for (i, answer) in answers.iter().enumerate().take(48).skip(5) {
        assert!(matches!(answer, Ok(1)), "save {i}: {answer:?}");
        let loaded = store.load(&records[i].key).await.unwrap().unwrap();
        assert_eq!(loaded.version, 1);
        assert_eq!(loaded.data.get("saved"), Some(&true.into()));
    }
    assert!(
        logged(&cluster, "UPDATE") >= 1 && logged(&cluster, "FROM unnest(") >= 1,
        "no batched save in the server's log"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_creates_touches_and_deletes_each_get_their_own_outcome() {
    let (store, cluster) = setup().await;
    let records: Vec<Record> = (0..40).map(record).collect();
    store.create(&records[0]).await.unwrap();
    // Creates: record 0 exists already; the others are new.
    let creates = records.iter().cloned().map(|r| {
        let store = store.clone();
        tokio::spawn(async move { store.create(&r).await })
    });
    let created: Vec<_> = join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(created[0], Err(Error::Exists)), "{:?}", created[0]);
    for (i, answer) in created.iter().enumerate().skip(1) {
        assert!(answer.is_ok(), "create {i}: {answer:?}");
    }
    assert!(
        logged(&cluster, "INSERT INTO") >= 1 && logged(&cluster, "unnest(") >= 1,
        "no batched create in the server's log"
    );

    // Touches: record 1 was deleted first (false), the others move.
    store.delete(&records[1].key).await.unwrap();
    let later = Timestamp::now().saturating_add(HOUR + HOUR);
    let touches = records.iter().map(|r| {
        let (store, key) = (store.clone(), r.key);
        tokio::spawn(async move { store.touch(&key, later).await })
    });
    let touched: Vec<_> = join_all(touches)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(touched[1], Ok(false)), "{:?}", touched[1]);
    for (i, answer) in touched.iter().enumerate() {
        if i != 1 {
            assert!(matches!(answer, Ok(true)), "touch {i}: {answer:?}");
            let loaded = store.load(&records[i].key).await.unwrap().unwrap();
            assert_eq!(loaded.expires_at, later);
        }
    }
    assert!(
        logged(&cluster, "unnest($1::bytea[], $2::int8[])") >= 1,
        "no batched touch in the server's log"
    );

    // Deletes: record 1 is gone already (false), the others go.
    let deletes = records.iter().map(|r| {
        let (store, key) = (store.clone(), r.key);
        tokio::spawn(async move { store.delete(&key).await })
    });
    let deleted: Vec<_> = join_all(deletes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(deleted[1], Ok(false)), "{:?}", deleted[1]);
    for (i, answer) in deleted.iter().enumerate() {
        if i != 1 {
            assert!(matches!(answer, Ok(true)), "delete {i}: {answer:?}");
            assert_eq!(store.load(&records[i].key).await.unwrap(), None);
        }
    }
    assert!(
        logged(&cluster, "DELETE FROM") >= 1 && logged(&cluster, "= ANY($1) RETURNING") >= 1,
        "no batched delete in the server's log"
    );
}
