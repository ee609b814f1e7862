//! Test support: finds a Redis to test against, or starts a throwaway one.
//!
//! Enabled by the `testing` feature, for this crate's own tests and for
//! yours (a web app's integration tests, a store built on top of this one).
//!
//! [`shared_url`] looks in this order: `REDIS_URL`; else a throwaway
//! `redis-server` from `PATH` on a unix socket in a temporary directory
//! (no TCP port, no persistence); else, with the `docker` feature, a
//! `redis` container through testcontainers; else it fails with one message
//! naming all three ways ([`HOW_TO_GET_REDIS`]). Never a silent skip.
//! [`shared_cluster`] does the same for a 3-master cluster on free loopback
//! ports.
//!
//! Servers shared by a whole test binary are killed, and their directories
//! removed, when the binary exits, however it exits: a tiny `sh` watchdog
//! waits for end-of-file on a pipe only this process holds ([`at_exit`]).
//!
//! Errors here are plain messages (`String`): they end a test with
//! instructions for a person, nothing matches on them.
#![allow(clippy::missing_errors_doc)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How the tests can find Redis, for error messages.
pub const HOW_TO_GET_REDIS: &str = "the Redis tests need a server: set REDIS_URL \
(e.g. REDIS_URL=redis://127.0.0.1:6379/), or put `redis-server` on PATH \
(e.g. `apt-get install -y redis-server`) so the tests can spawn their own, \
or enable the `docker` feature (`cargo test -p session-store-redis --features docker`) \
with a running Docker daemon";

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Child,
    socket: Option<PathBuf>,
    port: Option<u16>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` listening only on `socket` (no TCP, no
    /// persistence) and waits until it answers `PING`.
    pub fn spawn_unix(dir: &Path, socket: &Path) -> Result<Self, String> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir);
        let child = spawn(cmd, dir, "redis-server")?;
        let mut server = Self {
            child,
            socket: Some(socket.to_owned()),
            port: None,
            dir: dir.to_owned(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts a cluster-enabled `redis-server` on `127.0.0.1:port`.
    pub fn spawn_cluster_node(dir: &Path, port: u16) -> Result<Self, String> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(dir.join(format!("nodes-{port}.conf")))
            .args([
                "--cluster-node-timeout",
                "5000",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir);
        let child = spawn(cmd, dir, &format!("redis-server-{port}"))?;
        let mut server = Self {
            child,
            socket: None,
            port: Some(port),
            dir: dir.to_owned(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// The URL the store connects to.
    pub fn url(&self) -> String {
        match (&self.socket, self.port) {
            (Some(socket), _) => format!("unix://{}", socket.display()),
            (None, Some(port)) => format!("redis://127.0.0.1:{port}/"),
            (None, None) => String::new(),
        }
    }

    /// The process id (for the exit watchdog).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status} before answering; its log: {}",
                    read_log(&self.dir)
                ));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server did not answer PING within 15 s; its log: {}",
                    read_log(&self.dir)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let reply = match (&self.socket, self.port) {
            (Some(socket), _) => UnixStream::connect(socket)
                .ok()
                .and_then(|mut s| ping_on(&mut s)),
            (None, Some(port)) => std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut s| ping_on(&mut s)),
            (None, None) => None,
        };
        reply.is_some_and(|r| r.starts_with("+PONG"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping_on<S: Read + Write>(stream: &mut S) -> Option<String> {
    stream.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn spawn(mut cmd: Command, dir: &Path, log_name: &str) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("{log_name}.log")))
        .map_err(|e| format!("cannot create a log file in {}: {e}", dir.display()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| format!("cannot clone a log file handle: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log));
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("`redis-server` is not on PATH; {HOW_TO_GET_REDIS}")
        } else {
            format!("cannot start redis-server: {e}")
        }
    })
}

fn read_log(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    out
}

/// Whether `redis-server` can be started from `PATH`.
pub fn redis_server_on_path() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Pipes whose closing (when this process exits) triggers the watchdogs.
static WATCHDOGS: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

/// Runs `sh -c script` once this process has exited (its stdin pipe
/// reaches end-of-file). `args` are `$1`, `$2`, … in the script.
pub fn at_exit(script: &str, args: &[String]) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("read _ignored; {script}"))
        .arg("sh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the exit watchdog (sh): {e}"))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| "the exit watchdog has no stdin".to_owned())?;
    match WATCHDOGS.lock() {
        Ok(mut pipes) => pipes.push(stdin),
        Err(poisoned) => poisoned.into_inner().push(stdin),
    }
    Ok(())
}

/// A process-wide server: spawned once, killed at exit.
fn spawn_shared_server() -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix("session-redis-test")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?
        .keep();
    let server = RedisServer::spawn_unix(&dir, &dir.join("redis.sock"))?;
    let url = server.url();
    at_exit(
        r#"kill -9 "$1"; rm -rf "$2""#,
        &[server.pid().to_string(), dir.display().to_string()],
    )?;
    // Killed by the watchdog when the test binary exits.
    std::mem::forget(server);
    Ok(url)
}

/// The URL of the Redis shared by the tests of this binary.
pub fn shared_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.trim().is_empty()
        {
            return Ok(url);
        }
        if redis_server_on_path() {
            return spawn_shared_server();
        }
        docker_url()
    })
    .clone()
}

#[cfg(feature = "docker")]
fn docker_url() -> Result<String, String> {
    use testcontainers::GenericImage;
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;

    // The blocking runner has its own tokio runtime, which must not start
    // inside the test's runtime: start the container on a plain thread.
    let started = std::thread::spawn(|| -> Result<String, String> {
        let container = GenericImage::new("redis", "7-alpine")
            .with_exposed_port(6379.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .start()
            .map_err(|e| format!("cannot start a redis container: {e}; {HOW_TO_GET_REDIS}"))?;
        let host = container
            .get_host()
            .map_err(|e| format!("cannot get the container's host: {e}"))?;
        let port = container
            .get_host_port_ipv4(6379)
            .map_err(|e| format!("cannot get the container's port: {e}"))?;
        at_exit(r#"docker rm -f "$1""#, &[container.id().to_owned()])?;
        // Removed by the watchdog when the test binary exits.
        std::mem::forget(container);
        Ok(format!("redis://{host}:{port}/"))
    })
    .join();
    started.unwrap_or_else(|_| Err("starting the redis container panicked".to_owned()))
}

#[cfg(not(feature = "docker"))]
fn docker_url() -> Result<String, String> {
    Err(format!(
        "no REDIS_URL and no `redis-server` on PATH; {HOW_TO_GET_REDIS}"
    ))
}

/// Picks `count` distinct free loopback ports `p` whose cluster bus port
/// `p + 10000` is free too (bind to port 0, read the port, release).
pub fn free_cluster_ports(count: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    let mut holders = Vec::new();
    for _ in 0..200 {
        if ports.len() == count {
            break;
        }
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        let Some(bus) = port.checked_add(10000) else {
            continue;
        };
        if port == 6379 || ports.contains(&port) {
            continue;
        }
        let Ok(bus_listener) = TcpListener::bind(("127.0.0.1", bus)) else {
            continue;
        };
        ports.push(port);
        holders.push((listener, bus_listener));
    }
    if ports.len() < count {
        return Err("cannot find free loopback ports for a test cluster".to_owned());
    }
    Ok(ports)
}

/// Runs `redis-cli` with `args` and returns its stdout.
pub fn redis_cli(args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli (it comes with redis-server): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "redis-cli {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_cluster() -> Result<Vec<String>, String> {
    let dir = tempfile::Builder::new()
        .prefix("session-redis-cluster")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?
        .keep();
    let ports = free_cluster_ports(3)?;
    let mut nodes = Vec::new();
    for &port in &ports {
        nodes.push(RedisServer::spawn_cluster_node(&dir, port)?);
    }
    let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
    args.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    redis_cli(&arg_refs)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for &port in &ports {
        loop {
            let info = redis_cli(&["-p", &port.to_string(), "cluster", "info"])?;
            if info.contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {port} never reached cluster_state:ok: {info}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut watchdog_args: Vec<String> = vec![dir.display().to_string()];
    watchdog_args.extend(nodes.iter().map(|n| n.pid().to_string()));
    at_exit(
        r#"d="$1"; shift; kill -9 "$@"; rm -rf "$d""#,
        &watchdog_args,
    )?;
    let urls = nodes.iter().map(RedisServer::url).collect();
    for node in nodes {
        // Killed by the watchdog when the test binary exits.
        std::mem::forget(node);
    }
    Ok(urls)
}

/// The nodes of the 3-master cluster shared by this binary's tests:
/// `REDIS_CLUSTER_NODES` (comma-separated URLs) if set, else one started
/// here on free loopback ports.
pub fn shared_cluster() -> Result<Vec<String>, String> {
    static NODES: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    NODES
        .get_or_init(|| {
            if let Ok(list) = std::env::var("REDIS_CLUSTER_NODES") {
                let nodes: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if !nodes.is_empty() {
                    return Ok(nodes);
                }
            }
            if !redis_server_on_path() {
                return Err(format!(
                    "the cluster tests start their own cluster and need `redis-server` and \
                     `redis-cli` on PATH (or set REDIS_CLUSTER_NODES); {HOW_TO_GET_REDIS}"
                ));
            }
            let mut last = String::new();
            for _ in 0..3 {
                match start_cluster() {
                    Ok(nodes) => return Ok(nodes),
                    Err(e) => last = e,
                }
            }
            Err(format!("cannot start a test cluster: {last}"))
        })
        .clone()
}
