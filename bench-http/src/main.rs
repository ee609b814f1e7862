//! `session-bench-http`: the end-to-end HTTP benchmark of issue 16 — the
//! same axum app on `session-tower` and on tower-sessions 0.14, plus a
//! bare baseline, driven over loopback HTTP — and an in-process profile
//! of `session-tower`'s per-request cost.
//!
//! ```text
//! cargo run --release -p session-bench-http              # full run: docs/bench-http/
//! cargo run --release -p session-bench-http -- --quick   # smoke run: target/bench-http/
//! session-bench-http profile untouched|read|write N [--bare]   # for callgrind, see profile.rs
//! ```
//!
//! # Architecture
//!
//! Every system is its own server process on an ephemeral loopback port:
//! `session-bench-http serve SYSTEM` for the bare baseline and our stores
//! (`app.rs`), `ts-http-app SYSTEM` for tower-sessions' (the separate
//! cargo project `bench-http/tower-sessions-app`: tower-sessions-sqlx-store
//! needs sqlx 0.8, our SQLite store sqlx 0.9, and both link `sqlite3`).
//! The driver builds that project (`cargo build --release --locked -j1`),
//! starts a throwaway `redis-server` on a unix socket, starts all seven
//! servers, signs in 1,000 sessions on each, and then runs, for each
//! workload and connection count (1, 64), every repetition of every
//! system interleaved (rep 1 of each system, the order rotated each
//! repetition, then rep 2, …). One run is a warm-up and a fixed measured
//! window of one system at a time, counting 2xx answers, other statuses
//! and transport errors (`load.rs`). Then the hot session (64
//! connections, one cookie, `GET /counter`) per system, and the report
//! (`report.rs`): `results.md` and `results.svg`.

mod app;
mod driver;
mod load;
mod profile;
mod report;

use std::process::ExitCode;

use session_core::SessionManager;
use session_store_memory::MemoryStore;

/// Errors of the benchmark binary.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `--help`.
pub(crate) const USAGE: &str = "\
usage:
  session-bench-http [--quick] [--out DIR]    run the benchmark (full: docs/bench-http/, --quick: target/bench-http/)
  session-bench-http serve SYSTEM [--redis-url URL] [--dir DIR]
                                              one server: bare, ours-memory, ours-redis, ours-sqlite
  session-bench-http profile KIND N [--bare]  N in-process requests for callgrind: KIND untouched, read or write";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("profile") => profile::run(&args[1..]),
        _ => driver::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-bench-http: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `serve SYSTEM [--redis-url URL] [--dir DIR]`: prints `LISTENING ADDR`,
/// then serves until killed.
fn serve(args: &[String]) -> Result<(), BoxError> {
    let (system, rest) = args.split_first().ok_or("serve: which system?")?;
    let (mut redis_url, mut dir) = (None, None);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--redis-url" => redis_url = Some(value.clone()),
            "--dir" => dir = Some(std::path::PathBuf::from(value)),
            other => return Err(format!("serve: unknown flag {other:?}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let router = match system.as_str() {
            "bare" => app::bare(),
            "ours-memory" => app::ours(SessionManager::new(MemoryStore::default())),
            "ours-redis" => {
                let url = redis_url.as_deref().ok_or("--redis-url needed")?;
                app::ours(SessionManager::new(
                    session_store_redis::RedisStore::connect(url).await?,
                ))
            }
            "ours-sqlite" => {
                let dir = dir.as_deref().ok_or("--dir needed")?;
                app::ours(SessionManager::new(
                    session_store_sqlite::SqliteStore::open(dir.join("ours-http.db")).await?,
                ))
            }
            other => return Err(format!("serve: unknown system {other:?}").into()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("LISTENING {}", listener.local_addr()?);
        axum::serve(listener, router).await?;
        Ok(())
    })
}
