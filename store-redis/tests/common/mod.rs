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

use session_store_conformance::{Damage, Namespace};
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

/// Damages `name`'s value (the record `record` as the store wrote it) as
/// `damage` says, keeping the key's expiry: what a damaged or foreign
/// write would leave.
///
/// - [`Damage::Frame`]: the last byte (the data's closing brace) cut off.
/// - [`Damage::Data`]: the data (the value's tail, `record.data` as JSON)
///   replaced by `{"n":1e400}`, a JSON object serde_json refuses (a number
///   beyond `f64`); everything before it, the header with its digest
///   included, stays as the store wrote it.
pub async fn damage<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    name: &str,
    record: &session_core::Record,
    damage: Damage,
) -> Result<(), String> {
    let mut value: Vec<u8> = redis::cmd("GET")
        .arg(name)
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    match damage {
        Damage::Frame => {
            value.pop();
        }
        Damage::Data => {
            let data = serde_json::to_vec(&record.data).map_err(|e| e.to_string())?;
            if !value.ends_with(&data) {
                return Err(format!(
                    "{name} does not end with the record's data {}",
                    String::from_utf8_lossy(&data)
                ));
            }
            value.truncate(value.len() - data.len());
            value.extend_from_slice(br#"{"n":1e400}"#);
        }
    }
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
/// damaged as `damage` says (see [`damage`]).
pub async fn plant_redis(
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
    damage: Damage,
) -> Result<(), String> {
    plant_single(Server::Redis, store, record, damage).await
}

/// The same on a single Valkey server.
pub async fn plant_valkey(
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
    damage: Damage,
) -> Result<(), String> {
    plant_single(Server::Valkey, store, record, damage).await
}

async fn plant_single(
    server: Server,
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
    how: Damage,
) -> Result<(), String> {
    use session_core::SessionStore as _;
    store.create(&record).await.map_err(|e| e.to_string())?;
    let url = server.shared_url()?;
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    damage(&mut conn, &store.session_key(&record.key), &record, how).await
}

/// The same on the cluster.
#[cfg(feature = "cluster")]
pub async fn plant_cluster(
    store: std::sync::Arc<RedisStore>,
    record: session_core::Record,
    how: Damage,
) -> Result<(), String> {
    use session_core::SessionStore as _;
    store.create(&record).await.map_err(|e| e.to_string())?;
    let client =
        redis::cluster::ClusterClient::new(shared_cluster()?).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    damage(&mut conn, &store.session_key(&record.key), &record, how).await
}
