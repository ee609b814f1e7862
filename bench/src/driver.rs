//! The driver: builds the separate tower-sessions sqlx worker, starts
//! Redis, Valkey and PostgreSQL, runs the workers interleaved, and writes
//! the report.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use session_store_redis::testing::{RedisServer, Server, server_version};

use crate::postgres;
use crate::proto::{Ready, Reply, Request, Workload};
use crate::report;
use crate::systems::BoxError;

/// The workspace root (this crate is `bench/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The storage backends, each run as one group of systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Backend {
    /// In-process stores.
    Memory,
    /// Redis.
    Redis,
    /// Valkey: the same Redis systems on a `valkey-server`.
    Valkey,
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    pub(crate) const ALL: [Backend; 5] = [
        Backend::Memory,
        Backend::Redis,
        Backend::Valkey,
        Backend::Sqlite,
        Backend::Postgres,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
            Backend::Valkey => "valkey",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Backend::Memory => "In-process (memory)",
            Backend::Redis => "Redis",
            Backend::Valkey => "Valkey",
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The server this backend's systems talk to, for Redis and Valkey.
    pub(crate) fn server(self) -> Option<Server> {
        match self {
            Backend::Redis => Some(Server::Redis),
            Backend::Valkey => Some(Server::Valkey),
            Backend::Memory | Backend::Sqlite | Backend::Postgres => None,
        }
    }

    /// The systems of this backend, ours first, then tower-sessions',
    /// then the raw baseline.
    pub(crate) fn systems(self) -> &'static [&'static str] {
        match self {
            Backend::Memory => &["ours-memory", "ts-moka", "ts-memory", "raw-moka"],
            Backend::Redis => &["ours-redis", "ts-redis", "raw-redis"],
            Backend::Valkey => &["ours-valkey", "ts-valkey", "raw-valkey"],
            Backend::Sqlite => &["ours-sqlite", "ts-sqlite", "raw-sqlite"],
            Backend::Postgres => &["ours-postgres", "ts-postgres", "raw-postgres"],
        }
    }

    /// Whether this backend's systems include one of tower-sessions' sqlx
    /// stores, which run in the separate `bench/tower-sessions-sqlx`
    /// worker.
    pub(crate) fn needs_ts_sqlx(self) -> bool {
        matches!(self, Backend::Sqlite | Backend::Postgres)
    }
}

/// The in-process systems whose memory per session is measured.
pub(crate) const IN_PROCESS: [&str; 4] = ["ours-memory", "ts-moka", "ts-memory", "raw-moka"];

/// The settings of one invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    pub(crate) out: PathBuf,
    pub(crate) readme: Option<PathBuf>,
    pub(crate) reps: usize,
    pub(crate) warmup_ms: u64,
    pub(crate) window_ms: u64,
    pub(crate) tasks: Vec<usize>,
    pub(crate) backends: Vec<Backend>,
    pub(crate) memory_sessions: u64,
    pub(crate) memory_reps: usize,
    pub(crate) quick: bool,
    /// `--render FILE`: measure nothing, re-render a saved `results.json`.
    #[serde(skip)]
    pub(crate) render: Option<PathBuf>,
    /// The command line that reproduces this run, for the report.
    pub(crate) command: String,
}

const USAGE: &str = "usage: cargo run --release -p session-bench -- [options]

  --quick            2 repetitions, 0.2 s warm-up, 0.5 s window, 50,000 sessions
                     for the memory measurement; writes to target/bench/ and
                     leaves the README alone unless --out is given
  --reps N           repetitions per system (default 5)
  --warmup S         warm-up seconds before each window (default 0.5)
  --seconds S        measured window in seconds (default 1.5)
  --tasks LIST       concurrency levels (default 1,64)
  --only LIST        backends to run: memory,redis,valkey,sqlite,postgres
                     (default all; valkey needs VALKEY_SERVER or valkey-server
                     on PATH, which scripts/test installs; postgres needs
                     PostgreSQL's initdb and pg_ctl, in PG_BIN, on PATH or
                     in /usr/lib/postgresql/*/bin, run as user postgres
                     when root)
  --memory-sessions N  sessions inserted for bytes/session (default 200000;
                     0 skips the memory measurement)
  --out DIR          where results.md and results.svg go (default docs/bench)
  --no-readme        do not update the README's Benchmarks block
  --render FILE      measure nothing: re-render the tables, chart and README
                     block from a results.json an earlier run wrote
";

impl Config {
    pub(crate) fn parse(argv: &[String]) -> Result<Option<Self>, BoxError> {
        let root = workspace_root();
        let quick = argv.iter().any(|a| a == "--quick");
        let mut c = Config {
            out: root.join(if quick { "target/bench" } else { "docs/bench" }),
            readme: (!quick).then(|| root.join("README.md")),
            reps: if quick { 2 } else { 5 },
            warmup_ms: if quick { 200 } else { 500 },
            window_ms: if quick { 500 } else { 1500 },
            tasks: vec![1, 64],
            backends: Backend::ALL.to_vec(),
            memory_sessions: if quick { 50_000 } else { 200_000 },
            memory_reps: if quick { 1 } else { 3 },
            quick,
            render: None,
            command: String::new(),
        };
        let mut no_readme = false;
        let secs_ms = |flag: &str, v: &str| -> Result<u64, BoxError> {
            let s: f64 = v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))?;
            if !(s.is_finite() && s >= 0.0) {
                return Err(format!("{flag} {v:?}: not a duration").into());
            }
            Ok((s * 1000.0).round() as u64)
        };
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--quick" => {}
                "--reps" => c.reps = value()?.parse()?,
                "--warmup" => c.warmup_ms = secs_ms(flag, &value()?)?,
                "--seconds" => c.window_ms = secs_ms(flag, &value()?)?,
                "--tasks" => {
                    c.tasks = value()?
                        .split(',')
                        .map(|t| t.trim().parse::<usize>())
                        .collect::<Result<_, _>>()?;
                }
                "--only" => {
                    let list = value()?;
                    c.backends = Vec::new();
                    for name in list.split(',') {
                        let b = Backend::ALL
                            .into_iter()
                            .find(|b| b.name() == name.trim())
                            .ok_or_else(|| format!("--only: unknown backend {name:?}"))?;
                        c.backends.push(b);
                    }
                }
                "--memory-sessions" => c.memory_sessions = value()?.parse()?,
                "--out" => {
                    c.out = PathBuf::from(value()?);
                }
                "--no-readme" => no_readme = true,
                "--render" => c.render = Some(PathBuf::from(value()?)),
                "-h" | "--help" => {
                    print!("{USAGE}");
                    return Ok(None);
                }
                other => return Err(format!("unknown argument {other:?}\n\n{USAGE}").into()),
            }
        }
        // The command as typed, minus --out / --no-readme (they change
        // where results go, not what is measured).
        let mut shown = vec![String::from("cargo run --release -p session-bench")];
        let mut skip = false;
        let mut rest = Vec::new();
        for a in argv {
            if skip {
                skip = false;
                continue;
            }
            match a.as_str() {
                "--out" => skip = true,
                "--no-readme" => {}
                _ => rest.push(a.clone()),
            }
        }
        if !rest.is_empty() {
            shown.push("--".to_owned());
            shown.extend(rest);
        }
        c.command = shown.join(" ");
        if c.reps == 0 || c.window_ms == 0 || c.tasks.is_empty() || c.tasks.contains(&0) {
            return Err("--reps, --seconds and --tasks must be positive".into());
        }
        if no_readme {
            c.readme = None;
        }
        Ok(Some(c))
    }
}

/// One `memory` process's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemoryReply {
    pub(crate) system: String,
    pub(crate) sessions: u64,
    /// Sessions found in the store afterwards (all of them, or the
    /// measurement is void).
    pub(crate) entries: u64,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
}

impl MemoryReply {
    pub(crate) fn bytes_per_session(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.sessions.max(1) as f64
    }
}

/// The runs of one system in one cell, in run order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SystemRuns {
    pub(crate) system: String,
    pub(crate) replies: Vec<Reply>,
    /// Redis only: calls per command the server executed during this
    /// system's runs (warm-ups included; `INFO commandstats` deltas),
    /// plus `(client commands)`, the delta of `total_commands_processed`.
    pub(crate) server_commands: BTreeMap<String, u64>,
}

impl SystemRuns {
    pub(crate) fn median(&self) -> f64 {
        median(self.replies.iter().map(Reply::ops_per_sec).collect())
    }

    pub(crate) fn errors(&self) -> u64 {
        self.replies.iter().map(Reply::total_errors).sum()
    }

    /// Every operation completed in these runs, warm-ups included.
    pub(crate) fn attempts(&self) -> u64 {
        self.replies.iter().map(|r| r.attempts).sum()
    }
}

/// The name under which `total_commands_processed` deltas are kept.
pub(crate) const CLIENT_COMMANDS: &str = "(client commands)";
/// Suffix of the counters of server time (µs) spent in a command.
pub(crate) const USEC_SUFFIX: &str = " usec";

/// One (backend, workload, tasks) comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cell {
    pub(crate) backend: Backend,
    pub(crate) workload: Workload,
    pub(crate) tasks: usize,
    pub(crate) runs: Vec<SystemRuns>,
}

impl Cell {
    pub(crate) fn system(&self, name: &str) -> Option<&SystemRuns> {
        self.runs.iter().find(|r| r.system == name)
    }

    /// Median ops/s of `n` over median ops/s of `d`.
    pub(crate) fn ratio(&self, n: &str, d: &str) -> Option<f64> {
        let (n, d) = (self.system(n)?.median(), self.system(d)?.median());
        (d > 0.0).then(|| n / d)
    }

    /// Per-repetition ratios of `n` over `d` (their runs were adjacent).
    pub(crate) fn paired(&self, n: &str, d: &str) -> Vec<f64> {
        match (self.system(n), self.system(d)) {
            (Some(n), Some(d)) => n
                .replies
                .iter()
                .zip(&d.replies)
                .map(|(a, b)| {
                    let b = b.ops_per_sec();
                    if b > 0.0 { a.ops_per_sec() / b } else { 0.0 }
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Everything one invocation measured (also written as `results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Results {
    pub(crate) config: Config,
    pub(crate) machine: String,
    pub(crate) redis_version: Option<String>,
    /// The version of the `valkey-server` the Valkey systems ran on.
    #[serde(default)]
    pub(crate) valkey_version: Option<String>,
    /// The PostgreSQL server the PostgreSQL systems ran on: its version
    /// and the settings that decide what a commit costs.
    #[serde(default)]
    pub(crate) postgres_server: Option<String>,
    pub(crate) ready: Vec<Ready>,
    pub(crate) memory: Vec<MemoryReply>,
    pub(crate) cells: Vec<Cell>,
    pub(crate) elapsed_secs: f64,
}

/// A worker process speaking the line protocol.
struct Worker {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(name: &str, mut cmd: Command) -> Result<Self, BoxError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting worker {name}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("worker without stdout")?);
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            stdout,
        })
    }

    fn read_line<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, BoxError> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(format!("worker {} exited ({status}) without answering", self.name).into());
        }
        serde_json::from_str(&line)
            .map_err(|e| format!("worker {}: bad line {line:?}: {e}", self.name).into())
    }

    fn run(&mut self, req: &Request) -> Result<Reply, BoxError> {
        let stdin = self.stdin.as_mut().ok_or("worker stdin closed")?;
        writeln!(stdin, "{}", serde_json::to_string(req)?)?;
        stdin.flush()?;
        self.read_line()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // End of input: the worker exits by itself.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Builds `bench/tower-sessions-sqlx` and returns its executable.
fn build_ts_sqlx_worker() -> Result<PathBuf, BoxError> {
    let manifest = workspace_root().join("bench/tower-sessions-sqlx/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building the tower-sessions sqlx worker ({})",
        manifest.display()
    );
    let output = Command::new(cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("building {} failed ({})", manifest.display(), output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "ts-sqlx-worker"
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    Err("cargo built no ts-sqlx-worker executable".into())
}

/// The servers a backend's workers talk to.
#[derive(Debug, Clone, Copy, Default)]
struct Urls<'a> {
    /// `unix:///path/to/redis.sock`, for Redis and Valkey.
    redis: Option<&'a str>,
    /// A sqlx `postgres://` URL, for PostgreSQL.
    postgres: Option<&'a str>,
}

fn worker_command(
    system: &str,
    ts_sqlx: Option<&Path>,
    urls: Urls<'_>,
    dir: &Path,
) -> Result<Command, BoxError> {
    if let Some(kind) = system.strip_prefix("ts-")
        && matches!(kind, "sqlite" | "postgres")
    {
        let exe = ts_sqlx.ok_or("the tower-sessions sqlx worker was not built")?;
        let mut cmd = Command::new(exe);
        cmd.arg(kind);
        if kind == "sqlite" {
            cmd.arg("--dir").arg(dir);
        } else {
            let url = urls.postgres.ok_or("no PostgreSQL server")?;
            cmd.args(["--url", url, "--pool", &postgres::POOL.to_string()]);
        }
        return Ok(cmd);
    }
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("worker").arg(system).arg("--dir").arg(dir);
    if let Some(url) = urls.redis {
        cmd.args(["--redis-url", url]);
    }
    if let Some(url) = urls.postgres {
        cmd.args(["--pg-url", url]);
    }
    Ok(cmd)
}

fn measure_memory(config: &Config) -> Result<Vec<MemoryReply>, BoxError> {
    let mut out = Vec::new();
    if config.memory_sessions == 0 {
        return Ok(out);
    }
    let exe = std::env::current_exe()?;
    for system in IN_PROCESS {
        let mut replies = Vec::new();
        for _ in 0..config.memory_reps.max(1) {
            let output = Command::new(&exe)
                .args(["memory", system, &config.memory_sessions.to_string()])
                .stderr(Stdio::inherit())
                .output()?;
            if !output.status.success() {
                return Err(format!("memory {system} failed ({})", output.status).into());
            }
            let reply: MemoryReply = serde_json::from_slice(&output.stdout)?;
            eprintln!(
                "  memory  {system:<12} {:>7.0} bytes/session  ({} sessions, {} found after)",
                reply.bytes_per_session(),
                reply.sessions,
                reply.entries
            );
            replies.push(reply);
        }
        replies.sort_by(|a, b| a.bytes_per_session().total_cmp(&b.bytes_per_session()));
        if let Some(mid) = replies.get(replies.len() / 2) {
            out.push(mid.clone());
        }
    }
    Ok(out)
}

/// The server's counters: calls and µs per command (`INFO
/// commandstats`, the µs under `{command}{USEC_SUFFIX}`) and
/// `total_commands_processed` under [`CLIENT_COMMANDS`].
fn redis_counters(url: &str) -> Option<BTreeMap<String, u64>> {
    let path = url.strip_prefix("unix://")?;
    let output = Command::new("redis-cli")
        .args(["-s", path, "INFO", "stats", "commandstats"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(total) = line.strip_prefix("total_commands_processed:") {
            out.insert(CLIENT_COMMANDS.to_owned(), total.trim().parse().ok()?);
        } else if let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        {
            let field = |key: &str| -> Option<u64> {
                stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
            };
            out.insert(name.to_owned(), field("calls=")?);
            out.insert(format!("{name}{USEC_SUFFIX}"), field("usec=")?);
        }
    }
    Some(out)
}

/// The server's version, as `INFO server` tells it (Valkey's own, not
/// the `redis_version` it also reports).
fn redis_version(url: &str) -> Option<String> {
    server_version(url).ok().map(|(_, version)| version)
}

/// Runs one backend's systems: start the workers, then every cell,
/// interleaved.
fn run_backend(
    backend: Backend,
    config: &Config,
    ts_sqlx: Option<&Path>,
    urls: Urls<'_>,
    ready_out: &mut Vec<Ready>,
) -> Result<Vec<Cell>, BoxError> {
    let redis_url = urls.redis;
    let dir = tempfile::Builder::new()
        .prefix("session-bench-")
        .tempdir()?;
    let mut workers = Vec::new();
    for system in backend.systems() {
        let cmd = worker_command(system, ts_sqlx, urls, dir.path())?;
        workers.push(Worker::spawn(system, cmd)?);
    }
    for w in &mut workers {
        let ready: Ready = w.read_line()?;
        eprintln!(
            "  {:<12} ready: {} sessions pre-populated in {:.1} s, payload {} bytes",
            ready.system, ready.sessions, ready.populate_secs, ready.payload_bytes
        );
        ready_out.push(ready);
    }
    let mut cells = Vec::new();
    let n = workers.len();
    for (wi, workload) in Workload::RUN_ORDER.into_iter().enumerate() {
        for (ti, &tasks) in config.tasks.iter().enumerate() {
            let mut runs: Vec<SystemRuns> = workers
                .iter()
                .map(|w| SystemRuns {
                    system: w.name.clone(),
                    replies: Vec::new(),
                    server_commands: BTreeMap::new(),
                })
                .collect();
            for rep in 0..config.reps {
                let req = Request {
                    workload,
                    tasks,
                    warmup_ms: config.warmup_ms,
                    window_ms: config.window_ms,
                    seed: ((rep as u64) << 32) | ((wi as u64) << 16) | ti as u64,
                };
                // Rotate who goes first, so no system always follows the
                // same neighbour.
                for k in 0..n {
                    let i = (rep + k) % n;
                    let (Some(worker), Some(slot)) = (workers.get_mut(i), runs.get_mut(i)) else {
                        continue;
                    };
                    let before = redis_url.and_then(redis_counters);
                    let reply = worker.run(&req)?;
                    if let (Some(url), Some(before)) = (redis_url, before)
                        && let Some(after) = redis_counters(url)
                    {
                        for (cmd, calls) in after {
                            let old = before.get(&cmd).copied().unwrap_or(0);
                            // Our own `INFO` is not the system's.
                            let delta = calls.saturating_sub(old);
                            if cmd != "info" && delta > 0 {
                                let delta = if cmd == CLIENT_COMMANDS {
                                    delta.saturating_sub(1)
                                } else {
                                    delta
                                };
                                *slot.server_commands.entry(cmd).or_insert(0) += delta;
                            }
                        }
                    }
                    eprintln!(
                        "  {:<6} {:<16} {tasks:>2} tasks  rep {}/{}  {:<12} {:>10.0} ops/s  errors {}",
                        backend.name(),
                        workload.label(),
                        rep + 1,
                        config.reps,
                        worker.name,
                        reply.ops_per_sec(),
                        reply.total_errors()
                    );
                    slot.replies.push(reply);
                }
            }
            cells.push(Cell {
                backend,
                workload,
                tasks,
                runs,
            });
        }
    }
    drop(workers);
    Ok(cells)
}

/// The driver's entry point.
pub(crate) fn run(argv: &[String]) -> Result<(), BoxError> {
    let Some(config) = Config::parse(argv)? else {
        return Ok(());
    };
    if let Some(path) = &config.render {
        let mut results: Results = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        results.config.out = config.out;
        results.config.readme = config.readme;
        return report::write(&results);
    }
    let started = Instant::now();
    let ts_sqlx = if config.backends.iter().any(|b| b.needs_ts_sqlx()) {
        Some(build_ts_sqlx_worker()?)
    } else {
        None
    };
    let machine = report::machine();
    eprintln!("machine: {machine}");

    let memory = if config.backends.contains(&Backend::Memory) {
        eprintln!(
            "memory per session: {} sessions, fresh process per measurement",
            config.memory_sessions
        );
        measure_memory(&config)?
    } else {
        Vec::new()
    };

    let mut ready = Vec::new();
    let mut cells = Vec::new();
    let mut redis_version_seen = None;
    let mut valkey_version_seen = None;
    let mut postgres_server = None;
    for backend in config.backends.clone() {
        eprintln!("{}:", backend.title());
        if let Some(kind) = backend.server() {
            let dir = tempfile::Builder::new()
                .prefix("session-bench-redis-")
                .tempdir()?;
            let server =
                RedisServer::spawn_unix_of(kind, dir.path(), &dir.path().join("redis.sock"))?;
            let url = server.url();
            match kind {
                Server::Redis => redis_version_seen = redis_version(&url),
                Server::Valkey => valkey_version_seen = redis_version(&url),
            }
            let urls = Urls {
                redis: Some(&url),
                postgres: None,
            };
            cells.extend(run_backend(
                backend,
                &config,
                ts_sqlx.as_deref(),
                urls,
                &mut ready,
            )?);
            drop(server);
        } else if backend == Backend::Postgres {
            let server = postgres::start_server()?;
            let url = server.url();
            let described = postgres::describe(&url)?;
            eprintln!("  server: {described}");
            postgres_server = Some(described);
            let urls = Urls {
                redis: None,
                postgres: Some(&url),
            };
            cells.extend(run_backend(
                backend,
                &config,
                ts_sqlx.as_deref(),
                urls,
                &mut ready,
            )?);
            drop(server);
        } else {
            cells.extend(run_backend(
                backend,
                &config,
                ts_sqlx.as_deref(),
                Urls::default(),
                &mut ready,
            )?);
        }
    }
    let results = Results {
        config,
        machine,
        redis_version: redis_version_seen,
        valkey_version: valkey_version_seen,
        postgres_server,
        ready,
        memory,
        cells,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    report::write(&results)
}
