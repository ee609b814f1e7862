//! Finds (or starts) the Redis or Valkey the tests run against: see
//! `session_store_redis::testing`, plus the conformance factories and
//! [`per_server!`], which runs a test once per kind of server.
#![allow(dead_code, unreachable_pub, unused_imports, unused_macros)]

/// For each `async fn name(server: Server)` named, a test
/// `redis::name` and a test `valkey::name` calling it with that kind of
/// server, each on a 2-worker tokio runtime, or with `one_thread:` first,
/// on a one-thread runtime.
macro_rules! per_server {
    (one_thread: $($test:ident),+ $(,)?) => {
        per_server!(@module redis, Redis, [tokio::test]; $($test),+);
        per_server!(@module valkey, Valkey, [tokio::test]; $($test),+);
    };
    ($($test:ident),+ $(,)?) => {
        per_server!(
            @module redis, Redis, [tokio::test(flavor = "multi_thread", worker_threads = 2)];
            $($test),+
        );
        per_server!(
            @module valkey, Valkey, [tokio::test(flavor = "multi_thread", worker_threads = 2)];
            $($test),+
        );
    };
    (@module $module:ident, $kind:ident, [$attr:meta]; $($test:ident),+) => {
        mod $module {
            $(
                #[$attr]
                async fn $test() {
                    super::$test(crate::common::Server::$kind).await;
                }
            )+
        }
    };
}

use session_store_conformance::Namespace;
use session_store_redis::RedisStore;
pub use session_store_redis::testing::*;

/// The key prefix a test namespace uses.
pub fn prefix(ns: &Namespace) -> String {
    format!("test:{ns}:")
}

/// The conformance factory for a single Redis server.
pub async fn redis_store(ns: Namespace) -> Result<RedisStore, String> {
    single_store(Server::Redis, ns).await
}

/// The conformance factory for a single Valkey server.
pub async fn valkey_store(ns: Namespace) -> Result<RedisStore, String> {
    single_store(Server::Valkey, ns).await
}

/// A store on the single server of the given kind shared by this binary.
pub async fn single_store(server: Server, ns: Namespace) -> Result<RedisStore, String> {
    let url = server.shared_url()?;
    RedisStore::builder(url.clone())
        .prefix(prefix(&ns))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// The conformance factory for the cluster.
#[cfg(feature = "cluster")]
pub async fn cluster_store(ns: Namespace) -> Result<RedisStore, String> {
    let nodes = shared_cluster()?;
    RedisStore::cluster_builder(nodes.clone())
        .prefix(prefix(&ns))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the cluster {nodes:?}: {e}"))
}

/// Cuts the last byte (the data's closing brace) off `name`'s value,
/// keeping its expiry: what a damaged or foreign write would leave.
pub async fn truncate<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    name: &str,
) -> Result<(), String> {
    let mut value: Vec<u8> = redis::cmd("GET")
        .arg(name)
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    value.pop();
    redis::cmd("SET")
        .arg(name)
        .arg(value)
        .arg("KEEPTTL")
        .query_async::<()>(conn)
        .await
        .map_err(|e| e.to_string())
}

/// The conformance suite's `unreadable` capability on a single Redis
/// server: the record as the store writes it (index entry included), then
/// its data cut short.
pub async fn plant_redis(
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
) -> Result<(), String> {
    plant_single(Server::Redis, store, record).await
}

/// The same on a single Valkey server.
pub async fn plant_valkey(
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
) -> Result<(), String> {
    plant_single(Server::Valkey, store, record).await
}

async fn plant_single(
    server: Server,
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
) -> Result<(), String> {
    use session_core::SessionStore as _;
    store.create(&record).await.map_err(|e| e.to_string())?;
    let url = server.shared_url()?;
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    truncate(&mut conn, &store.session_key(&record.key)).await
}

/// The same on the cluster.
#[cfg(feature = "cluster")]
pub async fn plant_cluster(
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
) -> Result<(), String> {
    use session_core::SessionStore as _;
    store.create(&record).await.map_err(|e| e.to_string())?;
    let client =
        redis::cluster::ClusterClient::new(shared_cluster()?).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    truncate(&mut conn, &store.session_key(&record.key)).await
}
