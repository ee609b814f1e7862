//! 64 tasks hammer saves and creates on one database file for a few
//! seconds: no "database is locked" (or any other error) reaches a caller,
//! `Conflict` comes only where the version really moved, and every
//! successful save is accounted for in the final versions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{HOUR, TempFileStore, TestResult, live_record};
use serde_json::json;
use session_core::{Error, Record, SessionStore, StorageKey};
use session_store_sqlite::SqliteOptions;

const TASKS: usize = 64;
const HOT_KEYS: usize = 16;
const RUN_FOR: Duration = Duration::from_secs(3);

/// A tiny xorshift generator: enough to spread the operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default)]
struct Tally {
    saves_won: HashMap<StorageKey, u64>,
    conflicts: u64,
    creates: Vec<Record>,
    exists: u64,
}

async fn hammer(
    store: Arc<dyn SessionStore>,
    hot: Arc<Vec<Record>>,
    task: usize,
    until: Instant,
) -> Result<Tally, String> {
    let mut rng =
        Rng(0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut tally = Tally::default();
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let roll = rng.next();
        match roll % 10 {
            // Read-modify-write on a hot key.
            0..=5 => {
                let key = hot[(roll >> 8) as usize % HOT_KEYS].key;
                let mut record = store
                    .load(&key)
                    .await
                    .map_err(|e| format!("task {task}: load: {e:?}"))?
                    .ok_or_else(|| format!("task {task}: hot key vanished"))?;
                let presented = record.version;
                record.data.insert(format!("t{task}"), json!(i));
                match store.save(&record).await {
                    Ok(version) => {
                        if version != presented + 1 {
                            return Err(format!(
                                "task {task}: save returned {version} from {presented}"
                            ));
                        }
                        *tally.saves_won.entry(key).or_default() += 1;
                    }
                    Err(Error::Conflict) => {
                        tally.conflicts += 1;
                        let now = store
                            .load(&key)
                            .await
                            .map_err(|e| format!("task {task}: load: {e:?}"))?
                            .ok_or_else(|| format!("task {task}: hot key vanished"))?;
                        if now.version <= presented {
                            return Err(format!(
                                "task {task}: Conflict at version {presented}, but the store holds {}",
                                now.version
                            ));
                        }
                    }
                    Err(e) => return Err(format!("task {task}: save: {e:?}")),
                }
            }
            // A fresh session.
            6..=8 => {
                let mut record = live_record(HOUR).map_err(|e| e.to_string())?;
                record.user = Some(format!("user{}", roll % 7));
                record.data.insert("task".into(), json!(task));
                store
                    .create(&record)
                    .await
                    .map_err(|e| format!("task {task}: create: {e:?}"))?;
                tally.creates.push(record);
            }
            // A create on a taken key: must be Exists.
            _ => {
                let mut record = hot[(roll >> 8) as usize % HOT_KEYS].clone();
                record.data.insert("intruder".into(), json!(task));
                match store.create(&record).await {
                    Err(Error::Exists) => tally.exists += 1,
                    other => return Err(format!("task {task}: create on hot key: {other:?}")),
                }
            }
        }
    }
    Ok(tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_hammering_one_file_see_no_lock_errors() -> TestResult {
    let store = Arc::new(TempFileStore::new("sessions").await?);
    run_hammer(store, RUN_FOR).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_hammering_the_in_memory_mode_see_no_lock_errors() -> TestResult {
    let store = Arc::new(SqliteOptions::in_memory().max_connections(4).open().await?);
    run_hammer(store, RUN_FOR / 2).await
}

async fn run_hammer(store: Arc<dyn SessionStore>, run_for: Duration) -> TestResult {
    let mut hot = Vec::new();
    for _ in 0..HOT_KEYS {
        let record = live_record(HOUR)?;
        store.create(&record).await?;
        hot.push(record);
    }
    let hot = Arc::new(hot);
    let until = Instant::now() + run_for;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| tokio::spawn(hammer(Arc::clone(&store), Arc::clone(&hot), task, until)))
        .collect();
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(tally) => {
                for (key, won) in tally.saves_won {
                    *total.saves_won.entry(key).or_default() += won;
                }
                total.conflicts += tally.conflicts;
                total.exists += tally.exists;
                total.creates.extend(tally.creates);
            }
            Err(failure) => failures.push(failure),
        }
    }
    assert!(
        failures.is_empty(),
        "{} task(s) failed: {failures:#?}",
        failures.len()
    );

    // Every successful save bumped its key's version by exactly one.
    let mut saves = 0;
    for record in hot.iter() {
        let won = total.saves_won.get(&record.key).copied().unwrap_or(0);
        saves += won;
        let stored = store.load(&record.key).await?.expect("hot key");
        assert_eq!(stored.version, won, "final version = successful saves");
        assert!(!stored.data.contains_key("intruder"));
    }
    for record in &total.creates {
        assert_eq!(store.load(&record.key).await?.as_ref(), Some(record));
    }
    println!(
        "{TASKS} tasks for {run_for:?}: {saves} saves, {} conflicts, {} creates, {} exists",
        total.conflicts,
        total.creates.len(),
        total.exists
    );
    assert!(saves > 0 && !total.creates.is_empty() && total.exists > 0);
    Ok(())
}

/// 64 tasks present the same version of one record at once, round after
/// round: their saves land in the writer's batches together, and exactly
/// one of them wins each version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_of_one_version_have_exactly_one_winner() -> TestResult {
    let db = TempFileStore::new("sessions").await?;
    let store: Arc<dyn SessionStore> = Arc::new(db.store.clone());
    let record = live_record(HOUR)?;
    store.create(&record).await?;
    for round in 0..20u64 {
        let current = store.load(&record.key).await?.expect("the record");
        assert_eq!(current.version, round);
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = Arc::clone(&store);
                let mut mine = current.clone();
                mine.data.insert("winner".into(), json!(task));
                tokio::spawn(async move { (task, store.save(&mine).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await? {
                (task, Ok(version)) => {
                    assert_eq!(version, round + 1);
                    winners.push(task);
                }
                (_, Err(Error::Conflict)) => {}
                (task, Err(e)) => panic!("task {task}: save: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = store.load(&record.key).await?.expect("the record");
        assert_eq!(stored.data.get("winner"), Some(&json!(winners[0])));
    }
    Ok(())
}
