//! Configuration, connecting, and mapping driver errors.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};
use session_core::Error;

use crate::RedisStore;

/// Default key prefix: keys are `session:s:<64 hex digits>` and
/// `session:u:<escaped user>`.
pub const DEFAULT_PREFIX: &str = "session:";
/// Default limit on establishing one connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default limit on waiting for the reply to one command.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default limit on one whole store call, reconnecting included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// The connection a store talks through: a single server (reconnecting
/// [`ConnectionManager`]) or a cluster. Both are cheap to clone and
/// multiplex concurrent requests over shared connections.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// What a store holds to reach its server(s): the connection to clone
/// for each call, and, on a single server, what it takes to replace that
/// connection.
pub(crate) enum Connector {
    Single(Box<Single>),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

/// A single server's connection: a [`ConnectionManager`] that reconnects
/// by itself after an error, replaced as a whole when a call times out on
/// it.
///
/// The manager gets no per-command response timer: the store's operation
/// timeout is the one timer a call pays for (two timers per call cost
/// about a fifth of the client's CPU in a profile of 64 concurrent
/// loads). The manager reconnects only on errors, so a connection that
/// stops answering without failing (a peer gone behind a silent network)
/// would never be repaired by it; hence the replacement on timeout.
pub(crate) struct Single {
    client: redis::Client,
    config: ConnectionManagerConfig,
    current: RwLock<(ConnectionManager, u64)>,
}

impl Connector {
    /// The connection to send a command on.
    pub(crate) fn conn(&self) -> Conn {
        match self {
            Self::Single(single) => {
                let current = single
                    .current
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                Conn::Single(current.0.clone())
            }
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => Conn::Cluster(c.clone()),
        }
    }

    /// The generation of the current connection: it grows by one with
    /// each replacement.
    pub(crate) fn generation(&self) -> u64 {
        match self {
            Self::Single(single) => {
                single
                    .current
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .1
            }
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => 0,
        }
    }

    /// A call that started on connection `generation` timed out: replace
    /// that connection (if no other call did already) with a fresh one
    /// that connects on first use. Calls in flight on the old one finish
    /// or time out on their own. A cluster connection repairs itself (it
    /// has its own response timeout), so nothing is done there.
    pub(crate) fn timed_out(&self, generation: u64) {
        #[cfg_attr(not(feature = "cluster"), allow(irrefutable_let_patterns))]
        let Self::Single(single) = self else {
            return;
        };
        let mut current = single
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.1 != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(single.client.clone(), single.config.clone())
        {
            Ok(fresh) => {
                *current = (fresh, generation.wrapping_add(1));
                tracing::warn!("a Redis call timed out; replaced its connection");
            }
            Err(error) => {
                tracing::warn!(%error, "a Redis call timed out; could not replace its connection");
            }
        }
    }

    /// Whether this is a single server (not a cluster).
    pub(crate) fn is_single(&self) -> bool {
        matches!(self, Self::Single(_))
    }

    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => "cluster",
        }
    }
}

#[derive(Clone)]
enum Target {
    Single(String),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

/// Builds a [`RedisStore`]: where to connect, the key prefix and the
/// timeouts. Start from [`RedisStore::builder`] (one server) or
/// `RedisStore::cluster_builder` (feature `cluster`).
///
/// | setting | default |
/// |---|---|
/// | [`prefix`](Self::prefix) | [`DEFAULT_PREFIX`] (`"session:"`) |
/// | [`connect_timeout`](Self::connect_timeout) | [`DEFAULT_CONNECT_TIMEOUT`] (1 s) |
/// | [`response_timeout`](Self::response_timeout) | [`DEFAULT_RESPONSE_TIMEOUT`] (1 s) |
/// | [`operation_timeout`](Self::operation_timeout) | [`DEFAULT_OPERATION_TIMEOUT`] (3 s) |
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct RedisStoreBuilder {
    target: Target,
    pub(crate) prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    #[cfg(feature = "tls-rustls")]
    tls: crate::tls::TlsOptions,
}

/// Never prints the URLs: they may hold a password.
impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.target {
            Target::Single(_) => "single",
            #[cfg(feature = "cluster")]
            Target::Cluster(_) => "cluster",
        };
        let mut f = f.debug_struct("RedisStoreBuilder");
        f.field("mode", &mode)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("operation_timeout", &self.operation_timeout);
        #[cfg(feature = "tls-rustls")]
        f.field("tls", &self.tls.describe());
        f.finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    pub(crate) fn single(url: String) -> Self {
        Self::with_target(Target::Single(url))
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(nodes: Vec<String>) -> Self {
        Self::with_target(Target::Cluster(nodes))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            #[cfg(feature = "tls-rustls")]
            tls: crate::tls::TlsOptions::default(),
        }
    }

    /// The prefix of every key the store writes, so that several
    /// applications (or tests) can share one server. Keys are
    /// `{prefix}s:{storage key hex}` for sessions and
    /// `{prefix}u:{escaped user}` for the per-user indexes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one attempt to connect (or reconnect) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// On a cluster, how long to wait for the reply to one command once
    /// it is sent. On a single server calls are bounded by the
    /// [operation timeout](Self::operation_timeout) alone, and a
    /// connection on which a call timed out is replaced, so this setting
    /// has no effect there.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The bound on one whole store call, including waiting for a
    /// reconnection: past it the call fails with a retryable
    /// [`Error::Backend`]. No call ever takes (much) longer than this.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Trusts the CA certificates in `pem` (one or more PEM `CERTIFICATE`
    /// blocks), and only them, for the server's certificate, instead of
    /// the root certificates compiled in (Mozilla's, `webpki-roots`): for
    /// a server whose certificate a private CA signed. Needs a
    /// `rediss://` URL (every node's, on a cluster). The PEM is checked by
    /// [`connect`](Self::connect).
    ///
    /// Feature `tls-rustls`.
    #[cfg(feature = "tls-rustls")]
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca = Some(pem.into());
        self
    }

    /// Presents a client certificate (mutual TLS, for a server started
    /// with `tls-auth-clients yes`): `cert_chain` holds the certificate
    /// and any intermediates (PEM), `key` its private key (PEM: PKCS#8,
    /// PKCS#1 or SEC1). The key is kept in memory for reconnections and
    /// never printed. Needs a `rediss://` URL. Checked by
    /// [`connect`](Self::connect).
    ///
    /// Feature `tls-rustls`.
    #[cfg(feature = "tls-rustls")]
    pub fn tls_client_cert_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert_chain.into(), key.into()));
        self
    }

    /// Connects and returns the store. The first connection is established
    /// here (so a wrong address fails now); later losses of the connection
    /// are repaired in the background.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] with operation `"connect"` when the URL is invalid
    /// (not retryable) or the server cannot be reached in time (retryable).
    /// With TLS (feature `tls-rustls`), a PEM that holds no usable
    /// certificate or key, TLS options for a URL that is not `rediss://`,
    /// and a failed handshake (a server certificate the CA did not sign,
    /// or for another name; a client certificate the server refuses) are
    /// not retryable, with a `TlsError` as the source.
    pub async fn connect(self) -> Result<RedisStore, Error> {
        let conn = match tokio::time::timeout(self.operation_timeout, self.open()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(timed_out("connect", self.operation_timeout)),
        };
        Ok(RedisStore::from_parts(conn, self))
    }

    async fn open(&self) -> Result<Connector, Error> {
        match &self.target {
            Target::Single(url) => {
                let client = self.single_client(url)?;
                // No response timeout: see `Single`.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(None)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(500))
                    .set_number_of_retries(3);
                let manager = ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map_err(|e| backend("connect", e))?;
                Ok(Connector::Single(Box::new(Single {
                    client,
                    config,
                    current: RwLock::new((manager, 0)),
                })))
            }
            #[cfg(feature = "cluster")]
            Target::Cluster(nodes) => {
                let builder =
                    redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(self.connect_timeout)
                        .response_timeout(self.response_timeout)
                        .overall_response_timeout(Some(self.operation_timeout))
                        .retries(3);
                #[cfg(feature = "tls-rustls")]
                let builder = self.cluster_tls(nodes, builder)?;
                let client = builder.build().map_err(|e| backend("connect", e))?;
                match client.get_async_connection().await {
                    Ok(conn) => Ok(Connector::Cluster(conn)),
                    #[cfg(feature = "tls-rustls")]
                    Err(e) => Err(match self.tls_refusal(nodes).await {
                        Some(refused) => refused,
                        None => backend("connect", e),
                    }),
                    #[cfg(not(feature = "tls-rustls"))]
                    Err(e) => Err(backend("connect", e)),
                }
            }
        }
    }
}

impl RedisStoreBuilder {
    /// The client of a single server, with the TLS options if any.
    fn single_client(&self, url: &str) -> Result<redis::Client, Error> {
        let client = redis::Client::open(url).map_err(|e| backend("connect", e))?;
        #[cfg(feature = "tls-rustls")]
        {
            let is_tls = crate::tls::is_tls(client.get_connection_info());
            if is_tls {
                crate::tls::ensure_crypto_provider();
            }
            if let Some(certificates) = self.tls.certificates().map_err(tls_config)? {
                if !is_tls {
                    return Err(tls_config(crate::tls::TlsError::NotTls));
                }
                return redis::Client::build_with_tls(
                    client.get_connection_info().clone(),
                    certificates,
                )
                .map_err(|e| Error::backend(crate::NAME, "connect", false, e));
            }
        }
        Ok(client)
    }

    /// The cluster client's builder with the TLS options if any.
    #[cfg(all(feature = "tls-rustls", feature = "cluster"))]
    fn cluster_tls(
        &self,
        nodes: &[String],
        builder: redis::cluster::ClusterClientBuilder,
    ) -> Result<redis::cluster::ClusterClientBuilder, Error> {
        use redis::IntoConnectionInfo as _;
        let mut all_tls = true;
        for node in nodes {
            let info = node
                .as_str()
                .into_connection_info()
                .map_err(|e| backend("connect", e))?;
            if crate::tls::is_tls(&info) {
                crate::tls::ensure_crypto_provider();
            } else {
                all_tls = false;
            }
        }
        match self.tls.certificates().map_err(tls_config)? {
            None => Ok(builder),
            Some(_) if !all_tls => Err(tls_config(crate::tls::TlsError::NotTls)),
            Some(certificates) => Ok(builder.certs(certificates)),
        }
    }
}

#[cfg(all(feature = "tls-rustls", feature = "cluster"))]
impl RedisStoreBuilder {
    /// Why a cluster could not be reached, when TLS refused it: the
    /// cluster client reports a failed first connection as text alone, so
    /// the first TLS node is asked again on a connection of its own (with
    /// the same certificates), whose error tells a refused handshake from
    /// a node that is down. Only after a failed connect; `None` when that
    /// connection gets through, or fails otherwise.
    async fn tls_refusal(&self, nodes: &[String]) -> Option<Error> {
        use redis::IntoConnectionInfo as _;
        let node = nodes.iter().find(|node| {
            node.as_str()
                .into_connection_info()
                .is_ok_and(|info| crate::tls::is_tls(&info))
        })?;
        let client = self.single_client(node).ok()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let error = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            // A server refusing a client certificate may say so only at
            // the first command (TLS 1.3).
            Ok(mut conn) => redis::cmd("PING").exec_async(&mut conn).await.err()?,
            Err(e) => e,
        };
        crate::tls::handshake_failure(&error).map(|_| backend("connect", error))
    }
}

/// A TLS option that cannot work: never retryable.
#[cfg(feature = "tls-rustls")]
fn tls_config(error: crate::tls::TlsError) -> Error {
    Error::backend(crate::NAME, "connect", false, error)
}

/// A store call that did not finish within the operation timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer from Redis within {0:?}")]
pub struct TimedOut(pub Duration);

pub(crate) fn timed_out(operation: &'static str, after: Duration) -> Error {
    Error::backend(crate::NAME, operation, true, TimedOut(after))
}

/// Maps a driver error to [`Error::Backend`], deciding whether a retry may
/// help: I/O errors, timeouts, dropped or refused connections, a cluster
/// that is resharding, failing over or down, and a server still loading
/// its data are retryable; script, type and configuration errors are not.
pub(crate) fn backend(operation: &'static str, err: RedisError) -> Error {
    #[cfg(feature = "tls-rustls")]
    if let Some(reason) = crate::tls::handshake_failure(&err) {
        return Error::backend(
            crate::NAME,
            operation,
            false,
            crate::tls::TlsError::Handshake {
                reason: Box::new(reason),
                source: Box::new(err),
            },
        );
    }
    let retryable = is_retryable(&err);
    Error::backend(crate::NAME, operation, retryable, err)
}

fn is_retryable(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_cluster_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            ) | ErrorKind::ClusterConnectionNotFound
        )
}

/// What a Redis command answered.
pub(crate) type Reply<T> = Result<T, RedisError>;

/// The answer of an operation whose batch went unanswered: the sender
/// tasks went away (their runtime shut down) with it, or a batch answered
/// fewer operations than it held.
pub(crate) fn unanswered() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "a batch of this store went unanswered (was the store's tokio runtime shut down?)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_hides_the_url() {
        let builder = RedisStoreBuilder::single("redis://:hunter2@example.invalid/".into());
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("session:"), "{shown}");
    }

    #[cfg(feature = "tls-rustls")]
    #[test]
    fn builder_debug_hides_the_tls_key() {
        let builder = RedisStoreBuilder::single("rediss://example.invalid/".into())
            .tls_ca_pem("CA-PEM")
            .tls_client_cert_pem("CHAIN-PEM", "SECRET-KEY");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("SECRET-KEY"), "{shown}");
        assert!(!shown.contains("PEM"), "{shown}");
        assert!(shown.contains("private CA, client certificate"), "{shown}");
    }

    #[test]
    fn retryable_classification() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(backend("load", io).is_retryable());
        let refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(backend("load", refused).is_retryable());
        let client = RedisError::from((ErrorKind::InvalidClientConfig, "bad url"));
        assert!(!backend("connect", client).is_retryable());
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(backend("load", loading).is_retryable());
        assert!(timed_out("save", Duration::from_secs(1)).is_retryable());
    }
}
