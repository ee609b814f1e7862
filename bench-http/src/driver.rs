//! The driver: starts a throwaway `redis-server`, one server process per
//! system, signs in the sessions, runs every workload interleaved, the
//! hot session, and writes the report.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use session_store_redis::testing::RedisServer;

use crate::BoxError;
use crate::load::{self, Counts, Hot, HotKind, Workload};
use crate::report;

/// Sessions signed in per system before the workloads; W1, W3 and W0
/// cycle over them.
pub(crate) const SESSIONS: usize = 1_000;

/// Connections of the hot session.
pub(crate) const HOT_CONNECTIONS: usize = 64;

/// The systems, in report order: the bare baseline, then per backend
/// ours and tower-sessions'.
pub(crate) const SYSTEMS: [&str; 7] = [
    "bare",
    "ours-memory",
    "ts-moka",
    "ours-redis",
    "ts-redis",
    "ours-sqlite",
    "ts-sqlite",
];

/// The backends, each with our system and tower-sessions'.
pub(crate) const PAIRS: [(&str, &str, &str); 3] = [
    ("memory", "ours-memory", "ts-moka"),
    ("Redis", "ours-redis", "ts-redis"),
    ("SQLite", "ours-sqlite", "ts-sqlite"),
];

/// The workspace root (this crate is `bench-http/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// How a run is sized.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `--quick`: one repetition, short windows.
    pub(crate) quick: bool,
    /// Repetitions of each (workload, connections, system).
    pub(crate) reps: usize,
    /// Connection counts.
    pub(crate) connections: Vec<usize>,
    /// Warm-up before each measured window.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) window: Duration,
    /// The hot session's window.
    pub(crate) hot_window: Duration,
    /// Where `results.md` and `results.svg` go.
    pub(crate) out: PathBuf,
}

impl Config {
    /// Parses the driver's flags.
    pub(crate) fn parse(args: &[String]) -> Result<Option<Self>, BoxError> {
        let mut quick = false;
        let mut out = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--out" => out = Some(PathBuf::from(it.next().ok_or("--out needs a folder")?)),
                "--help" | "-h" => return Ok(None),
                other => return Err(format!("unknown argument {other:?} (try --help)").into()),
            }
        }
        let root = workspace_root();
        Ok(Some(if quick {
            Config {
                quick,
                reps: 1,
                connections: vec![1, 64],
                warmup: Duration::from_millis(200),
                window: Duration::from_millis(800),
                hot_window: Duration::from_secs(1),
                out: out.unwrap_or_else(|| root.join("target/bench-http")),
            }
        } else {
            Config {
                quick,
                reps: 3,
                connections: vec![1, 64],
                warmup: Duration::from_millis(500),
                window: Duration::from_secs(3),
                hot_window: Duration::from_secs(3),
                out: out.unwrap_or_else(|| root.join("docs/bench-http")),
            }
        }))
    }
}

/// One measured window.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// The system.
    pub(crate) system: &'static str,
    /// The workload.
    pub(crate) workload: Workload,
    /// Connections.
    pub(crate) connections: usize,
    /// Repetition (from 1).
    pub(crate) rep: usize,
    /// What it counted.
    pub(crate) counts: Counts,
}

/// Everything a report needs.
#[derive(Debug)]
pub(crate) struct Results {
    /// The configuration.
    pub(crate) config: Config,
    /// Every measured window.
    pub(crate) runs: Vec<Run>,
    /// The hot session per system and kind.
    pub(crate) hot: Vec<(&'static str, HotKind, Hot)>,
    /// Builds (`rustc` processes) seen running during the measurements.
    pub(crate) busy_rustc: u64,
}

/// One server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn spawn(name: &str, mut cmd: Command) -> Result<Self, BoxError> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("server without stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("{name}: expected LISTENING ADDR, got {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `bench-http/tower-sessions-app` and returns its executable.
fn build_ts_app() -> Result<PathBuf, BoxError> {
    let manifest = workspace_root().join("bench-http/tower-sessions-app/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the tower-sessions app ({})", manifest.display());
    let output = Command::new(cargo)
        .args(["build", "--release", "--locked", "-j1", "--manifest-path"])
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
            && msg["target"]["name"] == "ts-http-app"
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    Err("cargo built no ts-http-app executable".into())
}

/// How many `rustc` processes are running (other builds distort the
/// numbers; the report says so).
fn rustc_count() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "rustc")
        })
        .count() as u64
}

/// The full run described in `main.rs`.
pub(crate) fn run(args: &[String]) -> Result<(), BoxError> {
    let Some(config) = Config::parse(args)? else {
        println!("{}", crate::USAGE);
        return Ok(());
    };
    let ts_app = build_ts_app()?;
    let dir = tempfile::Builder::new()
        .prefix("session-bench-http-")
        .tempdir()?;
    let redis = RedisServer::spawn_unix(dir.path(), &dir.path().join("redis.sock"))?;
    let redis_url = redis.url();
    let mut servers = Vec::new();
    for system in SYSTEMS {
        let mut cmd = if system.starts_with("ts-") {
            Command::new(&ts_app)
        } else {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.arg("serve");
            cmd
        };
        cmd.arg(system)
            .arg("--dir")
            .arg(dir.path())
            .args(["--redis-url", &redis_url]);
        servers.push((system, Server::spawn(system, cmd)?));
    }
    // The client's own runtime: two workers, like each server's.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(measure(&config, &servers))?;
    drop(servers);
    drop(redis);
    report::write(&results)
}

async fn measure(config: &Config, servers: &[(&'static str, Server)]) -> Result<Results, BoxError> {
    let mut cookies = Vec::new();
    for (system, server) in servers {
        let signed_in = load::sign_in(server.addr, SESSIONS, 64).await?;
        eprintln!(
            "{system}: {} sessions signed in at {}",
            signed_in.len(),
            server.addr
        );
        cookies.push(Arc::new(signed_in));
    }
    let mut runs = Vec::new();
    let mut busy_rustc = 0;
    let total = Workload::ALL.len() * config.connections.len() * config.reps * servers.len();
    for workload in Workload::ALL {
        for &connections in &config.connections {
            for rep in 0..config.reps {
                // Interleaved: every system once per repetition, the order
                // rotated from one repetition to the next.
                for k in 0..servers.len() {
                    let i = (k + rep) % servers.len();
                    let (system, server) = &servers[i];
                    let rustc = rustc_count();
                    busy_rustc = busy_rustc.max(rustc);
                    let counts = load::run(
                        server.addr,
                        workload,
                        connections,
                        Arc::clone(&cookies[i]),
                        config.warmup,
                        config.window,
                    )
                    .await?;
                    eprintln!(
                        "[{}/{total}] {} c={connections} rep {} {system}: {:.0}/s, {} non-2xx, {} errors{}",
                        runs.len() + 1,
                        workload.label(),
                        rep + 1,
                        counts.rate(),
                        counts.non_2xx,
                        counts.errors,
                        if rustc > 0 {
                            format!(" ({rustc} rustc running)")
                        } else {
                            String::new()
                        },
                    );
                    runs.push(Run {
                        system,
                        workload,
                        connections,
                        rep: rep + 1,
                        counts,
                    });
                }
            }
        }
    }
    let mut hot = Vec::new();
    for kind in [HotKind::Counter, HotKind::OwnKeys] {
        for (system, server) in servers.iter().filter(|(s, _)| *s != "bare") {
            let h = load::hot(server.addr, kind, HOT_CONNECTIONS, config.hot_window).await?;
            eprintln!(
                "hot session {kind:?} {system}: {} applied / {} ok = {:.3}, {} non-2xx, {} errors",
                h.applied,
                h.ok,
                h.ratio(),
                h.non_2xx,
                h.errors
            );
            hot.push((*system, kind, h));
        }
    }
    Ok(Results {
        config: config.clone(),
        runs,
        hot,
        busy_rustc,
    })
}
