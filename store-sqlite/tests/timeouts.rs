//! Every call is bounded in time (issue 23 item 6), with the default
//! options (the default operation timeout), against a write lock that
//! another process holds on the same file (`BEGIN IMMEDIATE`, as a
//! backup, a migration or the `sqlite3` shell would):
//!
//! - every kind of write, alone and many at once, fails retryably within
//!   the operation timeout, none says it may have been applied, and once
//!   the lock is released the table is byte for byte as before and
//!   writes succeed again; reads go on meanwhile (WAL);
//! - a write whose caller gave up while it waited for the writer is never
//!   committed, even when the lock is released just after.
//!
//! The lock holder is this very test binary, re-executed with
//! `LOCK_CHILD_DB` set so that its ignored `lock_holder_child` test takes
//! the lock, says so, and holds it until told to let go.
#![cfg(unix)]

mod common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{HOUR, TestResult, live_record};
use futures_util::future::join_all;
use serde_json::json;
use session_core::{Error, Record, SessionStore, Timestamp};
use session_store_sqlite::{DEFAULT_OPERATION_TIMEOUT, SqliteStore, TimedOut};
use sqlx::Connection as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CHILD_ENV: &str = "LOCK_CHILD_DB";

/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

/// The child's side: takes the write lock of the database at
/// `LOCK_CHILD_DB`, prints `locked`, holds the lock until a line arrives
/// on standard input (or it ends), rolls back, prints `released`. Does
/// nothing in a normal test run.
#[tokio::test]
#[ignore = "runs only as the child of the lock tests"]
async fn lock_holder_child() -> TestResult {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&options).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
    println!("locked");
    // Nothing else runs in this process: a blocking read will do.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    sqlx::query("ROLLBACK").execute(&mut conn).await?;
    println!("released");
    Ok(())
}

/// Another process holding the write lock of a database file.
struct LockHolder {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl LockHolder {
    /// Starts the child on `path` and waits until it holds the lock.
    async fn take(path: &Path) -> TestResult<Self> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "lock_holder_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no child stdin")?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut holder = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        holder.wait_for("locked").await?;
        Ok(holder)
    }

    async fn wait_for(&mut self, word: &str) -> TestResult {
        let deadline = Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout(deadline, self.lines.next_line())
                .await??
                .ok_or_else(|| format!("the lock holder exited before saying {word:?}"))?;
            // The test runner may print `test … ... ` just before it.
            if line.trim_end().ends_with(word) {
                return Ok(());
            }
        }
    }

    /// Lets the lock go and waits until the child has.
    async fn release(mut self) -> TestResult {
        self.stdin.write_all(b"go\n").await?;
        self.stdin.flush().await?;
        self.wait_for("released").await?;
        self.child.wait().await?;
        Ok(())
    }
}

/// A store with the default options on a fresh file.
async fn open() -> TestResult<(tempfile::TempDir, std::path::PathBuf, SqliteStore)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.operation_timeout(), DEFAULT_OPERATION_TIMEOUT);
    Ok((dir, path, store))
}

/// What the table holds, every row byte for byte, in key order.
async fn snapshot(store: &SqliteStore) -> TestResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT concat_ws(' | ', hex(key), user, data, version, created_at, expires_at, \
         digest) FROM sessions ORDER BY key",
    )
    .fetch_all(store.pool())
    .await?)
}

fn session(user: Option<&str>) -> TestResult<Record> {
    let mut record = live_record(HOUR)?;
    record.user = user.map(str::to_owned);
    record.data.insert("n".into(), json!(0));
    Ok(record)
}

/// A session of `alice` saved once, one to delete, `bob`'s, and an
/// expired row.
async fn store_sessions(store: &SqliteStore) -> TestResult<(Record, Record, Record)> {
    let mut saved = session(Some("alice"))?;
    store.create(&saved).await?;
    saved.data.insert("n".into(), json!(1));
    saved.version = store.save(&saved).await?;
    let doomed = session(None)?;
    store.create(&doomed).await?;
    let bobs = session(Some("bob"))?;
    store.create(&bobs).await?;
    let mut expired = session(None)?;
    expired.expires_at = Timestamp::now().saturating_add(Duration::from_millis(50));
    store.create(&expired).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok((saved, doomed, bobs))
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

/// Runs `calls` all at once; each must fail with a retryable
/// `Error::Backend` within the operation timeout plus slack, and none may
/// say that it may have been applied.
async fn all_fail_in_time(calls: Vec<Call<'_>>) -> TestResult {
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
    for (name, result, took) in results {
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
        if chain.contains("may or may not") {
            wrong.push(format!("{name}: {chain}"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n").into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_elsewhere_fails_writes_in_time_and_reads_go_on() -> TestResult {
    let (_dir, path, store) = open().await?;
    let (saved, doomed, bobs) = store_sessions(&store).await?;
    let before = snapshot(&store).await?;
    let holder = LockHolder::take(&path).await?;

    let later = Timestamp::now().saturating_add(HOUR + HOUR);
    let mut resaved = saved.clone();
    resaved.data.insert("during".into(), json!("the lock"));
    let fresh = session(Some("alice"))?;
    let creates: Vec<Record> = (0..16).map(|_| session(None)).collect::<TestResult<_>>()?;
    let mut calls = vec![
        call("create", store.create(&fresh)),
        call("save", store.save(&resaved)),
        call("touch", store.touch(&saved.key, later)),
        call("delete", store.delete(&doomed.key)),
        call("delete_by_user", store.delete_by_user("bob")),
        call("delete_expired", store.delete_expired()),
    ];
    for (i, record) in creates.iter().enumerate() {
        calls.push(call(format!("concurrent create {i}"), store.create(record)));
    }
    for i in 0..8 {
        calls.push(call(format!("save {i} of one key"), store.save(&resaved)));
    }
    let writes = all_fail_in_time(calls);
    // Reads go on beside the held lock (WAL), and promptly.
    let reads = async {
        let started = Instant::now();
        let loaded = store.load(&saved.key).await?;
        let listed = store.list_by_user("alice").await?;
        TestResult::Ok((loaded, listed, started.elapsed()))
    };
    let (writes, reads) = tokio::join!(writes, reads);
    holder.release().await?;
    writes?;
    let (loaded, listed, read_took) = reads?;
    assert_eq!(loaded.as_ref(), Some(&saved));
    assert_eq!(listed.records, vec![saved.clone()]);
    assert!(
        read_took < DEFAULT_OPERATION_TIMEOUT,
        "reads took {read_took:?}"
    );

    assert_eq!(
        snapshot(&store).await?,
        before,
        "a write that failed under the lock changed the table"
    );
    // Writes succeed again.
    store.create(&fresh).await?;
    resaved.version = store.save(&resaved).await?;
    assert!(store.touch(&saved.key, later).await?);
    assert!(store.delete(&doomed.key).await?);
    assert_eq!(store.delete_by_user("bob").await?, 1);
    assert_eq!(store.delete_expired().await?, 1);
    resaved.expires_at = later;
    assert_eq!(store.load(&saved.key).await?, Some(resaved));
    assert_eq!(store.load(&bobs.key).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_gave_up_is_never_committed() -> TestResult {
    let t = DEFAULT_OPERATION_TIMEOUT;
    let (_dir, path, store) = open().await?;
    let holder = LockHolder::take(&path).await?;
    // `first` keeps the writer waiting for the lock for one operation
    // timeout; `second`, issued halfway through, is taken by the writer
    // then, and waits for the lock another timeout: its caller gives up
    // in the middle of that wait.
    let (first, second) = (session(None)?, session(None)?);
    let first_call = {
        let store = store.clone();
        let first = first.clone();
        tokio::spawn(async move { store.create(&first).await })
    };
    tokio::time::sleep(t / 2).await;
    let started = Instant::now();
    let second_result = store.create(&second).await;
    let second_took = started.elapsed();
    // The writer still waits for the lock on `second`'s behalf; let the
    // lock go while it does.
    tokio::time::sleep(t / 5).await;
    holder.release().await?;
    let first_result = first_call.await?;
    // Behind what the writer was doing: once this is in, so is that.
    store.create(&session(None)?).await?;

    // `first` ends as the writer gives up on the lock: whichever comes
    // first, its caller's deadline or the writer's busy timeout, nothing
    // of it was applied.
    match &first_result {
        Err(e @ Error::Backend { .. })
            if e.is_retryable() && error_chain(e).contains("nothing of it was applied") => {}
        other => return Err(format!("first create: {other:?}").into()),
    }
    // `second`'s caller gave up while the writer still waited for the
    // lock on its behalf.
    let timed_out = match &second_result {
        Err(e @ Error::Backend { .. }) if e.is_retryable() => {
            std::error::Error::source(e).and_then(|s| s.downcast_ref::<TimedOut>())
        }
        _ => None,
    };
    assert!(
        timed_out.is_some_and(|t| !t.may_have_applied()),
        "second create: {second_result:?} (expected a TimedOut that applied nothing)"
    );
    assert!(
        second_took <= t + SLACK,
        "the second create took {second_took:?}"
    );
    assert_eq!(store.load(&first.key).await?, None);
    assert_eq!(
        store.load(&second.key).await?,
        None,
        "the second create was committed after its caller gave up"
    );
    Ok(())
}
