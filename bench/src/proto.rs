//! What every benchmark worker shares: the line protocol with the driver,
//! the measurement loop, key picking, and the tower-sessions payload.
//!
//! This file is compiled into both worker binaries: `session-bench` (as a
//! module) and the separate `bench/tower-sessions-sqlx` project (through
//! `#[path]`), which cannot link the workspace because its sqlx 0.8 and
//! our sqlx 0.9 both link `sqlite3`. So every system, including
//! tower-sessions' SQLite and PostgreSQL stores, is measured by this one
//! loop. It needs only `std`, `tokio`, `serde` and `serde_json`.
//!
//! # Protocol
//!
//! The driver starts a worker with its system's name; the worker sets the
//! system up, pre-populates [`SESSIONS`] sessions and prints one [`Ready`]
//! line (JSON) to stdout. Then, for each [`Request`] line on stdin, it
//! runs one warm-up plus measured window and prints one [`Reply`] line.
//! It exits at end of input. Progress and diagnostics go to stderr.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Sessions pre-populated in every system before measuring.
pub(crate) const SESSIONS: u64 = 10_000;

/// Lifetime of every session written: nothing expires mid-run.
pub(crate) const TTL: Duration = Duration::from_secs(24 * 3600);

/// At most this many distinct error messages are kept per run.
const MAX_DISTINCT_ERRORS: usize = 16;

/// The tally line for errors whose messages were not kept.
pub(crate) const OTHER_ERRORS: &str = "(other error messages, not kept)";

/// The three workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Workload {
    /// Request cycle: load, change one field, save.
    W1,
    /// Create a fresh session.
    W2,
    /// Load only.
    W3,
}

impl Workload {
    /// All three, in the order they are run (creates last: they grow the
    /// key space).
    pub(crate) const RUN_ORDER: [Workload; 3] = [Workload::W3, Workload::W1, Workload::W2];

    /// Short description for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Workload::W1 => "W1 request cycle",
            Workload::W2 => "W2 create",
            Workload::W3 => "W3 load",
        }
    }
}

/// One measured run, asked for by the driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    /// What to run.
    pub(crate) workload: Workload,
    /// Concurrent tokio tasks.
    pub(crate) tasks: usize,
    /// Warm-up before the window, in milliseconds (not counted).
    pub(crate) warmup_ms: u64,
    /// The measured window, in milliseconds.
    pub(crate) window_ms: u64,
    /// Seeds the key choice: the driver gives every system of a
    /// repetition the same seed, so they see the same key sequence.
    pub(crate) seed: u64,
}

/// What a worker says once it has set up and pre-populated its system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ready {
    /// The system's name.
    pub(crate) system: String,
    /// Sessions pre-populated.
    pub(crate) sessions: u64,
    /// Average stored payload size in bytes (as the system encodes it).
    pub(crate) payload_bytes: u64,
    /// Seconds spent pre-populating.
    pub(crate) populate_secs: f64,
}

/// The outcome of one [`Request`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// Successful operations completed inside the window.
    pub(crate) ops: u64,
    /// Failed operations completed inside the window.
    pub(crate) errors: u64,
    /// Failed operations completed during the warm-up or after the window
    /// closed (reported too, never dropped).
    pub(crate) errors_outside_window: u64,
    /// Every operation completed, warm-up and after-window included,
    /// successful or not (to relate server-side counters to operations).
    pub(crate) attempts: u64,
    /// The window as actually measured, in seconds.
    pub(crate) secs: f64,
    /// Error messages and how often each occurred.
    pub(crate) messages: BTreeMap<String, u64>,
}

impl Reply {
    /// Successful operations per second inside the window.
    pub(crate) fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Every failed operation of the run.
    pub(crate) fn total_errors(&self) -> u64 {
        self.errors + self.errors_outside_window
    }
}

/// What one operation is asked to do: which task runs it, and the key
/// index it should use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    /// The task running the operation, `0..tasks`.
    pub(crate) task: usize,
    /// The key index to operate on.
    pub(crate) index: u64,
}

/// The future an operation returns: `Err` carries the error's message.
pub(crate) type OpFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One operation of one workload.
pub(crate) type Op = Arc<dyn Fn(Step) -> OpFuture + Send + Sync>;

/// Wraps an async closure as an [`Op`].
pub(crate) fn op<F, Fut, E>(f: F) -> Op
where
    F: Fn(Step) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    Arc::new(move |step: Step| -> OpFuture {
        let fut = f(step);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    })
}

/// A system's three operations.
#[derive(Clone)]
pub(crate) struct Ops {
    /// W1: load, change one field, save.
    pub(crate) cycle: Op,
    /// W2: create the session of a fresh index.
    pub(crate) create: Op,
    /// W3: load.
    pub(crate) load: Op,
}

/// How keys are picked per workload, identical for every system:
/// - W1: uniformly random over the task's own stripe of the pre-populated
///   sessions (`i % tasks == task`), so no two tasks ever work on the same
///   session at once: a compare-and-set store sees no conflicts, and a
///   last-writer-wins store loses no update. Any conflict is an error.
/// - W2: a fresh index on every operation, never used before in this
///   worker (from [`SESSIONS`] upwards).
/// - W3: uniformly random over all pre-populated sessions.
fn pick(workload: Workload, rng: &mut Rng, task: usize, tasks: usize, fresh: &AtomicU64) -> u64 {
    match workload {
        Workload::W3 => rng.below(SESSIONS),
        Workload::W1 => {
            let (tasks, task) = (tasks as u64, task as u64);
            let stripe = SESSIONS.saturating_sub(task).div_ceil(tasks);
            task + rng.below(stripe) * tasks
        }
        Workload::W2 => fresh.fetch_add(1, Ordering::Relaxed),
    }
}

/// A splitmix64 generator: cheap, and good enough to spread keys.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number in `0..n` (0 for `n == 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The splitmix64 finaliser.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

#[derive(Default)]
struct Tally {
    attempts: u64,
    ops: u64,
    errors: u64,
    errors_outside_window: u64,
    messages: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, outcome: Result<(), String>, in_window: bool) {
        self.attempts += 1;
        match outcome {
            Ok(()) => {
                if in_window {
                    self.ops += 1;
                }
            }
            Err(msg) => {
                if in_window {
                    self.errors += 1;
                } else {
                    self.errors_outside_window += 1;
                }
                let slot = if self.messages.len() < MAX_DISTINCT_ERRORS
                    || self.messages.contains_key(&msg)
                {
                    msg
                } else {
                    OTHER_ERRORS.to_owned()
                };
                *self.messages.entry(slot).or_insert(0) += 1;
            }
        }
    }
}

/// Runs `op` on `req.tasks` tokio tasks: warm-up, then the measured
/// window. Every task loops pick key → run op → tally; an operation
/// counts as done in the window when it *completes* inside it.
///
/// # Errors
///
/// When a task panicked.
pub(crate) async fn measure(
    op: &Op,
    req: &Request,
    fresh: &Arc<AtomicU64>,
) -> Result<Reply, tokio::task::JoinError> {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let tasks = req.tasks.max(1);
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let op = Arc::clone(op);
        let phase = Arc::clone(&phase);
        let fresh = Arc::clone(fresh);
        let workload = req.workload;
        let mut rng = Rng::new(req.seed ^ (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while phase.load(Ordering::Relaxed) != STOP {
                let index = pick(workload, &mut rng, task, tasks, &fresh);
                let outcome = op(Step { task, index }).await;
                let in_window = phase.load(Ordering::Relaxed) == MEASURE;
                tally.record(outcome, in_window);
                // Ops that never wait (an in-memory map) must still let
                // the other tasks on this worker thread run.
                tokio::task::consume_budget().await;
            }
            tally
        }));
    }
    tokio::time::sleep(Duration::from_millis(req.warmup_ms)).await;
    phase.store(MEASURE, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(req.window_ms)).await;
    phase.store(STOP, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let mut reply = Reply {
        secs,
        ..Reply::default()
    };
    for handle in handles {
        let tally = handle.await?;
        reply.attempts += tally.attempts;
        reply.ops += tally.ops;
        reply.errors += tally.errors;
        reply.errors_outside_window += tally.errors_outside_window;
        for (msg, n) in tally.messages {
            *reply.messages.entry(msg).or_insert(0) += n;
        }
    }
    Ok(reply)
}

/// Prints `value` as one JSON line on stdout and flushes.
///
/// # Errors
///
/// When stdout is closed or the value cannot be encoded.
pub(crate) fn emit<T: Serialize>(value: &T) -> std::io::Result<()> {
    let line = serde_json::to_string(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// The worker's main loop: announces `ready`, then answers every request
/// line on stdin until end of input.
///
/// # Errors
///
/// On a malformed request, a panicked task, or a closed pipe.
pub(crate) async fn serve(ops: Ops, ready: Ready) -> Result<(), Box<dyn std::error::Error>> {
    emit(&ready)?;
    let fresh = Arc::new(AtomicU64::new(SESSIONS));
    // Blocking reads of stdin on their own thread, one line at a time.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Request = serde_json::from_str(&line)?;
        let op = match req.workload {
            Workload::W1 => &ops.cycle,
            Workload::W2 => &ops.create,
            Workload::W3 => &ops.load,
        };
        let reply = measure(op, &req, &fresh).await?;
        emit(&reply)?;
    }
    Ok(())
}

/// Resident set size of this process in bytes (`VmRSS` of
/// `/proc/self/status`).
///
/// # Errors
///
/// Off Linux, or when the line is missing.
pub(crate) fn rss_bytes() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other("no VmRSS in /proc/self/status"))
}

/// The session id tower-sessions systems use for session `i`: 128
/// random-looking bits, distinct for distinct `i`.
pub(crate) fn ts_id(i: u64) -> i128 {
    let hi = mix64(i);
    let lo = mix64(i ^ 0x5851_f42d_4c95_7f2d);
    ((u128::from(hi) << 64) | u128::from(lo)) as i128
}

/// A 43-character URL-safe token derived from `i` (the same length as the
/// CSRF token our sessions carry, which is a session id's cookie value).
fn csrf_token(i: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = Rng::new(i ^ 0xc5f0_b7d2_13a4_9e61);
    (0..43)
        .map(|_| char::from(ALPHABET[(rng.next_u64() & 63) as usize]))
        .collect()
}

/// Session `i`'s data as a tower-sessions `Record::data` map: the same
/// fields and values as `data::session` (user id, a
/// 43-character CSRF token, display name, locale, three booleans, a
/// last-seen timestamp), ≈200 bytes of JSON.
pub(crate) fn ts_data(i: u64, now_ms: i64) -> std::collections::HashMap<String, serde_json::Value> {
    let mut data = std::collections::HashMap::with_capacity(8);
    data.insert("user_id".to_owned(), format!("user-{i:08}").into());
    data.insert("csrf_token".to_owned(), csrf_token(i).into());
    data.insert(
        "display_name".to_owned(),
        format!("Ada Lovelace {i:05}").into(),
    );
    data.insert("locale".to_owned(), "en-GB".into());
    data.insert("is_admin".to_owned(), false.into());
    data.insert("mfa_verified".to_owned(), true.into());
    data.insert("dark_mode".to_owned(), true.into());
    data.insert("last_seen".to_owned(), now_ms.into());
    data
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The setup and the three operations of a tower-sessions store, through
/// its `SessionStore` trait only; `$core` names the `tower-sessions-core`
/// the store implements (the stores are on different versions), `$store`
/// is the store. Evaluates to `Result<(Ops, average payload bytes), _>`
/// inside an async fn returning a boxed error. Shared by `session-bench`'s
/// workers and the separate tower-sessions sqlx worker, so every
/// tower-sessions store is driven by the same code.
macro_rules! ts_ops {
    ($core:ident, $store:expr) => {{
        use $core::SessionStore as _;
        use $core::session::{Id, Record};
        let store = $store;
        let expiry = || time::OffsetDateTime::now_utc() + crate::proto::TTL;
        let now = crate::proto::now_ms();
        let mut bytes = 0u64;
        for i in 0..crate::proto::SESSIONS {
            let mut record = Record {
                id: Id(crate::proto::ts_id(i)),
                data: crate::proto::ts_data(i, now),
                expiry_date: expiry(),
            };
            bytes += serde_json::to_vec(&record.data)?.len() as u64;
            store.create(&mut record).await?;
            if record.id != Id(crate::proto::ts_id(i)) {
                return Err(format!("session {i}: id collision").into());
            }
        }
        let s = store.clone();
        let cycle = crate::proto::op(move |step: crate::proto::Step| {
            let store = s.clone();
            async move {
                let mut record = store
                    .load(&Id(crate::proto::ts_id(step.index)))
                    .await
                    .map_err(|e| format!("load: {e}"))?
                    .ok_or("load found nothing")?;
                record
                    .data
                    .insert("last_seen".to_owned(), crate::proto::now_ms().into());
                record.expiry_date = expiry();
                store.save(&record).await.map_err(|e| format!("save: {e}"))
            }
        });
        let s = store.clone();
        let load = crate::proto::op(move |step: crate::proto::Step| {
            let store = s.clone();
            async move {
                match store.load(&Id(crate::proto::ts_id(step.index))).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("load found nothing".to_owned()),
                    Err(e) => Err(format!("load: {e}")),
                }
            }
        });
        let template = ::std::sync::Arc::new(Record {
            id: Id(crate::proto::ts_id(crate::proto::SESSIONS)),
            data: crate::proto::ts_data(crate::proto::SESSIONS, now),
            expiry_date: expiry(),
        });
        let create = crate::proto::op(move |step: crate::proto::Step| {
            let store = store.clone();
            let template = ::std::sync::Arc::clone(&template);
            async move {
                let mut record = Record::clone(&template);
                let id = Id(crate::proto::ts_id(step.index));
                record.id = id;
                record.expiry_date = expiry();
                store
                    .create(&mut record)
                    .await
                    .map_err(|e| format!("create: {e}"))?;
                // tower-sessions picks another id on a collision: with
                // fresh indices there is none, so that would be a bug.
                if record.id == id {
                    Ok(())
                } else {
                    Err("create: id was taken".to_owned())
                }
            }
        });
        Ok((
            crate::proto::Ops {
                cycle,
                create,
                load,
            },
            bytes / crate::proto::SESSIONS,
        ))
    }};
}

pub(crate) use ts_ops;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w1_keys_stay_in_the_tasks_stripe_and_w2_keys_are_fresh() {
        let fresh = AtomicU64::new(SESSIONS);
        let mut rng = Rng::new(7);
        for tasks in [1usize, 3, 64] {
            for task in 0..tasks {
                for _ in 0..200 {
                    let i = pick(Workload::W1, &mut rng, task, tasks, &fresh);
                    assert!(i < SESSIONS);
                    assert_eq!(i as usize % tasks, task);
                    assert!(pick(Workload::W3, &mut rng, task, tasks, &fresh) < SESSIONS);
                }
            }
        }
        let a = pick(Workload::W2, &mut rng, 0, 1, &fresh);
        let b = pick(Workload::W2, &mut rng, 0, 1, &fresh);
        assert_eq!((a, b), (SESSIONS, SESSIONS + 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_are_counted_never_dropped() -> Result<(), tokio::task::JoinError> {
        let failing = op(|step: Step| async move {
            if step.index.is_multiple_of(2) {
                Err(format!("even {}", step.index % 4))
            } else {
                Ok(())
            }
        });
        let req = Request {
            workload: Workload::W3,
            tasks: 4,
            warmup_ms: 20,
            window_ms: 50,
            seed: 1,
        };
        let reply = measure(&failing, &req, &Arc::new(AtomicU64::new(0))).await?;
        assert!(reply.ops > 0 && reply.errors > 0);
        assert_eq!(
            reply.messages.values().sum::<u64>(),
            reply.total_errors(),
            "every error is tallied under a message"
        );
        assert!(reply.attempts >= reply.ops + reply.total_errors());
        assert!(reply.messages.contains_key("even 0") && reply.messages.contains_key("even 2"));
        Ok(())
    }
}
