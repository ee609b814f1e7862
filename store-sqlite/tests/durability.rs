//! A writer process is killed with SIGKILL mid-stream; every write it
//! acknowledged is in the database afterwards, and the file is intact.
//!
//! The writer is this very test binary, re-executed with
//! `DURABILITY_CHILD_DB` set so that its ignored `durability_child_writer`
//! test runs the write loop and prints one line per acknowledged write.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{HOUR, TestResult, live_record};
use serde_json::json;
use session_core::{SessionStore, StorageKey};
use session_store_sqlite::SqliteStore;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_ENV: &str = "DURABILITY_CHILD_DB";

/// The child's side: create and save sessions forever, printing `C <key>`
/// after each acknowledged create and `S <key> <version>` after each
/// acknowledged save. Does nothing in a normal test run.
#[tokio::test]
#[ignore = "runs only as the child of acknowledged_writes_survive_sigkill"]
async fn durability_child_writer() -> TestResult {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let store = SqliteStore::open(&path).await?;
    let mut out = std::io::stdout().lock();
    let mut previous: Option<session_core::Record> = None;
    for i in 0u64.. {
        let mut record = live_record(HOUR)?;
        record.data.insert("i".into(), json!(i));
        store.create(&record).await?;
        writeln!(out, "C {}", record.key.to_hex())?;
        out.flush()?;
        if let Some(mut prev) = previous.take() {
            prev.data.insert("saved".into(), json!(i));
            prev.version = store.save(&prev).await?;
            writeln!(out, "S {} {}", prev.key.to_hex(), prev.version)?;
            out.flush()?;
        }
        previous = Some(record);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("durable.db");
    // Create the file and schema first, so the child only writes records.
    drop(SqliteStore::open(&path).await?);

    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "durability_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut lines = BufReader::new(stdout).lines();

    let mut created: Vec<StorageKey> = Vec::new();
    let mut saved: HashMap<StorageKey, u64> = HashMap::new();
    let mut record_line = |line: &str| -> TestResult<bool> {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("C"), Some(key), None) => created.push(StorageKey::from_hex(key)?),
            (Some("S"), Some(key), Some(version)) => {
                saved.insert(StorageKey::from_hex(key)?, version.parse()?);
            }
            _ => return Ok(false), // test harness chatter
        }
        Ok(true)
    };

    // Let it write for a while, then kill it mid-stream.
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut acks = 0;
    while acks < 2000 {
        if Instant::now() > give_up {
            return Err(format!("the child acknowledged only {acks} writes in 20 s").into());
        }
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await??
            .ok_or("the child exited before it was killed")?;
        if record_line(&line)? {
            acks += 1;
        }
    }
    child.start_kill()?; // SIGKILL
    // Whatever it printed before dying was acknowledged too.
    while let Some(line) = lines.next_line().await? {
        record_line(&line)?;
    }
    let status = child.wait().await?;
    assert!(
        !status.success(),
        "the child should have been killed: {status:?}"
    );
    assert!(
        created.len() >= 1000,
        "{} creates acknowledged",
        created.len()
    );

    // Reopen (recovering the WAL) and find every acknowledged write.
    let store = SqliteStore::open(&path).await?;
    for key in &created {
        let record = store.load(key).await?;
        assert!(record.is_some(), "acknowledged create {key} lost");
    }
    for (key, version) in &saved {
        let record = store.load(key).await?.ok_or("saved record lost")?;
        assert!(
            record.version >= *version,
            "acknowledged save {key} v{version} lost"
        );
    }
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(store.pool())
        .await?;
    assert_eq!(check, ["ok"]);
    println!(
        "child killed after {} acknowledged creates and {} saves; all found",
        created.len(),
        saved.len()
    );
    Ok(())
}
