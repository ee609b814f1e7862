//! The PostgreSQL backend's pieces that are not a raw baseline: the pool
//! size every PostgreSQL system gets, the throwaway server the driver
//! starts, what the report says about it, and our store as a system.
//!
//! Our store, `session-store-postgres`, is not a dependency yet: until it
//! is, [`OURS`] is `false`, the driver leaves `ours-postgres` out of the
//! run (its columns show `-`), and [`ours`] only says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::proto::Ops;
use crate::systems::BoxError;

/// Connections in the pool of every PostgreSQL system (ours,
/// tower-sessions', raw): sqlx's default `max_connections`, the same for
/// all three.
pub(crate) const POOL: u32 = 10;

/// Whether our PostgreSQL store is in this build (see the module docs).
pub(crate) const OURS: bool = false;

/// The table our store works on.
pub(crate) const OURS_TABLE: &str = "bench_ours";

/// Our PostgreSQL store on `url`: table [`OURS_TABLE`], installed by the
/// store itself, a pool of [`POOL`] connections, through the
/// `SessionStore` trait only.
pub(crate) async fn ours(url: &str) -> Result<(Ops, u64), BoxError> {
    let _ = (url, OURS_TABLE);
    Err("ours-postgres: session-store-postgres is not a dependency of session-bench yet".into())
}

/// A throwaway PostgreSQL cluster: `initdb` in a temporary directory,
/// a server listening only on a unix socket in that directory, stopped
/// (`pg_ctl stop -m immediate`) and removed on drop.
pub(crate) struct PgServer {
    /// Holds the cluster; removed on drop, after the server stopped.
    dir: tempfile::TempDir,
    bin: PathBuf,
    url: String,
}

impl PgServer {
    /// Runs `initdb` and `pg_ctl start` (as the `postgres` user when this
    /// process is root, which both refuse to be).
    pub(crate) fn spawn() -> Result<Self, BoxError> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("session-bench-pg-")
            .tempdir()?;
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()?;
            if !status.success() {
                return Err(format!("chown postgres {}: {status}", dir.path().display()).into());
            }
        }
        let data = dir.path().join("data");
        run(
            as_postgres(&bin.join("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        )?;
        let socket_dir = dir.path().to_string_lossy().into_owned();
        run(
            as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses='' -c unix_socket_directories='{socket_dir}'"
                ))
                .args(["-w", "start"]),
            "pg_ctl start",
        )?;
        let url = format!("postgres://postgres@localhost/postgres?host={socket_dir}");
        Ok(Self { dir, bin, url })
    }

    /// The sqlx URL of the server.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

/// The PostgreSQL binaries: the directory of `initdb` on `PATH`, else the
/// newest `/usr/lib/postgresql/*/bin` (Debian's layout).
fn pg_bin() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL binaries: initdb is neither on PATH nor in /usr/lib/postgresql/*/bin".into()
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program`, run as the `postgres` user when this process is root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BoxError> {
    let output = cmd.stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into())
    }
}

/// The server's version and the settings that decide what a commit costs,
/// as one line for the report, e.g. `PostgreSQL 15.14, fsync on,
/// synchronous_commit on, ...`.
pub(crate) fn describe(url: &str) -> Result<String, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let mut parts = Vec::new();
        for name in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
        ] {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
            parts.push(if name == "server_version" {
                format!("PostgreSQL {value}")
            } else {
                format!("`{name}` {value}")
            });
        }
        conn.close().await?;
        Ok(parts.join(", "))
    })
}
