//! The report: `results.md`, `results.svg`, and the README's Benchmarks
//! block (between `<!-- bench:begin -->` and `<!-- bench:end -->`).

use std::fmt::Write as _;

use crate::driver::{Backend, CLIENT_COMMANDS, Cell, Results, USEC_SUFFIX};
use crate::postgres::POOL as POSTGRES_POOL;
use crate::proto::{SESSIONS, Workload};
use crate::systems::{BoxError, MEMORY_STORE_BYTES, MOKA_ENTRIES};

const README_BEGIN: &str = "<!-- bench:begin -->";
const README_END: &str = "<!-- bench:end -->";

/// The short column name and the long name of each system.
fn names(system: &str) -> (&'static str, &'static str) {
    match system {
        "ours-memory" => ("ours", "ours: session-store-memory `MemoryStore`"),
        "ts-moka" => ("ts-moka", "tower-sessions-moka-store 0.15 `MokaStore`"),
        "ts-memory" => (
            "ts-memory",
            "tower-sessions-memory-store 0.15 `MemoryStore`",
        ),
        "raw-moka" => ("raw moka", "raw: moka 0.12 `future::Cache` of the bytes"),
        "ours-redis" => ("ours", "ours: session-store-redis `RedisStore`"),
        "ts-redis" => (
            "ts-redis",
            "tower-sessions-redis-store 0.16 `RedisStore` (fred 10)",
        ),
        "raw-redis" => (
            "raw redis",
            "raw: `redis` crate, one multiplexed connection",
        ),
        "ours-valkey" => ("ours", "ours: session-store-redis `RedisStore` on Valkey"),
        "ts-valkey" => (
            "ts-redis",
            "tower-sessions-redis-store 0.16 `RedisStore` (fred 10) on Valkey",
        ),
        "raw-valkey" => (
            "raw redis",
            "raw: `redis` crate, one multiplexed connection, on Valkey",
        ),
        "ours-sqlite" => ("ours", "ours: session-store-sqlite `SqliteStore`"),
        "ts-sqlite" => (
            "ts-sqlite",
            "tower-sessions-sqlx-store 0.15 `SqliteStore` (sqlx 0.8)",
        ),
        "raw-sqlite" => ("raw sqlx", "raw: sqlx 0.9 statements"),
        "ours-postgres" => ("ours", "ours: session-store-postgres `PostgresStore`"),
        "ts-postgres" => (
            "ts-postgres",
            "tower-sessions-sqlx-store 0.15 `PostgresStore` (sqlx 0.8)",
        ),
        "raw-postgres" => ("raw sqlx", "raw: sqlx 0.9 statements"),
        _ => ("?", "?"),
    }
}

/// The name of a system in the chart's legend.
fn chart_name(system: &str) -> &'static str {
    match system {
        "ours-memory" => "ours: MemoryStore",
        "ts-moka" => "tower-sessions MokaStore",
        "ts-memory" => "tower-sessions MemoryStore",
        "raw-moka" => "raw moka get/insert",
        "ours-redis" => "ours: RedisStore",
        "ts-redis" => "tower-sessions RedisStore (fred)",
        "raw-redis" => "raw redis GET/SET",
        "ours-valkey" => "ours: RedisStore on Valkey",
        "ts-valkey" => "tower-sessions RedisStore (fred) on Valkey",
        "raw-valkey" => "raw redis GET/SET on Valkey",
        "ours-sqlite" => "ours: SqliteStore",
        "ts-sqlite" => "tower-sessions SqliteStore (sqlx 0.8)",
        "raw-sqlite" => "raw sqlx SELECT/UPDATE",
        "ours-postgres" => "ours: PostgresStore",
        "ts-postgres" => "tower-sessions PostgresStore (sqlx 0.8)",
        "raw-postgres" => "raw sqlx SELECT/UPDATE",
        _ => "?",
    }
}

/// The ratios shown per backend: (numerator, denominator).
fn ratios(backend: Backend) -> &'static [(&'static str, &'static str)] {
    match backend {
        Backend::Memory => &[
            ("ours-memory", "ts-moka"),
            ("ours-memory", "ts-memory"),
            ("ours-memory", "raw-moka"),
        ],
        Backend::Redis => &[
            ("ours-redis", "raw-redis"),
            ("ours-redis", "ts-redis"),
            ("ts-redis", "raw-redis"),
        ],
        Backend::Valkey => &[
            ("ours-valkey", "raw-valkey"),
            ("ours-valkey", "ts-valkey"),
            ("ts-valkey", "raw-valkey"),
        ],
        Backend::Sqlite => &[
            ("ours-sqlite", "ts-sqlite"),
            ("ours-sqlite", "raw-sqlite"),
            ("ts-sqlite", "raw-sqlite"),
        ],
        Backend::Postgres => &[
            ("ours-postgres", "ts-postgres"),
            ("ours-postgres", "raw-postgres"),
            ("ts-postgres", "raw-postgres"),
        ],
    }
}

/// A one-paragraph description of this machine.
pub(crate) fn machine() -> String {
    let mut out = machine_description();
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo")
        && let Some(kb) = info
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    {
        let _ = write!(out, ", {:.0} GiB RAM", kb as f64 / (1024.0 * 1024.0));
    }
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        let _ = write!(out, ", Linux {}", kernel.trim());
    }
    out
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Howard Hinnant's civil_from_days.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn cell(r: &Results, b: Backend, w: Workload, tasks: usize) -> Option<&Cell> {
    r.cells
        .iter()
        .find(|c| c.backend == b && c.workload == w && c.tasks == tasks)
}

fn memory_bytes(r: &Results, system: &str) -> Option<f64> {
    r.memory
        .iter()
        .find(|m| m.system == system)
        .map(|m| m.bytes_per_session())
}

/// One row of a targets table: (text, measured, verdict).
type TargetRow = (String, String, String);

/// `**met**`, or by how much `measured` missed `goal` (an upper bound
/// when `at_most`, else a lower bound).
fn verdict(measured: f64, goal: f64, at_most: bool) -> String {
    let met = if at_most {
        measured <= goal
    } else {
        measured >= goal
    };
    if met {
        "**met**".to_owned()
    } else if at_most {
        format!("missed: {:.0}% over", (measured / goal - 1.0) * 100.0)
    } else {
        format!(
            "missed: {:.0}% short (needs {:.2}× more)",
            (1.0 - measured / goal) * 100.0,
            goal / measured.max(f64::MIN_POSITIVE)
        )
    }
}

/// The target "`n` ≥ `goal` × `d`" on backend `b`, workload `w`, at
/// `tasks` tasks, when both systems ran there.
struct RatioTarget<'a> {
    b: Backend,
    w: Workload,
    tasks: usize,
    n: &'a str,
    d: &'a str,
    goal: f64,
}

impl RatioTarget<'_> {
    /// The row saying `text`, or `None` when the cell or a system is
    /// missing from this run.
    fn row(&self, r: &Results, text: String) -> Option<TargetRow> {
        let ratio = cell(r, self.b, self.w, self.tasks)?.ratio(self.n, self.d)?;
        Some((
            text,
            format!("{ratio:.2}×"),
            verdict(ratio, self.goal, false),
        ))
    }
}

/// The issue-7 targets, each as (text, measured, verdict).
fn targets(r: &Results) -> Vec<TargetRow> {
    let mut out = Vec::new();
    if let Some(bytes) = memory_bytes(r, "ours-memory") {
        out.push((
            "Memory store: ≤ 650 bytes per session".to_owned(),
            format!("{bytes:.0} bytes"),
            verdict(bytes, 650.0, true),
        ));
    }
    let at_64 = |b, w, n, d, goal| RatioTarget {
        b,
        w,
        tasks: 64,
        n,
        d,
        goal,
    };
    use Workload::{W1, W2, W3};
    out.extend(
        at_64(Backend::Memory, W1, "ours-memory", "ts-moka", 1.5).row(
            r,
            "Memory store: W1 at 64 tasks ≥ 1.5× tower-sessions' moka store".to_owned(),
        ),
    );
    for w in [W1, W3] {
        out.extend(
            at_64(Backend::Redis, w, "ours-redis", "raw-redis", 0.85).row(
                r,
                format!("Redis store: {w:?} at 64 tasks ≥ 0.85× raw `redis` GET/SET"),
            ),
        );
    }
    for w in [W1, W3] {
        out.extend(at_64(Backend::Redis, w, "ours-redis", "ts-redis", 1.2).row(
            r,
            format!("Redis store: {w:?} at 64 tasks ≥ 1.2× tower-sessions' Redis store"),
        ));
        // The raw client is the floor: no store does less work. Say so
        // when the target asks for more than the floor.
        let floor = cell(r, Backend::Redis, w, 64).and_then(|c| c.ratio("ts-redis", "raw-redis"));
        if let (Some(floor), Some(last)) = (floor, out.last_mut())
            && 1.2 * floor > 1.0
            && !last.2.starts_with("**met**")
        {
            last.2.push_str(&format!(
                "; tower-sessions ran at {floor:.2}× the raw client here, so this target \
                 asks for {:.2}× the raw client, which does strictly less work",
                1.2 * floor
            ));
        }
    }
    for w in [W1, W2] {
        out.extend(
            at_64(Backend::Sqlite, w, "ours-sqlite", "ts-sqlite", 2.0).row(
                r,
                format!("SQLite store: {w:?} at 64 tasks ≥ 2× tower-sessions' SQLite store"),
            ),
        );
    }
    out
}

/// The PostgreSQL store's targets: W1 and W2 ≥ 1.5× tower-sessions'
/// PostgreSQL store and W3 ≥ 1.0× it (at every concurrency measured),
/// and at 1 task every workload ≥ 0.9× the raw sqlx statements doing the
/// same work.
fn postgres_targets(r: &Results) -> Vec<TargetRow> {
    use Workload::{W1, W2, W3};
    let mut out = Vec::new();
    let mut tasks = r.config.tasks.clone();
    tasks.sort_unstable();
    tasks.dedup();
    for (w, goal) in [(W1, 1.5), (W2, 1.5), (W3, 1.0)] {
        for &t in &tasks {
            let target = RatioTarget {
                b: Backend::Postgres,
                w,
                tasks: t,
                n: "ours-postgres",
                d: "ts-postgres",
                goal,
            };
            out.extend(target.row(
                r,
                format!(
                    "PostgreSQL store: {w:?} at {t} task{} ≥ {goal:.1}× tower-sessions' \
                     PostgreSQL store",
                    if t == 1 { "" } else { "s" }
                ),
            ));
        }
    }
    for w in [W1, W2, W3] {
        let target = RatioTarget {
            b: Backend::Postgres,
            w,
            tasks: 1,
            n: "ours-postgres",
            d: "raw-postgres",
            goal: 0.9,
        };
        out.extend(target.row(
            r,
            format!("PostgreSQL store: {w:?} at 1 task ≥ 0.9× raw sqlx statements"),
        ));
    }
    out
}

/// Commands the Redis server executed per operation of a system (from
/// its counters), e.g. `evalsha 1.00, get 2.00, set 1.00`.
fn redis_commands_per_op(c: &Cell, system: &str) -> Option<String> {
    let runs = c.system(system)?;
    let attempts = runs.attempts();
    if attempts == 0 || runs.server_commands.is_empty() {
        return None;
    }
    let per = |n: u64| n as f64 / attempts as f64;
    let calls: Vec<String> = runs
        .server_commands
        .iter()
        .filter(|(k, v)| {
            k.as_str() != CLIENT_COMMANDS && !k.ends_with(USEC_SUFFIX) && per(**v) >= 0.005
        })
        .map(|(k, v)| format!("{k} {:.2}", per(*v)))
        .collect();
    let usec: Vec<String> = runs
        .server_commands
        .iter()
        .filter_map(|(k, v)| Some((k.strip_suffix(USEC_SUFFIX)?, per(*v))))
        .filter(|(_, us)| *us >= 0.005)
        .map(|(k, us)| format!("{k} {us:.2}"))
        .collect();
    Some(format!("{} | {}", calls.join(", "), usec.join(", ")))
}

/// The results tables (one per backend), the memory table and the
/// targets, with headings at `level` (`"###"`, ...).
fn tables(r: &Results, level: &str) -> String {
    let mut out = String::new();
    for (heading, t) in [
        ("Issue 7 targets", targets(r)),
        ("PostgreSQL store targets", postgres_targets(r)),
    ] {
        if t.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{level} {heading}\n");
        let _ = writeln!(out, "| target | measured | verdict |\n|---|---:|---|");
        for (text, measured, verdict) in t {
            let _ = writeln!(out, "| {text} | {measured} | {verdict} |");
        }
        let _ = writeln!(
            out,
            "\nRatios are of the medians of runs interleaved in this one invocation.\n"
        );
    }
    for backend in Backend::ALL {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.backend == backend).collect();
        let Some(first) = cells.first() else {
            continue;
        };
        let systems: Vec<&str> = first.runs.iter().map(|s| s.system.as_str()).collect();
        let _ = writeln!(
            out,
            "{level} {} — ops/s, median of {} runs\n",
            backend.title(),
            r.config.reps
        );
        let mut header = String::from("| workload | tasks |");
        let mut rule = String::from("|---|---:|");
        for s in &systems {
            let _ = write!(header, " {} |", names(s).0);
            rule.push_str("---:|");
        }
        for (n, d) in ratios(backend) {
            let _ = write!(header, " {} / {} |", names(n).0, names(d).0);
            rule.push_str("---:|");
        }
        header.push_str(" errors |");
        rule.push_str("---:|");
        let _ = writeln!(out, "{header}\n{rule}");
        for c in &cells {
            let _ = write!(out, "| {} | {} |", c.workload.label(), c.tasks);
            for s in &systems {
                match c.system(s) {
                    Some(runs) => {
                        let _ = write!(out, " {} |", format_rate(runs.median()));
                    }
                    None => out.push_str(" - |"),
                }
            }
            for (n, d) in ratios(backend) {
                match c.ratio(n, d) {
                    Some(x) => {
                        let _ = write!(out, " {x:.2}× |");
                    }
                    None => out.push_str(" - |"),
                }
            }
            let errors: u64 = c.runs.iter().map(|s| s.errors()).sum();
            let _ = writeln!(out, " {errors} |");
        }
        let legend: Vec<String> = systems
            .iter()
            .map(|s| format!("{} = {}", names(s).0, names(s).1))
            .collect();
        let _ = writeln!(out, "\n{}.\n", legend.join("; "));
        if backend == Backend::Memory && !r.memory.is_empty() {
            let n = r.memory.first().map_or(0, |m| m.sessions);
            let _ = writeln!(
                out,
                "{level} Memory per session (in-process stores)\n\n\
                 Resident-set growth of a fresh process inserting {} sessions, divided by \
                 {}; median of {} processes. Payload: ≈{} bytes of JSON per session.\n",
                format_rate(n as f64),
                format_rate(n as f64),
                r.config.memory_reps,
                payload_bytes(r, "ours-memory").unwrap_or(0),
            );
            let _ = writeln!(
                out,
                "| store | bytes / session | RSS growth | sessions found after |\n|---|---:|---:|---:|"
            );
            for m in &r.memory {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} MiB | {} |",
                    names(&m.system).1,
                    format_rate(m.bytes_per_session()),
                    m.rss_after.saturating_sub(m.rss_before) as f64 / (1024.0 * 1024.0),
                    format_rate(m.entries as f64)
                );
            }
            out.push('\n');
        }
        if backend.server().is_some() {
            let mut lines = Vec::new();
            for c in cells.iter().filter(|c| c.tasks == 64) {
                for s in &systems {
                    if let Some(text) = redis_commands_per_op(c, s) {
                        lines.push(format!(
                            "| {} | {} | {text} |",
                            c.workload.label(),
                            names(s).0
                        ));
                    }
                }
            }
            if !lines.is_empty() {
                let _ = writeln!(
                    out,
                    "Commands the Redis server executed per operation during the 64-task runs \
                     (`INFO commandstats` deltas over every operation, warm-up included). \
                     Calls made inside a Lua script are counted too: each `evalsha` is one \
                     round trip, and the commands it ran are listed beside it. Server time \
                     is the µs of the server's one thread inside each command per operation \
                     (a script's time includes the commands it ran; reading requests and \
                     writing replies is not counted).\n\n\
                     | workload | system | commands per op | server µs per op |\n|---|---|---|---|\n{}\n",
                    lines.join("\n")
                );
            }
        }
    }
    out
}

fn payload_bytes(r: &Results, system: &str) -> Option<u64> {
    r.ready
        .iter()
        .find(|x| x.system == system)
        .map(|x| x.payload_bytes)
}

/// What each system does per operation.
fn per_op() -> String {
    let sessions = format_rate(SESSIONS as f64);
    format!(
        "All systems: the same {sessions} pre-populated sessions (bound to a user; data a JSON \
map of 8 fields, ≈200 bytes: user id, 43-char CSRF token, display name, locale, three \
booleans, last-seen timestamp); keys random-looking (our stores: 32-byte storage keys; \
tower-sessions: 128-bit ids). Every operation checks its result: a load that finds nothing, \
a save or insert not acknowledged, every store or driver error is counted as an error and \
listed, never dropped; only successful operations completed inside the window count.

Keys: W3 uniformly random over all {sessions} sessions; W1 uniformly random over the task's \
own stripe (`index % tasks == task`), so two tasks never work on one session at once (our \
stores' compare-and-set would otherwise report expected conflicts, and the others would \
silently lose updates) — the same for every system, and any conflict is counted as an \
error; W2 a fresh, never-used index per operation. Every system of a repetition gets the \
same seed, hence the same key sequence.

- **ours** (each of our stores, through the `SessionStore` trait only): W3 `load` → decode \
the stored record (parse the data into a map: JSON for Redis, SQLite and PostgreSQL, \
MessagePack in memory); W1 `load`, set `last_seen` and `expires_at` (now + 24 h), `save` = \
compare-and-set on the loaded version (encode, per-user index kept in step); W2 `create` of a copy of a template record with a fresh \
key and user (insert-if-absent, per-user index entry).
  Our stores are being worked on; what they do inside is their own documentation's \
business, and for Redis the commands each operation cost are measured in this run (table \
above).
  - memory: `MemoryStore::new` with a {} GiB bound (never reached); moka underneath, \
the data held as MessagePack in one block per session that a save rewrites in place \
under the key's lock (load decodes it, save encodes it).
  - Redis: `RedisStore::builder(url).prefix(..).connect()`, default timeouts; one \
multiplexed `ConnectionManager` on the same unix socket.
  - SQLite: `SqliteStore::open` defaults — WAL, `synchronous = NORMAL`, 5 s busy timeout, \
a pool of at most 4 connections; writes go through the store's single writer, which \
commits the writes waiting for it together, a few multi-row statements per batch (group \
commit); concurrent loads are read together, one `SELECT … IN` per batch.
  - PostgreSQL: `PostgresOptions::new(url).table(..).max_connections({pool}).migrate(true)\
.connect()`, other options at their defaults: a pool of {pool} connections, the same size \
as tower-sessions' and the raw baseline's (a pooled connection is pinged before use only \
after a second idle); the store installs its own table.
- **tower-sessions** (`tower_sessions_core::SessionStore` only): W3 `load(&id)`; W1 \
`load`, insert `last_seen` into the data map, set `expiry_date`, `save(&record)` (last \
writer wins, no version); W2 `create(&mut record)` of a template copy with a fresh id.
  - memory: `Mutex<HashMap<Id, Record>>`; load and save clone the whole `Record` (a \
`HashMap<String, serde_json::Value>`) under the one lock.
  - moka: `future::Cache<Id, Record>` bounded at {} entries (never reached), per-entry \
expiry; load clones the `Record`, save inserts a clone; create checks `contains_key` first.
  - Redis: fred 10, one `Client` (one connection, pipelined) on the same unix socket: load \
`GET` + MessagePack decode; save `SET … EXAT XX` of the MessagePack-encoded record; \
create `SET … NX EXAT` (1 round trip each).
  - SQLite: sqlx 0.8, a pool of 4 connections opened with WAL, `synchronous = NORMAL` and a \
5 s busy timeout (set on the connect options: the same durability as ours); load one \
`SELECT data … WHERE id AND expiry_date > now` + MessagePack decode; save one upsert \
(`INSERT … ON CONFLICT(id) DO UPDATE`) on a pooled connection; create `BEGIN`, `INSERT OR \
ABORT`, `COMMIT`.
  - PostgreSQL: sqlx 0.8, a `PgPool` of {pool} connections, otherwise at sqlx's defaults \
as in tower-sessions' docs (`PgPool::connect`): a ping before every acquire \
(`test_before_acquire`), one more round trip per pooled statement or transaction (ours \
pings only a connection idle for a second or more); `PostgresStore::new(pool)` and \
`migrate()` (table `tower_sessions.session`: `id text` primary key, `data bytea`, \
`expiry_date timestamptz`); load one `SELECT data … WHERE id AND expiry_date > now` + \
MessagePack decode; save one upsert (`INSERT … ON CONFLICT (id) DO UPDATE`) on a pooled \
connection; create `BEGIN`, `SELECT exists(…)` on the id, the upsert, `COMMIT` (4 round \
trips on one connection).
- **raw** baselines: the same storage work with no session logic — no decode on read, no \
encode on write (the bytes are encoded once at setup), no version, no user index.
  - moka: `future::Cache<[u8; 32], Arc<[u8]>>` (a cache-wide 24 h time-to-live, bounded \
at {} entries): W3 `get`, W1 `get` + `insert`, W2 `insert`.
  - Redis: the `redis` crate on one `MultiplexedConnection`: W3 `GET`, W1 `GET` + `SET … PX`, \
W2 `SET … NX PX` (1, 2, 1 round trips).
  - SQLite: sqlx 0.9 on the pool of a `SqliteStore` opened on its own file (same table, same \
settings): W3 `SELECT data`, W1 `SELECT data` + `UPDATE data, expires_at`, W2 plain `INSERT`, \
each an autocommit statement on a pooled connection.
  - PostgreSQL: sqlx 0.9 on the pool of a `PostgresStore` connected like ours to a table \
of its own (same table shape and indexes, installed and pre-populated by that store; same \
pool settings, {pool} connections, no ping before use under load): W3 `SELECT data::text`, \
W1 `SELECT data::text` + `UPDATE data = $2::json, expires_at`, W2 plain `INSERT`, each an \
autocommit statement on a pooled connection.",
        MEMORY_STORE_BYTES >> 30,
        format_rate(MOKA_ENTRIES as f64),
        format_rate(MOKA_ENTRIES as f64),
        pool = POSTGRES_POOL,
    )
}

fn setup_paragraph(r: &Results) -> String {
    let c = &r.config;
    let mut out = format!(
        "Per run: {:.1} s warm-up, then a {:.1} s measured window, at 1 and 64 tokio tasks \
         (one 2-thread tokio runtime per worker process). {} repetitions; in each, every \
         system of a backend runs once, one at a time, in rotating order, so drift hits all \
         alike. Each system lives in its own long-lived worker process (one per system, \
         started and pre-populated once per backend), measured by the same loop. ",
        c.warmup_ms as f64 / 1000.0,
        c.window_ms as f64 / 1000.0,
        c.reps
    );
    if let Some(v) = &r.redis_version {
        let _ = write!(
            out,
            "Redis: redis-server {v} started by the program on a unix socket in a temporary \
             directory (no TCP port, no persistence), shared by the Redis systems under \
             different keys, killed at the end. "
        );
    }
    if let Some(v) = &r.valkey_version {
        let _ = write!(
            out,
            "Valkey: valkey-server {v}, started and shared the same way by the same three \
             systems. "
        );
    }
    out.push_str(
        "SQLite: one database file per system in a temporary directory, WAL and \
         `synchronous = NORMAL` on both ours and tower-sessions'. ",
    );
    if let Some(server) = &r.postgres_server {
        let _ = write!(
            out,
            "PostgreSQL: a throwaway cluster the program creates (`initdb`) and starts \
             (`pg_ctl`) in a temporary directory with our store's test harness \
             (`session_store_postgres::testing::Cluster`), listening on a unix socket only, \
             shared by the three PostgreSQL systems under different tables, stopped and \
             removed at the end ({server}); every PostgreSQL system, ours, tower-sessions' \
             and the raw one, gets a pool of the same size, {POSTGRES_POOL} connections. "
        );
    }
    let _ = write!(
        out,
        "Payload bytes as each system stores them: {}.",
        r.ready
            .iter()
            .map(|x| format!("{} {}", x.system, x.payload_bytes))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

fn details(r: &Results) -> String {
    let mut out =
        String::from("<details><summary>Every run, in ops/s, in the order run</summary>\n\n");
    for c in &r.cells {
        let _ = writeln!(
            out,
            "- **{}, {}, {} tasks**",
            c.backend.title(),
            c.workload.label(),
            c.tasks
        );
        for s in &c.runs {
            let runs: Vec<String> = s
                .replies
                .iter()
                .map(|x| format_rate(x.ops_per_sec()))
                .collect();
            let _ = writeln!(
                out,
                "  - {}: {} (errors {})",
                s.system,
                runs.join(", "),
                s.errors()
            );
        }
        for (n, d) in ratios(c.backend) {
            let paired: Vec<String> = c.paired(n, d).iter().map(|x| format!("{x:.2}")).collect();
            if !paired.is_empty() {
                let _ = writeln!(out, "  - {n} / {d}, per repetition: {}", paired.join(", "));
            }
        }
    }
    out.push_str("\n</details>\n\n");
    let mut errors = String::new();
    for c in &r.cells {
        for s in &c.runs {
            let mut msgs = std::collections::BTreeMap::new();
            for reply in &s.replies {
                for (m, n) in &reply.messages {
                    *msgs.entry(m.clone()).or_insert(0u64) += n;
                }
            }
            for (m, n) in msgs {
                let _ = writeln!(
                    errors,
                    "- {}, {}, {} tasks, {}: {n} × `{m}`",
                    c.backend.title(),
                    c.workload.label(),
                    c.tasks,
                    s.system
                );
            }
        }
    }
    if errors.is_empty() {
        out.push_str("Errors: none — no operation failed, in any run, warm-ups included.\n");
    } else {
        out.push_str("Errors (every failed operation, warm-ups included):\n\n");
        out.push_str(&errors);
    }
    out
}

fn markdown(r: &Results) -> String {
    let mut out = String::from("# Benchmarks: session stores side by side\n\n");
    let _ = writeln!(
        out,
        "Generated on {} by\n\n```sh\n{}\n```\n\n(took {:.0} s{}).\n",
        today(),
        r.config.command,
        r.elapsed_secs,
        if r.config.quick {
            "; `--quick`: short windows, few repetitions — indicative only"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "**Machine:** {}.\n", r.machine);
    let _ = writeln!(out, "**Setup:** {}\n", setup_paragraph(r));
    let _ = writeln!(out, "![ops/s per system](results.svg)\n");
    out.push_str(&tables(r, "##"));
    let _ = writeln!(
        out,
        "## What each system does per operation\n\n{}\n",
        per_op()
    );
    let _ = writeln!(out, "## Every run\n\n{}", details(r));
    out
}

fn readme_block(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{README_BEGIN}");
    let _ = writeln!(
        out,
        "Our stores side by side with [tower-sessions](https://crates.io/crates/tower-sessions)' \
         stores and raw clients doing the same storage work, in one run on one machine, \
         same payload. Regenerate everything below (table, chart, `docs/bench/results.md`) \
         with one command (it builds the separate tower-sessions sqlx worker and starts \
         its own redis-server and valkey-server, the latter from `VALKEY_SERVER` or `PATH`, \
         as `scripts/test` installs it, and a throwaway PostgreSQL cluster with `initdb` \
         and `pg_ctl`; about 20 minutes on 2 cores after the first build, `-- --quick` \
         for a 4-minute smoke run, `-- --help` for the rest):\n\n```sh\n{}\n```\n",
        r.config.command
    );
    let _ = writeln!(
        out,
        "Measured on {} ({}). Workloads over {} pre-populated sessions: **W1** request \
         cycle (load, change one field, save), **W2** create, **W3** load; {} runs each, \
         medians; ratios are of runs interleaved in the same invocation.\n",
        today(),
        r.machine,
        format_rate(SESSIONS as f64),
        r.config.reps
    );
    let _ = writeln!(out, "![ops/s per system](docs/bench/results.svg)\n");
    out.push_str(&tables(r, "###"));
    let _ = writeln!(
        out,
        "### What each system does per operation\n\n{}\n\nEvery run, the error messages and \
         the setup: [docs/bench/results.md](docs/bench/results.md).",
        per_op()
    );
    let _ = write!(out, "{README_END}");
    out
}

/// Color of a system's bars.
fn color(system: &str) -> &'static str {
    match system {
        s if s.starts_with("ours") => "#2563eb",
        "ts-moka" | "ts-redis" | "ts-sqlite" | "ts-postgres" => "#ea7a1b",
        "ts-memory" => "#f5b041",
        _ => "#9ca3af",
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart, one panel per backend, one group of bars per
/// (workload, tasks), each panel on its own linear scale.
pub(crate) fn svg(r: &Results) -> String {
    const W: f64 = 920.0;
    const LABEL_W: f64 = 190.0;
    const BAR_H: f64 = 13.0;
    const BAR_GAP: f64 = 2.0;
    const GROUP_GAP: f64 = 10.0;
    const PANEL_HEAD: f64 = 46.0;
    let bar_max = W - LABEL_W - 110.0;
    let mut body = String::new();
    let mut y = 40.0;
    for backend in Backend::ALL {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.backend == backend).collect();
        let Some(first) = cells.first() else {
            continue;
        };
        let systems: Vec<&str> = first.runs.iter().map(|s| s.system.as_str()).collect();
        let max = cells
            .iter()
            .flat_map(|c| c.runs.iter().map(|s| s.median()))
            .fold(0.0, f64::max)
            .max(1.0);
        let _ = writeln!(
            body,
            r#"<text x="10" y="{:.0}" class="h">{} — ops/s (median), linear scale per panel</text>"#,
            y + 16.0,
            backend.title()
        );
        // Legend.
        let mut lx = 10.0;
        for s in &systems {
            let label = xml_escape(chart_name(s));
            let _ = writeln!(
                body,
                r#"<rect x="{lx:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}" class="l">{label}</text>"#,
                y + 25.0,
                color(s),
                lx + 14.0,
                y + 34.0
            );
            lx += 14.0 + label.chars().count() as f64 * 6.0 + 18.0;
        }
        y += PANEL_HEAD;
        for c in &cells {
            let group_h = systems.len() as f64 * (BAR_H + BAR_GAP);
            let _ = writeln!(
                body,
                r#"<text x="10" y="{:.0}" class="g">{} · {} task{}</text>"#,
                y + group_h / 2.0 + 4.0,
                c.workload.label(),
                c.tasks,
                if c.tasks == 1 { "" } else { "s" }
            );
            for s in &systems {
                let v = c.system(s).map_or(0.0, |x| x.median());
                let errors = c.system(s).map_or(0, |x| x.errors());
                let w = (v / max * bar_max).max(1.0);
                let _ = writeln!(
                    body,
                    r#"<rect x="{LABEL_W:.0}" y="{y:.1}" width="{w:.1}" height="{BAR_H:.0}" fill="{}"><title>{}: {} ops/s</title></rect><text x="{:.1}" y="{:.1}" class="v">{}{}</text>"#,
                    color(s),
                    xml_escape(s),
                    format_rate(v),
                    LABEL_W + w + 4.0,
                    y + BAR_H - 3.0,
                    format_rate(v),
                    if errors > 0 {
                        format!(" ({errors} errors)")
                    } else {
                        String::new()
                    }
                );
                y += BAR_H + BAR_GAP;
            }
            y += GROUP_GAP;
        }
        y += 14.0;
    }
    let h = y + 10.0;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0}" height="{h:.0}" viewBox="0 0 {W:.0} {h:.0}" font-family="Helvetica, Arial, sans-serif">
<style>.t{{font-size:16px;font-weight:bold}}.h{{font-size:14px;font-weight:bold}}.l{{font-size:11px}}.g{{font-size:12px}}.v{{font-size:11px}}</style>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" class="t">Session stores: ops/s at 1 and 64 tasks ({} runs each, median) — {}</text>
{body}</svg>
"#,
        r.config.reps,
        today()
    )
}

/// Writes `results.md`, `results.svg` and the README block.
pub(crate) fn write(r: &Results) -> Result<(), BoxError> {
    std::fs::create_dir_all(&r.config.out)?;
    let md = markdown(r);
    let md_path = r.config.out.join("results.md");
    let svg_path = r.config.out.join("results.svg");
    std::fs::write(&md_path, &md)?;
    std::fs::write(&svg_path, svg(r))?;
    std::fs::write(
        r.config.out.join("results.json"),
        serde_json::to_string_pretty(r)?,
    )?;
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    if let Some(readme) = &r.config.readme {
        let text = std::fs::read_to_string(readme)?;
        match (text.find(README_BEGIN), text.find(README_END)) {
            (Some(a), Some(b)) if a < b => {
                let mut new = String::with_capacity(text.len());
                new.push_str(&text[..a]);
                new.push_str(&readme_block(r));
                new.push_str(&text[b + README_END.len()..]);
                std::fs::write(readme, new)?;
                eprintln!("updated the Benchmarks block of {}", readme.display());
            }
            _ => eprintln!(
                "{} has no {README_BEGIN} … {README_END} block: README not updated",
                readme.display()
            ),
        }
    }
    println!("{md}");
    Ok(())
}

/// A one-line description of this machine (CPU model where Linux tells,
/// logical CPUs, OS and architecture), for the report's header.
pub(crate) fn machine_description() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        });
    let model = model.unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{model}, {cpus} logical CPUs available, {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn format_rate(rate: f64) -> String {
    let whole = rate.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Config, MemoryReply, SystemRuns};
    use crate::proto::{Ready, Reply};

    fn reply(ops: u64, errors: u64) -> Reply {
        let mut r = Reply {
            ops,
            errors,
            attempts: ops + errors,
            secs: 1.0,
            ..Reply::default()
        };
        if errors > 0 {
            r.messages.insert("boom".to_owned(), errors);
        }
        r
    }

    fn results() -> Result<Results, BoxError> {
        let mut cells = Vec::new();
        for backend in Backend::ALL {
            for workload in Workload::RUN_ORDER {
                for tasks in [1, 64] {
                    let runs = backend
                        .systems()
                        .iter()
                        .enumerate()
                        .map(|(i, s)| SystemRuns {
                            system: (*s).to_owned(),
                            replies: vec![reply(1000 * (i as u64 + 1), u64::from(i == 1)); 3],
                            server_commands: Default::default(),
                        })
                        .collect();
                    cells.push(Cell {
                        backend,
                        workload,
                        tasks,
                        runs,
                    });
                }
            }
        }
        Ok(Results {
            config: Config::parse(&[])?.ok_or("no config")?,
            machine: "test machine".to_owned(),
            redis_version: Some("7.0".to_owned()),
            valkey_version: Some("8.1.8".to_owned()),
            postgres_server: Some("PostgreSQL 15.14, `fsync` on".to_owned()),
            ready: vec![Ready {
                system: "ours-memory".to_owned(),
                sessions: SESSIONS,
                payload_bytes: 219,
                populate_secs: 0.1,
            }],
            memory: vec![MemoryReply {
                system: "ours-memory".to_owned(),
                sessions: 1000,
                entries: 1000,
                rss_before: 1_000_000,
                rss_after: 1_600_000,
            }],
            cells,
            elapsed_secs: 1.0,
        })
    }

    #[test]
    fn report_has_every_table_target_and_error() -> Result<(), BoxError> {
        let r = results()?;
        let md = markdown(&r);
        for backend in Backend::ALL {
            assert!(md.contains(backend.title()), "{}", backend.title());
        }
        // ours / ts-moka = 1000 / 2000.
        assert!(md.contains("| 0.50× |"), "{md}");
        assert!(
            md.contains("≤ 650 bytes per session | 600 bytes | **met**"),
            "{md}"
        );
        assert!(md.contains("missed"), "{md}");
        assert!(md.contains("3 × `boom`"), "{md}");
        // ours / ts-postgres = 1000 / 2000, at both task counts; ours /
        // raw = 1000 / 3000 at 1 task only.
        assert!(
            md.contains("### PostgreSQL store targets")
                || md.contains("## PostgreSQL store targets")
        );
        assert!(
            md.contains("| PostgreSQL store: W1 at 64 tasks ≥ 1.5× tower-sessions' PostgreSQL store | 0.50× | missed: 67% short (needs 3.00× more) |"),
            "{md}"
        );
        assert!(
            md.contains("| PostgreSQL store: W3 at 1 task ≥ 0.9× raw sqlx statements | 0.33× |"),
            "{md}"
        );
        assert!(
            md.contains("a pool of the same size, 10 connections"),
            "{md}"
        );
        let block = readme_block(&r);
        assert!(block.starts_with(README_BEGIN) && block.ends_with(README_END));
        assert!(block.contains("docs/bench/results.svg") && block.contains("```sh"));
        Ok(())
    }

    #[test]
    fn chart_is_well_formed_svg() -> Result<(), BoxError> {
        let svg = svg(&results()?);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), svg.matches("fill=").count());
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        Ok(())
    }

    #[test]
    fn medians_and_dates() {
        assert_eq!(crate::driver::median(vec![]), 0.0);
        assert_eq!(crate::driver::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(crate::driver::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(today().len(), 10);
    }
}
