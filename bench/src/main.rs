//! `session-bench`: our session stores side by side with tower-sessions'
//! stores and the raw clients, in one run, on one machine, same payload
//! (issue 7).
//!
//! ```text
//! cargo run --release -p session-bench              # full run: docs/bench/ + README
//! cargo run --release -p session-bench -- --quick   # ~2 minutes, to target/bench/
//! cargo run --release -p session-bench -- --help
//! cargo run --release -p session-bench -- --hot-session   # W4 hot session, see hot.rs
//! session-bench profile redis-load 20000 64   # for callgrind, see profile.rs
//! ```
//!
//! # Architecture
//!
//! This binary is both the **driver** (no arguments, or flags) and the
//! **worker** (`session-bench worker SYSTEM ...`, `session-bench memory
//! SYSTEM N`). tower-sessions' SQLite and PostgreSQL stores need sqlx 0.8
//! and ours sqlx 0.9; both link `sqlite3`, so they cannot share a cargo
//! dependency graph. Their worker is a separate cargo project,
//! `bench/tower-sessions-sqlx` (its own workspace and lock file; one
//! binary for both stores), which the driver builds with `cargo build
//! --release --locked --manifest-path ...` and runs like the others.
//!
//! The driver
//! 1. measures memory per session: for each in-process store, a fresh
//!    `memory` process inserts 200,000 sessions and reports its resident
//!    set (`VmRSS`) before and after (three processes per store, median);
//! 2. starts its own `redis-server` (and, for the Valkey rows, a
//!    `valkey-server`, from `VALKEY_SERVER` or `PATH`) on a unix socket in a temporary
//!    directory (no TCP, no persistence), killed at the end; likewise,
//!    for the PostgreSQL rows, a throwaway PostgreSQL cluster (`initdb`
//!    in a temporary directory, a unix socket only);
//! 3. per backend (memory, Redis, Valkey, SQLite, PostgreSQL), starts one long-lived worker
//!    process per system; each sets its system up, pre-populates 10,000
//!    sessions and waits for requests on stdin;
//! 4. for each workload (W3 load, W1 request cycle, W2 create) and task
//!    count (1, 64), runs every repetition of every system *interleaved*:
//!    rep 1 of each system (the order rotated each repetition), then rep
//!    2, ...; each run is a warm-up and a fixed window inside that
//!    system's worker (one system runs at a time), reported back as one
//!    JSON line (successful ops, errors with their messages, seconds);
//! 5. writes `results.md` (tables: medians, ratios of medians, errors,
//!    bytes/session; targets of issue 7; every run) and `results.svg` (a
//!    bar chart), and replaces the Benchmarks block of the README.
//!
//! Every worker measures with the same loop (`proto.rs`, compiled into
//! both worker binaries).

mod data;
mod driver;
mod hot;
mod postgres;
mod profile;
mod profile_hot;
mod proto;
mod report;
mod systems;

use std::process::ExitCode;

use systems::{BoxError, WorkerArgs};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("worker") => worker(&args[1..]),
        Some("memory") => memory(&args[1..]),
        Some("--hot-session") => hot::run(&args[1..]),
        Some("profile") => profile::run(&args[1..]),
        _ => driver::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `worker SYSTEM [--redis-url URL] [--pg-url URL] [--dir DIR]`.
fn worker(args: &[String]) -> Result<(), BoxError> {
    let (system, rest) = args.split_first().ok_or("worker: which system?")?;
    let mut wargs = WorkerArgs::default();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--redis-url" => wargs.redis_url = Some(value.clone()),
            "--pg-url" => wargs.pg_url = Some(value.clone()),
            "--dir" => wargs.dir = Some(value.into()),
            other => return Err(format!("worker: unknown flag {other:?}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (ops, ready) = systems::setup(system, &wargs).await?;
        proto::serve(ops, ready)
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })
    })
}

/// `memory SYSTEM N`: prints one JSON line with the RSS before and after
/// inserting N sessions.
fn memory(args: &[String]) -> Result<(), BoxError> {
    let [system, n] = args else {
        return Err("memory: expected SYSTEM N".into());
    };
    let n: u64 = n.parse()?;
    // One thread: no per-thread allocator arenas or runtime workers grow
    // while measuring.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (before, after, entries) = rt.block_on(systems::memory_growth(system, n))?;
    proto::emit(&driver::MemoryReply {
        system: system.clone(),
        sessions: n,
        entries,
        rss_before: before,
        rss_after: after,
    })?;
    Ok(())
}
