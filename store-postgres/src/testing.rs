//! Test support: finds a PostgreSQL server to test against, or starts a
//! throwaway one, and gives each test its own schema.
//!
//! Enabled by the `testing` feature, for this crate's own tests and for
//! yours (a web app's integration tests against a real database).
//!
//! [`shared_url`] looks in this order, never skipping silently:
//!
//! 1. `DATABASE_URL`, a server you run (each test works in a schema of
//!    its own, dropped afterwards: see [`TestStore`]);
//! 2. a throwaway cluster started here with `initdb` and `pg_ctl` in a
//!    temporary directory, listening only on a unix socket there, removed
//!    when the test binary exits ([`Cluster`]). The binaries are found by
//!    `PG_BIN` (a directory), else on `PATH`, else in the newest
//!    `/usr/lib/postgresql/*/bin`. PostgreSQL refuses to run as root: as
//!    root, the harness runs them as the `postgres` user (or the one
//!    `SESSION_TEST_POSTGRES_USER` names) and gives it the directory;
//! 3. with the `docker` feature, a container through testcontainers (image
//!    `SESSION_TEST_POSTGRES_IMAGE`, default [`DEFAULT_DOCKER_IMAGE`]; on
//!    the host's network when `SESSION_TEST_DOCKER_NETWORK=host`);
//! 4. otherwise one failure naming the three ways ([`HOW_TO_GET_POSTGRES`]).
//!
//! `SESSION_TEST_POSTGRES=cluster` or `=docker` skips straight to that
//! way. The harness writes one line to standard error (past the test
//! runner's capture) naming the server it uses.
//!
//! Errors here are plain messages (`String`): they end a test with
//! instructions for a person, nothing matches on them.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp, UserSessions};

use crate::{PostgresOptions, PostgresStore, TableName};

/// What to do when no server can be found.
pub const HOW_TO_GET_POSTGRES: &str = "the PostgreSQL tests need a server: set DATABASE_URL \
(e.g. postgres://postgres@localhost/test; each test gets a schema of its own), or install \
PostgreSQL's server binaries (Debian: `apt-get install postgresql`; the harness finds `initdb` \
and `pg_ctl` through PG_BIN, PATH or /usr/lib/postgresql/*/bin and starts a throwaway cluster), \
or enable the `docker` feature (`cargo test -p session-store-postgres --features docker`) with \
a Docker daemon that has the image SESSION_TEST_POSTGRES_IMAGE";

/// The image the `docker` fallback runs unless `SESSION_TEST_POSTGRES_IMAGE`
/// names another (it must behave like the official image: `POSTGRES_*`
/// environment, `postgres` as its command).
pub const DEFAULT_DOCKER_IMAGE: &str = "postgres:15-alpine";

/// Writes `line` to standard error once, past the test runner's capture.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "session-store-postgres testing: {line}");
}

/// Pipes whose closing (when this process exits) triggers the watchdogs.
static WATCHDOGS: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

/// Runs `sh -c script` once this process has exited, however it exits
/// (its stdin pipe, held only here, reaches end-of-file). `args` are `$1`,
/// `$2`, … in the script.
fn at_exit(script: &str, args: &[String]) -> Result<(), String> {
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

/// Where the server binaries (`initdb`, `pg_ctl`) are, if anywhere.
pub fn server_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The user id and group id to run the server as: `None` unless this
/// process runs as root (PostgreSQL refuses root).
fn server_user() -> Result<Option<(u32, u32)>, String> {
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Ok(None);
    }
    let name = std::env::var("SESSION_TEST_POSTGRES_USER").unwrap_or_else(|_| "postgres".into());
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find user {name}: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name.as_str()) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| {
            format!(
                "running as root, and PostgreSQL refuses root: the harness runs it as user \
                 {name}, which does not exist; create it or name another in \
                 SESSION_TEST_POSTGRES_USER"
            )
        })
}

/// A throwaway PostgreSQL cluster in a temporary directory, listening only
/// on a unix socket there. Stopped (immediately) and removed when dropped,
/// or, for [`shared_url`]'s cluster, when the test binary exits.
///
/// The fault tests use [`Cluster::pg_ctl`] to restart or crash it.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    /// Whether dropping this value removes the cluster.
    owned: bool,
}

impl Cluster {
    /// Runs `initdb` and starts the cluster (`pg_ctl start`, waiting until
    /// it accepts connections). No TCP port; `fsync` is off (a crashed
    /// server still keeps every committed write: the operating system
    /// holds it), `synchronous_commit` is on.
    ///
    /// # Errors
    ///
    /// When the binaries cannot be found or the cluster does not start;
    /// the message says why (and quotes the server's log).
    pub fn start() -> Result<Self, String> {
        let bin =
            server_bin_dir().ok_or_else(|| format!("no `initdb` found; {HOW_TO_GET_POSTGRES}"))?;
        let user = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("session-postgres-test")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        let cluster = Self {
            dir,
            bin,
            user,
            owned: true,
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to uid {uid}: {e}", cluster.dir.display()))?;
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nport = 5432\n\
             max_connections = 300\nfsync = off\nfull_page_writes = off\n\
             shared_buffers = 64MB\n",
            cluster.dir.display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(cluster.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| format!("cannot configure the cluster: {e}"))?;
        cluster.pg_ctl(&["start"])?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The cluster's directory (its socket is there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A sqlx URL for database `postgres` as superuser `postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/postgres?host={}&port=5432",
            self.dir.display()
        )
    }

    /// Runs one of the server's programs, as the server's user.
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let out = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join(program).display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!(
                "{program} {} failed ({}): {text}\nserver log:\n{}",
                args.join(" "),
                out.status,
                tail.join("\n")
            ))
        }
    }

    /// Runs `pg_ctl <args> -D <data> -l <log> -w`: `["start"]`,
    /// `["stop", "-m", "immediate"]` (a crash: no checkpoint, recovery on
    /// the next start), `["restart", "-m", "fast"]`.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails; the message quotes the server's log.
    pub fn pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let data = self.data().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-D", &data, "-l", &log, "-w", "-t", "60"]);
        self.run("pg_ctl", &all)
    }

    /// The postmaster's process id, from its pid file.
    fn pid(&self) -> Option<String> {
        let pid = fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        pid.lines().next().map(str::to_owned)
    }

    /// Sends `signal` (a name `kill` knows, such as `STOP` or `CONT`) to
    /// the postmaster, then to every process it started (its backends,
    /// checkpointer, ...). `STOP` freezes the whole server: connections
    /// stay open and nothing answers, as when a server hangs; `CONT` lets
    /// it go on. The fault tests use it.
    ///
    /// # Errors
    ///
    /// When the cluster has no pid file or `kill` fails.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let postmaster = self.pid().ok_or("the cluster has no postmaster.pid")?;
        let kill = |pids: &[String]| -> Result<(), String> {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .args(pids)
                .status()
                .map_err(|e| format!("cannot run kill: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "kill -{signal} {} failed ({status})",
                    pids.join(" ")
                ))
            }
        };
        // The postmaster first: once it is stopped, it starts no more.
        kill(std::slice::from_ref(&postmaster))?;
        let children = children_of(&postmaster);
        if children.is_empty() {
            return Ok(());
        }
        kill(&children)
    }
}

/// The process ids whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.to_owned();
            pid.parse::<u32>().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; the command may hold spaces and
            // parentheses, so the fields are counted after the last `)`.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The URL of the server shared by the tests of this binary (see the
/// module docs for the order it looks in). Starts it on first use.
///
/// # Errors
///
/// When no way gives a server; the message names all of them.
pub fn shared_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(find_server).clone()
}

fn find_server() -> Result<String, String> {
    let forced = std::env::var("SESSION_TEST_POSTGRES").unwrap_or_default();
    match forced.as_str() {
        "" | "auto" => {}
        "cluster" => return shared_cluster(),
        "docker" => return docker_url(),
        other => {
            return Err(format!(
                "SESSION_TEST_POSTGRES={other:?} is not understood: `cluster` (initdb + \
                 pg_ctl), `docker` (a container), or unset/`auto` for DATABASE_URL, then a \
                 cluster, then Docker"
            ));
        }
    }
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        announce(&format!("using DATABASE_URL ({})", redact(&url)));
        return Ok(url);
    }
    if server_bin_dir().is_some() {
        return shared_cluster();
    }
    docker_url()
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A process-wide cluster: started once, removed at exit.
fn shared_cluster() -> Result<String, String> {
    let mut cluster = Cluster::start()?;
    let url = cluster.url();
    let pid = cluster
        .pid()
        .ok_or("the cluster started but wrote no pid file")?;
    // `pg_ctl` refuses root, so the watchdog signals the postmaster
    // itself: SIGQUIT is an immediate shutdown.
    at_exit(
        r#"kill -QUIT "$1"; sleep 1; kill -9 "$1" 2>/dev/null; rm -rf "$2""#,
        &[pid, cluster.dir.display().to_string()],
    )?;
    cluster.owned = false;
    announce(&format!(
        "a throwaway cluster ({}) at {url}",
        cluster.bin.display()
    ));
    Ok(url)
}

#[cfg(feature = "docker")]
fn docker_url() -> Result<String, String> {
    use std::time::Duration;

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    let image = std::env::var("SESSION_TEST_POSTGRES_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| DEFAULT_DOCKER_IMAGE.to_owned());
    let (name, tag) = image.split_once(':').unwrap_or((image.as_str(), "latest"));
    let host_network = std::env::var("SESSION_TEST_DOCKER_NETWORK").is_ok_and(|n| n == "host");
    // The official image logs this line twice: once for its set-up
    // server, once for the real one.
    let ready = WaitFor::message_on_stderr("database system is ready to accept connections");
    let cannot_start = |e: testcontainers::TestcontainersError| {
        format!("cannot start a container of {name}:{tag} (SESSION_TEST_POSTGRES_IMAGE): {e}")
    };
    let base = GenericImage::new(name, tag)
        .with_wait_for(ready.clone())
        .with_wait_for(ready)
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_startup_timeout(Duration::from_secs(120));
    let (container, host, port) = if host_network {
        let port = free_port()?;
        let container = base
            .with_network("host")
            .with_cmd([
                "postgres",
                "-c",
                &format!("port={port}"),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .start()
            .map_err(cannot_start)?;
        (container, "127.0.0.1".to_owned(), port)
    } else {
        let container = base
            .with_mapped_port(0, 5432.tcp())
            .start()
            .map_err(cannot_start)?;
        let host = container
            .get_host()
            .map_err(|e| format!("cannot get the container's host: {e}"))?
            .to_string();
        let port = container.get_host_port_ipv4(5432).map_err(|e| {
            format!(
                "cannot get the container's mapped port: {e} (a daemon without a bridge maps \
                 no ports: set SESSION_TEST_DOCKER_NETWORK=host)"
            )
        })?;
        (container, host, port)
    };
    let id = container.id().to_owned();
    at_exit(
        r#"docker rm -f "$1" >/dev/null 2>&1"#,
        std::slice::from_ref(&id),
    )?;
    // Removed by the watchdog when the test binary exits.
    std::mem::forget(container);
    let url = format!("postgres://postgres@{host}:{port}/postgres");
    announce(&format!(
        "PostgreSQL from Docker container {} of image {name}:{tag} at {url}",
        id.get(..12).unwrap_or(&id)
    ));
    Ok(url)
}

#[cfg(feature = "docker")]
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot pick a free port: {e}"))
}

#[cfg(not(feature = "docker"))]
fn docker_url() -> Result<String, String> {
    Err(format!(
        "no DATABASE_URL and no PostgreSQL server binaries; {HOW_TO_GET_POSTGRES}"
    ))
}

/// A fresh random schema name: `t` and 15 hex digits.
fn random_schema() -> Result<String, String> {
    let hex = SessionId::generate()
        .map_err(|e| format!("no randomness for a schema name: {e}"))?
        .storage_key()
        .to_hex();
    Ok(format!("t{}", &hex[..15]))
}

/// A store on the shared server ([`shared_url`]) in a table of a schema of
/// its own, installed by [`crate::migrate`]; the schema is dropped (with
/// everything in it) when this value is dropped. A [`SessionStore`]
/// itself, so a conformance factory can return it.
#[derive(Debug)]
pub struct TestStore {
    store: PostgresStore,
    schema: String,
    url: String,
}

impl TestStore {
    /// A store in table `sessions` of a fresh schema, with the default
    /// options.
    ///
    /// # Errors
    ///
    /// When no server can be found or the store cannot connect.
    pub async fn new() -> Result<Self, String> {
        Self::in_schema(&random_schema()?, |options| options).await
    }

    /// A store in table `sessions` of schema `schema` (created if
    /// missing), with options refined by `configure`.
    ///
    /// # Errors
    ///
    /// When no server can be found or the store cannot connect.
    pub async fn in_schema(
        schema: &str,
        configure: impl FnOnce(PostgresOptions) -> PostgresOptions,
    ) -> Result<Self, String> {
        let url = shared_url()?;
        let table = TableName::new(&format!("{schema}.sessions")).map_err(|e| e.to_string())?;
        let options = configure(PostgresOptions::new(url.clone()).table(table).migrate(true));
        let store = options
            .connect()
            .await
            .map_err(|e| format!("cannot connect a store to {}: {e}", redact(&url)))?;
        Ok(Self {
            store,
            schema: schema.to_owned(),
            url,
        })
    }

    /// Another store (its own pool: another app server) on the same table.
    ///
    /// # Errors
    ///
    /// When it cannot connect.
    pub async fn peer(&self) -> Result<PostgresStore, String> {
        PostgresOptions::new(self.url.clone())
            .table(self.store.table().clone())
            .connect()
            .await
            .map_err(|e| format!("cannot connect a second store: {e}"))
    }

    /// The store.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    /// The schema this store's table is in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Stores `record`'s key, user and deadline with data that is not a
    /// JSON object (so no load can decode it), for the suite's unreadable
    /// cases ([`plant_unreadable`]).
    ///
    /// # Errors
    ///
    /// When the statement fails.
    pub async fn plant_unreadable(&self, record: &Record) -> Result<(), Error> {
        plant_unreadable(&self.store, record).await
    }

    /// Stores `record` as the store would, but with a value inside its
    /// data damaged ([`plant_damaged_data`]).
    ///
    /// # Errors
    ///
    /// When the record cannot be encoded or the statement fails.
    pub async fn plant_damaged_data(&self, record: &Record) -> Result<(), Error> {
        plant_damaged_data(&self.store, record).await
    }
}

/// Stores `record`'s key, user and deadline in `store`'s table with data
/// that is valid JSON but not an object (a `json` column takes nothing
/// else), replacing what the key held.
///
/// # Errors
///
/// When the statement fails.
pub async fn plant_unreadable(store: &PostgresStore, record: &Record) -> Result<(), Error> {
    let statement = format!(
        "INSERT INTO {} (key, \"user\", data, version, created_at, expires_at) \
         VALUES ($1, $2, '[\"not a session\"]', $3, $4, $5) \
         ON CONFLICT (key) DO UPDATE SET \"user\" = EXCLUDED.\"user\", data = EXCLUDED.data, \
         version = EXCLUDED.version, created_at = EXCLUDED.created_at, \
         expires_at = EXCLUDED.expires_at",
        store.table().quoted()
    );
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(record.key.as_bytes().as_slice())
        .bind(record.user.as_deref().map(str::as_bytes))
        .bind(i64::try_from(record.version).unwrap_or(i64::MAX))
        .bind(record.created_at.as_millis())
        .bind(record.expires_at.as_millis())
        .execute(store.pool())
        .await
        .map(|_| ())
        .map_err(|e| Error::backend(crate::NAME, "plant_unreadable", false, e))
}

/// Stores `record` in `store`'s table exactly as the store writes it
/// (through the store itself: key, user, version, timestamps and the
/// integrity digest of the record's real data), then replaces, inside the
/// data, one value by `1e400`: a number beyond `f64`, which the `json`
/// column and the JSON grammar accept and serde_json refuses. Replaces
/// what the key held. What a person or a tool editing the table leaves
/// behind.
///
/// # Errors
///
/// When the record cannot be stored or the statement fails.
pub async fn plant_damaged_data(store: &PostgresStore, record: &Record) -> Result<(), Error> {
    let op = "plant_damaged_data";
    store.delete(&record.key).await?;
    store.create(record).await?;
    let data = damaged_text(&record.data).map_err(|e| Error::backend(crate::NAME, op, false, e))?;
    let statement = format!(
        "UPDATE {} SET data = $2::json WHERE key = $1",
        store.table().quoted()
    );
    let changed = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(record.key.as_bytes().as_slice())
        .bind(data)
        .execute(store.pool())
        .await
        .map_err(|e| Error::backend(crate::NAME, op, false, e))?
        .rows_affected();
    if changed == 1 {
        Ok(())
    } else {
        Err(Error::backend(
            crate::NAME,
            op,
            false,
            format!("damaging the planted row changed {changed} rows"),
        ))
    }
}

/// `data`'s JSON text with its first value (or a new one, if it has
/// none) replaced by `1e400`.
fn damaged_text(data: &session_core::Data) -> Result<String, String> {
    const MARKER: &str = "\u{1}damage\u{1}";
    // How serde_json writes the marker: control characters escaped.
    const WRITTEN: &str = "\"\\u0001damage\\u0001\"";
    let mut damaged = data.clone();
    let first = damaged
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "n".to_owned());
    damaged.insert(first, serde_json::Value::String(MARKER.to_owned()));
    let text = serde_json::to_string(&damaged).map_err(|e| e.to_string())?;
    if !text.contains(WRITTEN) {
        return Err(format!("cannot find the marker in {text}"));
    }
    Ok(text.replacen(WRITTEN, "1e400", 1))
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop cannot await: a thread of its own runs the statement on a
        // runtime of its own, and this waits for it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_owned()) {
            announce(&format!("could not drop test schema {}: {e}", self.schema));
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for TestStore {
    async fn create(&self, record: &Record) -> Result<(), Error> {
        self.store.create(record).await
    }
    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, Error> {
        self.store.load(key).await
    }
    async fn save(&self, record: &Record) -> Result<u64, Error> {
        self.store.save(record).await
    }
    async fn touch(&self, key: &StorageKey, expires_at: Timestamp) -> Result<bool, Error> {
        self.store.touch(key, expires_at).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, Error> {
        self.store.delete(key).await
    }
    async fn list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        self.store.list_by_user(user).await
    }
    async fn delete_by_user(&self, user: &str) -> Result<u64, Error> {
        self.store.delete_by_user(user).await
    }
    async fn delete_expired(&self) -> Result<u64, Error> {
        self.store.delete_expired().await
    }
    fn name(&self) -> &'static str {
        self.store.name()
    }
}
