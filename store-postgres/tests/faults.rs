//! Faults of the server and of the data, each test on a throwaway cluster
//! of its own (never the shared server: these restart, stop and crash it),
//! with the default `PostgresOptions` except where a test says otherwise.
//!
//! - A server restarted (`pg_ctl restart -m fast`) while tasks load and
//!   save: every error is a retryable `Error::Backend`, and afterwards the
//!   same store (the same pool) serves loads and saves again.
//! - A server stopped (`pg_ctl stop -m fast`) for a while, its socket
//!   gone and then refusing connections: every kind of call fails
//!   retryably within the acquire timeout, and after `start` the same
//!   store works again; many concurrent calls, also on one key, fail
//!   about as fast as one.
//! - A crash (`pg_ctl stop -m immediate`) while tasks create and save:
//!   after `start`, every acknowledged write is there, exactly as last
//!   acknowledged, or as the one write in flight when its call failed.
//!   (The harness's clusters run with `fsync = off`: this is a crash of
//!   PostgreSQL, not of the machine; what it proves is that the store
//!   acknowledges a write only once PostgreSQL committed it.)
//! - Rows damaged behind the store's back (data not a JSON object, a
//!   negative version, data that is a JSON object serde cannot read, a
//!   user that is not UTF-8): load and save (at the stored version and
//!   others) answer `Error::Decode` naming the key and leave the row byte
//!   for byte as it was, `list_by_user` reports the key as unreadable,
//!   `delete` removes it. The row's integrity digest no longer matches
//!   what it holds, and loads and saves both check it.
//! - A key of the wrong length cannot be planted: the table's CHECK
//!   refuses it.
//!
//! The clusters need PostgreSQL's server binaries (`initdb`, `pg_ctl`:
//! `PG_BIN`, `PATH` or `/usr/lib/postgresql/*/bin`), whatever
//! `DATABASE_URL` says.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{HOUR, SLACK, TestResult, record};
use serde_json::json;
use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp};
use session_store_postgres::testing::Cluster;
use session_store_postgres::{PostgresOptions, PostgresStore, sqlx};

/// A cluster of the test's own (`initdb` + `pg_ctl start` block, so they
/// run off the runtime's workers).
async fn own_cluster() -> TestResult<Arc<Cluster>> {
    Ok(Arc::new(
        tokio::task::spawn_blocking(Cluster::start).await??,
    ))
}

/// `pg_ctl <args>` on `cluster`, off the runtime's workers, so the
/// store's tasks keep running meanwhile.
async fn pg_ctl(cluster: &Arc<Cluster>, args: &'static [&'static str]) -> TestResult<String> {
    let cluster = Arc::clone(cluster);
    Ok(tokio::task::spawn_blocking(move || cluster.pg_ctl(args)).await??)
}

/// A store on `cluster` (table `sessions`, installed on connect), with the
/// default options refined by `configure`.
async fn connect(
    cluster: &Cluster,
    configure: impl FnOnce(PostgresOptions) -> PostgresOptions,
) -> TestResult<PostgresStore> {
    Ok(configure(PostgresOptions::new(cluster.url()).migrate(true))
        .connect()
        .await?)
}

/// `None` for a retryable `Error::Backend`, else why the error is wrong.
fn wrong_kind(what: &str, error: &Error) -> Option<String> {
    match error {
        Error::Backend { .. } if error.is_retryable() => None,
        other => Some(format!(
            "{what}: {other:?} (expected a retryable Backend error)"
        )),
    }
}

/// What one worker of the restart test saw.
#[derive(Debug, Default)]
struct Tally {
    retryable: u64,
    /// Errors of the wrong kind, and wrong answers.
    wrong: Vec<String>,
}

/// Loads and saves `record` until `stop`: after each failed save it
/// learns from a load which of the two versions (before or after the
/// save) the row holds. Returns the record as last stored.
async fn load_and_save_until(
    store: PostgresStore,
    mut record: Record,
    stop: Arc<AtomicBool>,
    successes: Arc<AtomicU64>,
) -> (Record, Tally) {
    let mut tally = Tally::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match store.load(&record.key).await {
            Ok(Some(found)) if found == record => {
                successes.fetch_add(1, Ordering::SeqCst);
            }
            Ok(other) => tally
                .wrong
                .push(format!("load found {other:?}, expected {record:?}")),
            Err(e) => match wrong_kind("load", &e) {
                None => tally.retryable += 1,
                Some(why) => tally.wrong.push(why),
            },
        }
        n += 1;
        let before = record.clone();
        record.data.insert("n".into(), json!(n));
        match store.save(&record).await {
            Ok(version) => {
                record.version = version;
                successes.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Err(e) => match wrong_kind("save", &e) {
                None => tally.retryable += 1,
                Some(why) => tally.wrong.push(why),
            },
        }
        // The failed save may or may not have been committed: find out.
        let mut after = record.clone();
        after.version += 1;
        record = before;
        loop {
            match store.load(&record.key).await {
                Ok(Some(found)) if found == record => break,
                Ok(Some(found)) if found == after => {
                    record = after;
                    break;
                }
                Ok(other) => {
                    tally.wrong.push(format!(
                        "after a failed save, load found {other:?}, expected {record:?} or \
                         {after:?}"
                    ));
                    return (record, tally);
                }
                Err(e) => match wrong_kind("load after a failed save", &e) {
                    None => tally.retryable += 1,
                    Some(why) => {
                        tally.wrong.push(why);
                        return (record, tally);
                    }
                },
            }
            if stop.load(Ordering::SeqCst) {
                return (record, tally);
            }
            // A client's pause before it retries.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (record, tally)
}

/// Checks that `store` serves every kind of call: a new session is
/// created, saved, touched, listed and deleted.
async fn serves_every_call(store: &PostgresStore, user: &str) -> TestResult {
    let mut fresh = record(Some(user))?;
    store.create(&fresh).await?;
    fresh.data.insert("after".into(), json!("the outage"));
    fresh.version = store.save(&fresh).await?;
    fresh.expires_at = fresh.expires_at.saturating_add(HOUR);
    assert!(store.touch(&fresh.key, fresh.expires_at).await?);
    assert_eq!(store.load(&fresh.key).await?, Some(fresh.clone()));
    assert_eq!(store.list_by_user(user).await?.records, vec![fresh.clone()]);
    assert!(store.delete(&fresh.key).await?);
    assert_eq!(store.delete_by_user(user).await?, 0);
    store.delete_expired().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_use_gives_only_retryable_errors_and_the_same_store_recovers() -> TestResult {
    let cluster = own_cluster().await?;
    let store = connect(&cluster, |o| o).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 0..8 {
        let live = record(Some(&format!("worker{i}")))?;
        store.create(&live).await?;
        workers.push(tokio::spawn(load_and_save_until(
            store.clone(),
            live,
            Arc::clone(&stop),
            Arc::clone(&successes),
        )));
    }
    // Let them work, then restart the server under them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while successes.load(Ordering::SeqCst) < 200 {
        assert!(Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = successes.load(Ordering::SeqCst);
    let started = Instant::now();
    pg_ctl(&cluster, &["restart", "-m", "fast"]).await?;
    let restart_took = started.elapsed();
    // The same store (the same pool) serves them again.
    let restarted = successes.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while successes.load(Ordering::SeqCst) < restarted + 400 {
        assert!(
            Instant::now() < deadline,
            "the store did not serve again after the restart: {} successes since",
            successes.load(Ordering::SeqCst) - restarted
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut retryable = 0;
    let mut wrong = Vec::new();
    let mut last = Vec::new();
    for worker in workers {
        let (record, tally) = worker.await?;
        retryable += tally.retryable;
        wrong.extend(tally.wrong);
        last.push(record);
    }
    assert_eq!(wrong, Vec::<String>::new(), "wrong errors or answers");
    assert!(
        retryable > 0,
        "no call failed: the restart happened between calls, proving nothing"
    );
    // Every worker's last known state is what the store holds.
    for record in &last {
        assert_eq!(store.load(&record.key).await?.as_ref(), Some(record));
    }
    serves_every_call(&store, "after-restart").await?;
    eprintln!(
        "restart took {restart_took:?}; {before} successes before it, {} in all; \
         {retryable} retryable errors, no other",
        successes.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Every kind of call, once, each checked to fail retryably within
/// `limit`.
async fn every_call_fails_retryably(
    store: &PostgresStore,
    live: &Record,
    limit: Duration,
) -> TestResult {
    let fresh = record(Some("outage"))?;
    let later = Timestamp::now().saturating_add(HOUR);
    type Call<'a> = (
        &'static str,
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>>,
    );
    let calls: Vec<Call<'_>> = vec![
        ("create", Box::pin(store.create(&fresh))),
        (
            "load",
            Box::pin(async { store.load(&live.key).await.map(drop) }),
        ),
        ("save", Box::pin(async { store.save(live).await.map(drop) })),
        (
            "touch",
            Box::pin(async { store.touch(&live.key, later).await.map(drop) }),
        ),
        (
            "delete",
            Box::pin(async { store.delete(&fresh.key).await.map(drop) }),
        ),
        (
            "list_by_user",
            Box::pin(async { store.list_by_user("alice").await.map(drop) }),
        ),
        (
            "delete_by_user",
            Box::pin(async { store.delete_by_user("nobody").await.map(drop) }),
        ),
        (
            "delete_expired",
            Box::pin(async { store.delete_expired().await.map(drop) }),
        ),
    ];
    for (name, call) in calls {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        match result {
            Err(e) => {
                if let Some(why) = wrong_kind(name, &e) {
                    return Err(why.into());
                }
            }
            Ok(()) => return Err(format!("{name} succeeded with the server stopped").into()),
        }
        assert!(
            took <= limit,
            "{name} with the server stopped took {took:?} (limit {limit:?})"
        );
    }
    Ok(())
}

/// Fails unless every result is a retryable error.
fn all_failed_retryably<T: std::fmt::Debug>(
    what: &str,
    results: &[Result<T, Error>],
) -> TestResult {
    for result in results {
        match result {
            Err(e) => {
                if let Some(why) = wrong_kind(what, e) {
                    return Err(why.into());
                }
            }
            Ok(found) => return Err(format!("{what} succeeded while stopped: {found:?}").into()),
        }
    }
    Ok(())
}

/// Leaves a socket file nobody listens on where the stopped server's
/// was, so that connecting is refused, as at a TCP port with no server
/// behind it. Returns its path, to remove before `start`.
fn refuse_connections(cluster: &Cluster) -> TestResult<std::path::PathBuf> {
    let socket = cluster.dir().join(".s.PGSQL.5432");
    drop(std::os::unix::net::UnixListener::bind(&socket)?);
    Ok(socket)
}

/// 16 concurrent loads of distinct keys (they go out as one batch) must
/// fail retryably; returns how long they took.
async fn sixteen_loads_fail(store: &PostgresStore) -> TestResult<Duration> {
    let keys: Vec<StorageKey> = (0..16)
        .map(|_| Ok(SessionId::generate()?.storage_key()))
        .collect::<TestResult<_>>()?;
    let started = Instant::now();
    let loads = futures_util::future::join_all(keys.iter().map(|key| store.load(key))).await;
    let took = started.elapsed();
    all_failed_retryably("concurrent load", &loads)?;
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_gives_retryable_errors_and_start_serves_again() -> TestResult {
    // While the server is down, a call may wait up to the acquire timeout
    // for a connection: the pool retries a refused connection (as at a TCP
    // port with no server) or a server still starting up (57P03) until
    // then. The bound asserted per call is the acquire timeout plus slack:
    // 1 s keeps it tight and the test short (the default 5 s would let a
    // call hang 7 s and pass, and this test makes some twenty calls that
    // each wait it out).
    let acquire = Duration::from_secs(1);
    let cluster = own_cluster().await?;
    let store = connect(&cluster, |o| o.acquire_timeout(acquire)).await?;
    let mut live = record(Some("alice"))?;
    store.create(&live).await?;
    live.version = store.save(&live).await?;
    assert_eq!(store.load(&live.key).await?, Some(live.clone()));

    pg_ctl(&cluster, &["stop", "-m", "fast"]).await?;
    // No socket file: connecting fails at once, every call too.
    every_call_fails_retryably(&store, &live, acquire + SLACK).await?;
    let gone = sixteen_loads_fail(&store).await?;
    // Connections refused: the pool retries until the acquire timeout.
    let socket = refuse_connections(&cluster)?;
    every_call_fails_retryably(&store, &live, acquire + SLACK).await?;
    // A batch that finds the server unavailable fails all its operations
    // at once; a call queued while both sender tasks have a batch in
    // flight waits for one of them first: two acquire timeouts at most.
    let refused = sixteen_loads_fail(&store).await?;
    assert!(
        refused <= acquire * 2 + SLACK,
        "16 concurrent loads with connections refused took {refused:?}"
    );
    std::fs::remove_file(socket)?;

    pg_ctl(&cluster, &["start"]).await?;
    // The same store serves again once the pool reconnects; until then,
    // only retryable errors.
    let deadline = Instant::now() + Duration::from_secs(30);
    let loaded = loop {
        match store.load(&live.key).await {
            Ok(loaded) => break loaded,
            Err(e) => {
                if let Some(why) = wrong_kind("load after start", &e) {
                    return Err(why.into());
                }
                assert!(Instant::now() < deadline, "no recovery after start: {e:?}");
                // A client's pause before it retries.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(loaded, Some(live.clone()), "the session survived the stop");
    live.data.insert("after".into(), json!("start"));
    live.version = store.save(&live).await?;
    assert_eq!(live.version, 2);
    assert_eq!(store.load(&live.key).await?, Some(live.clone()));
    serves_every_call(&store, "after-start").await?;
    eprintln!(
        "stopped: 16 concurrent loads failed in {gone:?} with no socket, in {refused:?} with \
         connections refused (acquire timeout {acquire:?})"
    );
    Ok(())
}

/// During an outage that refuses connections, concurrent calls fail about
/// as fast as a lone call (one acquire timeout): a batch statement that
/// finds the server unavailable answers every operation of the batch with
/// that failure, later operations on the same keys included. (Before,
/// each ran again alone and waited out the timeout once more, and
/// operations on one key did so one after the other: 8 loads of one key
/// took about 8 timeouts, 40 s with the default 5 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_fail_fast_during_an_outage() -> TestResult {
    let acquire = Duration::from_secs(1);
    let cluster = own_cluster().await?;
    let store = connect(&cluster, |o| o.acquire_timeout(acquire)).await?;
    let mut live = record(Some("alice"))?;
    store.create(&live).await?;
    live.version = store.save(&live).await?;
    pg_ctl(&cluster, &["stop", "-m", "fast"]).await?;
    let socket = refuse_connections(&cluster)?;
    let distinct = sixteen_loads_fail(&store).await?;
    let started = Instant::now();
    let loads = futures_util::future::join_all((0..8).map(|_| store.load(&live.key))).await;
    let loads_took = started.elapsed();
    all_failed_retryably("concurrent load of one key", &loads)?;
    let started = Instant::now();
    let saves = futures_util::future::join_all((0..8).map(|_| store.save(&live))).await;
    let saves_took = started.elapsed();
    all_failed_retryably("concurrent save of one key", &saves)?;
    std::fs::remove_file(socket)?;
    let limit = acquire + SLACK;
    if distinct > limit || loads_took > limit || saves_took > limit {
        return Err(format!(
            "with connections refused (acquire timeout {acquire:?}, limit {limit:?}): 16 \
             concurrent loads of distinct keys took {distinct:?}, 8 loads of one key \
             {loads_took:?}, 8 saves of one key {saves_took:?}"
        )
        .into());
    }
    Ok(())
}

/// The writes of one crash-test task: per key, the record as last
/// acknowledged (`None`: its create was never acknowledged) and the one
/// write whose call failed, if any.
type Writes = Vec<(Option<Record>, Option<Record>)>;

/// Creates sessions and saves each a few times until `stop`; a key whose
/// write fails is left there (its outcome unknown) and a new one begun.
async fn create_and_save_until(
    store: PostgresStore,
    task: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> TestResult<(Writes, Vec<String>)> {
    let mut writes = Vec::new();
    let mut wrong = Vec::new();
    let user = format!("crash{}", task % 4);
    let mut chain = 0u64;
    while !stop.load(Ordering::SeqCst) {
        chain += 1;
        let mut record = record(chain.is_multiple_of(2).then_some(user.as_str()))?;
        record.data.insert("task".into(), json!(task));
        if let Err(e) = store.create(&record).await {
            wrong.extend(wrong_kind("create", &e));
            writes.push((None, Some(record)));
            // A client's pause before it retries.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        acks.fetch_add(1, Ordering::SeqCst);
        let mut acked = record.clone();
        let mut failed = None;
        for step in 1..=4 {
            let mut next = acked.clone();
            next.data.insert("n".into(), json!(step));
            next.data
                .insert("step".into(), json!(format!("{chain}/{step}")));
            match store.save(&next).await {
                Ok(version) => {
                    next.version = version;
                    acked = next;
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    wrong.extend(wrong_kind("save", &e));
                    next.version += 1;
                    failed = Some(next);
                    break;
                }
            }
        }
        writes.push((Some(acked), failed));
    }
    Ok((writes, wrong))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_writes_loses_no_acknowledged_write() -> TestResult {
    let cluster = own_cluster().await?;
    let store = connect(&cluster, |o| o).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            tokio::spawn(create_and_save_until(
                store.clone(),
                task,
                Arc::clone(&stop),
                Arc::clone(&acks),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.load(Ordering::SeqCst) < 3000 {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged in 60 s",
            acks.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A crash: no shutdown checkpoint, recovery from the WAL on start.
    pg_ctl(&cluster, &["stop", "-m", "immediate"]).await?;
    let at_crash = acks.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    pg_ctl(&cluster, &["start"]).await?;
    let mut writes = Vec::new();
    let mut wrong = Vec::new();
    for task in tasks {
        let (w, e) = task.await??;
        writes.extend(w);
        wrong.extend(e);
    }
    assert_eq!(wrong, Vec::<String>::new(), "errors of the wrong kind");

    let (mut exact, mut in_flight_landed, mut in_flight_lost) = (0, 0, 0);
    for (acked, failed) in &writes {
        let key = acked
            .as_ref()
            .or(failed.as_ref())
            .ok_or("a chain with no write")?
            .key;
        let found = store.load(&key).await?;
        if found.is_some() && found.as_ref() == acked.as_ref() {
            exact += 1;
        } else if found.is_some() && found.as_ref() == failed.as_ref() {
            in_flight_landed += 1;
        } else if acked.is_none() && found.is_none() {
            in_flight_lost += 1;
        } else {
            return Err(format!(
                "key {key:?}: found {found:?} after the crash; last acknowledged {acked:?}, \
                 in flight {failed:?}"
            )
            .into());
        }
    }
    let total = acks.load(Ordering::SeqCst);
    let failed_saves = writes
        .iter()
        .filter(|(acked, failed)| acked.is_some() && failed.is_some())
        .count();
    eprintln!(
        "crash after {at_crash} acknowledged writes ({total} in all) over {} sessions: {exact} \
         as last acknowledged ({failed_saves} of them with a failed save after), \
         {in_flight_landed} with the failed write in, {in_flight_lost} failed creates absent",
        writes.len()
    );
    Ok(())
}

/// A row as it is stored, byte for byte.
type RawRow = (Vec<u8>, Option<Vec<u8>>, String, i64, i64, i64, Option<i64>);

async fn raw_row(store: &PostgresStore, key: &StorageKey) -> TestResult<Option<RawRow>> {
    Ok(sqlx::query_as(
        "SELECT key, \"user\", data::text, version, created_at, expires_at, digest \
         FROM sessions \
         WHERE key = $1",
    )
    .bind(key.as_bytes().as_slice())
    .fetch_optional(store.pool())
    .await?)
}

/// How a test damages a row.
enum Damage {
    Data(&'static str),
    /// JSON text built at run time.
    DataOwned(String),
    Version(i64),
    User(&'static [u8]),
}

/// Saves over the damaged row of `session` (stored as `before`) at
/// several versions, the stored one last: each must be `Decode` naming
/// its key and leave the row byte for byte.
async fn saves_leave_it_alone(
    store: &PostgresStore,
    session: &Record,
    before: &RawRow,
) -> TestResult {
    // Every answer is collected before judging, so a failure shows
    // them all; the stored version goes last, as it may overwrite.
    let stored = u64::try_from(before.3).unwrap_or(0);
    let mut versions = vec![0, 2, 7, stored + 1];
    versions.sort_unstable();
    versions.dedup();
    versions.retain(|&v| v != stored);
    versions.push(stored);
    let mut wrong = Vec::new();
    for version in versions {
        let mut attempt = session.clone();
        attempt.version = version;
        attempt.data.insert("overwrite".into(), json!(true));
        let answer = store.save(&attempt).await;
        let unchanged = raw_row(store, &session.key).await?.as_ref() == Some(before);
        if !matches!(&answer, Err(Error::Decode { key, .. }) if *key == session.key) || !unchanged {
            wrong.push(format!(
                "save at version {version}: {answer:?}, row {}",
                if unchanged {
                    "unchanged"
                } else {
                    "OVERWRITTEN"
                }
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(format!(
            "saves over the damaged row (stored version {}) must be Err(Decode) naming \
             its key and leave it alone; got: {}",
            before.3,
            wrong.join("; ")
        )
        .into());
    }
    Ok(())
}

/// Stores a session of `user` at version 1, damages its row, and checks:
/// load is `Decode` naming the key; saves at several versions (the stored
/// one last) are `Decode` and leave the row byte for byte; `list_by_user`
/// reports the key unreadable (unless the damage took the row away from
/// the user); `delete` removes it and answers `true`.
async fn damaged_row_is_decode_and_left_alone(damage: Damage) -> TestResult {
    let cluster = own_cluster().await?;
    let store = connect(&cluster, |o| o).await?;
    let user = "dana";
    let mut session = record(Some(user))?;
    store.create(&session).await?;
    session.data.insert("n".into(), json!(1));
    session.version = store.save(&session).await?;
    let bystander = record(Some(user))?;
    store.create(&bystander).await?;
    let key = session.key.as_bytes().to_vec();
    let (query, listed_under_user) = match &damage {
        Damage::Data(text) => (
            sqlx::query("UPDATE sessions SET data = $2::json WHERE key = $1")
                .bind(key)
                .bind(*text),
            true,
        ),
        Damage::DataOwned(text) => (
            sqlx::query("UPDATE sessions SET data = $2::json WHERE key = $1")
                .bind(key)
                .bind(text.clone()),
            true,
        ),
        Damage::Version(version) => (
            sqlx::query("UPDATE sessions SET version = $2 WHERE key = $1")
                .bind(key)
                .bind(*version),
            true,
        ),
        // No user id (a `&str`) has these bytes: the row is no longer
        // `dana`'s, and no listing can name it.
        Damage::User(bytes) => (
            sqlx::query("UPDATE sessions SET \"user\" = $2 WHERE key = $1")
                .bind(key)
                .bind(bytes.to_vec()),
            false,
        ),
    };
    assert_eq!(query.execute(store.pool()).await?.rows_affected(), 1);
    let before = raw_row(&store, &session.key)
        .await?
        .ok_or("the damaged row is missing")?;

    let decode_of_key = |what: &str, result: Result<String, Error>| -> TestResult {
        match result {
            Err(Error::Decode { key, .. }) if key == session.key => Ok(()),
            other => Err(format!(
                "{what} of the damaged row: expected Err(Decode) naming its key, got {other:?}"
            )
            .into()),
        }
    };
    decode_of_key(
        "load",
        store.load(&session.key).await.map(|r| format!("{r:?}")),
    )?;
    saves_leave_it_alone(&store, &session, &before).await?;
    // Still damaged, still there.
    decode_of_key(
        "load again",
        store.load(&session.key).await.map(|r| format!("{r:?}")),
    )?;
    let listed = store.list_by_user(user).await?;
    assert_eq!(listed.records, vec![bystander.clone()]);
    let want: Vec<StorageKey> = if listed_under_user {
        vec![session.key]
    } else {
        Vec::new()
    };
    assert_eq!(listed.unreadable, want, "list_by_user's unreadable keys");
    assert_eq!(raw_row(&store, &session.key).await?.as_ref(), Some(&before));
    assert!(
        store.delete(&session.key).await?,
        "delete of the damaged row"
    );
    assert_eq!(raw_row(&store, &session.key).await?, None);
    assert!(!store.delete(&session.key).await?);
    assert_eq!(store.load(&bystander.key).await?, Some(bystander));
    Ok(())
}

/// Data that is valid JSON but not an object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_is_a_json_array_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(Damage::Data(r#"["x"]"#)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_is_json_null_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(Damage::Data("null")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_version_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(Damage::Version(-3)).await
}

// JSON objects the `json` column takes and serde_json cannot read (a
// number beyond `f64`, nesting beyond serde_json's 128 levels, a lone
// UTF-16 surrogate), and a user column that is not UTF-8: before the
// integrity digest, a save presenting the row's version overwrote them.
const BEYOND_F64: &str = r#"{"a": 1e400}"#;
const LONE_SURROGATE: &str = r#"{"a": "\ud800"}"#;
const NOT_UTF8: &[u8] = b"dana\xff";

fn nested_too_deep() -> Damage {
    Damage::DataOwned(format!(
        r#"{{"a": {}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_with_a_number_beyond_f64_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(Damage::Data(BEYOND_F64)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_nested_too_deep_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(nested_too_deep()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_with_a_lone_surrogate_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(Damage::Data(LONE_SURROGATE)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_that_is_not_utf8_is_decode_and_left_alone() -> TestResult {
    damaged_row_is_decode_and_left_alone(Damage::User(NOT_UTF8)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_length_cannot_be_planted() -> TestResult {
    let cluster = own_cluster().await?;
    let store = connect(&cluster, |o| o).await?;
    let check_violation = |what: &str, result: Result<_, sqlx::Error>| -> TestResult {
        match result {
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23514") => Ok(()),
            other => {
                Err(format!("{what}: expected a CHECK violation (23514), got {other:?}").into())
            }
        }
    };
    for len in [0, 16, 31, 33, 64] {
        let inserted = sqlx::query(
            "INSERT INTO sessions (key, \"user\", data, version, created_at, expires_at) \
             VALUES ($1, NULL, '{}', 0, 0, 9000000000000)",
        )
        .bind(vec![7u8; len])
        .execute(store.pool())
        .await;
        check_violation(&format!("insert of a {len}-byte key"), inserted)?;
    }
    let live = record(None)?;
    store.create(&live).await?;
    let shortened = sqlx::query("UPDATE sessions SET key = substring(key from 2) WHERE key = $1")
        .bind(live.key.as_bytes().as_slice())
        .execute(store.pool())
        .await;
    check_violation("update of a key to 31 bytes", shortened)?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(count, 1, "only the valid session is stored");
    assert_eq!(store.load(&live.key).await?, Some(live));
    Ok(())
}
